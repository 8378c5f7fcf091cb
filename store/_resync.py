"""Resync persistence: requests, approvals, attempts, circuit state and the append-only audit.

Every SQL statement of the resync engine lives here. The engine (``reconciler.resync``) decides;
these functions record, inside the caller's transaction (``Store.begin``), except the few that
say they own a connection (claims held for the length of an action on PostgreSQL).

A request is one repair of one break by one action. While it is active (awaiting approval,
queued or running) its ``active_key`` is ``<break_id>:<action>``, unique: asking again for the
same repair returns the same request, even when two processes ask at once. A finished request
keeps its row with ``active_key`` null, so a later request for the same break is a new row.

The audit is append-only: rows are inserted, never updated or deleted, one per request, approval,
claim, outcome and vendor call (a call's answer is a row of its own, so a call whose answer never
came stays visible as a call without an answer).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import polars as pl
from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Index,
    Integer,
    String,
    Table,
    Text,
    and_,
    func,
    insert,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from store._reconcile import _read, breaks
from store._schema import metadata
from store._types import UTCDateTime

_PK = BigInteger().with_variant(Integer(), "sqlite")

ACTIVE_REQUEST_STATUSES: tuple[str, ...] = ("awaiting_approval", "queued", "running")
"""A request in one of these states holds its (break, action) key."""
REQUEST_STATUSES: tuple[str, ...] = (
    *ACTIVE_REQUEST_STATUSES,
    "succeeded",
    "failed",
    "rejected",
    "cancelled",
)

resync_requests = Table(
    "resync_requests",
    metadata,
    Column("id", _PK, primary_key=True, autoincrement=True),
    Column("break_id", String(40), nullable=False),
    Column("break_type", String(64), nullable=False),
    Column("action", String(64), nullable=False),
    Column("system", String(32), nullable=False),
    Column("mode", String(16), nullable=False),
    Column("status", String(24), nullable=False),
    Column("active_key", String(128), unique=True),
    Column("idempotency_key", String(80), nullable=False),
    Column("requested_by", String(128), nullable=False),
    Column("requested_at", UTCDateTime(), nullable=False),
    Column("approved_by", String(128)),
    Column("approved_at", UTCDateTime()),
    Column("amount_minor", BigInteger()),
    Column("currency", String(3)),
    Column("attempts", Integer(), nullable=False, default=0),
    Column("next_attempt_at", UTCDateTime()),
    Column("claimed_by", String(128)),
    Column("lease_until", UTCDateTime()),
    Column("finished_at", UTCDateTime()),
    Column("result_id", String(128)),
    Column("last_error", Text()),
    Index(None, "status", "system"),
    Index(None, "break_id"),
)

resync_approvals = Table(
    "resync_approvals",
    metadata,
    Column("id", _PK, primary_key=True, autoincrement=True),
    Column("request_id", BigInteger(), nullable=False),
    Column("decision", String(16), nullable=False),
    Column("decided_by", String(128), nullable=False),
    Column("decided_at", UTCDateTime(), nullable=False),
    Column("note", Text()),
    Index(None, "request_id"),
)

resync_attempts = Table(
    "resync_attempts",
    metadata,
    Column("id", _PK, primary_key=True, autoincrement=True),
    Column("request_id", BigInteger(), nullable=False),
    Column("attempt", Integer(), nullable=False),
    Column("system", String(32), nullable=False),
    Column("action", String(64), nullable=False),
    Column("worker", String(128), nullable=False),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("finished_at", UTCDateTime()),
    Column("outcome", String(24)),
    Column("error", Text()),
    Index(None, "request_id"),
    Index(None, "system", "started_at"),
)

resync_audit = Table(
    "resync_audit",
    metadata,
    Column("id", _PK, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime(), nullable=False),
    Column("kind", String(24), nullable=False),
    Column("request_id", BigInteger()),
    Column("break_id", String(40)),
    Column("actor", String(128), nullable=False),
    Column("system", String(32)),
    Column("method", String(8)),
    Column("path", Text()),
    Column("status_code", Integer()),
    Column("duration_ms", Integer()),
    Column("call_id", String(40)),
    Column("summary", Text()),
    Index(None, "break_id"),
    Index(None, "request_id"),
)

resync_circuits = Table(
    "resync_circuits",
    metadata,
    Column("system", String(32), primary_key=True),
    Column("state", String(16), nullable=False),
    Column("consecutive_failures", Integer(), nullable=False, default=0),
    Column("opened_at", UTCDateTime()),
    Column("probe_until", UTCDateTime()),
    Column("updated_at", UTCDateTime(), nullable=False),
)

AUDIT_SCHEMA: dict[str, pl.DataType] = {
    "id": pl.Int64(),
    "at": pl.Datetime("us", "UTC"),
    "kind": pl.String(),
    "request_id": pl.Int64(),
    "break_id": pl.String(),
    "actor": pl.String(),
    "system": pl.String(),
    "method": pl.String(),
    "path": pl.String(),
    "status_code": pl.Int64(),
    "duration_ms": pl.Int64(),
    "call_id": pl.String(),
    "summary": pl.String(),
}
REQUEST_SCHEMA: dict[str, pl.DataType] = {
    "id": pl.Int64(),
    "break_id": pl.String(),
    "break_type": pl.String(),
    "action": pl.String(),
    "system": pl.String(),
    "mode": pl.String(),
    "status": pl.String(),
    "active_key": pl.String(),
    "idempotency_key": pl.String(),
    "requested_by": pl.String(),
    "requested_at": pl.Datetime("us", "UTC"),
    "approved_by": pl.String(),
    "approved_at": pl.Datetime("us", "UTC"),
    "amount_minor": pl.Int64(),
    "currency": pl.String(),
    "attempts": pl.Int64(),
    "next_attempt_at": pl.Datetime("us", "UTC"),
    "claimed_by": pl.String(),
    "lease_until": pl.Datetime("us", "UTC"),
    "finished_at": pl.Datetime("us", "UTC"),
    "result_id": pl.String(),
    "last_error": pl.String(),
}


@dataclass(frozen=True)
class ResyncRequest:
    """One stored request (a row of ``resync_requests``)."""

    id: int
    break_id: str
    break_type: str
    action: str
    system: str
    mode: str
    status: str
    active_key: str | None
    idempotency_key: str
    requested_by: str
    requested_at: datetime
    approved_by: str | None
    approved_at: datetime | None
    amount_minor: int | None
    currency: str | None
    attempts: int
    next_attempt_at: datetime | None
    claimed_by: str | None
    lease_until: datetime | None
    finished_at: datetime | None
    result_id: str | None
    last_error: str | None


@dataclass(frozen=True)
class CircuitState:
    """The circuit of one system: closed, open (since ``opened_at``) or half_open (one probe)."""

    system: str
    state: str
    consecutive_failures: int
    opened_at: datetime | None
    probe_until: datetime | None
    updated_at: datetime


def _frame(rows: Iterable[Any], schema: Mapping[str, pl.DataType]) -> pl.DataFrame:
    return pl.DataFrame(
        [tuple(r) for r in rows], schema=dict(schema), orient="row", infer_schema_length=None
    )


# --------------------------------------------------------------------------- requests


def insert_resync_request(
    conn: Connection,
    *,
    break_id: str,
    break_type: str,
    action: str,
    system: str,
    mode: str,
    status: str,
    idempotency_key: str,
    requested_by: str,
    at: datetime,
    amount_minor: int | None = None,
    currency: str | None = None,
) -> tuple[int, bool]:
    """The active request for (break, action): the existing one, or a new one; (id, created).

    Concurrent callers meet on the unique ``active_key``: exactly one insert wins, the others
    read its row.
    """
    if status not in ACTIVE_REQUEST_STATUSES:
        raise ValueError(f"a new request must be active, not {status!r}")
    key = f"{break_id}:{action}"
    values = dict(
        break_id=break_id, break_type=break_type, action=action, system=system, mode=mode,
        status=status, active_key=key, idempotency_key=idempotency_key,
        requested_by=requested_by, requested_at=at, amount_minor=amount_minor,
        currency=currency, attempts=0, next_attempt_at=at if status == "queued" else None,
    )  # fmt: skip
    dialect_insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    statement = (
        dialect_insert(resync_requests)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["active_key"])
        .returning(resync_requests.c.id)
    )
    created = conn.execute(statement).scalar_one_or_none()
    if created is not None:
        return int(created), True
    existing = conn.execute(
        select(resync_requests.c.id).where(resync_requests.c.active_key == key)
    ).scalar_one()
    return int(existing), False


def get_resync_request(conn: Connection, request_id: int) -> ResyncRequest | None:
    """One request by id (None when there is none)."""
    row = conn.execute(select(resync_requests).where(resync_requests.c.id == request_id)).first()
    return ResyncRequest(**row._asdict()) if row is not None else None


def read_resync_requests(
    conn: Connection,
    *,
    status: str | Iterable[str] | None = None,
    break_id: str | None = None,
) -> pl.DataFrame:
    """Requests, oldest first, filtered by status (one or several) and/or break."""
    query = select(resync_requests).order_by(resync_requests.c.id)
    if status is not None:
        wanted = [status] if isinstance(status, str) else list(status)
        query = query.where(resync_requests.c.status.in_(wanted))
    if break_id is not None:
        query = query.where(resync_requests.c.break_id == break_id)
    return _frame(conn.execute(query), REQUEST_SCHEMA)


def latest_requests_by_break(conn: Connection, break_ids: Iterable[str]) -> dict[str, list[ResyncRequest]]:  # fmt: skip
    """Every request of each break, oldest first (for the policy's enqueue decisions)."""
    ids = list(break_ids)
    out: dict[str, list[ResyncRequest]] = {b: [] for b in ids}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        query = (
            select(resync_requests)
            .where(resync_requests.c.break_id.in_(chunk))
            .order_by(resync_requests.c.id)
        )
        for row in conn.execute(query):
            out[row.break_id].append(ResyncRequest(**row._asdict()))
    return out


def decide_resync_request(
    conn: Connection,
    request_id: int,
    *,
    decision: str,
    by: str,
    at: datetime,
    note: str | None = None,
) -> str | None:
    """Approve or reject a request awaiting approval; returns its status before (None: no request).

    Changes nothing unless the request is awaiting approval. The decision is a row of its own.
    """
    if decision not in ("approved", "rejected"):
        raise ValueError(f"unknown decision {decision!r}")
    old = conn.execute(
        select(resync_requests.c.status).where(resync_requests.c.id == request_id).with_for_update()
    ).scalar_one_or_none()
    if old is None or old != "awaiting_approval":
        return None if old is None else str(old)
    if decision == "approved":
        values: dict[str, Any] = dict(
            status="queued", approved_by=by, approved_at=at, next_attempt_at=at
        )
    else:
        values = dict(status="rejected", active_key=None, finished_at=at, last_error=note)
    conn.execute(
        update(resync_requests)
        .where(and_(resync_requests.c.id == request_id, resync_requests.c.status == old))
        .values(**values)
    )
    conn.execute(
        insert(resync_approvals).values(
            request_id=request_id, decision=decision, decided_by=by, decided_at=at, note=note
        )
    )
    return str(old)


def read_resync_approvals(conn: Connection, request_id: int) -> list[dict[str, Any]]:
    """The decisions taken on one request, oldest first."""
    query = (
        select(resync_approvals)
        .where(resync_approvals.c.request_id == request_id)
        .order_by(resync_approvals.c.id)
    )
    return [row._asdict() for row in conn.execute(query)]


def due_resync_requests(conn: Connection, *, at: datetime, limit: int = 100) -> list[ResyncRequest]:
    """Requests that may run now: queued and due, or running under an expired lease."""
    c = resync_requests.c
    query = (
        select(resync_requests)
        .where(
            or_(
                and_(
                    c.status == "queued", or_(c.next_attempt_at.is_(None), c.next_attempt_at <= at)
                ),
                c.status == "running",
            )
        )
        .order_by(c.next_attempt_at, c.id)
        .limit(limit)
    )
    return [ResyncRequest(**row._asdict()) for row in conn.execute(query)]


def try_lock_resync_request(conn: Connection, request_id: int) -> bool:
    """PostgreSQL: take the session lock of a request on this connection (False: someone has it).

    The lock lives as long as the connection: a worker that dies (even SIGKILLed) releases it,
    so its request can be taken over at once; a live worker's cannot. SQLite: always True (one
    process owns a SQLite store; the lease decides).
    """
    if conn.dialect.name != "postgresql":
        return True
    got = conn.execute(
        select(func.pg_try_advisory_lock(func.hashtext("o2c.resync.request"), request_id))
    ).scalar_one()
    return bool(got)


def unlock_resync_request(conn: Connection, request_id: int) -> None:
    """Release the session lock taken by ``try_lock_resync_request``."""
    if conn.dialect.name == "postgresql":
        conn.execute(
            select(func.pg_advisory_unlock(func.hashtext("o2c.resync.request"), request_id))
        )


def claim_resync_request(
    conn: Connection,
    request_id: int,
    *,
    worker: str,
    at: datetime,
    lease: timedelta,
    locked: bool,
) -> ResyncRequest | None:
    """Mark a due request running for ``worker`` and count the attempt; None if not claimable.

    A running request is taken over when its lease expired, or at once when the caller holds
    the request's session lock (``locked``: its previous worker is gone).
    """
    c = resync_requests.c
    takeover = c.lease_until < at if not locked else true()
    result = conn.execute(
        update(resync_requests)
        .where(
            and_(
                c.id == request_id,
                or_(
                    and_(
                        c.status == "queued",
                        or_(c.next_attempt_at.is_(None), c.next_attempt_at <= at),
                    ),
                    and_(c.status == "running", takeover),
                ),
            )
        )
        .values(
            status="running", claimed_by=worker, lease_until=at + lease, attempts=c.attempts + 1
        )
        .returning(*resync_requests.c)
    ).first()
    return ResyncRequest(**result._asdict()) if result is not None else None


def finish_resync_request(
    conn: Connection,
    request_id: int,
    *,
    status: str,
    at: datetime,
    result_id: str | None = None,
    error: str | None = None,
    next_attempt_at: datetime | None = None,
) -> None:
    """Close a request (succeeded, failed, cancelled) or put it back in the queue (queued)."""
    if status not in REQUEST_STATUSES or status in ("awaiting_approval", "running"):
        raise ValueError(f"cannot finish a request as {status!r}")
    values: dict[str, Any] = dict(
        status=status, claimed_by=None, lease_until=None, last_error=error
    )
    if status == "queued":
        values["next_attempt_at"] = next_attempt_at or at
    else:
        values.update(active_key=None, finished_at=at)
    if result_id is not None:
        values["result_id"] = result_id
    conn.execute(update(resync_requests).where(resync_requests.c.id == request_id).values(**values))


def defer_resync_request(conn: Connection, request_id: int, *, until: datetime) -> None:
    """Push a queued request's next attempt later without counting an attempt (rate, circuit)."""
    conn.execute(
        update(resync_requests)
        .where(and_(resync_requests.c.id == request_id, resync_requests.c.status == "queued"))
        .values(next_attempt_at=until)
    )


def read_breaks(conn: Connection, break_ids: Iterable[str]) -> pl.DataFrame:
    """The register rows of these breaks only (columns BREAK_COLUMNS), by id."""
    ids = list(break_ids)
    frames = [
        _read(conn, breaks, select(breaks).where(breaks.c.break_id.in_(ids[i : i + 500])))
        for i in range(0, len(ids), 500)
    ]
    if not frames:
        return _read(conn, breaks, select(breaks).where(breaks.c.break_id.in_([])))
    return pl.concat(frames).sort("break_id")


# --------------------------------------------------------------------------- attempts


def start_resync_attempt(
    conn: Connection, request: ResyncRequest, *, worker: str, at: datetime
) -> int:
    """Record that an attempt began (before any vendor call); returns its id."""
    return int(
        conn.execute(
            insert(resync_attempts)
            .values(
                request_id=request.id, attempt=request.attempts, system=request.system,
                action=request.action, worker=worker, started_at=at,
            )
            .returning(resync_attempts.c.id)
        ).scalar_one()
    )  # fmt: skip


def finish_resync_attempt(
    conn: Connection, attempt_id: int, *, outcome: str, at: datetime, error: str | None = None
) -> None:
    """Close an attempt with its outcome (succeeded, failed, skipped, abandoned)."""
    conn.execute(
        update(resync_attempts)
        .where(resync_attempts.c.id == attempt_id)
        .values(outcome=outcome, finished_at=at, error=error)
    )


def abandon_resync_attempts(conn: Connection, request_id: int, *, at: datetime) -> int:
    """Close the unfinished attempts of a request whose worker died; returns how many."""
    result = conn.execute(
        update(resync_attempts)
        .where(
            and_(resync_attempts.c.request_id == request_id, resync_attempts.c.outcome.is_(None))
        )
        .values(outcome="abandoned", finished_at=at, error="abandoned: the worker died")
    )
    return int(result.rowcount or 0)


def count_resync_attempts_since(conn: Connection, system: str, since: datetime) -> int:
    """Attempts on a system started after ``since`` (every worker): the rate limit's measure."""
    return int(
        conn.execute(
            select(func.count())
            .select_from(resync_attempts)
            .where(and_(resync_attempts.c.system == system, resync_attempts.c.started_at > since))
        ).scalar_one()
    )


def read_resync_attempts(conn: Connection, *, request_id: int | None = None) -> pl.DataFrame:
    """Attempts, oldest first (all, or one request's)."""
    query = select(resync_attempts).order_by(resync_attempts.c.id)
    if request_id is not None:
        query = query.where(resync_attempts.c.request_id == request_id)
    schema = {
        "id": pl.Int64(), "request_id": pl.Int64(), "attempt": pl.Int64(), "system": pl.String(),
        "action": pl.String(), "worker": pl.String(), "started_at": pl.Datetime("us", "UTC"),
        "finished_at": pl.Datetime("us", "UTC"), "outcome": pl.String(), "error": pl.String(),
    }  # fmt: skip
    return _frame(conn.execute(query), schema)


def count_resync_requests(conn: Connection) -> dict[str, int]:
    """Requests counted by status (for the exporter: a GROUP BY, not every request read)."""
    c = resync_requests.c
    query = select(c.status, func.count()).group_by(c.status)
    return {str(status): int(n) for status, n in conn.execute(query)}


def read_resync_outcomes(conn: Connection) -> pl.DataFrame:
    """Finished attempts counted by system, action and outcome (for the exporter).

    Columns: system, action, outcome, count. Abandoned attempts (a worker died) count too.
    """
    c = resync_attempts.c
    query = (
        select(c.system, c.action, c.outcome, func.count().label("count"))
        .where(c.outcome.is_not(None))
        .group_by(c.system, c.action, c.outcome)
        .order_by(c.system, c.action, c.outcome)
    )
    schema = {
        "system": pl.String(), "action": pl.String(), "outcome": pl.String(), "count": pl.Int64(),
    }  # fmt: skip
    return _frame(conn.execute(query), schema)


# --------------------------------------------------------------------------- audit


def append_resync_audit(
    conn: Connection,
    *,
    kind: str,
    actor: str,
    at: datetime,
    request_id: int | None = None,
    break_id: str | None = None,
    system: str | None = None,
    method: str | None = None,
    path: str | None = None,
    status_code: int | None = None,
    duration_ms: int | None = None,
    call_id: str | None = None,
    summary: Mapping[str, Any] | str | None = None,
) -> int:
    """Append one audit row (the audit has no update or delete); returns its id."""
    text_summary = (
        summary
        if summary is None or isinstance(summary, str)
        else json.dumps(summary, sort_keys=True, default=str)
    )
    return int(
        conn.execute(
            insert(resync_audit)
            .values(
                at=at, kind=kind, request_id=request_id, break_id=break_id, actor=actor,
                system=system, method=method, path=path, status_code=status_code,
                duration_ms=duration_ms, call_id=call_id, summary=text_summary,
            )
            .returning(resync_audit.c.id)
        ).scalar_one()
    )  # fmt: skip


def read_resync_audit(
    conn: Connection,
    *,
    break_id: str | None = None,
    request_id: int | None = None,
    limit: int | None = 1000,
) -> pl.DataFrame:
    """Audit rows, newest first (the ``limit`` newest), for one break, one request or all."""
    query = select(resync_audit).order_by(resync_audit.c.id.desc())
    if break_id is not None:
        query = query.where(resync_audit.c.break_id == break_id)
    if request_id is not None:
        query = query.where(resync_audit.c.request_id == request_id)
    if limit is not None:
        query = query.limit(limit)
    return _frame(conn.execute(query), AUDIT_SCHEMA)


# --------------------------------------------------------------------------- circuits


def read_circuit(conn: Connection, system: str) -> CircuitState | None:
    """One system's circuit (None: never recorded, i.e. closed)."""
    row = conn.execute(select(resync_circuits).where(resync_circuits.c.system == system)).first()
    return CircuitState(**row._asdict()) if row is not None else None


def write_circuit(
    conn: Connection,
    system: str,
    *,
    state: str,
    consecutive_failures: int,
    opened_at: datetime | None,
    probe_until: datetime | None,
    at: datetime,
    expect_state: str | None = None,
) -> bool:
    """Set a system's circuit; with ``expect_state``, only if it is still in that state.

    Returns whether the row was written (False: another worker moved it first).
    """
    if state not in ("closed", "open", "half_open"):
        raise ValueError(f"unknown circuit state {state!r}")
    values = dict(
        state=state, consecutive_failures=consecutive_failures, opened_at=opened_at,
        probe_until=probe_until, updated_at=at,
    )  # fmt: skip
    current = read_circuit(conn, system)
    if current is None:
        if expect_state not in (None, "closed"):
            return False
        dialect_insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
        done = conn.execute(
            dialect_insert(resync_circuits)
            .values(system=system, **values)
            .on_conflict_do_nothing(index_elements=["system"])
        )
        return bool(done.rowcount)
    condition = resync_circuits.c.system == system
    if expect_state is not None:
        condition = and_(condition, resync_circuits.c.state == expect_state)
    done = conn.execute(update(resync_circuits).where(condition).values(**values))
    return bool(done.rowcount)


def lock_circuit(conn: Connection, system: str) -> None:
    """Serialise circuit changes of one system for the rest of the transaction (PostgreSQL)."""
    if conn.dialect.name == "postgresql":
        conn.execute(
            select(
                func.pg_advisory_xact_lock(
                    func.hashtext("o2c.resync.circuit"), func.hashtext(system)
                )
            )
        )


def read_circuit_states(conn: Connection) -> pl.DataFrame:
    """Every recorded circuit (for the exporter). Columns: system, state, opened_at,
    consecutive_failures. A system never recorded is closed."""
    c = resync_circuits.c
    query = select(c.system, c.state, c.opened_at, c.consecutive_failures).order_by(c.system)
    schema = {
        "system": pl.String(), "state": pl.String(), "opened_at": pl.Datetime("us", "UTC"),
        "consecutive_failures": pl.Int64(),
    }  # fmt: skip
    return _frame(conn.execute(query), schema)
