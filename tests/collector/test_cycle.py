"""A cycle writes each page with its cursor, records its run, and never gets ahead of its writes."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry

import store
from collector import (
    FAILED,
    PARTIAL,
    SKIPPED,
    SUCCEEDED,
    CollectorMetrics,
    ownership_for,
    run_cycle,
)
from probes import ProbeRateLimited, ProbeUnavailable
from store import QuarantineItem
from tests.collector.scripted import Boom, ScriptedProbe, page


def run(db: store.Store, probe: ScriptedProbe, **kwargs: object):  # type: ignore[no-untyped-def]
    return asyncio.run(run_cycle(db, probe, "accounts", **kwargs))  # type: ignore[arg-type]


def test_every_page_is_written_with_its_cursor_and_the_run_succeeds(db: store.Store) -> None:
    probe = ScriptedProbe([page([1, 2]), page([3, 4]), page([5])])

    result = run(db, probe)

    assert result.status == SUCCEEDED
    assert (result.pages, result.records_read, result.records_written) == (3, 5, 5)
    assert db.read_cursor("crm", "accounts") == "c5"
    assert db.count("accounts") == 5
    [recorded] = db.list_probe_runs(source_system="crm")
    assert (recorded.status, recorded.records_read, recorded.records_written) == (SUCCEEDED, 5, 5)
    assert recorded.finished_at is not None


def test_the_next_cycle_starts_from_the_stored_cursor(db: store.Store) -> None:
    run(db, ScriptedProbe([page([1]), page([2])]))
    probe = ScriptedProbe([page([3])])

    run(db, probe)

    assert probe.cursors_seen == ["c2"]


@pytest.mark.parametrize(
    ("failure", "kind"),
    [
        (ProbeUnavailable("503 after 5 attempts", system="crm"), "unavailable"),
        (ProbeRateLimited("429 after 5 attempts", system="crm"), "rate_limit"),
        (Boom("unexpected"), "internal"),
    ],
)
def test_a_failure_mid_stream_keeps_the_cursor_at_the_last_written_page(
    db: store.Store, failure: Exception, kind: str
) -> None:
    result = run(db, ScriptedProbe([page([1, 2]), failure, page([3])]))

    assert (result.status, result.error_kind, result.pages) == (FAILED, kind, 1)
    assert db.read_cursor("crm", "accounts") == "c2"
    assert sorted(db.read_frame("accounts")["source_id"]) == ["acc-1", "acc-2"]
    [recorded] = db.list_probe_runs(source_system="crm")
    assert recorded.status == FAILED
    assert recorded.error is not None and recorded.error.startswith(f"{kind}: ")


def test_a_page_without_a_cursor_writes_records_but_leaves_the_cursor(db: store.Store) -> None:
    first = page([1])
    backfill = page([2], cursor="unused").__class__("crm", "accounts", frames=page([2]).frames)

    run(db, ScriptedProbe([first, backfill]))

    assert db.read_cursor("crm", "accounts") == "c1"
    assert db.count("accounts") == 2


def test_a_page_the_store_refuses_fails_the_cycle_and_moves_nothing(db: store.Store) -> None:
    bad = page([2]).frames["accounts"].drop("currency")  # a required column is missing
    refused = page([2]).__class__("crm", "accounts", frames={"accounts": bad}, cursor="c2")

    result = run(db, ScriptedProbe([page([1]), refused]))

    assert (result.status, result.error_kind) == (FAILED, "store_rejected")
    assert db.read_cursor("crm", "accounts") == "c1"
    assert db.count("accounts") == 1


def test_a_partial_page_ends_the_cycle_as_a_partial_success(db: store.Store) -> None:
    result = run(
        db, ScriptedProbe([page([1]), page([2], partial="budget reserve reached"), page([3])])
    )

    assert (result.status, result.partial_reason) == (PARTIAL, "budget reserve reached")
    assert db.read_cursor("crm", "accounts") == "c2"
    [recorded] = db.list_probe_runs(source_system="crm")
    assert recorded.status == PARTIAL


def test_quarantined_records_are_kept_counted_and_the_cycle_completes(db: store.Store) -> None:
    bad = QuarantineItem(
        "crm", "accounts", "currency 'XX' is not ISO 4217", b'{"Id":"acc-9"}', "acc-9"
    )
    registry = CollectorRegistry()

    result = run(
        db,
        ScriptedProbe([page([1], quarantine=(bad,)), page([2])]),
        metrics=CollectorMetrics(registry),
    )

    assert (result.status, result.quarantined) == (SUCCEEDED, 1)
    [kept] = db.list_quarantine(source_system="crm")
    assert (kept.source_id, kept.reason, kept.raw_payload) == (
        "acc-9",
        bad.reason,
        b'{"Id":"acc-9"}',
    )
    labels = {"system": "crm", "stream": "accounts"}
    assert registry.get_sample_value("o2c_probe_records_quarantined_total", labels) == 1


def test_a_cycle_longer_than_its_limit_fails_as_cycle_timeout(db: store.Store) -> None:
    result = run(db, ScriptedProbe([page([1]), 5.0, page([2])]), max_seconds=0.2)

    assert (result.status, result.error_kind) == (FAILED, "cycle_timeout")
    assert db.read_cursor("crm", "accounts") == "c1"


def test_a_cancelled_cycle_records_its_run_as_failed_and_reraises(db: store.Store) -> None:
    async def cancel_midway() -> None:
        task = asyncio.create_task(run_cycle(db, ScriptedProbe([page([1]), 5.0]), "accounts"))
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel_midway())

    [recorded] = db.list_probe_runs(source_system="crm")
    assert (recorded.status, recorded.error) == (FAILED, "cancelled: cycle cancelled")
    assert db.read_cursor("crm", "accounts") == "c1"


def test_metrics_count_pages_records_errors_and_cycle_outcomes(db: store.Store) -> None:
    registry = CollectorRegistry()
    metrics = CollectorMetrics(registry)

    run(db, ScriptedProbe([page([1, 2]), page([3])]), metrics=metrics)
    run(db, ScriptedProbe([page([3]), ProbeUnavailable("down", system="crm")]), metrics=metrics)

    labels = {"system": "crm", "stream": "accounts"}
    value = registry.get_sample_value
    assert value("o2c_probe_pages_total", labels) == 3
    assert value("o2c_probe_records_ingested_total", labels) == 4
    assert value("o2c_probe_records_written_total", labels) == 3  # the re-read acc-3 is unchanged
    assert value("o2c_probe_cycles_total", labels | {"status": "succeeded"}) == 1
    assert value("o2c_probe_cycles_total", labels | {"status": "failed"}) == 1
    assert value("o2c_probe_errors_total", labels | {"kind": "unavailable"}) == 1
    assert value("o2c_probe_cycle_duration_seconds_count", labels) == 2


def test_a_stream_owned_elsewhere_is_skipped_without_a_run(postgres_db: store.Store) -> None:
    db = postgres_db
    first, second = ownership_for(db.url), ownership_for(db.url)
    lease = first.try_acquire("crm", "accounts")
    assert lease is not None
    try:
        result = run(db, ScriptedProbe([page([1])]), ownership=second)
    finally:
        lease.release()
        first.close()
        second.close()

    assert result.status == SKIPPED
    assert db.list_probe_runs(source_system="crm") == []
    assert db.count("accounts") == 0


def test_the_owner_closes_runs_left_running_by_a_killed_cycle(db: store.Store, tmp_path) -> None:  # type: ignore[no-untyped-def]
    abandoned = db.start_probe_run("crm", "accounts")  # as a SIGKILLed process leaves it
    ownership = ownership_for(db.url) if db.backend == "postgresql" else None
    if ownership is None:
        from collector import SQLiteOwnership

        ownership = SQLiteOwnership(tmp_path / "o2c.sqlite3")
    try:
        run(db, ScriptedProbe([page([1])]), ownership=ownership)
    finally:
        ownership.close()

    runs = {r.id: r for r in db.list_probe_runs(source_system="crm")}
    assert runs[abandoned].status == FAILED
    assert runs[abandoned].error == "abandoned: the cycle died"


def test_a_fast_read_is_written_in_few_transactions_a_slow_one_page_by_page(
    db: store.Store,
) -> None:
    written: list[str | None] = []  # the cursor after each write (one call per transaction)

    fast = ScriptedProbe([page([i]) for i in range(1, 41)])
    result = run(db, fast, on_page=lambda r: written.append(r.cursor_after))
    assert (result.status, result.records_written) == (SUCCEEDED, 40)
    assert written[-1] == "c40" and len(written) <= 3  # the first page at once, then the rest

    written.clear()
    # A vendor slower than the batching gap: each page is written (and its cursor moves) alone.
    slow = ScriptedProbe([page([41]), 0.3, page([42]), 0.3, page([43])])
    run(db, slow, on_page=lambda r: written.append(r.cursor_after))
    assert written == ["c41", "c42", "c43"]


def test_a_batch_never_exceeds_its_record_limit(db: store.Store) -> None:
    written: list[int] = []
    probe = ScriptedProbe([page([2 * i, 2 * i + 1]) for i in range(1, 11)])  # 20 records

    run(db, probe, batch_records=4, on_page=lambda r: written.append(r.records_written))

    sizes = [b - a for a, b in zip([0, *written], written, strict=False)]
    assert sum(sizes) == 20 and max(sizes) <= 4
    assert db.read_cursor("crm", "accounts") == "c21"
