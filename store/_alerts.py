"""Reads for the Prometheus exporter and the Alertmanager push: the latest snapshot, health, stuck breaks.

Every read here is small and bounded by what the reconciler aggregated, never by the estate: the
latest succeeded run and its KPI snapshot rows (``kpi_snapshots`` is indexed by run), run counts
by status, one row per source system of probe health, and, for the push, the breaks of the
alerted types that are active or changed status recently (``breaks`` is indexed by status and
type).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import polars as pl
from sqlalchemy import Connection, and_, func, or_, select

from store._reconcile import (
    ReconcileRun,
    _read,
    breaks,
    kpi_snapshots,
    latest_probe_time,
    reconcile_runs,
)
from store._repository import source_systems
from store._schema import probe_runs

SOURCE_HEALTH_SCHEMA: dict[str, pl.DataType] = {
    "source_system": pl.String(),
    "last_attempt_at": pl.Datetime("us", "UTC"),
    "last_success_at": pl.Datetime("us", "UTC"),
    "last_failure_at": pl.Datetime("us", "UTC"),
}


KPI_ROW_SCHEMA: dict[str, pl.DataType] = {
    "kpi": pl.String(),
    "dimension": pl.String(),
    "value": pl.Float64(),
    "value_minor": pl.Int64(),
    "unit": pl.String(),
    "currency": pl.String(),
}


@dataclass(frozen=True)
class Snapshot:
    """The latest succeeded reconcile run and its KPI rows (kpi, dimension, value, value_minor,
    unit, currency); ``run`` is None before the first succeeded run."""

    run: ReconcileRun | None
    kpis: pl.DataFrame
    runs_by_status: dict[str, int]


def read_latest_snapshot(conn: Connection) -> Snapshot:
    """The newest succeeded run (by as-of, then id), its KPI snapshot and run counts by status."""
    row = conn.execute(
        select(reconcile_runs)
        .where(reconcile_runs.c.status == "succeeded")
        .order_by(reconcile_runs.c.as_of.desc(), reconcile_runs.c.id.desc())
        .limit(1)
    ).first()
    counts = {
        str(status): int(n)
        for status, n in conn.execute(
            select(reconcile_runs.c.status, func.count()).group_by(reconcile_runs.c.status)
        )
    }
    if row is None:
        return Snapshot(None, pl.DataFrame(schema=KPI_ROW_SCHEMA), counts)
    run = ReconcileRun(**row._asdict())
    # A few hundred rows: plain driver rows are quicker here than the bulk (COPY) path.
    c = kpi_snapshots.c
    query = select(*(c[name] for name in KPI_ROW_SCHEMA)).where(c.run_id == run.id).order_by(c.id)
    rows = [tuple(r) for r in conn.execute(query)]
    return Snapshot(run, pl.DataFrame(rows, schema=KPI_ROW_SCHEMA, orient="row"), counts)


def read_source_health(conn: Connection) -> pl.DataFrame:
    """Per source system: last probe run started, last success and last failure finished.

    Columns SOURCE_HEALTH_SCHEMA; one row per system that ever ran.
    """
    # Read at every scrape: each latest time is an index probe per system.
    c = probe_runs.c
    systems = source_systems(probe_runs)
    query = select(
        systems.c.system,
        latest_probe_time(systems, c.started_at),
        latest_probe_time(systems, c.finished_at, c.status == "succeeded"),
        latest_probe_time(systems, c.finished_at, c.status == "failed"),
    ).order_by(systems.c.system)
    rows = [tuple(r) for r in conn.execute(query)]
    return pl.DataFrame(rows, schema=SOURCE_HEALTH_SCHEMA, orient="row")


def read_alert_breaks(
    conn: Connection,
    break_types: Sequence[str],
    *,
    active_statuses: Sequence[str],
    ended_since: datetime,
) -> pl.DataFrame:
    """Breaks of ``break_types`` that are active, or left an active status at ``ended_since`` or
    later (resolved or accepted): the firing and the recently ended stuck alerts.

    Columns: the break register's (``BREAK_COLUMNS``), oldest ``since`` first.
    """
    c = breaks.c
    query = (
        select(breaks)
        .where(
            c.break_type.in_(list(break_types)),
            or_(
                c.status.in_(list(active_statuses)),
                and_(c.status.not_in(list(active_statuses)), c.status_since >= ended_since),
            ),
        )
        .order_by(c.since, c.break_id)
    )
    return _read(conn, breaks, query)
