"""Every Prometheus metric of the collector, declared once, on a registry the caller may inject.

Labels are bounded sets only: ``system`` (four vendors), ``stream`` (a handful per vendor), ``kind``
(error kinds) and ``status`` (cycle outcomes). A record, run or transaction id never becomes a
label: per-record detail lives in the store (probe_runs, quarantine), aggregates live here.

Freshness comes from the store, not from this process's memory: ``o2c_probe_last_success_timestamp_seconds``
is computed at scrape time from ``probe_runs`` (style: a custom collector over stored state), so it
is right whichever collector process ran the cycle, and survives restarts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric

log = logging.getLogger(__name__)

# Cycles run from well under a second (an incremental poll with nothing new) to many minutes (a
# first full sync of a large estate); the default buckets stop at 10 s.
CYCLE_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)


class CollectorMetrics:
    """The collector's instruments. Tests pass a private ``CollectorRegistry()``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.cycles = Counter(
            "o2c_probe_cycles_total",
            "Probe cycles finished, by outcome (succeeded, partial, failed, skipped).",
            ["system", "stream", "status"],
            registry=r,
        )
        self.cycle_duration = Histogram(
            "o2c_probe_cycle_duration_seconds",
            "Wall time of one probe cycle: cursor read, every page fetched and written.",
            ["system", "stream"],
            buckets=CYCLE_BUCKETS,
            registry=r,
        )
        self.records_ingested = Counter(
            "o2c_probe_records_ingested_total",
            "Valid records read from a source and handed to the store (new, changed or unchanged).",
            ["system", "stream"],
            registry=r,
        )
        self.records_written = Counter(
            "o2c_probe_records_written_total",
            "Records the store inserted or changed (a re-read identical version is not counted).",
            ["system", "stream"],
            registry=r,
        )
        self.records_quarantined = Counter(
            "o2c_probe_records_quarantined_total",
            "Records that failed validation and were kept in quarantine with their reason.",
            ["system", "stream"],
            registry=r,
        )
        self.pages = Counter(
            "o2c_probe_pages_total",
            "Pages written to the store, each in one transaction with its cursor.",
            ["system", "stream"],
            registry=r,
        )
        self.errors = Counter(
            "o2c_probe_errors_total",
            "Cycles that ended in an error, by error kind (timeout, auth, response, rate_limit, store, ...).",
            ["system", "stream", "kind"],
            registry=r,
        )
        self.quota_used = Gauge(
            "o2c_probe_quota_used_ratio",
            "Share of the vendor's API quota used, as last reported by the vendor (0-1).",
            ["system"],
            registry=r,
        )
        self.completeness_mismatch = Gauge(
            "o2c_completeness_mismatch_records",
            "Source count minus store count at the last completeness check (0 = complete).",
            ["system", "stream"],
            registry=r,
        )
        self.completeness_last_check = Gauge(
            "o2c_completeness_last_check_timestamp_seconds",
            "When the completeness of a stream was last checked successfully.",
            ["system", "stream"],
            registry=r,
        )
        self.completeness_findings = Gauge(
            "o2c_completeness_findings",
            "Streams whose last completeness check failed or disagreed with the source (engine health).",
            ["system"],
            registry=r,
        )

    def observe_freshness(self, read: Callable[[], Mapping[tuple[str, str], datetime]]) -> None:
        """Export the last successful cycle per stream, read from the store at every scrape."""
        self.registry.register(_LastSuccessCollector(read))


class _LastSuccessCollector:
    """``o2c_probe_last_success_timestamp_seconds`` from stored probe runs, at scrape time."""

    name = "o2c_probe_last_success_timestamp_seconds"

    def __init__(self, read: Callable[[], Mapping[tuple[str, str], datetime]]) -> None:
        self._read = read

    def describe(self) -> Iterator[Metric]:
        # Declaring the family without reading the store keeps registration free of I/O.
        yield GaugeMetricFamily(self.name, self._help(), labels=["system", "stream"])

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(self.name, self._help(), labels=["system", "stream"])
        try:
            rows = self._read()
        except Exception:  # telemetry never breaks anything: a scrape without the series is fine
            log.warning("could not read probe freshness from the store", exc_info=True)
            rows = {}
        for (system, stream), at in sorted(rows.items()):
            family.add_metric([system, stream], at.timestamp())
        yield family

    @staticmethod
    def _help() -> str:
        return "Unix time the last fully successful probe cycle of a stream finished (any process)."
