"""The collector's metrics: one module, prefix o2c_, bounded labels, freshness read from the store."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry, generate_latest

import store
from collector import CollectorMetrics, last_successes, run_cycle
from probes import ProbeUnavailable
from tests.collector.scripted import ScriptedProbe, page


def test_last_success_is_read_from_stored_runs_at_scrape_time(db: store.Store) -> None:
    registry = CollectorRegistry()
    metrics = CollectorMetrics(registry)
    metrics.observe_freshness(lambda: last_successes(db))
    labels = {"system": "crm", "stream": "accounts"}
    assert registry.get_sample_value("o2c_probe_last_success_timestamp_seconds", labels) is None

    asyncio.run(run_cycle(db, ScriptedProbe([page([1])]), "accounts"))
    succeeded = registry.get_sample_value("o2c_probe_last_success_timestamp_seconds", labels)
    asyncio.run(run_cycle(db, ScriptedProbe([ProbeUnavailable("down", system="crm")]), "accounts"))

    [finished] = [r.finished_at for r in db.list_probe_runs() if r.status == "succeeded"]
    assert finished is not None and succeeded == finished.timestamp()
    # A failed cycle later does not move it: freshness is about the last success.
    assert (
        registry.get_sample_value("o2c_probe_last_success_timestamp_seconds", labels) == succeeded
    )


def test_a_store_that_cannot_be_read_drops_the_series_instead_of_failing_the_scrape() -> None:
    registry = CollectorRegistry()
    metrics = CollectorMetrics(registry)

    def broken() -> dict[tuple[str, str], object]:
        raise store.StoreUnavailable("database unavailable")

    metrics.observe_freshness(broken)  # type: ignore[arg-type]

    assert b"o2c_probe_last_success_timestamp_seconds" in generate_latest(registry)


def test_every_metric_is_prefixed_and_labelled_only_by_bounded_sets(db: store.Store) -> None:
    registry = CollectorRegistry()
    metrics = CollectorMetrics(registry)
    metrics.observe_freshness(lambda: last_successes(db))
    script = [page([1, 2]), ProbeUnavailable("down", system="crm", source_id="acc-2")]
    asyncio.run(run_cycle(db, ScriptedProbe(script), "accounts", metrics=metrics))
    asyncio.run(run_cycle(db, ScriptedProbe([page([3])]), "accounts", metrics=metrics))
    bounded = {"system", "stream", "kind", "status", "le"}

    families = list(registry.collect())
    assert sum(len(f.samples) for f in families) > 10
    for family in families:
        assert family.name.startswith("o2c_"), family.name
        for sample in family.samples:
            assert set(sample.labels) <= bounded, (family.name, sample.labels)
            assert "acc-" not in str(sample.labels)  # never a record id
