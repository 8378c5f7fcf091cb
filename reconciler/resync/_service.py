"""The resync service: requests and approvals as store rows, the dry-run plan, the policy's enqueue.

What the console and the CLI call. Roles are the caller's business; these functions record who
asked and who approved, and enforce the policy: a manual break is never requested (so never
written), an approval needs a second person when the policy says so.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import polars as pl

import store
from reconciler._service import ACTIVE_STATUSES
from reconciler.resync._catalogue import (
    ACTIONS,
    CATALOGUE,
    Action,
    ApiCall,
    BreakRef,
    StoreView,
    action_system,
    idempotency_key,
)
from reconciler.resync._errors import ResyncError
from reconciler.resync._policy import ResyncPolicy

POLICY_ACTOR = "policy"


@dataclass(frozen=True)
class PlannedAction:
    """One break's repair as a dry run: the decision and the exact API calls it would make."""

    break_id: str
    break_type: str
    action: str | None
    system: str | None
    mode: str
    amount_minor: int | None
    currency: str | None
    calls: tuple[ApiCall, ...]
    reason: str = ""
    """Why there are no calls (manual, missing data), or empty."""


def _now(now: datetime | None) -> datetime:
    return (now or datetime.now(UTC)).astimezone(UTC)


def _break(conn: Any, break_id: str) -> BreakRef | None:
    rows = store.read_breaks(conn, [break_id])
    return BreakRef.from_row(rows.row(0, named=True)) if rows.height else None


def _action_for(brk: BreakRef, action: str | None) -> Action | None:
    if action is None:
        return CATALOGUE.get(brk.break_type)
    chosen = ACTIONS.get(action)
    if chosen is None:
        raise ResyncError(f"unknown resync action {action!r}; known: {', '.join(ACTIONS)}")
    if CATALOGUE.get(brk.break_type) is not chosen:
        raise ResyncError(
            f"{action} does not repair a {brk.break_type} break", break_id=brk.break_id
        )
    return chosen


def mode_of(brk: BreakRef, policy: ResyncPolicy) -> str:
    """auto, approval or manual for one break under the policy."""
    return policy.mode(
        brk.break_type,
        brk.remediation,
        amount_minor=brk.amount_at_risk,
        has_action=brk.break_type in CATALOGUE,
    )


def request_resync(
    db: store.Store,
    *,
    break_id: str,
    action: str | None = None,
    requested_by: str,
    policy: ResyncPolicy | None = None,
    now: datetime | None = None,
) -> int:
    """Ask for a break's repair; returns the request id (the pending one if already asked).

    Queued at once when the policy says auto, else awaiting approval. A manual break, a break
    that is not open, or an action that does not repair it raises ResyncError.
    """
    policy = policy or ResyncPolicy()
    at = _now(now)
    if not requested_by.strip():
        raise ResyncError("a resync request needs the name of who asks", break_id=break_id)
    with db.begin(write=True) as conn:
        brk = _break(conn, break_id)
        if brk is None:
            raise ResyncError(f"no break {break_id}", break_id=break_id)
        if brk.status not in ACTIVE_STATUSES:
            raise ResyncError(f"break {break_id} is {brk.status}, not open", break_id=break_id)
        chosen = _action_for(brk, action)
        mode = mode_of(brk, policy)
        if chosen is None or mode == "manual":
            raise ResyncError(
                f"break {break_id} ({brk.break_type}) is manual: no resync will write for it",
                break_id=break_id,
            )
        request_id, created = store.insert_resync_request(
            conn, break_id=break_id, break_type=brk.break_type, action=chosen.name,
            system=action_system(chosen, brk), mode=mode,
            status="queued" if mode == "auto" else "awaiting_approval",
            idempotency_key=idempotency_key(break_id, chosen.name), requested_by=requested_by,
            at=at, amount_minor=brk.amount_minor, currency=brk.currency,
        )  # fmt: skip
        if created:
            store.append_resync_audit(
                conn, kind="requested", actor=requested_by, at=at, request_id=request_id,
                break_id=break_id, system=action_system(chosen, brk),
                summary={"action": chosen.name, "mode": mode, "amount_minor": brk.amount_minor,
                         "currency": brk.currency},
            )  # fmt: skip
    return request_id


def _decide(
    db: store.Store,
    request_id: int,
    *,
    decision: str,
    by: str,
    policy: ResyncPolicy,
    at: datetime,
    note: str | None,
) -> None:
    if not by.strip():
        raise ResyncError("a decision needs the name of who takes it", request_id=request_id)
    with db.begin(write=True) as conn:
        request = store.get_resync_request(conn, request_id)
        if request is None:
            raise ResyncError(f"no resync request {request_id}", request_id=request_id)
        if decision == "approved" and policy.distinct_approver and request.requested_by == by:
            raise ResyncError(
                f"request {request_id} was asked by {by}: another person must approve it",
                request_id=request_id, break_id=request.break_id,
            )  # fmt: skip
        old = store.decide_resync_request(
            conn, request_id, decision=decision, by=by, at=at, note=note
        )
        if old != "awaiting_approval":
            raise ResyncError(
                f"request {request_id} is {old}, not awaiting approval",
                request_id=request_id, break_id=request.break_id,
            )  # fmt: skip
        store.append_resync_audit(
            conn, kind=decision, actor=by, at=at, request_id=request_id,
            break_id=request.break_id, system=request.system,
            summary={"action": request.action, "requested_by": request.requested_by, "note": note},
        )  # fmt: skip


def approve_request(
    db: store.Store,
    request_id: int,
    *,
    approved_by: str,
    policy: ResyncPolicy | None = None,
    note: str | None = None,
    now: datetime | None = None,
) -> None:
    """Approve a request awaiting approval: it is queued for the next cycle."""
    _decide(
        db, request_id, decision="approved", by=approved_by, policy=policy or ResyncPolicy(),
        at=_now(now), note=note,
    )  # fmt: skip


def reject_request(
    db: store.Store,
    request_id: int,
    *,
    rejected_by: str,
    note: str | None = None,
    now: datetime | None = None,
) -> None:
    """Reject a request awaiting approval: it never runs (the break may be requested again)."""
    _decide(
        db, request_id, decision="rejected", by=rejected_by, policy=ResyncPolicy(),
        at=_now(now), note=note,
    )  # fmt: skip


def list_requests(db: store.Store, *, status: str | Iterable[str] | None = None) -> pl.DataFrame:
    """Requests, oldest first (optionally of one or several statuses)."""
    with db.begin() as conn:
        return store.read_resync_requests(conn, status=status)


def read_audit(db: store.Store, *, break_id: str | None = None, limit: int = 200) -> pl.DataFrame:
    """The newest audit rows (of one break, or all): requests, decisions, calls, outcomes."""
    with db.begin() as conn:
        return store.read_resync_audit(conn, break_id=break_id, limit=limit)


def active_breaks(db: store.Store, break_ids: Iterable[str] | None = None) -> list[BreakRef]:
    """The register's open breaks (optionally only these ids), as actions see them."""
    with db.begin() as conn:
        register = store.read_break_register(conn)
    frame = register.filter(pl.col("status").is_in(ACTIVE_STATUSES))
    if break_ids is not None:
        frame = frame.filter(pl.col("break_id").is_in(list(break_ids)))
    return [BreakRef.from_row(r) for r in frame.sort("break_id").iter_rows(named=True)]


def plan_resync(
    db: store.Store,
    break_ids: Iterable[str] | None = None,
    *,
    policy: ResyncPolicy | None = None,
) -> list[PlannedAction]:
    """A dry run over the open breaks: for each, the mode and the exact API calls (none made)."""
    policy = policy or ResyncPolicy()
    data = StoreView(db)
    planned = []
    for brk in active_breaks(db, break_ids):
        action = CATALOGUE.get(brk.break_type)
        mode = mode_of(brk, policy)
        base = dict(
            break_id=brk.break_id, break_type=brk.break_type, mode=mode,
            amount_minor=brk.amount_minor, currency=brk.currency,
        )  # fmt: skip
        if action is None or mode == "manual":
            planned.append(
                PlannedAction(**base, action=None, system=None, calls=(),  # type: ignore[arg-type]
                              reason="manual: no resync writes for this break")
            )  # fmt: skip
            continue
        system = action_system(action, brk)
        try:
            calls = tuple(action.calls(brk, action.inputs(brk, data)))
            reason = ""
        except ResyncError as exc:
            calls, reason = (), str(exc)
        planned.append(
            PlannedAction(**base, action=action.name, system=system, calls=calls, reason=reason)  # type: ignore[arg-type]
        )
    return planned


def enqueue_due(
    db: store.Store,
    policy: ResyncPolicy,
    *,
    now: datetime | None = None,
    break_ids: Iterable[str] | None = None,
) -> dict[str, int]:
    """The policy asks for every open break it may repair and has not asked for yet.

    Auto breaks are queued, approval breaks wait for a person; a break whose last request for
    the same action failed or was rejected since it was last opened is left to the operators.
    Returns counts of requests created by mode.
    """
    at = _now(now)
    created = {"auto": 0, "approval": 0}
    candidates = [b for b in active_breaks(db, break_ids) if b.break_type in CATALOGUE]
    if not candidates:
        return created
    with db.begin() as conn:
        history = store.latest_requests_by_break(conn, [b.break_id for b in candidates])
        register = store.read_break_register(conn).select("break_id", "status_since")
    since: Mapping[str, datetime] = dict(register.iter_rows())
    for brk in candidates:
        mode = mode_of(brk, policy)
        if mode == "manual":
            continue
        action = CATALOGUE[brk.break_type]
        opened = since.get(brk.break_id)
        previous = [r for r in history.get(brk.break_id, []) if r.action == action.name]
        if any(r.active_key is not None for r in previous):
            continue
        if any(
            r.status in ("failed", "rejected", "succeeded")
            and (opened is None or (r.finished_at is not None and r.finished_at >= opened))
            for r in previous
        ):
            continue
        request_resync(db, break_id=brk.break_id, requested_by=POLICY_ACTOR, policy=policy, now=at)
        created[mode] += 1
    return created
