"""Who may run a (system, stream) cycle: PostgreSQL advisory locks, or one process per SQLite file.

PostgreSQL (several collector processes may share one database): before a cycle, the process
takes a *session* advisory lock keyed by (collector, system/stream) on a connection of its own,
with ``pg_try_advisory_lock`` (never waits). Another process that wants the same stream gets
``False`` and skips the cycle; the next one to try after the release wins. The lock lives as long
as that connection: if the connection dies, the lock is gone, so before each page is written the
owner checks its connection still answers (``OwnershipLost`` otherwise). The two-integer key form
keeps these locks apart from the store's own one-key upsert locks.

SQLite (one collector process per database file, documented in README): the process takes an
exclusive ``flock`` on ``<database>.collector.lock`` when it starts and holds it until it exits;
a second process fails at once with ``StoreBusy``. The kernel releases a flock when the process
dies, SIGKILL included, so a crashed collector never leaves a stale lock behind. Within the one
process, a set of running streams keeps a stream from running twice at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
from abc import ABC, abstractmethod
from pathlib import Path
from typing import IO, Any

from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from collector._errors import OwnershipLost, StoreBusy
from store import StoreUnavailable

log = logging.getLogger(__name__)


def _int32(name: str) -> int:
    """A stable signed 32-bit key for a name (Python's hash() differs between processes)."""
    return int.from_bytes(
        hashlib.blake2b(name.encode(), digest_size=4).digest(), "big", signed=True
    )


COLLECTOR_LOCK_CLASS = _int32("o2c.collector.stream")
"""First key of every stream lock; the second is ``_int32("<system>/<stream>")``."""


def stream_lock_key(system: str, stream: str) -> tuple[int, int]:
    """The (classid, objid) pair of a stream's advisory lock, as shown in ``pg_locks``."""
    return COLLECTOR_LOCK_CLASS, _int32(f"{system}/{stream}")


class Lease:
    """Ownership of one stream for one cycle. ``check`` before writing; ``release`` at the end."""

    def __init__(self, system: str, stream: str) -> None:
        self.system = system
        self.stream = stream

    def check(self) -> None:
        """Raise OwnershipLost unless this process still owns the stream."""

    def release(self) -> None:
        """Give the stream up (idempotent)."""


class Ownership(ABC):
    """Decides which process runs a stream's cycle."""

    @abstractmethod
    def try_acquire(self, system: str, stream: str) -> Lease | None:
        """A lease on the stream, or None if another cycle (here or elsewhere) owns it."""

    @abstractmethod
    def close(self) -> None:
        """Release everything this process holds."""


class _LocalStreams:
    """Streams running in this process; a second attempt at a running stream is refused."""

    def __init__(self) -> None:
        self._running: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def claim(self, key: tuple[str, str]) -> bool:
        with self._lock:
            if key in self._running:
                return False
            self._running.add(key)
            return True

    def drop(self, key: tuple[str, str]) -> None:
        with self._lock:
            self._running.discard(key)


class _LocalLease(Lease):
    def __init__(self, system: str, stream: str, local: _LocalStreams) -> None:
        super().__init__(system, stream)
        self._local = local
        self._released = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._local.drop((self.system, self.stream))


class SQLiteOwnership(Ownership):
    """One collector process per SQLite database file, enforced by an exclusive flock."""

    def __init__(self, database: str | Path) -> None:
        import fcntl

        self.lock_path = Path(f"{database}.collector.lock")
        self._local = _LocalStreams()
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        handle: IO[str] = self.lock_path.open("a+")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise StoreBusy(
                f"another collector process (pid {holder}) owns the SQLite store {database}; "
                "SQLite admits one collector process: stop it, or use PostgreSQL to run several"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._handle: IO[str] | None = handle

    def try_acquire(self, system: str, stream: str) -> Lease | None:
        if self._handle is None:
            raise StoreBusy(f"the SQLite ownership of {self.lock_path} was closed")
        if not self._local.claim((system, stream)):
            return None
        return _LocalLease(system, stream, self._local)

    def close(self) -> None:
        if self._handle is not None:
            # Closing the file releases the flock; the file stays (removing it would race with
            # a process that just opened it).
            self._handle.close()
            self._handle = None


class _AdvisoryLease(Lease):
    def __init__(
        self,
        system: str,
        stream: str,
        conn: Connection,
        key: tuple[int, int],
        local: _LocalStreams,
    ) -> None:
        super().__init__(system, stream)
        self._conn: Connection | None = conn
        self._key = key
        self._local = local
        self._mutex = threading.Lock()

    def check(self) -> None:
        with self._mutex:
            conn = self._conn
            if conn is None:
                raise OwnershipLost(
                    f"{self.system}/{self.stream}: lease already released",
                    system=self.system,
                    stream=self.stream,
                )
            try:
                held = conn.execute(
                    text(
                        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                        "AND pid = pg_backend_pid() AND classid = CAST(:c AS oid) "
                        "AND objid = CAST(:o AS oid) AND objsubid = 2 AND granted"
                    ),
                    {"c": self._key[0] & 0xFFFFFFFF, "o": self._key[1] & 0xFFFFFFFF},
                ).scalar_one()
            except SQLAlchemyError as exc:
                raise OwnershipLost(
                    f"{self.system}/{self.stream}: the lock connection failed ({type(exc).__name__})",
                    system=self.system,
                    stream=self.stream,
                ) from exc
            if not held:
                raise OwnershipLost(
                    f"{self.system}/{self.stream}: the advisory lock is no longer held",
                    system=self.system,
                    stream=self.stream,
                )

    def release(self) -> None:
        with self._mutex:
            conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            conn.execute(
                text("SELECT pg_advisory_unlock(:c, :o)"), {"c": self._key[0], "o": self._key[1]}
            )
        except SQLAlchemyError:
            # Closing the session below releases the lock anyway.
            log.debug("advisory unlock failed for %s/%s", self.system, self.stream, exc_info=True)
        finally:
            with contextlib.suppress(SQLAlchemyError):
                conn.close()
            self._local.drop((self.system, self.stream))


class PostgresOwnership(Ownership):
    """Per-stream session advisory locks on connections of their own (not the store's pool)."""

    def __init__(self, url: str, *, engine: Engine | None = None) -> None:
        # NullPool: a lock connection is closed on release, so a lock can never leak into a
        # pooled connection that someone else later uses.
        self.engine = engine or create_engine(
            make_url(url),
            poolclass=NullPool,
            connect_args={"application_name": "o2c-collector-lock"},
        )
        self._local = _LocalStreams()

    def try_acquire(self, system: str, stream: str) -> Lease | None:
        if not self._local.claim((system, stream)):
            return None
        key = stream_lock_key(system, stream)
        conn: Connection | None = None
        try:
            conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            got = conn.execute(
                text("SELECT pg_try_advisory_lock(:c, :o)"), {"c": key[0], "o": key[1]}
            ).scalar_one()
        except DBAPIError as exc:
            if conn is not None:
                with contextlib.suppress(SQLAlchemyError):
                    conn.close()
            self._local.drop((system, stream))
            raise StoreUnavailable(
                f"cannot take the stream lock of {system}/{stream}: {_first_line(exc)}"
            ) from exc
        if not got:
            conn.close()
            self._local.drop((system, stream))
            return None
        return _AdvisoryLease(system, stream, conn, key, self._local)

    def close(self) -> None:
        self.engine.dispose()


def _first_line(exc: BaseException) -> str:
    text_ = str(getattr(exc, "orig", None) or exc).strip()
    return text_.splitlines()[0] if text_ else type(exc).__name__


def ownership_for(url: str, **kwargs: Any) -> Ownership:
    """The ownership that fits the store's backend (SQLite file lock or PostgreSQL advisory locks)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database in ("", ":memory:"):
            raise StoreBusy("an in-memory SQLite store cannot be shared with a collector")
        return SQLiteOwnership(Path(database).resolve())
    return PostgresOwnership(url, **kwargs)
