"""Vendor records to canonical frames: typed columns built once per page, invalid records quarantined.

A ``Spec`` lists, for one stream, how each canonical column is read from a vendor record (a key
or a small function) and what kind of value it must be. ``to_canonical`` extracts every column in
one pass, then converts and validates column-wise in polars (datetime/date/number parsing, minor
units, currency codes). A record that fails any check leaves the page as a ``QuarantineItem``
(its raw JSON, every reason, vendor, id); the rest of the page goes on. Money becomes integer
minor units with the currency's own exponent (JPY 0, KWD 3), never a float in the store.
"""

from __future__ import annotations

import functools
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import orjson
import polars as pl

from store import ENTITIES, QuarantineItem, currency_exponent

Getter = Callable[[dict[str, Any]], Any]

KINDS = {
    "str",  # a JSON string (ints are accepted and spelled as text: ids)
    "int",  # a JSON integer or an all-digit string
    "minor",  # money already in integer minor units (Stripe, Kantata cents)
    "money",  # money in major units: a JSON number or a numeric string (Salesforce, NetSuite)
    "bool",  # JSON true/false, or NetSuite's "T"/"F"
    "currency",  # an ISO 4217 code in any case; stored upper case
    "datetime",  # an ISO-8601 string with an offset (Salesforce +0000, Kantata +00:00, Z)
    "unix",  # integer unix seconds (Stripe)
    "date",  # YYYY-MM-DD
    "us_date",  # M/D/YYYY (NetSuite's default date preference)
    "ts",  # a value already a datetime or None (derived columns)
}


@dataclass(frozen=True)
class Col:
    """One canonical column: where it comes from, what it must be, whether it may be missing."""

    name: str
    source: str | Getter
    kind: str
    required: bool = False
    fmt: str | None = None
    """strptime format for ``datetime`` when it is not ISO-8601."""

    def get(self, record: dict[str, Any]) -> Any:
        if isinstance(self.source, str):
            return record.get(self.source)
        return self.source(record)


@dataclass(frozen=True)
class Spec:
    """How one stream's vendor records become rows of one canonical entity."""

    system: str
    stream: str
    entity: str
    id: Col
    modified: Col
    columns: tuple[Col, ...]
    deleted: Col | None = None
    money_currency: str = "currency"
    """The column whose code scales ``money`` columns to minor units."""

    def __post_init__(self) -> None:
        known = set(ENTITIES[self.entity].data_columns)
        unknown = {c.name for c in self.columns} - known
        if unknown:
            raise ValueError(f"{self.stream}: {sorted(unknown)} are not {self.entity} columns")
        bad = {c.kind for c in (self.id, self.modified, *self.columns)} - KINDS
        if bad:
            raise ValueError(f"{self.stream}: unknown kinds {sorted(bad)}")


_BAD = object()

_MIN_INT, _MAX_INT = -(2**63), 2**63 - 1


def _str(v: Any) -> Any:
    if v is None or isinstance(v, str):
        return v
    if isinstance(v, int) and not isinstance(v, bool):
        return str(v)
    return _BAD


def _int(v: Any) -> Any:
    if v is None:
        return None
    if isinstance(v, int) and not isinstance(v, bool):
        return v if _MIN_INT <= v <= _MAX_INT else _BAD
    if isinstance(v, str) and v.strip().lstrip("-").isdigit():
        number = int(v)
        return number if _MIN_INT <= number <= _MAX_INT else _BAD
    return _BAD


def _bool(v: Any) -> Any:
    if v is None or isinstance(v, bool):
        return v
    if v in ("T", "F"):
        return v == "T"
    return _BAD


def _number_text(v: Any) -> Any:
    if v is None:
        return None
    if isinstance(v, bool):
        return _BAD
    if isinstance(v, int | float | str):
        return str(v)
    return _BAD


def _text(v: Any) -> Any:
    return v if v is None or isinstance(v, str) else _BAD


def _ts(v: Any) -> Any:
    if v is None or (isinstance(v, datetime) and v.tzinfo is not None):
        return v
    return _BAD


# The per-value checks of the slow path: a column whose values are not all of the kind's plain
# JSON types (see _FAST) goes through these, value by value, to find and name the bad ones.
_PRE: dict[str, Callable[[Any], Any]] = {
    "str": _str,
    "int": _int,
    "minor": _int,
    "unix": _int,
    "bool": _bool,
    "money": _number_text,
    "currency": _text,
    "datetime": _text,
    "date": _text,
    "us_date": _text,
    "ts": _ts,
}

_NONE = type(None)
# The fast path: when every value of a column has one of these Python types (one set of types
# per column and page), the column is built as it is, without a per-value check. (``bool`` is
# its own type, so True never passes as an int.)
_FAST: dict[str, tuple[frozenset[type], pl.DataType]] = {
    "str": (frozenset({str, _NONE}), pl.String()),
    "int": (frozenset({int, _NONE}), pl.Int64()),
    "minor": (frozenset({int, _NONE}), pl.Int64()),
    "unix": (frozenset({int, _NONE}), pl.Int64()),
    "bool": (frozenset({bool, _NONE}), pl.Boolean()),
    "currency": (frozenset({str, _NONE}), pl.String()),
    "datetime": (frozenset({str, _NONE}), pl.String()),
    "date": (frozenset({str, _NONE}), pl.String()),
    "us_date": (frozenset({str, _NONE}), pl.String()),
}
_MONEY_NUMBERS = frozenset({int, float, _NONE})
_MONEY_TEXT = frozenset({str, _NONE})

_ISO = "%Y-%m-%dT%H:%M:%S%.f%z"

# The dtype values are held in before parsing (after the per-value checks of _PRE).
_RAW: dict[str, pl.DataType] = {
    "str": pl.String(),
    "int": pl.Int64(),
    "minor": pl.Int64(),
    "unix": pl.Int64(),
    "bool": pl.Boolean(),
    "ts": pl.Datetime("us", "UTC"),
}
_PARSED = {"unix", "currency", "datetime", "date", "us_date", "money"}


def _parse(col: Col, raw: str) -> pl.Expr:
    """The typed value of a raw column (null where it does not parse)."""
    c = pl.col(raw)
    kind = col.kind
    if kind == "unix":
        return (c * 1_000_000).cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    if kind == "currency":
        upper = c.str.strip_chars().str.to_uppercase()
        return pl.when(upper.str.contains(r"^[A-Z]{3}$")).then(upper)
    if kind == "datetime":
        if col.fmt:
            return c.str.to_datetime(col.fmt, strict=False, time_zone="UTC", time_unit="us")
        # Offsets spelled +0000, +00:00 or Z all parse with %z once Z is made explicit.
        normal = c.str.replace(r"Z$", "+00:00")
        parsed = normal.str.to_datetime(_ISO, strict=False, time_unit="us", time_zone="UTC")
        return parsed
    if kind == "date":
        return c.str.to_date("%Y-%m-%d", strict=False)
    if kind == "us_date":
        return c.str.to_date("%m/%d/%Y", strict=False)
    if kind == "money":
        # Raw money is Float64 (JSON numbers) or String (NetSuite's numeric strings).
        return c.cast(pl.Float64, strict=False)
    return c


@functools.cache
def _exponents() -> dict[str, int]:
    """ISO 4217 codes whose minor unit is not 2 digits (JPY 0, KWD 3), from ``store``."""
    letters = string.ascii_uppercase
    codes = (a + b + c for a in letters for b in letters for c in letters)
    return {code: e for code in codes if (e := currency_exponent(code)) != 2}


@dataclass(frozen=True)
class _Plan:
    """A spec compiled once: its columns and the polars expressions every page runs."""

    cols: tuple[tuple[Col, str], ...]
    """(column, the canonical name reasons use), in extraction order; raw column i is r<i>."""
    checks: tuple[str, ...]
    """The reason of each check column k<j>."""
    stages: tuple[tuple[pl.Expr, ...], ...]
    """with_columns stages from the raw columns to the canonical columns and the checks."""
    output: tuple[pl.Expr, ...]
    """The final select: the entity's columns in schema order, the checks and ``_bad``."""
    names: tuple[str, ...]
    """The entity's columns."""


@functools.cache
def _plan(spec: Spec) -> _Plan:
    entity = ENTITIES[spec.entity]
    # Reasons name the canonical column, bookkeeping ones included.
    cols = [(spec.id, "source_id"), (spec.modified, "source_modified_at")]
    cols += [(c, c.name) for c in spec.columns]
    if spec.deleted is not None:
        cols.append((spec.deleted, "is_deleted"))
    parse = tuple(_parse(col, f"r{i}").alias(f"t{i}") for i, (col, _) in enumerate(cols))
    checks: list[tuple[str, pl.Expr]] = []
    stages: list[tuple[pl.Expr, ...]] = [parse]
    money = [i for i, (col, _) in enumerate(cols) if col.kind == "money"]
    if money:
        currency_index = next(
            (i for i, (col, _) in enumerate(cols) if col.name == spec.money_currency), None
        )
        scale = (
            pl.col(f"t{currency_index}").replace_strict(
                _exponents(), default=2, return_dtype=pl.Int64
            )
            if currency_index is not None
            else pl.lit(2)
        )
        minor: list[pl.Expr] = []
        for i in money:
            scaled = pl.col(f"t{i}") * pl.lit(10.0).pow(scale)
            rounded = scaled.round(0)
            minor.append(rounded.cast(pl.Int64).alias(f"m{i}"))
            # Sub-minor precision (12.345 USD) is an error in the source, not something to round.
            checks.append(
                (
                    f"{cols[i][1]}: more precision than the currency's minor unit",
                    (scaled - rounded).abs() > 1e-6,
                )
            )
        stages.append(tuple(minor))
    for i, (col, label) in enumerate(cols):
        if col.kind in _PARSED:
            checks.append(
                (
                    f"{label}: invalid {col.kind} value",
                    pl.col(f"r{i}").is_not_null() & pl.col(f"t{i}").is_null(),
                )
            )
        if col.required:
            checks.append((f"{label}: missing", pl.col(f"r{i}").is_null()))
    flags = tuple(expr.fill_null(False).alias(f"k{k}") for k, (_, expr) in enumerate(checks))
    sources = {name: (f"m{i}" if i in money else f"t{i}") for i, (_, name) in enumerate(cols)}
    output: list[pl.Expr] = []
    for name, dtype in entity.polars_schema.items():
        if name == "source_system":
            output.append(pl.lit(spec.system, dtype=pl.String).alias(name))
        elif name in sources:
            expr = pl.col(sources[name]).cast(dtype)
            if name == "is_deleted":
                expr = expr.fill_null(False)
            output.append(expr.alias(name))
        elif name == "is_deleted":
            output.append(pl.lit(False).alias(name))
        else:
            output.append(pl.lit(None, dtype=dtype).alias(name))
    k_names = [f"k{k}" for k in range(len(checks))]
    bad = pl.any_horizontal(k_names) if k_names else pl.lit(False)
    output += [pl.col(k) for k in k_names]
    output.append(bad.alias("_bad"))
    return _Plan(
        cols=tuple(cols),
        checks=tuple(reason for reason, _ in checks),
        stages=(*stages, flags),
        output=tuple(output),
        names=tuple(entity.polars_schema),
    )


def _raw_column(
    col: Col, label: str, values: list[Any], reasons: dict[int, list[str]]
) -> pl.Series:
    """One extracted column as a Series: as it is when its types are plain, else value by value
    (a bad value becomes null and a reason of its record)."""
    types = set(map(type, values))
    kind = col.kind
    if kind == "money":
        if types <= _MONEY_NUMBERS:
            return pl.Series(values, dtype=pl.Float64)
        if types <= _MONEY_TEXT:
            return pl.Series(values, dtype=pl.String)
    elif kind in _FAST:
        allowed, dtype = _FAST[kind]
        if types <= allowed:
            try:
                return pl.Series(values, dtype=dtype)
            except (TypeError, OverflowError, pl.exceptions.PolarsError):
                pass  # e.g. an integer beyond 64 bits: the slow path names it
    pre = _PRE[kind]
    checked = [pre(v) for v in values]
    for j, v in enumerate(checked):
        if v is _BAD:
            reasons.setdefault(j, []).append(f"{label}: invalid {kind} value")
            checked[j] = None
    return pl.Series(checked, dtype=_RAW.get(kind, pl.String()))


def to_canonical(
    spec: Spec, records: Sequence[dict[str, Any]]
) -> tuple[pl.DataFrame, list[QuarantineItem]]:
    """Canonical rows of ``spec.entity`` for the valid records; quarantine for the others.

    Each column is pulled out of the page's records in one pass and built as a Series in bulk
    (value-by-value checks only for a column holding values of an unexpected JSON type); then
    one polars query per page parses times, dates, numbers and codes, scales money to minor
    units and evaluates every check. The expressions are compiled once per spec.
    """
    plan = _plan(spec)
    if not records:
        return pl.DataFrame(schema=ENTITIES[spec.entity].polars_schema), []
    n = len(records)
    reasons: dict[int, list[str]] = {}
    raw: dict[str, pl.Series] = {}
    for i, (col, label) in enumerate(plan.cols):
        source = col.source
        if isinstance(source, str):
            values = [r.get(source) for r in records]
        else:
            values = [source(r) for r in records]
        raw[f"r{i}"] = _raw_column(col, label, values, reasons)
    query = pl.DataFrame(raw).lazy()
    for stage in plan.stages:
        query = query.with_columns(stage)
    frame = query.select(plan.output).collect()
    bad = frame["_bad"]
    if bad.any():
        checks = frame.select(f"k{k}" for k in range(len(plan.checks)))
        for j in bad.arg_true().to_list():
            row = checks.row(j)
            reasons.setdefault(j, []).extend(plan.checks[k] for k, hit in enumerate(row) if hit)
    quarantine: list[QuarantineItem] = []
    if reasons:
        for j in sorted(reasons):
            found = reasons[j]
            invalid = {r.split(":")[0] for r in found if r.endswith("value")}
            # A value that failed its type check is also null: say "invalid", not "missing".
            kept = [r for r in found if not (r.endswith("missing") and r.split(":")[0] in invalid)]
            record = records[j]
            rid = spec.id.get(record) if isinstance(record, dict) else None
            quarantine.append(
                QuarantineItem(
                    source_system=spec.system,
                    stream=spec.stream,
                    reason="; ".join(dict.fromkeys(kept)),
                    raw_payload=orjson.dumps(record, default=str),
                    source_id=str(rid)[:64] if rid is not None else None,
                )
            )
        keep = pl.Series([j not in reasons for j in range(n)], dtype=pl.Boolean)
        frame = frame.filter(keep)
    result = frame.select(plan.names)
    assert result.height + len(quarantine) == n
    return result, quarantine


def at_midnight(value: Any) -> datetime | None:
    """A date string (YYYY-MM-DD or M/D/YYYY) as midnight UTC, for timestamp columns fed by dates."""
    if not isinstance(value, str) or not value:
        return None
    try:
        if "/" in value:
            month, day, year = (int(p) for p in value.split("/"))
            d = date(year, month, day)
        else:
            d = date.fromisoformat(value[:10])
    except ValueError:
        return None
    return datetime(d.year, d.month, d.day, tzinfo=UTC)


def from_unix(value: Any) -> datetime | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    return None
