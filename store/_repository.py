"""Repository functions for cursors, quarantine, probe runs and bulk reads.

Each function takes an open SQLAlchemy ``Connection`` (inside the caller's transaction) and
returns plain values, dataclasses or polars frames, never ORM objects. The bulk upsert has its
own module, ``_upsert``; row movement per backend is in ``_bulk``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import polars as pl
from sqlalchemy import (
    Connection,
    Subquery,
    Table,
    func,
    insert,
    select,
    update,
)

from store import _bulk
from store._schema import (
    Entity,
    probe_runs,
    quarantine,
    source_cursors,
    state_changes,
)


@dataclass(frozen=True)
class QuarantineItem:
    """A record that failed validation, kept with its raw payload and the reason.

    ``raw_payload`` is what the vendor sent for this record (bytes, or text stored as UTF-8).
    """

    source_system: str
    stream: str
    reason: str
    raw_payload: bytes | str
    source_id: str | None = None


@dataclass(frozen=True)
class QuarantineRecord:
    id: int
    source_system: str
    stream: str
    source_id: str | None
    reason: str
    raw_payload: bytes
    received_at: datetime
    probe_run_id: int | None


@dataclass(frozen=True)
class ProbeRun:
    id: int
    source_system: str
    stream: str | None
    started_at: datetime
    finished_at: datetime | None
    status: str
    records_read: int
    records_written: int
    records_unchanged: int
    stale_versions: int
    quarantined: int
    error: str | None


# --------------------------------------------------------------------------- cursors


def read_cursor(conn: Connection, source_system: str, stream: str) -> str | None:
    """The stored cursor of one stream, or None before its first successful batch."""
    return conn.execute(
        select(source_cursors.c.cursor).where(
            source_cursors.c.source_system == source_system, source_cursors.c.stream == stream
        )
    ).scalar_one_or_none()


def advance_cursor(
    conn: Connection, source_system: str, stream: str, cursor: str, *, at: datetime
) -> None:
    """Store a stream's cursor; call it in the transaction that writes the records it covers."""
    key = (source_cursors.c.source_system == source_system, source_cursors.c.stream == stream)
    changed = conn.execute(
        update(source_cursors).where(*key).values(cursor=cursor, updated_at=at)
    ).rowcount
    if not changed:
        conn.execute(
            insert(source_cursors).values(
                source_system=source_system, stream=stream, cursor=cursor, updated_at=at
            )
        )


# --------------------------------------------------------------------------- quarantine


def insert_quarantine(
    conn: Connection,
    items: Sequence[QuarantineItem],
    *,
    received_at: datetime,
    probe_run_id: int | None = None,
) -> int:
    """Keep invalid records with their raw payload and reason; returns how many were kept."""
    if not items:
        return 0
    conn.execute(
        insert(quarantine),
        [
            {
                "source_system": i.source_system,
                "stream": i.stream,
                "source_id": i.source_id,
                "reason": i.reason,
                "raw_payload": i.raw_payload.encode()
                if isinstance(i.raw_payload, str)
                else i.raw_payload,
                "received_at": received_at,
                "probe_run_id": probe_run_id,
            }
            for i in items
        ],
    )
    return len(items)


def list_quarantine(
    conn: Connection, *, source_system: str | None = None, limit: int = 100
) -> list[QuarantineRecord]:
    query = select(quarantine).order_by(quarantine.c.id.desc()).limit(limit)
    if source_system is not None:
        query = query.where(quarantine.c.source_system == source_system)
    return [
        QuarantineRecord(**(row._asdict() | {"raw_payload": bytes(row.raw_payload)}))
        for row in conn.execute(query)
    ]


# --------------------------------------------------------------------------- probe runs


def start_probe_run(
    conn: Connection, source_system: str, stream: str | None, *, at: datetime
) -> int:
    """Record that a probe run began; returns its id."""
    return int(
        conn.execute(
            insert(probe_runs)
            .values(source_system=source_system, stream=stream, started_at=at, status="running")
            .returning(probe_runs.c.id)
        ).scalar_one()
    )


def add_probe_run_counts(
    conn: Connection,
    run_id: int,
    *,
    read: int = 0,
    written: int = 0,
    unchanged: int = 0,
    stale: int = 0,
    quarantined: int = 0,
) -> None:
    """Add one batch's counts to its run, inside the batch's transaction."""
    c = probe_runs.c
    conn.execute(
        update(probe_runs)
        .where(c.id == run_id)
        .values(
            records_read=c.records_read + read,
            records_written=c.records_written + written,
            records_unchanged=c.records_unchanged + unchanged,
            stale_versions=c.stale_versions + stale,
            quarantined=c.quarantined + quarantined,
        )
    )


def finish_probe_run(
    conn: Connection, run_id: int, *, status: str, at: datetime, error: str | None = None
) -> None:
    """Close a run as succeeded, partial or failed."""
    if status not in {"succeeded", "partial", "failed"}:
        raise ValueError(f"unknown probe run status {status!r}")
    conn.execute(
        update(probe_runs)
        .where(probe_runs.c.id == run_id)
        .values(status=status, finished_at=at, error=error)
    )


def list_probe_runs(
    conn: Connection, *, source_system: str | None = None, limit: int = 100
) -> list[ProbeRun]:
    query = select(probe_runs).order_by(probe_runs.c.id.desc()).limit(limit)
    if source_system is not None:
        query = query.where(probe_runs.c.source_system == source_system)
    return [ProbeRun(**row._asdict()) for row in conn.execute(query)]


# --------------------------------------------------------------------------- bulk reads


def read_frame(
    conn: Connection,
    entity: Entity,
    *,
    columns: Iterable[str] | None = None,
    include_deleted: bool = False,
) -> pl.DataFrame:
    """All records of an entity as a polars frame typed by the entity's schema."""
    table = entity.table
    names = list(columns) if columns is not None else [c.name for c in table.columns]
    unknown = [n for n in names if n not in table.c]
    if unknown:
        raise ValueError(f"{entity.name}: unknown columns {unknown}")
    query = select(*(table.c[n] for n in names)).order_by(table.c.source_system, table.c.source_id)
    if not include_deleted:
        query = query.where(table.c.is_deleted.is_(False))
    return read_query(conn, query, _bulk.polars_schema(table, names))


def read_history(conn: Connection, *, entity: str | None = None) -> pl.DataFrame:
    """State-change history, oldest first."""
    query = select(state_changes).order_by(state_changes.c.id)
    if entity is not None:
        query = query.where(state_changes.c.entity == entity)
    return read_query(conn, query, _bulk.polars_schema(state_changes, list(state_changes.c.keys())))


def source_systems(table: Table) -> Subquery:
    """The distinct ``source_system`` values of a table (one column, ``system``), found by
    skipping along an index that leads with it.

    A loose index scan: one index probe per system, where SELECT DISTINCT or GROUP BY would read
    every row. The table needs an index (or primary key) whose first column is source_system.
    """
    column = table.c.source_system
    first = select(func.min(column).label("system")).cte(f"{table.name}_systems", recursive=True)
    following = select(func.min(column)).where(column > first.c.system).scalar_subquery()
    found = first.union_all(select(following).where(first.c.system.is_not(None)))
    # The recursion ends on a null row (no system after the last one): not a system.
    return select(found.c.system).where(found.c.system.is_not(None)).subquery()


def read_query(conn: Connection, query: Any, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """Run a SELECT and return a typed polars frame: through COPY on PostgreSQL, raw rows on SQLite."""
    sql = str(query.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
    if conn.dialect.name == "postgresql":
        return _bulk.copy_out(conn, sql, schema)
    rows = conn.exec_driver_sql(sql).all()
    return _bulk.sqlite_decode([tuple(r) for r in rows], schema)
