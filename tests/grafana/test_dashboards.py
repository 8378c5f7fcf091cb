"""The dashboards are code: the committed JSON is what the code generates, Grafana's model reads it
back unchanged, every query uses only metrics o2c-monitor declares, and the lint rules hold.

The lint rules are those of grafana/dashboard-linter that fit us: one ``datasource`` variable and
no hard-coded data source uid anywhere, a title, description and unit on every panel, rates over
``$__rate_interval``, and every template variable both defined and used.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.models.dashboard import Dashboard
from grafana_foundation_sdk.models.dashboard import Panel as PanelModel
from grafana_foundation_sdk.models.prometheus import Dataquery as PrometheusQuery

import alerts
import grafana
from grafana.generate import main as generate
from tests.grafana.promql import (
    BUILTINS,
    PROMETHEUS_SERIES,
    declared_series,
    metric_names,
    panels,
    targets,
    used_variables,
    variables,
)

COMMITTED = {name: json.loads((grafana.DASHBOARDS_DIR / name).read_text())
             for name in grafana.DASHBOARDS}  # fmt: skip
BY_UID = {d["uid"]: d for d in COMMITTED.values()}
DATASOURCE_REF = {"type": "prometheus", "uid": "${datasource}"}


def every_dashboard() -> pytest.MarkDecorator:
    return pytest.mark.parametrize("dashboard", list(COMMITTED.values()), ids=list(COMMITTED))


def rule_exprs() -> list[tuple[str, str]]:
    return [
        (rule["alert"], rule["expr"])
        for path in sorted(alerts.RULES_DIR.glob("*.yml"))
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
    ]


# --------------------------------------------------------------------------- dashboards as code


def test_the_committed_json_is_what_the_code_generates() -> None:
    assert grafana.stale_dashboards() == []
    assert {n: grafana.render(m) for n, m in grafana.build_dashboards().items()} == {
        name: (grafana.DASHBOARDS_DIR / name).read_text() for name in grafana.DASHBOARDS
    }
    assert sorted(p.name for p in grafana.DASHBOARDS_DIR.glob("*.json")) == sorted(
        grafana.DASHBOARDS
    )


def test_the_generator_rewrites_a_stale_file_and_check_names_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert generate(["--dir", str(tmp_path)]) == 0
    assert generate(["--check", "--dir", str(tmp_path)]) == 0
    edited = tmp_path / "o2c-pipeline.json"
    edited.write_text(edited.read_text().replace('"s"', '"ms"', 1))
    (tmp_path / "hand-made.json").write_text("{}")
    capsys.readouterr()
    assert generate(["--check", "--dir", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "o2c-pipeline.json" in out and "hand-made.json" in out
    assert generate(["--dir", str(tmp_path)]) == 0
    assert generate(["--check", "--dir", str(tmp_path)]) == 0
    assert not (tmp_path / "hand-made.json").exists()


@every_dashboard()
def test_grafanas_dashboard_model_reads_the_json_back_unchanged(dashboard: dict[str, Any]) -> None:
    """A key the SDK's model (Grafana 11.6 schema) does not know would be dropped on the way."""
    register_default_plugins()  # so panel options and Prometheus queries decode to their types
    model = Dashboard.from_json(dashboard)
    again = json.loads(JSONEncoder().encode(model))
    assert again == {k: v for k, v in dashboard.items() if k != "id"}
    shown = [p for p in model.panels or [] if isinstance(p, PanelModel)]
    assert {p.type_val for p in shown} <= {"stat", "timeseries", "table"}
    for panel in shown:  # decoded to the typed options and queries, not left as plain dicts
        assert type(panel.options).__module__.endswith(f".{panel.type_val}"), panel.title
        assert all(isinstance(t, PrometheusQuery) for t in panel.targets or []), panel.title


def test_the_three_dashboards_have_stable_uids_and_no_instance_id() -> None:
    assert sorted(BY_UID) == ["o2c-executive", "o2c-on-call", "o2c-pipeline"]
    for name, dashboard in COMMITTED.items():
        assert dashboard["uid"] == name.removesuffix(".json")
        assert len(dashboard["uid"]) <= 40
        assert "id" in dashboard and dashboard["id"] is None
        assert dashboard["title"] and dashboard["description"]
    assert len({d["title"] for d in COMMITTED.values()}) == 3


@every_dashboard()
def test_panels_are_numbered_once_and_fit_the_grid(dashboard: dict[str, Any]) -> None:
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    taken: dict[tuple[int, int], str] = {}
    for panel in dashboard["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in taken, f"{panel['title']} overlaps {taken[x, y]}"
                taken[x, y] = panel["title"]
    for panel in panels(dashboard):
        refs = [t["refId"] for t in panel["targets"]]
        assert refs == [chr(ord("A") + i) for i in range(len(refs))], panel["title"]


# --------------------------------------------------------------------------- metric names


def test_reading_metric_names_out_of_promql() -> None:
    assert metric_names(
        'sum by (system, kind) (rate(o2c_probe_errors_total{system=~"$system"}[$__rate_interval]))'
        "\nor on (system) 0 * max by (system) (o2c_source_failing)"
    ) == {"o2c_probe_errors_total", "o2c_source_failing"}
    assert metric_names("histogram_quantile(0.9, sum by (le) (a_bucket)) / 86400 > 1e3") == {
        "a_bucket"
    }
    assert metric_names('x offset 1d and on (l) y{l="sum(z)"} or vector(0)') == {"x", "y"}
    assert metric_names('count(ALERTS{alertstate="firing"})') == {"ALERTS"}


def test_every_metric_a_panel_or_a_rule_uses_is_one_o2c_monitor_declares() -> None:
    declared = declared_series() | PROMETHEUS_SERIES
    used: dict[str, set[str]] = {}
    for dashboard in COMMITTED.values():
        for panel, target in targets(dashboard):
            where = f"{dashboard['uid']}: {panel['title']}"
            used[where] = metric_names(target["expr"])
        for variable in variables(dashboard).values():
            if variable["type"] == "query":
                used[f"{dashboard['uid']}: ${variable['name']}"] = metric_names(
                    variable["query"].removeprefix("label_values(").split(",")[0]
                )
    for alert, expr in rule_exprs():
        used[f"rule {alert}"] = metric_names(expr)
    assert all(used.values()), [where for where, names in used.items() if not names]
    unknown = {where: names - declared for where, names in used.items() if names - declared}
    assert unknown == {}


def test_the_dashboards_show_the_exporters_kpis_and_the_collectors_health() -> None:
    """Every business KPI of the catalogue is on the executive dashboard; probe errors, quota and
    reconcile duration on the pipeline one; stuck deals and alert state on the on-call one."""
    on = {uid: set().union(*(metric_names(t["expr"]) for _, t in targets(d)))
          for uid, d in BY_UID.items()}  # fmt: skip
    kpis = {
        "o2c_project_setup_cycle_time_seconds_bucket", "o2c_billing_lag_seconds_bucket",
        "o2c_time_to_cash_seconds_bucket", "o2c_dso_seconds", "o2c_receivables_amount",
        "o2c_receivables_ageing_amount", "o2c_revenue_leakage_amount", "o2c_bookings_amount",
        "o2c_billings_amount", "o2c_bookings_to_billings_ratio", "o2c_backlog_amount",
        "o2c_invoice_accuracy_ratio", "o2c_breaks_resolved_last_run",
    }  # fmt: skip
    assert kpis <= on["o2c-executive"]
    assert {"o2c_transactions_stuck", "o2c_transactions_stuck_oldest_timestamp_seconds",
            "ALERTS", "o2c_breaks_open", "o2c_breaks_sla_breached",
            "o2c_resync_circuit_state"} <= on["o2c-on-call"]  # fmt: skip
    assert {"o2c_probe_last_success_timestamp_seconds", "o2c_probe_errors_total",
            "o2c_probe_quota_used_ratio", "o2c_reconcile_last_duration_seconds",
            "o2c_probe_cycle_duration_seconds_bucket", "o2c_completeness_mismatch_records",
            "o2c_source_last_success_timestamp_seconds"} <= on["o2c-pipeline"]  # fmt: skip


# --------------------------------------------------------------------------- lint


def _datasource_refs(node: Any, path: str = "$") -> list[tuple[str, Any]]:
    found: list[tuple[str, Any]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource":
                found.append((f"{path}.{key}", value))
            found += _datasource_refs(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, item in enumerate(node):
            found += _datasource_refs(item, f"{path}[{i}]")
    return found


@every_dashboard()
def test_one_datasource_variable_and_no_hard_coded_datasource_uid(
    dashboard: dict[str, Any],
) -> None:
    ds_vars = [v for v in dashboard["templating"]["list"] if v["type"] == "datasource"]
    assert [(v["name"], v["query"]) for v in ds_vars] == [("datasource", "prometheus")]
    refs = _datasource_refs(dashboard)
    assert refs, "no panel names a data source"
    assert {json.dumps(ref) for _, ref in refs} == {json.dumps(DATASOURCE_REF)}, refs
    provisioned = yaml.safe_load(
        (grafana.PROVISIONING_DIR / "datasources" / "o2c-prometheus.yml").read_text()
    )["datasources"][0]["uid"]
    assert provisioned not in json.dumps(dashboard)


GRAFANA_UNITS = {
    line
    for line in (Path(__file__).parent / "grafana-units.txt").read_text().splitlines()
    if line and not line.startswith("#")
}


def is_grafana_unit(unit: str) -> bool:
    """A unit Grafana lists, or one of its custom units (``suffix:days``, ``prefix:$``)."""
    return (
        unit in GRAFANA_UNITS
        or re.fullmatch(r"(suffix|prefix|si|count|currency):\S.*", unit) is not None
    )


def test_a_unit_is_one_grafana_knows() -> None:
    assert {"s", "short", "none", "percentunit", "cpm"} <= GRAFANA_UNITS
    assert is_grafana_unit("suffix:days") and not is_grafana_unit("suffix: days")
    assert not is_grafana_unit("days") and not is_grafana_unit("")


@every_dashboard()
def test_every_panel_has_a_title_a_description_and_a_unit(dashboard: dict[str, Any]) -> None:
    for panel in panels(dashboard):
        assert panel["title"].strip(), panel
        assert len(panel.get("description", "")) >= 20, panel["title"]
        assert is_grafana_unit(panel["fieldConfig"]["defaults"].get("unit", "")), panel["title"]
        # never Grafana's default thresholds (red from 80), which would paint amounts red
        steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
        assert steps[0]["value"] is None and steps[0]["color"], panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip() and target["legendFormat"], panel["title"]


@every_dashboard()
def test_rates_are_taken_over_rate_interval(dashboard: dict[str, Any]) -> None:
    for panel, target in targets(dashboard):
        expr = target["expr"]
        for function, window in re.findall(r"\b(\w+)\([^()]*?\[([^\]]+)\]", expr):
            if function in {"rate", "irate"}:
                assert window == "$__rate_interval", (panel["title"], expr)
            else:  # increase over the dashboard's whole range, for a single stat
                assert (function, window, panel["type"]) == ("increase", "$__range", "stat"), (
                    panel["title"], expr)  # fmt: skip


@every_dashboard()
def test_every_variable_is_defined_used_and_selects_all_by_default(
    dashboard: dict[str, Any],
) -> None:
    defined = variables(dashboard)
    used = set().union(*(used_variables(t["expr"]) for _, t in targets(dashboard)))
    assert used - set(BUILTINS) <= set(defined) - {"datasource"}
    assert set(defined) - {"datasource"} <= used
    for variable in defined.values():
        if variable["type"] == "query":
            assert variable["datasource"] == DATASOURCE_REF
            assert variable["multi"] and variable["includeAll"] and variable["allValue"] == ".*"
            assert variable["current"]["value"] == ["$__all"]
            assert variable["query"].startswith("label_values(")


def test_legal_entity_and_system_variables_are_where_their_labels_are() -> None:
    assert set(variables(BY_UID["o2c-executive"])) == {"datasource", "legal_entity"}
    assert set(variables(BY_UID["o2c-on-call"])) == {"datasource", "legal_entity", "system"}
    assert set(variables(BY_UID["o2c-pipeline"])) == {"datasource", "system"}


# --------------------------------------------------------------------------- provisioning


def test_provisioning_declares_the_prometheus_and_a_provider_for_the_dashboards() -> None:
    datasources = yaml.safe_load(
        (grafana.PROVISIONING_DIR / "datasources" / "o2c-prometheus.yml").read_text()
    )
    assert datasources["apiVersion"] == 1
    [source] = datasources["datasources"]
    assert source["type"] == "prometheus" and source["access"] == "proxy"
    assert source["isDefault"] is True and source["url"].startswith("http")
    assert re.fullmatch(r"\d+[smh]", source["jsonData"]["timeInterval"])

    providers = yaml.safe_load((grafana.PROVISIONING_DIR / "dashboards" / "o2c.yml").read_text())
    assert providers["apiVersion"] == 1
    [provider] = providers["providers"]
    assert provider["type"] == "file" and provider["options"]["path"].startswith("/")
    assert provider["allowUiUpdates"] is False  # the code is the source of truth
    assert provider["folderUid"] and provider["folder"]
