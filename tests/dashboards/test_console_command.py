"""`o2c console`: its settings group, the Streamlit command it starts, the config it hands over."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dashboards.service import ConsoleConfig
from o2c.cli import app
from o2c.console import SCRIPT, streamlit_command
from o2c.console_app import console_config
from o2c.settings import Settings, describe_settings
from reconciler.resync import ResyncPolicy


def test_the_console_runs_streamlit_headless_on_the_chosen_address_and_port() -> None:
    command = streamlit_command(SCRIPT, address="0.0.0.0", port=8600)
    assert command[:5] == [sys.executable, "-m", "streamlit", "run", str(SCRIPT)]
    options = dict(zip(command[5::2], command[6::2], strict=True))
    assert options["--server.address"] == "0.0.0.0"
    assert options["--server.port"] == "8600"
    assert options["--server.headless"] == "true"
    assert options["--browser.gatherUsageStats"] == "false"
    assert Path(SCRIPT).is_file()


def test_the_console_settings_become_the_consoles_config_without_secrets() -> None:
    settings = Settings(
        database_url="postgresql+psycopg://o2c:s3cret@db:5432/o2c",
        console={"identity_header": "X-Forwarded-User", "roles": {"ana": "approver"},
                 "refresh_seconds": 30},
        resync={"modes": {"won_deal_without_project": "manual"}},
    )  # type: ignore[arg-type]  # fmt: skip
    config = console_config(settings)
    assert isinstance(config, ConsoleConfig)
    assert config.store_url == settings.store_url
    assert config.store_label == "postgresql+psycopg://o2c:***@db:5432/o2c"
    assert (config.identity_header, dict(config.roles)) == ("X-Forwarded-User", {"ana": "approver"})
    assert config.refresh_seconds == 30
    assert config.resync_policy.modes == {"won_deal_without_project": "manual"}
    assert config.resync_policy != ResyncPolicy()
    shown = {variable for variable, _, _ in describe_settings(settings)}
    assert {"O2C_CONSOLE__IDENTITY_HEADER", "O2C_CONSOLE__ROLES"} <= shown


@pytest.mark.parametrize(
    "console",
    [{"roles": {"ana": "admin"}}, {"local_role": "root"}, {"default_role": "owner"}],
)
def test_an_unknown_role_in_the_settings_is_refused(console: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="unknown role"):
        Settings(console=console)  # type: ignore[arg-type]


def test_o2c_console_has_help_with_an_example() -> None:
    result = CliRunner().invoke(app, ["console", "--help"])
    assert result.exit_code == 0
    assert "Example:" in result.stdout
    assert "--port" in result.stdout and "--address" in result.stdout
