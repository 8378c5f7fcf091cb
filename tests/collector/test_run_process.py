"""`o2c run`, the production process: the collector's schedule plus the periodic reconcile, until SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from apscheduler.schedulers.asyncio import AsyncIOScheduler

import store
from o2c.run import Periodic, add_jobs, reconcile_config
from o2c.settings import Settings
from sandbox.estate import Estate
from sandbox.server import serve
from tests.collector.conftest import sandbox_env


def test_reconcile_settings_become_fx_rates_and_business_calendars() -> None:
    settings = Settings(
        reconcile={
            "reporting_currency": "eur",
            "fx_rates": {"usd": "0.92"},
            "weekend": [5, 6],
            "holidays": {"US01": ["2026-07-03"], "*": ["2026-12-25"]},
        }
    )

    config = reconcile_config(settings)

    assert config.reporting_currency == "EUR"
    assert config.fx_rates == {"USD": Decimal("0.92"), "EUR": Decimal(1)}
    us = config.calendar("US01")
    assert us.holidays == {date(2026, 7, 3), date(2026, 12, 25)}
    assert us.weekend == (5, 6)
    # an entity without its own list keeps the holidays every entity has
    assert config.calendar("GB01").holidays == {date(2026, 12, 25)}


def test_a_non_positive_fx_rate_is_refused_with_the_variable_to_fix() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="must be positive"):
        Settings(reconcile={"fx_rates": {"EUR": "0"}})


@pytest.mark.slow
def test_o2c_run_collects_reconciles_on_its_schedule_and_stops_on_sigterm(
    key_file: Path, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'o2c.sqlite3'}"
    engine = store.create_store_engine(url)
    store.upgrade(engine)
    engine.dispose()
    with serve(Estate.generate(seed=43, scale=0.01)) as sb:
        env = sandbox_env(sb, key_file, url, interval_seconds=1, metrics_port=0)
        env["O2C_RECONCILE__INTERVAL_SECONDS"] = "2"
        # Repairs would resolve breaks between runs (each reconcile wakes the resync cycle);
        # this test is about the reconcile's own schedule.
        env["O2C_RESYNC__ENABLED"] = "false"
        env["O2C_DATA_DIR"] = str(tmp_path / "data")
        proc = subprocess.Popen(
            [sys.executable, "-m", "o2c.cli", "run"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            runs = _wait_for_reconciles(url, 2, proc)
        finally:
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=60)

    assert proc.returncode == 0, err
    assert "collector stopped" in out
    assert all(run.status == "succeeded" for run in runs)
    # the first run waited for every stream's first full read: the estate's defects are breaks
    # from the start, and none was a half-read record that a later run had to resolve
    assert runs[-1].breaks_detected == runs[0].breaks_detected > 0
    assert all(run.breaks_resolved == 0 for run in runs)


@pytest.mark.anyio
async def test_a_job_woken_by_another_runs_at_once_not_at_its_next_tick() -> None:
    scheduler = AsyncIOScheduler()
    ran = asyncio.Event()

    async def resync() -> None:
        ran.set()

    follower = Periodic("resync", 3600, resync, first_delay=3600)

    async def reconcile() -> str:
        follower.wake()
        return "run 1"

    leader = Periodic("reconcile", 3600, reconcile, first_delay=0)
    add_jobs([leader, follower])(scheduler)
    scheduler.start()
    try:
        await asyncio.wait_for(ran.wait(), timeout=10)
    finally:
        scheduler.shutdown(wait=False)
    assert (leader.runs, follower.runs) == (1, 1)


def _wait_for_reconciles(url: str, n: int, proc: subprocess.Popen[str]) -> list[store.ReconcileRun]:
    """The newest reconcile runs once ``n`` have finished after collection wrote something."""
    engine = store.create_store_engine(url)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            with engine.connect() as conn:
                runs = store.list_reconcile_runs(conn, limit=100)
            done = [r for r in runs if r.status != "running"]
            if len(done) >= n and done[0].breaks_detected > 0:
                return done
            time.sleep(0.5)
    finally:
        engine.dispose()
    raise AssertionError(f"fewer than {n} reconcile runs with breaks within 120 s")
