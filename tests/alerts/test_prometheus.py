"""A real Prometheus scrapes the exporter over a sandbox-fed store and evaluates the alert rules.

The store holds a sandbox estate synced through the real collector, reconciled for real. The
exporter is served on loopback by prometheus-client's HTTP server (as ``o2c collect`` serves it);
Prometheus scrapes it every second and evaluates a copy of ``alerts/rules/o2c.yml`` whose ``for``
durations are cut to one second. What fires is read back from Prometheus's ``/api/v1/alerts``.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client import CollectorRegistry, start_http_server

import alerts
import store
from reconciler import run_reconcile
from tests.alerts.conftest import SandboxEstate
from tests.alerts.servers import free_port, process, wait_for
from tests.system_packages import require_binaries


@pytest.fixture
def metrics_url(db: store.Store) -> Iterator[str]:
    registry = CollectorRegistry()
    alerts.register_exporter(registry, db)
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    yield f"http://127.0.0.1:{server.server_port}/metrics"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def short_rules(path: Path) -> Path:
    """A copy of the rule files with every ``for`` cut to 1s (the test copy)."""
    groups = []
    for rule_file in sorted(alerts.RULES_DIR.glob("*.yml")):
        for group in yaml.safe_load(rule_file.read_text())["groups"]:
            for rule in group["rules"]:
                rule["for"] = "1s"
            groups.append(group)
    path.write_text(yaml.safe_dump({"groups": groups}))
    return path


def prom_get(url: str, path: str, **params: str) -> Any:
    response = httpx.get(f"{url}{path}", params=params, timeout=5)
    response.raise_for_status()
    body = response.json()
    assert body["status"] == "success", body
    return body["data"]


def test_prometheus_scrapes_the_exporter_and_the_data_break_rules_fire(
    db: store.Store, sandbox_estate: SandboxEstate, metrics_url: str, tmp_path: Path
) -> None:
    binaries = require_binaries("prometheus", "promtool")
    sandbox_estate.write(db)
    report = run_reconcile(db, as_of=sandbox_estate.now)
    kpis = {(k, d): v for k, d, v in report.kpis.select("kpi", "dimension", "value").iter_rows()}
    open_billing = report.open_by_type["invoice_missing_in_billing"]
    expected = {
        "O2CInvoicesMissingInBilling": open_billing,
        "O2CDuplicatePayments": report.open_by_type["duplicate_payment"],
        "O2CWonDealsWithoutProject": kpis[
            "open_breaks_sla_breached_count", "type=won_deal_without_project"
        ],
    }
    assert open_billing > 0 and expected["O2CDuplicatePayments"] > 0  # the estate has them

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(short_rules(tmp_path / "rules.yml"))],
        "scrape_configs": [{"job_name": "o2c", "static_configs": [
            {"targets": [metrics_url.removeprefix("http://").removesuffix("/metrics")]}]}],
    }  # fmt: skip
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    args = [binaries["prometheus"], f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"]  # fmt: skip
    with process(args, ready_url=f"{url}/-/ready", log=tmp_path / "prometheus.log"):

        def firing() -> dict[str, float]:
            alerts_now = prom_get(url, "/api/v1/alerts")["alerts"]
            return {
                a["labels"]["alertname"]: float(a["value"])
                for a in alerts_now if a["state"] == "firing"
            }  # fmt: skip

        wanted = {name for name, n in expected.items() if n}
        fired = wait_for(lambda: wanted <= set(firing()) and firing(), what=f"{wanted} firing")
        for name in wanted:
            assert fired[name] == expected[name], name
        # engine health is fine: fresh sources, a reconcile just now, the store readable
        assert not {"O2CSourceStale", "O2CSourceFailing", "O2CReconcileNotRun",
                    "O2CExporterStoreDown"} & set(fired)  # fmt: skip

        target = prom_get(url, "/api/v1/targets")["activeTargets"][0]
        assert target["health"] == "up", target
        total = prom_get(url, "/api/v1/query", query="sum(o2c_breaks_open)")["result"]
        assert float(total[0]["value"][1]) == sum(report.open_by_type.values())

    scrape = httpx.get(metrics_url, timeout=10).text
    lint = subprocess.run([binaries["promtool"], "check", "metrics"], input=scrape,
                          capture_output=True, text=True)  # fmt: skip
    assert lint.returncode == 0, lint.stdout + lint.stderr
