"""Vendor records to canonical frames: typed columns built once per page, invalid records quarantined.

A ``Spec`` lists, for one stream, how each canonical column is read from a vendor record (a key
or a small function) and what kind of value it must be. ``to_canonical`` extracts every column in
one pass, then converts and validates column-wise in polars (datetime/date/number parsing, minor
units, currency codes). A record that fails any check leaves the page as a ``QuarantineItem``
(its raw JSON, every reason, vendor, id); the rest of the page goes on. Money becomes integer
minor units with the currency's own exponent (JPY 0, KWD 3), never a float in the store.
"""

from __future__ import annotations

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
        return v
    if isinstance(v, str) and v.strip().lstrip("-").isdigit():
        return int(v)
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
        return c.cast(pl.Float64, strict=False)
    return c


def to_canonical(
    spec: Spec, records: Sequence[dict[str, Any]]
) -> tuple[pl.DataFrame, list[QuarantineItem]]:
    """Canonical rows of ``spec.entity`` for the valid records; quarantine for the others.

    Values are extracted and type-checked in one Python pass per column; parsing (times, dates,
    numbers, codes) and every null check run as a handful of polars expressions per page.
    """
    entity = ENTITIES[spec.entity]
    schema = entity.polars_schema
    if not records:
        return pl.DataFrame(schema=schema), []
    n = len(records)
    # Reasons name the canonical column, bookkeeping ones included.
    cols = [(spec.id, "source_id"), (spec.modified, "source_modified_at")]
    cols += [(c, c.name) for c in spec.columns]
    if spec.deleted is not None:
        cols.append((spec.deleted, "is_deleted"))
    reasons: dict[int, list[str]] = {}
    raw: dict[str, pl.Series] = {}
    for i, (col, label) in enumerate(cols):
        pre = _PRE[col.kind]
        if isinstance(col.source, str):
            key = col.source
            values = [pre(r.get(key)) for r in records]
        else:
            get = col.source
            values = [pre(get(r)) for r in records]
        for j, v in enumerate(values):
            if v is _BAD:
                reasons.setdefault(j, []).append(f"{label}: invalid {col.kind} value")
                values[j] = None
        raw[f"r{i}"] = pl.Series(values, dtype=_RAW.get(col.kind, pl.String()))
    frame = pl.DataFrame(raw).with_columns(
        _parse(col, f"r{i}").alias(f"t{i}") for i, (col, _) in enumerate(cols)
    )
    money = [i for i, (col, _) in enumerate(cols) if col.kind == "money"]
    currency_index = next(
        (i for i, (col, _) in enumerate(cols) if col.name == spec.money_currency), None
    )
    checks: list[tuple[str, pl.Expr]] = []
    if money:
        frame, money_checks = _to_minor(frame, money, currency_index, cols)
        checks += money_checks
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
    masks = frame.select(
        *(expr.fill_null(False).alias(f"k{k}") for k, (_, expr) in enumerate(checks))
    )
    flagged = masks.select(pl.any_horizontal(pl.all())).to_series()
    for j in flagged.arg_true().to_list():
        row = masks.row(j)
        reasons.setdefault(j, []).extend(checks[k][0] for k, hit in enumerate(row) if hit)
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
    names = {f"t{i}": name for i, (_, name) in enumerate(cols)}
    exprs: list[pl.Expr] = []
    for name, dtype in schema.items():
        source = next((t for t, canonical in names.items() if canonical == name), None)
        if name == "source_system":
            exprs.append(pl.lit(spec.system, dtype=pl.String).alias(name))
        elif source is not None:
            expr = pl.col(source).cast(dtype)
            if name == "is_deleted":
                expr = expr.fill_null(False)
            exprs.append(expr.alias(name))
        elif name == "is_deleted":
            exprs.append(pl.lit(False).alias(name))
        else:
            exprs.append(pl.lit(None, dtype=dtype).alias(name))
    result = frame.select(exprs)
    assert result.height + len(quarantine) == n
    return result, quarantine


def _to_minor(
    frame: pl.DataFrame,
    money: list[int],
    currency_index: int | None,
    cols: list[tuple[Col, str]],
) -> tuple[pl.DataFrame, list[tuple[str, pl.Expr]]]:
    """Major-unit columns to integer minor units by each row's currency exponent."""
    if currency_index is not None:
        currency = f"t{currency_index}"
        codes = frame[currency].unique().drop_nulls().to_list()
        exponents = {c: currency_exponent(c) for c in codes}
        scale = pl.col(currency).replace_strict(exponents, default=2, return_dtype=pl.Int64)
    else:
        scale = pl.lit(2)
    checks: list[tuple[str, pl.Expr]] = []
    exprs: list[pl.Expr] = []
    for i in money:
        scaled = pl.col(f"t{i}") * pl.lit(10.0).pow(scale)
        rounded = scaled.round(0)
        exprs.append(rounded.cast(pl.Int64).alias(f"t{i}"))
        exprs.append(((scaled - rounded).abs() > 1e-6).alias(f"s{i}"))
        # Sub-minor precision (12.345 USD) is an error in the source, not something to round.
        checks.append(
            (f"{cols[i][1]}: more precision than the currency's minor unit", pl.col(f"s{i}"))
        )
    return frame.with_columns(exprs), checks


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
