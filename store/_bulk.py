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

import polars as pl
from sqlalchemy import Column, Connection, MetaData, Table, bindparam, text
from sqlalchemy.types import BigInteger, Boolean, Date, Integer

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


class Staged:
    """A frame loaded into a temporary table, to be joined with its target in set-based SQL."""

    def __init__(self, conn: Connection, table: Table, frame: pl.DataFrame) -> None:
        self.conn = conn
        self.table = table
        self.columns = list(frame.columns)
        self.name = _temporary_copy(conn, table, self.columns)
        if conn.dialect.name == "postgresql":
            # No ANALYZE: the planner sizes a never-analysed table from its pages, which is
            # enough to choose hash joins, and ANALYZE would cost a third of the whole batch.
            _copy_in(conn, self.name, frame)
        else:
            # Measured: executemany into an in-memory temporary table and one INSERT ... SELECT
            # costs a quarter of executemany straight into a file-backed table.
            _executemany(
                conn,
                f"INSERT INTO {self.name} ({', '.join(self.columns)}) "
                f"VALUES ({', '.join('?' for _ in self.columns)})",
                _sqlite_encode(frame),
            )

    def _matches(self, key: Sequence[str]) -> str:
        return " AND ".join(f"{self.table.name}.{k} = s.{k}" for k in key)

    def insert_all(
        self, *, constants: dict[str, Any] | None = None, except_seqs: str | None = None
    ) -> int:
        """Insert the staged rows into the target, with constant columns added, leaving out the
        rows whose ``_seq`` appears in the ``seq`` column of the table named by ``except_seqs``."""
        constants = constants or {}
        own = [c for c in self.columns if c in self.table.c]
        columns = ", ".join([*own, *constants])
        values = ", ".join([*(f"s.{c}" for c in own), *(f":{c}" for c in constants)])
        where = f" WHERE s._seq NOT IN (SELECT seq FROM {except_seqs})" if except_seqs else ""
        result = self.conn.execute(
            text(
                f"INSERT INTO {self.table.name} ({columns}) SELECT {values} FROM {self.name} AS s"
                + where
            ).bindparams(
                *(bindparam(c, v, type_=self.table.c[c].type) for c, v in constants.items())
            ),
            execution_options={"preserve_rowcount": True},
        )
        return int(result.rowcount)

    def update_matching(self, key: Sequence[str]) -> int:
        """Overwrite the target's non-key columns from the staged rows with the same key."""
        assignments = ", ".join(f"{c} = s.{c}" for c in self.columns if c not in key)
        result = self.conn.exec_driver_sql(
            f"UPDATE {self.table.name} SET {assignments} FROM {self.name} AS s "
            f"WHERE {self._matches(key)}"
        )
        return int(result.rowcount)

    def drop(self) -> None:
        self.conn.exec_driver_sql(f"DROP TABLE {self.name}")


def any_stored(conn: Connection, table: Table, frame: pl.DataFrame, key: Sequence[str]) -> bool:
    """Whether any key of the frame is already in the table (keys staged alone: cheap to move)."""
    keys = Staged(conn, table, frame.select(key))
    matches = " AND ".join(f"t.{k} = s.{k}" for k in key)
    found = conn.exec_driver_sql(
        f"SELECT EXISTS (SELECT 1 FROM {keys.name} AS s JOIN {table.name} AS t ON {matches})"
    ).scalar_one()
    keys.drop()
    return bool(found)


def insert_frame(conn: Connection, table: Table, frame: pl.DataFrame) -> int:
    """Append every row of the frame to the table; returns the number of rows."""
    if frame.is_empty():
        return 0
    if conn.dialect.name == "postgresql":
        _copy_in(conn, table.name, frame)
        return frame.height
    staged = Staged(conn, table, frame)
    count = staged.insert_all()
    staged.drop()
    return count


def update_frame(conn: Connection, table: Table, frame: pl.DataFrame, key: Sequence[str]) -> int:
    """Overwrite the non-key columns of the rows whose key is in the frame; returns the count."""
    if frame.is_empty():
        return 0
    staged = Staged(conn, table, frame)
    count = staged.update_matching(key)
    staged.drop()
    return count


def read_sql(conn: Connection, sql: str, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """Rows of a SELECT as a typed frame: through COPY on PostgreSQL, raw rows on SQLite."""
    if conn.dialect.name == "postgresql":
        return copy_out(conn, sql, schema)
    return sqlite_decode(_fetchall(conn, sql, ()), schema)


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
        # Columns the target lacks (the batch's _seq) are row numbers.
        *(Column(c, table.c[c].type if c in table.c else BigInteger()) for c in columns),
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
