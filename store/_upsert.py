"""The bulk upsert: stage a batch, then classify and apply it with a few set-based statements.

A batch of one entity is deduplicated in polars (latest version per key), loaded into a
temporary table (COPY on PostgreSQL, executemany on SQLite), and joined with the stored rows:
one statement counts stale versions, one writes history for changed tracked fields, one
updates changed rows, one inserts new keys. Re-reading a page that is already stored writes
nothing, and the cost is a handful of statements per batch, not a round trip per record.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import polars as pl
from sqlalchemy import (
    Connection,
    Text,
    and_,
    case,
    cast,
    column,
    func,
    insert,
    literal,
    or_,
    select,
    table,
    union_all,
    update,
)
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.expression import TableClause

from store import _bulk
from store._errors import BatchRejected
from store._schema import Entity, state_changes

KEY = ("source_system", "source_id")


@dataclass(frozen=True)
class UpsertResult:
    """What one bulk upsert did. ``offered`` = inserted + updated + unchanged + stale + duplicates."""

    entity: str
    offered: int
    inserted: int
    updated: int
    unchanged: int
    stale: int
    duplicates_in_batch: int
    history_rows: int

    @property
    def written(self) -> int:
        return self.inserted + self.updated


def prepare_frame(entity: Entity, frame: pl.DataFrame) -> pl.DataFrame:
    """Check and cast a caller's frame to the entity's schema; raise BatchRejected if it can't be."""
    schema = entity.polars_schema
    missing = [c for c in ("source_system", "source_id", "source_modified_at") if c not in frame]
    required = [f.name for f in entity.fields if not f.nullable and f.name not in frame]
    if missing or required:
        raise BatchRejected(
            f"{entity.name}: frame lacks required columns {missing + required}", entity=entity.name
        )
    extra = [c for c in frame.columns if c not in schema]
    if extra:
        raise BatchRejected(f"{entity.name}: unknown columns {extra}", entity=entity.name)
    for name, dtype in frame.schema.items():
        if isinstance(dtype, pl.Datetime) and dtype.time_zone is None:
            raise BatchRejected(
                f"{entity.name}.{name}: naive datetimes; o2c-monitor stores only aware UTC times",
                entity=entity.name,
            )
        if isinstance(dtype, pl.Float32 | pl.Float64):
            raise BatchRejected(
                f"{entity.name}.{name}: floats are not accepted (money is integer minor units)",
                entity=entity.name,
            )
    columns = []
    for name, dtype in schema.items():
        if name in frame.columns:
            expr = pl.col(name)
            if isinstance(dtype, pl.Datetime):
                expr = expr.dt.convert_time_zone("UTC").dt.cast_time_unit("us")
            columns.append(expr.cast(dtype, strict=True).alias(name))
        elif name == "is_deleted":
            columns.append(pl.lit(False).alias(name))
        else:
            columns.append(pl.lit(None, dtype=dtype).alias(name))
    try:
        prepared = frame.select(columns)
    except pl.exceptions.PolarsError as exc:
        raise BatchRejected(f"{entity.name}: {exc}", entity=entity.name) from exc
    nulls = [f.name for f in entity.fields if not f.nullable and prepared[f.name].null_count()] + [
        k for k in (*KEY, "source_modified_at") if prepared[k].null_count()
    ]
    if nulls:
        raise BatchRejected(f"{entity.name}: nulls in required columns {nulls}", entity=entity.name)
    return prepared


def latest_versions(batch: pl.DataFrame) -> pl.DataFrame:
    """One row per key: the newest source version, the later row on a tie (pages repeat)."""
    return (
        batch.with_row_index("_seq")
        .sort(["source_modified_at", "_seq"])
        .unique(subset=list(KEY), keep="last", maintain_order=True)
        .drop("_seq")
    )


def upsert_records(
    conn: Connection, entity: Entity, frame: pl.DataFrame, *, observed_at: datetime
) -> UpsertResult:
    """Insert new records, apply newer versions, ignore older ones, and keep tracked changes.

    The same version offered again changes nothing and adds no history. A version whose source
    modified time is older than the stored one is not applied and is counted as ``stale``.
    Within a batch, the latest version of a key wins and the rest count as duplicates.
    """
    prepared = prepare_frame(entity, frame)
    if prepared.is_empty():
        return UpsertResult(entity.name, 0, 0, 0, 0, 0, 0, 0)
    batch = latest_versions(prepared)
    _serialize_writers(conn, entity)
    staged = _bulk.Staged(conn, entity.table, batch)
    staging = table(staged.name, *(column(c) for c in staged.columns))
    s, t = staging.c, entity.table.c
    same_key = and_(*(t[k] == s[k] for k in KEY))
    newer_or_same = and_(same_key, s.source_modified_at >= t.source_modified_at)

    stale = conn.execute(
        select(func.count())
        .select_from(staging.join(entity.table, same_key))
        .where(s.source_modified_at < t.source_modified_at)
    ).scalar_one()
    history_rows = _record_history(conn, entity, staging, newer_or_same, observed_at)
    compared = ("source_modified_at", "is_deleted", *entity.data_columns)
    updated = conn.execute(
        update(entity.table)
        .where(newer_or_same, or_(*(s[c].is_distinct_from(t[c]) for c in compared)))
        .values({c: s[c] for c in compared} | {"last_seen_at": observed_at})
    ).rowcount
    # Holding the entity's write lock, no other writer can add a key between check and insert.
    inserted = staged.insert_missing(
        KEY, {"first_seen_at": observed_at, "last_seen_at": observed_at}
    )
    staged.drop()
    return UpsertResult(
        entity.name,
        prepared.height,
        inserted,
        updated,
        batch.height - inserted - updated - stale,
        stale,
        prepared.height - batch.height,
        history_rows,
    )


def _as_text(value: ColumnElement[Any], kind: str) -> ColumnElement[Any]:
    # The same text on every backend: booleans "true"/"false" (SQLite stores 0/1).
    if kind == "bool":
        return case((value.is_(None), None), (value, "true"), else_="false")
    return cast(value, Text())


def _record_history(
    conn: Connection,
    entity: Entity,
    staging: TableClause,
    newer_or_same: ColumnElement[bool],
    observed_at: datetime,
) -> int:
    """One history row per tracked field whose value a newer version changes.

    One join finds the changed records with their old and new values as text; a join of those
    few rows with the list of tracked field names then unpivots them: one pass over the batch,
    not one per field.
    """
    s, t = staging.c, entity.table.c
    kinds = {f.name: f.kind for f in entity.fields} | {"is_deleted": "bool"}
    fields = (*entity.tracked, "is_deleted")
    changed = (
        select(
            s.source_system,
            s.source_id,
            s.source_modified_at,
            *(_as_text(t[f], kinds[f]).label(f"old_{f}") for f in fields),
            *(_as_text(s[f], kinds[f]).label(f"new_{f}") for f in fields),
        )
        .select_from(staging.join(entity.table, newer_or_same))
        .where(or_(*(s[f].is_distinct_from(t[f]) for f in fields)))
        # Materialised so that the planner cannot run the join again for every field name.
        .cte("changed")
        .prefix_with("MATERIALIZED")
    )
    names = union_all(*(select(literal(f).label("field")) for f in fields)).subquery("names")
    c, n = changed.c, names.c

    def pick(prefix: str) -> ColumnElement[Any]:
        return case(*((n.field == f, c[f"{prefix}_{f}"]) for f in fields))

    differs = case(*((n.field == f, c[f"old_{f}"].is_distinct_from(c[f"new_{f}"])) for f in fields))
    rows = select(
        literal(entity.name),
        c.source_system,
        c.source_id,
        n.field,
        pick("old"),
        pick("new"),
        literal(observed_at, state_changes.c.observed_at.type),
        c.source_modified_at,
    ).select_from(changed.join(names, differs))
    count = conn.execute(
        insert(state_changes).from_select(list(_HISTORY_COLUMNS), rows),
        execution_options={"preserve_rowcount": True},
    ).rowcount
    if count < 0:  # Python's sqlite3 reports no rowcount for a statement that starts with WITH
        count = int(conn.exec_driver_sql("SELECT changes()").scalar_one())
    return count


_HISTORY_COLUMNS = (
    "entity",
    "source_system",
    "source_id",
    "field",
    "old_value",
    "new_value",
    "observed_at",
    "source_modified_at",
)


def _serialize_writers(conn: Connection, entity: Entity) -> None:
    """Let one transaction at a time upsert an entity, across every process sharing the store.

    Between reading the stored versions and writing, another writer could change them. SQLite's
    BEGIN IMMEDIATE already admits one writer at a time; on PostgreSQL a transaction-scoped
    advisory lock per entity does the same.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(select(func.pg_advisory_xact_lock(func.hashtext(f"o2c.upsert.{entity.name}"))))
