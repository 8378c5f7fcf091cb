"""Invoice breaks: PSA vs ERP amounts, ERP vs billing presence and status, overdue receivables."""

from __future__ import annotations

from datetime import timedelta

import polars as pl

from reconciler._context import RuleContext, day_start
from reconciler._links import BOTH, LEFT_ONLY, RIGHT_ONLY
from reconciler.rules.base import BreakRule, finding, record

_NOT_BILLABLE_STATES = ("void", "draft")


def end_of_day(column: str) -> pl.Expr:
    """The end of an issue date: the latest an invoice dated that day can have been raised.

    The canonical invoice carries its issue *date* only, so a hand-off grace is counted from
    the end of that day: never an alarm before the grace has surely passed (a same-day invoice
    raised at 23:00 still gets its full grace).
    """
    return day_start(column) + timedelta(days=1)


class InvoiceAmountMismatch(BreakRule):
    """The ERP invoice's total differs from the PSA invoice it was raised from."""

    break_type = "invoice_amount_mismatch"
    severity = "high"
    remediation = "manual"
    reads = ("psa_erp",)

    def find(self, ctx: RuleContext) -> pl.LazyFrame:
        diff = pl.col("e_total") - pl.col("k_total")
        return (
            ctx.psa_erp.side(BOTH)
            .filter(
                (pl.col("e_currency").str.to_uppercase() == pl.col("k_currency").str.to_uppercase())
                & (diff.abs() > ctx.config.amount_tolerance_minor)
            )
            .select(
                finding(
                    record("e_system", "invoices", "e_id"),
                    record("k_system", "invoices", "k_id"),
                    legal_entity=pl.col("e_entity"),
                    amount=diff.abs(),
                    currency=pl.col("e_currency"),
                    since=day_start("e_issued"),
                    detail=pl.concat_str(
                        pl.lit("ERP total "),
                        pl.col("e_total").cast(pl.String),
                        pl.lit(" != PSA total "),
                        pl.col("k_total").cast(pl.String),
                    ),
                )
            )
        )


class InvoiceMissingInBilling(BreakRule):
    """An ERP invoice older than the grace period never reached billing."""

    break_type = "invoice_missing_in_billing"
    severity = "high"
    remediation = "auto"
    reads = ("erp_billing",)

    def find(self, ctx: RuleContext) -> pl.LazyFrame:
        grace = ctx.config.grace_of(self.break_type)
        issued = end_of_day("e_issued")
        return (
            ctx.erp_billing.side(LEFT_ONLY)
            .filter(~pl.col("e_state").is_in(_NOT_BILLABLE_STATES) & (issued + grace <= ctx.as_of))
            .select(
                finding(
                    record("e_system", "invoices", "e_id"),
                    legal_entity=pl.col("e_entity"),
                    amount=pl.col("e_total"),
                    currency=pl.col("e_currency"),
                    since=issued + grace,
                    detail=pl.concat_str(
                        pl.lit("ERP invoice "),
                        pl.col("e_number").fill_null(pl.col("e_id")),
                        pl.lit(" not in billing"),
                    ),
                )
            )
        )


def _with_crm_account(ctx: RuleContext, billing: pl.LazyFrame) -> pl.LazyFrame:
    """Billing invoices with the CRM account behind their customer (billing -> ERP -> CRM)."""
    billing_customers = ctx.accounts.filter(pl.col("source_system") == ctx.systems.billing).select(
        pl.col("source_id").alias("b_customer"), pl.col("erp_customer_id").alias("_erp")
    )
    erp = ctx.erp_customers.select(
        pl.col("source_id").alias("_erp"), pl.col("crm_account_id").alias("_crm_b")
    )
    return billing.join(billing_customers, on="b_customer", how="left").join(
        erp, on="_erp", how="left"
    )


def _psa_crm_account(ctx: RuleContext, psa: pl.LazyFrame) -> pl.LazyFrame:
    """PSA invoices with the CRM account of their project's deal."""
    deal_account = ctx.project_of_deal.select(
        pl.col("p_id").alias("k_project"), pl.col("o_account").alias("_crm_k")
    ).unique("k_project", keep="first")
    return psa.join(deal_account, on="k_project", how="left")


class InvoiceMissingInErp(BreakRule):
    """An invoice raised in the PSA (or present in billing) has no ERP invoice after the grace.

    PSA invoices without an ERP invoice are keyed on the PSA invoice. The billing invoice that
    names it (``psa_invoice_ref``) joins the break's records; failing that, a billing invoice
    with no ERP twin that is the *only* candidate of the same currency, amount and issue date
    (and the PSA invoice its only candidate) joins it too, marked ``"suggested": true`` in the
    records: one problem, reported once, its billing side offered for review. Where both can be
    traced to a CRM account (billing customer -> ERP customer -> CRM account; PSA invoice ->
    project -> deal -> account), the accounts must agree, and such a confirmed candidate
    outranks candidates whose account cannot be traced (they do not make it ambiguous). Billing
    invoices with no ERP twin left over are breaks of their own, keyed on the billing invoice.
    """

    break_type = "invoice_missing_in_erp"
    severity = "high"
    remediation = "manual"
    reads = (
        "psa_erp",
        "erp_billing",
        "billing_invoices",
        "accounts",
        "erp_customers",
        "project_of_deal",
    )
    match_window_days = 3

    def find(self, ctx: RuleContext) -> pl.LazyFrame:
        grace = ctx.config.grace_of(self.break_type)
        k_issued = end_of_day("k_issued")
        b_issued = end_of_day("b_issued")
        billing_by_psa = (
            ctx.billing_invoices.filter(pl.col("b_psa").is_not_null())
            .group_by("b_psa")
            .agg(pl.col("b_system").first(), pl.col("b_id").min())
        )
        psa = (
            ctx.psa_erp.side(LEFT_ONLY)
            .filter(
                ~pl.col("k_status").str.to_lowercase().is_in(_NOT_BILLABLE_STATES)
                & (k_issued + grace <= ctx.as_of)
            )
            .join(billing_by_psa, left_on="k_id", right_on="b_psa", how="left")
        )
        orphans = (
            ctx.erp_billing.side(RIGHT_ONLY)
            .filter(
                ~pl.col("b_state").is_in(_NOT_BILLABLE_STATES) & (b_issued + grace <= ctx.as_of)
            )
            .join(
                psa.select(pl.col("k_id").alias("b_psa")), on="b_psa", how="anti", nulls_equal=False
            )
        )
        unmatched_psa = psa.filter(pl.col("b_id").is_null())
        pairs = (
            _with_crm_account(ctx, orphans).select(
                "b_id", "b_system", "b_issued", "_crm_b",
                pl.col("b_currency").str.to_uppercase().alias("_cur"), pl.col("b_total").alias("_amt"),
            )
            .join(
                _psa_crm_account(ctx, unmatched_psa).select(
                    "k_id", "k_issued", "_crm_k",
                    pl.col("k_currency").str.to_uppercase().alias("_cur"),
                    pl.col("k_total").alias("_amt"),
                ),
                on=["_cur", "_amt"],
            )
            .filter(
                ((pl.col("b_issued") - pl.col("k_issued")).dt.total_days().abs() <= self.match_window_days)
                # the same customer, where both sides can be traced to the CRM account
                & (pl.col("_crm_b").is_null() | pl.col("_crm_k").is_null()
                   | (pl.col("_crm_b") == pl.col("_crm_k")))
            )
        )  # fmt: skip
        # A candidate whose account agrees outranks those whose account cannot be traced: an
        # invoice with a confirmed candidate drops its unconfirmed ones before ties are counted.
        confirmed = (pl.col("_crm_b") == pl.col("_crm_k")).fill_null(False)
        ranked = pairs.with_columns(_confirmed=confirmed).filter(
            pl.col("_confirmed")
            | ~(pl.col("_confirmed").any().over("b_id") | pl.col("_confirmed").any().over("k_id"))
        )
        unique = ranked.filter((pl.len().over("b_id") == 1) & (pl.len().over("k_id") == 1)).select(
            "k_id", pl.col("b_system").alias("_s_system"), pl.col("b_id").alias("_s_id")
        )
        from_psa = psa.join(unique, on="k_id", how="left").select(
            finding(
                record("k_system", "invoices", "k_id"),
                record("b_system", "invoices", "b_id"),
                record("_s_system", "invoices", "_s_id"),
                legal_entity=pl.lit(None, pl.String),
                amount=pl.col("k_total"),
                currency=pl.col("k_currency"),
                since=k_issued + grace,
                detail=pl.when(pl.col("_s_id").is_not_null())
                .then(
                    pl.concat_str(
                        pl.lit("PSA invoice has no ERP invoice; billing invoice "),
                        pl.col("_s_id"),
                        pl.lit(" is its suggested twin"),
                    )
                )
                .otherwise(pl.lit("PSA invoice has no ERP invoice")),
                suggested=(2,),
            )
        )
        from_billing = orphans.join(
            unique.select(pl.col("_s_id").alias("b_id")), on="b_id", how="anti"
        ).select(
            finding(
                record("b_system", "invoices", "b_id"),
                legal_entity=pl.lit(None, pl.String),
                amount=pl.col("b_total"),
                currency=pl.col("b_currency"),
                since=b_issued + grace,
                detail=pl.lit("Billing invoice has no ERP invoice"),
            )
        )
        return pl.concat([from_psa, from_billing], how="vertical")


class InvoiceStatusMismatch(BreakRule):
    """The ERP invoice and its billing twin disagree on status (open, paid, void, ...)."""

    break_type = "invoice_status_mismatch"
    severity = "medium"
    remediation = "approval"
    reads = ("erp_billing",)

    def find(self, ctx: RuleContext) -> pl.LazyFrame:
        return (
            ctx.erp_billing.side(BOTH)
            .filter(pl.col("e_state") != pl.col("b_state"))
            .select(
                finding(
                    record("e_system", "invoices", "e_id"),
                    record("b_system", "invoices", "b_id"),
                    legal_entity=pl.col("e_entity"),
                    amount=pl.col("e_total"),
                    currency=pl.col("e_currency"),
                    since=pl.max_horizontal("e_modified", "b_modified"),
                    detail=pl.concat_str(
                        pl.lit("ERP "), pl.col("e_state"), pl.lit(", billing "), pl.col("b_state")
                    ),
                )
            )
        )


class InvoiceOverdue(BreakRule):
    """An open ERP invoice past its due date with money still owed."""

    break_type = "invoice_overdue"
    severity = "medium"
    remediation = "manual"
    reads = ("erp_invoices", "applications")

    def find(self, ctx: RuleContext) -> pl.LazyFrame:
        applied = ctx.applications.group_by("invoice_ref").agg(
            pl.col("amount_minor").sum().alias("_applied")
        )
        remaining = pl.coalesce("e_remaining", pl.col("e_total") - pl.col("_applied").fill_null(0))
        return (
            ctx.erp_invoices.join(applied, left_on="e_id", right_on="invoice_ref", how="left")
            .with_columns(remaining.alias("_remaining"))
            .filter(
                (pl.col("e_state") == "open")
                & (pl.col("e_due") < ctx.as_of.date())
                & (pl.col("_remaining") > 0)
            )
            .select(
                finding(
                    record("e_system", "invoices", "e_id"),
                    legal_entity=pl.col("e_entity"),
                    amount=pl.col("_remaining"),
                    currency=pl.col("e_currency"),
                    since=day_start("e_due") + timedelta(days=1),
                    detail=pl.concat_str(
                        pl.lit("Due "), pl.col("e_due").cast(pl.String), pl.lit(", unpaid")
                    ),
                )
            )
        )
