"""Stuck transactions reach on-call through a real Alertmanager: grouped by stage, muted while a
source they involve is stale, re-sent while firing and resolved when the break clears.

Alertmanager runs the example configuration (``alerts/alertmanager.yml``) with its receivers
pointed at a webhook this test serves and its timers shortened; the store holds a hand-built
estate reconciled for real, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

import alerts
import store
from reconciler import accept_break, run_reconcile
from tests.alerts.servers import Webhook, free_port, process, wait_for
from tests.reconciler.estate import AS_OF, Estate, ago, day
from tests.reconciler.test_kpis import CONFIG, estate
from tests.system_packages import require_binaries

CONSOLE = "http://console.test"
BOUNDED_LABELS = {"alertname", "category", "stage", "break_type", "severity", "system", "systems",
                  "legal_entity", "break_id"}  # fmt: skip


def stuck_estate() -> Estate:
    """The KPI estate (deal O5 won without a project; leaked time T3 and milestone M2) plus an
    ERP invoice E9 that never reached billing."""
    e = estate()
    e.erp_invoice("E9", total=5_000, issued=day(10))
    return e


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[tuple[str, Webhook]]:
    binary = require_binaries("prometheus-alertmanager")["prometheus-alertmanager"]
    config = yaml.safe_load(alerts.ALERTMANAGER_EXAMPLE.read_text())
    with Webhook() as hook:
        config["route"].update(group_wait="1s", group_interval="1s", repeat_interval="1h")
        for receiver in config["receivers"]:
            for webhook in receiver["webhook_configs"]:
                webhook["url"] = re.sub(r"^http://[^/]+", hook.url, webhook["url"])
        path = tmp_path / "alertmanager.yml"
        path.write_text(yaml.safe_dump(config))
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        args = [binary, f"--config.file={path}", f"--storage.path={tmp_path / 'am'}",
                f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="]  # fmt: skip
        with process(args, ready_url=f"{url}/-/ready", log=tmp_path / "alertmanager.log"):
            yield url, hook


def am_alerts(url: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{url}/api/v2/alerts", timeout=5)
    response.raise_for_status()
    result: list[dict[str, Any]] = response.json()
    return result


def notified(hook: Webhook, path: str) -> list[dict[str, Any]]:
    """Every alert in the notifications posted to ``path``, with the notification's status."""
    return [
        {**alert, "group_status": body["status"], "group": body["groupLabels"]}
        for at, body in hook.notifications() if at == path for alert in body["alerts"]
    ]  # fmt: skip


def source_stale(system: str) -> dict[str, Any]:
    """The alert Prometheus sends when O2CSourceStale fires for ``system``."""
    return {
        "labels": {"alertname": "O2CSourceStale", "severity": "critical",
                   "category": "engine_health", "system": system},
        "annotations": {"summary": f"{system} has not been read successfully for over an hour."},
        "startsAt": datetime.now(UTC).isoformat(),
    }  # fmt: skip


def test_stuck_breaks_become_one_alert_each_with_bounded_labels(db: store.Store) -> None:
    stuck_estate().write(db)
    run_reconcile(db, as_of=AS_OF, config=CONFIG)
    with db.begin() as conn:
        register = store.read_break_register(conn)
    built = alerts.build_alerts(register, now=AS_OF, sent_at=datetime.now(UTC),
                                resend_ttl=timedelta(minutes=15), console_url=CONSOLE)  # fmt: skip
    by_type = {a["labels"]["break_type"]: a for a in built}
    # only the stuck types, one alert per break (invoice_overdue and mismatches are not stuck)
    assert set(by_type) == {"won_deal_without_project", "approved_time_not_invoiced",
                            "completed_milestone_not_invoiced", "invoice_missing_in_billing"}  # fmt: skip
    won = by_type["won_deal_without_project"]
    assert won["labels"] == {
        "alertname": "O2CTransactionStuck", "category": "data_break", "stage": "won",
        "break_type": "won_deal_without_project", "severity": "critical",
        "system": "salesforce", "systems": "kantata,salesforce", "legal_entity": "US01",
        "break_id": won["labels"]["break_id"],
    }  # fmt: skip
    assert "O5" in won["annotations"]["records"]
    assert won["annotations"]["amount"] == "100.00 USD"
    assert won["annotations"]["age_days"] == "26.0"  # won 40 days ago, 14 days of grace
    assert won["generatorURL"] == f"{CONSOLE}/breaks?break={won['labels']['break_id']}"
    billing = by_type["invoice_missing_in_billing"]["labels"]
    assert (billing["stage"], billing["systems"]) == ("invoiced", "netsuite,stripe")
    for alert in built:
        assert set(alert["labels"]) == BOUNDED_LABELS
        ids = re.compile(r"\b(O5|T3|M2|E9|K\d|P\d)\b")
        assert not any(ids.search(v) for v in alert["labels"].values()), alert["labels"]


def test_alertmanager_groups_by_stage_mutes_stale_sources_and_resolves(
    db: store.Store, alertmanager: tuple[str, Webhook]
) -> None:
    url, hook = alertmanager
    e = stuck_estate()
    e.write(db)
    run_reconcile(db, as_of=AS_OF, config=CONFIG)

    # Stripe is stale: the invoice waiting for it must not page anyone.
    httpx.post(f"{url}/api/v2/alerts", json=[source_stale("stripe")], timeout=5).raise_for_status()
    wait_for(lambda: am_alerts(url), what="the stale-source alert in Alertmanager")
    report = alerts.push_stuck_alerts(db, url, console_url=CONSOLE, now=AS_OF)
    assert report.ok and (report.firing, report.resolved) == (4, 0)

    def data_groups() -> dict[str, list[dict[str, Any]]]:
        groups: dict[str, list[dict[str, Any]]] = {}
        for alert in notified(hook, "/o2c/oncall"):
            groups.setdefault(alert["group"]["stage"], []).append(alert)
        return groups

    groups = wait_for(lambda: len(data_groups()) == 2 and data_groups(), what="two stage groups")
    assert sorted(groups) == ["project_active", "won"]
    assert sorted(a["labels"]["break_type"] for a in groups["project_active"]) == [
        "approved_time_not_invoiced", "completed_milestone_not_invoiced"]  # fmt: skip
    assert [a["labels"]["break_type"] for a in groups["won"]] == ["won_deal_without_project"]
    assert all(a["status"] == "firing" for g in groups.values() for a in g)
    engine = wait_for(lambda: notified(hook, "/o2c/engine"), what="the engine-health notification")
    assert engine[0]["labels"]["alertname"] == "O2CSourceStale"
    held = {a["labels"].get("break_type"): a["status"] for a in am_alerts(url)}
    assert held["invoice_missing_in_billing"]["state"] == "suppressed"
    assert held["invoice_missing_in_billing"]["inhibitedBy"]
    assert held["won_deal_without_project"]["state"] == "active"
    assert not any(
        a["labels"]["break_type"] == "invoice_missing_in_billing"
        for path in ("/o2c/oncall", "/o2c/tickets") for a in notified(hook, path)
    )  # fmt: skip

    # A day later the deal has its project: the next reconcile resolves the break, the next push
    # sends it with endsAt, and Alertmanager tells on-call it is resolved. The others re-fire.
    later = AS_OF + timedelta(days=1)
    e.project("P5", "O5", budget=10_000, created_at_source=ago(0.5))
    e.write(db)
    run_reconcile(db, as_of=later, config=CONFIG)
    report = alerts.push_stuck_alerts(db, url, console_url=CONSOLE, now=later)
    sent = sorted((a["labels"]["break_type"], a["annotations"]["status"]) for a in report.alerts)
    assert report.ok and (report.firing, report.resolved) == (3, 1), sent

    def resolved() -> list[dict[str, Any]]:
        return [a for a in notified(hook, "/o2c/oncall") if a["status"] == "resolved"]

    done = wait_for(resolved, what="the resolved notification")
    assert [a["labels"]["break_type"] for a in done] == ["won_deal_without_project"]
    assert done[0]["group"] == {"category": "data_break", "stage": "won"}
    still = {
        a["labels"].get("break_type") for a in am_alerts(url) if a["status"]["state"] == "active"
    }
    assert "won_deal_without_project" not in still
    assert {"approved_time_not_invoiced", "completed_milestone_not_invoiced"} <= still


def test_an_unreachable_alertmanager_is_reported_not_raised(db: store.Store) -> None:
    stuck_estate().write(db)
    run_reconcile(db, as_of=AS_OF, config=CONFIG)
    report = alerts.push_stuck_alerts(
        db, f"http://127.0.0.1:{free_port()}", console_url=CONSOLE, now=AS_OF
    )
    assert not report.ok and report.error and report.firing == 4


def test_each_push_resends_what_fires_and_an_accepted_break_ends_then_drops_out(
    db: store.Store,
) -> None:
    posted: list[list[dict[str, Any]]] = []

    def alertmanager(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/api/v2/alerts"
        posted.append(json.loads(request.content))
        return httpx.Response(200)

    client = httpx.Client(transport=httpx.MockTransport(alertmanager))
    stuck_estate().write(db)
    run_reconcile(db, as_of=AS_OF, config=CONFIG)

    def push(now: datetime) -> dict[str, dict[str, Any]]:
        report = alerts.push_stuck_alerts(db, "http://am.test", console_url=CONSOLE, now=now,
                                          client=client)  # fmt: skip
        assert report.ok
        return {a["labels"]["break_type"]: a for a in posted[-1]}

    first = push(AS_OF)
    again = push(AS_OF + timedelta(minutes=1))  # a restarted process sends the same alerts
    assert {k: a["labels"] for k, a in again.items()} == {k: a["labels"] for k, a in first.items()}
    wall = datetime.now(UTC)
    assert all(datetime.fromisoformat(a["endsAt"]) > wall for a in again.values())

    won_id = first["won_deal_without_project"]["labels"]["break_id"]
    accepted_at = AS_OF + timedelta(hours=1)
    accept_break(db, won_id, note="customer postponed the start", actor="ops@example.com",
                 until=AS_OF + timedelta(days=30), at=accepted_at)  # fmt: skip
    ended = push(accepted_at + timedelta(minutes=1))
    assert (
        ended["won_deal_without_project"]["labels"] == first["won_deal_without_project"]["labels"]
    )
    assert datetime.fromisoformat(ended["won_deal_without_project"]["endsAt"]) == accepted_at
    assert datetime.fromisoformat(ended["approved_time_not_invoiced"]["endsAt"]) > wall

    later = push(accepted_at + timedelta(minutes=30))  # past the 15 minutes of resending
    assert "won_deal_without_project" not in later
    assert len(later) == 3
