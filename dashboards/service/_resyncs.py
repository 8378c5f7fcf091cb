"""Resyncs from the console: what may be repaired, pending approvals, trigger and approve with the
acting user's name, the audit (issue 7's engine, ``reconciler.resync``, does the work).

Roles are checked here (the engine records who asked and approved and enforces its policy: a
manual break is never requested, approval needs a second person when the policy says so).
Triggering is idempotent: asking again for a pending repair returns the same request.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

import store
from dashboards.service._auth import User, require
from dashboards.service._breaks import prioritise, queue_clock
from reconciler.resync import (
    CATALOGUE,
    BreakRef,
    PlannedAction,
    ResyncPolicy,
    approve_request,
    list_requests,
    mode_of,
    plan_resync,
    read_audit,
    reject_request,
    request_resync,
)

ACTIVE = ("new", "open", "reopened")


@dataclass(frozen=True)
class Resyncs:
    """The resyncs page's data."""

    pending: pl.DataFrame
    """Requests awaiting approval, oldest first."""
    in_flight: pl.DataFrame
    """Requests queued or running."""
    recent: pl.DataFrame
    """The newest requests of any status (up to 200)."""
    audit: pl.DataFrame
    """The newest audit rows."""


def candidates(
    db: store.Store, user: User, policy: ResyncPolicy, *, limit: int = 500
) -> pl.DataFrame:
    """Open breaks a resync can repair (not manual under the policy), highest priority first.

    Columns: break_id, break_type, mode, amount_minor, currency, amount_reporting_minor,
    reporting_currency, age_days, key.
    """
    require(user, "read")
    with db.begin() as conn:
        open_ = store.read_breaks_where(conn, statuses=ACTIVE, break_types=list(CATALOGUE))
    modes = [mode_of(BreakRef.from_row(r), policy) for r in open_.iter_rows(named=True)]
    open_ = open_.with_columns(pl.Series("mode", modes, pl.String())).filter(
        pl.col("mode") != "manual"
    )
    ranked = prioritise(
        open_.with_columns(
            pl.lit(None, pl.String).alias(c) for c in ("acknowledged_by", "acknowledged_note")
        ).with_columns(pl.lit(None, pl.Datetime("us", "UTC")).alias("acknowledged_at")),
        queue_clock(db, user),
    ).join(open_.select("break_id", "mode"), on="break_id")
    return ranked.select(
        "break_id", "break_type", "mode", "amount_minor", "currency", "amount_reporting_minor",
        "reporting_currency", "age_days", "key",
    ).head(limit)  # fmt: skip


def resyncs(db: store.Store, user: User, *, audit_limit: int = 200) -> Resyncs:
    """Pending approvals, requests in flight, recent requests and the audit log."""
    require(user, "read")
    requests = list_requests(db)
    return Resyncs(
        pending=requests.filter(pl.col("status") == "awaiting_approval").sort("requested_at"),
        in_flight=requests.filter(pl.col("status").is_in(["queued", "running"])),
        # Latest activity first: a policy cycle queues hundreds of requests at once, and ordering
        # by id alone would hide the ones that have since finished behind them. One cycle stamps
        # its requests and outcomes with one time; within it, what finished came last.
        recent=requests.sort(
            pl.coalesce("finished_at", "approved_at", "requested_at"),
            pl.col("finished_at").is_not_null(),
            "id",
            descending=True,
        ).head(200),
        audit=read_audit(db, limit=audit_limit),
    )


def plan(db: store.Store, user: User, break_id: str, policy: ResyncPolicy) -> PlannedAction | None:
    """The dry run of one break's repair (what the confirmation shows), or None if not open."""
    require(user, "read")
    planned = plan_resync(db, [break_id], policy=policy)
    return planned[0] if planned else None


def trigger(db: store.Store, user: User, break_id: str, policy: ResyncPolicy) -> int:
    """Ask for a break's repair as the user; returns the request id (the same one if pending)."""
    require(user, "trigger")
    return request_resync(db, break_id=break_id, requested_by=user.name, policy=policy)


def approve(
    db: store.Store, user: User, request_id: int, policy: ResyncPolicy, *, note: str | None = None
) -> None:
    """Approve a request awaiting approval as the user (never their own, under four eyes)."""
    require(user, "approve")
    approve_request(db, request_id, approved_by=user.name, policy=policy, note=note or None)


def reject(db: store.Store, user: User, request_id: int, *, note: str | None = None) -> None:
    """Reject a request awaiting approval as the user."""
    require(user, "approve")
    reject_request(db, request_id, rejected_by=user.name, note=note or None)


def break_resyncs(db: store.Store, user: User, break_ids: list[str]) -> pl.DataFrame:
    """The audit of the given breaks' resyncs, newest first (a deal's resync history)."""
    require(user, "read")
    frames = [read_audit(db, break_id=b) for b in break_ids]
    if not frames:
        return read_audit(db, break_id="", limit=1).clear()
    return pl.concat(frames).sort("at", descending=True)
