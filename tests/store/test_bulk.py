"""The bulk paths: PostgreSQL binary COPY stores what CSV COPY stores; the all-new fast path."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import polars as pl
import pytest
from sqlalchemy import Connection, select

import store
from store import CursorAdvance, IngestBatch, _bulk, _upsert
from store._reconcile import kpi_snapshots
from store._repository import read_query
from tests.store.test_upsert import time_entries

T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
postgres_only = pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)


def _every_kind(prefix: str) -> pl.DataFrame:
    """Time entries with a null in every nullable column, empty and non-ASCII text, far dates."""
    return pl.DataFrame(
        {
            "source_system": ["kantata"] * 4,
            "source_id": [f"{prefix}-{i}" for i in range(4)],
            "source_modified_at": [
                datetime(1999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
                datetime(2000, 1, 1, tzinfo=UTC),
                T0,
                datetime(2262, 4, 11, tzinfo=UTC),
            ],
            "first_seen_at": [T0] * 4,
            "last_seen_at": [T0] * 4,
            "is_deleted": [False, True, False, False],
            "project_ref": ["Zürich €", "", None, "x" * 64],
            "entry_date": [
                date(1970, 1, 1),
                date(1999, 12, 31),
                date(2000, 1, 1),
                date(9999, 12, 31),
            ],
            "minutes": [0, -1, 2**62, -(2**62)],
            "billable": [True, False, True, False],
            "rate_minor": [None, 0, 9_223_372_036_854_775_807, -9_223_372_036_854_775_808],
            "currency": ["USD", "EUR", "GBP", "JPY"],
            "status": ["approved", 'say "hi", ok', "new\nline", "back\\slash"],
            "approved_at": [None, T0, None, T0 + timedelta(microseconds=1)],
            # An all-null column arrives as polars' Null type.
            "invoice_ref": [None, None, None, None],
        }
    )


def _stored(conn: Connection, prefix: str) -> pl.DataFrame:
    table = store.ENTITIES["time_entries"].table
    query = select(table).where(table.c.source_id.startswith(prefix)).order_by(table.c.source_id)
    frame = read_query(conn, query, _bulk.polars_schema(table, list(table.c.keys())))
    return frame.drop("source_id")


@postgres_only
def test_binary_copy_stores_exactly_what_csv_copy_stores(
    db: store.Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = store.ENTITIES["time_entries"].table
    with db.begin(write=True) as conn:
        assert _bulk._binary_kinds(conn.dialect, table, _every_kind("bin")) is not None
        _bulk.insert_frame(conn, table, _every_kind("bin"))
        with monkeypatch.context() as patch:
            patch.setattr(_bulk, "_binary_kinds", lambda *_: None)
            _bulk.insert_frame(conn, table, _every_kind("csv"))
        binary, csv = _stored(conn, "bin"), _stored(conn, "csv")

    assert binary.equals(csv)
    expected = _every_kind("bin").drop("source_id").cast(binary.schema)  # type: ignore[arg-type]
    assert binary.equals(expected)


@postgres_only
def test_binary_copy_keeps_floats_and_instants_in_other_zones(db: store.Store) -> None:
    berlin = pl.Series([T0, T0], dtype=pl.Datetime("us", "UTC")).dt.convert_time_zone(
        "Europe/Berlin"
    )
    frame = pl.DataFrame(
        {
            "run_id": pl.Series([1, 2], dtype=pl.Int32),
            "as_of": berlin,
            "kpi": ["dso", "dso"],
            "dimension": ["all", "all"],
            "value": [0.1, None],
            "value_minor": [None, -5],
            "unit": ["days", "days"],
            "currency": [None, "EUR"],
        }
    )
    with db.begin(write=True) as conn:
        assert _bulk._binary_kinds(conn.dialect, kpi_snapshots, frame) is not None
        _bulk.insert_frame(conn, kpi_snapshots, frame)
    with db.begin() as conn:
        stored = store.read_kpi_snapshots(conn)
    assert stored["as_of"].to_list() == [T0, T0]
    assert stored["value"].to_list() == [0.1, None]
    assert stored["value_minor"].to_list() == [None, -5]
    assert stored["currency"].to_list() == [None, "EUR"]


@postgres_only
def test_columns_the_binary_encoder_does_not_know_go_as_csv(db: store.Store) -> None:
    table = store.ENTITIES["time_entries"].table
    with db.begin() as conn:
        as_text = pl.DataFrame({"minutes": ["60"]})  # text into BIGINT: the server parses it
        assert _bulk._binary_kinds(conn.dialect, table, as_text) is None
        quarantine = store.metadata.tables["quarantine"]
        assert (
            _bulk._binary_kinds(conn.dialect, quarantine, pl.DataFrame({"raw_payload": [b"x"]}))
            is None
        )


@postgres_only
def test_all_new_batch_goes_in_one_copy_and_a_stored_key_refuses_it(db: store.Store) -> None:
    table = store.ENTITIES["time_entries"].table
    db.upsert("time_entries", time_entries(100).filter(pl.col("source_id") == "te-1"))
    rows = time_entries(100).with_columns(
        source_modified_at=pl.lit(T0),
        first_seen_at=pl.lit(T0),
        last_seen_at=pl.lit(T0),
        is_deleted=pl.lit(False),
    )
    with db.begin(write=True) as conn:
        # te-1 is not among the sampled keys (every third row): the primary key refuses the COPY.
        assert "te-1" not in rows["source_id"].gather_every(100 // _bulk._KEY_SAMPLE).to_list()
        assert not _bulk.insert_if_new(conn, table, rows, ("source_system", "source_id"))
        assert not _bulk.insert_if_new(conn, table, rows.head(2), ("source_system", "source_id"))
        # The transaction goes on: nothing of the refused COPY is left.
        assert _bulk.insert_if_new(conn, table, rows.slice(2), ("source_system", "source_id"))
    assert db.count("time_entries") == 99


def test_batch_with_one_stored_key_among_new_ones_keeps_every_guarantee(db: store.Store) -> None:
    db.upsert(
        "time_entries", time_entries(100).filter(pl.col("source_id") == "te-1"), observed_at=T0
    )
    later = T0 + timedelta(hours=1)
    batch = time_entries(100, modified=later).with_columns(
        status=pl.when(pl.col("source_id") == "te-1").then(pl.lit("approved")).otherwise("status")
    )

    result = db.ingest(
        IngestBatch(
            frames={"time_entries": batch},
            cursor=CursorAdvance("kantata", "time_entries", "c2"),
            observed_at=later,
        )
    )

    upsert = result.upserts[0]
    assert (upsert.inserted, upsert.updated, upsert.unchanged, upsert.stale) == (99, 1, 0, 0)
    assert db.count("time_entries") == 100
    history = db.read_history()
    assert history.select("source_id", "field", "old_value", "new_value").rows() == [
        ("te-1", "status", "submitted", "approved")
    ]
    assert db.read_cursor("kantata", "time_entries") == "c2"
    stored = db.read_frame("time_entries").sort("source_id")
    assert stored.filter(pl.col("source_id") == "te-1")["first_seen_at"].item() == T0
    assert stored.filter(pl.col("source_id") != "te-1")["first_seen_at"].unique().to_list() == [
        later
    ]


# --------------------------------------------------------------------------- Arrow reads


def _read_both(
    db: store.Store, monkeypatch: pytest.MonkeyPatch, written_after: datetime | None = None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """read_canonical through the ADBC driver (never falling back) and through the transaction."""
    entity = store.ENTITIES["time_entries"]
    columns = [c.name for c in entity.table.columns]
    with db.begin() as conn:
        schema = _bulk.polars_schema(entity.table, columns)
        sql = str(
            select(*(entity.table.c[c] for c in columns))
            .where(
                entity.table.c.last_seen_at > (written_after or datetime.min.replace(tzinfo=UTC))
            )
            .compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True})
        )
        with monkeypatch.context() as patch:
            if db.backend == "postgresql":  # SQLite reads through the transaction (read_arrow)
                patch.setattr(_bulk, "read_sql", _no_fallback)
            fast = _bulk.read_arrow(conn, sql, schema)
        slow = _bulk.read_sql(conn, sql, schema)
    return fast.sort("source_id"), slow.sort("source_id")


def _no_fallback(*_: object) -> pl.DataFrame:
    raise AssertionError("the Arrow read fell back to reading through the transaction")


def test_arrow_read_returns_exactly_the_frame_of_the_transaction_read(
    db: store.Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    offered = _every_kind("te").drop("first_seen_at", "last_seen_at")
    offered = offered.with_columns(
        source_modified_at=pl.col("source_modified_at").dt.convert_time_zone("Asia/Kolkata")
    )
    db.upsert("time_entries", offered, observed_at=T0)

    fast, slow = _read_both(db, monkeypatch)

    assert fast.equals(slow)
    assert fast.schema == _bulk.polars_schema(store.ENTITIES["time_entries"].table, fast.columns)
    assert fast.height == 4  # deleted records included
    assert fast["source_modified_at"].dtype == pl.Datetime("us", "UTC")
    assert fast.drop("first_seen_at", "last_seen_at").equals(
        offered.with_columns(pl.col("source_modified_at").dt.convert_time_zone("UTC"))
        .select(fast.drop("first_seen_at", "last_seen_at").columns)
        .cast(fast.drop("first_seen_at", "last_seen_at").schema)  # type: ignore[arg-type]
        .sort("source_id")
    )


def test_arrow_read_of_changes_since_a_time_and_of_nothing(
    db: store.Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    db.upsert("time_entries", time_entries(3), observed_at=T0)
    db.upsert("time_entries", time_entries(5).slice(3), observed_at=T0 + timedelta(hours=1))

    fast, slow = _read_both(db, monkeypatch, written_after=T0)
    assert fast.equals(slow)
    assert fast["source_id"].to_list() == ["te-3", "te-4"]

    fast, slow = _read_both(db, monkeypatch, written_after=T0 + timedelta(days=1))
    assert fast.is_empty()
    assert fast.schema == slow.schema


@postgres_only
def test_whole_large_tables_are_read_as_arrow_and_the_rest_through_the_transaction(
    db: store.Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from store import _reconcile

    entity = store.ENTITIES["time_entries"]
    db.upsert("time_entries", time_entries(3), observed_at=T0)
    with db.begin() as conn:
        conn.exec_driver_sql("ANALYZE time_entries")
    assert 0 < store_estimate(db, entity) < _reconcile.ARROW_READ_MIN_ROWS
    used: list[str] = []
    for name in ("read_arrow", "read_sql"):
        inner = getattr(_bulk, name)
        monkeypatch.setattr(
            _bulk, name, lambda *a, inner=inner, name=name: used.append(name) or inner(*a)
        )
    with db.begin() as conn:
        store.read_canonical(conn, entity, ["source_id"])
        store.read_canonical(conn, entity, ["source_id"], written_after=T0)
        monkeypatch.setattr(_reconcile, "ARROW_READ_MIN_ROWS", 3)
        store.read_canonical(conn, entity, ["source_id"])
        store.read_canonical(conn, entity, ["source_id"], written_after=T0)
    assert used == ["read_sql", "read_sql", "read_arrow", "read_sql"]


def store_estimate(db: store.Store, entity: store.Entity) -> float:
    with db.begin() as conn:
        return _bulk.estimated_rows(conn, entity.table)


def test_a_transaction_that_wrote_reads_its_own_rows(db: store.Store) -> None:
    entity = store.ENTITIES["time_entries"]
    with db.begin(write=True) as conn:
        _upsert.upsert_records(conn, entity, time_entries(2), observed_at=T0)
        sql = "SELECT source_id, minutes FROM time_entries"
        read = _bulk.read_arrow(conn, sql, {"source_id": pl.String(), "minutes": pl.Int64()})
    assert sorted(read["source_id"].to_list()) == ["te-0", "te-1"]


SOURCE_ID: dict[str, pl.DataType] = {"source_id": pl.String()}


@postgres_only
def test_arrow_read_sees_the_snapshot_of_the_callers_transaction(
    db: store.Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_bulk, "read_sql", _no_fallback)  # the driver's connection reads
    db.upsert("time_entries", time_entries(2), observed_at=T0)
    with db.engine.connect() as conn:
        conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            assert conn.exec_driver_sql("SELECT count(*) FROM time_entries").scalar_one() == 2
            db.upsert("time_entries", time_entries(3).slice(2), observed_at=T0)  # committed
            read = _bulk.read_arrow(conn, "SELECT source_id FROM time_entries", SOURCE_ID)
    assert sorted(read["source_id"].to_list()) == ["te-0", "te-1"]


@postgres_only
def test_a_driver_that_fails_falls_back_to_the_transaction_read(
    db: store.Store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import adbc_driver_manager

    def broken(*_: object) -> None:
        raise adbc_driver_manager.OperationalError(
            "cannot connect", status_code=adbc_driver_manager.AdbcStatusCode.IO
        )

    db.upsert("time_entries", time_entries(2), observed_at=T0)
    monkeypatch.setattr(_bulk, "_adbc_postgresql", broken)
    with db.begin() as conn:
        read = _bulk.read_arrow(conn, "SELECT source_id FROM time_entries", SOURCE_ID)
    assert sorted(read["source_id"].to_list()) == ["te-0", "te-1"]
    assert "Arrow read failed" in caplog.text


def test_the_changes_since_a_time_are_found_by_an_index_not_by_a_scan(
    db: store.Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The reconciler's frame cache asks this at every run; at scale 10 a scan of every table
    # to find no change took 1.6 s. The plan is taken at the moment of the read, with whatever
    # settings the read runs under: a tiny table, never analysed, is what PostgreSQL otherwise
    # always scans (as it did a never-analysed table of 11.7M time entries, 1.3 s per run).
    entity = store.ENTITIES["time_entries"]
    db.upsert("time_entries", time_entries(3), observed_at=T0)
    plans: list[str] = []
    inner = _bulk.read_sql

    def explained(conn: Connection, sql: str, *args: Any) -> pl.DataFrame:
        if conn.dialect.name == "postgresql":
            rows = conn.exec_driver_sql(f"EXPLAIN {sql}")
            plans.append(" ".join(str(r[0]) for r in rows))
        else:
            rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}")
            plans.append(" ".join(str(r[-1]) for r in rows))
        return inner(conn, sql, *args)

    monkeypatch.setattr(_bulk, "read_sql", explained)
    with db.begin() as conn:
        store.read_canonical(conn, entity, ["source_id"], written_after=T0)
        (plan,) = plans
        if db.backend == "postgresql":  # and the setting does not outlive the read
            assert conn.exec_driver_sql("SHOW enable_seqscan").scalar_one() == "on"
    assert "ix_time_entries_last_seen_at" in plan, plan


def test_a_read_of_more_rows_than_a_batch_returns_every_row_typed(
    db: store.Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    entity = store.ENTITIES["time_entries"]
    db.upsert("time_entries", time_entries(5), observed_at=T0)
    columns = ["source_id", "entry_date", "minutes", "billable", "last_seen_at"]
    with db.begin() as conn:
        whole = store.read_canonical(conn, entity, columns, written_after=T0 - timedelta(1))
        monkeypatch.setattr(_bulk, "SQLITE_READ_BATCH", 2)  # SQLite reads 2 rows at a time
        batched = store.read_canonical(conn, entity, columns, written_after=T0 - timedelta(1))
        monkeypatch.setattr(_bulk, "SQLITE_READ_BATCH", 5)  # a last batch that is empty
        exact = store.read_canonical(conn, entity, columns, written_after=T0 - timedelta(1))
        none = store.read_canonical(conn, entity, columns, written_after=T0 + timedelta(1))
    assert batched.sort("source_id").equals(whole.sort("source_id"))
    assert exact.sort("source_id").equals(whole.sort("source_id"))
    assert whole.height == 5 and whole.schema["entry_date"] == pl.Date
    assert whole.schema["last_seen_at"] == pl.Datetime("us", "UTC")
    assert none.is_empty() and none.schema == whole.schema
