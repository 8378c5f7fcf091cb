"""A sandbox-fed estate for the alerts tests: synced once per session through the real pipeline.

The sandbox serves a generated estate on loopback, the production collector (probes, HTTP,
mapping, store writes) syncs it into a SQLite store, and its canonical records are kept as frames.
Tests put those records into their own store, or reconcile many suffixed copies of them to get a
large estate quickly (the way bench/reconcile.py builds scale 10).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

import store
from reconciler import Canonical
from sandbox.estate import Estate
from tests.reconciler.test_accuracy import fill_store

BASE_SCALE = 0.1
"""The estate synced through the pipeline: about 53,000 canonical records."""

# Which columns of each entity hold record ids (suffixed per copy, as bench/reconcile.py does).
ID_COLUMNS: dict[str, tuple[str, ...]] = {
    "accounts": ("source_id", "crm_account_id", "erp_customer_id", "name"),
    "opportunities": ("source_id", "account_ref"),
    "projects": ("source_id", "opportunity_ref", "account_ref"),
    "time_entries": ("source_id", "project_ref", "invoice_ref"),
    "milestones": ("source_id", "project_ref", "invoice_ref"),
    "invoices": ("source_id", "number", "customer_ref", "project_ref", "opportunity_ref",
                 "psa_invoice_ref", "twin_ref"),
    "payments": ("source_id", "customer_ref", "reference"),
    "payment_applications": ("source_id", "payment_ref", "invoice_ref"),
}  # fmt: skip


@dataclass(frozen=True)
class SandboxEstate:
    """The canonical records of one sandbox estate as the collector stored them."""

    now: datetime
    frames: dict[str, pl.DataFrame]
    health: pl.DataFrame

    @property
    def rows(self) -> int:
        return sum(f.height for f in self.frames.values())

    def write(self, db: store.Store) -> None:
        """Put the records into ``db`` (bulk ingest; the store stamps its bookkeeping)."""
        for name, frame in self.frames.items():
            if frame.height:
                db.ingest(store.IngestBatch(frames={name: frame}))

    def copies(self, n: int) -> Canonical:
        """``n`` copies of the estate, every id and reference suffixed per copy (``~k``)."""
        frames = {
            name: pl.concat(
                [frame]
                + [frame.with_columns(pl.col(c) + f"~{k}" for c in ID_COLUMNS[name])
                   for k in range(1, n)]
            )
            for name, frame in self.frames.items()
        }  # fmt: skip
        return Canonical.from_frames(frames, self.health)


@pytest.fixture(scope="session")
def sandbox_estate(tmp_path_factory: pytest.TempPathFactory) -> SandboxEstate:
    workdir = tmp_path_factory.mktemp("alerts-sandbox")
    url = f"sqlite:///{Path(workdir) / 'synced.sqlite3'}"
    engine = store.create_store_engine(url)
    store.upgrade(engine)
    engine.dispose()
    estate = Estate.generate(seed=1, scale=BASE_SCALE)
    db = store.Store(url)
    try:
        fill_store(estate, db, Path(workdir))
        frames = {
            name: db.read_frame(name, columns=list(entity.input_columns))
            for name, entity in store.ENTITIES.items()
        }
        with db.begin() as conn:
            health = store.read_probe_health(conn, as_of=datetime.now(UTC))
    finally:
        db.dispose()
    return SandboxEstate(now=estate.now, frames=frames, health=health)
