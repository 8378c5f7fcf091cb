"""The Store: an engine plus transactions around the repository functions, with errors translated."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import polars as pl
from sqlalchemy import Connection, Engine, create_engine, event, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import (
    ArgumentError,
    DataError,
    DBAPIError,
    IntegrityError,
    NoSuchModuleError,
    SQLAlchemyError,
)

from store import _repository as repo
from store import _upsert
from store._errors import BatchRejected, StoreError, StoreUnavailable
from store._schema import ENTITIES, Entity


@dataclass(frozen=True)
class CursorAdvance:
    """Where a stream's cursor moves when the batch that carries it commits."""

    source_system: str
    stream: str
    cursor: str


@dataclass(frozen=True)
class IngestBatch:
    """Everything one page of a probe produced: written together or not at all."""

    frames: Mapping[str, pl.DataFrame] = field(default_factory=dict)
    quarantine: Sequence[repo.QuarantineItem] = ()
    cursor: CursorAdvance | None = None
    probe_run_id: int | None = None
    observed_at: datetime | None = None


@dataclass(frozen=True)
class IngestResult:
    upserts: tuple[_upsert.UpsertResult, ...]
    quarantined: int

    @property
    def written(self) -> int:
        return sum(u.written for u in self.upserts)

    @property
    def stale(self) -> int:
        return sum(u.stale for u in self.upserts)


def entity(name: str | Entity) -> Entity:
    """Look up a canonical entity by table name."""
    if isinstance(name, Entity):
        return name
    try:
        return ENTITIES[name]
    except KeyError:
        raise StoreError(f"unknown entity {name!r}; known: {', '.join(ENTITIES)}") from None


def create_store_engine(url: str, **kwargs: Any) -> Engine:
    """An engine configured for o2c-monitor: UTC sessions, WAL and real transactions on SQLite."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StoreUnavailable(f"not a database URL: {url!r} ({exc})") from exc
    try:
        if parsed.get_backend_name() == "sqlite":
            kwargs.setdefault("connect_args", {}).setdefault("timeout", 30)
            engine = create_engine(parsed, **kwargs)
            _configure_sqlite(engine)
        else:
            engine = create_engine(
                parsed, pool_pre_ping=True, connect_args={"options": "-c timezone=UTC"}, **kwargs
            )
    except (NoSuchModuleError, ImportError, ArgumentError) as exc:
        raise StoreUnavailable(f"cannot use database URL {parsed!r}: {exc}") from exc
    return engine


def _configure_sqlite(engine: Engine) -> None:
    # pysqlite's own transaction handling defers BEGIN and skips it for DDL; take it over so
    # that a rolled-back batch really leaves nothing behind (SQLAlchemy's documented recipe).
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA temp_store=MEMORY")
        # The default 2 MiB page cache thrashes once an index outgrows it; 64 MiB keeps the
        # key index of a few million records in memory during bulk upserts.
        cursor.execute("PRAGMA cache_size=-65536")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Writers take the write lock up front: a deferred transaction that later upgrades can
        # fail with SQLITE_BUSY regardless of the busy timeout.
        write = conn.get_execution_options().get("o2c_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


class Store:
    """The canonical store. One per process; safe to share between threads."""

    def __init__(self, url: str, **engine_kwargs: Any) -> None:
        self.url = url
        self.engine = create_store_engine(url, **engine_kwargs)

    @property
    def backend(self) -> str:
        return self.engine.dialect.name

    def dispose(self) -> None:
        self.engine.dispose()

    @contextmanager
    def begin(self, *, write: bool = False) -> Iterator[Connection]:
        """A transaction; commits on success, rolls back and raises a StoreError on failure."""
        try:
            with self.engine.connect() as conn:
                if write:
                    conn = conn.execution_options(o2c_write=True)
                with conn.begin():
                    yield conn
        except StoreError:
            raise
        except DBAPIError as exc:
            if exc.connection_invalidated or _is_connect_error(exc):
                raise StoreUnavailable(f"database unavailable: {_first_line(exc)}") from exc
            if isinstance(exc, IntegrityError | DataError):
                raise BatchRejected(f"database refused the batch: {_first_line(exc)}") from exc
            raise StoreError(f"database error: {_first_line(exc)}") from exc
        except SQLAlchemyError as exc:
            raise StoreError(_first_line(exc)) from exc

    # ------------------------------------------------------------------ writes

    def upsert(
        self, name: str | Entity, frame: pl.DataFrame, *, observed_at: datetime | None = None
    ) -> _upsert.UpsertResult:
        """Upsert one entity's frame in its own transaction."""
        result = self.ingest(
            IngestBatch(frames={entity(name).name: frame}, observed_at=observed_at)
        )
        return result.upserts[0]

    def ingest(self, batch: IngestBatch) -> IngestResult:
        """Write records, quarantine and the cursor advance in one transaction: all or nothing."""
        observed_at = batch.observed_at or datetime.now(UTC)
        upserts: list[_upsert.UpsertResult] = []
        with self.begin(write=True) as conn:
            for name, frame in batch.frames.items():
                upserts.append(
                    _upsert.upsert_records(conn, entity(name), frame, observed_at=observed_at)
                )
            quarantined = repo.insert_quarantine(
                conn, batch.quarantine, received_at=observed_at, probe_run_id=batch.probe_run_id
            )
            if batch.cursor is not None:
                repo.advance_cursor(
                    conn,
                    batch.cursor.source_system,
                    batch.cursor.stream,
                    batch.cursor.cursor,
                    at=observed_at,
                )
            if batch.probe_run_id is not None:
                repo.add_probe_run_counts(
                    conn,
                    batch.probe_run_id,
                    read=sum(u.offered for u in upserts) + quarantined,
                    written=sum(u.written for u in upserts),
                    unchanged=sum(u.unchanged + u.duplicates_in_batch for u in upserts),
                    stale=sum(u.stale for u in upserts),
                    quarantined=quarantined,
                )
        return IngestResult(tuple(upserts), quarantined)

    def quarantine(self, items: Sequence[repo.QuarantineItem]) -> int:
        with self.begin(write=True) as conn:
            return repo.insert_quarantine(conn, items, received_at=datetime.now(UTC))

    def start_probe_run(self, source_system: str, stream: str | None = None) -> int:
        with self.begin(write=True) as conn:
            return repo.start_probe_run(conn, source_system, stream, at=datetime.now(UTC))

    def finish_probe_run(self, run_id: int, *, status: str, error: str | None = None) -> None:
        with self.begin(write=True) as conn:
            repo.finish_probe_run(conn, run_id, status=status, at=datetime.now(UTC), error=error)

    # ------------------------------------------------------------------ reads

    def read_cursor(self, source_system: str, stream: str) -> str | None:
        with self.begin() as conn:
            return repo.read_cursor(conn, source_system, stream)

    def read_frame(
        self,
        name: str | Entity,
        *,
        columns: Iterable[str] | None = None,
        include_deleted: bool = False,
    ) -> pl.DataFrame:
        with self.begin() as conn:
            return repo.read_frame(
                conn, entity(name), columns=columns, include_deleted=include_deleted
            )

    def read_history(self, *, entity: str | None = None) -> pl.DataFrame:
        with self.begin() as conn:
            return repo.read_history(conn, entity=entity)

    def list_quarantine(
        self, *, source_system: str | None = None, limit: int = 100
    ) -> list[repo.QuarantineRecord]:
        with self.begin() as conn:
            return repo.list_quarantine(conn, source_system=source_system, limit=limit)

    def list_probe_runs(
        self, *, source_system: str | None = None, limit: int = 100
    ) -> list[repo.ProbeRun]:
        with self.begin() as conn:
            return repo.list_probe_runs(conn, source_system=source_system, limit=limit)

    def count(self, name: str | Entity) -> int:
        table = entity(name).table
        with self.begin() as conn:
            return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def _is_connect_error(exc: DBAPIError) -> bool:
    text = str(exc.orig).lower()
    return any(s in text for s in ("connection", "could not connect", "unable to open database"))


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc)
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__
