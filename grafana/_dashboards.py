"""The three o2c-monitor dashboards: executive KPIs, on-call, and sources and pipeline health.

Metric names come from the exporter's catalogue (``alerts/_catalogue.py``) and the collector's
(``collector/metrics.py``); a test checks every name a query uses against both. Conventions:

- the exporter's money is in major units of the reporting currency (legend ``{{currency}}``);
- durations are seconds (unit ``s``), except DSO, shown in days as finance states it;
- the KPI histograms describe the latest reconcile snapshot (their buckets are not counters), so
  quantiles read the buckets directly, without ``rate``;
- a query whose metric may legitimately have no series in a healthy estate (no probe error, no
  resync attempt, no firing alert yet) is filled with zeros, so the panel shows 0, not "No data".
"""

from __future__ import annotations

from typing import Any

from grafana._panels import (
    Query,
    Step,
    build_dashboard,
    datasource_variable,
    legal_entity_variable,
    stat_panel,
    system_variable,
    table_panel,
    timeseries_panel,
)

LE = 'legal_entity=~"$legal_entity"'
SYS = 'system=~"$system"'
DAYS = "suffix:days"
"""Grafana's custom suffix unit: '38.2 days' (its own unit d turns 38 days into weeks)."""
MONEY = "short"
"""Money in major units of the reporting currency; the currency is in the legend."""

GREEN, ORANGE, RED = "green", "orange", "red"
OK_FAILING = {"0": ("OK", GREEN), "1": ("FAILING", RED)}
UP_DOWN = {"1": ("UP", GREEN), "0": ("DOWN", RED)}
HOUR = 3600.0
CYCLE_INTERVAL = "5m"
"""The collector's default cycle interval per stream: rates of probe cycles (and of resyncs, which
come as rarely) are taken over at least this long, or most windows would hold no cycle at all."""


def _zero_per_system(expr: str, by: str = "system") -> str:
    """``expr`` or, for each selected system it has no series for, 0 (a known series reads 0)."""
    return f"{expr}\nor on ({by}) 0 * max by ({by}) (o2c_source_failing{{{SYS}}})"


def _quantiles(metric: str, by: str = "", selector: str = "") -> tuple[Query, Query]:
    """p50 and p90 of a snapshot histogram (no rate: its buckets describe the latest snapshot)."""
    group = f"le, {by}" if by else "le"
    legend = f" {{{{{by}}}}}" if by else ""
    return tuple(  # type: ignore[return-value]
        Query(
            f"histogram_quantile({q}, sum by ({group}) ({metric}_bucket{{{selector}}}))",
            f"p{int(q * 100)}{legend}",
        )
        for q in (0.5, 0.9)
    )


# --------------------------------------------------------------------------- executive


def executive() -> dict[str, Any]:
    """Executive O2C KPIs: cash, delivery and billing, growth, breaks and manual work."""
    cash = [
        stat_panel(
            "DSO",
            "Days sales outstanding (standard: open receivables / sales per day over the "
            "KPI window), from the latest reconcile. Target: 45 days (alert O2CDSOAboveTarget).",
            DAYS,
            Query('o2c_dso_seconds{method="standard"} / 86400', "DSO"),
            decimals=1,
            steps=[Step(None, GREEN), Step(45, ORANGE), Step(60, RED)],
        ),
        stat_panel(
            "Best possible DSO",
            "DSO counting only current (not past-due) receivables. A widening "
            "gap to DSO means collections are getting worse even when DSO is flat.",
            DAYS,
            Query('o2c_dso_seconds{method="best_possible"} / 86400', "best possible"),
            decimals=1,
        ),
        stat_panel(
            "Open receivables",
            "Open ERP receivables (AR), major units of the reporting currency.",
            MONEY,
            Query("sum by (currency) (o2c_receivables_amount)", "{{currency}}"),
        ),
        stat_panel(
            "Overdue receivables",
            "Open receivables past their due date (every ageing bucket but "
            "current), major units of the reporting currency.",
            MONEY,
            Query(
                'sum by (currency) (o2c_receivables_ageing_amount{bucket!="current"})',
                "{{currency}}",
            ),
        ),
        timeseries_panel(
            "DSO by method",
            "Standard, best-possible and countback DSO in days, per reconcile.",
            DAYS,
            Query("o2c_dso_seconds / 86400", "{{method}}"),
            width=8,
            decimals=1,
        ),
        timeseries_panel(
            "Receivables ageing",
            "Open receivables by days past due (current, 1-30, 31-60, "
            "61-90, >90), major units of the reporting currency, stacked.",
            MONEY,
            Query("sum by (bucket) (o2c_receivables_ageing_amount)", "{{bucket}}"),
            width=8,
            stacked=True,
        ),
        timeseries_panel(
            "Time to cash",
            "ERP invoice issued to fully paid, median and 90th percentile over the "
            "paid invoices of the latest reconcile.",
            "s",
            *_quantiles("o2c_time_to_cash_seconds"),
            width=8,
        ),
    ]
    delivery = [
        timeseries_panel(
            "Project setup cycle time",
            "Deal won to PSA project active, median and 90th "
            "percentile per legal entity (follows the Legal entity variable; an entity with no "
            "deal won and activated yet shows nothing).",
            "s",
            *_quantiles("o2c_project_setup_cycle_time_seconds", "legal_entity", LE),
            width=8,
        ),
        timeseries_panel(
            "Billing lag",
            "Approved time (kind=time) or completed milestone (kind=milestone) to "
            "invoice issued, median and 90th percentile.",
            "s",
            *_quantiles("o2c_billing_lag_seconds", "kind"),
            width=8,
        ),
        timeseries_panel(
            "Revenue leakage by cause",
            "Approved billable time and completed milestones not "
            "invoiced past their due date, major units of the reporting currency.",
            MONEY,
            Query("sum by (break_type) (o2c_revenue_leakage_amount)", "{{break_type}}"),
            width=8,
            stacked=True,
        ),
        stat_panel(
            "Revenue leakage",
            "Unbilled approved time and milestones past due, in total; major "
            "units of the reporting currency.",
            MONEY,
            Query("sum by (currency) (o2c_revenue_leakage_amount)", "{{currency}}"),
            steps=[Step(None, GREEN), Step(1, ORANGE)],
        ),
        stat_panel(
            "Invoice accuracy",
            "Share of the KPI window's ERP invoices without an amount or currency break.",
            "percentunit",
            Query("o2c_invoice_accuracy_ratio", "accuracy"),
            decimals=1,
            steps=[Step(None, RED), Step(0.9, ORANGE), Step(0.97, GREEN)],
        ),
        stat_panel(
            "Amounts without an FX rate",
            "Amounts left out of the money KPIs because no FX rate "
            "to the reporting currency was known; above 0, the money KPIs are understated.",
            "short",
            Query("o2c_fx_missing_amounts", "missing"),
            steps=[Step(None, GREEN), Step(1, ORANGE)],
        ),
        stat_panel(
            "KPI age",
            "Time since the as-of instant of the latest succeeded reconcile: every KPI "
            "on this dashboard is at most this old.",
            "s",
            Query("time() - o2c_reconcile_as_of_timestamp_seconds", "age"),
            steps=[Step(None, GREEN), Step(3 * HOUR, ORANGE), Step(6 * HOUR, RED)],
        ),
    ]
    growth = [
        stat_panel(
            "Bookings",
            "Deals won in the KPI window, major units of the reporting currency.",
            MONEY,
            Query("sum by (currency) (o2c_bookings_amount)", "{{currency}}"),
        ),
        stat_panel(
            "Billings",
            "ERP invoices issued in the KPI window (credit notes net), major units of "
            "the reporting currency.",
            MONEY,
            Query("sum by (currency) (o2c_billings_amount)", "{{currency}}"),
        ),
        stat_panel(
            "Bookings to billings",
            "Bookings divided by billings over the KPI window; above 1 the "
            "backlog grows, below 1 it is being billed down.",
            "none",
            Query("o2c_bookings_to_billings_ratio", "bookings / billings"),
            decimals=2,
        ),
        stat_panel(
            "Backlog",
            "Won deal value not yet billed, major units of the reporting currency.",
            MONEY,
            Query("sum by (currency) (o2c_backlog_amount)", "{{currency}}"),
        ),
        timeseries_panel(
            "Bookings and billings",
            "Bookings and billings over the KPI window, as each reconcile "
            "measured them; major units of the reporting currency.",
            MONEY,
            Query("sum by (currency) (o2c_bookings_amount)", "bookings {{currency}}"),
            Query("sum by (currency) (o2c_billings_amount)", "billings {{currency}}"),
            Query("sum by (currency) (o2c_backlog_amount)", "backlog {{currency}}"),
            width=24,
        ),
    ]
    breaks = [
        stat_panel(
            "Open breaks",
            "Open breaks of every type in the selected legal entities (breaks "
            "without one count under legal entity 'none').",
            "short",
            Query(f"sum(o2c_breaks_open{{{LE}}})", "open"),
            steps=[Step(None, GREEN), Step(1, ORANGE)],
        ),
        stat_panel(
            "Amount at risk",
            "Amount at risk of every open break, major units of the reporting currency.",
            MONEY,
            Query("sum by (currency) (o2c_breaks_open_amount)", "{{currency}}"),
        ),
        timeseries_panel(
            "Open breaks by legal entity",
            "Open breaks per legal entity, stacked.",
            "short",
            Query(f"sum by (legal_entity) (o2c_breaks_open{{{LE}}})", "{{legal_entity}}"),
            width=6,
            stacked=True,
        ),
        timeseries_panel(
            "Breaks resolved: automatic vs manual",
            "Breaks each reconcile found resolved, by "
            "whether their type is repaired automatically or needs a person: the volume of manual "
            "intervention.",
            "short",
            Query("sum by (kind) (o2c_breaks_resolved_last_run)", "{{kind}}"),
            width=6,
            bars=True,
        ),
    ]
    return build_dashboard(
        uid="o2c-executive",
        title="O2C executive KPIs",
        description="Opportunity-to-cash KPIs from o2c-monitor's latest reconcile: DSO, "
        "receivables, setup cycle time, billing lag, leakage, bookings to billings, breaks.",
        tags=["o2c", "o2c-monitor", "kpi"],
        variables=[datasource_variable(), legal_entity_variable()],
        sections=[("Cash and receivables", cash), ("Delivery and billing", delivery),
                  ("Growth", growth), ("Breaks and manual work", breaks)],
    )  # fmt: skip


# --------------------------------------------------------------------------- on-call


def on_call() -> dict[str, Any]:
    """On-call: stuck transactions, alert state, breaks, and whether sources and resyncs work."""
    o2c_alerts = 'ALERTS{alertname=~"O2C.+"'
    stuck = [
        stat_panel(
            "Stuck deals",
            "Deals whose current chain stage is older than its stuck-after limit.",
            "short",
            Query("sum(o2c_transactions_stuck)", "stuck"),
            steps=[Step(None, GREEN), Step(1, RED)],
        ),
        timeseries_panel(
            "Stuck deals by stage",
            "Stuck deals per chain stage (won, project set up, invoiced, ...), stacked.",
            "short",
            Query("sum by (stage) (o2c_transactions_stuck)", "{{stage}}"),
            width=10,
            stacked=True,
        ),
        table_panel(
            "Oldest stuck deal per stage",
            "How long the oldest stuck deal of each stage has "
            "waited there (stages with nothing stuck are not listed). The deals themselves are in "
            "the console's break queue and in the alerts' annotations.",
            "s",
            Query(
                "time() - min by (stage) (o2c_transactions_stuck_oldest_timestamp_seconds)",
                "{{stage}}",
                instant=True,
            ),
            width=8,
        ),
    ]
    alert_state = [
        stat_panel(
            "Firing alerts",
            "o2c alerts firing in this Prometheus (pending ones wait for their "
            "'for' duration). 0 when none fires.",
            "short",
            Query(f'count({o2c_alerts}, alertstate="firing"}}) or vector(0)', "firing"),
            steps=[Step(None, GREEN), Step(1, RED)],
            width=4,
        ),
        stat_panel(
            "Pending alerts",
            "o2c alert rules whose condition holds but not yet for their 'for' "
            "duration. 0 when none is pending.",
            "short",
            Query(f'count({o2c_alerts}, alertstate="pending"}}) or vector(0)', "pending"),
            steps=[Step(None, GREEN), Step(1, ORANGE)],
            width=4,
        ),
        table_panel(
            "Alert state",
            "Every o2c alert pending or firing now, with its severity and category "
            "(data_break or engine_health); the value is the number of alert instances.",
            "short",
            Query(
                f"count by (alertname, alertstate, severity, category) ({o2c_alerts}}})",
                "{{alertname}}",
                instant=True,
            ),
            width=16,
        ),
    ]
    breaks = [
        stat_panel(
            "Open breaks",
            "Open breaks in the selected legal entities.",
            "short",
            Query(f"sum(o2c_breaks_open{{{LE}}})", "open"),
            steps=[Step(None, GREEN), Step(1, ORANGE)],
        ),
        stat_panel(
            "Breaks past SLA",
            "Open breaks older than their type's SLA in business days.",
            "short",
            Query("sum(o2c_breaks_sla_breached)", "past SLA"),
            steps=[Step(None, GREEN), Step(1, RED)],
        ),
        timeseries_panel(
            "Open breaks by system",
            "Open breaks involving each selected system (a break "
            "involving two systems counts under each: do not add the lines up).",
            "short",
            Query(f"sum by (system) (o2c_breaks_open_by_system{{{SYS}}})", "{{system}}"),
        ),
        table_panel(
            "Open breaks by type and severity",
            "Open breaks in the selected legal entities, per break type and severity.",
            "short",
            Query(
                f"sum by (break_type, severity) (o2c_breaks_open{{{LE}}})",
                "{{break_type}}",
                instant=True,
            ),
        ),
        table_panel(
            "Oldest open break per type",
            "How long the condition of the oldest open break of "
            "each type has lasted (types with nothing open are not listed).",
            "s",
            Query(
                "time() - min by (break_type) (o2c_breaks_oldest_open_timestamp_seconds)",
                "{{break_type}}",
                instant=True,
            ),
        ),
        timeseries_panel(
            "Amount at risk by break type",
            "Amount at risk of open breaks per type, major units "
            "of the reporting currency, stacked.",
            MONEY,
            Query("sum by (break_type) (o2c_breaks_open_amount)", "{{break_type}}"),
            stacked=True,
        ),
    ]
    health = [
        stat_panel(
            "Source failing",
            "Per selected system: FAILING when its last finished probe run "
            "failed (alerts involving it are muted then).",
            "none",
            Query(f"max by (system) (o2c_source_failing{{{SYS}}})", "{{system}}"),
            mappings=OK_FAILING,
            steps=[Step(None, GREEN), Step(1, RED)],
            width=8,
        ),
        stat_panel(
            "Since last successful read",
            "Per selected system, the time since its last "
            "succeeded probe run (alert O2CSourceStale after an hour).",
            "s",
            Query(
                f"time() - max by (system) (o2c_source_last_success_timestamp_seconds{{{SYS}}})",
                "{{system}}",
            ),
            steps=[Step(None, GREEN), Step(HOUR, RED)],
            width=8,
        ),
        stat_panel(
            "Exporter reads its store",
            "UP when the exporter's last scrape read the store; DOWN "
            "means every KPI and break series is absent.",
            "none",
            Query("min(o2c_exporter_store_up)", "store"),
            mappings=UP_DOWN,
            steps=[Step(None, RED), Step(1, GREEN)],
            width=8,
        ),
        table_panel(
            "Resync circuits",
            "The current circuit state of resyncs to each selected system "
            "(open: automatic repairs there are stopped).",
            "short",
            Query(
                f"max by (system, state) (o2c_resync_circuit_state{{{SYS}}}) == 1",
                "{{system}}",
                instant=True,
            ),
            width=8,
        ),
        timeseries_panel(
            "Resync attempts per minute",
            "Finished resync attempts per selected system and "
            "outcome (0 for a system without attempts).",
            "opm",
            Query(
                _zero_per_system(
                    f"60 * sum by (system, outcome) "
                    f"(rate(o2c_resync_attempts_total{{{SYS}}}[$__rate_interval]))"
                ),
                "{{system}} {{outcome}}",
            ),
            width=8,
            min_interval=CYCLE_INTERVAL,
        ),
        timeseries_panel(
            "Resync requests by status",
            "Resync requests in each status (awaiting approval: an "
            "operator must approve them in the console).",
            "short",
            Query("sum by (status) (o2c_resync_requests)", "{{status}}"),
            width=8,
        ),
    ]
    return build_dashboard(
        uid="o2c-on-call",
        title="O2C on-call",
        description="What on-call needs first: stuck deals, alert state, open breaks and whether "
        "o2c-monitor can see its sources and repair through them.",
        tags=["o2c", "o2c-monitor", "on-call"],
        variables=[datasource_variable(), legal_entity_variable(), system_variable()],
        sections=[("Stuck transactions", stuck), ("Alerts", alert_state), ("Breaks", breaks),
                  ("Sources and resyncs", health)],
    )  # fmt: skip


# --------------------------------------------------------------------------- pipeline


def pipeline() -> dict[str, Any]:
    """Sources and pipeline health: freshness, probe cycles, errors, quota, reconcile, exporter."""
    freshness = [
        stat_panel(
            "Since last successful read",
            "Per selected system, the time since its last "
            "succeeded probe run, from the store (any collector process).",
            "s",
            Query(
                f"time() - max by (system) (o2c_source_last_success_timestamp_seconds{{{SYS}}})",
                "{{system}}",
            ),
            steps=[Step(None, GREEN), Step(HOUR, RED)],
            width=12,
        ),
        stat_panel(
            "Source failing",
            "FAILING when a system's last finished probe run failed.",
            "none",
            Query(f"max by (system) (o2c_source_failing{{{SYS}}})", "{{system}}"),
            mappings=OK_FAILING,
            steps=[Step(None, GREEN), Step(1, RED)],
            width=12,
        ),
        timeseries_panel(
            "Stream freshness",
            "Per stream of the selected systems, the time since its last fully "
            "successful probe cycle.",
            "s",
            Query(
                f"time() - max by (system, stream) "
                f"(o2c_probe_last_success_timestamp_seconds{{{SYS}}})",
                "{{system}}/{{stream}}",
            ),
        ),
        timeseries_panel(
            "Completeness: source minus store",
            "Records the source counts minus records the "
            "store holds, per stream at its last completeness check (0 = complete).",
            "short",
            Query(
                f"sum by (system, stream) (o2c_completeness_mismatch_records{{{SYS}}})",
                "{{system}}/{{stream}}",
            ),
        ),
        stat_panel(
            "Streams with completeness findings",
            "Per selected system, streams whose last "
            "completeness check failed or disagreed with the source.",
            "short",
            Query(f"sum by (system) (o2c_completeness_findings{{{SYS}}})", "{{system}}"),
            steps=[Step(None, GREEN), Step(1, ORANGE)],
            width=12,
        ),
        stat_panel(
            "API quota used",
            "Share of each vendor's API quota used, as the vendor last reported "
            "it (only vendors that report a quota are shown). Alert above 90%.",
            "percentunit",
            Query(f"max by (system) (o2c_probe_quota_used_ratio{{{SYS}}})", "{{system}}"),
            steps=[Step(None, GREEN), Step(0.75, ORANGE), Step(0.9, RED)],
            width=12,
        ),
    ]
    cycles = [
        timeseries_panel(
            "Probe cycles per minute by outcome",
            "Probe cycles finished per minute, per system "
            "and outcome (succeeded, partial, failed, skipped).",
            "cpm",
            Query(
                f"60 * sum by (system, status) "
                f"(rate(o2c_probe_cycles_total{{{SYS}}}[$__rate_interval]))",
                "{{system}} {{status}}",
            ),
            min_interval=CYCLE_INTERVAL,
        ),
        timeseries_panel(
            "Probe errors per minute by kind",
            "Probe cycles that ended in an error, per system "
            "and error kind (timeout, auth, response, rate_limit, store, ...); 0 for a system "
            "without errors.",
            "cpm",
            Query(
                _zero_per_system(
                    f"60 * sum by (system, kind) "
                    f"(rate(o2c_probe_errors_total{{{SYS}}}[$__rate_interval]))"
                ),
                "{{system}} {{kind}}",
            ),
            min_interval=CYCLE_INTERVAL,
        ),
        timeseries_panel(
            "Probe cycle duration (p90)",
            "90th percentile wall time of a probe cycle per system: "
            "cursor read, every page fetched and written.",
            "s",
            Query(
                f"histogram_quantile(0.9, sum by (le, system) "
                f"(rate(o2c_probe_cycle_duration_seconds_bucket{{{SYS}}}[$__rate_interval])))",
                "{{system}}",
            ),
            min_interval=CYCLE_INTERVAL,
        ),
        timeseries_panel(
            "Records per second",
            "Records read from the sources (ingested), inserted or changed "
            "in the store (written) and quarantined for failing validation, per second; "
            "quarantined is 0 for a system with none.",
            "short",
            Query(
                f"sum by (system) "
                f"(rate(o2c_probe_records_ingested_total{{{SYS}}}[$__rate_interval]))",
                "{{system}} ingested",
            ),
            Query(
                f"sum by (system) "
                f"(rate(o2c_probe_records_written_total{{{SYS}}}[$__rate_interval]))",
                "{{system}} written",
            ),
            Query(
                _zero_per_system(
                    f"sum by (system) "
                    f"(rate(o2c_probe_records_quarantined_total{{{SYS}}}[$__rate_interval]))"
                ),
                "{{system}} quarantined",
            ),
            min_interval=CYCLE_INTERVAL,
        ),
    ]
    reconcile = [
        stat_panel(
            "Last reconcile duration",
            "Wall time of the latest succeeded reconcile run (load, compute, persist).",
            "s",
            Query("o2c_reconcile_last_duration_seconds", "duration"),
            width=6,
        ),
        stat_panel(
            "Since last successful reconcile",
            "Time since the latest succeeded reconcile run "
            "finished (alert O2CReconcileNotRun after three hours).",
            "s",
            Query("time() - o2c_reconcile_last_success_timestamp_seconds", "since"),
            steps=[Step(None, GREEN), Step(HOUR, ORANGE), Step(3 * HOUR, RED)],
            width=6,
        ),
        stat_panel(
            "Reconcile runs in range",
            "Reconcile runs recorded in the store during the dashboard's time range, by status.",
            "short",
            Query("sum by (status) (increase(o2c_reconcile_runs_total[$__range]))", "{{status}}"),
            width=6,
        ),
        stat_panel(
            "Exporter reads its store",
            "UP when the exporter's last scrape read the store.",
            "none",
            Query("min(o2c_exporter_store_up)", "store"),
            mappings=UP_DOWN,
            steps=[Step(None, RED), Step(1, GREEN)],
            width=6,
        ),
        timeseries_panel(
            "Reconcile duration",
            "Wall time of the latest succeeded reconcile run, over time.",
            "s",
            Query("o2c_reconcile_last_duration_seconds", "reconcile"),
        ),
        timeseries_panel(
            "Exporter scrape duration",
            "Time each scrape of /metrics spent reading the store and "
            "building the metrics (the scrape timeout is 10 s by default).",
            "s",
            Query("max(o2c_exporter_scrape_duration_seconds)", "scrape"),
        ),
    ]
    return build_dashboard(
        uid="o2c-pipeline",
        title="O2C sources and pipeline health",
        description="Is o2c-monitor seeing its sources and keeping up: freshness and completeness "
        "per system and stream, probe cycles, errors and API quota, reconcile and exporter.",
        tags=["o2c", "o2c-monitor", "pipeline"],
        variables=[datasource_variable(), system_variable()],
        sections=[("Freshness and completeness", freshness), ("Probe cycles", cycles),
                  ("Reconcile and exporter", reconcile)],
    )  # fmt: skip
