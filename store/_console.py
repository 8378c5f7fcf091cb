"""Console reads and writes: one deal's records and history, per-stream health, quarantine, acknowledgements.

The Streamlit console (``dashboards``) never writes SQL; the targeted reads it needs beyond the
reconciler's live here. Each takes an open ``Connection`` (``Store.begin``) and returns a typed
polars frame. An *acknowledgement* is an operator saying "seen, working on it" without changing a
break's lifecycle: a ``break_transitions`` row whose status does not move (from = to), with the
actor and the note. The reconciler never writes such a row, so they are told apart by that alone.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime

import polars as pl
from sqlalchemy import Connection, Table, and_, false, func, insert, or_, select

from store import _bulk
from store._reconcile import (
    _IN_CHUNK,
    BREAK_COLUMNS,
    _read,
    break_records,
    break_transitions,
    breaks,
)
from store._repository import read_query, source_systems
from store._schema import Entity, probe_runs, quarantine, state_changes


def read_records_where(
    conn: Connection,
    entity: Entity,
    any_of: Mapping[str, Collection[str]],
    *,
    include_deleted: bool = False,
) -> pl.DataFrame:
    """Records of an entity whose column is one of the given values, for any listed column.

    ``{"source_id": ["006A"], "opportunity_ref": ["006A"]}`` reads the records that are, or point
    at, ``006A``. Every column of the table is returned (store schema), ordered by system and id.
    """
    table = entity.table
    unknown = [name for name in any_of if name not in table.c]
    if unknown:
        raise ValueError(f"{entity.name}: unknown columns {unknown}")
    names = [c.name for c in table.columns]
    schema = _bulk.polars_schema(table, names)
    # One query per condition: an OR of differently indexed columns makes both SQLite and
    # PostgreSQL scan the table. source_id is the primary key's second column, so it is looked up
    # together with every system the table holds (a handful), which the key's index serves.
    systems: list[str] | None = None
    frames = []
    for name, values in any_of.items():
        wanted = sorted({v for v in values if v is not None})
        if wanted and name == "source_id" and systems is None:
            systems = _systems_in(conn, table)
        for start in range(0, len(wanted), _IN_CHUNK):
            query = select(table).where(table.c[name].in_(wanted[start : start + _IN_CHUNK]))
            if name == "source_id":
                query = query.where(table.c.source_system.in_(systems or []))
            if not include_deleted:
                query = query.where(table.c.is_deleted.is_(False))
            frames.append(read_query(conn, query, schema))
    if not frames:
        return pl.DataFrame(schema=schema)
    return (
        pl.concat(frames)
        .unique(["source_system", "source_id"], keep="first", maintain_order=True)
        .sort("source_system", "source_id")
    )


def _systems_in(conn: Connection, table: Table) -> list[str]:
    return [str(r[0]) for r in conn.execute(select(source_systems(table)))]


def read_record_history(
    conn: Connection, entity: Entity, keys: Collection[tuple[str, str]]
) -> pl.DataFrame:
    """Every recorded change of a tracked field of the given (system, id) records, oldest first.

    Columns: entity, source_system, source_id, field, old_value, new_value, observed_at,
    source_modified_at.
    """
    c = state_changes.c
    columns = ["entity", "source_system", "source_id", "field", "old_value", "new_value",
               "observed_at", "source_modified_at"]  # fmt: skip
    schema = _bulk.polars_schema(state_changes, columns)
    by_system: dict[str, list[str]] = {}
    for system, source_id in keys:
        by_system.setdefault(system, []).append(source_id)
    conditions = []
    for system, ids in sorted(by_system.items()):
        ids = sorted(set(ids))
        for start in range(0, len(ids), _IN_CHUNK):
            conditions.append(
                and_(c.source_system == system, c.source_id.in_(ids[start : start + _IN_CHUNK]))
            )
    if not conditions:
        return pl.DataFrame(schema=schema)
    query = (
        select(*(c[name] for name in columns))
        .where(c.entity == entity.name, or_(*conditions))
        .order_by(c.id)
    )
    return read_query(conn, query, schema)


def read_stream_health(conn: Connection) -> pl.DataFrame:
    """Per (system, stream): the latest probe run and the latest successful one.

    Columns: source_system, stream, runs, last_started_at, last_status, last_error,
    last_success_at, last_records_read, last_quarantined.
    """
    c = probe_runs.c
    latest = (
        select(c.source_system, c.stream, func.max(c.id).label("last_id"), func.count().label("runs"),
               func.max(c.finished_at).filter(c.status == "succeeded").label("last_success_at"))
        .group_by(c.source_system, c.stream)
        .subquery()
    )  # fmt: skip
    query = (
        select(
            latest.c.source_system,
            latest.c.stream,
            latest.c.runs,
            c.started_at.label("last_started_at"),
            c.status.label("last_status"),
            c.error.label("last_error"),
            latest.c.last_success_at,
            c.records_read.label("last_records_read"),
            c.quarantined.label("last_quarantined"),
        )
        .join(probe_runs, c.id == latest.c.last_id)
        .order_by(latest.c.source_system, latest.c.stream)
    )
    schema: dict[str, pl.DataType] = {
        "source_system": pl.String(),
        "stream": pl.String(),
        "runs": pl.Int64(),
        "last_started_at": pl.Datetime("us", "UTC"),
        "last_status": pl.String(),
        "last_error": pl.String(),
        "last_success_at": pl.Datetime("us", "UTC"),
        "last_records_read": pl.Int64(),
        "last_quarantined": pl.Int64(),
    }
    return pl.DataFrame([tuple(r) for r in conn.execute(query)], schema=schema, orient="row")


def read_quarantine_summary(conn: Connection) -> pl.DataFrame:
    """Quarantined records per (system, stream): how many, and the newest one's time.

    Columns: source_system, stream, records, last_received_at.
    """
    c = quarantine.c
    query = (
        select(c.source_system, c.stream, func.count().label("records"),
               func.max(c.received_at).label("last_received_at"))
        .group_by(c.source_system, c.stream)
        .order_by(c.source_system, c.stream)
    )  # fmt: skip
    schema: dict[str, pl.DataType] = {
        "source_system": pl.String(),
        "stream": pl.String(),
        "records": pl.Int64(),
        "last_received_at": pl.Datetime("us", "UTC"),
    }
    return pl.DataFrame([tuple(r) for r in conn.execute(query)], schema=schema, orient="row")


def acknowledge_break(
    conn: Connection, break_id: str, *, actor: str, note: str, at: datetime
) -> str | None:
    """Record that ``actor`` acknowledged a break (its status does not change); returns the status.

    Returns None, writing nothing, when no break has that id.
    """
    status = conn.execute(
        select(breaks.c.status).where(breaks.c.break_id == break_id)
    ).scalar_one_or_none()
    if status is None:
        return None
    conn.execute(
        insert(break_transitions).values(
            break_id=break_id, run_id=None, from_status=status, to_status=status, at=at,
            actor=actor, note=note,
        )
    )  # fmt: skip
    return str(status)


def read_acknowledgements(conn: Connection) -> pl.DataFrame:
    """The latest acknowledgement of each acknowledged break.

    Columns: break_id, acknowledged_at, acknowledged_by, acknowledged_note.
    """
    t = break_transitions.c
    latest = (
        select(func.max(t.id).label("id"))
        .where(t.from_status == t.to_status)
        .group_by(t.break_id)
        .subquery()
    )
    query = (
        select(t.break_id, t.at, t.actor, t.note)
        .join(latest, latest.c.id == t.id)
        .order_by(t.break_id)
    )
    schema: dict[str, pl.DataType] = {
        "break_id": pl.String(),
        "acknowledged_at": pl.Datetime("us", "UTC"),
        "acknowledged_by": pl.String(),
        "acknowledged_note": pl.String(),
    }
    return pl.DataFrame([tuple(r) for r in conn.execute(query)], schema=schema, orient="row")


def read_breaks_mentioning(conn: Connection, source_ids: Collection[str]) -> pl.DataFrame:
    """Breaks that name any of the ids among their records (``break_records``).

    Columns BREAK_COLUMNS; ordered by first detection.
    """
    ids = sorted({i for i in source_ids if i})
    columns = [breaks.c[c] for c in BREAK_COLUMNS]
    frames = [
        _read(
            conn,
            breaks,
            select(*columns).where(
                breaks.c.break_id.in_(
                    select(break_records.c.break_id).where(
                        break_records.c.source_id.in_(ids[start : start + _IN_CHUNK])
                    )
                )
            ),
        )
        for start in range(0, len(ids), _IN_CHUNK)
    ]
    if not frames:
        return _read(conn, breaks, select(*columns).where(false()))
    return pl.concat(frames).unique("break_id").sort("first_detected_at", "break_id")


def read_break_transitions_of(conn: Connection, break_ids: Collection[str]) -> pl.DataFrame:
    """The transitions of the given breaks, oldest first (columns of ``break_transitions``)."""
    ids = sorted(set(break_ids))
    conditions = [
        break_transitions.c.break_id.in_(ids[start : start + _IN_CHUNK])
        for start in range(0, len(ids), _IN_CHUNK)
    ]
    query = select(break_transitions).order_by(break_transitions.c.at, break_transitions.c.id)
    query = (
        query.where(or_(*conditions))
        if conditions
        else query.where(break_transitions.c.id.is_(None))
    )
    return _read(conn, break_transitions, query)


def read_breaks_where(
    conn: Connection,
    *,
    statuses: Collection[str] | None = None,
    break_types: Collection[str] | None = None,
) -> pl.DataFrame:
    """The register rows of the given statuses and types only (columns BREAK_COLUMNS), by id."""
    query = select(*(breaks.c[c] for c in BREAK_COLUMNS)).order_by(breaks.c.break_id)
    if statuses is not None:
        query = query.where(breaks.c.status.in_(sorted(statuses)))
    if break_types is not None:
        query = query.where(breaks.c.break_type.in_(sorted(break_types)))
    return _read(conn, breaks, query)


def read_breaks_by_legal_entity(conn: Connection, *, statuses: Collection[str]) -> pl.DataFrame:
    """Breaks of the given statuses per legal entity: how many, and their amount at risk.

    Columns: legal_entity, breaks, at_risk_minor (reporting currency), reporting_currency.
    """
    c = breaks.c
    query = (
        select(c.legal_entity, func.count().label("breaks"),
               func.sum(c.amount_reporting_minor).label("at_risk_minor"),
               func.max(c.reporting_currency).label("reporting_currency"))
        .where(c.status.in_(sorted(statuses)))
        .group_by(c.legal_entity)
        .order_by(c.legal_entity)
    )  # fmt: skip
    schema: dict[str, pl.DataType] = {
        "legal_entity": pl.String(),
        "breaks": pl.Int64(),
        "at_risk_minor": pl.Int64(),
        "reporting_currency": pl.String(),
    }
    rows = [
        (r[0], int(r[1]), None if r[2] is None else int(r[2]), r[3]) for r in conn.execute(query)
    ]
    return pl.DataFrame(rows, schema=schema, orient="row")
