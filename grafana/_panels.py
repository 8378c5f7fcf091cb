"""Panel, query and variable builders shared by the three dashboards (grafana-foundation-sdk underneath).

Every panel reads the Prometheus data source chosen in the ``datasource`` variable (never a
hard-coded uid), has a description and a unit, and its queries get ``refId`` A, B, ... in order.
Rates use ``$__rate_interval``; label filters use the dashboard's ``legal_entity`` and ``system``
variables (multi-value, "All" = ``.*``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, Self, TypeVar

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus, stat, table, timeseries
from grafana_foundation_sdk.builders.common import (
    StackingConfig,
    VizLegendOptions,
    VizTooltipOptions,
)
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models.common import (
    BigValueColorMode,
    BigValueGraphMode,
    FieldTextAlignment,
    GraphDrawStyle,
    LegendDisplayMode,
    LegendPlacement,
    SortOrder,
    StackingMode,
    TooltipDisplayMode,
)
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

DATASOURCE = model.DataSourceRef(type_val="prometheus", uid="${datasource}")
"""Every panel and query points at the data source variable, never at a fixed uid."""


@dataclass(frozen=True)
class Query:
    """One PromQL target: its expression, legend and whether Grafana asks for one instant."""

    expr: str
    legend: str = "__auto"
    instant: bool = False


@dataclass(frozen=True)
class Step:
    """A threshold step: from ``value`` (None = from minus infinity) the panel shows ``color``."""

    value: float | None
    color: str


NEUTRAL = (Step(None, "text"),)
"""The thresholds of a panel that has none to show: every value in the text colour."""


class _Panel(Protocol):
    def title(self, title: str) -> Self: ...
    def description(self, description: str) -> Self: ...
    def unit(self, unit: str) -> Self: ...
    def datasource(self, datasource: model.DataSourceRef) -> Self: ...
    def span(self, w: int) -> Self: ...
    def height(self, h: int) -> Self: ...
    def decimals(self, decimals: float) -> Self: ...
    def min(self, min_val: float) -> Self: ...
    def thresholds(self, thresholds: Builder[model.ThresholdsConfig]) -> Self: ...
    def mappings(self, mappings: list[model.ValueMapping]) -> Self: ...
    def with_target(self, target: Builder[Any]) -> Self: ...


P = TypeVar("P", bound=_Panel)


def _common(
    panel: P,
    title: str,
    description: str,
    unit: str,
    queries: Sequence[Query],
    *,
    width: int,
    height: int,
    decimals: int | None,
    steps: Sequence[Step] | None,
    mappings: dict[str, tuple[str, str]] | None,
    table_format: bool = False,
) -> P:
    panel = (
        panel.title(title)
        .description(description)
        .unit(unit)
        .datasource(DATASOURCE)
        .span(width)
        .height(height)
    )
    if decimals is not None:
        panel = panel.decimals(decimals)
    # Without thresholds of its own a panel would get Grafana's default (red from 80), which
    # would paint any amount above 80 red: such panels get one neutral step instead.
    steps = steps if steps is not None else NEUTRAL
    panel = panel.thresholds(
        db.ThresholdsConfig()
        .mode(model.ThresholdsMode.ABSOLUTE)
        .steps([model.Threshold(value=s.value, color=s.color) for s in steps])
    )
    if mappings is not None:
        options = {
            value: model.ValueMappingResult(text=text, color=color, index=i)
            for i, (value, (text, color)) in enumerate(mappings.items())
        }
        panel = panel.mappings([model.ValueMap(options=options)])
    for i, q in enumerate(queries):
        target = (
            prometheus.Dataquery()
            .expr(q.expr)
            .legend_format(q.legend)
            .ref_id(chr(ord("A") + i))
            .datasource(DATASOURCE)
        )
        if table_format:
            target = target.format(PromQueryFormat.TABLE)
        panel = panel.with_target(target.instant() if q.instant else target.range())
    return panel


def stat_panel(
    title: str,
    description: str,
    unit: str,
    *queries: Query,
    width: int = 6,
    height: int = 5,
    decimals: int | None = None,
    steps: Sequence[Step] | None = None,
    mappings: dict[str, tuple[str, str]] | None = None,
) -> stat.Panel:
    """A big number (with a sparkline over the dashboard range)."""
    panel = stat.Panel().graph_mode(BigValueGraphMode.AREA).color_mode(BigValueColorMode.VALUE)
    return _common(
        panel, title, description, unit, queries, width=width, height=height,
        decimals=decimals, steps=steps, mappings=mappings,
    )  # fmt: skip


def timeseries_panel(
    title: str,
    description: str,
    unit: str,
    *queries: Query,
    width: int = 12,
    height: int = 8,
    decimals: int | None = None,
    steps: Sequence[Step] | None = None,
    stacked: bool = False,
    bars: bool = False,
    min_interval: str | None = None,
) -> timeseries.Panel:
    """A graph over the dashboard's time range. ``min_interval`` keeps Grafana's step, and so
    ``$__rate_interval``, at least that long: for events that come minutes apart."""
    panel = (
        timeseries.Panel()
        .fill_opacity(10)
        .legend(
            VizLegendOptions()
            .show_legend(True)
            .display_mode(LegendDisplayMode.LIST)
            .placement(LegendPlacement.BOTTOM)
        )
        .tooltip(VizTooltipOptions().mode(TooltipDisplayMode.MULTI).sort(SortOrder.DESCENDING))
    )
    if stacked:
        panel = panel.stacking(StackingConfig().mode(StackingMode.NORMAL))
    if bars:
        panel = panel.draw_style(GraphDrawStyle.BARS).fill_opacity(60)
    if min_interval is not None:
        panel = panel.interval(min_interval)
    return _common(
        panel, title, description, unit, queries, width=width, height=height,
        decimals=decimals, steps=steps, mappings=None,
    )  # fmt: skip


def table_panel(
    title: str,
    description: str,
    unit: str,
    *queries: Query,
    width: int = 12,
    height: int = 8,
    mappings: dict[str, tuple[str, str]] | None = None,
) -> table.Panel:
    """The latest value of each series, one row per label set (instant queries, table format)."""
    for q in queries:
        if not q.instant:
            raise ValueError(f"a table panel shows instant queries only: {q.expr}")
    panel = table.Panel().align(FieldTextAlignment.AUTO).inspect(False).show_header(True)
    built = _common(
        panel, title, description, unit, queries, width=width, height=height,
        decimals=None, steps=None, mappings=mappings, table_format=True,
    )  # fmt: skip
    # The labels as columns and the value last; the evaluation time is the same on every row.
    return built.with_transformation(
        model.DataTransformerConfig(id_val="organize", options={"excludeByName": {"Time": True}})
    )


# --------------------------------------------------------------------------- variables


def datasource_variable() -> db.DatasourceVariable:
    """The Prometheus data source to read; every panel uses it (``${datasource}``)."""
    return (
        db.DatasourceVariable("datasource")
        .label("Data source")
        .description("The Prometheus that scrapes o2c-monitor's /metrics.")
        .type("prometheus")
    )


def label_variable(name: str, label: str, metric: str, description: str) -> db.QueryVariable:
    """A multi-value variable over the values ``metric`` has for label ``name``; All = ``.*``."""
    return (
        db.QueryVariable(name)
        .label(label)
        .description(description)
        .datasource(DATASOURCE)
        .query(f"label_values({metric}, {name})")
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(model.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(model.VariableOption(selected=True, text=["All"], value=["$__all"]))
    )


def legal_entity_variable() -> db.QueryVariable:
    return label_variable(
        "legal_entity", "Legal entity", "o2c_breaks_open",
        "The firm's legal entities (filters the panels whose metrics carry legal_entity).",
    )  # fmt: skip


def system_variable() -> db.QueryVariable:
    return label_variable(
        "system", "System", "o2c_source_failing",
        "The source systems o2c-monitor reads (CRM, PSA, ERP, billing).",
    )  # fmt: skip


# --------------------------------------------------------------------------- dashboards


Section = tuple[str, Sequence[Builder[model.Panel]]]
"""A row title and the panels under it, laid out left to right, wrapping at 24 columns."""


def build_dashboard(
    *,
    uid: str,
    title: str,
    description: str,
    tags: Sequence[str],
    variables: Sequence[Builder[model.VariableModel]],
    sections: Sequence[Section],
) -> dict[str, Any]:
    """The dashboard's JSON model: SDK-built, panel ids numbered in order, ``"id": null``."""
    builder = (
        db.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(list(tags))
        .timezone("utc")
        .time("now-24h", "now")
        .refresh("1m")
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
        .readonly()
    )
    for variable in variables:
        builder = builder.with_variable(variable)
    for row_title, panels in sections:
        builder = builder.with_row(db.Row(row_title))
        for panel in panels:
            builder = builder.with_panel(panel)
    built = builder.build()
    for number, item in enumerate(built.panels or [], start=1):
        item.id_val = number
    encoded: dict[str, Any] = json.loads(JSONEncoder().encode(built))
    # Provisioned dashboards carry no instance id: Grafana assigns one, the uid is what is stable.
    return {"id": None, **encoded}
