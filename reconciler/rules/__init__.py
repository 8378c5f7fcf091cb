"""Break rules, one small class per break type, registered explicitly in RULES."""

from __future__ import annotations

from reconciler.rules.base import FINDING_SCHEMA, BreakRule, finding, record
from reconciler.rules.customers import CustomerDuplicatedInErp, CustomerMissingInErp
from reconciler.rules.deals import (
    CurrencyMismatch,
    ProjectValueMismatch,
    ProjectWithoutDeal,
    WonDealWithoutProject,
)
from reconciler.rules.invoices import (
    InvoiceAmountMismatch,
    InvoiceMissingInBilling,
    InvoiceMissingInErp,
    InvoiceOverdue,
    InvoiceStatusMismatch,
)
from reconciler.rules.payments import DuplicatePayment, UnappliedCash
from reconciler.rules.sources import DuplicateKey, StaleSource
from reconciler.rules.work import ApprovedTimeNotInvoiced, CompletedMilestoneNotInvoiced

RULES: dict[str, type[BreakRule]] = {
    rule.break_type: rule
    for rule in (
        WonDealWithoutProject,
        ProjectWithoutDeal,
        ProjectValueMismatch,
        ApprovedTimeNotInvoiced,
        CompletedMilestoneNotInvoiced,
        InvoiceAmountMismatch,
        InvoiceMissingInBilling,
        InvoiceMissingInErp,
        InvoiceStatusMismatch,
        InvoiceOverdue,
        DuplicatePayment,
        UnappliedCash,
        CurrencyMismatch,
        CustomerMissingInErp,
        CustomerDuplicatedInErp,
        StaleSource,
        DuplicateKey,
    )
}
"""Every break rule by break type, in the taxonomy's order."""

__all__ = [
    "FINDING_SCHEMA",
    "RULES",
    "ApprovedTimeNotInvoiced",
    "BreakRule",
    "CompletedMilestoneNotInvoiced",
    "CurrencyMismatch",
    "CustomerDuplicatedInErp",
    "CustomerMissingInErp",
    "DuplicateKey",
    "DuplicatePayment",
    "InvoiceAmountMismatch",
    "InvoiceMissingInBilling",
    "InvoiceMissingInErp",
    "InvoiceOverdue",
    "InvoiceStatusMismatch",
    "ProjectValueMismatch",
    "ProjectWithoutDeal",
    "StaleSource",
    "UnappliedCash",
    "WonDealWithoutProject",
    "finding",
    "record",
]
