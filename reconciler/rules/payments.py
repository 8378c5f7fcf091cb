"""Cash breaks: a payment received twice, cash received but not applied to any invoice."""

from __future__ import annotations

import polars as pl

from reconciler._context import RuleContext
from reconciler.rules.base import BreakRule, finding, record

_SAME_PAYMENT = ("customer_ref", "amount_minor", "currency", "reference")


def duplicate_payments(ctx: RuleContext) -> pl.LazyFrame:
    """Shared by both payment rules: computed once per run."""
    return ctx.shared("duplicate_payments", lambda: _duplicate_payments(ctx))


def _duplicate_payments(ctx: RuleContext) -> pl.LazyFrame:
    """ERP payments repeating an earlier one's payer, amount, currency and remittance reference.

    The earliest (by received time, then id) is the original; every later one is a duplicate,
    carrying ``original_id``. Payments without a reference are never duplicates of each other.
    """
    repeated = ctx.erp_payments.filter(
        pl.col("reference").is_not_null() & pl.struct(_SAME_PAYMENT).is_duplicated()
    )  # only the few repeated payments are sorted and ranked
    ordered = repeated.sort("received_at", "source_id", nulls_last=True)
    return ordered.with_columns(
        pl.int_range(pl.len()).over(_SAME_PAYMENT).alias("_n"),
        pl.col("source_id").first().over(_SAME_PAYMENT).alias("original_id"),
    ).filter(pl.col("_n") > 0)


def _with_entity(ctx: RuleContext, frame: pl.LazyFrame) -> pl.LazyFrame:
    customers = ctx.erp_customers.select(
        pl.col("source_id").alias("customer_ref"), pl.col("legal_entity").alias("_entity")
    )
    return frame.join(customers, on="customer_ref", how="left", maintain_order="left")


class DuplicatePayment(BreakRule):
    """The same payment (payer, amount, currency, remittance reference) recorded twice."""

    break_type = "duplicate_payment"
    severity = "high"
    remediation = "manual"
    reads = ("duplicate_payments", "erp_payments", "erp_customers")

    def find(self, ctx: RuleContext) -> pl.LazyFrame:
        return _with_entity(ctx, duplicate_payments(ctx)).select(
            finding(
                record("source_system", "payments", "source_id"),
                record("source_system", "payments", "original_id"),
                legal_entity=pl.col("_entity"),
                amount=pl.col("amount_minor"),
                currency=pl.col("currency"),
                since=pl.col("received_at"),
                detail=pl.concat_str(pl.lit("Repeats payment "), pl.col("original_id")),
            )
        )


class UnappliedCash(BreakRule):
    """A payment (not itself a duplicate) with money not applied to any invoice."""

    break_type = "unapplied_cash"
    severity = "medium"
    remediation = "manual"
    reads = ("duplicate_payments", "erp_payments", "erp_customers")

    def find(self, ctx: RuleContext) -> pl.LazyFrame:
        dups = duplicate_payments(ctx).select("source_id")
        return (
            _with_entity(ctx, ctx.erp_payments.filter(pl.col("unapplied") > 0))
            .join(dups, on="source_id", how="anti")
            .select(
                finding(
                    record("source_system", "payments", "source_id"),
                    legal_entity=pl.col("_entity"),
                    amount=pl.col("unapplied"),
                    currency=pl.col("currency"),
                    since=pl.col("received_at"),
                    detail=pl.concat_str(
                        pl.col("unapplied").cast(pl.String), pl.lit(" minor units unapplied")
                    ),
                )
            )
        )
