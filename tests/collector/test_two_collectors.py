"""Two collector processes on one PostgreSQL end with the same store as one: each stream has one
owner at a time, so nothing is ingested twice at once and no cursor is written by two cycles."""

from __future__ import annotations

import itertools
from datetime import timedelta
from pathlib import Path

import pytest

import store
from collector import SUCCEEDED
from sandbox.apis import FaultPlan
from sandbox.estate import Estate
from sandbox.server import serve
from tests.collector.conftest import (
    assert_same_records,
    build,
    close,
    collect_process,
    sandbox_env,
    sandbox_settings,
    snapshot,
    sync,
)

SCALE = 0.02
SEED = 31
ROUNDS = 3

# A little latency on every request widens the window in which both processes want a stream.
SLOW = {"faults": [{"kind": "latency", "min": 0.0, "max": 0.03}]}


@pytest.mark.slow
def test_two_collectors_on_one_postgresql_end_with_the_store_of_one(
    postgres_db: store.Store, key_file: Path, tmp_path: Path
) -> None:
    estate = Estate.generate(seed=SEED, scale=SCALE)
    outputs = []
    with serve(estate, FaultPlan.from_obj(SLOW)) as sb:
        env = sandbox_env(sb, key_file, postgres_db.url)
        for round_ in range(ROUNDS):
            if round_:
                with estate.lock:
                    estate.advance(timedelta(hours=12))
            first, second = collect_process(env), collect_process(env)
            for proc in (first, second):
                out, err = proc.communicate(timeout=300)
                assert proc.returncode == 0, err
                outputs.append(out)

    # They did compete: some cycles found their stream owned by the other process and skipped.
    assert sum(out.count("skipped") for out in outputs) > 0
    runs = postgres_db.list_probe_runs(limit=100_000)
    assert {r.status for r in runs} == {SUCCEEDED}
    by_stream: dict[tuple[str, str | None], list[store.ProbeRun]] = {}
    for run in runs:
        by_stream.setdefault((run.source_system, run.stream), []).append(run)
    assert len(by_stream) == 14
    for stream, stream_runs in by_stream.items():
        stream_runs.sort(key=lambda r: r.started_at)
        assert len(stream_runs) >= ROUNDS, stream
        for earlier, later in itertools.pairwise(stream_runs):
            # One owner at a time: a cycle of a stream starts after the previous one ended.
            assert earlier.finished_at is not None and earlier.finished_at <= later.started_at, (
                stream
            )

    # The reference: the same firm through the same rounds with one collector.
    reference_estate = Estate.generate(seed=SEED, scale=SCALE)
    reference_url = f"sqlite:///{tmp_path / 'reference.sqlite3'}"
    engine = store.create_store_engine(reference_url)
    store.upgrade(engine)
    engine.dispose()
    reference = store.Store(reference_url)
    with serve(reference_estate) as clean:
        collector = build(sandbox_settings(clean, key_file, reference_url), reference)
        try:
            for round_ in range(ROUNDS):
                if round_:
                    reference_estate.advance(timedelta(hours=12))
                assert {r.status for r in sync(collector)} == {SUCCEEDED}
        finally:
            close(collector)

    assert_same_records(snapshot(postgres_db), snapshot(reference))
    reference.dispose()
