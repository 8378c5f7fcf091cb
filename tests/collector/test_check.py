"""`o2c check`: the store and every enabled system, one clear line per problem with the settings to fix."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import store
from sandbox.estate import Estate
from sandbox.server import serve
from tests.collector.conftest import sandbox_env


def _check(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "o2c.cli", "check"],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _store(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'o2c.sqlite3'}"
    engine = store.create_store_engine(url)
    store.upgrade(engine)
    engine.dispose()
    return url


def test_check_passes_when_every_system_answers_with_our_credentials(
    key_file: Path, tmp_path: Path
) -> None:
    with serve(Estate.generate(seed=5, scale=0.01)) as sb:
        result = _check(sandbox_env(sb, key_file, _store(tmp_path)), tmp_path)

    assert result.returncode == 0, result.stderr
    assert "salesforce, kantata, netsuite, stripe: reachable, credentials accepted" in result.stdout


def test_an_unreachable_system_and_a_refused_token_are_one_line_naming_the_settings(
    key_file: Path, tmp_path: Path
) -> None:
    with serve(Estate.generate(seed=5, scale=0.01)) as sb:
        env = sandbox_env(sb, key_file, _store(tmp_path), systems="kantata,stripe")
        env["O2C_KANTATA__BASE_URL"] = "http://127.0.0.1:9/api/v1"  # nothing listens there
        env["O2C_STRIPE__API_KEY"] = "sk_test_not_the_right_key"
        result = _check(env, tmp_path)

    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: kantata is not reachable")
    assert "check O2C_KANTATA__BASE_URL and O2C_KANTATA__TOKEN" in lines[0]
    assert "stripe is not reachable" in lines[0]
    assert "check O2C_STRIPE__API_BASE and O2C_STRIPE__API_KEY" in lines[0]
    assert "sk_test_not_the_right_key" not in result.stderr + result.stdout
