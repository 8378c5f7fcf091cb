"""Grafana dashboards as code: the o2c dashboards built with grafana-foundation-sdk, and their provisioning.

Public surface:

- ``DASHBOARDS``: file name -> the function that builds that dashboard's JSON model (executive
  KPIs, on-call, sources and pipeline health); ``build_dashboards()`` builds them all;
- ``render(model)``: the committed text of a model (sorted keys, two-space indent);
- ``write_dashboards(directory)`` / ``stale_dashboards(directory)``: regenerate the committed
  files, or name those that differ from what the code generates (``python -m grafana.generate``);
- ``DASHBOARDS_DIR`` (``grafana/dashboards/*.json``) and ``PROVISIONING_DIR`` (a Prometheus data
  source and a dashboard provider, ready to copy into Grafana's ``provisioning/``).
"""

from __future__ import annotations

from grafana._files import (
    DASHBOARDS,
    DASHBOARDS_DIR,
    PROVISIONING_DIR,
    build_dashboards,
    render,
    stale_dashboards,
    write_dashboards,
)

__all__ = [
    "DASHBOARDS",
    "DASHBOARDS_DIR",
    "PROVISIONING_DIR",
    "build_dashboards",
    "render",
    "stale_dashboards",
    "write_dashboards",
]
