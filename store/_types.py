"""Column types that keep timestamps timezone-aware UTC on every backend."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that must be timezone-aware going in and is always UTC coming out.

    PostgreSQL stores ``timestamptz``; SQLite has no zone, so values are normalised to UTC and
    stored as ``YYYY-MM-DD HH:MM:SS.ffffff`` text, which sorts and compares correctly.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: o2c-monitor stores only aware UTC times")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        parsed: datetime = datetime.fromisoformat(value) if isinstance(value, str) else value
        if parsed.tzinfo is None:
            return parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)


SQLITE_TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S.%6f"
"""How SQLAlchemy writes a naive datetime into SQLite; the bulk path must write the same."""
