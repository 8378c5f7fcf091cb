"""Probe health as the reconciler reads it: the latest attempt and success per system by an as-of time."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

import store

T0 = datetime(2025, 6, 2, 9, 0, tzinfo=UTC)


def _runs(db: store.Store, runs: list[tuple[str, str, int, int | None]]) -> None:
    """(system, status, started minutes after T0, finished minutes after T0 or None)."""
    table = store.metadata.tables["probe_runs"]
    with db.begin(write=True) as conn:
        for system, status, started, finished in runs:
            conn.execute(
                table.insert().values(
                    source_system=system,
                    stream="x",
                    status=status,
                    started_at=T0 + timedelta(minutes=started),
                    finished_at=None if finished is None else T0 + timedelta(minutes=finished),
                )
            )


def _at(minutes: int | None) -> datetime | None:
    return None if minutes is None else T0 + timedelta(minutes=minutes)


def test_probe_health_is_each_systems_latest_attempt_and_success_by_the_as_of_time(
    db: store.Store,
) -> None:
    _runs(
        db,
        [
            ("stripe", "succeeded", 0, 1),
            ("stripe", "failed", 10, 11),  # the latest attempt failed: success stays at 1
            ("kantata", "failed", 0, 2),
            ("kantata", "succeeded", 30, 31),  # started after the as-of time: not seen
            ("salesforce", "succeeded", 5, 6),
            ("salesforce", "running", 15, None),  # still running: an attempt, not a success
            ("netsuite", "succeeded", 40, 41),  # its first run is after the as-of time
        ],
    )
    with db.begin() as conn:
        health = store.read_probe_health(conn, as_of=T0 + timedelta(minutes=20))
    assert health.rows() == [
        ("kantata", _at(0), None),
        ("salesforce", _at(15), _at(6)),
        ("stripe", _at(10), _at(1)),
    ]
    with db.begin() as conn:
        later = store.read_probe_health(conn, as_of=T0 + timedelta(hours=1))
    assert later.rows() == [
        ("kantata", _at(30), _at(31)),
        ("netsuite", _at(40), _at(41)),
        ("salesforce", _at(15), _at(6)),
        ("stripe", _at(10), _at(1)),
    ]


def test_probe_health_is_read_by_index_probes_not_a_scan_of_every_run(tmp_path: Path) -> None:
    # SQLite states its plan plainly: SEARCH uses an index, SCAN reads the whole table.
    db = store.Store(f"sqlite:///{tmp_path / 'plan.sqlite3'}")
    try:
        store.upgrade(db.engine)
        _runs(db, [("stripe", "succeeded", 0, 1), ("kantata", "failed", 0, 1)])
        statements: list[tuple[str, object]] = []
        sa.event.listen(
            db.engine, "before_cursor_execute", lambda *a: statements.append((a[2], a[3]))
        )
        with db.begin() as conn:
            store.read_probe_health(conn, as_of=T0 + timedelta(hours=1))
            ((read, params),) = [s for s in statements if "probe_runs" in s[0]]
            explained = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {read}", params)  # type: ignore[arg-type]
            plan = " ".join(str(r[-1]) for r in explained)
    finally:
        db.dispose()
    assert "probe_runs" in plan and not re.search(r"\bSCAN probe_runs\b", plan), plan
