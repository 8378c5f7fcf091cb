"""The console's entry: page config, identity, and the navigation between the pages."""

from __future__ import annotations

import streamlit as st

from dashboards import _ui
from dashboards.pages import breaks, deal, executive, resyncs, sources
from dashboards.service import ConsoleConfig


def run_console(config: ConsoleConfig) -> None:
    """Draw the console for this session (the Streamlit script calls this on every run)."""
    st.set_page_config(page_title="o2c-monitor", page_icon=":material/monitoring:", layout="wide")
    _ui.configure(config)
    pages = [
        st.Page(executive.render, title="Executive", url_path="executive", default=True,
                icon=":material/insights:"),
        st.Page(breaks.render, title="Breaks", url_path="breaks", icon=":material/report:"),
        st.Page(deal.render, title="Deal", url_path="deal", icon=":material/timeline:"),
        st.Page(resyncs.render, title="Resyncs", url_path="resyncs", icon=":material/sync:"),
        st.Page(sources.render, title="Sources", url_path="sources", icon=":material/dns:"),
    ]  # fmt: skip
    navigation = st.navigation(pages)
    user = _ui.current_user()
    if user is None:
        return  # current_user told them how to sign in
    st.sidebar.markdown(f"**{user.name}** · {user.role.label}")
    st.sidebar.caption(f"identity: {user.source}; store: {config.store_label}")
    if user.source == "oidc":
        st.sidebar.button("Sign out", on_click=st.logout)
    navigation.run()
