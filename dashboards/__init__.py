"""Dashboards: the Streamlit console for KPIs, breaks, deal timelines and resyncs (issue 8).

``run_console(ConsoleConfig(...))`` draws it (``o2c console`` starts Streamlit on a script that
calls it); ``dashboards.service`` holds every read, action and role check the pages call.
"""

from __future__ import annotations

from dashboards.service import ConsoleConfig


def run_console(config: ConsoleConfig) -> None:
    """Draw the console for one Streamlit run (imports Streamlit only when called)."""
    from dashboards._app import run_console as run

    run(config)


__all__ = ["ConsoleConfig", "run_console"]
