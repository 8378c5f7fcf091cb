"""Fixtures of the collector tests: a PostgreSQL-only store, sandboxes, and collector child processes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text

import store


@pytest.fixture
def postgres_db(postgres_url: str) -> Iterator[store.Store]:
    """A Store on the session's PostgreSQL database, emptied first (for PostgreSQL-only tests)."""
    engine = create_engine(postgres_url)
    with engine.begin() as conn:
        tables = ", ".join(f'"{t}"' for t in store.metadata.tables)
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY"))
    engine.dispose()
    instance = store.Store(postgres_url)
    yield instance
    instance.dispose()
