"""Deal chains: one row per deal with the time of each stage, its current stage and age, and money.

Stages, in order: ``open`` / ``lost`` (not won), ``won``, ``project_created``,
``project_active``, ``invoiced``, ``collected``. The current stage is the furthest one reached;
``collected`` needs the deal fully billed (billed >= booked) and every billed amount collected.
Billed and collected count only the deal's ERP invoices (and their payment applications) in the
deal's own currency; a currency change along a chain is a break of its own.
"""

from __future__ import annotations

import polars as pl

from reconciler._context import RuleContext, day_start

CHAIN_STAGES: tuple[str, ...] = (
    "open",
    "lost",
    "won",
    "project_created",
    "project_active",
    "invoiced",
    "collected",
)

CHAIN_SCHEMA: dict[str, pl.DataType] = {
    "opportunity_id": pl.String(),
    "source_system": pl.String(),
    "account_ref": pl.String(),
    "legal_entity": pl.String(),
    "currency": pl.String(),
    "crm_stage": pl.String(),
    "is_won": pl.Boolean(),
    "won_at": pl.Datetime("us", "UTC"),
    "projects": pl.UInt32(),
    "project_created_at": pl.Datetime("us", "UTC"),
    "project_activated_at": pl.Datetime("us", "UTC"),
    "first_time_approved_at": pl.Datetime("us", "UTC"),
    "first_milestone_completed_at": pl.Datetime("us", "UTC"),
    "invoices": pl.UInt32(),
    "first_invoiced_at": pl.Datetime("us", "UTC"),
    "first_payment_at": pl.Datetime("us", "UTC"),
    "last_payment_at": pl.Datetime("us", "UTC"),
    "booked_minor": pl.Int64(),
    "billed_minor": pl.Int64(),
    "collected_minor": pl.Int64(),
    "stage": pl.String(),
    "stage_since": pl.Datetime("us", "UTC"),
    "stage_age_days": pl.Float64(),
    "stuck": pl.Boolean(),
}


def deal_invoices(ctx: RuleContext) -> pl.LazyFrame:
    """ERP invoices issued by the as-of date (not void or draft), with their deal and collections."""
    return ctx.shared("deal_invoices", lambda: _deal_invoices(ctx))


def _deal_invoices(ctx: RuleContext) -> pl.LazyFrame:
    applied = ctx.applications.group_by("invoice_ref").agg(
        pl.col("amount_minor").sum().alias("collected"),
        pl.col("applied_at").min().alias("first_payment_at"),
        pl.col("applied_at").max().alias("last_payment_at"),
    )
    return (
        ctx.erp_invoices.filter(
            ~pl.col("e_state").is_in(["void", "draft"])
            & (pl.col("e_issued").is_null() | (pl.col("e_issued") <= ctx.as_of.date()))
        )
        .select(_DEAL_INVOICE_COLUMNS)
        .join(ctx.invoice_deal, on="e_id", how="left")
        .join(applied, left_on="e_id", right_on="invoice_ref", how="left")
    )


_DEAL_INVOICE_COLUMNS = (
    "e_system", "e_id", "e_total", "e_remaining", "e_currency", "e_state", "e_issued", "e_due",
)  # fmt: skip
"""The ERP invoice columns the chains and KPIs read (the others cost a copy at every join)."""


def build_chains(ctx: RuleContext) -> pl.DataFrame:
    """One row per deal (CHAIN_SCHEMA)."""
    projects = ctx.project_of_deal.filter(pl.col("o_id").is_not_null()).select("o_id", "p_id")
    per_project = ctx.projects.group_by("p_opp").agg(
        pl.len().alias("projects"),
        pl.col("p_created").min().alias("project_created_at"),
        pl.col("p_activated")
        .filter(pl.col("p_activated") <= ctx.as_of)
        .min()
        .alias("project_activated_at"),
    )
    te = ctx.data.time_entries.filter(
        (pl.col("source_system") == ctx.systems.psa) & (pl.col("approved_at") <= ctx.as_of)
    )
    # Per project first (millions of entries, thousands of projects), then per deal.
    first_time = (
        te.group_by("project_ref")
        .agg(pl.col("approved_at").min())
        .join(projects, left_on="project_ref", right_on="p_id")
        .group_by("o_id")
        .agg(pl.col("approved_at").min().alias("first_time_approved_at"))
    )
    ms = ctx.data.milestones.filter(
        (pl.col("source_system") == ctx.systems.psa) & (pl.col("completed_at") <= ctx.as_of)
    )
    first_ms = (
        ms.group_by("project_ref")
        .agg(pl.col("completed_at").min())
        .join(projects, left_on="project_ref", right_on="p_id")
        .group_by("o_id")
        .agg(pl.col("completed_at").min().alias("first_milestone_completed_at"))
    )
    invoices = (
        deal_invoices(ctx)
        .filter(pl.col("o_id").is_not_null())
        .join(ctx.opportunities.select("o_id", "o_currency"), on="o_id")
        .filter(pl.col("e_currency").str.to_uppercase() == pl.col("o_currency").str.to_uppercase())
        .group_by("o_id")
        .agg(
            pl.len().alias("invoices"),
            day_start(pl.col("e_issued").min()).alias("first_invoiced_at"),
            pl.col("first_payment_at").min(),
            pl.col("last_payment_at").max(),
            pl.col("e_total").sum().alias("billed_minor"),
            pl.col("collected").fill_null(0).sum().alias("collected_minor"),
        )
    )
    chains = (
        ctx.opportunities.join(per_project, left_on="o_id", right_on="p_opp", how="left")
        .join(first_time, on="o_id", how="left")
        .join(first_ms, on="o_id", how="left")
        .join(invoices, on="o_id", how="left")
        .with_columns(
            pl.col("projects").fill_null(0),
            pl.col("invoices").fill_null(0),
            pl.when(pl.col("o_won") & (pl.col("won_at") <= ctx.as_of))
            .then(pl.col("o_amount"))
            .otherwise(0)
            .alias("booked_minor"),
            pl.col("billed_minor").fill_null(0),
            pl.col("collected_minor").fill_null(0),
        )
    )
    won = pl.col("o_won") & pl.col("won_at").is_not_null() & (pl.col("won_at") <= ctx.as_of)
    collected = (
        (pl.col("billed_minor") > 0)
        & (pl.col("collected_minor") >= pl.col("billed_minor"))
        & (pl.col("billed_minor") >= pl.col("booked_minor"))
    )
    stage = (
        pl.when(~won)
        .then(pl.when(pl.col("o_closed")).then(pl.lit("lost")).otherwise(pl.lit("open")))
        .when(collected)
        .then(pl.lit("collected"))
        .when(pl.col("first_invoiced_at").is_not_null())
        .then(pl.lit("invoiced"))
        .when(pl.col("project_activated_at").is_not_null())
        .then(pl.lit("project_active"))
        .when(pl.col("project_created_at").is_not_null())
        .then(pl.lit("project_created"))
        .otherwise(pl.lit("won"))
    )
    since = (
        pl.when(pl.col("stage") == "collected")
        .then(pl.col("last_payment_at"))
        .when(pl.col("stage") == "invoiced")
        .then(pl.col("first_invoiced_at"))
        .when(pl.col("stage") == "project_active")
        .then(pl.col("project_activated_at"))
        .when(pl.col("stage") == "project_created")
        .then(pl.col("project_created_at"))
        .when(pl.col("stage") == "won")
        .then(pl.col("won_at"))
        .otherwise(pl.col("o_created"))
    )
    thresholds = ctx.config.stuck_after
    limit = pl.col("stage").replace_strict(
        list(thresholds),
        [t.total_seconds() / 86_400 for t in thresholds.values()],
        default=None,
        return_dtype=pl.Float64,
    )
    chains = (
        chains.with_columns(stage.alias("stage"))
        .with_columns(since.alias("stage_since"))
        .with_columns(
            ((pl.lit(ctx.as_of) - pl.col("stage_since")).dt.total_seconds() / 86_400).alias(
                "stage_age_days"
            )
        )
        .with_columns((pl.col("stage_age_days") > limit).fill_null(False).alias("stuck"))
        .select(
            pl.col("o_id").alias("opportunity_id"),
            pl.col("o_system").alias("source_system"),
            pl.col("o_account").alias("account_ref"),
            pl.col("o_entity").alias("legal_entity"),
            pl.col("o_currency").alias("currency"),
            pl.col("o_stage").alias("crm_stage"),
            pl.col("o_won").alias("is_won"),
            *[
                c
                for c in CHAIN_SCHEMA
                if c
                not in {
                    "opportunity_id",
                    "source_system",
                    "account_ref",
                    "legal_entity",
                    "currency",
                    "crm_stage",
                    "is_won",
                }
            ],
        )
    )
    return chains.collect().cast(CHAIN_SCHEMA)  # type: ignore[arg-type]
