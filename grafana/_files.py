"""The committed dashboard files: which dashboards exist, how their JSON is written and checked."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from grafana._dashboards import executive, on_call, pipeline

HERE = Path(__file__).resolve().parent
DASHBOARDS_DIR = HERE / "dashboards"
"""Where the generated dashboard JSON is committed (the provider in PROVISIONING_DIR loads it)."""
PROVISIONING_DIR = HERE / "provisioning"
"""Grafana provisioning: ``datasources/`` and ``dashboards/`` YAML."""

DASHBOARDS: dict[str, Callable[[], dict[str, Any]]] = {
    "o2c-executive.json": executive,
    "o2c-on-call.json": on_call,
    "o2c-pipeline.json": pipeline,
}
"""File name -> the function that builds its dashboard (the file name is the dashboard uid)."""


def build_dashboards() -> dict[str, dict[str, Any]]:
    """Every dashboard's JSON model, by file name."""
    return {name: build() for name, build in DASHBOARDS.items()}


def render(model: dict[str, Any]) -> str:
    """The text committed for a dashboard model: stable key order, two-space indent, final newline."""
    return json.dumps(model, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_dashboards(directory: Path = DASHBOARDS_DIR) -> list[Path]:
    """Write every dashboard into ``directory``; remove JSON files no dashboard generates."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, model in build_dashboards().items():
        path = directory / name
        path.write_text(render(model))
        written.append(path)
    for path in directory.glob("*.json"):
        if path.name not in DASHBOARDS:
            path.unlink()
    return written


def stale_dashboards(directory: Path = DASHBOARDS_DIR) -> list[str]:
    """File names in ``directory`` that differ from what the code generates, are missing or extra."""
    stale = []
    for name, model in build_dashboards().items():
        path = directory / name
        if not path.exists() or path.read_text() != render(model):
            stale.append(name)
    stale += sorted(p.name for p in directory.glob("*.json") if p.name not in DASHBOARDS)
    return stale
