"""Deal page: one chain's timeline across CRM, PSA, ERP and billing, its records with vendor ids,
its breaks and their history (and its resyncs once the resync engine records them)."""

from __future__ import annotations

import altair as alt
import streamlit as st

from dashboards import _ui
from dashboards.service import (
    break_resyncs,
    deal_view,
    deals_with_breaks,
    find_deal,
    money_column,
    read_register,
)


def render() -> None:
    user = _ui.current_user()
    if user is None:
        return
    _ui.header("Deal timeline", user)
    register = _ui.shared(read_register, user)
    suggestions = deals_with_breaks(register)
    wanted = st.query_params.get("deal", "")
    left, right = st.columns([1, 1])
    typed = left.text_input("Deal, project or invoice id (or invoice number)", value=wanted,
                            key="deal_search")  # fmt: skip
    picked = right.selectbox(
        "Or a deal with open breaks (most at risk first)", ["", *suggestions], key="deal_pick"
    )
    text = typed.strip() or picked
    if not text:
        st.info("Enter an id, or pick a deal with open breaks.")
        return
    opportunity = _ui.cached(find_deal, user, text)
    if opportunity is None:
        st.warning(f"No deal found for {text!r}.")
        return
    st.query_params["deal"] = opportunity
    view = _ui.cached(deal_view, user, opportunity)
    if view is None:
        st.warning(f"No deal {opportunity}.")
        return
    st.subheader(f"{view.name or opportunity} ({opportunity})")
    if view.events.height:
        chart = (
            alt.Chart(view.events)
            .mark_circle(size=120)
            .encode(
                x=alt.X("at:T", title="time (UTC)"),
                y=alt.Y(
                    "system:N", title=None, sort=["salesforce", "kantata", "netsuite", "stripe"]
                ),
                color=alt.Color("entity:N"),
                tooltip=["at:T", "system:N", "entity:N", "source_id:N", "event:N"],
            )
            .properties(height=220)
        )
        st.altair_chart(chart, width="stretch")
    st.dataframe(view.events, hide_index=True, width="stretch")
    st.markdown("**Records per system (vendor ids)**")
    st.dataframe(
        money_column(view.records, "amount_minor", "currency", "amount").drop("amount_minor"),
        hide_index=True, width="stretch",
    )  # fmt: skip
    st.markdown(f"**Breaks ({view.breaks.height})**")
    if view.breaks.height:
        shown = money_column(view.breaks, "amount_minor", "currency", "amount at risk")
        st.dataframe(
            shown.select("break_id", "break_type", "severity", "status", "amount at risk",
                         "first_detected_at", "status_since", "accepted_by", "detail"),
            hide_index=True, width="stretch",
        )  # fmt: skip
        st.markdown("**Break history**")
        st.dataframe(view.transitions, hide_index=True, width="stretch")
        st.markdown("**Resync history**")
        history = _ui.cached(break_resyncs, user, view.breaks["break_id"].to_list())
        if history.height:
            st.dataframe(history, hide_index=True, width="stretch")
        else:
            st.caption("No resync was asked for these breaks.")
    else:
        st.caption("No break names this deal's records.")
