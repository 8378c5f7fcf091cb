"""The Prometheus exporter: a custom collector that reads the latest reconcile snapshot at scrape time.

Nothing here is a gauge someone must remember to set (style: client_python's gc_collector). Each
scrape reads, in one read transaction, the latest succeeded reconcile run with its KPI snapshot
rows (the reconciler aggregated everything at reconcile time: histogram buckets, open breaks by
type / severity / legal entity / system, stuck deals by stage), run counts by status, one row
per system of probe health and, when the resync tables exist, resync outcomes and circuit
states. The cost of a scrape therefore does not grow with the estate.

A failure to read the store never fails the scrape: it is logged, ``o2c_exporter_store_up`` is 0
and the store-derived series are absent.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from dataclasses import astuple

import polars as pl
from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.samples import Exemplar

import store
from alerts._catalogue import BY_NAME, METRICS, MetricSpec
from reconciler import Systems
from reconciler.resync import ResyncCollector

log = logging.getLogger(__name__)

OWN: tuple[MetricSpec, ...] = tuple(m for m in METRICS if m.source == "alerts")
"""The metrics O2CCollector itself produces (the resync ones come from ResyncCollector)."""

# snapshot KPI name -> (histogram metric, the dimension key that becomes its label, label name)
_HISTOGRAMS: dict[str, tuple[str, str | None, str | None]] = {
    "project_setup_cycle_time": (
        "o2c_project_setup_cycle_time_seconds", "legal_entity", "legal_entity"),
    "billing_lag": ("o2c_billing_lag_seconds", "kind", "kind"),
    "time_to_cash": ("o2c_time_to_cash_seconds", None, None),
}  # fmt: skip
_DSO = {"dso_days": "standard", "best_possible_dso_days": "best_possible",
        "dso_countback_days": "countback"}  # fmt: skip
_MONEY = {
    "ar_total_minor": "o2c_receivables_amount",
    "bookings_minor": "o2c_bookings_amount",
    "billings_minor": "o2c_billings_amount",
    "backlog_minor": "o2c_backlog_amount",
}
_RATIOS = {
    "bookings_to_billings_ratio": "o2c_bookings_to_billings_ratio",
    "invoice_accuracy_ratio": "o2c_invoice_accuracy_ratio",
}


def dimension(text: str) -> dict[str, str]:
    """``"a=1,b=2"`` -> ``{"a": "1", "b": "2"}``; ``"all"`` -> ``{}``."""
    if text == "all":
        return {}
    pairs = (part.partition("=") for part in text.split(","))
    return {k: v for k, _, v in pairs if k}


def _family(spec: MetricSpec) -> Metric:
    if spec.kind == "counter":
        return CounterMetricFamily(spec.family, spec.help, labels=spec.labels)
    if spec.kind == "histogram":
        return HistogramMetricFamily(spec.name, spec.help, labels=spec.labels)
    return GaugeMetricFamily(spec.name, spec.help, labels=spec.labels)


def _go_float(bound: float) -> str:
    """A bucket bound as Prometheus writes it (``+Inf``, ``3600.0``)."""
    return "+Inf" if math.isinf(bound) else repr(float(bound))


def _major(value_minor: int | None, currency: str | None) -> float | None:
    if value_minor is None or currency is None:
        return None
    scale: int = 10 ** store.currency_exponent(currency)
    return value_minor / scale


class _Families:
    """The families of one scrape, keyed by metric name, filled in any order."""

    def __init__(self) -> None:
        self.by_name: dict[str, Metric] = {m.name: _family(m) for m in OWN}

    def gauge(self, name: str, value: float | None, labels: dict[str, str] | None = None) -> None:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return
        spec = BY_NAME[name]
        family = self.by_name[name]
        values = [(labels or {})[k] for k in spec.labels]
        assert isinstance(family, GaugeMetricFamily | CounterMetricFamily)
        family.add_metric(values, float(value))

    def counter(
        self, name: str, value: float, labels: dict[str, str], exemplar: Exemplar | None = None
    ) -> None:
        family = self.by_name[name]
        assert isinstance(family, CounterMetricFamily)
        family.add_metric([labels[k] for k in BY_NAME[name].labels], value, exemplar=exemplar)


class O2CCollector:
    """Exports the store's latest reconcile snapshot, probe health and resyncs at scrape time.

    Register it on the registry the process serves: ``registry.register(O2CCollector(db))``.
    """

    def __init__(self, db: store.Store) -> None:
        self._db = db

    def describe(self) -> Iterator[Metric]:
        # Declaring the families without reading the store keeps registration free of I/O.
        for spec in OWN:
            yield _family(spec)

    def collect(self) -> Iterator[Metric]:
        started = time.perf_counter()
        families = _Families()
        try:
            with self._db.begin() as conn:
                snapshot = store.read_latest_snapshot(conn)
                health = store.read_source_health(conn)
            _snapshot_metrics(families, snapshot)
            _source_metrics(families, health)
            up = 1.0
        except Exception:  # telemetry never breaks anything: the scrape says the store is down
            log.warning("exporter could not read the store", exc_info=True)
            families = _Families()
            up = 0.0
        families.gauge("o2c_exporter_store_up", up)
        families.gauge("o2c_exporter_scrape_duration_seconds", time.perf_counter() - started)
        yield from families.by_name.values()


def _snapshot_metrics(f: _Families, snapshot: store.Snapshot) -> None:
    for status, n in sorted(snapshot.runs_by_status.items()):
        exemplar = None
        if status == "succeeded":
            trace = snapshot.kpis.filter(pl.col("kpi") == "reconcile_trace")
            if trace.height:
                trace_id = dimension(trace["dimension"][0]).get("trace_id")
                exemplar = Exemplar({"trace_id": trace_id}, float(n)) if trace_id else None
        f.counter("o2c_reconcile_runs_total", float(n), {"status": status}, exemplar)
    run = snapshot.run
    if run is None:
        return
    if run.finished_at is not None:
        f.gauge("o2c_reconcile_last_success_timestamp_seconds", run.finished_at.timestamp())
        f.gauge(
            "o2c_reconcile_last_duration_seconds",
            (run.finished_at - run.started_at).total_seconds(),
        )
    f.gauge("o2c_reconcile_as_of_timestamp_seconds", run.as_of.timestamp())

    buckets: dict[tuple[str, tuple[str, ...]], list[tuple[float, float]]] = {}
    sums: dict[tuple[str, tuple[str, ...]], float] = {}
    for kpi, dim, value, value_minor, _unit, currency in snapshot.kpis.iter_rows():
        d = dimension(dim)
        if kpi in _DSO and value is not None:
            f.gauge("o2c_dso_seconds", value * 86_400, {"method": _DSO[kpi]})
        elif kpi in _MONEY and not d:
            f.gauge(_MONEY[kpi], _major(value_minor, currency), {"currency": currency or ""})
        elif kpi == "ar_ageing_minor":
            labels = {"bucket": d.get("bucket", ""), "currency": currency or ""}
            f.gauge("o2c_receivables_ageing_amount", _major(value_minor, currency), labels)
        elif kpi == "revenue_leakage_minor" and "type" in d:
            labels = {"break_type": d["type"], "currency": currency or ""}
            f.gauge("o2c_revenue_leakage_amount", _major(value_minor, currency), labels)
        elif kpi in _RATIOS:
            f.gauge(_RATIOS[kpi], value)
        elif kpi == "fx_missing_amounts_count":
            f.gauge("o2c_fx_missing_amounts", value)
        elif kpi == "open_breaks_detail_count":
            f.gauge("o2c_breaks_open", value, d)
        elif kpi == "open_breaks_by_system_count":
            f.gauge("o2c_breaks_open_by_system", value, d)
        elif kpi == "open_breaks_amount_minor" and "type" in d:
            labels = {"break_type": d["type"], "currency": currency or ""}
            f.gauge("o2c_breaks_open_amount", _major(value_minor, currency), labels)
        elif kpi == "open_breaks_sla_breached_count":
            f.gauge("o2c_breaks_sla_breached", value, {"break_type": d.get("type", "")})
        elif kpi == "open_breaks_oldest_since":
            f.gauge("o2c_breaks_oldest_open_timestamp_seconds", value,
                    {"break_type": d.get("type", "")})  # fmt: skip
        elif kpi == "resolutions_count":
            kind = d.get("kind", "")
            if kind == "accepted":
                f.gauge("o2c_breaks_accepted", value)
            else:
                f.gauge("o2c_breaks_resolved_last_run", value, {"kind": kind})
        elif kpi == "stuck_transactions_count":
            f.gauge("o2c_transactions_stuck", value, {"stage": d.get("stage", "")})
        elif kpi == "stuck_transactions_oldest_since":
            f.gauge("o2c_transactions_stuck_oldest_timestamp_seconds", value,
                    {"stage": d.get("stage", "")})  # fmt: skip
        elif kpi.endswith(("_seconds_bucket", "_seconds_sum")) and value is not None:
            base, _, part = kpi.rpartition("_seconds_")
            if base not in _HISTOGRAMS:
                continue
            _, key, _label = _HISTOGRAMS[base]
            group = (base, (d.get(key, "none"),) if key else ())
            if part == "bucket":
                le = d.get("le", "+Inf")
                buckets.setdefault(group, []).append((float(le), value))
            else:
                sums[group] = value
    for (base, label_values), bounds in sorted(buckets.items()):
        name = _HISTOGRAMS[base][0]
        family = f.by_name[name]
        assert isinstance(family, HistogramMetricFamily)
        ordered = sorted(bounds)
        family.add_metric(
            list(label_values),
            [(_go_float(le), count) for le, count in ordered],
            sums.get((base, label_values), 0.0),
        )


def _source_metrics(f: _Families, health: pl.DataFrame) -> None:
    for system, attempt, success, failure in health.iter_rows():
        labels = {"system": system}
        f.gauge("o2c_source_last_attempt_timestamp_seconds", attempt.timestamp(), labels)
        if success is not None:
            f.gauge("o2c_source_last_success_timestamp_seconds", success.timestamp(), labels)
        if failure is not None:
            f.gauge("o2c_source_last_failure_timestamp_seconds", failure.timestamp(), labels)
        failing = failure is not None and (success is None or failure > success)
        f.gauge("o2c_source_failing", 1.0 if failing else 0.0, labels)


def register_exporter(
    registry: CollectorRegistry, db: store.Store, *, systems: Systems | None = None
) -> O2CCollector:
    """Add the store-derived metrics to ``registry`` (the one the long-running process serves
    on /metrics): this exporter and the resync collector, every circuit of ``systems`` shown."""
    collector = O2CCollector(db)
    registry.register(collector)
    registry.register(ResyncCollector(db, systems=astuple(systems or Systems())))
    return collector
