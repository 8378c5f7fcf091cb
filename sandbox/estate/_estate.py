"""The Estate: vendor frames as of a simulated clock, API writes layered on top, export and import."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from sandbox.estate import _views
from sandbox.estate._generate import generate_world
from sandbox.estate._reference import salesforce_ids, stripe_ids
from sandbox.estate.schema import (
    CREATED_COLUMN,
    EXTRA_MODIFIED_COLUMNS,
    GROUND_TRUTH_SCHEMA,
    ID_COLUMN,
    MODIFIED_COLUMN,
    SCHEMAS,
    UTC_TS,
    VENDORS,
    EstateInterface,
)

DERIVED_TRUTH = ("invoice_overdue", "stale_source")
"""Ground-truth types computed from the data at `now` rather than planned by the generator."""

_SF_PREFIX = {"Account": "001", "Opportunity": "006", "OpportunityHistory": "008"}
_STRIPE_PREFIX = {
    "customers": ("cus", "customer"),
    "invoices": ("in", "invoice"),
    "payment_intents": ("pi", "payment_intent"),
    "invoice_payments": ("inpay", "invoice_payment"),
    "events": ("evt", "event"),
}


class Estate(EstateInterface):
    """The simulated firm. Build with `Estate.generate(seed, scale)` or `Estate.load(dir)`."""

    def __init__(
        self,
        *,
        masters: dict[tuple[str, str], pl.DataFrame],
        truth: pl.DataFrame,
        outages: pl.DataFrame,
        legal_entities: pl.DataFrame,
        payment_terms: pl.DataFrame,
        holidays: pl.DataFrame,
        fx_rates: pl.DataFrame,
        now: datetime,
        seed: int | None = None,
        scale: float | None = None,
        defect_rates: dict[str, float] | None = None,
        planned: bool = True,
    ) -> None:
        self.lock = threading.RLock()
        self.seed = seed
        self.scale = scale
        self.defect_rates = dict(defect_rates or {})
        self._masters = masters
        self._truth = truth
        self._outages = outages
        self._legal_entities = legal_entities
        self._payment_terms = payment_terms
        self._holidays = holidays
        self._fx = fx_rates
        self._now = now
        self._planned = planned
        self._cache: dict[tuple[str, str], pl.DataFrame] = {}
        self._truth_cache: pl.DataFrame | None = None
        self._inserted: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self._overrides: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
        self._write_events: list[dict[str, Any]] = []
        self._counters: dict[tuple[str, str], int] = {}
        self._resolved: dict[str, datetime] = {}
        self._tick_carry = 0.0
        self._last_write: datetime | None = None  # set by writes until the truth is rechecked

    # --- construction ---------------------------------------------------------------------
    @classmethod
    def generate(
        cls,
        seed: int,
        scale: float = 1.0,
        defect_rates: dict[str, float] | None = None,
        horizon: timedelta = timedelta(days=120),
    ) -> Estate:
        """Build the firm deterministically (see EstateInterface.generate).

        `horizon`: how far past the base clock the timeline is planned; `advance` beyond it moves
        the clock but brings no new deals (projects already running keep producing activity).
        """
        w = generate_world(seed, scale, defect_rates, horizon)
        if w.ground_truth is None or w.outages is None or w.holidays is None or w.fx_rates is None:
            raise RuntimeError("generator returned an incomplete world")
        return cls(
            masters=w.masters,
            truth=w.ground_truth,
            outages=w.outages,
            legal_entities=w.legal_entities,
            payment_terms=w.payment_terms,
            holidays=w.holidays,
            fx_rates=w.fx_rates,
            now=w.base_now,
            seed=seed,
            scale=scale,
            defect_rates=w.rates,
        )

    @classmethod
    def load(cls, path: str | Path) -> Estate:
        from sandbox.estate._io import read_estate

        return read_estate(cls, Path(path))

    def export(self, path: str | Path) -> Path:
        from sandbox.estate._io import write_estate

        with self.lock:
            return write_estate(self, Path(path))

    # --- reading --------------------------------------------------------------------------
    def objects(self, vendor: str) -> list[str]:
        return list(SCHEMAS[vendor])

    @property
    def now(self) -> datetime:
        return self._now

    def frame(self, vendor: str, obj: str) -> pl.DataFrame:
        key = (vendor, obj)
        if obj not in SCHEMAS[vendor]:
            raise KeyError(f"{vendor} has no object {obj!r}")
        with self.lock:
            cached = self._cache.get(key)
            if cached is None:
                cached = self._build(vendor, obj)
                self._cache[key] = cached
            return cached

    def _build(self, vendor: str, obj: str) -> pl.DataFrame:
        key = (vendor, obj)
        if key == ("stripe", "events"):
            if self._planned:
                base = _views.stripe_events(self._masters, self._now)
            else:
                base = _views.window_filter(self._masters.get(key, _empty(vendor, obj)), self._now)
            written = _views.window_filter(
                self._rows_frame(vendor, obj, self._write_events), self._now
            )
            return pl.concat([base, written]).sort("created", "id", maintain_order=True)
        master = self._masters.get(key)
        base = (
            _empty(vendor, obj)
            if master is None
            else _views.materialise(vendor, obj, master, self._now, self._fx)
        )
        overrides = self._overrides.get(key)
        if overrides:
            base = self._apply_overrides(vendor, obj, base, overrides)
        inserted = self._inserted.get(key)
        if inserted:
            base = pl.concat([base, self._rows_frame(vendor, obj, inserted)])
        return base

    def _apply_overrides(
        self, vendor: str, obj: str, base: pl.DataFrame, overrides: dict[str, dict[str, Any]]
    ) -> pl.DataFrame:
        idc = ID_COLUMN[vendor]
        mod = MODIFIED_COLUMN[(vendor, obj)]
        current = base.filter(pl.col(idc).is_in(list(overrides)))
        rows = [{**row, **overrides[row[idc]]} for row in current.to_dicts()]
        merged = base.update(self._rows_frame(vendor, obj, rows), on=idc, include_nulls=True)
        if vendor != "stripe":
            # the derived state may have moved on since the write: keep the later modified stamp
            merged = merged.with_columns(
                pl.max_horizontal(pl.col(mod), base.get_column(mod)).alias(mod)
            )
        return merged

    def _rows_frame(self, vendor: str, obj: str, rows: list[dict[str, Any]]) -> pl.DataFrame:
        schema = SCHEMAS[vendor][obj]
        if not rows:
            return _empty(vendor, obj)
        return pl.DataFrame(
            [{c: r.get(c) for c in schema} for r in rows], schema=schema, orient="row", strict=False
        )

    def get(self, vendor: str, obj: str, id: str) -> dict[str, Any] | None:
        with self.lock:
            df = self.frame(vendor, obj).filter(pl.col(ID_COLUMN[vendor]) == id)
            return df.row(0, named=True) if df.height else None

    # --- reference data ---------------------------------------------------------------------
    @property
    def legal_entities(self) -> pl.DataFrame:
        return self._legal_entities

    @property
    def payment_terms(self) -> pl.DataFrame:
        return self._payment_terms

    @property
    def holidays(self) -> pl.DataFrame:
        return self._holidays

    @property
    def fx_rates(self) -> pl.DataFrame:
        return self._fx.filter(pl.col("date") <= self._now.date())

    @property
    def outages(self) -> pl.DataFrame:
        return self._outages

    def source_available(self, vendor: str, at: datetime | None = None) -> bool:
        t = at or self._now
        hit = self._outages.filter(
            (pl.col("vendor") == vendor) & (pl.col("starts_at") <= t) & (pl.col("ends_at") > t)
        )
        return hit.height == 0

    # --- ground truth -----------------------------------------------------------------------
    @property
    def ground_truth(self) -> pl.DataFrame:
        with self.lock:
            if self._truth_cache is None:
                self._truth_cache = self._build_truth()
            return self._truth_cache

    def _build_truth(self) -> pl.DataFrame:
        now = self._now
        planned = self._truth.filter(
            ~pl.col("break_type").is_in(DERIVED_TRUTH) & (pl.col("injected_at") <= now)
        )
        if self._last_write is not None:
            self._resolve_repaired(planned, self._last_write)
            self._last_write = None
        if self._resolved:
            planned = planned.with_columns(
                resolved_at=pl.col("defect_id").replace_strict(
                    self._resolved, default=pl.col("resolved_at"), return_dtype=UTC_TS
                )
            )
        overdue = _views.overdue_truth(
            self.frame("netsuite", "transaction"), self.frame("netsuite", "currency"), now
        )
        stale = self._outages.filter(pl.col("starts_at") <= now).select(
            "defect_id",
            pl.lit("stale_source").alias("break_type"),
            pl.concat_str(
                pl.lit('[{"vendor":"'), pl.col("vendor"), pl.lit('","object":"*","id":"*"}]')
            ).alias("records"),
            pl.lit("0.00").alias("amount_at_risk"),
            pl.lit("USD").alias("currency"),
            pl.col("starts_at").alias("injected_at"),
            pl.when(pl.col("ends_at") <= now).then(pl.col("ends_at")).alias("resolved_at"),
            pl.concat_str(pl.lit("The "), pl.col("vendor"), pl.lit(" API is unavailable")).alias(
                "detail"
            ),
        )
        frames = [
            f.select([pl.col(c).cast(t) for c, t in GROUND_TRUTH_SCHEMA.items()])
            for f in (planned, overdue, stale)
        ]
        return pl.concat(frames).sort("injected_at", "defect_id")

    def _resolve_repaired(self, planned: pl.DataFrame, at: datetime) -> None:
        """Mark open planned defects that API writes have repaired (no longer visible) as resolved."""
        from sandbox.estate.checks import DETECTABLE, detect, key_of

        open_rows = planned.filter(
            pl.col("resolved_at").is_null()
            & ~pl.col("defect_id").is_in(list(self._resolved))
            & pl.col("break_type").is_in(DETECTABLE)
        )
        if open_rows.height == 0:
            return
        frames = {(v, o): self.frame(v, o) for v in VENDORS for o in SCHEMAS[v]}
        found = detect(frames, self._now)
        for defect_id, btype, records in open_rows.select(
            "defect_id", "break_type", "records"
        ).iter_rows():
            if key_of(btype, records) not in found[btype]:
                self._resolved[defect_id] = at

    # --- writes -----------------------------------------------------------------------------
    def _next_ids(self, vendor: str, obj: str, n: int) -> list[str]:
        key = (vendor, obj)
        start = self._counters.get(key)
        if start is None:
            if vendor in ("kantata", "netsuite"):
                ids = self.frame(vendor, obj)[ID_COLUMN[vendor]]
                numeric = ids.cast(pl.Int64, strict=False).drop_nulls()
                start = int(numeric.max() or 0) + 1 if numeric.len() else 1
            else:
                start = 0
        self._counters[key] = start + n
        if vendor == "salesforce":
            seq = np.arange(start, start + n) + 36**9  # far above generated sequences
            return salesforce_ids(_SF_PREFIX.get(obj, "a0X"), seq).to_list()
        if vendor == "stripe":
            prefix = _STRIPE_PREFIX[obj][0]
            salt = 50 + list(SCHEMAS["stripe"]).index(obj)
            return stripe_ids(prefix, np.arange(start, start + n), salt).to_list()
        return [str(i) for i in range(start, start + n)]

    def insert(self, vendor: str, obj: str, rows: list[dict[str, Any]]) -> list[str]:
        schema = SCHEMAS[vendor][obj]
        idc = ID_COLUMN[vendor]
        with self.lock:
            missing = [r for r in rows if not r.get(idc)]
            fresh = iter(self._next_ids(vendor, obj, len(missing)))
            now = self._now
            prepared = []
            for r in rows:
                row = {c: r.get(c) for c in schema}
                if not row[idc]:
                    row[idc] = next(fresh)
                for c, t in schema.items():
                    if row[c] is None and t == pl.Boolean:
                        row[c] = False
                created = CREATED_COLUMN[(vendor, obj)]
                if row.get(created) is None:
                    row[created] = now
                row[MODIFIED_COLUMN[(vendor, obj)]] = now
                for c in EXTRA_MODIFIED_COLUMNS.get((vendor, obj), ()):
                    row[c] = now
                if vendor == "stripe":
                    row["object"] = _STRIPE_PREFIX[obj][1]
                    row["metadata"] = _metadata(row.get("metadata"))
                prepared.append(row)
            new = self._rows_frame(vendor, obj, prepared)  # validates types before anything changes
            self._inserted.setdefault((vendor, obj), []).extend(prepared)
            key = (vendor, obj)
            if key in self._cache:
                self._cache[key] = pl.concat([self._cache[key], new])
            if vendor == "stripe" and obj != "events":
                for row in prepared:
                    self._event(f"{row['object']}.created", row["id"], row["object"])
            self._truth_cache = None
            self._last_write = self._now
            return [row[idc] for row in prepared]

    def update(self, vendor: str, obj: str, id: str, changes: dict[str, Any]) -> None:
        schema = SCHEMAS[vendor][obj]
        idc = ID_COLUMN[vendor]
        unknown = set(changes) - set(schema)
        if unknown:
            raise ValueError(f"{vendor}.{obj} has no columns {sorted(unknown)}")
        key = (vendor, obj)
        with self.lock:
            changes = dict(changes)
            changes.pop(idc, None)
            if vendor == "stripe" and "metadata" in changes:
                changes["metadata"] = _metadata(changes["metadata"])
            if vendor != "stripe":
                changes[MODIFIED_COLUMN[key]] = self._now
                for c in EXTRA_MODIFIED_COLUMNS.get(key, ()):
                    changes[c] = self._now
            frame = self.frame(vendor, obj)
            row = frame.get_column(idc).index_of(id)
            if row is None:
                raise KeyError(f"{vendor}.{obj} {id!r} not found")
            typed = self._rows_frame(vendor, obj, [changes]).select(list(changes))  # type check
            target = next((r for r in self._inserted.get(key, []) if r[idc] == id), None)
            if target is not None:
                target.update(changes)
            else:
                merged = {**self._overrides.get(key, {}).get(id, {}), **changes}
                self._overrides.setdefault(key, {})[id] = merged
            # patch only the changed columns of the cached frame: one copy per column, no join
            self._cache[key] = frame.with_columns(
                _patched(frame, c, row, typed[c]) for c in changes
            )
            if vendor == "stripe" and obj != "events":
                etype = f"{_STRIPE_PREFIX[obj][1]}.updated"
                if obj == "invoices" and changes.get("status") in ("paid", "void"):
                    etype = "invoice.paid" if changes["status"] == "paid" else "invoice.voided"
                self._event(etype, id, _STRIPE_PREFIX[obj][1])
            self._truth_cache = None
            self._last_write = self._now

    def _event(self, etype: str, object_id: str, object_type: str) -> None:
        (eid,) = self._next_ids("stripe", "events", 1)
        row = {
            "id": eid,
            "object": "event",
            "type": etype,
            "api_version": _views.STRIPE_API_VERSION,
            "livemode": False,
            "data_object_id": object_id,
            "data_object_type": object_type,
            "request_id": None,
            "request_idempotency_key": None,
            "created": self._now,
        }
        self._write_events.append(row)
        self._cache.pop(("stripe", "events"), None)

    # --- the clock --------------------------------------------------------------------------
    def advance(self, duration: timedelta) -> None:
        if duration < timedelta(0):
            raise ValueError("the clock only moves forward")
        with self.lock:
            self._now = self._now + duration
            self._cache.clear()
            self._truth_cache = None

    def tick(self, real_elapsed: timedelta | float, speedup: float) -> timedelta:
        seconds = (
            real_elapsed.total_seconds() if isinstance(real_elapsed, timedelta) else real_elapsed
        )
        with self.lock:
            # whole seconds keep every stamp on the vendors' own (second) precision; the
            # fraction is carried to the next tick so slow speed-ups still move the clock
            total = self._tick_carry + max(seconds, 0.0) * speedup
            whole = int(total)
            self._tick_carry = total - whole
            step = timedelta(seconds=whole)
            if step > timedelta(0):
                self.advance(step)
            return step


def _patched(frame: pl.DataFrame, col: str, row: int, value: pl.Series) -> pl.Series:
    """Column `col` of `frame` with `value` (a one-row Series) at `row`."""
    series = frame.get_column(col)
    if value.dtype.is_nested():
        mask = pl.int_range(pl.len()) == row
        return frame.select(
            pl.when(mask).then(pl.lit(value).first()).otherwise(pl.col(col)).alias(col)
        ).to_series()
    patched = series.clone()
    patched.scatter(row, value)
    return patched


def _metadata(value: Any) -> dict[str, Any]:
    if value is None:
        return {"netsuite_id": None}
    if isinstance(value, dict):
        nid = value.get("netsuite_id")
        return {"netsuite_id": None if nid in (None, "") else str(nid)}
    raise TypeError("Stripe metadata must be a dict")


def _empty(vendor: str, obj: str) -> pl.DataFrame:
    return pl.DataFrame(schema=SCHEMAS[vendor][obj])
