"""The console's service layer against a reconciled store, on SQLite and PostgreSQL: what each
page shows, what each action records, and that a role that may not act is refused, not ignored."""

from __future__ import annotations

from datetime import timedelta

import polars as pl
import pytest
from prometheus_client import CollectorRegistry, generate_latest

import store
from collector import CollectorMetrics
from dashboards import service
from dashboards.service import BreakFilters, PermissionDenied
from reconciler.resync import ResyncPolicy, read_audit
from tests.dashboards.conftest import APPROVER, OPERATOR, VIEWER
from tests.reconciler.estate import AS_OF

NOW = AS_OF + timedelta(hours=1)
POLICY = ResyncPolicy()


def ids_by_type(db: store.Store) -> dict[str, str]:
    register = service.read_register(db, VIEWER)
    return dict(register.select("break_type", "break_id").iter_rows())


def status_of(db: store.Store, break_id: str) -> str:
    register = service.read_register(db, VIEWER)
    return str(register.filter(pl.col("break_id") == break_id)["status"][0])


# --------------------------------------------------------------------------- executive


def test_tiles_show_the_latest_snapshot_against_the_earlier_one(filled: store.Store) -> None:
    data = service.executive(filled, VIEWER)
    assert data.as_of == AS_OF
    assert data.compared_with == AS_OF - timedelta(days=10)  # no snapshot 30 days older
    tiles = {t.kpi: t for t in data.tiles}
    leakage = tiles["revenue_leakage_minor"]
    assert (leakage.value, leakage.currency, leakage.unit) == (150_000, "USD", "minor")
    open_breaks = tiles["open_breaks_count"]
    assert (open_breaks.value, open_breaks.previous, open_breaks.change) == (5, 4, 1)
    assert open_breaks.improved is False  # more open breaks is worse
    assert tiles["billing_lag_time_p50_days"].value is None  # nothing invoiced from the PSA


@pytest.mark.parametrize(
    ("minor", "currency", "shown"),
    [
        (1678146754, "USD", "16.78M USD"),
        (-1678146754, "USD", "-16.78M USD"),
        (99999999, "USD", "999,999.99 USD"),
        (100000000, "USD", "1.00M USD"),
        (250000000000, "JPY", "250.00B JPY"),  # no minor unit: 250,000,000,000 yen
        (7190125, "USD", "71,901.25 USD"),
        (None, "USD", ""),
        (12345, None, "12,345 (minor units, no currency)"),
    ],
)
def test_a_tile_shows_millions_and_billions_short(
    minor: int | None, currency: str | None, shown: str
) -> None:
    assert service.money_short(minor, currency) == shown


def test_trends_have_one_point_per_snapshot_with_money_in_major_units(
    filled: store.Store,
) -> None:
    trends = service.executive(filled, VIEWER).trends
    leakage = trends.filter(pl.col("kpi") == "revenue_leakage_minor").sort("as_of")
    assert leakage["as_of"].to_list() == [AS_OF - timedelta(days=10), AS_OF]
    assert leakage["value"].to_list() == [1_500.0, 1_500.0]
    assert set(leakage["currency"]) == {"USD"}
    assert {"dso_days", "best_possible_dso_days", "bookings_minor", "billings_minor"} <= set(
        trends["kpi"]
    )


def test_legal_entities_show_open_breaks_amount_at_risk_and_setup_time(
    filled: store.Store,
) -> None:
    rows = service.executive(filled, VIEWER).by_legal_entity.to_dicts()
    assert rows == [
        {"legal_entity": "US01", "open_breaks": 5, "at_risk_minor": 870_000,
         "reporting_currency": "USD", "setup_p50_days": 5.0},
    ]  # fmt: skip


# --------------------------------------------------------------------------- break queue


def test_the_queue_is_ordered_by_amount_at_risk_times_age(filled: store.Store) -> None:
    queue = service.break_queue(service.read_register(filled, VIEWER), BreakFilters(), NOW)
    assert queue["break_type"].to_list() == [
        "invoice_missing_in_billing",  # 2,000.00 USD for 36 days
        "won_deal_without_project",  # 2,500.00 USD for 16 days
        "approved_time_not_invoiced",  # 1,500.00 USD for 19 days
        "invoice_overdue",  # 2,000.00 USD for 9 days
        "unapplied_cash",  # 700.00 USD for 20 days
    ]
    priorities = queue["priority"].to_list()
    assert priorities == sorted(priorities, reverse=True)
    first = queue.row(0, named=True)
    assert first["priority"] == pytest.approx(200_000 * (first["age_days"] + 1))


def test_ages_are_measured_at_the_last_reconciles_as_of(filled: store.Store) -> None:
    assert service.queue_clock(filled, VIEWER) == AS_OF


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (BreakFilters(types=("unapplied_cash",)), {"unapplied_cash"}),
        (BreakFilters(systems=("kantata",)), {"approved_time_not_invoiced"}),
        (BreakFilters(age_buckets=("8-30",)), {"won_deal_without_project",
                                               "approved_time_not_invoiced", "invoice_overdue",
                                               "unapplied_cash"}),
        (BreakFilters(age_buckets=(">30",)), {"invoice_missing_in_billing"}),
        (BreakFilters(legal_entities=("GB01",)), set()),
        (BreakFilters(statuses=("accepted",)), set()),
        (BreakFilters(search="D2"), {"won_deal_without_project"}),
        (BreakFilters(search="I1"), {"invoice_missing_in_billing", "invoice_overdue"}),
        (BreakFilters(search="PAY1"), {"unapplied_cash"}),
    ],
)  # fmt: skip
def test_filters_and_search_narrow_the_queue(
    filled: store.Store, filters: BreakFilters, expected: set[str]
) -> None:
    queue = service.break_queue(service.read_register(filled, VIEWER), filters, NOW)
    assert set(queue["break_type"]) == expected


def test_filter_choices_come_from_the_register(filled: store.Store) -> None:
    choices = service.filter_choices(service.read_register(filled, VIEWER))
    assert choices["systems"] == ["kantata", "netsuite", "salesforce"]
    assert choices["legal_entities"] == ["US01"]
    assert choices["age_buckets"] == ["0-1", "2-7", "8-30", ">30"]


def test_the_queue_totals_its_amount_at_risk_and_exports_every_row_as_csv(
    filled: store.Store,
) -> None:
    queue = service.break_queue(service.read_register(filled, VIEWER), BreakFilters(), NOW)
    assert service.queue_total(queue) == service.QueueTotal(5, 870_000, "USD")
    csv = pl.read_csv(service.queue_csv(queue))
    assert csv.height == 5
    assert csv["break_id"].to_list() == queue["break_id"].to_list()
    assert {"amount_minor", "currency", "amount_reporting_minor", "priority"} <= set(csv.columns)


def test_an_operator_acknowledges_breaks_in_bulk_without_changing_their_status(
    filled: store.Store,
) -> None:
    ids = ids_by_type(filled)
    chosen = [ids["unapplied_cash"], ids["invoice_overdue"]]
    outcome = service.acknowledge(filled, OPERATOR, chosen, note="calling the customer", at=NOW)
    assert outcome == service.BulkOutcome(tuple(chosen), {})
    register = service.read_register(filled, VIEWER).filter(pl.col("break_id").is_in(chosen))
    assert set(register["acknowledged_by"]) == {"otto"}
    assert set(register["acknowledged_note"]) == {"calling the customer"}
    assert set(register["status"]) == {"open", "new"}  # unchanged
    with filled.begin() as conn:
        history = store.read_break_transitions(conn, break_id=ids["unapplied_cash"])
    assert history.row(-1, named=True) | {"id": 0} == {
        "id": 0, "break_id": ids["unapplied_cash"], "run_id": None, "from_status": "open",
        "to_status": "open", "at": NOW, "actor": "otto", "note": "calling the customer",
    }  # fmt: skip


def test_an_operator_accepts_with_a_note_and_expiry_and_bad_ids_are_reported(
    filled: store.Store,
) -> None:
    ids = ids_by_type(filled)
    outcome = service.accept(
        filled, OPERATOR, [ids["unapplied_cash"], "nope"], note="refund agreed",
        until=NOW + timedelta(days=30), at=NOW,
    )  # fmt: skip
    assert outcome.done == (ids["unapplied_cash"],)
    assert outcome.failed == {"nope": "no break nope"}
    row = service.read_register(filled, VIEWER).filter(pl.col("break_id") == ids["unapplied_cash"])
    assert row.select("status", "accepted_by", "accepted_note").row(0) == (
        "accepted", "otto", "refund agreed",
    )  # fmt: skip
    with pytest.raises(ValueError, match="needs a note"):
        service.accept(filled, OPERATOR, [ids["invoice_overdue"]], note=" ",
                       until=NOW + timedelta(days=1))  # fmt: skip


def test_a_viewer_can_neither_acknowledge_nor_accept_and_nothing_is_written(
    filled: store.Store,
) -> None:
    ids = ids_by_type(filled)
    with filled.begin() as conn:
        before = store.read_break_transitions(conn).height
    with pytest.raises(PermissionDenied):
        service.acknowledge(filled, VIEWER, [ids["unapplied_cash"]], note="x")
    with pytest.raises(PermissionDenied):
        service.accept(filled, VIEWER, [ids["unapplied_cash"]], note="x",
                       until=NOW + timedelta(days=1))  # fmt: skip
    with filled.begin() as conn:
        assert store.read_break_transitions(conn).height == before
    assert status_of(filled, ids["unapplied_cash"]) == "open"


# --------------------------------------------------------------------------- deal


def test_a_deal_shows_its_records_per_system_with_vendor_ids(filled: store.Store) -> None:
    view = service.deal_view(filled, VIEWER, "D1")
    assert view is not None
    assert view.name == "Implementation for A1"
    records = set(view.records.select("system", "entity", "source_id").iter_rows())
    assert records == {
        ("salesforce", "opportunity", "D1"), ("salesforce", "account", "A1"),
        ("netsuite", "account", "C1"), ("kantata", "project", "P1"),
        ("kantata", "time_entries", "project P1"), ("netsuite", "invoice", "I1"),
    }  # fmt: skip
    invoice = view.records.filter(pl.col("source_id") == "I1").row(0, named=True)
    assert (invoice["what"], invoice["amount_minor"], invoice["currency"]) == (
        "INV-1001", 200_000, "USD",
    )  # fmt: skip


def test_a_deal_timeline_orders_its_events_across_systems(filled: store.Store) -> None:
    view = service.deal_view(filled, VIEWER, "D1")
    assert view is not None
    events = view.events.select("system", "source_id", "event").rows()
    assert events == [
        ("salesforce", "D1", "created"),
        ("salesforce", "D1", "won"),
        ("kantata", "P1", "project created"),
        ("kantata", "P1", "project activated"),
        ("kantata", "P1", "first time approved"),
        ("netsuite", "I1", "invoice issued"),
        ("netsuite", "I1", "invoice due"),
    ]
    assert view.events["at"].is_sorted()


def test_a_deal_lists_the_breaks_of_its_records_and_their_history(filled: store.Store) -> None:
    view = service.deal_view(filled, VIEWER, "D1")
    assert view is not None
    assert set(view.breaks["break_type"]) == {
        "approved_time_not_invoiced", "invoice_missing_in_billing", "invoice_overdue",
    }  # fmt: skip
    assert set(view.transitions["break_id"]) == set(view.breaks["break_id"])
    assert set(view.transitions["actor"]) == {"reconciler"}


@pytest.mark.parametrize("text", ["D1", "P1", "I1", "INV-1001", " I1 "])
def test_a_deal_is_found_by_its_own_project_or_invoice_id(filled: store.Store, text: str) -> None:
    assert service.find_deal(filled, VIEWER, text) == "D1"


def test_an_unknown_deal_is_none(filled: store.Store) -> None:
    assert service.find_deal(filled, VIEWER, "nothing") is None
    assert service.deal_view(filled, VIEWER, "nothing") is None


def test_deals_with_breaks_are_offered_most_at_risk_first(filled: store.Store) -> None:
    assert service.deals_with_breaks(service.read_register(filled, VIEWER)) == ["D2"]


# --------------------------------------------------------------------------- sources


def test_sources_show_probe_health_freshness_and_the_quarantine(filled: store.Store) -> None:
    data = service.sources(filled, VIEWER, metrics_url=None)
    assert data.systems["source_system"].to_list() == [
        "kantata",
        "netsuite",
        "salesforce",
        "stripe",
    ]
    assert (data.systems["freshness_minutes"] >= 0).all()
    failed = data.streams.filter(pl.col("last_status") == "failed").row(0, named=True)
    assert (failed["source_system"], failed["stream"], failed["last_error"]) == (
        "stripe", "invoices", "HTTP 503 from billing",
    )  # fmt: skip
    assert failed["last_success_at"] is None
    assert data.quarantine.select("source_system", "stream", "records").rows() == [
        ("netsuite", "invoices", 1), ("stripe", "invoices", 1),
    ]  # fmt: skip
    assert data.completeness.is_empty()  # no completeness check has run
    assert data.collector.error == "no collector metrics URL is configured"


def test_a_quarantined_payload_is_shown_as_received_with_its_reason(filled: store.Store) -> None:
    items = {i.source_system: i for i in service.quarantined(filled, VIEWER)}
    json_item, broken = items["netsuite"], items["stripe"]
    assert (json_item.reason, json_item.payload_is_json) == ("total is not a number", True)
    assert json_item.payload == '{\n  "id": "I9",\n  "total": "abc"\n}'
    assert (broken.reason, broken.payload_is_json) == ("truncated body", False)
    assert broken.payload == '\\xff\\xfe{"id": '  # undecodable bytes stay visible
    assert [
        i.source_system for i in service.quarantined(filled, VIEWER, source_system="stripe")
    ] == ["stripe"]


def test_quota_and_completeness_are_read_from_the_collectors_metrics() -> None:
    metrics = CollectorMetrics(CollectorRegistry())
    metrics.quota_used.labels("salesforce").set(0.42)
    metrics.completeness_mismatch.labels("stripe", "invoices").set(3)
    metrics.completeness_findings.labels("stripe").set(1)
    samples = service.parse_collector_metrics(generate_latest(metrics.registry).decode())
    assert samples.rows() == [
        ("completeness_findings", "stripe", None, 1.0),
        ("completeness_mismatch_records", "stripe", "invoices", 3.0),
        ("quota_used_ratio", "salesforce", None, 0.42),
    ]


def test_an_unreachable_collector_is_reported_not_raised() -> None:
    result = service.read_collector_metrics("http://127.0.0.1:9/metrics", timeout=0.5)
    assert result.samples.is_empty()
    assert result.error is not None and "unavailable at http://127.0.0.1:9/metrics" in result.error


# --------------------------------------------------------------------------- resyncs


def test_an_operator_triggers_a_resync_once_and_the_audit_names_them(filled: store.Store) -> None:
    ids = ids_by_type(filled)
    first = service.trigger(filled, OPERATOR, ids["invoice_missing_in_billing"], POLICY)
    again = service.trigger(filled, OPERATOR, ids["invoice_missing_in_billing"], POLICY)
    assert first == again  # idempotent: the pending request is returned
    audit = read_audit(filled, break_id=ids["invoice_missing_in_billing"])
    assert audit.select("kind", "actor", "request_id").rows() == [("requested", "otto", first)]
    data = service.resyncs(filled, VIEWER)
    assert data.in_flight["id"].to_list() == [first]  # auto: queued at once
    assert data.audit["actor"].to_list() == ["otto"]


def test_a_viewer_cannot_trigger_and_no_request_is_made(filled: store.Store) -> None:
    ids = ids_by_type(filled)
    with pytest.raises(PermissionDenied, match="vera \\(viewer\\) may not trigger"):
        service.trigger(filled, VIEWER, ids["invoice_missing_in_billing"], POLICY)
    assert service.resyncs(filled, VIEWER).recent.is_empty()
    assert read_audit(filled).is_empty()


def test_an_approval_needs_the_approver_role_and_records_who_approved(filled: store.Store) -> None:
    ids = ids_by_type(filled)
    request = service.trigger(filled, OPERATOR, ids["won_deal_without_project"],
                              ResyncPolicy(modes={"won_deal_without_project": "approval"}))  # fmt: skip
    assert service.resyncs(filled, VIEWER).pending["id"].to_list() == [request]
    with pytest.raises(PermissionDenied):
        service.approve(filled, OPERATOR, request, POLICY)
    service.approve(filled, APPROVER, request, POLICY, note="customer confirmed")
    data = service.resyncs(filled, VIEWER)
    assert data.pending.is_empty()
    assert data.audit.select("kind", "actor").rows() == [
        ("approved", "anna"),
        ("requested", "otto"),
    ]


def test_recent_requests_show_the_latest_activity_first(filled: store.Store) -> None:
    ids = ids_by_type(filled)
    by_approval = ResyncPolicy(modes=dict.fromkeys(ids, "approval"))
    older = service.trigger(filled, OPERATOR, ids["won_deal_without_project"], by_approval)
    newer = service.trigger(filled, OPERATOR, ids["invoice_missing_in_billing"], by_approval)
    assert service.resyncs(filled, VIEWER).recent["id"].to_list() == [newer, older]
    service.reject(filled, APPROVER, older, note="not ours")
    assert service.resyncs(filled, VIEWER).recent["id"].to_list() == [older, newer]


def test_resync_candidates_are_the_open_breaks_an_action_repairs(filled: store.Store) -> None:
    offered = service.candidates(filled, VIEWER, POLICY)
    assert dict(offered.select("break_type", "mode").iter_rows()) == {
        "invoice_missing_in_billing": "auto", "won_deal_without_project": "approval",
    }  # fmt: skip
    planned = service.plan(filled, VIEWER, offered["break_id"][0], POLICY)
    assert planned is not None and planned.calls
    assert service.break_resyncs(filled, VIEWER, list(offered["break_id"])).is_empty()
