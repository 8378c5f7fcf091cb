"""The canonical records a run reads: one polars lazy frame per entity, loaded from the store as Arrow.

``Canonical.load(store, as_of)`` reads every entity in bulk (COPY on PostgreSQL) plus the probe
health the stale-source rule needs; ``Canonical.from_frames`` builds the same bundle from
hand-made frames (tests, benchmarks, replays of an export). Missing entities are empty frames
of the right schema, and every frame is cast to the store's schema, so rules can rely on types.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import polars as pl

import store

PROBE_HEALTH_SCHEMA: dict[str, pl.DataType] = {
    "source_system": pl.String(),
    "last_attempt_at": pl.Datetime("us", "UTC"),
    "last_success_at": pl.Datetime("us", "UTC"),
}

_BOOKKEEPING = ("first_seen_at", "last_seen_at")


def _schema(name: str) -> dict[str, pl.DataType]:
    return store.ENTITIES[name].polars_schema


def _conform(name: str, frame: pl.DataFrame | pl.LazyFrame) -> pl.LazyFrame:
    schema = _schema(name)
    lazy = frame.lazy()
    present = lazy.collect_schema()
    missing = [
        pl.lit(None, dtype).alias(col) for col, dtype in schema.items() if col not in present
    ]
    lazy = lazy.with_columns(missing) if missing else lazy
    if "is_deleted" in present:
        lazy = lazy.filter(~pl.col("is_deleted").fill_null(False))
    return lazy.select([pl.col(c).cast(d) for c, d in schema.items()])


@dataclass(frozen=True)
class Canonical:
    """Every canonical entity as a lazy frame (store schema), plus probe health."""

    accounts: pl.LazyFrame
    opportunities: pl.LazyFrame
    projects: pl.LazyFrame
    time_entries: pl.LazyFrame
    milestones: pl.LazyFrame
    invoices: pl.LazyFrame
    payments: pl.LazyFrame
    payment_applications: pl.LazyFrame
    probe_health: pl.LazyFrame

    @classmethod
    def from_frames(
        cls,
        frames: Mapping[str, pl.DataFrame | pl.LazyFrame],
        probe_health: pl.DataFrame | None = None,
    ) -> Canonical:
        """A bundle from frames keyed by entity name; absent entities are empty."""
        unknown = set(frames) - set(store.ENTITIES)
        if unknown:
            raise ValueError(f"unknown entities {sorted(unknown)}")
        lazies = {
            name: _conform(name, frames.get(name, pl.DataFrame(schema=_schema(name))))
            for name in store.ENTITIES
        }
        health = (
            probe_health if probe_health is not None else pl.DataFrame(schema=PROBE_HEALTH_SCHEMA)
        )
        return cls(**lazies, probe_health=health.lazy().cast(PROBE_HEALTH_SCHEMA))  # type: ignore[arg-type]

    @classmethod
    def load(cls, db: store.Store, as_of: datetime) -> Canonical:
        """Read every entity from the store (current versions, deleted records left out)."""
        frames = {}
        for name, entity in store.ENTITIES.items():
            columns = [c.name for c in entity.table.columns if c.name not in _BOOKKEEPING]
            frames[name] = db.read_frame(name, columns=columns)
        with db.begin() as conn:
            health = store.read_probe_health(conn, as_of=as_of)
        return cls.from_frames(frames, health)
