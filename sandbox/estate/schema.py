"""The estate's contract: every vendor object, its wire columns and dtypes, the ground truth, and the Estate interface.

This module is the agreement between the estate (generation, clock, defects) and the simulated
vendor APIs (rendering rows to each vendor's JSON). Column names are the vendor's own wire field
names; dtypes carry facts, not formats: datetimes are `pl.Datetime("us", "UTC")`, dates
`pl.Date`, Salesforce/NetSuite money `pl.Decimal(18, 2)`, Kantata `*_in_cents` and Stripe minor
units `pl.Int64`, ids `pl.Utf8`. Rendering (Salesforce `+0000` datetimes, Stripe unix seconds,
NetSuite strings, Kantata `{"key", "id"}` envelopes) is the API layer's job.

Stability promise: names here are only ever added, never renamed.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

import polars as pl

# --- dtypes -------------------------------------------------------------------------------------

UTC_TS: Final = pl.Datetime("us", "UTC")
"""Every timestamp in the estate (tz-aware UTC, microseconds)."""
DATE: Final = pl.Date
MONEY: Final = pl.Decimal(18, 2)
"""Salesforce and NetSuite amounts (major units, two decimals)."""
RATE: Final = pl.Decimal(18, 6)
"""Exchange rates."""
ID: Final = pl.Utf8
STR: Final = pl.Utf8
BOOL: Final = pl.Boolean
CENTS: Final = pl.Int64
"""Kantata `*_in_cents` and Stripe minor units."""

STRIPE_METADATA: Final = pl.Struct({"netsuite_id": pl.Utf8})
"""Stripe `metadata`: the only key the estate writes is `netsuite_id` (the ERP twin's internal id).
Extra metadata keys given to `Estate.insert`/`update` are dropped (documented in FORMAT.md)."""
STRIPE_INVOICE_TRANSITIONS: Final = pl.Struct(
    {
        "finalized_at": UTC_TS,
        "marked_uncollectible_at": UTC_TS,
        "paid_at": UTC_TS,
        "voided_at": UTC_TS,
    }
)
STRIPE_PAYMENT_REF: Final = pl.Struct({"type": pl.Utf8, "payment_intent": pl.Utf8})
STRIPE_INVOICE_PAYMENT_TRANSITIONS: Final = pl.Struct({"canceled_at": UTC_TS, "paid_at": UTC_TS})

# --- vendors and objects ------------------------------------------------------------------------

VENDORS: Final[tuple[str, ...]] = ("salesforce", "kantata", "netsuite", "stripe")

SCHEMAS: Final[dict[str, dict[str, dict[str, pl.DataType | type[pl.DataType]]]]] = {
    "salesforce": {
        "Account": {
            "Id": ID,
            "Name": STR,
            "Type": STR,  # "Customer" once a deal is won, else "Prospect"
            "Industry": STR,
            "BillingCountry": STR,  # ISO 3166 alpha-2 of the legal entity's country
            "CurrencyIsoCode": STR,
            "Legal_Entity__c": STR,  # legal entity code, see Estate.legal_entities
            "Payment_Terms__c": STR,  # "Net 30" | "Net 45" | "Net 60"
            "IsDeleted": BOOL,
            "CreatedDate": UTC_TS,
            "LastModifiedDate": UTC_TS,
            "SystemModstamp": UTC_TS,
        },
        "Opportunity": {
            "Id": ID,
            "Name": STR,
            "AccountId": ID,
            "StageName": STR,  # Prospecting, Qualification, Proposal, Negotiation, Closed Won, Closed Lost
            "IsWon": BOOL,
            "IsClosed": BOOL,
            "Amount": MONEY,  # total contract value (retainer: monthly fee x Term_Months__c)
            "CurrencyIsoCode": STR,
            "CloseDate": DATE,
            "Probability": pl.Float64,  # percent, not money
            "Type": STR,  # "New Business" | "Existing Business"
            "Billing_Model__c": STR,  # "Time and Materials" | "Fixed Fee" | "Retainer"
            "Term_Months__c": pl.Int32,  # contract length in months
            "IsDeleted": BOOL,
            "CreatedDate": UTC_TS,
            "LastModifiedDate": UTC_TS,
            "SystemModstamp": UTC_TS,
        },
        "OpportunityHistory": {
            "Id": ID,
            "OpportunityId": ID,
            "StageName": STR,
            "Amount": MONEY,
            "CloseDate": DATE,
            "Probability": pl.Float64,
            "IsDeleted": BOOL,
            "CreatedDate": UTC_TS,  # when the opportunity entered StageName
            "SystemModstamp": UTC_TS,
        },
    },
    "kantata": {
        "workspaces": {
            "id": ID,
            "title": STR,
            "archived": BOOL,
            "start_date": DATE,
            "due_date": DATE,
            "price_in_cents": CENTS,  # contract value in the workspace currency
            "currency": STR,  # ISO 4217 upper case
            "status_key": STR,  # "active" | "completed"
            "creator_id": ID,
            "external_reference_ids": pl.List(pl.Utf8),  # ids in external_references
            "created_at": UTC_TS,
            "updated_at": UTC_TS,
        },
        "external_references": {
            "id": ID,
            "subject_type": STR,  # "Workspace"
            "subject_id": ID,  # workspaces.id
            "service_name": STR,  # "Salesforce"
            "service_model": STR,  # "Opportunity"
            "service_model_ref": ID,  # Salesforce Opportunity.Id
            "status": STR,  # "synced"
            "external_status": STR,  # the opportunity stage at link time
            "created_at": UTC_TS,
            "updated_at": UTC_TS,
        },
        "time_entries": {
            "id": ID,
            "workspace_id": ID,
            "user_id": ID,
            "story_id": ID,  # always null in the generated estate
            "date_performed": DATE,  # one entry per consultant per week (the week's Friday)
            "time_in_minutes": pl.Int32,
            "billable": BOOL,  # True on time-and-materials workspaces only
            "rate_in_cents": CENTS,  # hourly rate in the entry currency
            "cost_rate_in_cents": CENTS,
            "currency": STR,
            "approved": BOOL,
            "approved_at": UTC_TS,  # simulator extension: when the approval happened (null if not)
            "is_invoiced": BOOL,
            "invoice_id": ID,  # kantata invoices.id once invoiced
            "created_at": UTC_TS,  # submission time
            "updated_at": UTC_TS,
        },
        "stories": {
            "id": ID,
            "workspace_id": ID,
            "title": STR,
            "story_type": STR,  # "milestone" (fixed-fee billing milestones)
            "state": STR,  # "not started" | "started" | "completed"
            "price_in_cents": CENTS,
            "currency": STR,
            "start_date": DATE,
            "due_date": DATE,
            "completed_at": UTC_TS,  # simulator extension: null unless completed
            "invoice_id": ID,
            "created_at": UTC_TS,
            "updated_at": UTC_TS,
        },
        "invoices": {
            "id": ID,
            "user_invoice_number": STR,
            "invoice_date": DATE,
            "due_date": DATE,
            "draft": BOOL,
            "status": STR,  # "new" | "accepted payment"
            "balance_in_cents": CENTS,  # the invoice total (no tax in the estate)
            "currency": STR,
            "payment_schedule": STR,  # "Net 30" | "Net 45" | "Net 60"
            "workspace_ids": pl.List(pl.Utf8),  # one workspace per generated invoice
            "created_at": UTC_TS,
            "updated_at": UTC_TS,
        },
    },
    "netsuite": {
        "subsidiary": {
            "id": ID,
            "name": STR,
            "country": STR,
            "currency": ID,  # currency.id
            "lastmodifieddate": UTC_TS,
        },
        "currency": {
            "id": ID,
            "name": STR,
            "symbol": STR,  # ISO 4217, e.g. "USD"
            "isbasecurrency": BOOL,
            "exchangerate": RATE,  # units of the base currency (USD) per unit, as of estate.now
            "lastmodifieddate": UTC_TS,
        },
        "term": {
            "id": ID,
            "name": STR,  # "Net 30" | "Net 45" | "Net 60"
            "daysuntilnetdue": pl.Int32,
            "lastmodifieddate": UTC_TS,
        },
        "customer": {
            "id": ID,
            "entityid": STR,
            "companyname": STR,
            "externalid": ID,  # Salesforce Account.Id (null on an unlinked duplicate)
            "subsidiary": ID,
            "currency": ID,
            "terms": ID,
            "email": STR,
            "isinactive": BOOL,
            "datecreated": UTC_TS,
            "lastmodifieddate": UTC_TS,
        },
        "job": {
            "id": ID,
            "entityid": STR,
            "companyname": STR,
            "externalid": ID,  # Kantata workspaces.id
            "parent": ID,  # customer.id
            "subsidiary": ID,
            "currency": ID,
            "startdate": DATE,
            "projectedenddate": DATE,
            "entitystatus": STR,  # "In Progress" | "Closed"
            "datecreated": UTC_TS,
            "lastmodifieddate": UTC_TS,
        },
        "transaction": {
            "id": ID,
            "tranid": STR,  # "INV-000001" | "PYMT-000001"
            "type": STR,  # "CustInvc" | "CustPymt"
            "entity": ID,  # customer.id
            "job": ID,  # job.id (invoices only)
            "externalid": ID,  # invoices: Kantata invoices.id; payments: null
            "status": STR,  # CustInvc: "A" open, "B" paid in full, "V" voided; CustPymt: "C" deposited
            "trandate": DATE,
            "duedate": DATE,  # invoices only
            "currency": ID,  # currency.id
            "exchangerate": RATE,  # to the subsidiary base currency at trandate
            "foreigntotal": MONEY,
            "foreignamountunpaid": MONEY,  # invoices only
            "foreignpaymentamountused": MONEY,  # payments only
            "foreignpaymentamountunused": MONEY,  # payments only: unapplied cash
            "subsidiary": ID,
            "terms": ID,
            "memo": STR,  # payments: the payer's remittance reference
            "createddate": UTC_TS,
            "lastmodifieddate": UTC_TS,
        },
        "nexttransactionlinelink": {
            # Payment applications (payment -> invoice). SuiteQL's NextTransactionLineLink has no
            # single-column key; `id` is "<nextdoc>-<previousdoc>" so writes can address a row.
            "id": ID,
            "previousdoc": ID,  # the invoice (transaction.id)
            "previoustype": STR,  # "CustInvc"
            "nextdoc": ID,  # the payment (transaction.id)
            "nexttype": STR,  # "CustPymt"
            "linktype": STR,  # "Payment"
            "foreignamount": MONEY,
            "linkdate": DATE,
            "lastmodifieddate": UTC_TS,
        },
    },
    "stripe": {
        "customers": {
            "id": ID,
            "object": STR,  # "customer"
            "name": STR,
            "email": STR,
            "currency": STR,  # lower case
            "livemode": BOOL,
            "metadata": STRIPE_METADATA,  # netsuite_id = NetSuite customer.id
            "created": UTC_TS,  # rendered as unix seconds by the API
        },
        "invoices": {
            "id": ID,
            "object": STR,  # "invoice"
            "customer": ID,
            "number": STR,
            "status": STR,  # draft | open | paid | uncollectible | void
            "collection_method": STR,  # "send_invoice"
            "currency": STR,  # lower case
            "amount_due": CENTS,
            "amount_paid": CENTS,
            "amount_remaining": CENTS,
            "total": CENTS,
            "due_date": UTC_TS,
            "livemode": BOOL,
            "metadata": STRIPE_METADATA,  # netsuite_id = NetSuite transaction.id (CustInvc)
            "status_transitions": STRIPE_INVOICE_TRANSITIONS,
            "created": UTC_TS,
        },
        "payment_intents": {
            "id": ID,
            "object": STR,  # "payment_intent"
            "customer": ID,
            "amount": CENTS,
            "amount_received": CENTS,
            "currency": STR,
            "status": STR,  # "succeeded"
            "description": STR,  # the payer's remittance reference (= NetSuite payment memo)
            "latest_charge": ID,  # always null in the generated estate
            "livemode": BOOL,
            "metadata": STRIPE_METADATA,  # netsuite_id = NetSuite transaction.id (CustPymt)
            "created": UTC_TS,
        },
        "invoice_payments": {
            "id": ID,
            "object": STR,  # "invoice_payment"
            "invoice": ID,
            "amount_paid": CENTS,
            "amount_requested": CENTS,
            "currency": STR,
            "is_default": BOOL,
            "livemode": BOOL,
            "status": STR,  # "paid"
            "payment": STRIPE_PAYMENT_REF,  # {"type": "payment_intent", "payment_intent": "pi_..."}
            "status_transitions": STRIPE_INVOICE_PAYMENT_TRANSITIONS,
            "created": UTC_TS,
        },
        "events": {
            # data.object is rendered by the API from the current row `data_object_id` in the
            # frame named by EVENT_OBJECT_FRAMES[data_object_type] (current state, not a snapshot).
            "id": ID,
            "object": STR,  # "event"
            "type": STR,  # e.g. "invoice.created", "invoice.paid", "payment_intent.succeeded"
            "api_version": STR,
            "livemode": BOOL,
            "data_object_id": ID,
            "data_object_type": STR,  # the object's `object` value: "invoice", "customer", ...
            "request_id": ID,  # null for events not caused by an API request
            "request_idempotency_key": STR,
            "created": UTC_TS,
        },
    },
}

EVENT_OBJECT_FRAMES: Final[dict[str, str]] = {
    "customer": "customers",
    "invoice": "invoices",
    "payment_intent": "payment_intents",
    "invoice_payment": "invoice_payments",
}
"""Stripe event `data_object_type` -> the stripe frame holding that object."""

STRIPE_API_VERSION: Final = "2026-06-24.dahlia"
STRIPE_EVENT_RETENTION: Final = timedelta(days=30)

ID_COLUMN: Final[dict[str, str]] = {
    "salesforce": "Id",
    "kantata": "id",
    "netsuite": "id",
    "stripe": "id",
}

MODIFIED_COLUMN: Final[dict[tuple[str, str], str]] = {
    ("salesforce", "Account"): "SystemModstamp",
    ("salesforce", "Opportunity"): "SystemModstamp",
    ("salesforce", "OpportunityHistory"): "SystemModstamp",
    ("kantata", "workspaces"): "updated_at",
    ("kantata", "external_references"): "updated_at",
    ("kantata", "time_entries"): "updated_at",
    ("kantata", "stories"): "updated_at",
    ("kantata", "invoices"): "updated_at",
    ("netsuite", "subsidiary"): "lastmodifieddate",
    ("netsuite", "currency"): "lastmodifieddate",
    ("netsuite", "term"): "lastmodifieddate",
    ("netsuite", "customer"): "lastmodifieddate",
    ("netsuite", "job"): "lastmodifieddate",
    ("netsuite", "transaction"): "lastmodifieddate",
    ("netsuite", "nexttransactionlinelink"): "lastmodifieddate",
    # Stripe has no modified stamp on the wire: changes are announced in the events feed.
    ("stripe", "customers"): "created",
    ("stripe", "invoices"): "created",
    ("stripe", "payment_intents"): "created",
    ("stripe", "invoice_payments"): "created",
    ("stripe", "events"): "created",
}
"""The column incremental polls filter on (Stripe: `created`, changes come through events)."""

CREATED_COLUMN: Final[dict[tuple[str, str], str]] = {
    ("salesforce", "Account"): "CreatedDate",
    ("salesforce", "Opportunity"): "CreatedDate",
    ("salesforce", "OpportunityHistory"): "CreatedDate",
    ("kantata", "workspaces"): "created_at",
    ("kantata", "external_references"): "created_at",
    ("kantata", "time_entries"): "created_at",
    ("kantata", "stories"): "created_at",
    ("kantata", "invoices"): "created_at",
    ("netsuite", "subsidiary"): "lastmodifieddate",
    ("netsuite", "currency"): "lastmodifieddate",
    ("netsuite", "term"): "lastmodifieddate",
    ("netsuite", "customer"): "datecreated",
    ("netsuite", "job"): "datecreated",
    ("netsuite", "transaction"): "createddate",
    ("netsuite", "nexttransactionlinelink"): "lastmodifieddate",
    ("stripe", "customers"): "created",
    ("stripe", "invoices"): "created",
    ("stripe", "payment_intents"): "created",
    ("stripe", "invoice_payments"): "created",
    ("stripe", "events"): "created",
}

EXTRA_MODIFIED_COLUMNS: Final[dict[tuple[str, str], tuple[str, ...]]] = {
    ("salesforce", "Account"): ("LastModifiedDate",),
    ("salesforce", "Opportunity"): ("LastModifiedDate",),
}
"""Other columns `insert`/`update` stamp with `estate.now` besides MODIFIED_COLUMN."""

# --- ground truth -------------------------------------------------------------------------------

BREAK_TYPES: Final[tuple[str, ...]] = (
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
)

GROUND_TRUTH_SCHEMA: Final[dict[str, pl.DataType | type[pl.DataType]]] = {
    "defect_id": ID,  # stable for the life of the estate, e.g. "GT-won_deal_without_project-000012"
    "break_type": STR,  # one of BREAK_TYPES
    "records": STR,  # JSON list of {"vendor", "object", "id"}
    "amount_at_risk": STR,  # Decimal as a string, e.g. "1250.00"
    "currency": STR,  # ISO 4217 of amount_at_risk
    "injected_at": UTC_TS,  # when the defect became true (<= estate.now)
    "resolved_at": UTC_TS,  # null while the defect is still visible in the vendor data
    "detail": STR,  # one human sentence: what is wrong
}

OUTAGE_SCHEMA: Final[dict[str, pl.DataType | type[pl.DataType]]] = {
    "defect_id": ID,  # the stale_source ground-truth row
    "vendor": STR,
    "starts_at": UTC_TS,
    "ends_at": UTC_TS,
}
"""stale_source is not a data defect: it is a window in which a vendor's API must fail (HTTP 503 in
the vendor's error format). The API fault layer asks `estate.source_available(vendor)`."""

DEFAULT_DEFECT_RATES: Final[dict[str, float]] = {
    # fraction of the eligible population (named after each rate) that carries the defect
    "won_deal_without_project": 0.02,  # won opportunities
    "project_without_deal": 0.01,  # workspaces (their opportunity is absent from Salesforce)
    "project_value_mismatch": 0.02,  # workspaces
    "approved_time_not_invoiced": 0.004,  # approved billable time entries
    "completed_milestone_not_invoiced": 0.03,  # completed milestones
    "invoice_amount_mismatch": 0.01,  # ERP invoices
    "invoice_missing_in_billing": 0.01,  # ERP invoices
    "invoice_missing_in_erp": 0.005,  # billing invoices
    "invoice_status_mismatch": 0.01,  # ERP invoices
    "invoice_overdue": 0.03,  # invoices whose payer never pays (late payers add more, naturally)
    "duplicate_payment": 0.005,  # payments
    "unapplied_cash": 0.005,  # payments
    "currency_mismatch": 0.005,  # workspaces and billing invoices
    "customer_missing_in_erp": 0.01,  # customers (accounts with a won deal)
    "customer_duplicated_in_erp": 0.01,  # customers
    "stale_source": 1.0,  # outages per vendor per 30 simulated days (scheduled after now)
}

GRACE: Final[dict[str, timedelta]] = {
    "won_deal_without_project": timedelta(days=14),
    "customer_missing_in_erp": timedelta(days=14),
    "invoice_missing_in_billing": timedelta(days=3),
    "invoice_missing_in_erp": timedelta(days=3),
    "completed_milestone_not_invoiced": timedelta(days=10),
}
"""How long a hand-off may legitimately lag in the clean estate before it counts as a break."""


class EstateInterface(ABC):
    """The simulated firm: one polars frame per vendor object, a clock, and the ground truth.

    Thread safety: the API layer holds `lock` around every read-then-render and every write;
    `advance`/`tick` take the same lock.
    """

    lock: threading.RLock

    # --- construction -----------------------------------------------------------------------
    @classmethod
    @abstractmethod
    def generate(
        cls,
        seed: int,
        scale: float = 1.0,
        defect_rates: dict[str, float] | None = None,
    ) -> EstateInterface:
        """Build the firm deterministically from `seed` (same seed and scale => same estate).

        `scale` multiplies every volume (1.0 ≈ 2,000 accounts, 20,000 opportunities over 24
        months); fractional scales are fine for tests. `defect_rates` overrides entries of
        DEFAULT_DEFECT_RATES (unknown keys raise ValueError).
        """

    @classmethod
    @abstractmethod
    def load(cls, path: str | Path) -> EstateInterface:
        """Read an estate written by `export` (or supplied by a firm in the FORMAT.md layout)."""

    @abstractmethod
    def export(self, path: str | Path) -> Path:
        """Write per-vendor JSON files, ground_truth.json and manifest.json under `path`.

        Byte-identical for the same seed, scale and clock. Returns the manifest path.
        """

    # --- reading ----------------------------------------------------------------------------
    @abstractmethod
    def frame(self, vendor: str, obj: str) -> pl.DataFrame:
        """The current state of one vendor object as of `now` (columns: SCHEMAS[vendor][obj]).

        Cheap to call repeatedly: the frame is cached until the next write or clock move.
        Raises KeyError for an unknown vendor or object.
        """

    @abstractmethod
    def objects(self, vendor: str) -> list[str]:
        """Object names of one vendor, in SCHEMAS order."""

    @abstractmethod
    def get(self, vendor: str, obj: str, id: str) -> dict[str, Any] | None:
        """One row as a dict (typed values: datetime, date, Decimal, int, bool, dict, list)."""

    @property
    @abstractmethod
    def now(self) -> datetime:
        """The simulated clock (tz-aware UTC)."""

    @property
    @abstractmethod
    def ground_truth(self) -> pl.DataFrame:
        """Injected defects as of `now` (GROUND_TRUTH_SCHEMA), ordered by defect_id."""

    @property
    @abstractmethod
    def legal_entities(self) -> pl.DataFrame:
        """code, name, country, currency, netsuite_subsidiary_id, holiday_calendar."""

    @property
    @abstractmethod
    def fx_rates(self) -> pl.DataFrame:
        """date, currency, usd_per_unit (Decimal): one row per day and non-USD currency."""

    @property
    @abstractmethod
    def holidays(self) -> pl.DataFrame:
        """calendar, date, name: public holidays of each legal entity's country."""

    @property
    @abstractmethod
    def payment_terms(self) -> pl.DataFrame:
        """name, days: the payment terms in use (Net 30/45/60)."""

    @property
    @abstractmethod
    def outages(self) -> pl.DataFrame:
        """Scheduled stale-source windows (OUTAGE_SCHEMA), including future ones."""

    @abstractmethod
    def source_available(self, vendor: str, at: datetime | None = None) -> bool:
        """False while `at` (default `now`) falls inside an outage of `vendor`.

        The API fault layer answers every request of that vendor with a 503 meanwhile.
        """

    # --- writing (resyncs through the APIs) --------------------------------------------------
    @abstractmethod
    def insert(self, vendor: str, obj: str, rows: list[dict[str, Any]]) -> list[str]:
        """Append rows; assign vendor-shaped ids where missing; stamp created/modified with `now`.

        Missing columns are null (booleans False, Stripe `object`/`livemode` filled in); keys
        that are not columns of the object are ignored. Stripe inserts also append
        `<object>.created` events. Returns the ids in row order.
        """

    @abstractmethod
    def update(self, vendor: str, obj: str, id: str, changes: dict[str, Any]) -> None:
        """Change fields of one row, bump its modified stamp to `now` (Stripe: append an
        `<object>.updated` event, or `invoice.paid`/`invoice.voided` on those status changes).
        Raises KeyError if the row does not exist."""

    # --- the clock ---------------------------------------------------------------------------
    @abstractmethod
    def advance(self, duration: timedelta) -> None:
        """Move `now` forward: new deals, stage changes, time, approvals, invoices, payments and
        new defects appear with stamps inside the advanced window. Writes made so far are kept."""

    @abstractmethod
    def tick(self, real_elapsed: timedelta | float, speedup: float) -> timedelta:
        """Real-time hook: advance by `real_elapsed` (seconds if float) x `speedup`; returns the
        simulated duration advanced. The server calls it periodically (e.g. every second)."""
