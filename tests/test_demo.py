"""`o2c demo` end to end: one command brings up everything, shows KPIs, breaks and automatic
resyncs, stops cleanly on Ctrl-C with no process left behind, and a restart continues."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import httpx
import polars as pl
import pytest

import store
from dashboards.service import User, executive, read_register, resyncs
from dashboards.service._auth import Role

T = TypeVar("T")
SCALE = "0.05"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (read from /proc: children of children too)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry.name)] = int(fields[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


def _until(
    what: str, check: Callable[[], T | None], proc: subprocess.Popen[str], within: float
) -> T:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            _out, err = proc.communicate()
            raise AssertionError(
                f"o2c demo exited ({proc.returncode}) before {what}:\n{err[-3000:]}"
            )
        try:
            found = check()
        except (httpx.HTTPError, store.StoreError):
            found = None
        if found is not None:
            return found
        time.sleep(1.0)
    raise AssertionError(f"no {what} within {within:.0f} s")


def _start(cwd: Path, ports: dict[str, int]) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("O2C_")}
    env["COLUMNS"] = "200"
    return subprocess.Popen(
        [sys.executable, "-m", "o2c.cli", "demo", "--scale", SCALE,
         "--metrics-port", str(ports["metrics"]), "--console-port", str(ports["console"])],
        cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,  # a process group of its own, as a terminal gives a command
    )  # fmt: skip


def _stop(proc: subprocess.Popen[str]) -> tuple[str, str, set[int]]:
    children = _descendants(proc.pid)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C sends: to the terminal's process group
    out, err = proc.communicate(timeout=90)
    return out, err, children


@pytest.mark.slow
def test_demo_shows_kpis_breaks_and_automatic_resyncs_then_stops_cleanly_and_resumes(
    tmp_path: Path,
) -> None:
    ports = {"metrics": _free_port(), "console": _free_port()}
    metrics_url = f"http://127.0.0.1:{ports['metrics']}/metrics"
    console_url = f"http://127.0.0.1:{ports['console']}"
    proc = _start(tmp_path, ports)
    try:
        _until("console health", lambda: httpx.get(f"{console_url}/_stcore/health").text == "ok",
               proc, 120)  # fmt: skip

        def scrape() -> str | None:
            text = httpx.get(metrics_url).text
            return text if "o2c_breaks_open{" in text else None

        body = _until("KPIs and open breaks in /metrics", scrape, proc, 180)
        db = store.Store(f"sqlite:///{tmp_path / 'data' / 'o2c.sqlite3'}")
        viewer = User("e2e", Role.VIEWER, "local")

        def open_breaks() -> pl.DataFrame | None:
            register = read_register(db, viewer).filter(pl.col("status") != "resolved")
            return None if register.is_empty() else register

        def automatic_resyncs() -> pl.DataFrame | None:
            done = resyncs(db, viewer).recent.filter(
                (pl.col("requested_by") == "policy") & (pl.col("status") == "succeeded")
            )
            return None if done.is_empty() else done

        kpis = _until("KPIs", lambda: executive(db, viewer).as_of, proc, 60)
        register = _until("breaks in the queue", open_breaks, proc, 60)
        automatic = _until("an automatic resync that succeeded", automatic_resyncs, proc, 180)
        audit = resyncs(db, viewer).audit
        db.dispose()
    finally:
        out, _err, children = _stop(proc)

    assert proc.returncode == 0
    assert "demo stopped" in out
    assert children, "the demo runs the sandbox and the console as children"
    assert [pid for pid in children if _alive(pid)] == []
    assert "o2c_dso_seconds{" in body and "o2c_breaks_open{" in body
    assert kpis is not None and register.height > 0 and automatic.height > 0
    # every automatic request's vendor calls and outcome are in the audit
    assert set(automatic.get_column("id")) <= set(audit.get_column("request_id").drop_nulls())
    state = json.loads((tmp_path / "data" / "demo" / "state.json").read_text())
    assert state["advanced_seconds"] > 0

    # A restart continues from the stored state: the clock resumes, the store keeps growing.
    # The last run is read once the first demo has stopped: read before, a run the demo opened
    # on its way out counted as the restart's, and the restart was stopped while still starting.
    db = store.Store(f"sqlite:///{tmp_path / 'data' / 'o2c.sqlite3'}")
    runs_before = db.list_probe_runs(limit=1)[0].id
    db.dispose()
    proc = _start(tmp_path, ports)
    try:
        db = store.Store(f"sqlite:///{tmp_path / 'data' / 'o2c.sqlite3'}")
        _until("a new probe run after the restart",
               lambda: db.list_probe_runs(limit=1)[0].id > runs_before or None, proc, 120)  # fmt: skip
        db.dispose()
    finally:
        out, _err, children = _stop(proc)
    assert "resuming" in out
    assert proc.returncode == 0
    assert [pid for pid in children if _alive(pid)] == []
