"""`o2c reconcile` as an operator runs it: a real subprocess against a store with a few breaks."""

from __future__ import annotations

from pathlib import Path

import store
from tests.cli.test_cli import run_o2c
from tests.reconciler.estate import Estate


def test_reconcile_prints_a_summary_and_a_rerun_changes_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'o2c.sqlite3'}"
    engine = store.create_store_engine(url)
    store.upgrade(engine)
    engine.dispose()
    db = store.Store(url)
    e = Estate()
    e.account("A1")
    e.customer("C1", "A1")
    e.deal("O1", won_days_ago=30, amount=100_000, currency="EUR")
    e.write(db)
    db.dispose()
    env = {"O2C_DATABASE_URL": url, "O2C_DATA_DIR": str(tmp_path)}
    as_of = "--as-of=2026-06-30T12:00:00Z"

    first = run_o2c("reconcile", as_of, "--fx", "EUR=1.10", cwd=tmp_path, **env)
    again = run_o2c("reconcile", as_of, "--fx", "EUR=1.10", cwd=tmp_path, **env)
    bad = run_o2c("reconcile", "--fx", "EUR", cwd=tmp_path, **env)

    assert first.returncode == 0, first.stderr
    assert "breaks detected 1: new 1, resolved 0, reopened 0" in first.stdout
    assert "won_deal_without_project" in first.stdout
    assert "backlog_minor" in first.stdout and "110,000 USD minor" in first.stdout
    assert again.returncode == 0 and "new 0, resolved 0, reopened 0" in again.stdout
    assert (tmp_path / "reconcile-cache" / "meta.json").exists()
    assert bad.returncode == 2 and "expected CUR=RATE" in bad.stderr
