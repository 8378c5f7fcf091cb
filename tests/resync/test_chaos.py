"""Must show: with 30% of vendor write answers lost and the executor SIGKILLed mid-run, every
automatically healable injected break is resolved within a bounded number of `o2c resync run`
cycles, no vendor holds a duplicate (the sandbox's own data), and the audit is complete. On
SQLite and PostgreSQL."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

import store
from sandbox.apis import FaultPlan
from sandbox.estate import Estate
from sandbox.server import serve
from tests.collector.conftest import sandbox_env, truncate
from tests.resync.conftest import ALL_AUTO, SCALE, SEED, synced_firm, vendor_duplicates

MAX_CYCLES = 8
KILLED_CYCLES = 3  # the first three runs are SIGKILLed while they work
LOST = {"seed": 11, "faults": [{"kind": "lost_response", "rate": 0.3}]}  # write endpoints only

RESYNC_ENV = {
    "O2C_RESYNC__MODES": json.dumps({**ALL_AUTO, "invoice_status_mismatch": "manual"}),
    "O2C_RESYNC__APPROVAL_ABOVE_MINOR": "1000000000000",
    "O2C_RESYNC__BACKOFF_SECONDS": "0.01",
    "O2C_RESYNC__MAX_BACKOFF_SECONDS": "0.01",
    "O2C_RESYNC__MAX_ATTEMPTS": "30",
    "O2C_RESYNC__CIRCUIT_FAILURES": "50",
    "O2C_RESYNC__RATE_PER_MINUTE": "1000",
    # SQLite: a dead worker's claim may be taken over a second later (PostgreSQL: at once).
    "O2C_RESYNC__LEASE_SECONDS": "1",
}


def attempts_started(db: store.Store) -> int:
    with db.begin() as conn:
        return store.read_resync_attempts(conn).height


def run_or_kill(
    env: dict[str, str], db: store.Store, kill: bool, rng: random.Random, log: Path
) -> str:
    """`o2c resync run` in its own process; SIGKILLed shortly after it started an attempt."""
    with log.open("a") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "o2c.cli", "resync", "run"],
            env=env, stdout=out, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        if kill:
            before = attempts_started(db)
            deadline = time.monotonic() + 60
            while proc.poll() is None and attempts_started(db) == before:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.02)
            time.sleep(rng.uniform(0.0, 0.4))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                return "SIGKILL"
        proc.wait(timeout=300)
        return f"exit {proc.returncode}"


@pytest.mark.slow
def test_lost_answers_and_sigkills_heal_every_automatic_break_once_with_a_complete_audit(
    store_url: str, key_file: Path, tmp_path: Path
) -> None:
    rng = random.Random(9)
    estate = Estate.generate(seed=SEED, scale=SCALE)
    with serve(estate) as sb:
        firm = synced_firm(sb, estate, key_file, store_url)
        injected = firm.open_truth()
        by_type = dict(injected.group_by("break_type").len().iter_rows())
        assert set(by_type) == set(ALL_AUTO)
        before = {
            "kantata": estate.frame("kantata", "workspaces").height,
            "netsuite": estate.frame("netsuite", "customer").height,
            "stripe": estate.frame("stripe", "invoices").height,
        }
        for sim in sb.simulators.values():
            sim.faults.load(FaultPlan.from_obj(LOST), replace=True)
        env = {**sandbox_env(sb, key_file, store_url, retries=3), **RESYNC_ENV}

        outcomes = []
        for cycle in range(MAX_CYCLES):
            outcomes.append(run_or_kill(env, firm.db, cycle < KILLED_CYCLES, rng, tmp_path / "log"))
            if cycle >= KILLED_CYCLES and firm.open_truth().is_empty():
                break
        lost = {v: s.faults.snapshot()["faults"][0]["fired"] for v, s in sb.simulators.items()}
        handled = {v: s.faults.snapshot()["faults"][0]["matched"] for v, s in sb.simulators.items()}

        log = (tmp_path / "log").read_text()
        assert firm.open_truth().is_empty(), (outcomes, log[-3000:])
        assert outcomes.count("SIGKILL") >= 2, outcomes
        assert sum(lost.values()) >= 3, lost
        # Zero duplicates, and exactly one new record per healed break, in the vendors' own data.
        assert vendor_duplicates(firm) == {"kantata": 0, "netsuite": 0, "stripe": 0}
        assert estate.frame("kantata", "workspaces").height == (
            before["kantata"] + by_type["won_deal_without_project"]
        )
        assert estate.frame("netsuite", "customer").height == (
            before["netsuite"] + by_type["customer_missing_in_erp"]
        )
        assert estate.frame("stripe", "invoices").height == (
            before["stripe"] + by_type["invoice_missing_in_billing"]
        )

    db = firm.db
    with db.begin() as conn:
        requests = store.read_resync_requests(conn)
        attempts = store.read_resync_attempts(conn)
        audit = store.read_resync_audit(conn, limit=None)
    # Every healable break had one request, and it succeeded.
    assert requests.height == injected.height
    assert set(requests["status"]) == {"succeeded"}
    assert requests["break_id"].n_unique() == requests.height
    # Audit complete: each request asked, each attempt started and closed, each outcome recorded.
    kinds = audit.group_by("kind").len()
    count = dict(kinds.iter_rows())
    assert count["requested"] == requests.height
    assert count["attempt"] == attempts.height
    assert attempts["outcome"].null_count() == 0
    outcomes_audited = audit.filter(pl.col("kind") == "outcome")
    assert outcomes_audited["request_id"].n_unique() == requests.height
    # Each take-over closed the dead worker's open attempt, if it had got as far as starting
    # one: a worker killed between its claim and its attempt leaves a take-over with none.
    abandoned = attempts.filter(pl.col("outcome") == "abandoned").height
    taken_over = audit.filter(pl.col("kind") == "taken_over")["summary"]
    closed_by_takeovers = sum(json.loads(s)["abandoned_attempts"] for s in taken_over)
    assert abandoned == closed_by_takeovers and abandoned >= 1
    # Every write the vendors handled was on record before it was sent (write-ahead audit).
    writes = audit.filter(
        (pl.col("kind") == "vendor_call")
        & pl.col("method").is_in(["POST", "PUT", "PATCH"])
        & ~pl.col("path").str.contains("suiteql|token")
    )
    assert writes.height >= sum(handled.values()), (writes.height, handled)
    answered = audit.filter(pl.col("kind") == "vendor_answer").select("call_id")
    unanswered = writes.join(answered, on="call_id", how="anti")
    assert unanswered.height >= sum(lost.values()) - 0  # a lost answer leaves a call without one
    assert not audit["summary"].drop_nulls().str.contains("Bearer |sk_test_|client_secret=").any()
    db.dispose()


@pytest.mark.slow
def test_two_executor_processes_on_one_postgresql_never_run_a_request_twice(
    postgres_url: str, key_file: Path, tmp_path: Path
) -> None:
    truncate(postgres_url)
    estate = Estate.generate(seed=SEED, scale=SCALE)
    with serve(estate) as sb:
        firm = synced_firm(sb, estate, key_file, postgres_url)
        injected = firm.open_truth()
        # Slow writes keep both processes busy at the same time. At 0.2 s a write, one process
        # once did every request before the other had finished starting (CI, two busy cores).
        for vendor in ("kantata", "netsuite", "stripe"):
            firm.faults(vendor, {"kind": "latency", "seconds": 1.0, "endpoint": "*.create*"})
        env = {**sandbox_env(sb, key_file, postgres_url, retries=3), **RESYNC_ENV}
        env["O2C_RESYNC__LEASE_SECONDS"] = "300"  # a live worker's claim is never taken over
        with (tmp_path / "a").open("w") as a, (tmp_path / "b").open("w") as b:
            procs = [
                subprocess.Popen(
                    [sys.executable, "-m", "o2c.cli", "resync", "run"], env=env, stdout=out,
                    stderr=subprocess.STDOUT,
                )
                for out in (a, b)
            ]  # fmt: skip
            codes = [p.wait(timeout=300) for p in procs]
        assert codes == [0, 0], (tmp_path / "a").read_text() + (tmp_path / "b").read_text()
        # A request is claimed by one process: the other sees it held (or done) and skips it.
        if not firm.open_truth().is_empty():
            run_or_kill(env, firm.db, False, random.Random(0), tmp_path / "c")
        assert firm.open_truth().is_empty()
        assert vendor_duplicates(firm) == {"kantata": 0, "netsuite": 0, "stripe": 0}

    try:
        with firm.db.begin() as conn:
            requests = store.read_resync_requests(conn)
            attempts = store.read_resync_attempts(conn)
    finally:
        firm.db.dispose()  # a failure here must not leave connections for the next test
    assert requests.height == injected.height
    assert attempts.group_by("request_id").len()["len"].max() == 1
    assert attempts["worker"].n_unique() == 2  # both processes did work
