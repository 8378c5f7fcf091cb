"""`o2c collect` as an operator meets it: help with an example, and one clear line for bad settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.test_cli import run_o2c


@pytest.mark.parametrize("args", [("collect", "--help")])
def test_collect_help_has_an_example(args: tuple[str, ...], tmp_path: Path) -> None:
    result = run_o2c(*args, cwd=tmp_path)

    assert result.returncode == 0
    assert "Example:" in result.stdout
    assert "--once" in result.stdout


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"O2C_COLLECTOR__SYSTEMS": "kantata"},
            "kantata is enabled (O2C_COLLECTOR__SYSTEMS) but O2C_KANTATA__TOKEN is not set",
        ),
        ({"O2C_COLLECTOR__SYSTEMS": "sap"}, "unknown system 'sap'"),
        ({"O2C_COLLECTOR__SYSTEMS": "[stripe"}, "not a JSON list"),
        ({"O2C_COLLECTOR__INTERVALS": '{"erp": 5}'}, "keys are <system> or <system>.<stream>"),
        ({"O2C_COLLECTOR__INTERVAL_SECONDS": "0"}, "O2C_COLLECTOR__INTERVAL_SECONDS"),
        (
            {"O2C_COLLECTOR__SYSTEMS": "netsuite", "O2C_NETSUITE__BASE_URL": "http://x"},
            "O2C_NETSUITE__PRIVATE_KEY_FILE is not set",
        ),
    ],
)
def test_bad_collector_settings_are_one_line_and_exit_2(
    env: dict[str, str], message: str, tmp_path: Path
) -> None:
    result = run_o2c("collect", "--once", cwd=tmp_path, **env)

    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr
