"""Break lifecycle across runs: new -> open -> resolved -> reopened, acceptance, replays, idempotency."""

from __future__ import annotations

from datetime import timedelta

import polars as pl
import pytest

import store
from reconciler import (
    BREAK_SCHEMA,
    ReconcileConfig,
    ReconcileError,
    accept_break,
    break_id,
    plan_lifecycle,
    run_reconcile,
)
from tests.reconciler.estate import AS_OF, Estate

CONFIG = ReconcileConfig()
H = timedelta(hours=1)


def detection(*keys: str, amount: int = 1) -> pl.DataFrame:
    rows = [
        {
            "break_id": break_id("unapplied_cash", k), "break_type": "unapplied_cash",
            "severity": "medium", "remediation": "manual", "key": k, "records": "[]",
            "systems": "netsuite", "amount_minor": amount, "currency": "USD",
        }
        for k in keys
    ]  # fmt: skip
    return pl.DataFrame(rows, schema=BREAK_SCHEMA)


def _register_schema_frame() -> pl.DataFrame:
    from reconciler._service import _REGISTER_SCHEMA

    return pl.DataFrame(schema=_REGISTER_SCHEMA)


def step(register: pl.DataFrame, keys: tuple[str, ...], at_hours: float, amount: int = 1):  # type: ignore[no-untyped-def]
    plan = plan_lifecycle(
        register, detection(*keys, amount=amount), run_id=int(at_hours), as_of=AS_OF + at_hours * H,
        config=CONFIG,
    )  # fmt: skip
    moves = {(r["break_id"], r["from_status"], r["to_status"]) for r in plan.transitions.to_dicts()}
    return plan, moves


def test_lifecycle_truth_table() -> None:
    a, b = break_id("unapplied_cash", "a"), break_id("unapplied_cash", "b")
    reg = _register_schema_frame()

    plan, moves = step(reg, ("a", "b"), 0)
    assert moves == {(a, None, "new"), (b, None, "new")}

    again, moves = step(plan.state, ("a", "b"), 0)
    assert moves == set() and again.changed.is_empty()  # same data, same time: nothing

    later, moves = step(plan.state, ("a",), 25)  # a settles; b is gone
    assert moves == {(a, "new", "open"), (b, "new", "resolved")}
    assert later.state.filter(pl.col("break_id") == b)["resolved_at"].is_not_null().all()

    back, moves = step(later.state, ("a", "b"), 30)
    assert moves == {(b, "resolved", "reopened")}
    assert back.state.filter(pl.col("break_id") == b)["resolved_at"].is_null().all()

    settled, moves = step(back.state, ("a", "b"), 60)
    assert moves == {(b, "reopened", "open")}

    changed, moves = step(settled.state, ("a", "b"), 61, amount=5)  # new amount, same problem
    assert moves == set() and changed.changed.height == 2
    assert set(changed.state["first_detected_at"]) == {AS_OF}


def test_acceptance_holds_until_expiry_then_reopens_and_resolution_clears_it() -> None:
    a = break_id("unapplied_cash", "a")
    plan, _ = step(_register_schema_frame(), ("a",), 0)
    accepted = plan.state.with_columns(
        pl.lit("accepted").alias("status"),
        pl.lit(AS_OF + 48 * H).alias("accepted_until"),
        pl.lit("known, customer refund pending").alias("accepted_note"),
    )
    held, moves = step(accepted, ("a",), 24)
    assert moves == set()
    expired, moves = step(held.state, ("a",), 49)
    assert moves == {(a, "accepted", "open")}
    assert expired.transitions["note"].to_list() == ["acceptance expired"]
    assert expired.state["accepted_until"].is_null().all()
    _gone, moves = step(accepted, (), 10)
    assert moves == {(a, "accepted", "resolved")}


def leaky_estate() -> Estate:
    e = Estate()
    e.account("A1")
    e.customer("C1", "A1")
    e.deal("O1", won_days_ago=30)  # no project
    e.payment("PAY1", amount=100, unapplied=40)
    return e


def _transitions(db: store.Store) -> pl.DataFrame:
    with db.begin() as conn:
        return store.read_break_transitions(conn)


def test_runs_on_the_store_keep_ids_and_history(db: store.Store) -> None:
    leaky_estate().write(db)

    first = run_reconcile(db, as_of=AS_OF)
    second = run_reconcile(db, as_of=AS_OF)  # nothing changed
    assert first.counts["breaks_new"] == 2 and first.counts["transitions"] == 2
    assert second.counts == {**second.counts, "transitions": 0, "register_rows_written": 0}
    assert sorted(first.result.breaks["break_id"]) == sorted(second.result.breaks["break_id"])
    assert _transitions(db).height == 2

    # the payment gets applied: its break resolves; a day later the deal's break is open
    db.upsert("payments", leaky_estate().frames()["payments"].with_columns(
        pl.lit(0, pl.Int64).alias("unapplied_minor"),
        pl.col("source_modified_at") + timedelta(days=1),
    ))  # fmt: skip
    third = run_reconcile(db, as_of=AS_OF + timedelta(days=1))
    assert third.counts["breaks_resolved"] == 1
    assert third.open_by_type["won_deal_without_project"] == 1
    assert third.open_by_type["unapplied_cash"] == 0

    with db.begin() as conn:
        register = store.read_break_register(conn)
        runs = store.list_reconcile_runs(conn)
        snapshot = store.read_kpi_snapshots(conn, run_id=third.run_id)
    assert dict(register.select("break_type", "status").iter_rows()) == {
        "won_deal_without_project": "open",
        "unapplied_cash": "resolved",
    }
    assert [r.status for r in runs] == ["succeeded"] * 3
    assert {r.as_of for r in runs} == {AS_OF, AS_OF + timedelta(days=1)}
    resolved = snapshot.filter(
        (pl.col("kpi") == "resolutions_count") & (pl.col("dimension") == "kind=manual")
    )
    assert resolved["value"].to_list() == [1.0]
    assert set(snapshot["as_of"]) == {AS_OF + timedelta(days=1)}

    # a replay of an earlier time computes but leaves the register alone
    replay = run_reconcile(db, as_of=AS_OF - timedelta(days=1))
    assert replay.replay and replay.counts["transitions"] == 0


def test_operator_acceptance_is_a_transition_with_its_note(db: store.Store) -> None:
    leaky_estate().write(db)
    report = run_reconcile(db, as_of=AS_OF)
    target = report.result.breaks.filter(pl.col("break_type") == "unapplied_cash")["break_id"][0]

    with pytest.raises(ReconcileError, match="note"):
        accept_break(db, target, note=" ", until=AS_OF + 48 * H, actor="ops", at=AS_OF)
    with pytest.raises(ReconcileError, match="no break"):
        accept_break(db, "nope", note="x", until=AS_OF + 48 * H, actor="ops", at=AS_OF)
    accept_break(db, target, note="refund agreed", until=AS_OF + 48 * H, actor="ops", at=AS_OF)
    with pytest.raises(ReconcileError, match="is accepted, not open"):
        accept_break(db, target, note="again", until=AS_OF + 48 * H, actor="ops", at=AS_OF)

    later = run_reconcile(db, as_of=AS_OF + 72 * H)  # past the expiry, still detected
    history = _transitions(db).filter(pl.col("break_id") == target)
    assert history.select("from_status", "to_status", "actor", "note").rows() == [
        (None, "new", "reconciler", None),
        ("new", "accepted", "ops", "refund agreed"),
        ("accepted", "open", "reconciler", "acceptance expired"),
    ]
    assert later.open_by_type["unapplied_cash"] == 1
