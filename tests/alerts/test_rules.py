"""The alert rules are valid, complete and unit-tested with promtool; the Alertmanager example is valid.

``promtool check rules`` and ``promtool test rules`` run on the real binaries (installed from
Debian when absent). Beside them, the house rules every alert must follow: a ``for``, a severity
and a routing category, summary, description and a runbook that exists; only metrics o2c-monitor
exports; and a promtool test that makes each rule fire and one that keeps it quiet.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

import alerts
from collector import CollectorMetrics
from tests.system_packages import require_binaries

ROOT = Path(__file__).resolve().parents[2]
RULE_FILES = sorted(alerts.RULES_DIR.glob("*.yml"))
TEST_FILES = sorted((alerts.RULES_DIR / "tests").glob("*.yml"))
PROMQL_FUNCTIONS = {"time", "absent", "delta", "sum", "offset", "without", "by", "on", "and", "or"}


def rules() -> list[dict[str, Any]]:
    return [
        rule
        for path in RULE_FILES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
    ]


def collector_metric_names() -> set[str]:
    registry = CollectorRegistry()
    CollectorMetrics(registry)
    return {s.name for m in registry.collect() for s in m.samples} | {
        m.name for m in registry.collect()
    }


@pytest.fixture(scope="module")
def promtool() -> str:
    return require_binaries("promtool")["promtool"]


def test_promtool_accepts_every_rule_file(promtool: str) -> None:
    assert RULE_FILES
    done = subprocess.run(
        [promtool, "check", "rules", "--lint-fatal", *map(str, RULE_FILES)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_unit_tests_pass(promtool: str) -> None:
    assert TEST_FILES
    done = subprocess.run(
        [promtool, "test", "rules", *map(str, TEST_FILES)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_rule_has_for_severity_category_and_a_runbook_that_exists() -> None:
    for rule in rules():
        assert rule.get("for"), rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
        assert rule["labels"]["category"] in {alerts.DATA_BREAK, alerts.ENGINE_HEALTH}
        notes = rule["annotations"]
        assert notes["summary"] and notes["description"], rule["alert"]
        assert (ROOT / notes["runbook_url"]).is_file(), notes["runbook_url"]
        assert re.fullmatch(r"O2C[A-Za-z]+", rule["alert"])


def test_data_break_rules_name_the_systems_they_involve_for_the_inhibition() -> None:
    systems = set(alerts.involved_systems())
    for rule in rules():
        if rule["labels"]["category"] == alerts.DATA_BREAK:
            named = rule["labels"]["systems"].split(",")
            assert named == sorted(named) and set(named) <= systems, rule["alert"]
            assert rule["labels"]["stage"]


def test_rules_use_only_metrics_we_export() -> None:
    exported = alerts.SERIES_NAMES | collector_metric_names()
    for rule in rules():
        used = set(re.findall(r"\b(o2c_[a-z_]+)\b", rule["expr"]))
        assert used and used <= exported, (rule["alert"], used - exported)


def test_every_rule_has_a_promtool_test_that_fires_it_and_one_that_keeps_it_quiet() -> None:
    fired: set[str] = set()
    quiet: set[str] = set()
    for path in TEST_FILES:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (fired if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in rules()}
    assert names - fired == set()
    assert names - quiet == set()


def test_the_alertmanager_example_is_valid_and_inhibits_per_system() -> None:
    amtool = require_binaries("amtool")["amtool"]
    done = subprocess.run(
        [amtool, "check-config", str(alerts.ALERTMANAGER_EXAMPLE)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    config = yaml.safe_load(alerts.ALERTMANAGER_EXAMPLE.read_text())
    inhibited = {
        m for rule in config["inhibit_rules"] for m in rule["source_matchers"] if "system=" in m
    }
    assert inhibited == {f'system="{s}"' for s in alerts.involved_systems()}
    assert "stage" in config["route"]["group_by"]
