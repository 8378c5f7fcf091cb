"""`o2c console`: start the Streamlit console (KPIs, break queue, deal timelines, resyncs)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from o2c.settings import load_settings

SCRIPT = Path(__file__).with_name("console_app.py")


def streamlit_command(script: Path, *, address: str, port: int) -> list[str]:
    """The `streamlit run` command line of the console (headless, no usage statistics)."""
    return [
        sys.executable, "-m", "streamlit", "run", str(script),
        "--server.address", address, "--server.port", str(port),
        "--server.headless", "true", "--browser.gatherUsageStats", "false",
        "--global.developmentMode", "false", "--server.fileWatcherType", "none",
        "--client.toolbarMode", "minimal",
    ]  # fmt: skip


def console_command(
    port: int | None = typer.Option(
        None, "--port", "-p", help="Port to listen on (default: O2C_CONSOLE__PORT, 8501)."
    ),
    address: str | None = typer.Option(
        None, "--address", help="Address to bind (default: O2C_CONSOLE__ADDRESS, 127.0.0.1)."
    ),
) -> None:
    """Serve the Streamlit console until stopped (Ctrl-C): executive KPIs, the break queue, one deal's timeline, resyncs, sources.

    Identity: st.login (OIDC) when the auth section of Streamlit's secrets.toml is set; else the
    O2C_CONSOLE__IDENTITY_HEADER a trusted reverse proxy sets; else the local user
    O2C_CONSOLE__LOCAL_USER with O2C_CONSOLE__LOCAL_ROLE (the demo). Roles:
    O2C_CONSOLE__ROLES.

    Example: O2C_CONSOLE__ROLES='{"ana@example.com": "operator"}' o2c console --port 8502
    """
    settings = load_settings()  # a configuration problem is reported before Streamlit starts
    command = streamlit_command(
        SCRIPT,
        address=address or settings.console.address,
        port=port or settings.console.port,
    )
    # Replace this process with Streamlit: signals (Ctrl-C, SIGTERM) reach the server directly.
    os.execv(sys.executable, command)
