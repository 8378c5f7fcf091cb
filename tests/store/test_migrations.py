"""Migrations: from an empty database to head on every backend, matching the declared schema."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

import store
from tests.conftest import BACKENDS


@pytest.mark.parametrize("empty_database_url", BACKENDS, indirect=True)
def test_upgrade_takes_an_empty_database_to_head(empty_database_url: str) -> None:
    engine = store.create_store_engine(empty_database_url)
    try:
        before = store.status(engine)
        after = store.upgrade(engine)
    finally:
        engine.dispose()

    assert before.current is None and not before.up_to_date
    assert after.current == store.head_revision() and after.up_to_date
    assert set(store.metadata.tables) <= set(after.tables)


@pytest.mark.parametrize("empty_database_url", BACKENDS, indirect=True)
def test_upgrade_twice_changes_nothing(empty_database_url: str) -> None:
    engine = store.create_store_engine(empty_database_url)
    try:
        first = store.upgrade(engine)
        second = store.upgrade(engine)
    finally:
        engine.dispose()
    assert first == second


def test_migrations_create_exactly_the_declared_schema(db: store.Store) -> None:
    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        differences = compare_metadata(context, store.metadata)
    assert differences == []


@pytest.mark.parametrize("empty_database_url", BACKENDS, indirect=True)
def test_require_head_names_the_command_that_fixes_an_old_schema(empty_database_url: str) -> None:
    engine = store.create_store_engine(empty_database_url)
    try:
        with pytest.raises(store.SchemaError, match="o2c db upgrade"):
            store.require_head(engine)
    finally:
        engine.dispose()
