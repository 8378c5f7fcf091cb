"""Deal-to-project breaks: won deals without a project, projects without a deal, value and currency."""

from __future__ import annotations

import polars as pl

from reconciler._context import RuleContext
from reconciler._links import BOTH, LEFT_ONLY, RIGHT_ONLY
from reconciler.rules.base import BreakRule, finding, record


class WonDealWithoutProject(BreakRule):
    """A deal won longer ago than the grace period has no project in the PSA."""

    break_type = "won_deal_without_project"
    severity = "high"
    remediation = "approval"
    reads = ("deal_projects",)

    def find(self, ctx: RuleContext) -> pl.LazyFrame:
        cutoff = ctx.as_of - ctx.config.grace_of(self.break_type)
        grace = ctx.config.grace_of(self.break_type)
        return (
            ctx.deal_projects.side(LEFT_ONLY)
            .filter(pl.col("o_won") & pl.col("won_at").is_not_null() & (pl.col("won_at") <= cutoff))
            .select(
                finding(
                    record("o_system", "opportunities", "o_id"),
                    legal_entity=pl.col("o_entity"),
                    amount=pl.col("o_amount"),
                    currency=pl.col("o_currency"),
                    since=pl.col("won_at") + grace,
                    detail=pl.concat_str(
                        pl.lit("Deal "), pl.col("o_id"), pl.lit(" won, no project")
                    ),
                )
            )
        )


class ProjectWithoutDeal(BreakRule):
    """A PSA project whose deal reference is missing or names no known opportunity."""

    break_type = "project_without_deal"
    severity = "medium"
    remediation = "manual"
    reads = ("deal_projects",)

    def find(self, ctx: RuleContext) -> pl.LazyFrame:
        return ctx.deal_projects.side(RIGHT_ONLY).select(
            finding(
                record("p_system", "projects", "p_id"),
                legal_entity=pl.lit(None, pl.String),
                amount=pl.col("p_budget"),
                currency=pl.col("p_currency"),
                since=pl.col("p_created"),
                detail=pl.when(pl.col("p_opp").is_null())
                .then(pl.lit("Project has no deal reference"))
                .otherwise(
                    pl.concat_str(pl.lit("Project references unknown deal "), pl.col("p_opp"))
                ),
            )
        )


class ProjectValueMismatch(BreakRule):
    """The budgets of a deal's projects (same currency) do not add up to the deal's amount."""

    break_type = "project_value_mismatch"
    severity = "medium"
    remediation = "manual"
    reads = ("deal_projects",)

    def find(self, ctx: RuleContext) -> pl.LazyFrame:
        linked = ctx.deal_projects.side(BOTH).filter(pl.col("p_currency") == pl.col("o_currency"))
        per_deal = linked.group_by("o_id").agg(
            pl.col("o_system").first(),
            pl.col("o_entity").first(),
            pl.col("o_amount").first(),
            pl.col("o_currency").first(),
            pl.col("p_system").first(),
            pl.col("p_id").min().alias("p_first"),
            pl.col("p_id").sort().str.join(",").alias("p_ids"),
            pl.col("p_budget").sum().alias("budget"),
            pl.col("p_created").min().alias("since"),
        )
        diff = pl.col("budget") - pl.col("o_amount")
        tolerance = ctx.config.amount_tolerance_minor
        return per_deal.filter(diff.abs() > tolerance).select(
            finding(
                record("o_system", "opportunities", "o_id"),
                record("p_system", "projects", "p_first"),
                legal_entity=pl.col("o_entity"),
                amount=diff.abs(),
                currency=pl.col("o_currency"),
                since=pl.col("since"),
                detail=pl.concat_str(
                    pl.lit("Project budget "),
                    pl.col("budget").cast(pl.String),
                    pl.lit(" != deal amount "),
                    pl.col("o_amount").cast(pl.String),
                    pl.lit(" (minor units; projects "),
                    pl.col("p_ids"),
                    pl.lit(")"),
                ),
            )
        )


class CurrencyMismatch(BreakRule):
    """Along a chain the currency changes: deal vs project, or ERP vs billing invoice."""

    break_type = "currency_mismatch"
    severity = "high"
    remediation = "manual"
    reads = ("deal_projects", "erp_billing")

    def find(self, ctx: RuleContext) -> pl.LazyFrame:
        projects = (
            ctx.deal_projects.side(BOTH)
            .filter(pl.col("p_currency") != pl.col("o_currency"))
            .select(
                finding(
                    record("p_system", "projects", "p_id"),
                    record("o_system", "opportunities", "o_id"),
                    legal_entity=pl.col("o_entity"),
                    amount=pl.col("o_amount"),
                    currency=pl.col("o_currency"),
                    since=pl.col("p_created"),
                    detail=pl.concat_str(
                        pl.lit("Deal in "),
                        pl.col("o_currency"),
                        pl.lit(", project in "),
                        pl.col("p_currency"),
                    ),
                )
            )
        )
        invoices = (
            ctx.erp_billing.side(BOTH)
            .filter(
                pl.col("e_currency").str.to_uppercase() != pl.col("b_currency").str.to_uppercase()
            )
            .select(
                finding(
                    record("e_system", "invoices", "e_id"),
                    record("b_system", "invoices", "b_id"),
                    legal_entity=pl.col("e_entity"),
                    amount=pl.col("e_total"),
                    currency=pl.col("e_currency"),
                    since=pl.col("b_modified"),
                    detail=pl.concat_str(
                        pl.lit("ERP invoice in "),
                        pl.col("e_currency"),
                        pl.lit(", billing invoice in "),
                        pl.col("b_currency"),
                    ),
                )
            )
        )
        return pl.concat([projects, invoices], how="vertical")
