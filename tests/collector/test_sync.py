"""End to end against the sandbox: a full sync equals the vendors' data, an incremental cycle reads
only what changed and keeps every transition, malformed records are quarantined, and the
completeness check agrees with the source. On SQLite and PostgreSQL."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest
from prometheus_client import CollectorRegistry

import store
from collector import SUCCEEDED, CollectorMetrics
from sandbox.estate import Estate
from sandbox.server import Sandbox, serve
from tests.collector.conftest import (
    RequestCounts,
    build,
    close,
    sandbox_settings,
    snapshot,
    source_totals,
    store_totals,
    sync,
)

SCALE = 0.05
SEED = 7

# Records per request each probe asks for (the vendors' maxima).
PAGE_SIZE = {"salesforce": 2000, "kantata": 200, "netsuite": 1000, "stripe": 100}


@pytest.fixture(scope="module")
def pristine() -> Iterator[Sandbox]:
    """The generated firm, never written to or advanced (shared by the full-sync tests)."""
    with serve(Estate.generate(seed=SEED, scale=SCALE)) as running:
        yield running


def test_a_full_sync_equals_the_sandbox_export(
    db: store.Store, pristine: Sandbox, key_file: Path, tmp_path: Path
) -> None:
    exported = Estate.load(pristine.estate.export(tmp_path / "export").parent)
    registry = CollectorRegistry()
    collector = build(sandbox_settings(pristine, key_file, db.url), db, CollectorMetrics(registry))
    try:
        results = sync(collector)
    finally:
        close(collector)

    assert {(r.system, r.stream): r.status for r in results} == {
        (r.system, r.stream): SUCCEEDED for r in results
    }
    assert len(results) == 14
    assert store_totals(db) == source_totals(exported)
    assert db.list_quarantine() == []
    runs = db.list_probe_runs()
    assert {r.status for r in runs} == {SUCCEEDED}
    assert sum(r.records_written for r in runs) == sum(n for n, _ in store_totals(db).values())
    # The metrics saw the same: records per stream, and the Salesforce API budget in use.
    value = registry.get_sample_value
    labels = {"system": "kantata", "stream": "time_entries"}
    assert value("o2c_probe_records_ingested_total", labels) == 13251
    assert 0 < value("o2c_probe_quota_used_ratio", {"system": "salesforce"}) < 1  # type: ignore[operator]
    assert value("o2c_probe_last_success_timestamp_seconds", labels) is not None


def test_the_completeness_check_agrees_with_a_complete_store(
    db: store.Store, pristine: Sandbox, key_file: Path
) -> None:
    collector = build(sandbox_settings(pristine, key_file, db.url), db)
    try:
        import asyncio

        async def check() -> list:  # type: ignore[type-arg]
            try:
                return await collector.check_completeness()
            finally:
                await collector.aclose()

        findings = asyncio.run(check())
    finally:
        close(collector)

    assert len(findings) == 14
    assert [f.describe() for f in findings if not f.ok] == []


def test_an_incremental_cycle_reads_only_what_changed_and_history_keeps_each_transition(
    store_url: str, key_file: Path
) -> None:
    estate = Estate.generate(seed=SEED + 1, scale=0.03)
    db = store.Store(store_url)
    with serve(estate) as sb:
        collector = build(sandbox_settings(sb, key_file, store_url), db)
        try:
            sync(collector)
            before = snapshot(db)
            counts = RequestCounts(sb)
            start = counts.snapshot()
            marks = newest_stamps(estate)
            estate.advance(timedelta(days=2))

            results = sync(collector)
            requests = counts.since(start)
        finally:
            close(collector)
    after = snapshot(db)

    assert {r.status for r in results} == {SUCCEEDED}
    assert store_totals(db) == source_totals(estate)
    changed = changed_since(estate, marks, overlap=timedelta(minutes=5))
    for system in PAGE_SIZE:
        streams = [r for r in results if r.system == system]
        # Each stream asks for its changes page by page, plus at most one more request (a
        # final empty page); one more per system for reference look-ups (NetSuite currencies);
        # tokens are fetched once per probe, never per page.
        budget = 1 + sum(
            math.ceil(changed[(system, r.stream)] / PAGE_SIZE[system]) + 1 for r in streams
        )
        served = sum(n for ep, n in requests.get(system, {}).items() if ep != "token")
        assert served <= budget, (system, requests.get(system), budget)
        for r in streams:
            assert r.records_read <= changed[(system, r.stream)], (system, r.stream)
    assert sum(r.records_written for r in results) > 0

    transitions = tracked_changes(before, after)
    assert transitions.height > 0
    history = db.read_history().select(
        "entity", "source_system", "source_id", "field", "old_value", "new_value"
    )
    missing = transitions.join(history, on=transitions.columns, how="anti")
    assert missing.height == 0, missing.head(10)
    db.dispose()


STREAM_SOURCES: dict[tuple[str, str], tuple[str, str, pl.Expr | None]] = {
    ("salesforce", "accounts"): ("salesforce", "Account", None),
    ("salesforce", "opportunities"): ("salesforce", "Opportunity", None),
    ("kantata", "projects"): ("kantata", "workspaces", None),
    ("kantata", "time_entries"): ("kantata", "time_entries", None),
    ("kantata", "milestones"): ("kantata", "stories", None),
    ("kantata", "invoices"): ("kantata", "invoices", None),
    ("netsuite", "accounts"): ("netsuite", "customer", None),
    ("netsuite", "invoices"): ("netsuite", "transaction", pl.col("type") == "CustInvc"),
    ("netsuite", "payments"): ("netsuite", "transaction", pl.col("type") == "CustPymt"),
    ("netsuite", "payment_applications"): ("netsuite", "nexttransactionlinelink", None),
    # Stripe streams follow the events feed once backfilled: one event per change.
    ("stripe", "accounts"): ("stripe", "events", pl.col("data_object_type") == "customer"),
    ("stripe", "invoices"): ("stripe", "events", pl.col("data_object_type") == "invoice"),
    ("stripe", "payments"): ("stripe", "events", pl.col("data_object_type") == "payment_intent"),
    ("stripe", "payment_applications"): (
        "stripe",
        "events",
        pl.col("data_object_type") == "invoice_payment",
    ),
}


def _source(estate: Estate, stream: tuple[str, str]) -> tuple[pl.DataFrame, str]:
    from sandbox.estate.schema import MODIFIED_COLUMN

    vendor, obj, keep = STREAM_SOURCES[stream]
    frame = estate.frame(vendor, obj)
    return (frame if keep is None else frame.filter(keep)), MODIFIED_COLUMN[(vendor, obj)]


def newest_stamps(estate: Estate) -> dict[tuple[str, str], object]:
    """Per stream, the newest modified stamp (Stripe: event time) a full sync has seen: its cursor."""
    marks = {}
    for stream in STREAM_SOURCES:
        frame, column = _source(estate, stream)
        marks[stream] = frame[column].max()
    return marks


def changed_since(
    estate: Estate, marks: dict[tuple[str, str], object], overlap: timedelta
) -> dict[tuple[str, str], int]:
    """Records each stream may read again: modified since its cursor, less the lookback overlap."""
    out = {}
    for stream, mark in marks.items():
        frame, column = _source(estate, stream)
        out[stream] = frame.filter(pl.col(column) >= mark - overlap).height  # type: ignore[operator]
    return out


def _text(column: str, dtype: pl.DataType) -> pl.Expr:
    if dtype == pl.Boolean:
        return pl.when(pl.col(column)).then(pl.lit("true")).otherwise(pl.lit("false"))
    return pl.col(column).cast(pl.String)


def tracked_changes(
    before: dict[str, pl.DataFrame], after: dict[str, pl.DataFrame]
) -> pl.DataFrame:
    """Every tracked field whose stored value differs between two snapshots, as history rows."""
    key = ["source_system", "source_id"]
    rows = []
    for name, entity in store.ENTITIES.items():
        joined = before[name].join(after[name], on=key, suffix="_new")
        for field in entity.tracked:
            dtype = joined.schema[field]
            moved = joined.filter(pl.col(field).ne_missing(pl.col(f"{field}_new")))
            rows.append(
                moved.select(
                    pl.lit(name).alias("entity"),
                    *key,
                    pl.lit(field).alias("field"),
                    _text(field, dtype).alias("old_value"),
                    _text(f"{field}_new", dtype).alias("new_value"),
                )
            )
    return pl.concat(rows)


def test_malformed_vendor_records_are_quarantined_with_a_reason_and_the_cycle_completes(
    store_url: str, key_file: Path
) -> None:
    estate = Estate.generate(seed=SEED + 2, scale=0.02)
    entry = estate.frame("kantata", "time_entries")["id"][0]
    deal = estate.frame("salesforce", "Opportunity")["Id"][0]
    estate.update("kantata", "time_entries", entry, {"date_performed": None})
    estate.update("salesforce", "Opportunity", deal, {"CurrencyIsoCode": "DOLLARS"})
    db = store.Store(store_url)
    with serve(estate) as sb:
        collector = build(sandbox_settings(sb, key_file, store_url), db)
        try:
            results = sync(collector, ["salesforce", "kantata"])
        finally:
            close(collector)

    assert {r.status for r in results} == {SUCCEEDED}
    kept = {(q.source_system, q.source_id): q for q in db.list_quarantine()}
    assert set(kept) == {("kantata", entry), ("salesforce", deal)}
    assert "entry_date" in kept[("kantata", entry)].reason
    assert "currency" in kept[("salesforce", deal)].reason.lower()
    assert entry.encode() in kept[("kantata", entry)].raw_payload
    by_stream = {(r.system, r.stream): r for r in results}
    assert by_stream[("kantata", "time_entries")].quarantined == 1
    assert by_stream[("salesforce", "opportunities")].quarantined == 1
    # Everything else arrived: the bad records are the only ones missing.
    totals, source = store_totals(db), source_totals(estate)
    assert totals[("kantata", "time_entries")][0] == source[("kantata", "time_entries")][0] - 1
    assert (
        totals[("salesforce", "opportunities")][0] == source[("salesforce", "opportunities")][0] - 1
    )
    db.dispose()
