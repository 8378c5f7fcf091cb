"""Benchmark: a full sync of a scale-10 sandbox into an empty store, end to end, per backend.

Run: .venv/bin/python bench/ingest.py [--scale 10] [--backend sqlite|postgresql] [--processes N]
     [--verify]   (then the store must equal the vendors' data: counts and sums per object)
Target on a 2-core machine: >= 20,000 records/s end to end (HTTP over loopback, vendor JSON
mapped to canonical frames, written with cursors), on SQLite and on PostgreSQL.

The sandbox runs in a child process (`python -m sandbox.server`) so that the simulators' CPU is
not counted against the collector's interpreter. The collector is the production wiring (the
settings an operator would write, `o2c.collect.build_collector`, every stream of the four
systems). On PostgreSQL, ``--processes N`` runs N collector processes on the one store, as a
deployment that outgrows one process would (streams are shared out by their advisory locks).
PostgreSQL is 127.0.0.1:5432 (user postgres) unless O2C_BENCH_POSTGRES_URL says otherwise; the
benchmark creates and drops its own database.

Prints wall seconds and records/s, the slowest streams, and CPU seconds of the collector
process and of the sandbox child with the load average: on a shared machine wall seconds grow
with everyone else's work, CPU seconds much less, so compare changes by CPU.

Measured 2026-12-02 04:35-04:44 UTC on this machine idle (no other work; load average 1 to 4.5,
the collector's threads and the sandbox child being the load), one collector process:
scale 10 (5,731,311 records), SQLite: 265.9 s = 21,551 records/s; collector CPU 260.3 s
(22,018 records per CPU-s), sandbox CPU 134.5 s; --verify: 14/14 pairs equal.
PostgreSQL: 260.5 s = 22,003 records/s; collector CPU 214.4 s (26,732 records per CPU-s),
sandbox CPU 133.3 s; --verify: 14/14 pairs equal. Both meet the target. The wall time is
Kantata's time entries (2.8 million records in 200-record pages, 260-266 s): every other
stream finishes while it runs. Scale 1 (560,758 records), SQLite, idle, under py-spy: 22.8 s =
24,607 records/s.

Earlier, on the same machine shared with four other engineers' test runs (load average mostly 10
to 18), which inflates wall and CPU figures alike:
scale 10 (5,731,311 records), SQLite: 744.6 s = 7,697 records/s; collector CPU 440.9 s
(12,998 records per CPU-s), sandbox CPU 224.3 s, load 10.5; --verify: 14/14 pairs equal.
PostgreSQL (right after, load falling from 10 to 3): 581.9 s = 9,850 records/s; collector CPU
419.7 s (13,656 records per CPU-s), sandbox CPU 210.5 s; --verify: 14/14 pairs equal.
scale 1 (560,758 records), SQLite, the code before and after this round run back to back under
the same load (13 to 18): before 108.0 s and 169.4 s wall, collector CPU 47.4 s and 53.0 s;
after 140.8 s and 113.1 s wall, collector CPU 39.7 s and 32.5 s (-16 % and -39 %); with a
system's streams two at a time as well, 82.5 s = 6,796 records/s (CPU 39.3 s, load 12).
Earlier (2026-11-27, load not recorded): scale 10 SQLite 962.6 s = 5,954/s, PostgreSQL
709.2 s = 8,081/s.
Below the target under that load. Where the collector's CPU went at scale 1 (py-spy, GIL held): the store's
upserts about 40 % (store/_upsert.py, store/_bulk.py: per transaction and per row), HTTP and
JSON decoding about 20 % (httpx and orjson per request), mapping about 12 % (probes/_mapping.py,
now columns in bulk and one polars query per page). The long pole is Kantata's time entries
(200-record pages, 2.8 million records at scale 10), now read with 4 pages in flight.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

import store

# Python puts this script's folder first on sys.path, where bench/sandbox.py would shadow the
# sandbox package; the project's packages are imported from the project root instead.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

ChildSandbox = Any


def vendor_settings(sb: ChildSandbox, key_file: Path) -> dict[str, dict[str, Any]]:
    from o2c.demo import vendor_overrides

    return dict(vendor_overrides(sb.urls, sb.info["credentials"], sb.ca_file, key_file))


COLLECTOR = {"cycle_timeout_seconds": 7200, "request_timeout_seconds": 120}


def one_process(settings: Any, db: store.Store) -> list[Any]:
    from o2c import collect as wiring

    collector = wiring.build_collector(settings, db)

    async def once() -> list[Any]:
        try:
            return await collector.run_once()
        finally:
            await collector.aclose()

    try:
        return asyncio.run(once())
    finally:
        if collector.ownership is not None:
            collector.ownership.close()


def env_for(sb: ChildSandbox, key_file: Path, url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("O2C_")}
    env["O2C_DATABASE_URL"] = url
    for vendor, values in vendor_settings(sb, key_file).items():
        for key, value in values.items():
            env[f"O2C_{vendor.upper()}__{key.upper()}"] = str(value)
    for key, value in COLLECTOR.items():
        env[f"O2C_COLLECTOR__{key.upper()}"] = str(value)
    return env


def verify(db: store.Store, scale: float, seed: int) -> None:
    """The store equals the vendors' data: counts and amount sums per object and system.

    The same seed and scale generate the same firm (the sandbox's determinism promise), so the
    expected figures come from a second, in-process copy of the estate.
    """
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from sandbox.estate import Estate
    from tests.collector.conftest import source_totals, store_totals

    expected = source_totals(Estate.generate(seed=seed, scale=scale))
    actual = store_totals(db)
    wrong = {k: (expected[k], actual[k]) for k in expected if expected[k] != actual[k]}
    print(f"verify: {len(expected) - len(wrong)}/{len(expected)} (system, object) pairs equal")
    assert not wrong, wrong


def child_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc; 0.0 where unreadable)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_backend(
    name: str,
    url: str,
    sb: ChildSandbox,
    key_file: Path,
    processes: int,
    check: tuple[float, int] | None = None,
) -> float:
    engine = store.create_store_engine(url)
    store.upgrade(engine)
    engine.dispose()
    db = store.Store(url)
    sandbox_cpu = child_cpu_seconds(sb.process.pid)
    started, cpu, children = time.perf_counter(), time.process_time(), _children_cpu()
    if processes == 1:
        from o2c.settings import Settings

        settings = Settings(database_url=url, collector=COLLECTOR, **vendor_settings(sb, key_file))
        results = one_process(settings, db)
        failed = [r for r in results if r.status != "succeeded"]
        assert not failed, failed
        slowest = sorted(results, key=lambda r: -r.duration_seconds)[:4]
        streams = ", ".join(
            f"{r.system}/{r.stream} {r.duration_seconds:.0f} s ({r.records_read:,})"
            for r in slowest
        )
    else:
        env = env_for(sb, key_file, url)
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "o2c.cli", "collect", "--once"],
                env=env,
                stdout=subprocess.DEVNULL,
            )
            for _ in range(processes)
        ]
        assert all(p.wait() == 0 for p in procs)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    sandbox_cpu = child_cpu_seconds(sb.process.pid) - sandbox_cpu
    load = os.getloadavg()
    counts = {entity: db.count(entity) for entity in store.ENTITIES}
    records = sum(counts.values())
    per_system: dict[str, int] = defaultdict(int)
    for run in db.list_probe_runs(limit=1000):
        per_system[run.source_system] += run.records_read
    rate = records / wall
    print(
        f"{name:<11} {processes} process(es)  {records:>10,} records  {wall:7.1f} s  "
        f"{rate:>9,.0f} records/s  (read per system: {dict(per_system)})",
        flush=True,
    )
    if processes == 1:
        print(f"{'':<11} slowest streams: {streams}", flush=True)
    # CPU seconds do not grow with other work on the machine; wall seconds do.
    collector_cpu = "collector CPU (child processes)" if processes > 1 else "collector CPU"
    if processes > 1:
        cpu = _children_cpu() - children
    print(
        f"{'':<11} {collector_cpu} {cpu:.1f} s = {records / cpu:,.0f} records/CPU-s; "
        f"sandbox CPU {sandbox_cpu:.1f} s; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
        flush=True,
    )
    if check is not None:
        verify(db, *check)
    db.dispose()
    return rate


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--scale", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], action="append")
    parser.add_argument("--processes", type=int, default=1, help="collector processes (PostgreSQL)")
    parser.add_argument(
        "--verify", action="store_true", help="then check counts and sums against the export"
    )
    args = parser.parse_args()
    backends = args.backend or ["sqlite", "postgresql"]
    from sandbox.server import spawn

    check = (args.scale, args.seed) if args.verify else None

    with tempfile.TemporaryDirectory() as tmp:
        key_file = Path(tmp) / "netsuite.pem"
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        t0 = time.perf_counter()
        with spawn(scale=args.scale, seed=args.seed, timeout=1800) as sb:
            print(f"sandbox scale {args.scale} up in {time.perf_counter() - t0:.0f} s", flush=True)
            if "sqlite" in backends:
                bench_backend(
                    "sqlite", f"sqlite:///{Path(tmp) / 'bench.sqlite3'}", sb, key_file, 1, check
                )
            if "postgresql" in backends:
                admin_url = os.environ.get(
                    "O2C_BENCH_POSTGRES_URL",
                    "postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
                )
                admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
                name = f"o2c_bench_{uuid.uuid4().hex[:8]}"
                with admin.connect() as conn:
                    conn.execute(text(f'CREATE DATABASE "{name}"'))
                try:
                    url = (
                        make_url(admin_url).set(database=name).render_as_string(hide_password=False)
                    )
                    bench_backend("postgresql", url, sb, key_file, args.processes, check)
                finally:
                    with admin.connect() as conn:
                        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                    admin.dispose()


if __name__ == "__main__":
    main()
