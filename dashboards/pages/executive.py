"""Executive page: KPI tiles with their change, trends over snapshots, breakdown by legal entity."""

from __future__ import annotations

from typing import Literal

import streamlit as st

from dashboards import _ui
from dashboards.service import TRENDS, Executive, KpiTile, executive, money, money_short, when


def _shown(tile: KpiTile, value: float | None, *, exact: bool = False) -> str:
    if value is None:
        return "n/a"
    if tile.unit == "minor":
        return (money if exact else money_short)(round(value), tile.currency)
    if tile.unit == "days":
        return f"{value:,.1f} days"
    if tile.unit == "ratio":
        return f"{value:,.2f}"
    return f"{value:,.0f}"


def _delta(tile: KpiTile) -> str | None:
    change = tile.change
    if change is None:
        return None
    sign = "+" if change > 0 else "-" if change < 0 else "±"
    return sign + _shown(tile, abs(change))


def render() -> None:
    user = _ui.current_user()
    if user is None:
        return
    _ui.header("Executive KPIs", user)

    @st.fragment(run_every=_ui.config().refresh_seconds)
    def body() -> None:
        data: Executive = _ui.cached(executive, user)
        if data.as_of is None:
            st.info("No KPI snapshot yet: run `o2c reconcile` once the collector has synced.")
            return
        compared = f"; change against {when(data.compared_with)}" if data.compared_with else ""
        st.caption(f"As of {when(data.as_of)}{compared}. Money in the reporting currency.")
        columns = st.columns(3)
        for n, tile in enumerate(data.tiles):
            color: Literal["off", "inverse", "normal"] = "off"  # unchanged or unknown
            if tile.improved is not None:
                color = "inverse" if tile.lower_is_better else "normal"
            exact = _shown(tile, tile.value, exact=True)
            shown = _shown(tile, tile.value)
            columns[n % 3].metric(
                tile.label, shown, _delta(tile), delta_color=color, border=True,
                help=exact if exact != shown else None,
            )  # fmt: skip
        st.subheader("Trends")
        left, right = st.columns(2)
        for n, (title, kpis) in enumerate(TRENDS.items()):
            frame = data.trends.filter(data.trends["kpi"].is_in(list(kpis)))
            target = left if n % 2 == 0 else right
            target.markdown(f"**{title}**")
            if frame.height:
                currency = frame["currency"].drop_nulls()
                if currency.len():
                    target.caption(f"in {currency[0]}")
                target.line_chart(frame, x="as_of", y="value", color="kpi", height=220)
            else:
                target.caption("no snapshots yet")
        st.subheader("By legal entity")
        st.dataframe(data.by_legal_entity, hide_index=True, width="stretch")

    body()
