"""Fixtures of the collector tests: stores, sandboxes, settings that point at them, request counts.

The end-to-end tests go through the same wiring as `o2c collect` (settings -> probe configs ->
Collector), against the sandbox's simulators on loopback; faults come from the sandbox's own
fault injection. Collector *processes* (for SIGKILL and two-collector tests) get the same
settings as environment variables.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import create_engine, text

import store
from collector import Collector, CollectorMetrics, CycleResult
from o2c import collect as wiring
from o2c.demo import vendor_overrides
from o2c.settings import Settings
from sandbox.apis import FaultPlan
from sandbox.server import Sandbox

# Fast retries and short time-outs: a hang becomes a time-out in a second, a 5xx a quick retry.
FAST = {
    "retries": 8,
    "retry_backoff_seconds": 0.02,
    "retry_max_backoff_seconds": 0.2,
    "request_timeout_seconds": 1.5,
    "cycle_timeout_seconds": 300,
}


@pytest.fixture
def postgres_db(postgres_url: str) -> Iterator[store.Store]:
    """A Store on the session's PostgreSQL database, emptied first (for PostgreSQL-only tests)."""
    truncate(postgres_url)
    instance = store.Store(postgres_url)
    yield instance
    instance.dispose()


def truncate(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        tables = ", ".join(f'"{t}"' for t in store.metadata.tables)
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY"))
    engine.dispose()


@pytest.fixture(scope="session")
def key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The private key NetSuite's JWT assertion is signed with (the sandbox does not verify it)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path_factory.mktemp("keys") / "netsuite.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def vendor_settings(sb: Sandbox, key_file: Path) -> dict[str, dict[str, Any]]:
    return dict(vendor_overrides(sb.urls, sb.credentials, sb.ca_file, key_file))


def sandbox_settings(sb: Sandbox, key_file: Path, database_url: str, **collector: Any) -> Settings:
    """Settings as an operator would write them for this sandbox and store."""
    return Settings(
        database_url=database_url,
        collector={**FAST, **collector},
        **vendor_settings(sb, key_file),
    )


def sandbox_env(sb: Sandbox, key_file: Path, database_url: str, **collector: Any) -> dict[str, str]:
    """The same settings as O2C_ environment variables, for a collector process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("O2C_")}
    env["O2C_DATABASE_URL"] = database_url
    for vendor, values in vendor_settings(sb, key_file).items():
        for key, value in values.items():
            env[f"O2C_{vendor.upper()}__{key.upper()}"] = str(value)
    for key, value in {**FAST, **collector}.items():
        env[f"O2C_COLLECTOR__{key.upper()}"] = str(value)
    env["COLUMNS"] = "200"
    return env


def collect_process(env: Mapping[str, str], *args: str) -> subprocess.Popen[str]:
    """`o2c collect --once` in its own process (what an operator or a cron job runs)."""
    return subprocess.Popen(
        [sys.executable, "-m", "o2c.cli", "collect", "--once", *args],
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def build(
    settings: Settings, db: store.Store, metrics: CollectorMetrics | None = None
) -> Collector:
    return wiring.build_collector(settings, db, metrics=metrics)


def sync(collector: Collector, systems: list[str] | None = None) -> list[CycleResult]:
    """One cycle of every stream, in a fresh event loop (clients closed at the end)."""

    async def once() -> list[CycleResult]:
        try:
            return await collector.run_once(systems)
        finally:
            await collector.aclose()

    return asyncio.run(once())


def close(collector: Collector) -> None:
    if collector.ownership is not None:
        collector.ownership.close()


# --------------------------------------------------------------------------- the sandbox's side


class RequestCounts:
    """Requests each simulator served, counted by the sandbox itself.

    A zero-second latency rule per endpoint matches every request to it; its ``matched`` counter
    is the count (the fault layer evaluates every rule kind on every request).
    """

    def __init__(self, sb: Sandbox) -> None:
        self.sb = sb
        for sim in sb.simulators.values():
            rules = [
                {"kind": "latency", "seconds": 0, "endpoint": name} for name in sim.faults.endpoints
            ]
            sim.faults.load(FaultPlan.from_obj({"faults": rules}))

    def snapshot(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for vendor, sim in self.sb.simulators.items():
            rules = sim.faults.snapshot()["faults"]
            out[vendor] = {
                r["endpoint"]: r["matched"]
                for r in rules
                if r["kind"] == "latency" and r["matched"]
            }
        return out

    def since(self, before: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
        now = self.snapshot()
        return {
            vendor: {
                ep: n - before.get(vendor, {}).get(ep, 0)
                for ep, n in eps.items()
                if n - before.get(vendor, {}).get(ep, 0)
            }
            for vendor, eps in now.items()
        }


def _cents(column: str) -> pl.Expr:
    return pl.col(column).cast(pl.Int64)


def _money(column: str) -> pl.Expr:
    return (pl.col(column) * Decimal(100)).cast(pl.Int64)


# (system, entity) -> (vendor object, row filter, amount expression, store amount column)
EXPECTED: dict[tuple[str, str], tuple[str, pl.Expr, pl.Expr | None, str | None]] = {
    ("salesforce", "accounts"): ("Account", ~pl.col("IsDeleted"), None, None),
    ("salesforce", "opportunities"): (
        "Opportunity",
        ~pl.col("IsDeleted"),
        _money("Amount"),
        "amount_minor",
    ),
    ("kantata", "projects"): ("workspaces", pl.lit(True), _cents("price_in_cents"), "budget_minor"),
    ("kantata", "time_entries"): (
        "time_entries",
        pl.lit(True),
        _cents("time_in_minutes"),
        "minutes",
    ),
    ("kantata", "milestones"): (
        "stories",
        pl.col("story_type") == "milestone",
        _cents("price_in_cents"),
        "amount_minor",
    ),
    ("kantata", "invoices"): ("invoices", pl.lit(True), _cents("balance_in_cents"), "total_minor"),
    ("netsuite", "accounts"): ("customer", pl.lit(True), None, None),
    ("netsuite", "invoices"): (
        "transaction",
        pl.col("type") == "CustInvc",
        _money("foreigntotal"),
        "total_minor",
    ),
    ("netsuite", "payments"): (
        "transaction",
        pl.col("type") == "CustPymt",
        _money("foreigntotal"),
        "amount_minor",
    ),
    ("netsuite", "payment_applications"): (
        "nexttransactionlinelink",
        pl.lit(True),
        _money("foreignamount"),
        "amount_minor",
    ),
    ("stripe", "accounts"): ("customers", pl.lit(True), None, None),
    ("stripe", "invoices"): ("invoices", pl.lit(True), _cents("total"), "total_minor"),
    ("stripe", "payments"): ("payment_intents", pl.lit(True), _cents("amount"), "amount_minor"),
    ("stripe", "payment_applications"): (
        "invoice_payments",
        pl.lit(True),
        _cents("amount_paid"),
        "amount_minor",
    ),
}


def source_totals(estate: Any) -> dict[tuple[str, str], tuple[int, int | None]]:
    """(records, amount sum in minor units) per (system, entity), from the vendors' own frames."""
    out = {}
    for (system, entity), (obj, keep, amount, _) in EXPECTED.items():
        frame = estate.frame(system, obj).filter(keep)
        total = None if amount is None else int(frame.select(amount.sum()).item() or 0)
        out[(system, entity)] = (frame.height, total)
    return out


def store_totals(db: store.Store) -> dict[tuple[str, str], tuple[int, int | None]]:
    """The same figures from the store: live records per source system and entity."""
    out = {}
    for (system, entity), (_, _, _, column) in EXPECTED.items():
        frame = db.read_frame(entity).filter(pl.col("source_system") == system)
        total = None if column is None else int(frame[column].sum() or 0)
        out[(system, entity)] = (frame.height, total)
    return out


BOOKKEEPING = ("first_seen_at", "last_seen_at")


def snapshot(db: store.Store) -> dict[str, pl.DataFrame]:
    """Every canonical record (deleted ones too), without the store's own observation times."""
    return {
        name: db.read_frame(name, include_deleted=True)
        .drop(BOOKKEEPING)
        .sort("source_system", "source_id")
        for name in store.ENTITIES
    }


def assert_same_records(left: dict[str, pl.DataFrame], right: dict[str, pl.DataFrame]) -> None:
    from polars.testing import assert_frame_equal

    for name in store.ENTITIES:
        assert left[name].height == right[name].height, name
        assert_frame_equal(left[name], right[name], check_row_order=True)
