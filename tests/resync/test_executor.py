"""The executor against the sandbox's vendors: repairs land once, whatever the vendors do.

Lost answers never make a second record (asserted against the sandbox's own data); a failing
system opens its circuit and sees no write until its half-open probe succeeds; an action that
needs approval waits for a second person; a manual break never causes a write; the resync
metrics are computed from the store at scrape time.
"""

from __future__ import annotations

import json
from datetime import timedelta

import polars as pl
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

import store
from reconciler.resync import (
    ResyncCollector,
    ResyncError,
    ResyncPolicy,
    approve_request,
    list_requests,
    plan_resync,
    read_audit,
    request_resync,
)
from tests.resync.conftest import FAST_POLICY, HEALABLE, Firm, vendor_duplicates


def only(*types: str, **extra: object) -> ResyncPolicy:
    """FAST_POLICY with every repairable type but ``types`` made manual."""
    modes = {t: "manual" for t in (*HEALABLE, "invoice_status_mismatch") if t not in types}
    modes.update({t: "auto" for t in types})
    fields = {**FAST_POLICY.__dict__, "modes": modes, **extra}
    return ResyncPolicy(**fields)  # type: ignore[arg-type]


def by_type_of(truth: pl.DataFrame) -> dict[str, int]:
    return dict(truth.group_by("break_type").len().iter_rows())


def test_lost_responses_do_not_create_second_records(firm: Firm) -> None:
    before = {
        "workspaces": firm.estate.frame("kantata", "workspaces").height,
        "customers": firm.estate.frame("netsuite", "customer").height,
        "invoices": firm.estate.frame("stripe", "invoices").height,
    }
    injected = firm.open_truth()
    assert injected.height >= 5
    planned_keys = {
        call.headers["Idempotency-Key"]
        for item in plan_resync(firm.db, policy=FAST_POLICY)
        for call in item.calls
        if call.path == "/v1/invoices"
    }
    assert len(planned_keys) == by_type_of(injected)["invoice_missing_in_billing"]
    # The first three writes to every vendor are applied, then their answers are lost.
    for vendor in ("kantata", "netsuite", "stripe"):
        firm.faults(vendor, {"kind": "lost_response", "count": 3})

    # A repair whose every retry lost its answer fails its attempt and is retried next cycle.
    summaries = [firm.cycle() for _ in range(3)]

    assert sum(s.count("succeeded") for s in summaries) == injected.height, summaries
    assert firm.open_truth().is_empty()
    assert vendor_duplicates(firm) == {"kantata": 0, "netsuite": 0, "stripe": 0}
    by_type = by_type_of(injected)
    assert firm.estate.frame("kantata", "workspaces").height == (
        before["workspaces"] + by_type["won_deal_without_project"]
    )
    assert firm.estate.frame("netsuite", "customer").height == (
        before["customers"] + by_type["customer_missing_in_erp"]
    )
    assert firm.estate.frame("stripe", "invoices").height == (
        before["invoices"] + by_type["invoice_missing_in_billing"]
    )
    assert all(firm.matched(v, "lost_response") >= 3 for v in ("kantata", "netsuite", "stripe"))
    # Every call is on record before it left; the lost ones have no answer.
    audit = read_audit(firm.db, limit=None)  # type: ignore[arg-type]
    calls = audit.filter(pl.col("kind") == "vendor_call")
    answers = audit.filter(pl.col("kind") == "vendor_answer")
    unanswered = calls.join(answers.select("call_id"), on="call_id", how="anti")
    assert unanswered.height >= 9
    assert set(unanswered["method"]) <= {"POST", "PUT", "PATCH"}
    assert not audit["summary"].drop_nulls().str.contains("Bearer|sk_test|secret_key").any()
    # The dry run named the very Idempotency-Keys the creates were sent with.
    sent = {
        json.loads(summary)["headers"]["idempotency-key"]
        for summary in calls.filter(
            (pl.col("method") == "POST") & (pl.col("path") == "/v1/invoices")
        )["summary"]
    }
    assert sent == planned_keys
    requests = list_requests(firm.db)
    assert set(requests["status"]) == {"succeeded", "awaiting_approval"}


def test_failing_system_opens_its_circuit_and_gets_no_write_until_the_half_open_probe_succeeds(
    firm: Firm,
) -> None:
    policy = only(
        "invoice_missing_in_billing", circuit_failures=2, circuit_cooldown=timedelta(seconds=60),
        max_attempts=10,
    )  # fmt: skip
    broken = {"kind": "error", "status": 500, "endpoint": "invoices.create"}
    firm.faults("stripe", broken, {"kind": "latency", "seconds": 0})  # latency 0: counts calls
    t0 = firm.estate.now + timedelta(days=400)  # any clock; the cycle is told the time

    first = firm.cycle(policy, now=t0)

    assert first.count("retry") == 2 and first.deferred >= 1, first
    with firm.db.begin() as conn:
        circuit = store.read_circuit(conn, "stripe")
    assert circuit is not None and circuit.state == "open"
    creates, calls = firm.matched("stripe", "error"), firm.matched("stripe", "latency")

    blocked = firm.cycle(policy, now=t0 + timedelta(seconds=30))

    assert blocked.outcomes == [] and blocked.deferred >= 1
    assert (firm.matched("stripe", "error"), firm.matched("stripe", "latency")) == (creates, calls)

    probe = firm.cycle(policy, now=t0 + timedelta(seconds=61))

    assert [o.outcome for o in probe.outcomes] == ["retry"]  # one half-open probe, failed
    assert firm.matched("stripe", "error") > creates
    with firm.db.begin() as conn:
        assert store.read_circuit(conn, "stripe").state == "open"  # type: ignore[union-attr]
    registry = CollectorRegistry()
    registry.register(ResyncCollector(firm.db, systems=("stripe", "kantata")))
    assert (
        registry.get_sample_value("o2c_resync_circuit_state", {"system": "stripe", "state": "open"})
        == 1.0
    )
    assert (
        registry.get_sample_value(
            "o2c_resync_circuit_state", {"system": "kantata", "state": "closed"}
        )
        == 1.0
    )
    assert (
        registry.get_sample_value(
            "o2c_resync_attempts_total",
            {"system": "stripe", "action": "push_invoice_to_billing", "outcome": "failed"},
        )
        == 3.0
    )

    firm.sb.simulators["stripe"].faults.reset()  # the vendor recovers
    healed = firm.cycle(policy, now=t0 + timedelta(seconds=125))

    assert healed.count("succeeded") == firm.register("invoice_missing_in_billing").height
    assert firm.open_truth("invoice_missing_in_billing").is_empty()
    with firm.db.begin() as conn:
        assert store.read_circuit(conn, "stripe").state == "closed"  # type: ignore[union-attr]
    transitions = [
        json.loads(s)["to"]
        for s in read_audit(firm.db).sort("id").filter(pl.col("kind") == "circuit")["summary"]
    ]
    assert transitions == ["open", "half_open", "open", "half_open", "closed"]
    assert registry.get_sample_value(
        "o2c_resync_attempts_total",
        {"system": "stripe", "action": "push_invoice_to_billing", "outcome": "succeeded"},
    ) == float(healed.count("succeeded"))
    assert registry.get_sample_value("o2c_resync_requests", {"status": "succeeded"}) == float(
        healed.count("succeeded")
    )


def test_an_action_needing_approval_waits_runs_after_approval_and_records_both_people(
    firm: Firm,
) -> None:
    policy = only(approval_above_minor=None)  # every type manual but the deal's, left to its rule
    policy = ResyncPolicy(**{**policy.__dict__, "modes": {
        k: v for k, v in policy.modes.items() if k != "won_deal_without_project"}})  # fmt: skip
    deals = firm.register("won_deal_without_project").sort("break_id")
    assert deals.height == 2 and set(deals["remediation"]) == {"approval"}
    asked = request_resync(
        firm.db, break_id=deals["break_id"][0], requested_by="alice", policy=policy
    )
    firm.count_writes()

    waiting = firm.cycle(policy)

    assert waiting.outcomes == [] and waiting.enqueued == {"auto": 0, "approval": 1}
    assert firm.writes()["kantata"] == 0
    assert set(list_requests(firm.db)["status"]) == {"awaiting_approval"}

    approve_request(firm.db, asked, approved_by="bob", policy=policy)
    ran = firm.cycle(policy)

    assert [(o.request_id, o.outcome) for o in ran.outcomes] == [(asked, "succeeded")]
    assert firm.writes()["kantata"] >= 2  # the workspace and its external reference
    row = list_requests(firm.db).filter(pl.col("id") == asked).row(0, named=True)
    assert (row["requested_by"], row["approved_by"], row["status"]) == ("alice", "bob", "succeeded")
    audit = read_audit(firm.db, break_id=deals["break_id"][0]).sort("id")
    assert audit.filter(pl.col("kind") == "requested")["actor"].to_list() == ["alice"]
    assert audit.filter(pl.col("kind") == "approved")["actor"].to_list() == ["bob"]
    assert audit.filter(pl.col("kind") == "outcome")["summary"].str.contains("succeeded").all()
    open_deals = firm.open_truth("won_deal_without_project")
    assert open_deals.height == 1  # the other deal still waits for its approval
    assert deals["key"][1].rsplit(":", 1)[1] in open_deals["records"][0]


def test_a_manual_break_never_causes_a_write(firm: Firm) -> None:
    policy = only()  # every repairable type made manual
    firm.count_writes()

    summary = firm.cycle(policy)

    assert summary.enqueued == {"auto": 0, "approval": 0} and summary.outcomes == []
    assert firm.writes() == {"salesforce": 0, "kantata": 0, "netsuite": 0, "stripe": 0}
    for break_id in firm.register()["break_id"]:
        with pytest.raises(ResyncError, match="manual"):
            request_resync(firm.db, break_id=break_id, requested_by="alice", policy=policy)
    assert list_requests(firm.db).is_empty()
    assert firm.open_truth().height == firm.register().height


# The rate and re-fetch bookkeeping is the same SQL on both backends (covered above): SQLite only.
@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_the_rate_limit_spreads_a_systems_attempts_over_minutes(firm: Firm) -> None:
    policy = only("invoice_missing_in_billing", rate_per_minute=2)
    invoices = firm.register("invoice_missing_in_billing").height
    t0 = firm.estate.now + timedelta(days=400)

    spans = InMemorySpanExporter()
    tracing = TracerProvider()
    tracing.add_span_processor(SimpleSpanProcessor(spans))

    first = firm.cycle(policy, now=t0, tracer_provider=tracing)

    assert first.count("succeeded") == 2 and first.deferred == invoices - 2
    resyncs = [s for s in spans.get_finished_spans() if s.name == "resync push_invoice_to_billing"]
    assert [s.attributes["o2c.resync.outcome"] for s in resyncs] == ["repaired", "repaired"]
    assert firm.open_truth("invoice_missing_in_billing").height == invoices - 2
    same_minute = firm.cycle(policy, now=t0 + timedelta(seconds=40))
    assert same_minute.outcomes == [] and same_minute.deferred == invoices - 2
    # Deferred by half a minute (60 s / rate) from 40 s: due at 70 s, in the next minute.
    next_minute = firm.cycle(policy, now=t0 + timedelta(seconds=75))
    assert next_minute.count("succeeded") == 2


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_a_status_mismatch_is_re_fetched_and_fails_when_the_systems_really_disagree(
    firm: Firm,
) -> None:
    policy = only("invoice_status_mismatch", max_attempts=2)
    mismatches = firm.register("invoice_status_mismatch")
    assert mismatches.height >= 1
    firm.count_writes()

    summaries = [firm.cycle(policy) for _ in range(2)]

    outcomes = [o.outcome for s in summaries for o in s.outcomes]
    assert outcomes == ["retry"] * mismatches.height + ["failed"] * mismatches.height
    assert all("still detected" in o.detail for s in summaries for o in s.outcomes)
    assert firm.writes() == {"salesforce": 0, "kantata": 0, "netsuite": 0, "stripe": 0}
    calls = read_audit(firm.db, limit=None).filter(pl.col("kind") == "vendor_call")  # type: ignore[arg-type]
    assert set(calls["system"]) == {"netsuite", "stripe"}  # both invoices read again
    # Failed for good: the policy does not ask again; an operator may.
    assert firm.cycle(policy).enqueued == {"auto": 0, "approval": 0}
