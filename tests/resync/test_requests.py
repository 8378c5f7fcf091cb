"""Requests and approvals are rows: asking twice is one request, a manual break is never asked for,
an approval needs a second person and records both, the dry-run plan names the exact calls."""

from __future__ import annotations

from datetime import timedelta

import polars as pl
import pytest

import store
from reconciler import run_reconcile
from reconciler.resync import (
    ResyncError,
    ResyncPolicy,
    approve_request,
    list_requests,
    plan_resync,
    read_audit,
    reject_request,
    request_resync,
)
from tests.reconciler.estate import AS_OF, Estate, day


def breaks_of(db: store.Store) -> dict[str, str]:
    """break type -> break id (one break of each type in these estates)."""
    with db.begin() as conn:
        frame = store.read_break_register(conn)
    return dict(frame.select("break_type", "break_id").iter_rows())


@pytest.fixture
def register(db: store.Store) -> dict[str, str]:
    """A small firm with one break of each repairable kind and one manual one, reconciled."""
    firm = Estate()
    firm.account("A1")
    firm.deal("D1", account="A1", amount=4_200_000)  # won 60 days ago, no project
    firm.account("A2")
    firm.customer("C2", "A2")
    firm.deal("D2", account="A2", amount=90_000_000)  # above the approval threshold
    firm.project("P2", "D2", budget=90_000_000)
    firm.erp_invoice("I2", customer="C2", total=150_000, issued=day(20))  # no billing twin
    firm.project("P9", None)  # project without deal: manual
    firm.write(db)
    run_reconcile(db, as_of=AS_OF)
    found = breaks_of(db)
    assert {"won_deal_without_project", "customer_missing_in_erp",
            "invoice_missing_in_billing", "project_without_deal"} <= set(found)  # fmt: skip
    return found


def test_asking_twice_for_the_same_repair_returns_the_same_request(
    db: store.Store, register: dict[str, str]
) -> None:
    brk = register["invoice_missing_in_billing"]
    first = request_resync(db, break_id=brk, requested_by="alice")
    again = request_resync(db, break_id=brk, requested_by="bob")
    assert again == first
    requests = list_requests(db)
    assert requests.height == 1
    row = requests.row(0, named=True)
    assert (row["status"], row["mode"], row["requested_by"]) == ("queued", "auto", "alice")
    assert row["action"] == "push_invoice_to_billing" and row["system"] == "stripe"
    assert row["idempotency_key"].startswith("o2c-")
    audit = read_audit(db, break_id=brk)
    assert audit["kind"].to_list() == ["requested"]
    assert audit["actor"].to_list() == ["alice"]


def test_a_manual_break_is_never_requested(db: store.Store, register: dict[str, str]) -> None:
    with pytest.raises(ResyncError, match="manual"):
        request_resync(db, break_id=register["project_without_deal"], requested_by="alice")
    policy = ResyncPolicy(modes={"invoice_missing_in_billing": "manual"})
    with pytest.raises(ResyncError, match="manual"):
        request_resync(
            db, break_id=register["invoice_missing_in_billing"], requested_by="alice",
            policy=policy,
        )  # fmt: skip
    assert list_requests(db).is_empty()


def test_an_action_that_does_not_repair_the_break_is_refused(
    db: store.Store, register: dict[str, str]
) -> None:
    with pytest.raises(ResyncError, match="does not repair"):
        request_resync(
            db, break_id=register["invoice_missing_in_billing"], action="create_project",
            requested_by="alice",
        )  # fmt: skip


def test_approval_needs_a_second_person_and_records_both(
    db: store.Store, register: dict[str, str]
) -> None:
    brk = register["won_deal_without_project"]  # its rule says: approval
    request_id = request_resync(db, break_id=brk, requested_by="alice")
    assert list_requests(db, status="awaiting_approval")["id"].to_list() == [request_id]
    with pytest.raises(ResyncError, match="another person"):
        approve_request(db, request_id, approved_by="alice")

    approve_request(db, request_id, approved_by="bob", note="deal confirmed")

    row = list_requests(db).row(0, named=True)
    assert (row["status"], row["requested_by"], row["approved_by"]) == ("queued", "alice", "bob")
    with db.begin() as conn:
        decisions = store.read_resync_approvals(conn, request_id)
    assert [(d["decision"], d["decided_by"], d["note"]) for d in decisions] == [
        ("approved", "bob", "deal confirmed")
    ]
    audit = read_audit(db, break_id=brk).sort("id")
    assert list(zip(audit["kind"], audit["actor"], strict=True)) == [
        ("requested", "alice"), ("approved", "bob"),
    ]  # fmt: skip
    with pytest.raises(ResyncError, match="not awaiting approval"):
        approve_request(db, request_id, approved_by="carol")


def test_a_rejected_request_never_runs_and_frees_the_break_for_a_new_request(
    db: store.Store, register: dict[str, str]
) -> None:
    brk = register["won_deal_without_project"]
    first = request_resync(db, break_id=brk, requested_by="alice")
    reject_request(db, first, rejected_by="bob", note="wrong deal")
    assert list_requests(db)["status"].to_list() == ["rejected"]
    second = request_resync(db, break_id=brk, requested_by="alice")
    assert second != first
    assert list_requests(db, status="awaiting_approval")["id"].to_list() == [second]


def test_an_automatic_repair_above_the_threshold_needs_approval(
    db: store.Store, register: dict[str, str]
) -> None:
    policy = ResyncPolicy(
        modes={"won_deal_without_project": "auto"}, approval_above_minor=1_000_000
    )
    small = request_resync(
        db, break_id=register["invoice_missing_in_billing"], requested_by="alice", policy=policy
    )
    requests = list_requests(db).filter(pl.col("id") == small)
    assert requests.select("mode", "status").row(0) == ("auto", "queued")
    # The deal carries 42,000.00 at risk: above 10,000.00, so its automatic repair waits.
    big = request_resync(
        db, break_id=register["won_deal_without_project"], requested_by="alice", policy=policy
    )
    requests = list_requests(db).filter(pl.col("id") == big)
    assert requests.select("mode", "status").row(0) == ("approval", "awaiting_approval")


def test_plan_lists_the_exact_api_calls_and_writes_nothing(
    db: store.Store, register: dict[str, str]
) -> None:
    planned = {p.break_type: p for p in plan_resync(db, policy=ResyncPolicy())}

    push = planned["invoice_missing_in_billing"]
    assert (push.action, push.system, push.mode) == ("push_invoice_to_billing", "stripe", "auto")
    calls = [(c.method, c.path) for c in push.calls]
    assert calls[0] == ("GET", "/v1/customers/search")  # the billing customer is not in the store
    assert ("GET", "/v1/invoices/search") in calls
    create = next(c for c in push.calls if c.path == "/v1/invoices")
    assert create.body["metadata[netsuite_id]"] == "I2"
    assert create.headers["Idempotency-Key"].startswith("o2c-invoice-I2-")
    assert planned["won_deal_without_project"].mode == "approval"
    assert [c.method for c in planned["won_deal_without_project"].calls] == [
        "GET", "GET", "POST", "POST",
    ]  # fmt: skip
    assert planned["customer_missing_in_erp"].calls[-1].method == "PUT"
    assert planned["customer_missing_in_erp"].calls[-1].path == "/record/v1/customer/eid:A1"
    manual = planned["project_without_deal"]
    assert manual.mode == "manual" and manual.calls == () and manual.action is None
    assert list_requests(db).is_empty()
    assert read_audit(db).is_empty()


def test_policy_refuses_unknown_break_types_and_modes() -> None:
    with pytest.raises(ValueError, match="unknown break types"):
        ResyncPolicy(modes={"won_deal_no_project": "auto"})
    with pytest.raises(ValueError, match="must be one of"):
        ResyncPolicy(modes={"won_deal_without_project": "sometimes"})
    assert ResyncPolicy(backoff=timedelta(seconds=10)).backoff_after(3) == timedelta(seconds=40)
