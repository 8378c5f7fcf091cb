"""The exporter reads the latest reconcile snapshot at scrape time: KPIs, breaks, stuck deals, health.

A hand-built estate (the KPI test's) is written to the store and reconciled for real; the scrape
is read back from a private registry, as Prometheus would see it.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest
from prometheus_client.parser import text_string_to_metric_families

import alerts
import store
from collector import CollectorMetrics, SystemProbe
from o2c import collect as wiring
from o2c.settings import Settings
from reconciler import ReconcileConfig, run_reconcile
from tests.reconciler.estate import AS_OF
from tests.reconciler.test_kpis import estate

CONFIG = ReconcileConfig(fx_rates={"GBP": Decimal("1.25")})


@pytest.fixture
def registry(db: store.Store) -> CollectorRegistry:
    registry = CollectorRegistry()
    alerts.register_exporter(registry, db)
    return registry


def test_before_any_reconcile_only_the_exporter_itself_reports(
    db: store.Store, registry: CollectorRegistry
) -> None:
    assert registry.get_sample_value("o2c_exporter_store_up") == 1.0
    assert registry.get_sample_value("o2c_reconcile_last_success_timestamp_seconds") is None
    assert registry.get_sample_value("o2c_transactions_stuck", {"stage": "won"}) is None


def test_a_scrape_shows_the_latest_snapshot(db: store.Store, registry: CollectorRegistry) -> None:
    estate().write(db)
    run_reconcile(db, as_of=AS_OF - timedelta(days=1), config=CONFIG)
    report = run_reconcile(db, as_of=AS_OF, config=CONFIG)
    value = registry.get_sample_value

    assert value("o2c_reconcile_as_of_timestamp_seconds") == AS_OF.timestamp()
    assert value("o2c_reconcile_runs_total", {"status": "succeeded"}) == 2
    assert value("o2c_reconcile_last_duration_seconds") > 0
    # O5 won 40 days ago has no project: stuck at "won" since then
    assert value("o2c_transactions_stuck", {"stage": "won"}) == 1
    assert value("o2c_transactions_stuck", {"stage": "invoiced"}) == 0
    oldest = value("o2c_transactions_stuck_oldest_timestamp_seconds", {"stage": "won"})
    assert oldest == (AS_OF - timedelta(days=40)).timestamp()
    # open breaks agree with the run's own register
    open_total = sum(report.open_by_type.values())
    scraped = [
        s for f in text_string_to_metric_families(generate_latest(registry).decode())
        for s in f.samples if s.name == "o2c_breaks_open"
    ]  # fmt: skip
    assert sum(s.value for s in scraped) == open_total > 0
    won = value("o2c_breaks_open", {"break_type": "won_deal_without_project",
                                     "severity": "high", "legal_entity": "US01"})  # fmt: skip
    assert won == report.open_by_type["won_deal_without_project"] == 1
    # leakage: 60 min x 100.00 USD of time, and the GBP 500.00 milestone at 1.25
    assert value("o2c_revenue_leakage_amount",
                 {"break_type": "approved_time_not_invoiced", "currency": "USD"}) == 100.0  # fmt: skip
    assert value("o2c_revenue_leakage_amount",
                 {"break_type": "completed_milestone_not_invoiced", "currency": "USD"}) == 625.0  # fmt: skip
    # money in major units, durations in seconds
    ar_minor = report.kpis.filter(
        (report.kpis["kpi"] == "ar_total_minor") & (report.kpis["dimension"] == "all")
    )["value_minor"][0]
    assert value("o2c_receivables_amount", {"currency": "USD"}) == ar_minor / 100
    dso_days = report.kpis.filter(report.kpis["kpi"] == "dso_days")["value"][0]
    assert value("o2c_dso_seconds", {"method": "standard"}) == pytest.approx(dso_days * 86_400)


def test_setup_cycle_time_is_a_histogram_per_legal_entity(
    db: store.Store, registry: CollectorRegistry
) -> None:
    estate().write(db)
    run_reconcile(db, as_of=AS_OF, config=CONFIG)
    value = registry.get_sample_value
    # O1: won 60 d ago, active 50 d ago (10 d); O2 (UK01): won 20 d, active 12 d ago (8 d)
    us = {"legal_entity": "US01"}
    assert value("o2c_project_setup_cycle_time_seconds_count", us) == 1
    assert value("o2c_project_setup_cycle_time_seconds_sum", us) == pytest.approx(10 * 86_400)
    assert value("o2c_project_setup_cycle_time_seconds_bucket", {**us, "le": "604800.0"}) == 0
    assert value("o2c_project_setup_cycle_time_seconds_bucket", {**us, "le": "864000.0"}) == 1
    uk = {"legal_entity": "UK01"}
    assert value("o2c_project_setup_cycle_time_seconds_bucket", {**uk, "le": "+Inf"}) == 1
    assert value("o2c_billing_lag_seconds_count", {"kind": "time"}) == 2
    assert value("o2c_billing_lag_seconds_count", {"kind": "milestone"}) == 1


def test_the_latest_run_trace_id_is_an_exemplar_in_openmetrics(
    db: store.Store, registry: CollectorRegistry
) -> None:
    estate().write(db)
    report = run_reconcile(db, as_of=AS_OF, config=CONFIG, tracer_provider=TracerProvider())
    trace = report.kpis.filter(report.kpis["kpi"] == "reconcile_trace")["dimension"][0]
    trace_id = trace.removeprefix("trace_id=")
    assert len(trace_id) == 32 and int(trace_id, 16)
    text = openmetrics_latest(registry).decode()
    line = next(x for x in text.splitlines() if x.startswith("o2c_reconcile_runs_total{"))
    assert f'# {{trace_id="{trace_id}"}}' in line
    assert "trace_id" not in generate_latest(registry).decode()  # plain text has no exemplars


def test_probe_health_per_system_comes_from_stored_probe_runs(
    db: store.Store, registry: CollectorRegistry
) -> None:
    t0 = AS_OF - timedelta(hours=2)
    with db.begin(write=True) as conn:
        for system, status, minutes in [("stripe", "succeeded", 0), ("stripe", "failed", 30),
                                        ("kantata", "failed", 0), ("kantata", "succeeded", 30)]:  # fmt: skip
            start = t0 + timedelta(minutes=minutes)
            conn.execute(store.metadata.tables["probe_runs"].insert().values(
                source_system=system, stream="x", started_at=start,
                finished_at=start + timedelta(minutes=1), status=status))  # fmt: skip
    value = registry.get_sample_value
    assert value("o2c_source_failing", {"system": "stripe"}) == 1
    assert value("o2c_source_failing", {"system": "kantata"}) == 0
    assert (
        value("o2c_source_last_success_timestamp_seconds", {"system": "kantata"})
        == (t0 + timedelta(minutes=31)).timestamp()
    )


def test_a_store_that_cannot_be_read_makes_the_scrape_say_so_not_fail(
    registry: CollectorRegistry, db: store.Store
) -> None:
    db.dispose()
    broken = CollectorRegistry()
    alerts.register_exporter(broken, store.Store("sqlite:////nonexistent/dir/o2c.sqlite3"))
    assert broken.get_sample_value("o2c_exporter_store_up") == 0.0
    assert broken.get_sample_value("o2c_reconcile_runs_total", {"status": "succeeded"}) is None


def test_the_catalogue_names_every_family_the_scrape_shows_once(
    db: store.Store, registry: CollectorRegistry
) -> None:
    declared = {f.name for f in alerts.O2CCollector(db).describe()}
    assert declared == {m.family for m in alerts.METRICS if m.source == "alerts"}
    scraped = [f.name for f in registry.collect()]
    assert len(scraped) == len(set(scraped))  # the resync collector's families are not repeated
    assert set(scraped) == {m.family for m in alerts.METRICS}
    assert all(name.startswith("o2c_") for name in alerts.METRIC_NAMES)
    # every circuit of the four systems is shown, closed, before any resync
    assert (
        registry.get_sample_value(
            "o2c_resync_circuit_state", {"system": "stripe", "state": "closed"}
        )
        == 1.0
    )


def test_the_registry_o2c_collect_serves_carries_the_exporter(db: store.Store) -> None:
    registry = CollectorRegistry()
    probes = [SystemProbe(s, ("x",), lambda: None) for s in alerts.involved_systems()]
    collector = wiring.build_collector(
        Settings(database_url=db.url), db, metrics=CollectorMetrics(registry), probes=probes
    )
    try:
        assert registry.get_sample_value("o2c_exporter_store_up") == 1.0
        names = {f.name for f in registry.collect()}
        assert {m.family for m in alerts.METRICS} <= names
        assert "o2c_probe_cycles" in names  # beside the collector's own
    finally:
        if collector.ownership is not None:
            collector.ownership.close()
