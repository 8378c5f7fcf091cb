"""The canonical records a run reads: one polars lazy frame per entity, loaded from the store as Arrow.

``Canonical.load(store, as_of)`` reads every entity in bulk (COPY on PostgreSQL) plus the probe
health the stale-source rule needs; ``Canonical.from_frames`` builds the same bundle from
hand-made frames (tests, benchmarks, replays of an export). Missing entities are empty frames
of the right schema, and every frame is cast to the store's schema, so rules can rely on types.
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import shutil
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import polars as pl
from sqlalchemy import Connection

import store

PROBE_HEALTH_SCHEMA: dict[str, pl.DataType] = {
    "source_system": pl.String(),
    "last_attempt_at": pl.Datetime("us", "UTC"),
    "last_success_at": pl.Datetime("us", "UTC"),
}

_BOOKKEEPING = ("first_seen_at", "last_seen_at")
_UNUSED: dict[str, tuple[str, ...]] = {
    "opportunities": ("name", "close_date", "billing_model"),
    "projects": ("name", "billing_model"),
    "invoices": ("subtotal_minor", "tax_minor"),
    "payments": ("method", "status"),
}
"""Columns no rule, chain or KPI reads: not loaded (they arrive as nulls)."""


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
    def load(
        cls, db: store.Store, as_of: datetime, *, cache: FrameCache | None = None
    ) -> Canonical:
        """Read every entity from the store (current versions, deleted records left out).

        With a ``cache``, only what the store wrote since the previous load is read.
        """
        with db.begin() as conn, cache.locked() if cache else nullcontext():
            frames = {
                name: cache.refresh(conn, entity) if cache else _read_all(conn, entity)
                for name, entity in store.ENTITIES.items()
            }
            health = store.read_probe_health(conn, as_of=as_of)
        _return_freed_memory()
        return cls.from_frames(frames, health)


def _return_freed_memory() -> None:
    """Hand the C heap's free pages back to the system (glibc's malloc_trim; elsewhere nothing).

    A load frees what it read (the database driver's buffers, SQLite's row tuples) once each
    entity is in its frame or file, but glibc keeps freed memory for reuse, and the engine's
    own allocator does not reuse it: at scale 40, 1.2 GiB stayed resident after a cold load
    and the run's peak went from 4.0 to 5.2 GiB.
    """
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return
    trim(0)


def _columns(entity: store.Entity) -> list[str]:
    skip = (*_BOOKKEEPING, *_UNUSED.get(entity.name, ()))
    return [c.name for c in entity.table.columns if c.name not in skip]


def _read_all(conn: Connection, entity: store.Entity) -> pl.DataFrame:
    return store.read_canonical(conn, entity, _columns(entity))


_KEY = ["source_system", "source_id"]


def _replaced_keys(base: pl.LazyFrame, newer: pl.DataFrame) -> pl.DataFrame:
    """The keys of the records in ``base`` that ``newer`` holds a later version of."""
    # An anti join on both key columns costs 0.5 s on 2.9M time entries, every run while changes
    # are kept; matching source_id alone first (is_in) and the pair only on its few hits, 0.08 s.
    hits = base.select(*_KEY).filter(
        pl.col("source_id").is_in(newer.get_column("source_id").implode())
    )
    return hits.join(newer.lazy().select(_KEY), on=_KEY, how="semi").collect()


def _replaced(base: pl.LazyFrame, newer: pl.DataFrame) -> pl.LazyFrame:
    """``base`` with every record that ``newer`` also holds replaced by ``newer``'s version.

    The replaced records are left out by a filter on the key columns, system by system, not by
    row number: a row number needs every row of every system, so a plan reading one system
    would read them all, where a filter on ``source_system`` lets the scan skip the others'
    files (see ``FrameCache``).
    """
    if newer.is_empty():
        return base
    gone = _replaced_keys(base, newer)
    if gone.is_empty():
        return pl.concat([base, newer.lazy()], how="vertical")
    replaced = pl.any_horizontal(
        (pl.col("source_system") == system) & pl.col("source_id").is_in(ids["source_id"].implode())
        for (system,), ids in gone.partition_by("source_system", as_dict=True).items()
    )
    return pl.concat([base.filter(~replaced), newer.lazy()], how="vertical")


class FrameCache:
    """Canonical records kept between runs as Arrow IPC files, refreshed with the store's changes.

    A refresh reads only the versions the store wrote (``last_seen_at``) after the previous
    refresh's high-water mark minus ``lookback`` and lays them over the cached records by key,
    so a run after a 1% change reads about 1% of the store. The lookback covers batches
    committed after a later-stamped one (a batch's stamp is taken before it commits); re-reading
    a version is harmless. A cache made for another database or schema revision is rebuilt from
    scratch. Refreshes hold the directory's lock (``locked``), so processes sharing it take turns.

    Each entity is kept in two parts: the records as of the last full write (the directory
    ``<entity>.<token>``, Arrow files of each source system under ``source_system=<name>/``) and
    every version read since (``<entity>.changes.arrow``, one per record). Most plans read one
    system's records (the ERP's invoices, the billing system's payments), and a scan filtered on
    ``source_system`` reads only that system's files: at scale 40, the three invoice role frames
    took 0.2 s and 0.4 GiB this way against 0.8 s and 1.5 GiB from one file of every system.
    A system's records are split in files of ``rows_per_file``: a scan decodes a whole file's
    columns before it filters them (at scale 40, filtering the 11.7M time entries took 1.4 GiB
    for a moment from one file, 0.3 GiB from files of 1M rows, in the same time). A refresh rewrites
    only the changes, which stay small, so a run after a 1% change writes about 1% of the cache
    instead of all of it (at scale 10, about 4 s less per run); once the changes exceed
    ``compact_ratio`` of the records, they are folded into a new generation of the records.

    A refresh returns a lazy scan of the records, not the records: each plan then reads only
    the columns and rows it needs, and the run never holds the whole estate in memory (time
    entries, the largest entity, are only ever aggregated). A records file is never rewritten
    in place: a new generation gets a new name and the one before it is kept, so a scan made by
    the previous refresh still reads what it was made from.
    """

    def __init__(
        self,
        directory: Path,
        *,
        lookback: timedelta = timedelta(hours=1),
        compact_ratio: float = 0.1,
        rows_per_file: int = 1_000_000,
    ) -> None:
        self.directory = directory
        self.rows_per_file = rows_per_file
        self.lookback = lookback
        self.compact_ratio = compact_ratio
        self.full_reads = 0
        self.rows_read = 0
        self.compactions = 0

    def _meta_path(self) -> Path:
        return self.directory / "meta.json"

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the directory's lock: one refresh at a time, whichever process runs it.

        The CLI's ``o2c reconcile`` and the long-running ``o2c run`` default to the same
        directory; two refreshes at once could interleave one entity's changes file and mark.
        A second process waits here (an advisory ``flock``, freed if its holder dies).
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        with (self.directory / ".lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _meta(self) -> dict[str, Any]:
        path = self._meta_path()
        return json.loads(path.read_text()) if path.exists() else {}

    def records_path(self, entity: str) -> Path | None:
        """The directory holding an entity's records as of their last full write (None: none yet)."""
        name = self._meta().get("records", {}).get(entity)
        return self.directory / name if name else None

    def refresh(self, conn: Connection, entity: store.Entity) -> pl.LazyFrame:
        self.directory.mkdir(parents=True, exist_ok=True)
        url = conn.engine.url.render_as_string(hide_password=True)
        identity = f"{url}@{store.head_revision()}:{sorted(_UNUSED.items())}:{_LAYOUT}"
        meta = self._meta()
        if meta.get("identity") != identity or "records" not in meta:
            meta = {"identity": identity, "marks": {}, "records": {}}
        records = meta["records"].get(entity.name)
        path = self.directory / records if records else None
        changes_path = self.directory / f"{entity.name}.changes.arrow"
        mark = meta["marks"].get(entity.name)
        # last_seen_at comes along to move the mark, then goes: one scan of the table, not two.
        columns = [*_columns(entity), "last_seen_at"]
        kept = columns[:-1]
        if mark is None or path is None or not path.exists():
            read = store.read_canonical(conn, entity, columns)
            self.full_reads += 1
            path = self._write_records(meta, entity.name, read.drop("last_seen_at"))
            changes_path.unlink(missing_ok=True)
            frame = _scan_records(path, kept)
        else:
            since = datetime.fromisoformat(mark) - self.lookback
            read = store.read_canonical(conn, entity, columns, written_after=since)
            base = _scan_records(path, kept)
            changes = pl.read_ipc(changes_path) if changes_path.exists() else None
            if read.height:
                delta = read.drop("last_seen_at")
                changes = delta if changes is None else _replaced(changes.lazy(), delta).collect()
            if changes is None:
                frame = base
            elif changes.height > self.compact_ratio * max(_height(base), 1):
                path = self._write_records(meta, entity.name, _replaced(base, changes).collect())
                changes_path.unlink(missing_ok=True)
                self.compactions += 1
                frame = _scan_records(path, kept)
            else:
                if read.height:
                    _write(changes_path, changes)
                frame = _replaced(base, changes)
        self.rows_read += read.height
        newest = read.get_column("last_seen_at").max()
        if isinstance(newest, datetime):
            meta["marks"][entity.name] = newest.isoformat()
        _write_text(self._meta_path(), json.dumps(meta))
        return frame

    def _write_records(self, meta: dict[str, Any], entity: str, frame: pl.DataFrame) -> Path:
        """Write a new generation of an entity's records; keep the one before, drop older ones."""
        before = meta["records"].get(entity)
        name = f"{entity}.{uuid.uuid4().hex[:12]}"
        _write_by_system(self.directory / name, frame, self.rows_per_file)
        meta["records"][entity] = name
        keep = {name, before, f"{entity}.changes.arrow"}
        for old in self.directory.glob(f"{entity}.*"):
            if old.name not in keep:
                shutil.rmtree(old) if old.is_dir() else old.unlink(missing_ok=True)
        return self.directory / name


_LAYOUT = "by-system-1"
"""The cache's file layout: a cache written in another one is rebuilt, never misread."""

_EMPTY = "empty.arrow"
"""An entity without records is one file of no rows (a partitioned scan needs a partition)."""


def _write_by_system(directory: Path, frame: pl.DataFrame, rows_per_file: int) -> None:
    """Write ``frame`` as Arrow files per source system, in hive layout, all or nothing."""
    fresh = directory.with_name(directory.name + ".new")
    shutil.rmtree(fresh, ignore_errors=True)
    fresh.mkdir()
    if frame.is_empty():
        _write_ipc(fresh / _EMPTY, frame)
    # Slice by slice: splitting the whole frame by system at once copied all of it (at scale 40,
    # the cold load's peak went from 3.6 to 5.5 GiB); a slice's parts are one slice's worth.
    # A filter per system, not partition_by: 0.1 s against 2.2 s for 11.7M time entries.
    for n, start in enumerate(range(0, frame.height, rows_per_file)):
        records = frame.slice(start, rows_per_file)
        for system in records.get_column("source_system").unique().sort().to_list():
            folder = fresh / f"source_system={quote(str(system), safe='')}"
            folder.mkdir(exist_ok=True)
            part = records.filter(pl.col("source_system") == system).drop("source_system")
            _write_ipc(folder / f"records-{n:05d}.arrow", part)
    fresh.rename(directory)


def _scan_records(directory: Path, columns: list[str]) -> pl.LazyFrame:
    """An entity's records, in ``columns`` order; a filter on ``source_system`` prunes files."""
    if (directory / _EMPTY).exists():
        return pl.scan_ipc(directory / _EMPTY)
    scan = pl.scan_ipc(
        directory, hive_partitioning=True, hive_schema={"source_system": pl.String()}
    )
    return scan.select(columns)


def _height(frame: pl.LazyFrame) -> int:
    return int(frame.select(pl.len()).collect().item())


def _write_text(path: Path, text: str) -> None:
    fresh = path.with_suffix(".new")
    fresh.write_text(text)
    fresh.replace(path)


def _write(path: Path, frame: pl.DataFrame) -> None:
    """Write beside and rename: the old file may still be mapped by a frame read from it."""
    fresh = path.with_suffix(".new")
    _write_ipc(fresh, frame)
    fresh.replace(path)


def _write_ipc(path: Path, frame: pl.DataFrame) -> None:
    # In batches of a million rows: left to follow the frame's chunks, 11.7M time entries took
    # 5.7 s to write, against 1.4 s.
    frame.write_ipc(path, record_batch_size=1_000_000)
