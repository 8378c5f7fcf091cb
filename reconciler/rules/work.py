"""Revenue-leakage breaks: approved billable time and completed milestones that were never invoiced."""

from __future__ import annotations

import polars as pl

from reconciler._context import RuleContext
from reconciler.rules.base import BreakRule, finding, record


def _entity_of_project(ctx: RuleContext) -> pl.LazyFrame:
    return ctx.project_of_deal.select(pl.col("p_id").alias("project_ref"), "o_entity").unique(
        "project_ref", keep="first"
    )


class ApprovedTimeNotInvoiced(BreakRule):
    """Approved billable time still without an invoice after its month's billing run."""

    break_type = "approved_time_not_invoiced"
    severity = "high"
    remediation = "manual"
    reads = ("project_of_deal",)

    def find(self, ctx: RuleContext) -> pl.LazyFrame:
        entries = ctx.data.time_entries.filter(pl.col("source_system") == ctx.systems.psa)
        billing_run = (
            pl.col("entry_date").dt.month_start().dt.offset_by("1mo").cast(pl.Datetime("us"))
        ).dt.replace_time_zone("UTC") + ctx.config.time_billing_offset
        approved = pl.col("approved_at").is_not_null() | (
            pl.col("status").str.to_lowercase() == "approved"
        )
        return (
            # cheap tests first: the date arithmetic then runs on the few unbilled entries only
            entries.filter(pl.col("billable") & pl.col("invoice_ref").is_null() & approved)
            .filter(billing_run <= ctx.as_of)
            .join(_entity_of_project(ctx), on="project_ref", how="left")
            .select(
                finding(
                    record("source_system", "time_entries", "source_id"),
                    legal_entity=pl.col("o_entity"),
                    # Minutes x hourly rate, truncated to whole minor units as PSAs bill it.
                    amount=(pl.col("minutes") * pl.col("rate_minor")) // 60,
                    currency=pl.col("currency"),
                    since=billing_run,
                    detail=pl.concat_str(
                        pl.col("minutes").cast(pl.String),
                        pl.lit(" approved minutes on "),
                        pl.col("entry_date").cast(pl.String),
                        pl.lit(" not invoiced"),
                    ),
                )
            )
        )


class CompletedMilestoneNotInvoiced(BreakRule):
    """A milestone completed longer ago than the grace period has no invoice."""

    break_type = "completed_milestone_not_invoiced"
    severity = "high"
    remediation = "manual"
    reads = ("project_of_deal",)

    def find(self, ctx: RuleContext) -> pl.LazyFrame:
        grace = ctx.config.grace_of(self.break_type)
        return (
            ctx.data.milestones.filter(
                (pl.col("source_system") == ctx.systems.psa)
                & (pl.col("status").str.to_lowercase() == "completed")
                & pl.col("invoice_ref").is_null()
                & pl.col("completed_at").is_not_null()
                & (pl.col("completed_at") <= ctx.as_of - grace)
            )
            .join(_entity_of_project(ctx), on="project_ref", how="left")
            .select(
                finding(
                    record("source_system", "milestones", "source_id"),
                    legal_entity=pl.col("o_entity"),
                    amount=pl.col("amount_minor"),
                    currency=pl.col("currency"),
                    since=pl.col("completed_at") + grace,
                    detail=pl.concat_str(
                        pl.lit("Milestone '"),
                        pl.col("name").fill_null(""),
                        pl.lit("' completed, not invoiced"),
                    ),
                )
            )
        )
