"""The `o2c` command as an operator runs it: a real subprocess with its own environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import store
from tests.conftest import BACKENDS

O2C = [sys.executable, "-m", "o2c.cli"]


def run_o2c(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("O2C_")}
    return subprocess.run(
        [*O2C, *args],
        cwd=cwd,
        env={**clean, "COLUMNS": "200", **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("empty_database_url", BACKENDS, indirect=True)
def test_db_upgrade_then_status_on_each_backend(empty_database_url: str, tmp_path: Path) -> None:
    env = {"O2C_DATABASE_URL": empty_database_url}

    before = run_o2c("db", "status", cwd=tmp_path, **env)
    upgraded = run_o2c("db", "upgrade", cwd=tmp_path, **env)
    again = run_o2c("db", "upgrade", cwd=tmp_path, **env)
    after = run_o2c("db", "status", cwd=tmp_path, **env)

    assert before.returncode == 1 and "run `o2c db upgrade`" in before.stdout
    assert upgraded.returncode == 0, upgraded.stderr
    head = store.head_revision()
    assert f"upgraded empty -> {head}" in upgraded.stdout
    assert f"already at revision {head}" in again.stdout
    assert after.returncode == 0, after.stderr
    assert f"revision: {head}" in after.stdout and "time_entries" in after.stdout


def test_default_store_is_a_sqlite_file_in_the_data_directory(tmp_path: Path) -> None:
    result = run_o2c("db", "upgrade", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert (tmp_path / "data" / "o2c.sqlite3").is_file()


def test_config_show_masks_secrets(tmp_path: Path) -> None:
    result = run_o2c(
        "config",
        "show",
        cwd=tmp_path,
        O2C_DATABASE_URL="postgresql+psycopg://o2c:hunter2@db.internal:5432/o2c",
        O2C_STRIPE__API_KEY="sk_live_abcdef123456",
        O2C_KANTATA__TOKEN="kantata-token-value",
    )

    assert result.returncode == 0, result.stderr
    assert "hunter2" not in result.stdout
    assert "sk_live_abcdef123456" not in result.stdout
    assert "kantata-token-value" not in result.stdout
    assert "O2C_STRIPE__API_KEY=********" in result.stdout
    assert "postgresql+psycopg://o2c:***@db.internal:5432/o2c" in result.stdout


def test_config_file_is_read_and_environment_wins(tmp_path: Path) -> None:
    (tmp_path / "o2c.toml").write_text('log_level = "DEBUG"\n[stripe]\napi_base = "http://x"\n')

    result = run_o2c("config", "show", cwd=tmp_path, O2C_LOG_LEVEL="warning")

    assert "O2C_LOG_LEVEL=WARNING" in result.stdout
    assert "O2C_STRIPE__API_BASE=http://x" in result.stdout


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"O2C_DATABASE_URL": "mysql://x/y"}, "unsupported database 'mysql'"),
        ({"O2C_DATABASE_URL": "not a url"}, "not a database URL"),
        ({"O2C_DATABSE_URL": "sqlite://"}, "unknown setting O2C_DATABSE_URL"),
        ({"O2C_LOG_LEVEL": "LOUD"}, "O2C_LOG_LEVEL"),
        ({"O2C_CONFIG_FILE": "missing.toml"}, "missing.toml"),
        (
            {"O2C_DATABASE_URL": "postgresql+psycopg://postgres@127.0.0.1:1/o2c"},
            "Connection refused",
        ),
    ],
    ids=["unsupported-db", "bad-url", "unknown-setting", "bad-level", "no-file", "unreachable"],
)
def test_bad_configuration_gets_one_clear_line(
    env: dict[str, str], message: str, tmp_path: Path
) -> None:
    result = run_o2c("db", "status", cwd=tmp_path, **env)

    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and message in lines[0]


def every_command() -> list[list[str]]:
    import typer.main

    from o2c.cli import app

    def walk(command: object, path: list[str]) -> list[list[str]]:
        subcommands = getattr(command, "commands", None)
        if subcommands:
            return [p for name, sub in subcommands.items() for p in walk(sub, [*path, name])]
        return [path]

    return walk(typer.main.get_command(app), [])


@pytest.mark.parametrize("command", every_command(), ids=" ".join)
def test_every_command_has_help_with_an_example(command: list[str], tmp_path: Path) -> None:
    result = run_o2c(*command, "--help", cwd=tmp_path)

    assert result.returncode == 0
    assert "Example:" in result.stdout
