"""At scale 10 the scrape carries only bounded labels and exactly the series of a small estate.

Scale 10 here is 100 suffixed copies of the sandbox-fed scale-0.1 estate (about 5.3 million
canonical records and 74,000 breaks), reconciled for real (``run_reconcile`` with the records in
hand, so the test does not spend minutes writing and re-reading them) into a store on each
backend: the store holds the scale-10 break register, transitions and KPI snapshot, which is
everything the exporter reads. Every copy suffixes its ids with ``~k``, so an id that leaked into
a label would show. Scrape speed is measured by ``bench/scrape.py``, not here.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, text

import alerts
import store
from reconciler import AR_BUCKETS, BREAK_TYPES, CHAIN_STAGES, run_reconcile
from tests.alerts.conftest import BASE_SCALE, SandboxEstate
from tests.conftest import BACKENDS
from tests.system_packages import require_binaries

SCALE = 10
SERIES_BOUND = 1_000
"""At most this many series per scrape, at any estate size (measured: about 400)."""

ALLOWED: dict[str, set[str] | None] = {
    "system": set(alerts.involved_systems()),
    "break_type": set(BREAK_TYPES),
    "stage": set(CHAIN_STAGES),
    "severity": {"low", "medium", "high", "critical"},
    "legal_entity": None,  # the estate's entities, see below
    "currency": {"USD"},
    "kind": {"time", "milestone", "automatic", "manual"},
    "method": {"standard", "best_possible", "countback"},
    "bucket": set(AR_BUCKETS),
    "status": {"running", "succeeded", "failed", *store.REQUEST_STATUSES},
    "state": {"closed", "open", "half_open"},
    "action": None,  # resync actions: none at this point (no resync ran)
    "outcome": None,
    "le": None,  # histogram bounds: checked to be numbers
}


def scrape(db: store.Store) -> str:
    registry = CollectorRegistry()
    alerts.register_exporter(registry, db)
    return generate_latest(registry).decode()


def series(text: str) -> set[tuple[str, tuple[tuple[str, str], ...]]]:
    return {
        (s.name, tuple(sorted(s.labels.items())))
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@pytest.fixture(scope="module", params=BACKENDS)
def scale_10_scrape(
    request: pytest.FixtureRequest,
    sandbox_estate: SandboxEstate,
    tmp_path_factory: pytest.TempPathFactory,
) -> str:
    """The scrape of a store holding a scale-10 reconcile, once per backend."""
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("scale10") / "o2c.sqlite3"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        url = f"sqlite:///{path}"
    else:
        url = request.getfixturevalue("postgres_url")
        engine = create_engine(url)
        with engine.begin() as conn:
            conn.execute(text(f"TRUNCATE {', '.join(store.metadata.tables)} RESTART IDENTITY"))
        engine.dispose()
    db = store.Store(url)
    try:
        copies = round(SCALE / BASE_SCALE)
        report = run_reconcile(db, as_of=sandbox_estate.now, data=sandbox_estate.copies(copies))
        assert report.result.breaks.height > 50_000  # a scale-10 register, not a small one
        return scrape(db)
    finally:
        db.dispose()


def test_a_scale_10_scrape_has_bounded_labels_only(
    scale_10_scrape: str, sandbox_estate: SandboxEstate
) -> None:
    # The firm's legal entities as the sources name them (NetSuite gives the subsidiary's name,
    # Salesforce its code): a handful, whatever the estate's size.
    entities = set(sandbox_estate.frames["accounts"]["legal_entity"].drop_nulls()) | {"none"}
    assert len(entities) <= 10
    allowed_values = {**ALLOWED, "legal_entity": entities}
    seen = series(scale_10_scrape)
    assert 0 < len(seen) <= SERIES_BOUND
    for name, labels in seen:
        for key, value in labels:
            assert key in ALLOWED, (name, key)
            assert "~" not in value, (name, key, value)  # a copied id
            assert not re.search(r"[0-9a-f]{12,}|\d{5,}", value) or key == "le", (name, value)
            allowed = allowed_values[key]
            if allowed is not None:
                assert value in allowed, (name, key, value)
            elif key == "le":
                float(value)


def test_a_scale_10_scrape_has_the_same_series_as_one_copy(
    scale_10_scrape: str, sandbox_estate: SandboxEstate, tmp_path_factory: pytest.TempPathFactory
) -> None:
    path = tmp_path_factory.mktemp("one-copy") / "o2c.sqlite3"
    engine = store.create_store_engine(f"sqlite:///{path}")
    store.upgrade(engine)
    engine.dispose()
    small = store.Store(f"sqlite:///{path}")
    try:
        run_reconcile(small, as_of=sandbox_estate.now, data=sandbox_estate.copies(1))
        assert series(scrape(small)) == series(scale_10_scrape)
    finally:
        small.dispose()


def test_promtool_accepts_the_scale_10_scrape(scale_10_scrape: str) -> None:
    promtool = require_binaries("promtool")["promtool"]
    lint = subprocess.run(
        [promtool, "check", "metrics"], input=scale_10_scrape, capture_output=True, text=True
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
