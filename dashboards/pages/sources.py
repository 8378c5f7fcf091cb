"""Sources page: probe health and freshness, quota use, completeness, and the quarantine browser."""

from __future__ import annotations

import streamlit as st

from dashboards import _ui
from dashboards.service import quarantined, sources, when


def render() -> None:
    user = _ui.current_user()
    if user is None:
        return
    _ui.header("Sources", user)
    config = _ui.config()

    @st.fragment(run_every=config.refresh_seconds)
    def health() -> None:
        data = _ui.cached(sources, user, metrics_url=config.collector_metrics_url)
        st.subheader("Probe health and freshness")
        if data.systems.is_empty():
            st.info("No probe has run yet: start the collector (`o2c collect`).")
        st.dataframe(data.systems, hide_index=True, width="stretch")
        st.dataframe(data.streams, hide_index=True, width="stretch")
        st.subheader("Completeness (source counts against the store)")
        if data.completeness.is_empty():
            st.caption("No completeness check has run yet.")
        else:
            st.dataframe(data.completeness, hide_index=True, width="stretch")
        st.subheader("Quota use (from the running collector)")
        if data.collector.error:
            st.warning(data.collector.error)
        else:
            st.dataframe(data.collector.samples, hide_index=True, width="stretch")
        st.subheader("Quarantine")
        st.dataframe(data.quarantine, hide_index=True, width="stretch")

    health()

    st.subheader("Quarantined records")
    summary = _ui.cached(sources, user, metrics_url=config.collector_metrics_url).quarantine
    systems = ["(all)", *summary["source_system"].unique().sort().to_list()]
    system = st.selectbox("System", systems, key="quarantine_system")
    items = _ui.cached(
        quarantined, user, source_system=None if system == "(all)" else system, limit=200
    )
    if not items:
        st.caption("Nothing quarantined.")
        return
    labels = {
        item.id: f"#{item.id} {item.source_system}/{item.stream} {item.source_id or ''} "
        f"({when(item.received_at)})"
        for item in items
    }
    chosen = st.selectbox("Record", list(labels), format_func=labels.__getitem__)
    item = next(i for i in items if i.id == chosen)
    st.markdown(f"**Reason:** {item.reason}")
    st.caption(f"{item.payload_bytes:,} bytes as received at {when(item.received_at)}")
    st.code(item.payload, language="json" if item.payload_is_json else None)
