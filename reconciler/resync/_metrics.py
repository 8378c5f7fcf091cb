"""Resync metrics for Prometheus, computed from the store at scrape time (never a gauge to remember).

``o2c_resync_attempts_total{system,action,outcome}`` counts finished attempts;
``o2c_resync_requests{status}`` the requests in each status; ``o2c_resync_circuit_state{system,
state}`` is 1 for each system's current circuit state; ``o2c_resync_circuit_consecutive_failures
{system}`` its failure count. No break or request id is ever a label. A failing scrape is logged
and yields nothing: telemetry never breaks a job.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

import store
from store import REQUEST_STATUSES

log = logging.getLogger("reconciler.resync.metrics")

CIRCUIT_STATES = ("closed", "open", "half_open")


class ResyncCollector(Collector):
    """Register on a CollectorRegistry: ``registry.register(ResyncCollector(db, systems))``."""

    def __init__(self, db: store.Store, systems: Iterable[str] = ()) -> None:
        self.db = db
        self.systems = tuple(systems)
        """Systems reported even before their circuit was ever recorded (as closed)."""

    def describe(self) -> Iterable[Metric]:
        return []  # computed at scrape time: no describe-time store read

    def collect(self) -> Iterator[Metric]:
        try:
            with self.db.begin() as conn:
                outcomes = store.read_resync_outcomes(conn)
                circuits = store.read_circuit_states(conn)
                by_status = store.count_resync_requests(conn)
        except Exception:  # telemetry never breaks a job; the scrape just lacks these metrics
            log.exception("resync metrics: reading the store failed")
            return
        attempts = CounterMetricFamily(
            "o2c_resync_attempts",
            "Finished resync attempts by system, action and outcome.",
            labels=["system", "action", "outcome"],
        )
        for row in outcomes.iter_rows(named=True):
            attempts.add_metric([row["system"], row["action"], row["outcome"]], row["count"])
        yield attempts
        pending = GaugeMetricFamily(
            "o2c_resync_requests", "Resync requests by status.", labels=["status"]
        )
        for status in REQUEST_STATUSES:
            pending.add_metric([status], float(by_status.get(status, 0)))
        yield pending
        known = {r["system"]: r for r in circuits.iter_rows(named=True)}
        state = GaugeMetricFamily(
            "o2c_resync_circuit_state",
            "1 for the current circuit state of each system (closed, open, half_open).",
            labels=["system", "state"],
        )
        failures = GaugeMetricFamily(
            "o2c_resync_circuit_consecutive_failures",
            "Consecutive failed resync attempts on each system.",
            labels=["system"],
        )
        for system in sorted(set(self.systems) | set(known)):
            circuit: dict[str, Any] | None = known.get(system)
            current = circuit["state"] if circuit else "closed"
            for name in CIRCUIT_STATES:
                state.add_metric([system, name], 1.0 if name == current else 0.0)
            failures.add_metric([system], float(circuit["consecutive_failures"] if circuit else 0))
        yield state
        yield failures
