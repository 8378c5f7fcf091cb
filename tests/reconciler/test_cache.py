"""The frame cache: a run after a change reads only the change and sees the same data as a cold load."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import polars as pl

import store
from reconciler import Canonical, FrameCache, reconcile
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
