"""Export an estate to the documented JSON layout (FORMAT.md) and read one back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import polars as pl

from sandbox.estate.schema import GROUND_TRUTH_SCHEMA, OUTAGE_SCHEMA, SCHEMAS, VENDORS

if TYPE_CHECKING:
    from sandbox.estate._estate import Estate

FORMAT_NAME = "o2c-sandbox-estate"
FORMAT_VERSION = 1

REFERENCE_SCHEMAS: dict[str, dict[str, Any]] = {
    "legal_entities": {
        "code": pl.Utf8,
        "name": pl.Utf8,
        "country": pl.Utf8,
        "currency": pl.Utf8,
        "netsuite_subsidiary_id": pl.Utf8,
        "netsuite_currency_id": pl.Utf8,
        "holiday_calendar": pl.Utf8,
    },
    "payment_terms": {"name": pl.Utf8, "days": pl.Int32, "netsuite_term_id": pl.Utf8},
    "holidays": {"calendar": pl.Utf8, "date": pl.Date, "name": pl.Utf8},
    "fx_rates": {"date": pl.Date, "currency": pl.Utf8, "usd_per_unit": pl.Decimal(18, 6)},
    "outages": OUTAGE_SCHEMA,
}


def dtype_name(t: Any) -> Any:
    """A language-neutral name for a column type (used in the manifest)."""
    t = t() if isinstance(t, type) else t
    if isinstance(t, pl.Datetime):
        return "datetime"
    if isinstance(t, pl.Decimal):
        return f"decimal({t.precision},{t.scale})"
    if isinstance(t, pl.Struct):
        return {f.name: dtype_name(f.dtype) for f in t.fields}
    if isinstance(t, pl.List):
        return [dtype_name(t.inner)]
    return {
        pl.Utf8: "string",
        pl.Date: "date",
        pl.Boolean: "bool",
        pl.Int64: "int64",
        pl.Int32: "int32",
        pl.Float64: "float64",
    }[type(t)]


def _read_type(t: Any) -> Any:
    """The type a column is read as from JSON before decoding (temporal and decimal as strings)."""
    t = t() if isinstance(t, type) else t
    if isinstance(t, pl.Datetime | pl.Decimal | pl.Date):
        return pl.Utf8
    if isinstance(t, pl.Struct):
        return pl.Struct({f.name: _read_type(f.dtype) for f in t.fields})
    return t


def _decode(expr: pl.Expr, t: Any) -> pl.Expr:
    t = t() if isinstance(t, type) else t
    if isinstance(t, pl.Datetime):
        return expr.str.to_datetime(time_unit="us", time_zone="UTC")
    if isinstance(t, pl.Date):
        return expr.str.to_date("%Y-%m-%d")
    if isinstance(t, pl.Decimal):
        return expr.cast(t)
    if isinstance(t, pl.Struct):
        return pl.struct(
            [_decode(expr.struct.field(f.name), f.dtype).alias(f.name) for f in t.fields]
        )
    return expr.cast(t)


def _write_frame(df: pl.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    df.write_json(path)


def _read_frame(path: Path, schema: dict[str, Any]) -> pl.DataFrame:
    raw = path.read_bytes()
    if raw.strip() in (b"[]", b""):
        return pl.DataFrame(schema=schema)
    df = pl.read_json(raw, schema={c: _read_type(t) for c, t in schema.items()})
    return df.select([_decode(pl.col(c), t).alias(c) for c, t in schema.items()])


def write_estate(estate: Estate, root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    objects: dict[str, dict[str, Any]] = {}
    for vendor in VENDORS:
        objects[vendor] = {}
        for obj, schema in SCHEMAS[vendor].items():
            rel = f"{vendor}/{obj}.json"
            df = estate.frame(vendor, obj)
            _write_frame(df, root / rel)
            objects[vendor][obj] = {
                "file": rel,
                "rows": df.height,
                "columns": {c: dtype_name(t) for c, t in schema.items()},
            }
    reference = {}
    frames = {
        "legal_entities": estate.legal_entities,
        "payment_terms": estate.payment_terms,
        "holidays": estate.holidays,
        "fx_rates": estate._fx,
        "outages": estate.outages,
    }
    for name, df in frames.items():
        rel = f"reference/{name}.json"
        _write_frame(df.select(list(REFERENCE_SCHEMAS[name])), root / rel)
        reference[name] = {"file": rel, "rows": df.height}
    truth = estate.ground_truth
    rows = truth.with_columns(pl.col("records").str.json_decode(_RECORDS)).to_dicts()
    (root / "ground_truth.json").write_bytes(orjson.dumps(rows, option=orjson.OPT_INDENT_2))
    manifest = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "now": estate.now.isoformat(),
        "seed": estate.seed,
        "scale": estate.scale,
        "defect_rates": estate.defect_rates,
        "objects": objects,
        "reference": reference,
        "ground_truth": {
            "file": "ground_truth.json",
            "rows": truth.height,
            "columns": {c: dtype_name(t) for c, t in GROUND_TRUTH_SCHEMA.items()},
        },
    }
    path = root / "manifest.json"
    path.write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
    return path


_RECORDS = pl.List(pl.Struct({"vendor": pl.Utf8, "object": pl.Utf8, "id": pl.Utf8}))


def read_estate(cls: type[Estate], root: Path) -> Estate:
    from datetime import datetime

    manifest = json.loads((root / "manifest.json").read_text())
    if manifest.get("format") != FORMAT_NAME:
        raise ValueError(f"{root} is not an {FORMAT_NAME} export")
    masters: dict[tuple[str, str], pl.DataFrame] = {}
    for vendor in VENDORS:
        for obj, schema in SCHEMAS[vendor].items():
            entry = manifest["objects"].get(vendor, {}).get(obj)
            if entry is None:
                continue  # a firm's own export may leave objects out
            masters[vendor, obj] = _read_frame(root / entry["file"], schema)
    ref = {}
    for name, schema in REFERENCE_SCHEMAS.items():
        entry = manifest.get("reference", {}).get(name)
        ref[name] = (
            _read_frame(root / entry["file"], schema) if entry else pl.DataFrame(schema=schema)
        )
    truth_path = root / "ground_truth.json"
    truth = pl.DataFrame(schema=GROUND_TRUTH_SCHEMA)
    if truth_path.exists():
        rows = orjson.loads(truth_path.read_bytes())
        if rows:
            for r in rows:
                r["records"] = orjson.dumps(r["records"]).decode()
            raw = pl.DataFrame(
                rows, schema={c: _read_type(t) for c, t in GROUND_TRUTH_SCHEMA.items()}
            )
            truth = raw.select(
                [_decode(pl.col(c), t).alias(c) for c, t in GROUND_TRUTH_SCHEMA.items()]
            )
    return cls(
        masters=masters,
        truth=truth,
        outages=ref["outages"],
        legal_entities=ref["legal_entities"],
        payment_terms=ref["payment_terms"],
        holidays=ref["holidays"],
        fx_rates=ref["fx_rates"],
        now=datetime.fromisoformat(manifest["now"]),
        seed=manifest.get("seed"),
        scale=manifest.get("scale"),
        defect_rates=manifest.get("defect_rates"),
        planned=False,
    )
