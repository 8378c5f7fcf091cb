"""The reconcile service: runs a reconcile against the store and decides what its findings change.

Lifecycle of a break across runs (every change is a row in ``break_transitions``)::

    (first detected) -> new -> open            after ``new_window`` while still detected
    new | open | reopened | accepted -> resolved   when a run no longer detects it
    resolved -> reopened                       when a later run detects it again
    reopened -> open                           after ``new_window`` while still detected
    new | open | reopened -> accepted          by an operator, with a note and an expiry
    accepted -> open                           when a run finds it past its expiry

A run with the same data at the same as-of time changes nothing: same ids, same statuses, no
transitions, no register writes (only the run row and its KPI snapshot). A run whose as-of is
earlier than the latest succeeded run is a replay: it computes and snapshots its KPIs but leaves
the register alone, because history cannot be rewritten by looking at the past again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import polars as pl

import store
from reconciler._breaks import BREAK_SCHEMA
from reconciler._canonical import Canonical, FrameCache
from reconciler._config import BREAK_TYPES, ReconcileConfig
from reconciler._engine import ReconcileResult, reconcile
from reconciler._errors import ReconcileError
from reconciler._kpis import KPI_SCHEMA, break_kpis

ACTIVE_STATUSES = ("new", "open", "reopened")
STATUSES = (*ACTIVE_STATUSES, "accepted", "resolved")
RUN_ACTOR = "reconciler"

_CONTENT = (
    "break_type", "severity", "remediation", "key", "records", "systems", "legal_entity",
    "amount_minor", "currency", "amount_reporting_minor", "reporting_currency", "since", "detail",
)  # fmt: skip
_REGISTER_SCHEMA: dict[str, pl.DataType] = {
    **{c: BREAK_SCHEMA[c] for c in ("break_id", *_CONTENT)},
    "status": pl.String(),
    "first_detected_at": pl.Datetime("us", "UTC"),
    "status_since": pl.Datetime("us", "UTC"),
    "resolved_at": pl.Datetime("us", "UTC"),
    "accepted_note": pl.String(),
    "accepted_until": pl.Datetime("us", "UTC"),
    "accepted_by": pl.String(),
    "updated_run_id": pl.Int64(),
}
TRANSITION_SCHEMA: dict[str, pl.DataType] = {
    "break_id": pl.String(),
    "run_id": pl.Int64(),
    "from_status": pl.String(),
    "to_status": pl.String(),
    "at": pl.Datetime("us", "UTC"),
    "actor": pl.String(),
    "note": pl.String(),
}


@dataclass(frozen=True)
class LifecyclePlan:
    """What a run changes: register rows to write, transitions to append, and the new state."""

    changed: pl.DataFrame
    transitions: pl.DataFrame
    state: pl.DataFrame


def plan_lifecycle(
    register: pl.DataFrame,
    detected: pl.DataFrame,
    *,
    run_id: int,
    as_of: datetime,
    config: ReconcileConfig,
) -> LifecyclePlan:
    """Apply one run's detections to the register (pure: decides, writes nothing)."""
    prev = register.select(list(_REGISTER_SCHEMA)).cast(_REGISTER_SCHEMA)  # type: ignore[arg-type]
    cur = detected.select("break_id", *_CONTENT).rename(lambda c: f"n_{c}")
    at = pl.lit(as_of).dt.convert_time_zone("UTC")
    j = prev.join(cur, left_on="break_id", right_on="n_break_id", how="full", coalesce=False)
    seen = pl.col("n_break_id").is_not_null()
    existed = pl.col("break_id").is_not_null()
    old = pl.col("status")
    settled = (at - pl.col("status_since")) >= config.new_window
    expired = pl.col("accepted_until").is_not_null() & (at > pl.col("accepted_until"))
    new_status = (
        pl.when(~existed)
        .then(pl.lit("new"))
        .when(seen & (old == "resolved"))
        .then(pl.lit("reopened"))
        .when(seen & (old == "accepted"))
        .then(pl.when(expired).then(pl.lit("open")).otherwise(pl.lit("accepted")))
        .when(seen & old.is_in(["new", "reopened"]))
        .then(pl.when(settled).then(pl.lit("open")).otherwise(old))
        .when(seen)
        .then(old)
        .when(old.is_in([*ACTIVE_STATUSES, "accepted"]))
        .then(pl.lit("resolved"))
        .otherwise(old)
    )
    j = j.with_columns(
        new_status.alias("_status"), pl.coalesce("break_id", "n_break_id").alias("_id")
    )
    moved = pl.col("_status").ne_missing(old)
    leaving_acceptance = moved & (old == "accepted")
    state = j.select(
        pl.col("_id").alias("break_id"),
        *[pl.when(seen).then(pl.col(f"n_{c}")).otherwise(pl.col(c)).alias(c) for c in _CONTENT],
        pl.col("_status").alias("status"),
        pl.coalesce("first_detected_at", at).alias("first_detected_at"),
        pl.when(moved).then(at).otherwise(pl.col("status_since")).alias("status_since"),
        pl.when(pl.col("_status") != "resolved")
        .then(pl.lit(None, pl.Datetime("us", "UTC")))
        .when(moved)
        .then(at)
        .otherwise(pl.col("resolved_at"))
        .alias("resolved_at"),
        *[
            pl.when(leaving_acceptance).then(None).otherwise(pl.col(c)).alias(c)
            for c in ("accepted_note", "accepted_until", "accepted_by")
        ],
        pl.col("updated_run_id"),
        moved.alias("_moved"),
        (seen & existed & pl.any_horizontal(
            [pl.col(c).ne_missing(pl.col(f"n_{c}")) for c in _CONTENT])).alias("_content"),
        pl.col("status").alias("_old"),
        leaving_acceptance.alias("_expired"),
    )  # fmt: skip
    state = state.with_columns(
        pl.when(pl.col("_moved") | pl.col("_content"))
        .then(pl.lit(run_id, pl.Int64))
        .otherwise(pl.col("updated_run_id"))
        .alias("updated_run_id")
    )
    transitions = state.filter(pl.col("_moved")).select(
        "break_id",
        pl.lit(run_id, pl.Int64).alias("run_id"),
        pl.col("_old").alias("from_status"),
        pl.col("status").alias("to_status"),
        at.alias("at"),
        pl.lit(RUN_ACTOR).alias("actor"),
        pl.when(pl.col("_expired")).then(pl.lit("acceptance expired")).alias("note"),
    )
    changed = state.filter(pl.col("_moved") | pl.col("_content"))
    columns = list(_REGISTER_SCHEMA)
    return LifecyclePlan(
        changed=changed.select(columns).sort("break_id"),
        transitions=transitions.cast(TRANSITION_SCHEMA).sort("break_id"),  # type: ignore[arg-type]
        state=state.select(columns).sort("break_id"),
    )


@dataclass(frozen=True)
class RunReport:
    """One persisted run: its id and as-of, the result, what changed, and the KPI snapshot."""

    run_id: int
    as_of: datetime
    result: ReconcileResult
    replay: bool
    counts: dict[str, int]
    open_by_type: dict[str, int]
    kpis: pl.DataFrame
    timings: dict[str, float] = field(default_factory=dict)
    """Wall seconds of each phase: load (store to frames), compute, persist."""


def _resolution_kpis(transitions: pl.DataFrame, state: pl.DataFrame, currency: str) -> pl.DataFrame:
    resolved = transitions.filter(pl.col("to_status") == "resolved").join(
        state.select("break_id", "remediation"), on="break_id", how="left"
    )
    automatic = resolved.filter(pl.col("remediation") == "auto").height
    accepted = state.filter(pl.col("status") == "accepted").height
    return pl.DataFrame(
        {
            "kpi": ["resolutions_count"] * 3,
            "dimension": ["kind=automatic", "kind=manual", "kind=accepted"],
            "value": [float(automatic), float(resolved.height - automatic), float(accepted)],
            "value_minor": [None, None, None],
            "unit": ["count"] * 3,
            "currency": [None, None, None],
        },
        schema={"kpi": pl.String(), "dimension": pl.String(), "value": pl.Float64(),
                "value_minor": pl.Int64(), "unit": pl.String(), "currency": pl.String()},
    )  # fmt: skip


def _trace_kpi(trace_id: str | None) -> pl.DataFrame:
    """The run's trace id as a snapshot row (the exporter's exemplar), or no row."""
    rows = [{"kpi": "reconcile_trace", "dimension": f"trace_id={trace_id}", "unit": "id"}]
    return pl.DataFrame(rows if trace_id else [], schema=KPI_SCHEMA)


def run_reconcile(
    db: store.Store,
    *,
    as_of: datetime | None = None,
    config: ReconcileConfig | None = None,
    cache: FrameCache | None = None,
    data: Canonical | None = None,
    tracer_provider: Any | None = None,
) -> RunReport:
    """Reconcile the store's data at ``as_of`` (now by default) and persist what it changes.

    With a ``cache`` (a directory of this reconciler's), only what changed in the store since
    the previous run is read from it. ``data`` reconciles canonical frames already in hand
    instead of the store's (replays of an export, tests and benchmarks of large estates); the
    findings are persisted the same way. With a ``tracer_provider`` the run is one span
    (``reconcile``) whose trace id is kept with the KPI snapshot (``reconcile_trace``).
    """
    if tracer_provider is None:
        return _run_reconcile(db, as_of, config, cache, data, None)
    tracer = tracer_provider.get_tracer("o2c.reconciler")
    with tracer.start_as_current_span("reconcile") as span:
        context = span.get_span_context()
        trace_id = f"{context.trace_id:032x}" if context.trace_id else None
        report = _run_reconcile(db, as_of, config, cache, data, trace_id)
        span.set_attribute("o2c.reconcile.run_id", report.run_id)
        span.set_attribute("o2c.reconcile.breaks_detected", report.counts["breaks_detected"])
        return report


def _run_reconcile(
    db: store.Store,
    as_of: datetime | None,
    config: ReconcileConfig | None,
    cache: FrameCache | None,
    data: Canonical | None,
    trace_id: str | None,
) -> RunReport:
    config = config or ReconcileConfig()
    as_of = (as_of or datetime.now(UTC)).astimezone(UTC)
    with db.begin(write=True) as conn:
        run_id = store.start_reconcile_run(conn, as_of=as_of, at=datetime.now(UTC))
    try:
        started = time.perf_counter()
        if data is None:
            data = Canonical.load(db, as_of, cache=cache)
        loaded = time.perf_counter()
        result = reconcile(data, as_of, config)
        computed = time.perf_counter()
        with db.begin(write=True) as conn:
            store.lock_break_register(conn)
            last = store.last_reconcile_as_of(conn)
            replay = last is not None and as_of < last
            register = store.read_break_register(conn, ordered=False)
            if replay:
                state = register
                transitions = pl.DataFrame(schema=TRANSITION_SCHEMA)
                written = 0
            else:
                plan = plan_lifecycle(
                    register, result.breaks, run_id=run_id, as_of=as_of, config=config
                )
                known = register.select("break_id")
                written = store.write_break_register(
                    conn,
                    plan.changed.join(known, on="break_id", how="anti"),
                    plan.changed.join(known, on="break_id", how="semi"),
                )
                store.insert_break_transitions(conn, plan.transitions)
                state, transitions = plan.state, plan.transitions
            active = state.filter(pl.col("status").is_in(ACTIVE_STATUSES))
            kpis = pl.concat(
                [
                    result.kpis.filter(~pl.col("kpi").str.starts_with("open_breaks_")),
                    break_kpis(
                        active.join(
                            result.breaks.select("break_id", "sla_breached"),
                            on="break_id",
                            how="left",
                        ),
                        BREAK_TYPES,
                        config.reporting_currency,
                    ),
                    _resolution_kpis(transitions, state, config.reporting_currency),
                    _trace_kpi(trace_id),
                ],
                how="vertical",
            )
            store.insert_kpi_snapshot(conn, run_id, as_of, kpis)
            moves = dict(transitions.group_by("to_status").len().iter_rows())
            counts = {
                "breaks_detected": result.breaks.height,
                "breaks_new": int(moves.get("new", 0)),
                "breaks_resolved": int(moves.get("resolved", 0)),
                "breaks_reopened": int(moves.get("reopened", 0)),
                "transitions": transitions.height,
                "register_rows_written": written,
            }
            store.finish_reconcile_run(
                conn, run_id, status="succeeded", at=datetime.now(UTC), counts=counts
            )
    except Exception as exc:
        with db.begin(write=True) as conn:
            store.finish_reconcile_run(
                conn, run_id, status="failed", at=datetime.now(UTC), error=str(exc)[:2000]
            )
        if isinstance(exc, store.O2CError):
            raise
        raise ReconcileError(f"reconcile run {run_id} failed: {exc}", run_id=run_id) from exc
    open_by_type = dict(active.group_by("break_type").len().iter_rows())
    timings = {
        "load": loaded - started,
        "compute": computed - loaded,
        "persist": time.perf_counter() - computed,
    }
    return RunReport(
        run_id=run_id,
        as_of=as_of,
        result=result,
        replay=replay,
        counts=counts,
        open_by_type={t: int(open_by_type.get(t, 0)) for t in BREAK_TYPES},
        kpis=kpis,
        timings=timings,
    )


def accept_break(
    db: store.Store,
    break_id: str,
    *,
    note: str,
    until: datetime,
    actor: str,
    at: datetime | None = None,
) -> None:
    """An operator accepts an active break until ``until``, with a note (kept as a transition)."""
    at = (at or datetime.now(UTC)).astimezone(UTC)
    if not note.strip():
        raise ReconcileError("accepting a break needs a note", break_id=break_id)
    if until.tzinfo is None or until <= at:
        raise ReconcileError(
            "acceptance expiry must be an aware time in the future", break_id=break_id
        )
    with db.begin(write=True) as conn:
        old = store.set_break_acceptance(
            conn, break_id, status="accepted", note=note, until=until, actor=actor, at=at,
            allowed_from=ACTIVE_STATUSES,
        )  # fmt: skip
    if old is None:
        raise ReconcileError(f"no break {break_id}", break_id=break_id)
    if old not in ACTIVE_STATUSES:
        raise ReconcileError(f"break {break_id} is {old}, not open", break_id=break_id)
