"""Regenerate the committed dashboard JSON (``grafana/dashboards/``), or check that it is current.

Example:
    python -m grafana.generate            # rewrite grafana/dashboards/*.json
    python -m grafana.generate --check    # exit 1 naming the files that are out of date
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from grafana._files import DASHBOARDS_DIR, stale_dashboards, write_dashboards


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m grafana.generate",
        description="Regenerate the o2c Grafana dashboards from code.",
        epilog="Example: python -m grafana.generate --check",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 if a committed file differs from the code",
    )
    parser.add_argument("--dir", type=Path, default=DASHBOARDS_DIR,
                        help=f"where the JSON lives (default: {DASHBOARDS_DIR})")  # fmt: skip
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_dashboards(args.dir)
        for name in stale:
            print(f"out of date: {args.dir / name} (run python -m grafana.generate)")
        return 1 if stale else 0
    for path in write_dashboards(args.dir):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
