"""Each (system, stream) has one owner at a time: advisory locks on PostgreSQL, one process on SQLite."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from collector import (
    OwnershipLost,
    PostgresOwnership,
    SQLiteOwnership,
    StoreBusy,
    ownership_for,
    stream_lock_key,
)


def test_one_owner_per_stream_on_postgresql_until_it_releases(postgres_url: str) -> None:
    a, b = PostgresOwnership(postgres_url), PostgresOwnership(postgres_url)
    try:
        lease = a.try_acquire("salesforce", "opportunities")
        assert lease is not None
        assert b.try_acquire("salesforce", "opportunities") is None
        other = b.try_acquire("salesforce", "accounts")  # other streams stay free
        assert other is not None
        other.release()

        lease.check()
        lease.release()
        lease.release()  # idempotent

        again = b.try_acquire("salesforce", "opportunities")
        assert again is not None
        again.release()
    finally:
        a.close()
        b.close()


def test_a_stream_is_not_run_twice_within_one_process(postgres_url: str) -> None:
    ownership = PostgresOwnership(postgres_url)
    try:
        lease = ownership.try_acquire("stripe", "invoices")
        assert lease is not None
        assert ownership.try_acquire("stripe", "invoices") is None
        lease.release()
    finally:
        ownership.close()


def test_a_lease_whose_connection_died_is_lost_before_the_next_write(postgres_url: str) -> None:
    ownership = PostgresOwnership(postgres_url)
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    try:
        lease = ownership.try_acquire("kantata", "time_entries")
        assert lease is not None
        classid, objid = stream_lock_key("kantata", "time_entries")
        with admin.connect() as conn:
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' "
                    "AND classid = CAST(:c AS oid) AND objid = CAST(:o AS oid) AND objsubid = 2"
                ),
                {"c": classid & 0xFFFFFFFF, "o": objid & 0xFFFFFFFF},
            )
        with pytest.raises(OwnershipLost):
            lease.check()
        lease.release()  # releasing a lost lease is harmless
        taken = ownership.try_acquire("kantata", "time_entries")  # the lock went with the session
        assert taken is not None
        taken.release()
    finally:
        admin.dispose()
        ownership.close()


def test_sqlite_admits_one_collector_process(tmp_path: Path) -> None:
    database = tmp_path / "o2c.sqlite3"
    first = ownership_for(f"sqlite:///{database}")
    try:
        with pytest.raises(StoreBusy, match="SQLite admits one collector process"):
            SQLiteOwnership(database)
    finally:
        first.close()
    SQLiteOwnership(database).close()  # free again once the first one closed


def test_a_killed_collector_leaves_no_stale_sqlite_lock(tmp_path: Path) -> None:
    database = tmp_path / "o2c.sqlite3"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys, time
                from collector import SQLiteOwnership
                held = SQLiteOwnership({str(database)!r})
                print("held", flush=True)
                time.sleep(60)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(StoreBusy, match=f"pid {holder.pid}"):
            SQLiteOwnership(database)
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout:
            holder.stdout.close()
    deadline = time.monotonic() + 5
    while True:
        try:
            SQLiteOwnership(database).close()
            break
        except StoreBusy:
            assert time.monotonic() < deadline, "the lock outlived its SIGKILLed holder"
            time.sleep(0.05)
