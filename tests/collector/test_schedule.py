"""The schedule: one APScheduler job per stream (coalesced, never overlapping, with a misfire grace)
and a completeness job per system; and `o2c collect` running it until SIGTERM, serving /metrics."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from apscheduler.schedulers.asyncio import AsyncIOScheduler

import store
from collector import Collector, CollectorConfig, SystemProbe
from sandbox.estate import Estate
from sandbox.server import serve
from tests.collector.conftest import sandbox_env
from tests.collector.scripted import ScriptedProbe


def test_one_job_per_stream_with_coalescing_one_instance_and_a_misfire_grace(
    db: store.Store,
) -> None:
    config = CollectorConfig(
        systems=("crm",),
        interval_seconds=300,
        intervals={"crm.accounts": 45},
        completeness_interval_seconds=1800,
        misfire_grace_seconds=30,
    )
    collector = Collector(
        db, [SystemProbe("crm", ("accounts",), lambda: ScriptedProbe([]))], config
    )
    scheduler = AsyncIOScheduler()

    jobs = {job.id: job for job in collector.schedule(scheduler)}

    assert set(jobs) == {"cycle:crm:accounts", "completeness:crm"}
    cycle = jobs["cycle:crm:accounts"]
    assert cycle.trigger.interval.total_seconds() == 45
    assert (cycle.coalesce, cycle.max_instances, cycle.misfire_grace_time) == (True, 1, 30)
    assert jobs["completeness:crm"].trigger.interval.total_seconds() == 1800


def test_unknown_streams_in_the_configuration_are_refused(db: store.Store) -> None:
    from collector import CollectorError

    probes = [SystemProbe("crm", ("accounts",), lambda: ScriptedProbe([]))]
    with pytest.raises(CollectorError, match="unknown stream"):
        Collector(db, probes, CollectorConfig(systems=("crm",), streams={"crm": ("leads",)}))
    with pytest.raises(CollectorError, match="no probe for enabled system"):
        Collector(db, probes, CollectorConfig(systems=("crm", "erp")))


@pytest.mark.slow
def test_the_long_running_collector_syncs_serves_metrics_and_stops_on_sigterm(
    key_file: Path, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'o2c.sqlite3'}"
    engine = store.create_store_engine(url)
    store.upgrade(engine)
    engine.dispose()
    port = _free_port()
    estate = Estate.generate(seed=41, scale=0.01)
    with serve(estate) as sb:
        env = sandbox_env(
            sb,
            key_file,
            url,
            systems="kantata,stripe",
            interval_seconds=1,
            completeness_interval_seconds=2,
            metrics_port=port,
        )
        proc = subprocess.Popen(
            [sys.executable, "-m", "o2c.cli", "collect"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            body = _scrape_until(
                port,
                [
                    'o2c_completeness_findings{system="stripe"} 0.0',
                    'o2c_completeness_findings{system="kantata"} 0.0',
                    'o2c_probe_last_success_timestamp_seconds{stream="time_entries",system="kantata"}',
                    'o2c_probe_cycles_total{status="succeeded",stream="invoices",system="stripe"}',
                ],
                proc,
            )
            _wait_for_runs(url, ("kantata", "projects"), 2, proc)
        finally:
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=60)

    assert proc.returncode == 0, err
    assert "collector stopped" in out
    assert (
        'o2c_probe_last_success_timestamp_seconds{stream="time_entries",system="kantata"}' in body
    )
    assert 'o2c_probe_cycles_total{status="succeeded",stream="invoices",system="stripe"}' in body
    db = store.Store(url)
    runs = db.list_probe_runs(limit=1000)
    db.dispose()
    # Cycles repeated on the schedule, and SIGTERM left no run open.
    assert len([r for r in runs if (r.source_system, r.stream) == ("kantata", "projects")]) >= 2
    assert [r for r in runs if r.status == "running"] == []


def _wait_for_runs(url: str, stream: tuple[str, str], n: int, proc: subprocess.Popen[str]) -> None:
    """Until the schedule has run ``stream`` ``n`` times (its interval is one second)."""
    db = store.Store(url)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            runs = db.list_probe_runs(source_system=stream[0], limit=1000)
            if len([r for r in runs if r.stream == stream[1] and r.status == "succeeded"]) >= n:
                return
            time.sleep(0.2)
    finally:
        db.dispose()
    raise AssertionError(f"{stream} did not run {n} times on its schedule")


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _scrape_until(port: int, needles: list[str], proc: subprocess.Popen[str]) -> str:
    deadline = time.monotonic() + 90
    body = ""
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        try:
            body = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
        except httpx.HTTPError:
            body = ""
        if all(needle in body for needle in needles):
            return body
        time.sleep(0.5)
    missing = [needle for needle in needles if needle not in body]
    raise AssertionError(f"{missing} never appeared in /metrics:\n{body[-2000:]}")
