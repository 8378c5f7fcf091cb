"""Accuracy against the sandbox's ground truth, end to end: sandbox -> probes -> collector -> store
-> reconciler. Every injected defect is found, nothing else is reported, amounts at risk equal the
truth; and re-running on the same data changes nothing.

Small estates (the suite must stay fast); the issue's scales 1 and 10 run through the same code
with ``python -m tests.reconciler.test_accuracy SEED SCALE``. Run 2026-12-02 on seeds 1, 2 and 3
at scales 1 and 10 (6,609 to 7,469 and 71,375 to 71,941 breaks): nothing missed, no amount
wrong, nothing reported that is not in the truth, after the fix of invoice_missing_in_erp's
matching that seed 1 at scale 10 called for (4 billing invoices reported on their own).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import orjson
import polars as pl
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

import store
from o2c import collect as wiring
from o2c.settings import Settings
from reconciler import Canonical, ReconcileConfig, reconcile, run_reconcile
from sandbox.estate import Estate
from sandbox.server import Sandbox, serve

SEEDS = (1, 2, 3)
SCALE = 0.03

# Which record of a ground-truth row names the problem (the sandbox's own checks use the same).
_KEY_RECORD = {"project_value_mismatch": 1, "invoice_amount_mismatch": 1,
               "customer_duplicated_in_erp": 2}  # fmt: skip


def _key_file(directory: Path) -> Path:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = directory / "netsuite.pem"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                     serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))  # fmt: skip
    return path


def _settings(sb: Sandbox, key_file: Path, url: str) -> Settings:
    creds = sb.credentials
    return Settings(
        database_url=url,
        salesforce={"instance_url": sb.urls["salesforce"], "verify": str(sb.ca_file),
                    "client_id": creds["salesforce"]["client_id"],
                    "client_secret": creds["salesforce"]["client_secret"]},
        kantata={"base_url": f"{sb.urls['kantata']}/api/v1",
                 "token": creds["kantata"]["access_token"]},
        netsuite={"base_url": f"{sb.urls['netsuite']}/services/rest",
                  "account": creds["netsuite"]["account"],
                  "client_id": creds["netsuite"]["client_id"],
                  "certificate_id": "sandbox-cert", "private_key_file": str(key_file)},
        stripe={"api_base": sb.urls["stripe"], "api_key": creds["stripe"]["secret_key"]},
        # one cycle must read a whole large estate (scale 10: millions of time entries)
        collector={"cycle_timeout_seconds": 3 * 3600},
    )  # type: ignore[arg-type]  # fmt: skip


def fill_store(estate: Estate, db: store.Store, workdir: Path) -> None:
    """A full collector sync of the estate, served on loopback, into ``db``."""
    with serve(estate) as sb:
        collector = wiring.build_collector(_settings(sb, _key_file(workdir), db.url), db)

        async def once() -> None:
            try:
                results = await collector.run_once(None)
            finally:
                await collector.aclose()
                if collector.ownership is not None:
                    collector.ownership.close()
            failed = [(r.system, r.stream) for r in results if not r.ok]
            assert not failed, f"sync failed for {failed}"

        asyncio.run(once())


def compare(estate: Estate, breaks: pl.DataFrame) -> dict[str, list[str]]:
    """Problems per kind: missed truth rows, wrong amounts, and reported breaks not in the truth."""
    found = breaks.with_columns(
        pl.col("records")
        .map_elements(lambda s: [r["id"] for r in orjson.loads(s)], return_dtype=pl.List(pl.String))
        .alias("ids"),
        pl.lit(False).alias("matched"),
    )
    missed, wrong = [], []
    matched: set[str] = set()
    truth = estate.ground_truth.filter(pl.col("resolved_at").is_null())
    for btype, records, amount, currency in truth.select(
        "break_type", "records", "amount_at_risk", "currency"
    ).iter_rows():
        if btype == "stale_source":  # an API outage window, not data (tested by the probes)
            continue
        recs = orjson.loads(records)
        if btype == "currency_mismatch":
            key = recs[1 if recs[0]["vendor"] == "salesforce" else 0]["id"]
        else:
            key = recs[_KEY_RECORD.get(btype, 0)]["id"]
        hits = found.filter((pl.col("break_type") == btype) & pl.col("ids").list.contains(key))
        if hits.height != 1:
            missed.append(f"{btype}:{key} ({hits.height} matches)")
            continue
        matched.add(hits["break_id"][0])
        want = int(Decimal(amount) * 100)  # every estate currency has two decimals
        got = (hits["amount_minor"][0], hits["currency"][0])
        if got != (want, currency):
            wrong.append(f"{btype}:{key} {got} != {(want, currency)}")
    extra = found.filter(~pl.col("break_id").is_in(list(matched)))
    return {
        "missed": missed,
        "wrong_amount": wrong,
        "not_in_truth": [f"{t}:{k}" for t, k in extra.select("break_type", "key").iter_rows()],
    }


@pytest.fixture(scope="module", params=SEEDS, ids=[f"seed{s}" for s in SEEDS])
def filled(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Estate, store.Store]]:
    workdir = tmp_path_factory.mktemp(f"accuracy{request.param}")
    url = f"sqlite:///{workdir / 'o2c.sqlite3'}"
    engine = store.create_store_engine(url)
    store.upgrade(engine)
    engine.dispose()
    estate = Estate.generate(seed=request.param, scale=SCALE)
    db = store.Store(url)
    fill_store(estate, db, workdir)
    yield estate, db
    db.dispose()


def test_every_injected_break_is_found_with_its_amount_and_nothing_else(
    filled: tuple[Estate, store.Store],
) -> None:
    estate, db = filled
    result = reconcile(Canonical.load(db, estate.now), estate.now, ReconcileConfig())
    assert compare(estate, result.breaks) == {"missed": [], "wrong_amount": [], "not_in_truth": []}
    assert result.breaks.height > 50  # every type is present at this scale


def test_rerunning_on_the_same_data_changes_nothing(filled: tuple[Estate, store.Store]) -> None:
    estate, db = filled
    first = run_reconcile(db, as_of=estate.now)
    second = run_reconcile(db, as_of=estate.now)
    assert set(first.result.breaks["break_id"]) == set(second.result.breaks["break_id"])
    assert second.counts["transitions"] == 0 and second.counts["register_rows_written"] == 0


if __name__ == "__main__":  # the larger estates, by hand: SEED SCALE
    import tempfile
    import time

    seed, scale = int(sys.argv[1]), float(sys.argv[2])
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/o2c.sqlite3"
        engine = store.create_store_engine(url)
        store.upgrade(engine)
        engine.dispose()
        estate, db = Estate.generate(seed=seed, scale=scale), store.Store(url)
        started = time.perf_counter()
        fill_store(estate, db, Path(tmp))
        synced = time.perf_counter()
        result = reconcile(Canonical.load(db, estate.now), estate.now, ReconcileConfig())
        done = time.perf_counter()
        problems = compare(estate, result.breaks)
        print(f"seed {seed} scale {scale}: {result.breaks.height} breaks; sync "
              f"{synced - started:.0f} s, load+reconcile {done - synced:.1f} s")  # fmt: skip
        print({k: (len(v), v[:5]) for k, v in problems.items()})
        sys.exit(1 if any(problems.values()) else 0)
