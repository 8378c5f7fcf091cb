"""Benchmark: the cost of one /metrics scrape of the o2c exporter, by estate size and backend.

Run: .venv/bin/python bench/scrape.py [--scales 1 10] [--backend sqlite postgresql] [--scrapes 50]
Target (issue 6): a scrape under 50 ms at scale 10, and the same at any estate size (the exporter
reads only the latest reconcile snapshot and a few aggregate rows, never the estate).

How the store is filled: one sandbox estate at ``--base-scale`` (0.1 by default) goes through the
real pipeline once (simulators on loopback -> probes -> collector -> store; cached as parquet under
``--cache`` by bench/reconcile.py's ``base_frames``); scale N is N / base-scale copies of its
canonical records with every id suffixed per copy, reconciled for real by ``run_reconcile`` with
the records in hand (the break register, transitions and KPI snapshot land in the store, which is
everything a scrape reads). Each scrape is an HTTP GET of /metrics served by prometheus-client's
server (as ``o2c collect`` serves it), after two warm-up scrapes.

Measured 2026-12-02 01:31 UTC on this 2-core machine while other agents kept its load average at
8-10 (an idle machine does better), base scale 0.1, 50 scrapes each, HTTP GET of /metrics:

    scale  backend     breaks  series   median      p95
        1  sqlite       7,450     295   13.3 ms   68.9 ms
       10  sqlite      74,500     295   16.5 ms   65.1 ms
        1  postgresql   7,450     295   20.1 ms  103.9 ms
       10  postgresql  74,500     295   28.3 ms   63.4 ms

The median meets the target and does not grow with the estate (same series, same rows read); the
p95 is the machine's load (the store reads themselves take about 2 ms).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import polars as pl
from prometheus_client import CollectorRegistry, start_http_server
from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from reconcile import base_frames, copy_of, postgres_database  # bench/reconcile.py

import alerts
import store
from reconciler import Canonical, run_reconcile


def fill(url: str, frames: dict[str, pl.DataFrame], copies: int, now: datetime) -> int:
    """Reconcile ``copies`` copies of the estate into the store at ``url``; the break count."""
    engine = store.create_store_engine(url)
    store.upgrade(engine)
    engine.dispose()
    data = {n: pl.concat([copy_of(n, f, k) for k in range(copies)]) for n, f in frames.items()}
    db = store.Store(url)
    try:
        with db.begin() as conn:
            health = store.read_probe_health(conn, as_of=datetime.now(UTC))
        report = run_reconcile(db, as_of=now, data=Canonical.from_frames(data, health))
        return report.result.breaks.height
    finally:
        db.dispose()


def measure(url: str, scrapes: int) -> tuple[list[float], int]:
    """Seconds of each scrape over HTTP, and the series count of the last one."""
    db = store.Store(url)
    registry = CollectorRegistry()
    alerts.register_exporter(registry, db)
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    metrics = f"http://127.0.0.1:{server.server_port}/metrics"
    times = []
    try:
        with httpx.Client(timeout=30) as client:
            for _ in range(2):
                client.get(metrics).raise_for_status()
            for _ in range(scrapes):
                started = time.perf_counter()
                body = client.get(metrics).raise_for_status().text
                times.append(time.perf_counter() - started)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        db.dispose()
    series = sum(1 for line in body.splitlines() if line and not line.startswith("#"))
    return times, series


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", type=float, nargs="+", default=[1, 10])
    parser.add_argument("--base-scale", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--backend", nargs="+", choices=("sqlite", "postgresql"), default=["sqlite", "postgresql"]
    )
    parser.add_argument("--scrapes", type=int, default=50)
    parser.add_argument("--cache", type=Path, default=Path("data/bench-cache"))
    args = parser.parse_args()

    frames, now = base_frames(args.base_scale, args.seed, args.cache)
    print(f"{'scale':>5}  {'backend':<10} {'breaks':>7} {'series':>7} {'median':>8} {'p95':>8}")
    for backend in args.backend:
        for scale in args.scales:
            copies = max(1, round(scale / args.base_scale))
            with tempfile.TemporaryDirectory() as tmp:
                admin_url = None
                if backend == "sqlite":
                    url = f"sqlite:///{tmp}/scrape.sqlite3"
                else:
                    admin_url, url = postgres_database()
                try:
                    breaks = fill(url, frames, copies, now)
                    times, series = measure(url, args.scrapes)
                finally:
                    if admin_url is not None:
                        admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
                        name = url.rsplit("/", 1)[1]
                        with admin.connect() as conn:
                            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                        admin.dispose()
            p95 = statistics.quantiles(times, n=20)[-1]
            print(f"{scale:>5g}  {backend:<10} {breaks:>7,} {series:>7,} "
                  f"{statistics.median(times) * 1000:>6.1f} ms {p95 * 1000:>6.1f} ms", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
