"""Bulk row movement between polars frames and the database, the fastest way each backend allows.

PostgreSQL moves rows with COPY in CSV (polars writes and parses CSV in native code); SQLite, which
has no COPY, with ``executemany`` on the raw driver connection. Values are encoded exactly as
SQLAlchemy itself stores them, so rows written here and rows written through SQLAlchemy compare
and read back the same.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import orjson
import polars as pl
from sqlalchemy import Column, Connection, MetaData, Table
from sqlalchemy.types import Boolean, Date, Integer

from store._types import SQLITE_TIMESTAMP_FORMAT, UTCDateTime

_PG_TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S%.6f+00:00"
_COPY_CHUNK = 1 << 20


def polars_schema(table: Table, names: Sequence[str]) -> dict[str, pl.DataType]:
    """The polars dtype of each named column of a table."""
    schema: dict[str, pl.DataType] = {}
    for name in names:
        sa_type = table.c[name].type
        if isinstance(sa_type, UTCDateTime):
            schema[name] = pl.Datetime("us", "UTC")
        elif isinstance(sa_type, Boolean):
            schema[name] = pl.Boolean()
        elif isinstance(sa_type, Integer):
            schema[name] = pl.Int64()
        elif isinstance(sa_type, Date):
            schema[name] = pl.Date()
        else:
            schema[name] = pl.String()
    return schema


def insert_frame(conn: Connection, table: Table, frame: pl.DataFrame) -> int:
    """Append every row of the frame to the table; returns the number of rows."""
    if frame.is_empty():
        return 0
    if conn.dialect.name == "postgresql":
        _copy_in(conn, table.name, frame)
        return frame.height
    # Measured: executemany straight into a file-backed table costs about four times as much
    # as executemany into an in-memory temporary table followed by one INSERT ... SELECT.
    staging = _sqlite_stage(conn, table, frame)
    columns = ", ".join(frame.columns)
    conn.exec_driver_sql(f"INSERT INTO {table.name} ({columns}) SELECT {columns} FROM {staging}")
    conn.exec_driver_sql(f"DROP TABLE {staging}")
    return frame.height


def update_frame(conn: Connection, table: Table, frame: pl.DataFrame, key: Sequence[str]) -> int:
    """Overwrite the non-key columns of the rows whose key is in the frame; returns the count."""
    if frame.is_empty():
        return 0
    values = [c for c in frame.columns if c not in key]
    if conn.dialect.name == "postgresql":
        staging = _temporary_copy(conn, table, frame.columns)
        _copy_in(conn, staging, frame)
        assignments = ", ".join(f"{c} = s.{c}" for c in values)
        matches = " AND ".join(f"t.{k} = s.{k}" for k in key)
        conn.exec_driver_sql(
            f"UPDATE {table.name} AS t SET {assignments} FROM {staging} AS s WHERE {matches}"
        )
        conn.exec_driver_sql(f"DROP TABLE {staging}")
    else:
        assignments = ", ".join(f"{c} = ?" for c in values)
        matches = " AND ".join(f"{k} = ?" for k in key)
        _executemany(
            conn,
            f"UPDATE {table.name} SET {assignments} WHERE {matches}",
            _sqlite_encode(frame.select(*values, *key)),
        )
    return frame.height


def select_by_keys(
    conn: Connection, table: Table, keys: pl.DataFrame, columns: Sequence[str]
) -> pl.DataFrame:
    """The named columns of the stored rows whose (source_system, source_id) is in ``keys``."""
    schema = polars_schema(table, columns)
    if keys.is_empty():
        return pl.DataFrame(schema=schema)
    selected = ", ".join(f"t.{c}" for c in columns)
    if conn.dialect.name == "postgresql":
        staging = _temporary_copy(conn, table, keys.columns)
        _copy_in(conn, staging, keys)
        frame = copy_out(
            conn,
            f"SELECT {selected} FROM {table.name} AS t JOIN {staging} AS k "
            "ON t.source_system = k.source_system AND t.source_id = k.source_id",
            schema,
        )
        conn.exec_driver_sql(f"DROP TABLE {staging}")
        return frame
    parts = []
    for (system,), ids in keys.group_by(["source_system"], maintain_order=True):
        # One JSON array parameter instead of one placeholder per key: SQLite caps placeholders.
        sql = (
            f"SELECT {selected} FROM {table.name} AS t WHERE t.source_system = ? "
            "AND t.source_id IN (SELECT value FROM json_each(?))"
        )
        payload = orjson.dumps(ids["source_id"].to_list()).decode()
        rows = _fetchall(conn, sql, (system, payload))
        parts.append(sqlite_decode(rows, schema))
    return pl.concat(parts) if parts else pl.DataFrame(schema=schema)


def copy_out(conn: Connection, sql: str, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """Run a PostgreSQL SELECT through COPY ... TO STDOUT and parse it as a typed frame."""
    raw = conn.connection.driver_connection
    buffer = io.BytesIO()
    with raw.cursor() as cur, cur.copy(f"COPY ({sql}) TO STDOUT (FORMAT csv)") as copy:  # type: ignore[union-attr]
        for block in copy:
            buffer.write(block)
    as_text = {
        n: (pl.String() if isinstance(d, pl.Datetime | pl.Boolean) else d)
        for n, d in schema.items()
    }
    frame = pl.read_csv(
        buffer.getvalue(), has_header=False, new_columns=list(schema), schema=as_text
    )
    return frame.with_columns(
        *(
            pl.col(n).str.to_datetime(time_zone="UTC", time_unit="us")
            for n, d in schema.items()
            if isinstance(d, pl.Datetime)
        ),
        *(pl.col(n) == "t" for n, d in schema.items() if d == pl.Boolean),
    )


def sqlite_decode(rows: list[tuple[Any, ...]], schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """Rows as SQLite stores them (text times and dates, 0/1 booleans) to a typed frame."""
    stored = {
        n: (
            pl.String()
            if isinstance(d, pl.Datetime) or d == pl.Date
            else pl.Int64()
            if d == pl.Boolean
            else d
        )
        for n, d in schema.items()
    }
    frame = pl.DataFrame(rows, schema=stored, orient="row")
    return frame.with_columns(
        *(
            pl.col(n).str.to_datetime("%Y-%m-%d %H:%M:%S%.f", time_zone="UTC", time_unit="us")
            for n, d in schema.items()
            if isinstance(d, pl.Datetime)
        ),
        *(pl.col(n).str.to_date("%Y-%m-%d") for n, d in schema.items() if d == pl.Date),
        *(pl.col(n).cast(pl.Boolean) for n, d in schema.items() if d == pl.Boolean),
    )


def _sqlite_encode(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(
        *(
            pl.col(n).dt.strftime(SQLITE_TIMESTAMP_FORMAT)
            for n, d in frame.schema.items()
            if isinstance(d, pl.Datetime)
        ),
        *(pl.col(n).dt.strftime("%Y-%m-%d") for n, d in frame.schema.items() if d == pl.Date),
        *(pl.col(n).cast(pl.Int8) for n, d in frame.schema.items() if d == pl.Boolean),
    )


def _sqlite_stage(conn: Connection, table: Table, frame: pl.DataFrame) -> str:
    staging = _temporary_copy(conn, table, frame.columns)
    columns = ", ".join(frame.columns)
    _executemany(
        conn,
        f"INSERT INTO {staging} ({columns}) VALUES ({', '.join('?' for _ in frame.columns)})",
        _sqlite_encode(frame),
    )
    return staging


def _executemany(conn: Connection, sql: str, frame: pl.DataFrame) -> None:
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.executemany(sql, frame.iter_rows())
    finally:
        cursor.close()


def _fetchall(conn: Connection, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(sql, params)
        return list(cursor.fetchall())
    finally:
        cursor.close()


def _temporary_copy(conn: Connection, table: Table, columns: Sequence[str]) -> str:
    """A temporary table with the named columns of ``table``, dropped at commit at the latest."""
    name = f"tmp_{table.name}"
    temp = Table(
        name,
        MetaData(),
        *(Column(c, table.c[c].type) for c in columns),
        prefixes=["TEMPORARY"],
        postgresql_on_commit="DROP",
    )
    temp.drop(conn, checkfirst=True)
    temp.create(conn)
    return name


def _copy_in(conn: Connection, table_name: str, frame: pl.DataFrame) -> None:
    raw = conn.connection.driver_connection
    text = frame.write_csv(include_header=False, datetime_format=_PG_TIMESTAMP_FORMAT)
    view = memoryview(text.encode())
    statement = f"COPY {table_name} ({', '.join(frame.columns)}) FROM STDIN (FORMAT csv)"
    with raw.cursor() as cur, cur.copy(statement) as copy:  # type: ignore[union-attr]
        for start in range(0, len(view), _COPY_CHUNK):
            copy.write(view[start : start + _COPY_CHUNK])
