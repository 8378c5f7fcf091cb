"""The bulk upsert: classify a batch against what is stored, in polars, then write only what changed.

For a batch of one entity the store reads the stored versions of the batch's keys, and polars
splits the batch into new, changed, unchanged and stale rows and derives the history rows of the
changed ones. Only new rows are inserted, only changed rows are updated: re-reading a page that
is already stored writes nothing at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import polars as pl
from sqlalchemy import Connection, func, select

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


@dataclass(frozen=True)
class UpsertPlan:
    """A batch classified against the stored versions of its keys."""

    new: pl.DataFrame
    changed: pl.DataFrame
    history: pl.DataFrame
    unchanged: int
    stale: int
    duplicates: int


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


def plan_upsert(
    entity: Entity, batch: pl.DataFrame, stored: pl.DataFrame, *, observed_at: datetime
) -> UpsertPlan:
    """Classify a prepared batch against the stored versions of its keys (pure polars)."""
    offered = batch.height
    batch = (
        batch.with_row_index("_seq")
        .sort(["source_modified_at", "_seq"])
        .unique(subset=list(KEY), keep="last", maintain_order=True)
        .drop("_seq")
    )
    compared = ("source_modified_at", "is_deleted", *entity.data_columns)
    joined = batch.join(
        stored.select(*KEY, *(pl.col(c).alias(f"_old_{c}") for c in compared)),
        on=list(KEY),
        how="left",
        coalesce=True,
    ).with_columns(_found=pl.col("_old_source_modified_at").is_not_null())
    is_new = ~pl.col("_found")
    is_stale = pl.col("_found") & (pl.col("source_modified_at") < pl.col("_old_source_modified_at"))
    is_same = pl.all_horizontal(pl.col(c).eq_missing(pl.col(f"_old_{c}")) for c in compared)
    joined = joined.with_columns(
        _state=pl.when(is_new)
        .then(pl.lit("new"))
        .when(is_stale)
        .then(pl.lit("stale"))
        .when(is_same)
        .then(pl.lit("unchanged"))
        .otherwise(pl.lit("changed"))
    )
    counts = dict(joined.group_by("_state").len().iter_rows())
    changed = joined.filter(pl.col("_state") == "changed")

    tracked = (*entity.tracked, "is_deleted")
    history = (
        pl.concat(
            [
                changed.filter(~pl.col(f).eq_missing(pl.col(f"_old_{f}"))).select(
                    entity=pl.lit(entity.name),
                    source_system="source_system",
                    source_id="source_id",
                    field=pl.lit(f),
                    old_value=_as_text(pl.col(f"_old_{f}")),
                    new_value=_as_text(pl.col(f)),
                    observed_at=pl.lit(observed_at).dt.convert_time_zone("UTC"),
                    source_modified_at="source_modified_at",
                )
                for f in tracked
            ]
        )
        if changed.height
        else pl.DataFrame(schema=_bulk.polars_schema(state_changes, _HISTORY_COLUMNS))
    )
    columns = list(batch.columns)
    return UpsertPlan(
        new=joined.filter(pl.col("_state") == "new").select(columns),
        changed=changed.select(columns),
        history=history.with_columns(pl.col("observed_at").dt.cast_time_unit("us")),
        unchanged=counts.get("unchanged", 0),
        stale=counts.get("stale", 0),
        duplicates=offered - batch.height,
    )


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


def _as_text(expr: pl.Expr) -> pl.Expr:
    # Booleans read "true"/"false", numbers their decimal digits, dates ISO: the same on every
    # backend, because the text is made here and not by the database's CAST.
    return expr.cast(pl.String)


def upsert_records(
    conn: Connection, entity: Entity, frame: pl.DataFrame, *, observed_at: datetime
) -> UpsertResult:
    """Insert new records, apply newer versions, ignore older ones, and keep tracked changes.

    The same version offered again changes nothing and adds no history. A version whose source
    modified time is older than the stored one is not applied and is counted as ``stale``.
    Within a batch, the latest version of a key wins and the rest count as duplicates.
    """
    batch = prepare_frame(entity, frame)
    if batch.is_empty():
        return UpsertResult(entity.name, 0, 0, 0, 0, 0, 0, 0)
    _serialize_writers(conn, entity)
    compared = ["source_modified_at", "is_deleted", *entity.data_columns]
    stored = _bulk.select_by_keys(conn, entity.table, batch.select(KEY).unique(), [*KEY, *compared])
    plan = plan_upsert(entity, batch, stored, observed_at=observed_at)
    seen = pl.lit(observed_at).dt.convert_time_zone("UTC").dt.cast_time_unit("us")
    inserted = _bulk.insert_frame(
        conn,
        entity.table,
        plan.new.with_columns(first_seen_at=seen, last_seen_at=seen),
    )
    updated = _bulk.update_frame(
        conn, entity.table, plan.changed.with_columns(last_seen_at=seen), KEY
    )
    history_rows = _bulk.insert_frame(conn, state_changes, plan.history)
    return UpsertResult(
        entity.name,
        frame.height,
        inserted,
        updated,
        plan.unchanged,
        plan.stale,
        plan.duplicates,
        history_rows,
    )


def _serialize_writers(conn: Connection, entity: Entity) -> None:
    """Let one transaction at a time upsert an entity, across every process sharing the store.

    Between reading the stored versions and writing, another writer could change them. SQLite's
    BEGIN IMMEDIATE already admits one writer at a time; on PostgreSQL a transaction-scoped
    advisory lock per entity does the same.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(select(func.pg_advisory_xact_lock(func.hashtext(f"o2c.upsert.{entity.name}"))))
