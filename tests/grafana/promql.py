"""What the Grafana tests need to read a dashboard's PromQL: its metric names and Grafana's variables.

``metric_names`` finds the series a PromQL expression selects (not the functions, keywords, label
names, durations or strings around them). ``interpolate`` does what Grafana does to a query before
it sends it: ``$__rate_interval`` and ``$__range`` become durations, a multi-value variable
becomes a regex (``.*`` for All, the value regex-escaped for one value).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry

import alerts
from collector import CollectorMetrics

_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
             "unless", "offset", "inf", "nan"}  # fmt: skip
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")

PROMETHEUS_SERIES = frozenset({"ALERTS"})
"""Series Prometheus itself makes that the dashboards read: ALERTS, from the loaded alert rules."""


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects, e.g. ``{"o2c_dso_seconds"}``."""
    text = _STRING.sub('""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # range and subquery durations
    text = _GROUPING.sub(" ", text)  # label lists of by/on/... clauses
    names = set()
    for match in _IDENT.finditer(text):
        before = text[match.start() - 1] if match.start() else " "
        after = text[match.end() :].lstrip()
        if before.isdigit() or before in ".$":  # a duration (1d), an exponent, a variable
            continue
        if after.startswith("(") or match.group().lower() in _KEYWORDS:  # a function, a keyword
            continue
        names.add(match.group())
    return names


def declared_series() -> frozenset[str]:
    """Every sample name o2c-monitor's /metrics may show: the exporter's catalogue and the
    collector's instruments (histograms as _bucket/_sum/_count, counters with _total)."""
    registry = CollectorRegistry()
    CollectorMetrics(registry).observe_freshness(dict)
    collector: set[str] = set()
    for family in registry.collect():
        if family.type == "counter":
            collector.add(f"{family.name}_total")
        elif family.type == "histogram":
            collector |= {f"{family.name}_{suffix}" for suffix in ("bucket", "sum", "count")}
        else:
            collector.add(family.name)
    return alerts.SERIES_NAMES | frozenset(collector)


# --------------------------------------------------------------------------- dashboards


def panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel that shows data (rows are containers), including panels inside rows."""
    for panel in dashboard.get("panels", []):
        if panel["type"] == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def targets(dashboard: Mapping[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(panel, target) for every query of every panel."""
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            yield panel, target


def variables(dashboard: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in dashboard["templating"]["list"]}


def used_variables(expr: str) -> set[str]:
    """Variable names a query refers to (``$name`` or ``${name}``), built-ins included."""
    return {a or b for a, b in re.findall(r"\$\{(\w+)\}|\$(\w+)", expr)}


BUILTINS = {"__rate_interval": "1m", "__range": "1h", "__interval": "15s"}
"""Grafana's built-in variables and the values the tests give them (Prometheus scrapes every 1 s)."""

_REGEX_SPECIAL = re.compile(r"([\\^$*+?.()|{}\[\]])")


def regex_value(values: list[str] | None) -> str:
    """A multi-value variable as Grafana writes it into a PromQL regex: None is All (``.*``)."""
    if values is None:
        return ".*"
    escaped = [_REGEX_SPECIAL.sub(r"\\\\\1", v) for v in values]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def interpolate(
    expr: str, chosen: Mapping[str, list[str] | None], *, min_interval: str | None = None
) -> str:
    """``expr`` with built-ins and the dashboard variables in ``chosen`` substituted; a panel's
    minimum interval (its ``interval``) becomes its ``$__rate_interval``, as in Grafana."""
    builtins = {**BUILTINS, "__rate_interval": min_interval} if min_interval else BUILTINS

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name in builtins:
            return builtins[name]
        return regex_value(chosen[name])

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, expr)


def label_values_query(query: str) -> tuple[str, str]:
    """``label_values(metric, label)`` -> (metric, label)."""
    match = re.fullmatch(r"label_values\(\s*([\w:]+)\s*,\s*(\w+)\s*\)", query.strip())
    assert match, f"not a label_values(metric, label) query: {query}"
    return match.group(1), match.group(2)
