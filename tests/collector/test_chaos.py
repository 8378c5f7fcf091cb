"""Chaos: vendor faults from the sandbox's own fault injection and a collector process SIGKILLed at
random points, cycle after cycle, end with the same store as a fault-free run: nothing lost,
nothing doubled. On SQLite and PostgreSQL."""

from __future__ import annotations

import random
import signal
import subprocess
import time
from datetime import timedelta
from pathlib import Path

import pytest

import store
from collector import SUCCEEDED
from sandbox.apis import FaultPlan
from sandbox.estate import Estate
from sandbox.server import serve
from tests.collector.conftest import (
    assert_same_records,
    build,
    close,
    collect_process,
    sandbox_env,
    sandbox_settings,
    snapshot,
    source_totals,
    store_totals,
    sync,
)

SCALE = 0.01
SEED = 21
CYCLES = 20
ADVANCE_EVERY = 5  # the firm keeps working: every 5th cycle the clock moves 12 hours

CHAOS = {
    "seed": 5,
    "faults": [
        {"kind": "error", "status": 500, "rate": 0.10},
        {"kind": "error", "status": 503, "rate": 0.02},
        {"kind": "hang", "seconds": 5, "rate": 0.01},
        {"kind": "truncated_json", "rate": 0.03},
        {"kind": "malformed_json", "rate": 0.01},
        {"kind": "duplicate_page", "rate": 0.30},
        {"kind": "token_expiry", "rate": 0.03},
        # Rate-limit bursts: each refuses a run of consecutive requests, again and again.
        *(
            {"kind": "rate_limit", "after": after, "count": 4}
            for after in (10, 60, 150, 300, 500, 800, 1200)
        ),
    ],
}


def runs_started(db: store.Store) -> int:
    return len(db.list_probe_runs(limit=100_000))


def run_to_end_or_kill(
    proc: subprocess.Popen[str], kill_at: tuple[int, float] | None, db: store.Store
) -> str:
    """Let the process finish, or SIGKILL it at a random point of its work.

    ``kill_at = (n, delay)``: killed ``delay`` seconds after it has opened its ``n``-th probe
    run. The point is set by the process's progress, not by the clock since exec: start-up and
    a cycle take seconds on a busy machine and a fraction of one on an idle one, and a kill
    before any cycle, or after the last, would test nothing.
    """
    if kill_at is not None:
        runs, delay = kill_at
        target = runs_started(db) + runs
        deadline = time.monotonic() + 120
        while proc.poll() is None and runs_started(db) < target and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(delay)
    try:
        proc.wait(timeout=0 if kill_at is not None else 300)
        outcome = f"exit {proc.returncode}"
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        outcome = "SIGKILL"
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()
    return outcome


@pytest.mark.slow
def test_faults_and_sigkills_over_twenty_cycles_end_with_the_fault_free_store(
    store_url: str, key_file: Path, tmp_path: Path
) -> None:
    rng = random.Random(4)
    estate = Estate.generate(seed=SEED, scale=SCALE)
    outcomes = []
    watcher = store.Store(store_url)
    with serve(estate, FaultPlan.from_obj(CHAOS)) as sb:
        env = sandbox_env(sb, key_file, store_url, retries=6, request_timeout_seconds=1.0)
        for cycle in range(CYCLES):
            if cycle and cycle % ADVANCE_EVERY == 0:
                with estate.lock:
                    estate.advance(timedelta(hours=12))
            started = time.monotonic()
            # 14 streams a cycle: killed after opening one of the first 10, mid-read
            kill_at = (rng.randint(1, 10), rng.uniform(0.0, 0.3)) if rng.random() < 0.75 else None
            outcome = run_to_end_or_kill(collect_process(env), kill_at, watcher)
            outcomes.append((outcome, round(time.monotonic() - started, 1)))
        # Faults stay on; the collector is left alone until a cycle of every stream succeeds.
        for _ in range(4):
            final = collect_process(env)
            outcome = run_to_end_or_kill(final, None, watcher)
            outcomes.append((outcome, 0))
            if outcome == "exit 0":
                break
        fired = {
            v: sum(r["fired"] for r in s.faults.snapshot()["faults"])
            for v, s in sb.simulators.items()
        }

    watcher.dispose()
    chaos = store.Store(store_url)
    assert outcomes[-1][0] == "exit 0", outcomes
    assert sum(o == "SIGKILL" for o, _ in outcomes) >= 5, outcomes
    assert all(n >= 5 for n in fired.values()), fired
    assert store_totals(chaos) == source_totals(estate)

    # The reference: the same firm at the same clock, synced once without a single fault.
    reference_estate = Estate.generate(seed=SEED, scale=SCALE)
    reference_estate.advance(timedelta(hours=12 * ((CYCLES - 1) // ADVANCE_EVERY)))
    reference_url = f"sqlite:///{tmp_path / 'reference.sqlite3'}"
    engine = store.create_store_engine(reference_url)
    store.upgrade(engine)
    engine.dispose()
    reference = store.Store(reference_url)
    with serve(reference_estate) as clean:
        collector = build(sandbox_settings(clean, key_file, reference_url), reference)
        try:
            assert {r.status for r in sync(collector)} == {SUCCEEDED}
        finally:
            close(collector)

    assert_same_records(snapshot(chaos), snapshot(reference))
    assert chaos.list_quarantine() == []
    # Runs cut short by SIGKILL were closed as abandoned by the stream's next owner.
    runs = chaos.list_probe_runs(limit=10_000)
    assert [r.id for r in runs if r.status == "running"] == []
    assert any(r.error == "abandoned: the cycle died" for r in runs)
    chaos.dispose()
    reference.dispose()
