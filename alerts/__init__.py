"""Alerts: the Prometheus exporter, alert rules and per-transaction stuck alerts to Alertmanager (issue 6).

Public surface:

- ``O2CCollector`` / ``register_exporter(registry, db)``: the custom collector that exports the
  latest reconcile snapshot, probe health and resyncs at scrape time; ``METRICS`` /
  ``METRIC_NAMES`` / ``SERIES_NAMES`` is its catalogue (what Grafana and the rules may use);
- ``push_stuck_alerts(db, alertmanager_url, console_url=...)``: one cycle of the direct alerts
  (firing stuck breaks, recently ended ones resolved); ``STUCK_BREAKS`` says which break types
  are stuck transactions and at which stage;
- ``RULES_DIR``: the Prometheus alerting rules (``alerts/rules/*.yml``); ``ALERTMANAGER_EXAMPLE``:
  an example Alertmanager configuration with grouping by stage and the source inhibition.
"""

from __future__ import annotations

from pathlib import Path

from alerts._catalogue import METRIC_NAMES, METRICS, SERIES_NAMES, MetricSpec
from alerts._exporter import O2CCollector, register_exporter
from alerts._stuck import (
    ALERTNAME,
    DATA_BREAK,
    ENGINE_HEALTH,
    SEVERITY,
    STUCK_BREAKS,
    PushReport,
    StuckBreak,
    build_alerts,
    involved_systems,
    push_stuck_alerts,
)

RULES_DIR = Path(__file__).resolve().parent / "rules"
"""The Prometheus alerting rule files (``*.yml``); their promtool unit tests are in ``tests/``."""

ALERTMANAGER_EXAMPLE = Path(__file__).resolve().parent / "alertmanager.yml"
"""An example Alertmanager configuration for these alerts."""

__all__ = [
    "ALERTMANAGER_EXAMPLE",
    "ALERTNAME",
    "DATA_BREAK",
    "ENGINE_HEALTH",
    "METRICS",
    "METRIC_NAMES",
    "RULES_DIR",
    "SERIES_NAMES",
    "SEVERITY",
    "STUCK_BREAKS",
    "MetricSpec",
    "O2CCollector",
    "PushReport",
    "StuckBreak",
    "build_alerts",
    "involved_systems",
    "push_stuck_alerts",
    "register_exporter",
]
