"""The metric catalogue: every metric the exporter declares, with its type, labels and meaning.

One place for Grafana (issue 9), the alert rules and the tests to read from. Label values are
bounded sets only: ``system`` (the four vendors), ``stage`` (chain stages), ``break_type`` (the
taxonomy), ``severity``, ``legal_entity`` (the firm's entities, ``none`` when a break has none),
``currency`` (the reporting currency), ``kind``, ``method``, ``bucket``, ``status``, ``state``,
``action``, ``outcome``. Never a record, deal, invoice, run or transaction id: those live in the
store, the console, the alerts' annotations and the exemplars.

Units: seconds for every duration (DSO too: Grafana shows days), Unix seconds for timestamps,
ratios 0-1. Money is exported in *major* units of the reporting currency as floats (the store
keeps exact integer minor units; a float is fine for a dashboard or an alert threshold).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["gauge", "counter", "histogram"]


@dataclass(frozen=True)
class MetricSpec:
    """One exported metric: its name as queried (counters end in ``_total``), type, help, labels."""

    name: str
    kind: Kind
    help: str
    labels: tuple[str, ...] = ()
    source: str = "alerts"
    """The collector that produces it: ``alerts`` (O2CCollector) or ``reconciler.resync``
    (ResyncCollector); ``register_exporter`` registers both."""

    @property
    def family(self) -> str:
        """The family name prometheus-client declares (a counter's without ``_total``)."""
        return self.name.removesuffix("_total") if self.kind == "counter" else self.name

    @property
    def series_names(self) -> tuple[str, ...]:
        """The sample names a scrape shows for this metric."""
        if self.kind == "histogram":
            return (f"{self.name}_bucket", f"{self.name}_sum", f"{self.name}_count")
        return (self.name,)


_SNAPSHOT = " From the latest reconcile snapshot."
_RESYNC = "reconciler.resync"

METRICS: tuple[MetricSpec, ...] = (
    # --- business KPIs (latest reconcile snapshot)
    MetricSpec("o2c_project_setup_cycle_time_seconds", "histogram",
               "Deal won to project active, per deal with both." + _SNAPSHOT, ("legal_entity",)),
    MetricSpec("o2c_billing_lag_seconds", "histogram",
               "Approved time (kind=time) or completed milestone (kind=milestone) to PSA invoice "
               "issued." + _SNAPSHOT, ("kind",)),
    MetricSpec("o2c_time_to_cash_seconds", "histogram",
               "ERP invoice issued to fully paid, per paid invoice." + _SNAPSHOT),
    MetricSpec("o2c_dso_seconds", "gauge",
               "Days sales outstanding in seconds: method=standard (AR / window sales per day), "
               "best_possible (current AR only), countback." + _SNAPSHOT, ("method",)),
    MetricSpec("o2c_receivables_amount", "gauge",
               "Open ERP receivables (AR), major units of the reporting currency." + _SNAPSHOT,
               ("currency",)),
    MetricSpec("o2c_receivables_ageing_amount", "gauge",
               "Open receivables by days past due (bucket=current, 1-30, 31-60, 61-90, >90), "
               "major units." + _SNAPSHOT, ("bucket", "currency")),
    MetricSpec("o2c_revenue_leakage_amount", "gauge",
               "Approved time and completed milestones not invoiced past their due date, major "
               "units." + _SNAPSHOT, ("break_type", "currency")),
    MetricSpec("o2c_bookings_amount", "gauge",
               "Deals won in the KPI window, major units." + _SNAPSHOT, ("currency",)),
    MetricSpec("o2c_billings_amount", "gauge",
               "ERP invoice totals issued in the KPI window (credit notes net), major units."
               + _SNAPSHOT, ("currency",)),
    MetricSpec("o2c_bookings_to_billings_ratio", "gauge",
               "Bookings / billings over the KPI window; above 1 the backlog grows." + _SNAPSHOT),
    MetricSpec("o2c_backlog_amount", "gauge",
               "Won deal value not yet billed, major units." + _SNAPSHOT, ("currency",)),
    MetricSpec("o2c_invoice_accuracy_ratio", "gauge",
               "Share of the window's ERP invoices without an amount or currency break."
               + _SNAPSHOT),
    MetricSpec("o2c_fx_missing_amounts", "gauge",
               "Amounts left out of money KPIs for want of an FX rate." + _SNAPSHOT),
    # --- breaks (latest reconcile snapshot, after the run's lifecycle; accepted ones excluded)
    MetricSpec("o2c_breaks_open", "gauge",
               "Open breaks (new, open, reopened) by type, severity and legal entity." + _SNAPSHOT,
               ("break_type", "severity", "legal_entity")),
    MetricSpec("o2c_breaks_open_by_system", "gauge",
               "Open breaks by a system they involve (a break involving two systems counts under "
               "each, so do not sum over system)." + _SNAPSHOT,
               ("system", "break_type", "severity")),
    MetricSpec("o2c_breaks_open_amount", "gauge",
               "Amount at risk of open breaks, major units of the reporting currency." + _SNAPSHOT,
               ("break_type", "currency")),
    MetricSpec("o2c_breaks_sla_breached", "gauge",
               "Open breaks older than their type's SLA in business days." + _SNAPSHOT,
               ("break_type",)),
    MetricSpec("o2c_breaks_oldest_open_timestamp_seconds", "gauge",
               "When the condition of the oldest open break of a type began (no series when "
               "none is open)." + _SNAPSHOT, ("break_type",)),
    MetricSpec("o2c_breaks_accepted", "gauge",
               "Breaks an operator accepted (with a note and an expiry)." + _SNAPSHOT),
    MetricSpec("o2c_breaks_resolved_last_run", "gauge",
               "Breaks the latest run resolved, by kind=automatic (auto-remediated type) or "
               "manual." + _SNAPSHOT, ("kind",)),
    # --- stuck transactions (deal chains)
    MetricSpec("o2c_transactions_stuck", "gauge",
               "Deals whose current chain stage is older than its stuck-after limit." + _SNAPSHOT,
               ("stage",)),
    MetricSpec("o2c_transactions_stuck_oldest_timestamp_seconds", "gauge",
               "When the oldest stuck deal of a stage entered it (no series when none is stuck)."
               + _SNAPSHOT, ("stage",)),
    # --- the reconciler itself
    MetricSpec("o2c_reconcile_last_success_timestamp_seconds", "gauge",
               "When the latest succeeded reconcile run finished."),
    MetricSpec("o2c_reconcile_as_of_timestamp_seconds", "gauge",
               "The as-of time the latest succeeded reconcile run measured at."),
    MetricSpec("o2c_reconcile_last_duration_seconds", "gauge",
               "Wall time of the latest succeeded reconcile run (load, compute, persist)."),
    MetricSpec("o2c_reconcile_runs_total", "counter",
               "Reconcile runs recorded in the store, by status (the succeeded series carries the "
               "latest run's trace id as an exemplar in OpenMetrics).", ("status",)),
    # --- sources (probe runs in the store, any collector process)
    MetricSpec("o2c_source_last_success_timestamp_seconds", "gauge",
               "When the last succeeded probe run of a system finished.", ("system",)),
    MetricSpec("o2c_source_last_failure_timestamp_seconds", "gauge",
               "When the last failed probe run of a system finished.", ("system",)),
    MetricSpec("o2c_source_last_attempt_timestamp_seconds", "gauge",
               "When the last probe run of a system started.", ("system",)),
    MetricSpec("o2c_source_failing", "gauge",
               "1 when a system's last finished probe run failed (its last failure is newer than "
               "its last success), else 0.", ("system",)),
    # --- resyncs (issue 7): produced by reconciler.resync.ResyncCollector, same registry
    MetricSpec("o2c_resync_attempts_total", "counter",
               "Finished resync attempts by system, action and outcome.",
               ("system", "action", "outcome"), source=_RESYNC),
    MetricSpec("o2c_resync_requests", "gauge", "Resync requests by status.", ("status",),
               source=_RESYNC),
    MetricSpec("o2c_resync_circuit_state", "gauge",
               "1 for the current circuit state of each system (closed, open, half_open).",
               ("system", "state"), source=_RESYNC),
    MetricSpec("o2c_resync_circuit_consecutive_failures", "gauge",
               "Consecutive failed resync attempts on each system.", ("system",), source=_RESYNC),
    # --- the exporter
    MetricSpec("o2c_exporter_store_up", "gauge",
               "1 when this scrape read the store, 0 when it could not (the other o2c_ series "
               "of this exporter are then absent)."),
    MetricSpec("o2c_exporter_scrape_duration_seconds", "gauge",
               "Time this scrape spent reading the store and building the metrics."),
)  # fmt: skip
"""Every metric the exporter declares, in exposition order."""

METRIC_NAMES: tuple[str, ...] = tuple(m.name for m in METRICS)
"""Metric names as queried in PromQL (histograms: the base name; counters: with ``_total``)."""

SERIES_NAMES: frozenset[str] = frozenset(n for m in METRICS for n in m.series_names)
"""Every sample name a scrape may show (histograms expanded to _bucket, _sum, _count)."""

BY_NAME: dict[str, MetricSpec] = {m.name: m for m in METRICS}
