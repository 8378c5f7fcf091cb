"""The Streamlit script of `o2c console`: reads the settings and draws the console (dashboards).

Streamlit runs this file on every interaction; ``o2c console`` starts it with ``streamlit run``.
It stays in ``o2c`` because only the top of the architecture reads the settings.
"""

from __future__ import annotations

import streamlit as st

from dashboards import ConsoleConfig, run_console
from o2c.resync import policy_from
from o2c.settings import Settings, load_settings, masked_url
from store import ConfigError


def console_config(settings: Settings) -> ConsoleConfig:
    """The console's part of the settings (no secrets in it)."""
    c = settings.console
    return ConsoleConfig(
        store_url=settings.store_url,
        identity_header=c.identity_header,
        local_user=c.local_user,
        local_role=c.local_role,
        roles=dict(c.roles),
        default_role=c.default_role,
        refresh_seconds=c.refresh_seconds,
        cache_ttl_seconds=c.cache_ttl_seconds,
        max_rows=c.max_rows,
        collector_metrics_url=c.collector_metrics_url,
        resync_policy=policy_from(settings.resync),
        store_label=masked_url(settings.store_url),
    )


@st.cache_resource(show_spinner=False)
def _config() -> ConsoleConfig:
    return console_config(load_settings())


def main() -> None:
    try:
        config = _config()
    except ConfigError as exc:
        st.error(f"Configuration problem: {exc}")
        return
    run_console(config)


main()
