"""Time estate generation, first materialisation, ground truth and export at given scales.

    python -m sandbox.estate.bench 1 10 40 [--export DIR] [--seed N]

Prints one JSON line per scale (seconds, row counts, peak RSS). bench/sandbox.py may import
`measure` instead of shelling out.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from sandbox.estate._estate import Estate
from sandbox.estate.schema import SCHEMAS


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(scale: float, seed: int = 1, export_dir: Path | None = None) -> dict[str, Any]:
    """Generate at `scale` and time each stage; optionally time an export into `export_dir`."""
    c0 = _cpu()
    t0 = time.perf_counter()
    estate = Estate.generate(seed, scale)
    t1 = time.perf_counter()
    cpu = _cpu() - c0
    rows = {f"{v}.{o}": estate.frame(v, o).height for v in SCHEMAS for o in SCHEMAS[v]}
    t2 = time.perf_counter()
    truth = estate.ground_truth.height
    t3 = time.perf_counter()
    out: dict[str, Any] = {
        "scale": scale,
        "seed": seed,
        "generate_s": round(t1 - t0, 2),
        # CPU seconds (all threads): independent of other load on a shared machine
        "generate_cpu_s": round(cpu, 2),
        "materialise_s": round(t2 - t1, 2),
        "ground_truth_s": round(t3 - t2, 2),
        "rows_total": sum(rows.values()),
        "ground_truth_rows": truth,
        "rows": rows,
    }
    if export_dir is not None:
        t4 = time.perf_counter()
        estate.export(export_dir)
        out["export_s"] = round(time.perf_counter() - t4, 2)
        out["export_bytes"] = sum(p.stat().st_size for p in export_dir.rglob("*.json"))
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scales", nargs="+", type=float)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--export", action="store_true", help="also time an export (temp dir)")
    args = parser.parse_args(argv)
    for scale in args.scales:
        tmp = Path(tempfile.mkdtemp(prefix="estate-bench-")) if args.export else None
        try:
            result = measure(scale, args.seed, tmp)
        finally:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
        result.pop("rows")
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
