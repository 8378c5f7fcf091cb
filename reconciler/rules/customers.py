"""Customer master breaks: a CRM customer missing from the ERP, or present there twice."""

from __future__ import annotations

import polars as pl

from reconciler._context import RuleContext
from reconciler.rules.base import BreakRule, finding, record


class CustomerMissingInErp(BreakRule):
    """An account with a deal won longer ago than the grace period has no ERP customer."""

    break_type = "customer_missing_in_erp"
    severity = "high"
    remediation = "auto"
    reads = ("won", "crm_accounts", "erp_customers")

    def find(self, ctx: RuleContext) -> pl.LazyFrame:
        grace = ctx.config.grace_of(self.break_type)
        first_won = (
            ctx.won.filter(pl.col("o_account").is_not_null())
            .sort("won_at", "o_id")
            .group_by("o_account")
            .agg(
                pl.col("won_at").first(),
                pl.col("o_amount").first(),
                pl.col("o_currency").first(),
            )
            .filter(pl.col("won_at") <= ctx.as_of - grace)
        )
        linked_from_erp = ctx.erp_customers.select(pl.col("crm_account_id").alias("_crm"))
        erp_ids = ctx.erp_customers.select(pl.col("source_id").alias("_erp"))
        accounts = (
            ctx.crm_accounts.join(first_won, left_on="source_id", right_on="o_account")
            .join(linked_from_erp, left_on="source_id", right_on="_crm", how="anti")
            .join(
                erp_ids, left_on="erp_customer_id", right_on="_erp", how="anti", nulls_equal=False
            )
        )
        return accounts.select(
            finding(
                record("source_system", "accounts", "source_id"),
                legal_entity=pl.col("legal_entity"),
                amount=pl.col("o_amount"),
                currency=pl.col("o_currency"),
                since=pl.col("won_at") + grace,
                detail=pl.concat_str(
                    pl.lit("Customer '"),
                    pl.col("name").fill_null(pl.col("source_id")),
                    pl.lit("' has a won deal and no ERP customer"),
                ),
            )
        )


class CustomerDuplicatedInErp(BreakRule):
    """Two or more ERP customers share one name (case and spacing ignored).

    The original is the one linked to a CRM account, else the lowest id; each other is a break.
    """

    break_type = "customer_duplicated_in_erp"
    severity = "medium"
    remediation = "manual"
    reads = ("erp_customers",)

    def find(self, ctx: RuleContext) -> pl.LazyFrame:
        name = pl.col("name").str.to_lowercase().str.replace_all(r"\s+", " ").str.strip_chars()
        ranked = (
            ctx.erp_customers.filter(pl.col("name").is_not_null())
            .with_columns(name.alias("_name"))
            .sort(
                pl.col("crm_account_id").is_null(),
                pl.col("source_id").str.len_chars(),
                pl.col("source_id"),
            )
            .with_columns(
                pl.int_range(pl.len()).over("_name").alias("_n"),
                pl.col("source_id").first().over("_name").alias("_orig"),
                pl.col("crm_account_id").first().over("_name").alias("_crm"),
            )
            .filter(pl.col("_n") > 0)
        )
        return ranked.select(
            finding(
                record("source_system", "accounts", "source_id"),
                record("source_system", "accounts", "_orig"),
                record(pl.lit(ctx.systems.crm), "accounts", "_crm"),
                legal_entity=pl.col("legal_entity"),
                amount=pl.lit(0, pl.Int64),
                currency=pl.col("currency"),
                since=pl.col("source_modified_at"),
                detail=pl.concat_str(pl.lit("Same name as ERP customer "), pl.col("_orig")),
            )
        )
