"""Reconciler persistence: runs, the break register with its transitions, KPI snapshots, probe health.

The reconciler computes in polars and decides; these repository functions only move its frames
in and out, inside the caller's transaction (``Store.begin``). A break row is the *current* state
of one problem (keyed by its stable ``break_id``); ``break_transitions`` keeps every change of
status ever made, by a run or by an operator; ``kpi_snapshots`` keeps every run's KPIs with the
run's as-of time, so a KPI's history is a query, not a recomputation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import polars as pl
from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Float,
    Index,
    Integer,
    String,
    Table,
    Text,
    delete,
    func,
    insert,
    select,
    update,
)

from store import _bulk
from store._repository import read_query, source_systems
from store._schema import Entity, metadata, probe_runs
from store._types import UTCDateTime

_PK = BigInteger().with_variant(Integer(), "sqlite")
_IN_CHUNK = 500  # bound parameters per IN list, well under every backend's limit

reconcile_runs = Table(
    "reconcile_runs",
    metadata,
    Column("id", _PK, primary_key=True, autoincrement=True),
    Column("as_of", UTCDateTime(), nullable=False),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("finished_at", UTCDateTime()),
    Column("status", String(16), nullable=False),
    Column("breaks_detected", BigInteger(), nullable=False, default=0),
    Column("breaks_new", BigInteger(), nullable=False, default=0),
    Column("breaks_resolved", BigInteger(), nullable=False, default=0),
    Column("breaks_reopened", BigInteger(), nullable=False, default=0),
    Column("transitions", BigInteger(), nullable=False, default=0),
    Column("error", Text()),
    Index(None, "as_of"),
)

breaks = Table(
    "breaks",
    metadata,
    Column("break_id", String(40), primary_key=True),
    Column("break_type", String(64), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("remediation", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("key", String(255), nullable=False),
    Column("records", Text(), nullable=False),
    Column("systems", String(255), nullable=False),
    Column("legal_entity", String(32)),
    Column("amount_minor", BigInteger()),
    Column("currency", String(3)),
    Column("amount_reporting_minor", BigInteger()),
    Column("reporting_currency", String(3)),
    Column("since", UTCDateTime()),
    Column("first_detected_at", UTCDateTime(), nullable=False),
    Column("status_since", UTCDateTime(), nullable=False),
    Column("resolved_at", UTCDateTime()),
    Column("detail", Text()),
    Column("accepted_note", Text()),
    Column("accepted_until", UTCDateTime()),
    Column("accepted_by", String(128)),
    Column("updated_run_id", BigInteger()),
    Index(None, "status", "break_type"),
)

break_transitions = Table(
    "break_transitions",
    metadata,
    Column("id", _PK, primary_key=True, autoincrement=True),
    Column("break_id", String(40), nullable=False),
    Column("run_id", BigInteger()),
    Column("from_status", String(16)),
    Column("to_status", String(16), nullable=False),
    Column("at", UTCDateTime(), nullable=False),
    Column("actor", String(128), nullable=False),
    Column("note", Text()),
    Index(None, "break_id"),
)

break_records = Table(
    "break_records",
    metadata,
    # The records each break names (its ``records`` JSON, one row each), so "which breaks mention
    # this record" is an index lookup, not a text scan of every break. Kept in step with the
    # register by write_break_register.
    Column("break_id", String(40), primary_key=True),
    Column("entity", String(64), primary_key=True),
    Column("source_system", String(32), primary_key=True),
    Column("source_id", String(64), primary_key=True),
    Index(None, "source_id"),
)

kpi_snapshots = Table(
    "kpi_snapshots",
    metadata,
    Column("id", _PK, primary_key=True, autoincrement=True),
    Column("run_id", BigInteger(), nullable=False),
    Column("as_of", UTCDateTime(), nullable=False),
    Column("kpi", String(64), nullable=False),
    Column("dimension", String(128), nullable=False),
    Column("value", Float()),
    Column("value_minor", BigInteger()),
    Column("unit", String(16), nullable=False),
    Column("currency", String(3)),
    Index(None, "kpi", "as_of"),
    Index(None, "run_id"),
)

BREAK_COLUMNS: tuple[str, ...] = tuple(c.name for c in breaks.columns)
"""The columns of a break-register frame, in table order."""


@dataclass(frozen=True)
class ReconcileRun:
    id: int
    as_of: datetime
    started_at: datetime
    finished_at: datetime | None
    status: str
    breaks_detected: int
    breaks_new: int
    breaks_resolved: int
    breaks_reopened: int
    transitions: int
    error: str | None


def _schema(table: Table) -> dict[str, pl.DataType]:
    schema = _bulk.polars_schema(table, [c.name for c in table.columns])
    for column in table.columns:
        if isinstance(column.type, Float):
            schema[column.name] = pl.Float64()
    return schema


def _read(conn: Connection, table: Table, query: object) -> pl.DataFrame:
    schema = _schema(table)
    text_schema = {n: (pl.String() if d == pl.Float64 else d) for n, d in schema.items()}
    frame = read_query(conn, query, text_schema)
    return frame.cast(schema)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- runs


def start_reconcile_run(conn: Connection, *, as_of: datetime, at: datetime) -> int:
    """Record that a reconcile run began; returns its id."""
    return int(
        conn.execute(
            insert(reconcile_runs)
            .values(as_of=as_of, started_at=at, status="running")
            .returning(reconcile_runs.c.id)
        ).scalar_one()
    )


def finish_reconcile_run(
    conn: Connection,
    run_id: int,
    *,
    status: str,
    at: datetime,
    counts: Mapping[str, int] | None = None,
    error: str | None = None,
) -> None:
    """Close a run as succeeded or failed, with its break counts."""
    if status not in {"succeeded", "failed"}:
        raise ValueError(f"unknown reconcile run status {status!r}")
    known = {"breaks_detected", "breaks_new", "breaks_resolved", "breaks_reopened", "transitions"}
    values = {k: int(v) for k, v in (counts or {}).items() if k in known}
    conn.execute(
        update(reconcile_runs)
        .where(reconcile_runs.c.id == run_id)
        .values(status=status, finished_at=at, error=error, **values)
    )


def list_reconcile_runs(conn: Connection, *, limit: int = 100) -> list[ReconcileRun]:
    """The most recent runs first."""
    query = select(reconcile_runs).order_by(reconcile_runs.c.id.desc()).limit(limit)
    return [ReconcileRun(**row._asdict()) for row in conn.execute(query)]


# --------------------------------------------------------------------------- breaks


def read_break_register(conn: Connection, *, ordered: bool = True) -> pl.DataFrame:
    """Every break ever recorded, in its current state (columns BREAK_COLUMNS).

    In ``break_id`` order unless ``ordered`` is false: the server's sort is a third of the read
    (at 291k breaks, 1.9 s against 1.2 s), and a reconcile run does not need it.
    """
    query = select(breaks)
    return _read(conn, breaks, query.order_by(breaks.c.break_id) if ordered else query)


def write_break_register(conn: Connection, inserted: pl.DataFrame, updated: pl.DataFrame) -> int:
    """Insert new break rows and overwrite changed ones (keyed by break_id); returns the count.

    The breaks' records are indexed in ``break_records`` in the same transaction.
    """
    schema = _schema(breaks)
    written = 0
    if not inserted.is_empty():
        rows = inserted.select(BREAK_COLUMNS).cast(schema)  # type: ignore[arg-type]
        written += _bulk.insert_frame(conn, breaks, rows)
        _bulk.insert_frame(conn, break_records, break_record_rows(rows))
    if not updated.is_empty():
        rows = updated.select(BREAK_COLUMNS).cast(schema)  # type: ignore[arg-type]
        written += _bulk.update_frame(conn, breaks, rows, ["break_id"])
        # A break keeps its id while its records may change (a second duplicate appears).
        ids = rows.get_column("break_id").to_list()
        for start in range(0, len(ids), _IN_CHUNK):
            conn.execute(
                delete(break_records).where(
                    break_records.c.break_id.in_(ids[start : start + _IN_CHUNK])
                )
            )
        _bulk.insert_frame(conn, break_records, break_record_rows(rows))
    return written


_RECORD_FIELDS = pl.List(
    pl.Struct({"system": pl.String(), "entity": pl.String(), "id": pl.String()})
)


def break_record_rows(register: pl.DataFrame) -> pl.DataFrame:
    """One (break_id, entity, source_system, source_id) row per record a break names, unique."""
    if register.is_empty():
        return pl.DataFrame(schema=_schema(break_records))
    return (
        register.lazy()
        .select("break_id", pl.col("records").str.json_decode(_RECORD_FIELDS).alias("r"))
        .explode("r")
        .unnest("r")
        .select(
            "break_id",
            "entity",
            pl.col("system").alias("source_system"),
            pl.col("id").alias("source_id"),
        )
        .drop_nulls()
        .unique()
        .collect()
    )


def insert_break_transitions(conn: Connection, frame: pl.DataFrame) -> int:
    """Append transitions (break_id, run_id, from_status, to_status, at, actor, note)."""
    if frame.is_empty():
        return 0
    columns = ["break_id", "run_id", "from_status", "to_status", "at", "actor", "note"]
    schema = _schema(break_transitions)
    return _bulk.insert_frame(
        conn, break_transitions, frame.select(columns).cast({c: schema[c] for c in columns})
    )


def read_break_transitions(conn: Connection, *, break_id: str | None = None) -> pl.DataFrame:
    """Transitions, oldest first; all of them or one break's."""
    query = select(break_transitions).order_by(break_transitions.c.id)
    if break_id is not None:
        query = query.where(break_transitions.c.break_id == break_id)
    return _read(conn, break_transitions, query)


def set_break_acceptance(
    conn: Connection,
    break_id: str,
    *,
    status: str,
    note: str | None,
    until: datetime | None,
    actor: str,
    at: datetime,
    allowed_from: tuple[str, ...] | None = None,
) -> str | None:
    """Change one break's status by an operator, with a transition; returns the old status.

    Changes nothing when no break has that id (returns None) or when its status is not one of
    ``allowed_from`` (returns that status).
    """
    old = conn.execute(
        select(breaks.c.status).where(breaks.c.break_id == break_id).with_for_update()
    ).scalar_one_or_none()
    if old is None or (allowed_from is not None and old not in allowed_from):
        return None if old is None else str(old)
    conn.execute(
        update(breaks)
        .where(breaks.c.break_id == break_id)
        .values(
            status=status, status_since=at, accepted_note=note, accepted_until=until,
            accepted_by=actor,
        )
    )  # fmt: skip
    conn.execute(
        insert(break_transitions).values(
            break_id=break_id, run_id=None, from_status=old, to_status=status, at=at,
            actor=actor, note=note,
        )
    )  # fmt: skip
    return str(old)


def lock_break_register(conn: Connection) -> None:
    """Serialise reconcile runs that update the register (several workers, one database).

    PostgreSQL: a transaction-scoped advisory lock; SQLite: the write transaction already holds
    the database's single write lock.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(select(func.pg_advisory_xact_lock(func.hashtext("o2c.reconcile.register"))))


def last_reconcile_as_of(conn: Connection) -> datetime | None:
    """The latest as-of time of a succeeded run, or None before the first."""
    return conn.execute(
        select(func.max(reconcile_runs.c.as_of)).where(reconcile_runs.c.status == "succeeded")
    ).scalar_one_or_none()


# --------------------------------------------------------------------------- KPI snapshots


def insert_kpi_snapshot(conn: Connection, run_id: int, as_of: datetime, frame: pl.DataFrame) -> int:
    """Keep one run's KPIs (kpi, dimension, value, value_minor, unit, currency) with its as-of."""
    if frame.is_empty():
        return 0
    schema = _schema(kpi_snapshots)
    columns = ["kpi", "dimension", "value", "value_minor", "unit", "currency"]
    rows = frame.select(columns).with_columns(
        pl.lit(run_id).alias("run_id"), pl.lit(as_of).dt.convert_time_zone("UTC").alias("as_of")
    )
    rows = rows.select(["run_id", "as_of", *columns]).cast(
        {c: schema[c] for c in ["run_id", "as_of", *columns]}
    )
    return _bulk.insert_frame(conn, kpi_snapshots, rows)


def read_kpi_snapshots(
    conn: Connection, *, run_id: int | None = None, kpi: str | None = None
) -> pl.DataFrame:
    """Stored KPI values, oldest run first; filtered by run and/or KPI name."""
    query = select(kpi_snapshots).order_by(kpi_snapshots.c.id)
    if run_id is not None:
        query = query.where(kpi_snapshots.c.run_id == run_id)
    if kpi is not None:
        query = query.where(kpi_snapshots.c.kpi == kpi)
    return _read(conn, kpi_snapshots, query)


# --------------------------------------------------------------------------- canonical reads


def read_canonical(
    conn: Connection,
    entity: Entity,
    columns: Sequence[str],
    *,
    written_after: datetime | None = None,
) -> pl.DataFrame:
    """An entity's records (deleted ones included, unordered) as a typed frame, the fast way.

    ``written_after`` keeps only the versions stored after that time (``last_seen_at``): the
    changes since an earlier read. A whole large table on PostgreSQL is read as Arrow by the
    ADBC driver (binary COPY, in the snapshot of ``conn``'s transaction: ``_bulk.read_arrow``);
    the rest through ``conn`` itself (COPY on PostgreSQL, raw driver rows on SQLite).
    """
    table = entity.table
    query = select(*(table.c[n] for n in columns))
    if written_after is not None:
        query = query.where(table.c.last_seen_at > written_after)
    sql = str(query.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
    schema = _bulk.polars_schema(table, list(columns))
    if written_after is None and _bulk.estimated_rows(conn, table) >= ARROW_READ_MIN_ROWS:
        return _bulk.read_arrow(conn, sql, schema)
    if written_after is None or conn.dialect.name != "postgresql":
        return _bulk.read_sql(conn, sql, schema)
    # The changes since a time are a range of the last_seen_at index, but a table never
    # analysed (autovacuum off, or not yet run after a bulk fill) looks to the planner as if
    # a third of it matched, and it scans: 1.3 s for 11.7M time entries to find no change, at
    # every reconcile. Scans are priced out for this one read (a bitmap scan still serves a
    # large change set well), and restored after it.
    conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
    try:
        return _bulk.read_sql(conn, sql, schema)
    finally:
        conn.exec_driver_sql("RESET enable_seqscan")


ARROW_READ_MIN_ROWS = 50_000
"""Below this many rows the driver's own connection costs more than it saves (measured: about
0.08 CPU-seconds to connect, against about 1 CPU-microsecond saved per row read); reads of the
changes since a time are usually small and go through the transaction too."""


def last_written(conn: Connection, entity: Entity) -> datetime | None:
    """When the newest stored version of an entity was written (None when it has no records)."""
    return conn.execute(select(func.max(entity.table.c.last_seen_at))).scalar_one_or_none()


# --------------------------------------------------------------------------- probe health


def latest_probe_time(systems: Any, column: Any, *where: Any) -> Any:
    """The latest ``column`` of a system's probe runs matching ``where``, as a scalar subquery
    correlated with ``systems`` (``source_systems(probe_runs)``).

    One index probe per system (source_system leads both probe_runs indexes), not a GROUP BY
    over every run ever kept: probe_runs only grows (about 20,000 runs a day).
    """
    c = probe_runs.c
    return (
        select(func.max(column))
        .where(c.source_system == systems.c.system, *where)
        .scalar_subquery()
    )


def read_probe_health(conn: Connection, *, as_of: datetime) -> pl.DataFrame:
    """Per source system: last probe run started by ``as_of`` and last one that succeeded.

    Columns: source_system, last_attempt_at, last_success_at (null if none succeeded); systems
    with no run started by ``as_of`` are left out. Read at every reconcile.
    """
    c = probe_runs.c
    systems = source_systems(probe_runs)
    started = c.started_at <= as_of
    found = select(
        systems.c.system.label("source_system"),
        latest_probe_time(systems, c.started_at, started).label("last_attempt_at"),
        latest_probe_time(systems, c.finished_at, started, c.status == "succeeded").label(
            "last_success_at"
        ),
    ).subquery()
    query = (
        select(found).where(found.c.last_attempt_at.is_not(None)).order_by(found.c.source_system)
    )
    rows = conn.execute(query).all()
    return pl.DataFrame(
        [tuple(r) for r in rows],
        schema={
            "source_system": pl.String(),
            "last_attempt_at": pl.Datetime("us", "UTC"),
            "last_success_at": pl.Datetime("us", "UTC"),
        },
        orient="row",
    )
