"""Fixtures of the console tests: a small reconciled estate in a store, users of every role.

The estate (``tests/reconciler/estate.py``) holds a few readable problems: deal D2 won without a
project (250,000.00 USD at risk), approved time of deal D1 never invoiced, ERP invoice I1 missing
in billing, an unapplied payment; two reconcile runs (ten days apart) give the KPI snapshots
their change; a quarantined record and probe runs feed the Sources page.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

import store
from dashboards.service import ConsoleConfig, Role, User
from reconciler import run_reconcile
from tests.reconciler.estate import AS_OF, Estate, ago, day

VIEWER = User("vera", Role.VIEWER, "local")
OPERATOR = User("otto", Role.OPERATOR, "local")
APPROVER = User("anna", Role.APPROVER, "local")


def small_estate() -> Estate:
    e = Estate()
    e.account("A1")
    e.customer("C1", "A1")
    e.deal("D1", amount=500_000, won_days_ago=90, name="Implementation for A1")
    e.project("P1", "D1", budget=500_000, created_at_source=ago(85))
    e.time("T1", "P1", worked=day(60), minutes=600, rate=15_000, approved_at=ago(58))
    e.erp_invoice("I1", customer="C1", opportunity_ref="D1", project_ref="P1", total=200_000,
                  number="INV-1001")  # fmt: skip
    e.deal("D2", amount=250_000, won_days_ago=30, name="Retainer for A1")
    e.payment("PAY1", amount=70_000, unapplied=70_000, received_days_ago=20)
    for system in ("salesforce", "kantata", "netsuite", "stripe"):
        e.probe(system, success_hours_ago=0.1)
    return e


def fill(db: store.Store) -> None:
    """Write the estate, probe runs and a quarantined record; reconcile at two as-of times."""
    small_estate().write(db)
    for system in ("salesforce", "kantata", "netsuite", "stripe"):
        run = db.start_probe_run(system, "records")
        db.finish_probe_run(run, status="succeeded")
    failed = db.start_probe_run("stripe", "invoices")
    db.finish_probe_run(failed, status="failed", error="HTTP 503 from billing")
    db.quarantine(
        [
            store.QuarantineItem("netsuite", "invoices", "total is not a number",
                                 b'{"id": "I9", "total": "abc"}', "I9"),
            store.QuarantineItem("stripe", "invoices", "truncated body", b"\xff\xfe{\"id\": ", None),
        ]
    )  # fmt: skip
    run_reconcile(db, as_of=AS_OF - timedelta(days=10))
    run_reconcile(db, as_of=AS_OF)


@pytest.fixture
def filled(db: store.Store) -> store.Store:
    """The small estate, reconciled, on each backend."""
    fill(db)
    return db


@pytest.fixture
def config(store_url: str) -> ConsoleConfig:
    return ConsoleConfig(store_url=store_url, store_label="test store", cache_ttl_seconds=0)
