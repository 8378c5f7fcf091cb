"""Completeness findings are kept in the store: a defect at the vendor that the store cannot hold
becomes a finding, the latest finding per stream is what the console reads, and the check compares
amount sums only where the vendor's API gives them. On SQLite and PostgreSQL, against the sandbox."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import polars as pl

import store
from collector import CompletenessFinding, check_stream, save_finding
from probes import SourceCount
from sandbox.estate import Estate
from sandbox.server import serve
from tests.collector.conftest import build, close, sandbox_settings, sync
from tests.collector.scripted import T0, ScriptedProbe

SEED = 23


def check(collector: object, systems: list[str]) -> list[CompletenessFinding]:
    async def run() -> list[CompletenessFinding]:
        try:
            return await collector.check_completeness(systems)  # type: ignore[attr-defined,no-any-return]
        finally:
            await collector.aclose()  # type: ignore[attr-defined]

    return asyncio.run(run())


def latest(db: store.Store) -> pl.DataFrame:
    with db.begin() as conn:
        return store.read_completeness_findings(conn)


def test_a_record_the_store_cannot_hold_is_a_stored_finding_until_the_vendor_fixes_it(
    store_url: str, key_file: Path
) -> None:
    estate = Estate.generate(seed=SEED, scale=0.02)
    deal = estate.frame("salesforce", "Opportunity").filter(~pl.col("IsDeleted"))["Id"][0]
    estate.update("salesforce", "Opportunity", deal, {"StageName": None})  # quarantined
    db = store.Store(store_url)
    with serve(estate) as sb:
        collector = build(sandbox_settings(sb, key_file, store_url), db)
        try:
            sync(collector, ["salesforce"])
            first = check(collector, ["salesforce"])
            estate.update("salesforce", "Opportunity", deal, {"StageName": "Closed Won"})
            second = check(collector, ["salesforce"])
        finally:
            close(collector)

    assert [(f.stream, f.ok, f.difference) for f in first] == [
        ("accounts", True, 0),
        ("opportunities", False, 1),
    ]
    assert [(f.stream, f.ok, f.difference) for f in second] == [
        ("accounts", True, 0),
        ("opportunities", True, 0),
    ]
    # Every check is kept; the console reads the latest per (system, stream).
    now = latest(db)
    assert now.columns == list(store.COMPLETENESS_COLUMNS)
    assert now.select("source_system", "stream", "ok", "difference").rows() == [
        ("salesforce", "accounts", True, 0),
        ("salesforce", "opportunities", True, 0),
    ]
    with db.begin() as conn:
        history = conn.exec_driver_sql(
            "SELECT ok, source_records, store_records, detail FROM completeness_findings "
            "WHERE stream = 'opportunities' ORDER BY id"
        ).all()
    assert [(bool(ok), src - kept) for ok, src, kept, _ in history] == [(False, 1), (True, 0)]
    assert "mismatch" in history[0][3]
    db.dispose()


def test_sums_are_compared_only_where_the_vendor_api_gives_them(
    store_url: str, key_file: Path
) -> None:
    """Salesforce SOQL and NetSuite SuiteQL aggregates (``SUM(...) GROUP BY``) are not in the
    vendor reference and the sandbox refuses them: the probes fall back to counts, and the
    finding says so (no amounts, ``amounts_match`` null) instead of claiming the sums agree."""
    estate = Estate.generate(seed=SEED + 1, scale=0.02)
    db = store.Store(store_url)
    with serve(estate) as sb:
        collector = build(sandbox_settings(sb, key_file, store_url), db)
        try:
            sync(collector, ["salesforce", "netsuite"])
            findings = check(collector, ["salesforce", "netsuite"])
        finally:
            close(collector)

    assert all(f.ok for f in findings), [f.describe() for f in findings if not f.ok]
    assert all(f.source_amounts is None and f.amount_column is None for f in findings)
    stored = latest(db)
    assert stored.height == len(findings) == 6
    assert stored["source_amounts"].null_count() == stored.height
    assert stored["amounts_match"].null_count() == stored.height
    db.dispose()


def opportunities(amounts: list[tuple[int, str]]) -> pl.DataFrame:
    n = len(amounts)
    return pl.DataFrame(
        {
            "source_system": ["crm"] * n,
            "source_id": [f"opp-{i}" for i in range(n)],
            "source_modified_at": [T0] * n,
            "stage": ["Closed Won"] * n,
            "is_closed": [True] * n,
            "is_won": [True] * n,
            "amount_minor": [a for a, _ in amounts],
            "currency": [c for _, c in amounts],
        }
    )


def test_an_amount_sum_the_store_does_not_match_is_a_finding_even_when_counts_agree(
    db: store.Store,
) -> None:
    """Where a vendor's API gives sums (none in the sandbox: see the test above), the check
    compares them per currency; one cent off in one currency is a finding, kept with both sides."""
    frame = opportunities([(100_000, "USD"), (25_050, "USD"), (70_000, "EUR")])
    db.ingest(store.IngestBatch(frames={"opportunities": frame}))

    def source(usd: int) -> SourceCount:
        return SourceCount(
            "crm", "accounts", "opportunities", 3, "amount_minor", {"USD": usd, "EUR": 70_000}
        )

    async def check(usd: int) -> CompletenessFinding:
        return await check_stream(db, ScriptedProbe([], count=source(usd)), "accounts")

    agrees, off = asyncio.run(check(125_050)), asyncio.run(check(125_051))
    for finding in (agrees, off):
        save_finding(db, finding)

    assert (agrees.ok, agrees.amounts_match) == (True, True)
    assert (off.ok, off.difference, off.amounts_match) == (False, 0, False)
    assert "amount_minor source" in off.describe()
    [row] = latest(db).to_dicts()
    assert (row["ok"], row["difference"], row["amounts_match"]) == (False, 0, False)
    assert json.loads(row["source_amounts"]) == {"EUR": 70_000, "USD": 125_051}
    assert json.loads(row["store_amounts"]) == {"EUR": 70_000, "USD": 125_050}
