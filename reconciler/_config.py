"""Reconciler configuration: system roles, tolerances, grace periods, FX table, calendars, SLAs.

One frozen value, validated when built, passed to every run. The defaults are the estate's
hand-off conventions (how long a hand-off may legitimately lag before it is a break); a firm
changes them here, not in the rules.

FX: ``fx_rates`` maps an ISO currency to the units of ``reporting_currency`` one unit of it is
worth (``{"EUR": Decimal("1.08")}`` with reporting USD). It is a settings-provided table: the
canonical store keeps no rates. A currency without a rate gets no reporting amount (null), and
KPIs that need one count what they had to leave out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from types import MappingProxyType

from store import normalize_currency

BREAK_TYPES: tuple[str, ...] = (
    "won_deal_without_project",
    "project_without_deal",
    "project_value_mismatch",
    "approved_time_not_invoiced",
    "completed_milestone_not_invoiced",
    "invoice_amount_mismatch",
    "invoice_missing_in_billing",
    "invoice_missing_in_erp",
    "invoice_status_mismatch",
    "invoice_overdue",
    "duplicate_payment",
    "unapplied_cash",
    "currency_mismatch",
    "customer_missing_in_erp",
    "customer_duplicated_in_erp",
    "stale_source",
    "duplicate_key",
)
"""Every break type; the first sixteen are ARCHITECTURE.md's taxonomy, ``duplicate_key`` is the
data-quality break raised when a link that must be unique meets the same key twice."""


DEFAULT_GRACE: Mapping[str, timedelta] = MappingProxyType(
    {
        "won_deal_without_project": timedelta(days=14),
        "customer_missing_in_erp": timedelta(days=14),
        "invoice_missing_in_billing": timedelta(days=3),
        "invoice_missing_in_erp": timedelta(days=3),
        "completed_milestone_not_invoiced": timedelta(days=10),
    }
)
"""How long a hand-off may lag before it counts as a break."""

DEFAULT_SLA_BUSINESS_DAYS: Mapping[str, int] = MappingProxyType(
    {
        "won_deal_without_project": 3,
        "project_without_deal": 5,
        "project_value_mismatch": 5,
        "approved_time_not_invoiced": 5,
        "completed_milestone_not_invoiced": 5,
        "invoice_amount_mismatch": 3,
        "invoice_missing_in_billing": 2,
        "invoice_missing_in_erp": 2,
        "invoice_status_mismatch": 3,
        "invoice_overdue": 10,
        "duplicate_payment": 2,
        "unapplied_cash": 3,
        "currency_mismatch": 3,
        "customer_missing_in_erp": 2,
        "customer_duplicated_in_erp": 5,
        "stale_source": 1,
        "duplicate_key": 5,
    }
)
"""Business days a break of each type may stay open before its SLA is breached."""

DEFAULT_STUCK_AFTER: Mapping[str, timedelta] = MappingProxyType(
    {
        "won": timedelta(days=14),
        "project_created": timedelta(days=14),
        "project_active": timedelta(days=60),
        "invoiced": timedelta(days=75),
    }
)
"""How long a deal may sit in a chain stage before it counts as a stuck transaction."""

DEFAULT_INVOICE_STATUS: Mapping[str, str] = MappingProxyType(
    {
        # NetSuite CustInvc status codes, then the words probes or vendors use.
        "a": "open",
        "b": "paid",
        "v": "void",
        "open": "open",
        "pending approval": "open",
        "pending_approval": "open",
        "paid": "paid",
        "paid in full": "paid",
        "void": "void",
        "voided": "void",
        "uncollectible": "uncollectible",
        "draft": "draft",
    }
)
"""Invoice status (lower case) -> the normalised status compared between ERP and billing."""


@dataclass(frozen=True)
class Systems:
    """Which source system plays which role in the chain (the canonical ``source_system``)."""

    crm: str = "salesforce"
    psa: str = "kantata"
    erp: str = "netsuite"
    billing: str = "stripe"


@dataclass(frozen=True)
class Calendar:
    """A legal entity's working days: weekend (ISO weekdays, Mon=1) and public holidays."""

    weekend: tuple[int, ...] = (6, 7)
    holidays: frozenset[date] = frozenset()

    @property
    def week_mask(self) -> tuple[bool, bool, bool, bool, bool, bool, bool]:
        m = [d not in self.weekend for d in range(1, 8)]
        return (m[0], m[1], m[2], m[3], m[4], m[5], m[6])


@dataclass(frozen=True)
class ReconcileConfig:
    """Everything a reconcile run needs besides the data and its as-of time."""

    systems: Systems = field(default_factory=Systems)
    reporting_currency: str = "USD"
    fx_rates: Mapping[str, Decimal] = field(default_factory=lambda: MappingProxyType({}))
    calendars: Mapping[str, Calendar] = field(default_factory=lambda: MappingProxyType({}))
    default_calendar: Calendar = field(default_factory=Calendar)
    grace: Mapping[str, timedelta] = field(default_factory=lambda: DEFAULT_GRACE)
    sla_business_days: Mapping[str, int] = field(default_factory=lambda: DEFAULT_SLA_BUSINESS_DAYS)
    stuck_after: Mapping[str, timedelta] = field(default_factory=lambda: DEFAULT_STUCK_AFTER)
    invoice_status: Mapping[str, str] = field(default_factory=lambda: DEFAULT_INVOICE_STATUS)
    time_billing_offset: timedelta = timedelta(days=10, hours=10)
    """Approved time of month m must be invoiced by (first day of m+1) + this offset."""
    amount_tolerance_minor: int = 0
    """Largest difference (minor units) between two amounts that still counts as equal."""
    suggestion_amount_ratio: Decimal = Decimal("0.02")
    """Suggested links: amounts may differ by this fraction of the larger one."""
    suggestion_window: timedelta = timedelta(days=30)
    """Suggested links: the two records' times may be this far apart."""
    stale_after: timedelta = timedelta(hours=1)
    """A source whose last successful probe run is older than this is stale."""
    new_window: timedelta = timedelta(hours=24)
    """A break stays 'new' (or 'reopened') this long before a run moves it to 'open'."""
    kpi_window_days: int = 90
    """Trailing window of DSO, invoice accuracy and bookings-to-billings."""
    legal_entity_aliases: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    """Another system's name of a legal entity -> the code the CRM uses (ERP subsidiaries are
    named, CRM accounts carry a code): without it one entity is two in every breakdown."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "reporting_currency", normalize_currency(self.reporting_currency))
        rates: dict[str, Decimal] = {}
        for code, rate in self.fx_rates.items():
            value = Decimal(rate)
            if value <= 0:
                raise ValueError(f"fx rate of {code} must be positive, got {rate}")
            rates[normalize_currency(code)] = value
        rates.setdefault(self.reporting_currency, Decimal(1))
        object.__setattr__(self, "fx_rates", MappingProxyType(rates))
        for name in ("grace", "sla_business_days"):
            unknown = set(getattr(self, name)) - set(BREAK_TYPES)
            if unknown:
                raise ValueError(f"{name}: unknown break types {sorted(unknown)}")
        unknown_stages = set(self.stuck_after) - set(DEFAULT_STUCK_AFTER)
        if unknown_stages:
            raise ValueError(f"stuck_after: unknown stages {sorted(unknown_stages)}")
        if self.amount_tolerance_minor < 0:
            raise ValueError("amount_tolerance_minor must not be negative")
        if self.kpi_window_days <= 0:
            raise ValueError("kpi_window_days must be positive")
        for name in ("calendars", "invoice_status", "legal_entity_aliases"):
            object.__setattr__(self, name, MappingProxyType(dict(getattr(self, name))))

    def calendar(self, legal_entity: str | None) -> Calendar:
        """The calendar of a legal entity (the default one when it has none of its own)."""
        if legal_entity is None:
            return self.default_calendar
        return self.calendars.get(legal_entity, self.default_calendar)

    def grace_of(self, break_type: str) -> timedelta:
        return self.grace.get(break_type, timedelta(0))
