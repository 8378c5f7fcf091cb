"""The console's targeted reads: a deal's records by id or reference, the breaks naming a record."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import polars as pl
import pytest
import sqlalchemy as sa

import store
from tests.conftest import BACKENDS

AT = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def _record(system: str, entity: str, source_id: str) -> str:
    return f'{{"system":"{system}","entity":"{entity}","id":"{source_id}"}}'


def _break(break_id: str, *records: tuple[str, str, str]) -> dict[str, object]:
    system, entity, source_id = records[0]
    return {
        "break_id": break_id,
        "break_type": "invoice_without_billing",
        "severity": "high",
        "remediation": "auto",
        "status": "new",
        "key": f"{entity}:{system}:{source_id}",
        "records": "[" + ",".join(_record(*r) for r in records) + "]",
        "systems": ",".join(sorted({r[0] for r in records})),
        "legal_entity": "US01",
        "amount_minor": 1000,
        "currency": "USD",
        "amount_reporting_minor": 1000,
        "reporting_currency": "USD",
        "since": AT,
        "first_detected_at": AT,
        "status_since": AT,
        "resolved_at": None,
        "detail": None,
        "accepted_note": None,
        "accepted_until": None,
        "accepted_by": None,
        "updated_run_id": 1,
    }


def _frame(*rows: dict[str, object]) -> pl.DataFrame:
    return pl.DataFrame(list(rows), schema_overrides={"since": pl.Datetime("us", "UTC")})


def _mentioning(db: store.Store, *ids: str) -> list[str]:
    with db.begin() as conn:
        return store.read_breaks_mentioning(conn, ids).get_column("break_id").to_list()


def test_a_break_is_found_by_every_record_it_names(db: store.Store) -> None:
    invoice = ("netsuite", "invoices", "INV-1")
    project = ("kantata", "projects", "P-7")
    with db.begin(write=True) as conn:
        store.write_break_register(
            conn, _frame(_break("b1", invoice, project), _break("b2", project)), _frame()
        )

    assert _mentioning(db, "INV-1") == ["b1"]
    assert _mentioning(db, "P-7") == ["b1", "b2"]
    assert _mentioning(db, "NOPE") == []


def test_a_break_whose_records_change_is_found_by_its_new_records_only(db: store.Store) -> None:
    first = ("stripe", "payments", "py_1")
    with db.begin(write=True) as conn:
        store.write_break_register(conn, _frame(_break("b1", first)), _frame())
    with db.begin(write=True) as conn:
        store.write_break_register(
            conn, _frame(), _frame(_break("b1", ("stripe", "payments", "py_2")))
        )

    assert _mentioning(db, "py_1") == []
    assert _mentioning(db, "py_2") == ["b1"]


def _put_projects(db: store.Store, rows: list[tuple[str, str, str | None]]) -> None:
    frame = pl.DataFrame(
        [
            {
                "source_system": system,
                "source_id": source_id,
                "source_modified_at": AT,
                "name": source_id,
                "opportunity_ref": opportunity,
                "status": "active",
                "currency": "USD",
            }
            for system, source_id, opportunity in rows
        ]
    )
    db.upsert(store.PROJECT, frame, observed_at=AT)


def test_records_are_read_by_id_or_by_reference_once_each(db: store.Store) -> None:
    _put_projects(
        db,
        [("kantata", "P-1", "006A"), ("kantata", "P-2", "006B"), ("other", "P-1", None)],
    )
    with db.begin() as conn:
        found = store.read_records_where(
            conn, store.PROJECT, {"source_id": ["P-1"], "opportunity_ref": ["006A", "006B"]}
        )
    assert found.select("source_system", "source_id").rows() == [
        ("kantata", "P-1"), ("kantata", "P-2"), ("other", "P-1"),
    ]  # fmt: skip


def test_reading_records_by_an_unknown_column_is_a_clear_error(db: store.Store) -> None:
    with db.begin() as conn, pytest.raises(ValueError, match="unknown columns"):
        store.read_records_where(conn, store.PROJECT, {"colour": ["red"]})


def test_a_lookup_by_source_id_is_served_by_the_primary_key(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # SQLite states its plan plainly: SEARCH uses an index, SCAN reads the whole table.
    db = store.Store(f"sqlite:///{tmp_path / 'plan.sqlite3'}")
    try:
        store.upgrade(db.engine)
        _put_projects(db, [("kantata", "P-1", "006A")])
        statements: list[str] = []
        sa.event.listen(db.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
        with db.begin() as conn:
            store.read_records_where(conn, store.PROJECT, {"source_id": ["P-1"]})
            plans = [
                " ".join(str(r[-1]) for r in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {s}"))
                for s in statements
                if s.lstrip().upper().startswith(("SELECT", "WITH"))
            ]
    finally:
        db.dispose()
    assert plans and not any(re.search(r"\bSCAN projects\b", p) for p in plans), plans


@pytest.mark.parametrize("empty_database_url", BACKENDS, indirect=True)
def test_upgrading_an_existing_register_indexes_its_breaks_records(
    empty_database_url: str,
) -> None:
    engine = store.create_store_engine(empty_database_url)
    try:
        store.upgrade(engine, "0005")
        row = _break("b1", ("netsuite", "invoices", "INV-1"), ("kantata", "projects", "P-7"))
        with engine.begin() as conn:
            conn.execute(sa.insert(sa.table("breaks", *(sa.column(k) for k in row))), [row])
        store.upgrade(engine)
        with engine.connect() as conn:
            pairs = conn.execute(
                sa.text(
                    "SELECT break_id, entity, source_system, source_id FROM break_records "
                    "ORDER BY source_id"
                )
            ).all()
    finally:
        engine.dispose()
    assert [tuple(p) for p in pairs] == [
        ("b1", "invoices", "netsuite", "INV-1"), ("b1", "projects", "kantata", "P-7"),
    ]  # fmt: skip
