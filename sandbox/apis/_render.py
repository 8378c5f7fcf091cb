"""Frames to each vendor's JSON value formats, column-wise (never per-cell Python for big pages).

The estate holds typed facts; these functions decide how a vendor spells them on the wire:
Salesforce `2024-06-30T17:02:11.000+0000` and JSON numbers, Kantata ISO-8601 with an offset and
integer cents, NetSuite SuiteQL strings with nulls omitted, Stripe unix seconds.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import orjson
import polars as pl


def _is_money(dtype: pl.DataType) -> bool:
    return isinstance(dtype, pl.Decimal)


def salesforce_rows(frame: pl.DataFrame) -> list[dict[str, Any]]:
    exprs = []
    for name, dtype in frame.schema.items():
        col = pl.col(name)
        if isinstance(dtype, pl.Datetime):
            exprs.append(col.dt.convert_time_zone("UTC").dt.strftime("%Y-%m-%dT%H:%M:%S.%3f+0000"))
        elif isinstance(dtype, pl.Date):
            exprs.append(col.dt.strftime("%Y-%m-%d"))
        elif _is_money(dtype):
            # Salesforce sends currency fields as JSON numbers; Decimal(18,2) values below 2**53
            # cents round-trip exactly through the shortest float repr a client parses.
            exprs.append(col.cast(pl.Float64))
        else:
            exprs.append(col)
    return frame.select(exprs).to_dicts()


def salesforce_records_json(frame: pl.DataFrame, sobject: str, version: str) -> bytes:
    """A JSON array of query records with their `attributes`, serialised by polars (no dicts).

    `frame` may carry the record id as `__id` when the query did not select `Id`.
    """
    id_col = "__id" if "__id" in frame.columns else "Id"
    prefix = f"/services/data/{version}/sobjects/{sobject}/"
    attributes = pl.struct(
        pl.lit(sobject).alias("type"), (pl.lit(prefix) + pl.col(id_col)).alias("url")
    ).alias("attributes")
    exprs = [attributes]
    for name, dtype in frame.schema.items():
        if name == "__id":
            continue
        col = pl.col(name)
        if isinstance(dtype, pl.Datetime):
            col = col.dt.convert_time_zone("UTC").dt.strftime("%Y-%m-%dT%H:%M:%S.%3f+0000")
        elif isinstance(dtype, pl.Date):
            col = col.dt.strftime("%Y-%m-%d")
        elif _is_money(dtype):
            col = col.cast(pl.Float64)
        exprs.append(col.alias(name))
    if frame.height == 0:
        return b"[]"
    return frame.select(exprs).write_json().encode()


def kantata_rows(frame: pl.DataFrame) -> list[dict[str, Any]]:
    exprs = []
    for name, dtype in frame.schema.items():
        col = pl.col(name)
        if isinstance(dtype, pl.Datetime):
            exprs.append(col.dt.convert_time_zone("UTC").dt.strftime("%Y-%m-%dT%H:%M:%S+00:00"))
        elif isinstance(dtype, pl.Date):
            exprs.append(col.dt.strftime("%Y-%m-%d"))
        elif _is_money(dtype):
            exprs.append(col.cast(pl.String))
        else:
            exprs.append(col)
    return frame.select(exprs).to_dicts()


def netsuite_strings(frame: pl.DataFrame, to_char: dict[str, str] | None = None) -> pl.DataFrame:
    """Every column as SuiteQL spells it: strings; dates in the user's format (M/D/YYYY).

    `to_char` maps a column to a strftime pattern (from TO_CHAR in the query); datetimes without
    one come back as the date only, as SuiteQL does under the default date preference.
    """
    to_char = to_char or {}
    exprs = []
    for name, dtype in frame.schema.items():
        col = pl.col(name)
        if name in to_char and isinstance(dtype, pl.Datetime | pl.Date):
            exprs.append(col.dt.strftime(to_char[name]).alias(name))
        elif isinstance(dtype, pl.Datetime | pl.Date):
            exprs.append(
                pl.format("{}/{}/{}", col.dt.month(), col.dt.day(), col.dt.year()).alias(name)
            )
        elif isinstance(dtype, pl.Boolean):
            exprs.append(pl.when(col).then(pl.lit("T")).otherwise(pl.lit("F")).alias(name))
        elif _is_money(dtype) or dtype.is_float():
            text = col.cast(pl.String)
            # NetSuite prints 12500.00 as "12500" and 12.50 as "12.5".
            trimmed = (
                pl.when(text.str.contains(r"\."))
                .then(text.str.replace(r"\.?0+$", ""))
                .otherwise(text)
            )
            exprs.append(trimmed.alias(name))
        elif isinstance(dtype, pl.String):
            exprs.append(col)
        else:
            exprs.append(col.cast(pl.String))
    return frame.select(exprs)


def netsuite_items(
    frame: pl.DataFrame, to_char: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    rows = netsuite_strings(frame, to_char).to_dicts()
    return [{"links": [], **{k: v for k, v in row.items() if v is not None}} for row in rows]


def _stripe_expr(expr: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    if isinstance(dtype, pl.Datetime):
        return expr.dt.epoch("s")
    if isinstance(dtype, pl.Date):
        return expr.cast(pl.Datetime("us", "UTC")).dt.epoch("s")
    if isinstance(dtype, pl.Decimal):
        return expr.cast(pl.Float64)
    if isinstance(dtype, pl.Struct) and any(
        isinstance(f.dtype, pl.Datetime | pl.Date | pl.Decimal | pl.Struct) for f in dtype.fields
    ):
        return pl.struct(
            [_stripe_expr(expr.struct.field(f.name), f.dtype).alias(f.name) for f in dtype.fields]
        )
    return expr


def stripe_rows(frame: pl.DataFrame) -> list[dict[str, Any]]:
    """Unix seconds for every timestamp (nested ones too); metadata as an object, never null."""
    rows = frame.select(
        [_stripe_expr(pl.col(n), d).alias(n) for n, d in frame.schema.items()]
    ).to_dicts()
    if "metadata" in frame.columns:
        for row in rows:
            meta = row["metadata"]
            if isinstance(meta, str):
                meta = orjson.loads(meta)
            row["metadata"] = {k: v for k, v in (meta or {}).items() if v is not None}
    return rows


def parse_datetime(value: Any) -> dt.datetime:
    """A datetime from the spellings clients send: ISO-8601 (with Z, +hh:mm or +hhmm) or unix secs."""
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC) if value.tzinfo else value.replace(tzinfo=dt.UTC)
    if isinstance(value, int | float):
        return dt.datetime.fromtimestamp(value, dt.UTC)
    text = str(value).strip()
    if text.isdigit():
        return dt.datetime.fromtimestamp(int(text), dt.UTC)
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    elif len(text) > 5 and text[-5] in "+-" and text[-4:].isdigit():
        text = text[:-2] + ":" + text[-2:]
    parsed = dt.datetime.fromisoformat(text)
    return parsed.astimezone(dt.UTC) if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def coerce_value(value: Any, dtype: pl.DataType) -> Any:
    """A JSON or form value as the Python value a column of `dtype` holds (raises ValueError)."""
    if value is None:
        return None
    if isinstance(dtype, pl.Datetime):
        return parse_datetime(value)
    if isinstance(dtype, pl.Date):
        if isinstance(value, dt.date):
            return value
        text = str(value)
        if "/" in text:  # NetSuite's M/D/YYYY
            month, day, year = (int(p) for p in text.split("/"))
            return dt.date(year, month, day)
        return dt.date.fromisoformat(text[:10])
    if isinstance(dtype, pl.Decimal):
        return Decimal(str(value))
    if dtype.is_integer():
        if isinstance(value, bool):
            raise ValueError("a boolean is not an integer")
        return int(value)
    if dtype.is_float():
        return float(value)
    if isinstance(dtype, pl.Boolean):
        if isinstance(value, str):
            if value.lower() not in ("true", "false", "t", "f", "1", "0"):
                raise ValueError(f"{value!r} is not a boolean")
            return value.lower() in ("true", "t", "1")
        return bool(value)
    if isinstance(dtype, pl.String):
        if isinstance(value, dict | list):
            return orjson.dumps(value).decode()
        return str(value)
    return value
