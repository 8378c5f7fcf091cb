"""Fixtures of the resync tests: a sandbox firm synced into a store and reconciled, probes over it.

The firm is the sandbox's generated estate (its ground truth names the injected breaks); the
store is filled by the real collector and reconciled by the real reconciler at the estate's
clock, so the break register is what production would hold. Faults come from the sandbox's own
fault injection; vendor writes are counted by the sandbox itself (a never-firing
``lost_response`` rule counts every write request an endpoint handled).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest

import store
from o2c import collect as wiring
from o2c.settings import Settings
from reconciler import run_reconcile
from reconciler.resync import CycleSummary, ResyncConfig, ResyncPolicy, run_resync_cycle
from sandbox.apis import FaultPlan
from sandbox.estate import Estate
from sandbox.server import Sandbox, serve
from tests.collector.conftest import build, close, key_file, sandbox_settings, sync

__all__ = ["key_file"]

SCALE = 0.01
SEED = 7
HEALABLE = ("won_deal_without_project", "customer_missing_in_erp", "invoice_missing_in_billing")
ALL_AUTO = {t: "auto" for t in HEALABLE}

# Quick retries at the probe, quick backoff between attempts: tests wait seconds, not minutes.
FAST_POLICY = ResyncPolicy(
    modes=ALL_AUTO,
    approval_above_minor=None,
    backoff=timedelta(milliseconds=1),
    max_backoff=timedelta(milliseconds=1),
    rate_per_minute=1000,
)


@dataclass
class Firm:
    """A sandbox firm, its store synced and reconciled at the estate's clock."""

    estate: Estate
    sb: Sandbox
    db: store.Store
    settings: Settings

    def open_truth(self, *types: str) -> pl.DataFrame:
        truth = self.estate.ground_truth
        return truth.filter(
            pl.col("break_type").is_in(types or HEALABLE) & pl.col("resolved_at").is_null()
        )

    def register(self, *types: str) -> pl.DataFrame:
        with self.db.begin() as conn:
            frame = store.read_break_register(conn)
        return frame.filter(pl.col("break_type").is_in(types or HEALABLE))

    def cycle(
        self, policy: ResyncPolicy = FAST_POLICY, tracer_provider: Any = None, **kwargs: Any
    ) -> CycleSummary:
        """One resync cycle in this process, with probes built as `o2c resync run` builds them."""
        config = ResyncConfig(policy=policy, tracer_provider=tracer_provider)
        return asyncio.run(run_cycle(self.settings, self.db, config, **kwargs))

    def faults(self, vendor: str, *rules: dict[str, Any]) -> None:
        """Replace a simulator's fault rules (the sandbox's own fault injection)."""
        self.sb.simulators[vendor].faults.load(
            FaultPlan.from_obj({"seed": 3, "faults": list(rules)}), replace=True
        )

    def count_writes(self) -> None:
        """From now on, count every write request each simulator handles (a rule that never fires)."""
        for vendor in self.sb.simulators:
            self.faults(vendor, {"kind": "lost_response", "rate": 0.0})

    def writes(self) -> dict[str, int]:
        """Write requests handled per vendor since ``count_writes`` (or since the rules were set)."""
        out = {}
        for vendor, sim in self.sb.simulators.items():
            rules = sim.faults.snapshot()["faults"]
            out[vendor] = sum(r["matched"] for r in rules if r["kind"] == "lost_response")
        return out

    def matched(self, vendor: str, kind: str) -> int:
        rules = self.sb.simulators[vendor].faults.snapshot()["faults"]
        return sum(r["matched"] for r in rules if r["kind"] == kind)


async def run_cycle(
    settings: Settings, db: store.Store, config: ResyncConfig, **kwargs: Any
) -> CycleSummary:
    probes: dict[str, Any] = {}
    try:
        for system_probe in wiring.system_probes(settings):
            probes[system_probe.system] = system_probe.factory()
        return await run_resync_cycle(db, probes, config=config, **kwargs)
    finally:
        for probe in probes.values():
            await probe.client.aclose()


def synced_firm(sb: Sandbox, estate: Estate, key: Path, url: str, **collector: Any) -> Firm:
    settings = sandbox_settings(sb, key, url, retries=3, **collector)
    db = store.Store(url)
    collector_ = build(settings, db)
    try:
        results = sync(collector_)
    finally:
        close(collector_)
    assert all(r.ok for r in results), [r for r in results if not r.ok]
    run_reconcile(db, as_of=estate.now)
    return Firm(estate, sb, db, settings)


def vendor_duplicates(firm: Firm) -> dict[str, int]:
    """Records the same repair key names more than once, per vendor, in the sandbox's own data."""
    e = firm.estate
    refs = e.frame("kantata", "external_references").filter(
        pl.col("service_model") == "Opportunity"
    )
    titled = e.frame("kantata", "workspaces").filter(pl.col("title").str.contains(r"\[006"))
    customers = e.frame("netsuite", "customer").filter(pl.col("externalid").is_not_null())
    invoices = (
        e.frame("stripe", "invoices")
        .with_columns(pl.col("metadata").struct.field("netsuite_id").alias("ns"))
        .filter(pl.col("ns").is_not_null())
    )
    return {
        "kantata": refs.height
        - refs["service_model_ref"].n_unique()
        + titled.height
        - titled["title"].n_unique(),
        "netsuite": customers.height - customers["externalid"].n_unique(),
        "stripe": invoices.height - invoices["ns"].n_unique(),
    }


@pytest.fixture
def firm(store_url: str, key_file: Path) -> Iterator[Firm]:
    """A fresh firm (its own estate: tests write to it) synced into an empty store."""
    estate = Estate.generate(seed=SEED, scale=SCALE)
    with serve(estate) as sb:
        built = synced_firm(sb, estate, key_file, store_url)
        try:
            yield built
        finally:
            built.db.dispose()
