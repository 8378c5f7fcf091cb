"""Bulk row movement between polars frames and the database, the fastest way each backend allows.

PostgreSQL moves rows with COPY: in its binary format, encoded from Arrow buffers in native code
(no text to parse on the server: timestamps and integers arrive as the server stores them), or
in CSV for a column type the binary encoder does not know. SQLite, which has no COPY, moves rows
with ``executemany`` on the raw driver connection. Values are encoded exactly as SQLAlchemy
itself stores them, so rows written here and rows written through SQLAlchemy compare and read
back the same.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import (
    Column,
    Connection,
    MetaData,
    Table,
    and_,
    bindparam,
    column,
    literal,
    select,
    text,
    values,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import BigInteger, Boolean, Date, Integer

from store._types import SQLITE_TIMESTAMP_FORMAT, UTCDateTime

_log = logging.getLogger(__name__)

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
        self.temporary = _temporary_copy(conn, table, self.columns)
        self.name = self.temporary.name
        if conn.dialect.name == "postgresql":
            # No ANALYZE: the planner sizes a never-analysed table from its pages, which is
            # enough to choose hash joins, and ANALYZE would cost a third of the whole batch.
            _copy_in(conn, self.temporary, frame)
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


_KEY_SAMPLE = 32


def insert_if_new(conn: Connection, table: Table, frame: pl.DataFrame, key: Sequence[str]) -> bool:
    """PostgreSQL: append every row of the frame if none of its keys is stored, in one COPY.

    Returns False, having written nothing, when a key is already stored. A few keys spread over
    the frame are looked up first (a batch that re-reads stored records is told apart in
    one indexed query); then the COPY runs under a savepoint, and the table's primary key
    (``key``) rejects it at the first stored key, which rolls back to the savepoint. The
    primary key is the check, so the keys are not staged and probed separately; what a
    rejected COPY wrote is left as dead rows for vacuum.
    """
    from psycopg.errors import UniqueViolation

    sample = frame.select(key).gather_every(max(1, frame.height // _KEY_SAMPLE))
    # A join with the sampled keys as a VALUES list: one index probe per key (OR-ed
    # equalities share a leading column, and the planner then filters the whole range).
    keys = values(*(column(k, table.c[k].type) for k in key), name="sampled").data(sample.rows())
    probe = select(literal(1)).select_from(
        keys.join(table, and_(*(table.c[k] == keys.c[k] for k in key)))
    )
    if conn.execute(probe.limit(1)).first() is not None:
        return False
    primary_key = table.primary_key.name
    try:
        with conn.begin_nested():
            _copy_in(conn, table, frame)
    except UniqueViolation as exc:
        if exc.diag.constraint_name != primary_key:
            raise
        return False
    return True


def insert_frame(conn: Connection, table: Table, frame: pl.DataFrame) -> int:
    """Append every row of the frame to the table; returns the number of rows."""
    if frame.is_empty():
        return 0
    if conn.dialect.name == "postgresql":
        _copy_in(conn, table, frame)
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
    """Rows of a SELECT as a typed frame: through COPY on PostgreSQL, raw rows on SQLite.

    Every statement runs on ``conn``, in its transaction: for large reads of committed data
    see ``read_arrow``.
    """
    if conn.dialect.name == "postgresql":
        return copy_out(conn, sql, schema)
    return _sqlite_read(conn, sql, schema)


SQLITE_READ_BATCH = 100_000
"""Rows decoded at a time on SQLite. A driver row is a tuple of Python objects, about ten times
the size of the same values in a frame: decoded all at once, 2.9M time entries took 3.5 GiB at
the peak of a cold reconcile; a batch at a time, each batch's tuples are freed as it is typed."""


def _sqlite_read(conn: Connection, sql: str, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(sql)
        parts = []
        while rows := cursor.fetchmany(SQLITE_READ_BATCH):
            parts.append(sqlite_decode(rows, schema))
    finally:
        cursor.close()
    return pl.concat(parts, how="vertical") if parts else sqlite_decode([], schema)


def read_arrow(conn: Connection, sql: str, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """Rows of a SELECT as a typed frame, read as Arrow by the ADBC driver on PostgreSQL.

    The frame is the one ``read_sql`` returns (same dtypes, UTC times, nulls), built without a
    Python object per value: the server sends binary COPY, which the driver decodes into Arrow
    arrays in native code. The driver has its own connection, which reads in the snapshot of
    ``conn``'s transaction (exported and imported), so it sees what a statement on ``conn``
    would see. ``read_sql`` runs instead when ``conn``'s transaction has written (its writes
    are not committed, so another connection would not see them), when the driver is not
    installed or cannot connect with the engine's URL, or when it returns a column that does
    not convert exactly.

    SQLite always reads through ``read_sql``: its ADBC driver (like connectorx) links its own
    copy of SQLite, and two copies in one process break SQLite's POSIX locks (closing either's
    file descriptor drops the other's locks; sqlite.org/howtocorrupt.html 2.2.1). Seen here:
    stale reads, then "disk I/O error" in the collector's writes while a reconcile read in
    the same process (o2c demo, 2026-12-02). A child process running the driver is safe
    (SQLite's ordinary multi-process locking) and was measured the same day: 583k time
    entries 3.1 -> 2.25 CPU-s counting the child, but starting one costs about 0.6 CPU-s, so
    140k-row tables got slower (0.6 -> 1.2) and a whole load did not gain. It would pay as one
    child per load reading every large entity, not one per read.
    """
    try:
        table = _adbc_postgresql(conn, sql) if conn.dialect.name == "postgresql" else None
        if table is None:
            return read_sql(conn, sql, schema)
        if table.column_names != list(schema):
            raise ValueError(f"columns {table.column_names} read, {list(schema)} asked for")
        frame = pl.DataFrame(pl.from_arrow(table))
        # Strict: a value the schema's type cannot hold exactly raises instead of changing.
        return frame.cast(schema, strict=True)  # type: ignore[arg-type]
    except (ImportError, ValueError, pl.exceptions.PolarsError) as exc:
        _log.warning("Arrow read not used (%s); reading through the transaction", exc)
    except Exception as exc:  # the ADBC driver's own errors (adbc_driver_manager.Error)
        if type(exc).__module__.split(".")[0] != "adbc_driver_manager":
            raise
        _log.warning("Arrow read failed (%s); reading through the transaction", exc)
    return read_sql(conn, sql, schema)


def estimated_rows(conn: Connection, table: Table) -> float:
    """The planner's estimate of a PostgreSQL table's rows (infinite when it has none yet).

    Free to ask (no scan); 0 on other backends, which have no such estimate.
    """
    if conn.dialect.name != "postgresql":
        return 0.0
    estimate = conn.exec_driver_sql(
        "SELECT reltuples FROM pg_class WHERE oid = to_regclass(%(name)s)", {"name": table.name}
    ).scalar_one_or_none()
    if estimate is None or estimate < 0:  # never vacuumed or analysed
        return float("inf")
    return float(estimate)


def _adbc_postgresql(conn: Connection, sql: str) -> pa.Table | None:
    written = conn.exec_driver_sql("SELECT txid_current_if_assigned()").scalar_one()
    if written is not None or conn.in_nested_transaction():
        return None
    import adbc_driver_postgresql.dbapi as adbc_postgresql

    uri = conn.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    snapshot = conn.exec_driver_sql("SELECT pg_export_snapshot()").scalar_one()
    with adbc_postgresql.connect(uri, autocommit=False) as reader, reader.cursor() as cursor:
        cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        cursor.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
        cursor.execute(sql)
        table: pa.Table = cursor.fetch_arrow_table()
        reader.rollback()
    return table


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
    return _sqlite_typed(pl.DataFrame(rows, schema=_sqlite_stored(schema), orient="row"), schema)


def _sqlite_stored(schema: dict[str, pl.DataType]) -> dict[str, pl.DataType]:
    """How SQLite holds each column of a schema: times and dates as text, booleans as 0/1."""
    return {
        n: (
            pl.String()
            if isinstance(d, pl.Datetime) or d == pl.Date
            else pl.Int64()
            if d == pl.Boolean
            else d
        )
        for n, d in schema.items()
    }


def _sqlite_typed(frame: pl.DataFrame, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """A frame of SQLite's stored values (``_sqlite_stored``) converted to the schema's types."""
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


def _temporary_copy(conn: Connection, table: Table, columns: Sequence[str]) -> Table:
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
    return temp


def _copy_in(conn: Connection, table: Table, frame: pl.DataFrame) -> None:
    raw = conn.connection.driver_connection
    columns = ", ".join(frame.columns)
    kinds = _binary_kinds(conn.dialect, table, frame)
    if kinds is None:
        data = memoryview(
            frame.write_csv(include_header=False, datetime_format=_PG_TIMESTAMP_FORMAT).encode()
        )
        statement = f"COPY {table.name} ({columns}) FROM STDIN (FORMAT csv)"
    else:
        data = pg_binary(frame, kinds)
        statement = f"COPY {table.name} ({columns}) FROM STDIN (FORMAT binary)"
    with raw.cursor() as cur, cur.copy(statement) as copy:  # type: ignore[union-attr]
        for start in range(0, len(data), _COPY_CHUNK):
            copy.write(data[start : start + _COPY_CHUNK])


# --------------------------------------------------------------------------- binary COPY

_PG_EPOCH_US = 946_684_800_000_000
"""Microseconds from the Unix epoch to PostgreSQL's (2000-01-01 UTC)."""
_PG_EPOCH_DAYS = 10_957
_BINARY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags, no header extension
_BINARY_TRAILER = b"\xff\xff"

_BINARY_KINDS: dict[str, str] = {
    "BIGINT": ">i8",
    "INTEGER": ">i4",
    "SMALLINT": ">i2",
    "BOOLEAN": "bool",
    "DATE": "date",
    "TIMESTAMP WITH TIME ZONE": "timestamptz",
    "FLOAT": ">f8",
    "DOUBLE PRECISION": ">f8",
    "TEXT": "text",
}
"""How the binary encoder writes each PostgreSQL column type (anything else goes as CSV)."""


def _binary_kinds(dialect: Dialect, table: Table, frame: pl.DataFrame) -> list[str] | None:
    """The binary encoding of each frame column into the table, or None if one has none.

    A column's polars type must already hold exactly what the server type stores (integers
    for integers, aware or UTC datetimes for timestamptz, ...): values are never reinterpreted
    here, and a frame that would need it goes as CSV, where the server parses and checks it.
    """
    kinds = []
    for name, dtype in frame.schema.items():
        sql = table.c[name].type.compile(dialect=dialect)
        kind = "text" if sql.startswith("VARCHAR(") else _BINARY_KINDS.get(sql)
        accepted = {
            "text": dtype == pl.String,
            "bool": dtype == pl.Boolean,
            "date": dtype == pl.Date,
            "timestamptz": isinstance(dtype, pl.Datetime),
            ">f8": dtype in (pl.Float32, pl.Float64),
        }.get(kind or "", dtype.is_integer())
        if kind is None or not (accepted or dtype == pl.Null):
            return None
        kinds.append(kind)
    return kinds


def pg_binary(frame: pl.DataFrame, kinds: Sequence[str]) -> memoryview:
    """The frame as a PostgreSQL binary COPY stream, one ``kinds`` entry per column.

    Each row is a field count, then per field a 4-byte length (-1 for NULL) and the value in
    network byte order. Fixed-width parts of consecutive fields are laid out as one numpy block
    per row; Arrow's ``binary_join_element_wise`` then concatenates blocks and text values row
    by row (a NULL value contributes nothing), so no Python runs per row.
    """
    n = frame.height
    if n == 0:
        return memoryview(_BINARY_HEADER + _BINARY_TRAILER)
    parts: list[pa.Array] = []
    block: list[np.ndarray[Any, Any]] = [_be(np.full(n, frame.width), ">i2")]

    def flush() -> None:
        if block:
            matrix = np.ascontiguousarray(np.concatenate(block, axis=1))
            parts.append(_rows(matrix, None))
            block.clear()

    for series, kind in zip(frame.get_columns(), kinds, strict=True):
        if kind == "text":
            text = series.cast(pl.String)
            block.append(_be(text.str.len_bytes().cast(pl.Int64).fill_null(-1).to_numpy(), ">i4"))
            flush()
            parts.append(text.to_arrow().cast(pa.large_binary()))
            continue
        values, dtype = _fixed_values(series, kind)
        width = np.dtype(dtype).itemsize
        valid = series.is_not_null()
        if series.null_count() == 0:
            block.append(_be(np.full(n, width), ">i4"))
            block.append(_be(values, dtype))
        else:
            lengths = valid.cast(pl.Int64).to_numpy() * (width + 1) - 1  # width or -1
            block.append(_be(lengths, ">i4"))
            flush()
            validity = pa.py_buffer(np.packbits(valid.to_numpy(), bitorder="little"))
            parts.append(_rows(_be(values, dtype), validity))
    flush()
    empty = pa.scalar(b"", pa.large_binary())
    joined = pc.binary_join_element_wise(*parts, empty, null_handling="skip")
    offsets = np.frombuffer(joined.buffers()[1], dtype=np.int64)
    body = memoryview(joined.buffers()[2])[offsets[joined.offset] : offsets[joined.offset + n]]
    stream = bytearray(len(_BINARY_HEADER) + len(body) + len(_BINARY_TRAILER))
    stream[: len(_BINARY_HEADER)] = _BINARY_HEADER
    stream[len(_BINARY_HEADER) : len(_BINARY_HEADER) + len(body)] = body
    stream[len(_BINARY_HEADER) + len(body) :] = _BINARY_TRAILER
    return memoryview(stream)


def _fixed_values(series: pl.Series, kind: str) -> tuple[np.ndarray[Any, Any], str]:
    """A fixed-width column's values as PostgreSQL stores them (nulls as zeros), and its dtype."""
    if kind == "bool":
        return series.cast(pl.UInt8).fill_null(0).to_numpy(), "u1"
    if kind == "date":
        return (series.cast(pl.Int32).fill_null(0) - _PG_EPOCH_DAYS).to_numpy(), ">i4"
    if kind == "timestamptz":
        # The instant as microseconds since 1970 (a naive datetime is read as UTC, as in CSV).
        if series.dtype == pl.Null:
            series = series.cast(pl.Datetime("us", "UTC"))
        micros = series.dt.epoch("us")
        return (micros.fill_null(0) - _PG_EPOCH_US).to_numpy(), ">i8"
    if kind == ">f8":
        return series.cast(pl.Float64).fill_null(0.0).to_numpy(), ">f8"
    # Integers: a strict cast raises rather than wrap a value the column cannot hold.
    bits = {">i8": pl.Int64, ">i4": pl.Int32, ">i2": pl.Int16}[kind]
    return series.cast(bits, strict=True).fill_null(0).to_numpy(), kind


def _be(values: np.ndarray[Any, Any], dtype: str) -> np.ndarray[Any, Any]:
    """One column of per-row bytes: the values in network byte order, as an (n, width) block."""
    encoded = np.ascontiguousarray(values.astype(dtype, copy=False))
    return encoded.reshape(len(values), 1).view(np.uint8)


def _rows(matrix: np.ndarray[Any, Any], validity: pa.Buffer | None) -> pa.Array:
    """An (n, width) byte block as a binary array of n values of ``width`` bytes each."""
    n, width = matrix.shape
    offsets = pa.py_buffer(np.arange(0, (n + 1) * width, width, dtype=np.int64))
    data = pa.py_buffer(np.ascontiguousarray(matrix))
    return pa.LargeBinaryArray.from_buffers(pa.large_binary(), n, [validity, offsets, data])
