"""Completeness findings: the collector's source-against-store counts and sums, kept per check.

One row per check of one (system, stream): what the source reported (records, and amount sums
per currency where its API offers them), what the store held, and whether they agreed. Rows are
only appended; the console and the exporter read the latest row of each (system, stream). A
finding is engine health (is the collector losing records?), kept apart from the data breaks.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime

import polars as pl
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Index,
    Integer,
    String,
    Table,
    Text,
    func,
    insert,
    select,
)

from store._schema import metadata
from store._types import UTCDateTime

completeness_findings = Table(
    "completeness_findings",
    metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True),
    Column("source_system", String(32), nullable=False),
    Column("stream", String(64), nullable=False),
    Column("entity", String(32)),
    Column("checked_at", UTCDateTime(), nullable=False),
    Column("ok", Boolean(), nullable=False),
    Column("source_records", BigInteger()),
    Column("store_records", BigInteger()),
    Column("amount_column", String(64)),
    Column("source_amounts", Text()),
    Column("store_amounts", Text()),
    Column("amounts_match", Boolean()),
    Column("error", Text()),
    Column("detail", Text(), nullable=False),
    Index("ix_completeness_findings_stream", "source_system", "stream", "id"),
)

COMPLETENESS_COLUMNS: dict[str, pl.DataType] = {
    "source_system": pl.String(),
    "stream": pl.String(),
    "entity": pl.String(),
    "checked_at": pl.Datetime("us", "UTC"),
    "ok": pl.Boolean(),
    "source_records": pl.Int64(),
    "store_records": pl.Int64(),
    "difference": pl.Int64(),
    "amount_column": pl.String(),
    "source_amounts": pl.String(),
    "store_amounts": pl.String(),
    "amounts_match": pl.Boolean(),
    "error": pl.String(),
    "detail": pl.String(),
}
"""Columns of ``read_completeness_findings``. ``difference`` is source minus store records
(positive: the store is missing records); amounts are JSON objects currency -> minor units, null
where the source offers no sum; ``amounts_match`` is null then too."""


def _amounts(value: Mapping[str, int] | None) -> str | None:
    if value is None:
        return None
    return json.dumps({str(k): int(v) for k, v in sorted(value.items())}, separators=(",", ":"))


def insert_completeness_finding(
    conn: Connection,
    *,
    system: str,
    stream: str,
    checked_at: datetime,
    ok: bool,
    detail: str,
    entity: str | None = None,
    source_records: int | None = None,
    store_records: int | None = None,
    amount_column: str | None = None,
    source_amounts: Mapping[str, int] | None = None,
    store_amounts: Mapping[str, int] | None = None,
    amounts_match: bool | None = None,
    error: str | None = None,
) -> int:
    """Append one finding (inside the caller's transaction); returns its id."""
    result = conn.execute(
        insert(completeness_findings).values(
            source_system=system,
            stream=stream,
            entity=entity,
            checked_at=checked_at,
            ok=ok,
            source_records=source_records,
            store_records=store_records,
            amount_column=amount_column,
            source_amounts=_amounts(source_amounts),
            store_amounts=_amounts(store_amounts) if source_amounts is not None else None,
            amounts_match=amounts_match if source_amounts is not None else None,
            error=error,
            detail=detail,
        )
    )
    key = result.inserted_primary_key
    return int(key[0]) if key is not None else 0


def read_completeness_findings(conn: Connection, *, system: str | None = None) -> pl.DataFrame:
    """The latest finding of each (system, stream), ordered by system and stream.

    Columns: ``COMPLETENESS_COLUMNS``. ``system`` keeps one system's streams only.
    """
    c = completeness_findings.c
    latest = select(func.max(c.id)).group_by(c.source_system, c.stream)
    if system is not None:
        latest = latest.where(c.source_system == system)
    query = (
        select(
            c.source_system,
            c.stream,
            c.entity,
            c.checked_at,
            c.ok,
            c.source_records,
            c.store_records,
            c.amount_column,
            c.source_amounts,
            c.store_amounts,
            c.amounts_match,
            c.error,
            c.detail,
        )
        .where(c.id.in_(latest))
        .order_by(c.source_system, c.stream)
    )
    rows = [dict(r._mapping) for r in conn.execute(query)]
    for row in rows:
        source, stored = row["source_records"], row["store_records"]
        row["difference"] = source - stored if source is not None and stored is not None else None
    return pl.DataFrame(rows, schema=COMPLETENESS_COLUMNS)
