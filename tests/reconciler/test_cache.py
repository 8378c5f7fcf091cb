"""The frame cache: a run after a change reads only the change and sees the same data as a cold load."""

from __future__ import annotations

import json
import shutil
import threading
from datetime import datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

import store
from reconciler import Canonical, FrameCache, reconcile
from reconciler._canonical import _LAYOUT
from tests.reconciler.estate import AS_OF, Estate


def _estate() -> Estate:
    e = Estate()
    e.account("A1")
    e.customer("C1", "A1")
    e.deal("O1", won_days_ago=30)
    e.deal("O2", won_days_ago=30)
    e.project("P2", "O2")
    e.payment("PAY1", amount=100, unapplied=40)
    return e


def test_cached_loads_read_only_changes_and_agree_with_a_cold_load(
    db: store.Store, tmp_path: Path
) -> None:
    _estate().write(db)
    cache = FrameCache(tmp_path / "cache", lookback=timedelta(0))
    first = reconcile(Canonical.load(db, AS_OF, cache=cache), AS_OF).breaks
    assert cache.full_reads == len(store.ENTITIES)

    # the project of O1 appears, PAY1 is applied, O2 is deleted at the source
    later = AS_OF + timedelta(hours=1)
    e = _estate()
    e.project("P1", "O1", modified=later)
    db.ingest(store.IngestBatch(frames={"projects": e.frames()["projects"]}, observed_at=later))
    payments = e.frames()["payments"].with_columns(
        pl.lit(0, pl.Int64).alias("unapplied_minor"), pl.lit(later).alias("source_modified_at")
    )
    deals = (
        e.frames()["opportunities"]
        .filter(pl.col("source_id") == "O2")
        .with_columns(pl.lit(True).alias("is_deleted"), pl.lit(later).alias("source_modified_at"))
    )
    db.ingest(store.IngestBatch(frames={"payments": payments, "opportunities": deals},
                                observed_at=later))  # fmt: skip

    read_before = cache.rows_read
    warm = reconcile(Canonical.load(db, later, cache=cache), later).breaks
    cold = reconcile(Canonical.load(db, later), later).breaks
    assert cache.rows_read - read_before == 3  # P1 written again by its batch, PAY1, O2
    assert warm.drop("age_days", "business_days_open").equals(
        cold.drop("age_days", "business_days_open")
    )
    assert set(first["break_type"]) == {"won_deal_without_project", "unapplied_cash"}
    # O1 has its project now; O2 is gone; P2 lost its deal
    assert set(warm["key"]) == {"projects:kantata:P2"}


def _accounts(db: store.Store) -> pl.DataFrame:
    """The accounts as a cold load sees them, in key order."""
    return Canonical.load(db, AS_OF).accounts.collect().sort("source_system", "source_id")


def _renamed(e: Estate, ids: set[str], at: datetime, system: str = "salesforce") -> pl.DataFrame:
    return (
        e.frames()["accounts"]
        .filter((pl.col("source_system") == system) & pl.col("source_id").is_in(list(ids)))
        .with_columns(pl.col("name") + " (renamed)", pl.lit(at).alias("source_modified_at"))
    )


def _accounts_estate(n: int) -> Estate:
    e = Estate()
    for i in range(n):
        e.account(f"A{i}")
    return e


def test_a_refresh_rewrites_only_the_changes_until_they_are_folded_into_the_records(
    db: store.Store, tmp_path: Path
) -> None:
    e = _accounts_estate(10)
    e.customer("A0", "A0")  # the ERP's customer has the same source id as the CRM's account
    e.write(db)
    cache = FrameCache(tmp_path / "cache", lookback=timedelta(0), compact_ratio=0.3)
    Canonical.load(db, AS_OF, cache=cache)
    records = cache.records_path("accounts")
    changes = tmp_path / "cache" / "accounts.changes.arrow"
    assert records is not None and not changes.exists()
    written = records.stat().st_mtime_ns

    # one CRM account renamed: only it is written, to the changes; the ERP's A0 stays as it was
    t1 = AS_OF + timedelta(hours=1)
    db.ingest(store.IngestBatch(frames={"accounts": _renamed(e, {"A0"}, t1)}, observed_at=t1))
    warm = Canonical.load(db, t1, cache=cache).accounts.collect()
    assert cache.records_path("accounts") == records
    assert records.stat().st_mtime_ns == written
    assert pl.read_ipc(changes).select("source_system", "source_id").rows() == [
        ("salesforce", "A0")
    ]
    assert warm.sort("source_system", "source_id").equals(_accounts(db))
    assert warm.filter(pl.col("source_id") == "A0").sort("source_system")["name"].to_list() == [
        "Customer A0",  # netsuite's
        "Customer A0 (renamed)",
    ]

    # a run with nothing new reads nothing, writes nothing and still sees the change
    Canonical.load(db, t1, cache=cache)
    assert cache.records_path("accounts") == records
    assert records.stat().st_mtime_ns == written and cache.compactions == 0

    # three more: the changes (4 of 11 records) pass 30% and are folded into the records
    t2 = AS_OF + timedelta(hours=2)
    db.ingest(
        store.IngestBatch(frames={"accounts": _renamed(e, {"A1", "A2", "A3"}, t2)}, observed_at=t2)
    )
    warm = Canonical.load(db, t2, cache=cache).accounts.collect()
    assert cache.compactions == 1 and not changes.exists()
    # a new generation of the records; the one before is kept for any scan still reading it
    folded = cache.records_path("accounts")
    assert folded is not None and folded != records and records.exists()
    assert warm.sort("source_system", "source_id").equals(_accounts(db))
    again = Canonical.load(db, t2, cache=cache).accounts.collect()
    assert again.sort("source_system", "source_id").equals(_accounts(db))


def test_records_read_before_a_compaction_still_read_as_they_were(
    db: store.Store, tmp_path: Path
) -> None:
    e = _accounts_estate(4)
    e.write(db)
    cache = FrameCache(tmp_path / "cache", lookback=timedelta(0), compact_ratio=0.1)
    before = Canonical.load(db, AS_OF, cache=cache)  # lazy: nothing read from the files yet
    expected = _accounts(db)

    t1 = AS_OF + timedelta(hours=1)
    db.ingest(store.IngestBatch(frames={"accounts": _renamed(e, {"A0", "A1"}, t1)}, observed_at=t1))
    after = Canonical.load(db, t1, cache=cache).accounts.collect()
    assert cache.compactions == 1

    # the earlier load's scans still read the generation they were made from
    assert before.accounts.collect().sort("source_system", "source_id").equals(expected)
    assert after.sort("source_system", "source_id").equals(_accounts(db))
    assert not after.sort("source_system", "source_id").equals(expected)


def test_a_plan_reading_one_system_opens_only_that_systems_records(
    db: store.Store, tmp_path: Path
) -> None:
    e = _accounts_estate(3)
    e.customer("C1", "A1")
    e.account("B1", system="stripe")
    e.write(db)
    cache = FrameCache(tmp_path / "cache", lookback=timedelta(0), compact_ratio=10)
    erp = pl.col("source_system") == "netsuite"
    cold = Canonical.load(db, AS_OF, cache=cache).accounts
    # a CRM account's new version laid over the records
    t1 = AS_OF + timedelta(hours=1)
    db.ingest(store.IngestBatch(frames={"accounts": _renamed(e, {"A0"}, t1)}, observed_at=t1))
    warm = Canonical.load(db, t1, cache=cache).accounts
    assert cache.compactions == 0
    assert warm.collect().sort("source_system", "source_id").equals(_accounts(db))

    # take away every other system's records: plans on the ERP's alone still read
    records = cache.records_path("accounts")
    assert records is not None
    for other in ("salesforce", "stripe"):
        shutil.rmtree(records / f"source_system={other}")
    for plan in (cold, warm):
        assert plan.filter(erp).collect()["source_id"].to_list() == ["C1"]
        with pytest.raises(OSError, match="source_system="):
            plan.collect()


def test_records_split_across_files_read_back_whole(db: store.Store, tmp_path: Path) -> None:
    _accounts_estate(5).write(db)
    cache = FrameCache(tmp_path / "cache", lookback=timedelta(0), rows_per_file=2)
    loaded = Canonical.load(db, AS_OF, cache=cache).accounts.collect()
    records = cache.records_path("accounts")
    assert records is not None
    assert len(list(records.glob("source_system=salesforce/*.arrow"))) == 3
    assert loaded.sort("source_system", "source_id").equals(_accounts(db))


def test_a_cache_in_an_earlier_layout_is_rebuilt(db: store.Store, tmp_path: Path) -> None:
    _accounts_estate(2).write(db)
    cache = FrameCache(tmp_path / "cache", lookback=timedelta(0))
    Canonical.load(db, AS_OF, cache=cache)
    meta = tmp_path / "cache" / "meta.json"
    written = json.loads(meta.read_text())
    # as the previous release wrote it: no layout in the identity, one flat file per entity
    written["identity"] = written["identity"].removesuffix(f":{_LAYOUT}")
    written["records"]["accounts"] = "accounts.0123456789ab.arrow"
    pl.DataFrame({"source_system": ["x"]}).write_ipc(
        tmp_path / "cache" / "accounts.0123456789ab.arrow"
    )
    meta.write_text(json.dumps(written))

    again = FrameCache(tmp_path / "cache", lookback=timedelta(0))
    loaded = Canonical.load(db, AS_OF, cache=again).accounts.collect()
    assert again.full_reads == len(store.ENTITIES)
    assert loaded.sort("source_system", "source_id").equals(_accounts(db))


def test_an_entity_without_records_is_cached_and_read_as_empty(
    db: store.Store, tmp_path: Path
) -> None:
    _accounts_estate(1).write(db)
    cache = FrameCache(tmp_path / "cache", lookback=timedelta(0))
    loaded = Canonical.load(db, AS_OF, cache=cache)
    again = Canonical.load(db, AS_OF, cache=cache)
    for data in (loaded, again):
        assert data.invoices.collect().is_empty()
        assert data.invoices.collect_schema() == Canonical.load(db, AS_OF).invoices.collect_schema()


def test_a_second_cache_on_the_same_directory_waits_for_the_first_to_finish(
    tmp_path: Path,
) -> None:
    first = FrameCache(tmp_path / "cache")
    second = FrameCache(tmp_path / "cache")  # another process's, as far as the lock can tell
    entered = threading.Event()

    def refresh_in_second() -> None:
        with second.locked():
            entered.set()

    with first.locked():
        waiting = threading.Thread(target=refresh_in_second)
        waiting.start()
        assert not entered.wait(0.5)
    assert entered.wait(10)
    waiting.join()
