"""Hand-built canonical estates for reconciler tests: a few readable records per case."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import polars as pl

import store
from reconciler import Canonical

AS_OF = datetime(2026, 6, 30, 12, 0, tzinfo=UTC)
LONG_AGO = AS_OF - timedelta(days=200)


def ago(days: float) -> datetime:
    return AS_OF - timedelta(days=days)


def day(days_ago: int) -> date:
    return (AS_OF - timedelta(days=days_ago)).date()


class Estate:
    """Canonical records added one by one; ``canonical()`` turns them into a run's input."""

    def __init__(self) -> None:
        self.rows: dict[str, list[dict[str, Any]]] = {name: [] for name in store.ENTITIES}
        self.health: list[dict[str, Any]] = []

    def add(self, entity: str, system: str, source_id: str, **fields: Any) -> str:
        row = {
            "source_system": system,
            "source_id": source_id,
            "source_modified_at": fields.pop("modified", LONG_AGO),
            "is_deleted": False,
            "currency": "USD",
            **fields,
        }
        self.rows[entity].append(row)
        return source_id

    # --- CRM
    def account(self, sid: str, *, system: str = "salesforce", **kw: Any) -> str:
        kw.setdefault("name", f"Customer {sid}")
        kw.setdefault("legal_entity", "US01")
        if system == "salesforce":
            kw.setdefault("crm_account_id", sid)
        return self.add("accounts", system, sid, **kw)

    def customer(self, sid: str, crm: str | None, **kw: Any) -> str:
        """An ERP customer linked to CRM account ``crm``."""
        kw.setdefault("name", f"Customer {crm or sid}")
        return self.account(sid, system="netsuite", crm_account_id=crm, erp_customer_id=sid, **kw)

    def deal(self, sid: str, *, account: str = "A1", amount: int = 100_000,
             won_days_ago: float | None = 60, **kw: Any) -> str:  # fmt: skip
        won = won_days_ago is not None
        kw.setdefault("stage", "Closed Won" if won else "Negotiation")
        kw.setdefault("is_won", won)
        kw.setdefault("is_closed", kw["is_won"])
        return self.add(
            "opportunities", "salesforce", sid, account_ref=account, amount_minor=amount,
            won_at=ago(won_days_ago) if won else None,
            created_at_source=ago(300), **kw,
        )  # fmt: skip

    # --- PSA
    def project(self, sid: str, deal: str | None, *, budget: int = 100_000, **kw: Any) -> str:
        kw.setdefault("status", "active")
        kw.setdefault("created_at_source", ago(50))
        kw.setdefault("activated_at", kw["created_at_source"])
        return self.add("projects", "kantata", sid, opportunity_ref=deal, budget_minor=budget, **kw)

    def time(self, sid: str, project: str, *, worked: date, minutes: int = 60,
             rate: int = 10_000, approved_at: datetime | None = None,
             invoice: str | None = None, billable: bool = True, **kw: Any) -> str:  # fmt: skip
        kw.setdefault("status", "approved" if approved_at else "submitted")
        return self.add(
            "time_entries", "kantata", sid, project_ref=project, entry_date=worked,
            minutes=minutes, billable=billable, rate_minor=rate, approved_at=approved_at,
            invoice_ref=invoice, **kw,
        )  # fmt: skip

    def milestone(self, sid: str, project: str, *, amount: int = 50_000,
                  completed_at: datetime | None = None, invoice: str | None = None,
                  **kw: Any) -> str:  # fmt: skip
        kw.setdefault("status", "completed" if completed_at else "started")
        return self.add(
            "milestones", "kantata", sid, project_ref=project, amount_minor=amount,
            completed_at=completed_at, invoice_ref=invoice, name=f"M {sid}", **kw,
        )  # fmt: skip

    # --- invoices (PSA, ERP, billing)
    def invoice(self, system: str, sid: str, *, total: int = 100_000,
                issued: date | None = None, **kw: Any) -> str:  # fmt: skip
        kw.setdefault("status", "open")
        kw.setdefault("issued_on", issued or day(40))
        return self.add("invoices", system, sid, total_minor=total, **kw)

    def psa_invoice(self, sid: str, project: str | None = None, **kw: Any) -> str:
        return self.invoice("kantata", sid, project_ref=project, **kw)

    def erp_invoice(self, sid: str, *, psa: str | None = None, customer: str = "C1",
                    **kw: Any) -> str:  # fmt: skip
        kw.setdefault("due_on", (kw.get("issued") or day(40)) + timedelta(days=30))
        kw.setdefault("amount_remaining_minor", kw.get("total", 100_000))
        return self.invoice("netsuite", sid, psa_invoice_ref=psa, customer_ref=customer, **kw)

    def billing_invoice(self, sid: str, *, erp: str | None, **kw: Any) -> str:
        return self.invoice("stripe", sid, twin_ref=erp, customer_ref="cus_1", **kw)

    # --- cash
    def payment(self, sid: str, *, amount: int, customer: str = "C1",
                received_days_ago: float = 5, unapplied: int | None = 0,
                reference: str | None = None, **kw: Any) -> str:  # fmt: skip
        kw.setdefault("status", "deposited")
        return self.add(
            "payments", "netsuite", sid, customer_ref=customer, amount_minor=amount,
            unapplied_minor=unapplied, received_at=ago(received_days_ago),
            reference=reference or f"REF-{sid}", **kw,
        )  # fmt: skip

    def apply(self, sid: str, payment: str, invoice: str, amount: int,
              applied_days_ago: float = 5, **kw: Any) -> str:  # fmt: skip
        return self.add(
            "payment_applications", "netsuite", sid, payment_ref=payment, invoice_ref=invoice,
            amount_minor=amount, applied_at=ago(applied_days_ago), **kw,
        )  # fmt: skip

    def probe(
        self, system: str, *, success_hours_ago: float | None, attempt_hours_ago: float = 0
    ) -> None:
        self.health.append(
            {
                "source_system": system,
                "last_attempt_at": AS_OF - timedelta(hours=attempt_hours_ago),
                "last_success_at": None
                if success_hours_ago is None
                else AS_OF - timedelta(hours=success_hours_ago),
            }
        )

    # --- output
    def frames(self) -> dict[str, pl.DataFrame]:
        out = {}
        for name, rows in self.rows.items():
            schema = store.ENTITIES[name].polars_schema
            out[name] = pl.DataFrame(
                [{c: r.get(c) for c in schema} for r in rows], schema=schema, orient="row"
            )
        return out

    def canonical(self) -> Canonical:
        health = pl.DataFrame(
            self.health,
            schema={
                "source_system": pl.String(),
                "last_attempt_at": pl.Datetime("us", "UTC"),
                "last_success_at": pl.Datetime("us", "UTC"),
            },
        )
        return Canonical.from_frames(self.frames(), health)

    def write(self, db: store.Store) -> None:
        """Put the records in a store (one batch; the store stamps its bookkeeping)."""
        frames = {n: f for n, f in self.frames().items() if f.height}
        db.ingest(store.IngestBatch(frames=frames, observed_at=AS_OF))
