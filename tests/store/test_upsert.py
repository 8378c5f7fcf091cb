"""The bulk upsert's contract, on SQLite and PostgreSQL alike."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import polars as pl
import pytest

import store
from store import BatchRejected, CursorAdvance, IngestBatch, QuarantineItem

T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)


def time_entries(n: int = 3, *, modified: datetime = T0, **overrides: object) -> pl.DataFrame:
    frame = pl.DataFrame(
        {
            "source_system": ["kantata"] * n,
            "source_id": [f"te-{i}" for i in range(n)],
            "source_modified_at": [modified] * n,
            "project_ref": ["ws-1"] * n,
            "entry_date": [date(2025, 3, 3)] * n,
            "minutes": [60 * (i + 1) for i in range(n)],
            "billable": [True] * n,
            "rate_minor": [15_000] * n,
            "currency": ["USD"] * n,
            "status": ["submitted"] * n,
        }
    )
    return frame.with_columns(**{k: pl.lit(v) for k, v in overrides.items()})


def opportunities(stage: str, amount_minor: int, modified: datetime) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "source_system": ["salesforce"],
            "source_id": ["006A"],
            "source_modified_at": [modified],
            "account_ref": ["001A"],
            "name": ["Acme rollout"],
            "stage": [stage],
            "is_closed": [stage.startswith("Closed")],
            "is_won": [stage == "Closed Won"],
            "amount_minor": [amount_minor],
            "currency": ["GBP"],
        }
    )


def test_new_records_are_inserted_with_first_and_last_seen(db: store.Store) -> None:
    result = db.upsert("time_entries", time_entries(3), observed_at=T0 + timedelta(minutes=5))

    assert (result.inserted, result.updated, result.unchanged, result.stale) == (3, 0, 0, 0)
    stored = db.read_frame("time_entries").sort("source_id")
    assert stored["minutes"].to_list() == [60, 120, 180]
    assert stored["first_seen_at"].to_list() == [T0 + timedelta(minutes=5)] * 3
    assert stored["source_modified_at"].dtype == pl.Datetime("us", "UTC")
    assert stored["entry_date"].dtype == pl.Date


def test_same_records_again_write_nothing_and_add_no_history(db: store.Store) -> None:
    db.upsert("time_entries", time_entries(3), observed_at=T0)
    before = db.read_frame("time_entries")

    again = db.upsert("time_entries", time_entries(3), observed_at=T0 + timedelta(hours=1))

    assert (again.inserted, again.updated, again.unchanged, again.history_rows) == (0, 0, 3, 0)
    assert db.read_frame("time_entries").equals(before)  # last_seen_at untouched too
    assert db.read_history().is_empty()


def test_each_tracked_change_writes_one_history_row(db: store.Store) -> None:
    db.upsert("opportunities", opportunities("Proposal", 100_000_00, T0), observed_at=T0)
    observed = T0 + timedelta(hours=2)

    result = db.upsert(
        "opportunities",
        opportunities("Closed Won", 125_000_00, T0 + timedelta(hours=1)),
        observed_at=observed,
    )

    assert result.updated == 1
    history = db.read_history(entity="opportunities").sort("field")
    assert history.select("field", "old_value", "new_value").rows() == [
        ("amount_minor", "10000000", "12500000"),
        ("is_won", "false", "true"),
        ("stage", "Proposal", "Closed Won"),
    ]
    assert history["observed_at"].to_list() == [observed] * 3
    assert history["source_modified_at"].to_list() == [T0 + timedelta(hours=1)] * 3


def test_untracked_change_updates_record_without_history(db: store.Store) -> None:
    db.upsert("opportunities", opportunities("Proposal", 100, T0), observed_at=T0)
    renamed = opportunities("Proposal", 100, T0 + timedelta(hours=1)).with_columns(
        name=pl.lit("Acme rollout phase 2")
    )

    result = db.upsert("opportunities", renamed, observed_at=T0)

    assert result.updated == 1
    assert db.read_frame("opportunities")["name"].item() == "Acme rollout phase 2"
    assert db.read_history().is_empty()


def test_older_version_is_ignored_and_counted(db: store.Store) -> None:
    db.upsert("opportunities", opportunities("Closed Won", 500, T0), observed_at=T0)

    late = db.upsert(
        "opportunities", opportunities("Proposal", 400, T0 - timedelta(days=1)), observed_at=T0
    )

    assert (late.stale, late.updated, late.inserted) == (1, 0, 0)
    assert db.read_frame("opportunities")["stage"].item() == "Closed Won"
    assert db.read_history().is_empty()


def test_latest_version_of_a_key_wins_within_a_batch(db: store.Store) -> None:
    batch = pl.concat(
        [
            time_entries(1, modified=T0 + timedelta(hours=2), status="approved"),
            time_entries(1, modified=T0, status="submitted"),
            time_entries(1, modified=T0 + timedelta(hours=1), status="draft"),
        ]
    )

    result = db.upsert("time_entries", batch, observed_at=T0)

    assert (result.inserted, result.duplicates_in_batch) == (1, 2)
    assert db.read_frame("time_entries")["status"].item() == "approved"


def test_deletion_is_a_tracked_change_and_hides_the_record(db: store.Store) -> None:
    db.upsert("time_entries", time_entries(2), observed_at=T0)
    deleted = time_entries(1, modified=T0 + timedelta(hours=1)).with_columns(is_deleted=True)

    db.upsert("time_entries", deleted, observed_at=T0)

    assert db.read_frame("time_entries")["source_id"].to_list() == ["te-1"]
    assert db.read_frame("time_entries", include_deleted=True).height == 2
    assert db.read_history()["field"].to_list() == ["is_deleted"]


def test_failed_batch_leaves_records_cursor_and_quarantine_unchanged(db: store.Store) -> None:
    db.ingest(
        IngestBatch(
            frames={"time_entries": time_entries(2)},
            cursor=CursorAdvance("kantata", "time_entries", '{"updated_after": "2025-03-03"}'),
            observed_at=T0,
        )
    )
    broken = time_entries(1, modified=T0 + timedelta(days=1)).with_columns(
        status=pl.lit(None, dtype=pl.String)  # NOT NULL in the schema: the database refuses it
    )

    with pytest.raises(BatchRejected):
        db.ingest(
            IngestBatch(
                frames={
                    "time_entries": pl.concat(
                        [time_entries(5, modified=T0 + timedelta(days=1)), broken]
                    )
                },
                quarantine=[QuarantineItem("kantata", "time_entries", "bad", "{}")],
                cursor=CursorAdvance("kantata", "time_entries", '{"updated_after": "2025-03-04"}'),
                observed_at=T0 + timedelta(days=1),
            )
        )

    stored = db.read_frame("time_entries").sort("source_id")
    assert stored["minutes"].to_list() == [60, 120]
    assert stored["source_modified_at"].to_list() == [T0, T0]
    assert db.read_cursor("kantata", "time_entries") == '{"updated_after": "2025-03-03"}'
    assert db.list_quarantine() == []
    assert db.read_history().is_empty()


def test_failure_in_a_later_entity_rolls_back_earlier_entities(db: store.Store) -> None:
    bad_opportunity = opportunities("Proposal", 1, T0).with_columns(
        stage=pl.lit(None, dtype=pl.String)
    )

    with pytest.raises(BatchRejected):
        db.ingest(
            IngestBatch(
                frames={"time_entries": time_entries(3), "opportunities": bad_opportunity},
                cursor=CursorAdvance("salesforce", "Opportunity", "c1"),
            )
        )

    assert db.count("time_entries") == 0
    assert db.read_cursor("salesforce", "Opportunity") is None


def test_cursor_moves_with_the_records_it_covers(db: store.Store) -> None:
    result = db.ingest(
        IngestBatch(
            frames={"time_entries": time_entries(3)},
            cursor=CursorAdvance("kantata", "time_entries", "cursor-1"),
        )
    )

    assert result.written == 3
    assert db.read_cursor("kantata", "time_entries") == "cursor-1"
    db.ingest(IngestBatch(cursor=CursorAdvance("kantata", "time_entries", "cursor-2")))
    assert db.read_cursor("kantata", "time_entries") == "cursor-2"


def test_quarantine_keeps_the_raw_payload_and_reason(db: store.Store) -> None:
    raw = '{"id": "17", "time_in_minutes": "ninety", "currency": "US$"'  # truncated on purpose
    run_id = db.start_probe_run("kantata", "time_entries")

    db.ingest(
        IngestBatch(
            quarantine=[
                QuarantineItem(
                    "kantata", "time_entries", "time_in_minutes is not an integer", raw, "17"
                )
            ],
            probe_run_id=run_id,
        )
    )

    [kept] = db.list_quarantine()
    assert (kept.source_system, kept.stream, kept.source_id) == ("kantata", "time_entries", "17")
    assert kept.raw_payload == raw.encode()
    assert kept.reason == "time_in_minutes is not an integer"
    assert kept.probe_run_id == run_id
    assert kept.received_at.tzinfo is not None


def test_quarantine_keeps_bytes_that_are_not_text(db: store.Store) -> None:
    raw = b'{"id": "9", "name": "Caf\xe9\x00 \xff'  # Latin-1, a NUL, and cut short

    db.quarantine([QuarantineItem("netsuite", "transaction", "malformed JSON", raw, "9")])

    [kept] = db.list_quarantine(source_system="netsuite")
    assert kept.raw_payload == raw


def test_database_failure_after_records_were_written_rolls_back_the_whole_batch(
    db: store.Store,
) -> None:
    unusable = QuarantineItem("kantata", "time_entries", None, "{}")  # type: ignore[arg-type]

    with pytest.raises(BatchRejected):
        db.ingest(
            IngestBatch(
                frames={"time_entries": time_entries(3)},
                quarantine=[unusable],  # NOT NULL reason: refused by the database itself
                cursor=CursorAdvance("kantata", "time_entries", "after-failure"),
            )
        )

    assert db.count("time_entries") == 0
    assert db.read_cursor("kantata", "time_entries") is None
    assert db.read_history().is_empty()


def test_probe_run_counts_every_batch_and_closes_with_status(db: store.Store) -> None:
    run_id = db.start_probe_run("kantata", "time_entries")
    db.ingest(IngestBatch(frames={"time_entries": time_entries(3)}, probe_run_id=run_id))
    db.ingest(
        IngestBatch(
            frames={"time_entries": time_entries(3)},
            quarantine=[QuarantineItem("kantata", "time_entries", "bad", "{}")],
            probe_run_id=run_id,
        )
    )
    db.finish_probe_run(run_id, status="succeeded")

    [run] = db.list_probe_runs()
    assert (run.records_read, run.records_written, run.records_unchanged) == (7, 3, 3)
    assert (run.quarantined, run.status) == (1, "succeeded")
    assert run.finished_at is not None and run.finished_at >= run.started_at


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (time_entries(1).drop("source_id"), "lacks required columns"),
        (time_entries(1).with_columns(hours=pl.lit(1.5)), "unknown columns"),
        (time_entries(1).with_columns(rate_minor=pl.lit(150.0)), "floats are not accepted"),
        (
            time_entries(1).with_columns(source_modified_at=pl.lit(datetime(2025, 1, 1))),
            "naive datetimes",
        ),
        (time_entries(1).with_columns(minutes=pl.lit("ninety")), "time_entries"),
    ],
    ids=["missing-key", "unknown-column", "float-money", "naive-time", "wrong-type"],
)
def test_malformed_frames_are_rejected_with_a_clear_reason(
    db: store.Store, frame: pl.DataFrame, message: str
) -> None:
    with pytest.raises(BatchRejected, match=message):
        db.upsert("time_entries", frame)
    assert db.count("time_entries") == 0


def test_timestamps_in_other_zones_are_stored_as_utc(db: store.Store) -> None:
    frame = time_entries(1).with_columns(
        source_modified_at=pl.lit(datetime(2025, 3, 3, 10, 0, tzinfo=UTC)).dt.convert_time_zone(
            "Europe/Berlin"
        )
    )

    db.upsert("time_entries", frame)

    stored = db.read_frame("time_entries")["source_modified_at"].item()
    assert stored == datetime(2025, 3, 3, 10, 0, tzinfo=UTC)
