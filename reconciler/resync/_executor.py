"""The resync executor: one cycle enqueues what the policy allows and runs every due request.

Safe from several processes sharing a store. A request is claimed by a conditional update (one
winner); on PostgreSQL the claimer also holds the request's session advisory lock until the
cycle ends, so a worker that dies (even SIGKILLed) frees its request at once and a live one's is
never taken; on SQLite (one process) a claim's lease decides. A claim taken over closes the dead
worker's attempt as abandoned. Re-running an interrupted action is safe: every action looks its
target up before it creates.

After the actions, the records they wrote are re-fetched into the store and the register is
reconciled again at the same as-of time; a request succeeds only when its break is no longer
detected, otherwise the attempt fails with that reason and is retried with backoff.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from opentelemetry import trace
from sqlalchemy import Connection

import store
from probes import Probe, ProbeError
from reconciler._config import ReconcileConfig
from reconciler._service import ACTIVE_STATUSES, run_reconcile
from reconciler.resync import _audit, _circuit
from reconciler.resync._catalogue import ACTIONS, BreakRef, Repair, StoreView
from reconciler.resync._errors import ResyncError
from reconciler.resync._policy import ResyncPolicy
from reconciler.resync._service import enqueue_due, mode_of


@dataclass(frozen=True)
class ResyncConfig:
    """Everything a resync cycle needs besides the store and the probes."""

    policy: ResyncPolicy = field(default_factory=ResyncPolicy)
    reconcile: ReconcileConfig = field(default_factory=ReconcileConfig)
    as_of: datetime | None = None
    """As-of time of the confirming reconcile; None: the latest succeeded run's (else now)."""
    worker: str | None = None
    """Name recorded on claims and attempts; None: resync@<host>:<pid>."""
    enqueue: bool = True
    """Ask for the repairs the policy allows before running what is due."""
    tracer_provider: Any | None = None
    """OpenTelemetry provider of the ``resync <action>`` spans (None: the global one)."""


@dataclass(frozen=True)
class Outcome:
    request_id: int
    break_id: str
    action: str
    system: str
    outcome: str
    detail: str = ""


@dataclass
class CycleSummary:
    """What one cycle did: requests enqueued, attempts and their outcomes, deferrals."""

    enqueued: dict[str, int] = field(default_factory=dict)
    outcomes: list[Outcome] = field(default_factory=list)
    deferred: int = 0
    busy: int = 0
    """Due requests another worker holds."""
    reconcile_run_id: int | None = None

    def count(self, outcome: str) -> int:
        return sum(o.outcome == outcome for o in self.outcomes)


def _worker(config: ResyncConfig) -> str:
    return config.worker or f"resync@{socket.gethostname()}:{os.getpid()}"


def _write(db: store.Store) -> Any:
    return db.begin(write=True)


def _outcome_audit(
    conn: Connection, request: store.ResyncRequest, actor: str, at: datetime, **summary: Any
) -> None:
    store.append_resync_audit(
        conn, kind="outcome", actor=actor, at=at, request_id=request.id,
        break_id=request.break_id, system=request.system,
        summary={"action": request.action, "attempt": request.attempts, **summary},
    )  # fmt: skip


def _fail(
    db: store.Store,
    request: store.ResyncRequest,
    attempt_id: int,
    *,
    outcome: str,
    error: str,
    policy: ResyncPolicy,
    actor: str,
    now: datetime,
    retry: bool = True,
) -> Outcome:
    final = not retry or request.attempts >= policy.max_attempts
    error = error[:2000]
    with _write(db) as conn:
        store.finish_resync_attempt(conn, attempt_id, outcome=outcome, at=now, error=error)
        if final:
            store.finish_resync_request(conn, request.id, status="failed", at=now, error=error)
            next_at = None
        else:
            next_at = now + policy.backoff_after(request.attempts)
            store.finish_resync_request(
                conn, request.id, status="queued", at=now, error=error, next_attempt_at=next_at
            )
        _outcome_audit(
            conn, request, actor, now, outcome=outcome, error=error, final=final,
            next_attempt_at=next_at,
        )  # fmt: skip
    return Outcome(
        request.id, request.break_id, request.action, request.system,
        "failed" if final else "retry", error,
    )  # fmt: skip


def _close(
    db: store.Store,
    request: store.ResyncRequest,
    attempt_id: int | None,
    *,
    status: str,
    outcome: str,
    detail: str,
    actor: str,
    now: datetime,
    result_id: str | None = None,
) -> Outcome:
    with _write(db) as conn:
        if attempt_id is not None:
            store.finish_resync_attempt(conn, attempt_id, outcome=outcome, at=now, error=None)
        store.finish_resync_request(
            conn, request.id, status=status, at=now, result_id=result_id,
            error=None if status == "succeeded" else detail,
        )  # fmt: skip
        _outcome_audit(
            conn, request, actor, now, outcome=outcome, detail=detail, result_id=result_id
        )
    return Outcome(request.id, request.break_id, request.action, request.system, status, detail)


def _current_break(db: store.Store, break_id: str) -> BreakRef | None:
    with db.begin() as conn:
        rows = store.read_breaks(conn, [break_id])
    return BreakRef.from_row(rows.row(0, named=True)) if rows.height else None


@dataclass
class _Done:
    request: store.ResyncRequest
    attempt_id: int
    repair: Repair


async def run_resync_cycle(
    db: store.Store,
    probes_by_system: Mapping[str, Probe],
    *,
    config: ResyncConfig | None = None,
    now: datetime | None = None,
    break_ids: Iterable[str] | None = None,
) -> CycleSummary:
    """One cycle: enqueue what the policy allows, run the due requests, confirm by reconciling.

    ``break_ids`` limits the cycle to those breaks. Vendor failures never escape: they become
    failed attempts (retried with backoff, counted by the circuit breaker).
    """
    config = config or ResyncConfig()
    policy = config.policy
    now = (now or datetime.now(UTC)).astimezone(UTC)
    actor = _worker(config)
    wanted = set(break_ids) if break_ids is not None else None
    summary = CycleSummary()
    tracer = trace.get_tracer("o2c.resync", tracer_provider=config.tracer_provider)
    if config.enqueue:
        summary.enqueued = enqueue_due(db, policy, now=now, break_ids=wanted)
    for probe in probes_by_system.values():
        _audit.attach(probe.client)
    with db.begin() as conn:
        due = store.due_resync_requests(conn, at=now, limit=policy.max_actions_per_cycle * 4)
    view = StoreView(db)
    done: list[_Done] = []
    postgres = db.backend == "postgresql"
    # PostgreSQL: one session holds the advisory locks of the requests this cycle works on; a
    # request is released as soon as this worker is done with it (repairs after their confirm).
    lock_conn = db.engine.connect() if postgres else None
    held: set[int] = set()

    def release(request_id: int) -> None:
        if lock_conn is not None and request_id in held:
            store.unlock_resync_request(lock_conn, request_id)
            lock_conn.commit()
            held.discard(request_id)

    blocked: set[str] = set()
    try:
        started = 0
        for request in due:
            if started >= policy.max_actions_per_cycle:
                break
            if wanted is not None and request.break_id not in wanted:
                continue
            if request.system not in probes_by_system or request.action not in ACTIONS:
                continue
            if (
                request.status == "running"
                and not postgres
                and (request.lease_until is not None and request.lease_until >= now)
            ):
                summary.busy += 1
                continue
            locked = False
            if lock_conn is not None:
                locked = store.try_lock_resync_request(lock_conn, request.id)
                lock_conn.commit()
                if not locked:
                    summary.busy += 1
                    continue
                held.add(request.id)
            if request.system in blocked:
                release(request.id)
                summary.deferred += 1
                continue
            rate = policy.rate_of(request.system)
            with db.begin() as conn:
                recent = store.count_resync_attempts_since(
                    conn, request.system, now - timedelta(minutes=1)
                )
            if recent >= rate:
                with _write(db) as conn:
                    store.defer_resync_request(
                        conn, request.id, until=now + timedelta(seconds=60 / rate)
                    )
                release(request.id)
                summary.deferred += 1
                continue
            gate = _circuit.gate(db, request.system, policy, now)
            if gate == "blocked":
                blocked.add(request.system)
                release(request.id)
                summary.deferred += 1
                continue
            with _write(db) as conn:
                claimed = store.claim_resync_request(
                    conn, request.id, worker=actor, at=now, lease=policy.lease, locked=locked
                )
                if claimed is not None and request.status == "running":
                    abandoned = store.abandon_resync_attempts(conn, request.id, at=now)
                    store.append_resync_audit(
                        conn, kind="taken_over", actor=actor, at=now, request_id=request.id,
                        break_id=request.break_id, system=request.system,
                        summary={"from": request.claimed_by, "abandoned_attempts": abandoned},
                    )  # fmt: skip
            if claimed is None:
                release(request.id)
                summary.busy += 1
                continue
            started += 1
            with tracer.start_as_current_span(
                f"resync {claimed.action}",
                attributes={
                    "o2c.system": claimed.system, "o2c.resync.action": claimed.action,
                    "o2c.resync.request_id": claimed.id, "o2c.resync.attempt": claimed.attempts,
                },
            ) as span:  # fmt: skip
                outcome = await _attempt(db, probes_by_system, claimed, view, policy, actor, now)
                span.set_attribute(
                    "o2c.resync.outcome",
                    "repaired" if isinstance(outcome, _Done) else outcome.outcome,
                )
            if isinstance(outcome, _Done):
                done.append(outcome)
                if gate == "probe":
                    blocked.discard(request.system)
            else:
                release(request.id)
                summary.outcomes.append(outcome)
                if gate == "probe" and outcome.outcome in ("retry", "failed"):
                    blocked.add(request.system)
        if done:
            summary.reconcile_run_id = _confirm(db, done, config, actor, now, summary)
    finally:
        if lock_conn is not None:
            try:
                for request_id in list(held):
                    release(request_id)
            finally:
                lock_conn.close()
    return summary


async def _attempt(
    db: store.Store,
    probes: Mapping[str, Probe],
    request: store.ResyncRequest,
    view: StoreView,
    policy: ResyncPolicy,
    actor: str,
    now: datetime,
) -> _Done | Outcome:
    action = ACTIONS[request.action]
    brk = _current_break(db, request.break_id)
    if brk is None or brk.status not in ACTIVE_STATUSES:
        return _close(
            db, request, None, status="cancelled", outcome="cancelled", actor=actor, now=now,
            detail=f"break is {brk.status if brk else 'gone'}: nothing to repair",
        )  # fmt: skip
    if mode_of(brk, policy) == "manual":
        return _close(
            db, request, None, status="cancelled", outcome="cancelled", actor=actor, now=now,
            detail="the policy now says manual: no write",
        )  # fmt: skip
    with _write(db) as conn:
        attempt_id = store.start_resync_attempt(conn, request, worker=actor, at=now)
        store.append_resync_audit(
            conn, kind="attempt", actor=actor, at=now, request_id=request.id,
            break_id=request.break_id, system=request.system,
            summary={"action": request.action, "attempt": request.attempts,
                     "idempotency_key": request.idempotency_key},
        )  # fmt: skip
    try:
        inputs = action.inputs(brk, view)
        with _audit.auditing(
            db, request_id=request.id, break_id=request.break_id, actor=actor,
            system=request.system,
        ):  # fmt: skip
            repair = await action.run(probes, brk, inputs)
        for system, stream, source_id in repair.refetch:
            with _audit.auditing(
                db, request_id=request.id, break_id=request.break_id, actor=actor, system=system
            ):
                page = await probes[system].refetch(stream, source_id)
            db.ingest(page.to_batch())
    except ProbeError as exc:
        _circuit.record_failure(db, request.system, policy, now)
        return _fail(
            db, request, attempt_id, outcome="failed", actor=actor, now=now, policy=policy,
            error=f"{type(exc).__name__}: {exc}",
        )  # fmt: skip
    except ResyncError as exc:
        # Our side (data missing from the store, no such customer): retrying will not help.
        return _fail(
            db, request, attempt_id, outcome="failed", actor=actor, now=now, policy=policy,
            error=str(exc), retry=False,
        )  # fmt: skip
    _circuit.record_success(db, request.system, now)
    return _Done(request, attempt_id, repair)


def _confirm(
    db: store.Store,
    done: list[_Done],
    config: ResyncConfig,
    actor: str,
    now: datetime,
    summary: CycleSummary,
) -> int:
    """Reconcile again and settle each repaired request by its break's new status."""
    as_of = config.as_of
    if as_of is None:
        with db.begin() as conn:
            as_of = store.last_reconcile_as_of(conn) or now
    report = run_reconcile(db, as_of=as_of, config=config.reconcile)
    with db.begin() as conn:
        register = store.read_breaks(conn, [d.request.break_id for d in done])
    statuses = dict(register.select("break_id", "status").iter_rows())
    for item in done:
        request, repair = item.request, item.repair
        status = statuses.get(request.break_id)
        if status in ACTIVE_STATUSES:
            summary.outcomes.append(
                _fail(
                    db, request, item.attempt_id, outcome="unconfirmed", actor=actor, now=now,
                    policy=config.policy,
                    error=f"break still detected after the repair (reconcile run {report.run_id})",
                )
            )  # fmt: skip
            continue
        detail = (
            f"{'created' if repair.created else 'found'} {repair.result_id}; break {status}"
            if repair.result_id
            else f"re-fetched; break {status}"
        )
        summary.outcomes.append(
            _close(
                db, request, item.attempt_id, status="succeeded", outcome="succeeded",
                detail=detail, actor=actor, now=now, result_id=repair.result_id,
            )
        )  # fmt: skip
    return report.run_id
