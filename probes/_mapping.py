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
from dataclasses import dataclass, field
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
    extra_checks: tuple[Callable[[pl.DataFrame], pl.Series], ...] = field(default=())

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


def _convert(col: Col, raw: list[Any]) -> tuple[pl.Series, pl.Series]:
    """The typed column and a mask of values that were present but invalid."""
    pre = _PRE[col.kind]
    cleaned = [pre(v) for v in raw]
    bad_pre = pl.Series([v is _BAD for v in cleaned], dtype=pl.Boolean)
    values = [None if v is _BAD else v for v in cleaned]
    kind = col.kind
    if kind in ("str",):
        series = pl.Series(col.name, values, dtype=pl.String)
    elif kind in ("int", "minor"):
        series = pl.Series(col.name, values, dtype=pl.Int64)
    elif kind == "bool":
        series = pl.Series(col.name, values, dtype=pl.Boolean)
    elif kind == "ts":
        series = pl.Series(col.name, values, dtype=pl.Datetime("us", "UTC"))
    elif kind == "unix":
        ints = pl.Series(col.name, values, dtype=pl.Int64)
        series = (ints * 1_000_000).cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    else:
        text = pl.Series(col.name, values, dtype=pl.String)
        if kind == "currency":
            upper = text.str.strip_chars().str.to_uppercase()
            ok = upper.str.contains(r"^[A-Z]{3}$")
            series = upper.zip_with(
                ok.fill_null(False), pl.Series([None] * len(upper), dtype=pl.String)
            )
        elif kind == "datetime":
            series = _parse_datetime(text, col.fmt)
        elif kind == "date":
            series = text.str.to_date("%Y-%m-%d", strict=False)
        elif kind == "us_date":
            series = text.str.to_date("%m/%d/%Y", strict=False)
        elif kind == "money":
            series = text.cast(pl.Float64, strict=False)
        else:  # pragma: no cover - guarded by Spec
            raise ValueError(kind)
        series = series.alias(col.name)
    present = pl.Series([v is not None for v in values], dtype=pl.Boolean)
    bad = bad_pre | (present & series.is_null())
    return series, bad


def _parse_datetime(text: pl.Series, fmt: str | None) -> pl.Series:
    if fmt:
        parsed = text.str.to_datetime(fmt, strict=False, time_zone="UTC", time_unit="us")
    else:
        # Offsets spelled +0000, +00:00 or Z all parse with %z after Z is made explicit.
        normal = text.str.replace(r"Z$", "+00:00")
        parsed = normal.str.to_datetime(_ISO, strict=False, time_unit="us")
        if parsed.dtype != pl.Datetime("us", "UTC"):
            parsed = parsed.dt.convert_time_zone("UTC")
    return parsed


def to_canonical(
    spec: Spec, records: Sequence[dict[str, Any]]
) -> tuple[pl.DataFrame, list[QuarantineItem]]:
    """Canonical rows of ``spec.entity`` for the valid records; quarantine for the others."""
    entity = ENTITIES[spec.entity]
    schema = entity.polars_schema
    if not records:
        return pl.DataFrame(schema=schema), []
    n = len(records)
    columns: dict[str, pl.Series] = {}
    problems: list[tuple[str, pl.Series]] = []
    # Reasons name the canonical column, bookkeeping ones included.
    cols = [(spec.id, "source_id"), (spec.modified, "source_modified_at")]
    cols += [(c, c.name) for c in spec.columns]
    if spec.deleted is not None:
        cols.append((spec.deleted, "is_deleted"))
    for col, label in cols:
        raw = [col.get(r) for r in records]
        series, bad = _convert(col, raw)
        columns[col.name] = series
        problems.append((f"{label}: invalid {col.kind} value", bad))
        if col.required:
            problems.append((f"{label}: missing", series.is_null() & ~bad))
    frame = pl.DataFrame(columns)
    money = [c.name for c in spec.columns if c.kind == "money"]
    if money:
        frame, money_bad = _to_minor(frame, money, spec.money_currency)
        problems.extend(money_bad)
    for check in spec.extra_checks:
        problems.append((check.__doc__ or check.__name__, check(frame)))
    reasons = pl.DataFrame({f"p{i}": mask for i, (_, mask) in enumerate(problems)})
    any_bad = reasons.select(pl.any_horizontal(pl.all()).alias("bad")).to_series()
    quarantine: list[QuarantineItem] = []
    if any_bad.any():
        for index in any_bad.arg_true().to_list():
            row = reasons.row(index)
            reason = "; ".join(problems[i][0] for i, flag in enumerate(row) if flag)
            record = records[index]
            rid = spec.id.get(record) if isinstance(record, dict) else None
            quarantine.append(
                QuarantineItem(
                    source_system=spec.system,
                    stream=spec.stream,
                    reason=reason,
                    raw_payload=orjson.dumps(record, default=str),
                    source_id=str(rid)[:64] if rid is not None else None,
                )
            )
        frame = frame.filter(~any_bad)
    out = frame.rename({spec.id.name: "source_id", spec.modified.name: "source_modified_at"})
    if spec.deleted is not None:
        out = out.rename({spec.deleted.name: "is_deleted"})
    exprs: list[pl.Expr] = []
    for name, dtype in schema.items():
        if name == "source_system":
            exprs.append(pl.lit(spec.system, dtype=pl.String).alias(name))
        elif name == "is_deleted" and name not in out.columns:
            exprs.append(pl.lit(False).alias(name))
        elif name in out.columns:
            exprs.append(pl.col(name).cast(dtype).alias(name))
        else:
            exprs.append(pl.lit(None, dtype=dtype).alias(name))
    result = out.select(exprs)
    if "is_deleted" in result.columns:
        result = result.with_columns(pl.col("is_deleted").fill_null(False))
    assert result.height + len(quarantine) == n
    return result, quarantine


def _to_minor(
    frame: pl.DataFrame, money: list[str], currency: str
) -> tuple[pl.DataFrame, list[tuple[str, pl.Series]]]:
    codes = frame[currency].unique().drop_nulls().to_list() if currency in frame.columns else []
    exponents = {c: currency_exponent(c) for c in codes}
    scale = (
        pl.col(currency).replace_strict(exponents, default=2, return_dtype=pl.Int64)
        if currency in frame.columns
        else pl.lit(2)
    )
    problems: list[tuple[str, pl.Series]] = []
    exprs = []
    for name in money:
        scaled = pl.col(name) * pl.lit(10.0).pow(scale)
        rounded = scaled.round(0)
        exprs.append(rounded.cast(pl.Int64).alias(name))
        # Sub-minor precision (12.345 USD) is an error in the source, not something to round.
        problems.append(
            (
                f"{name}: more precision than the currency's minor unit",
                frame.select(((scaled - rounded).abs() > 1e-6).fill_null(False)).to_series(),
            )
        )
    return frame.with_columns(exprs), problems


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
