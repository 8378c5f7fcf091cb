"""Executive KPIs from the reconciler's snapshots: tiles with their change, trends, legal entities.

Every value comes from ``kpi_snapshots`` (what a reconcile run measured at its as-of time) or the
break register; nothing is recomputed here. A tile compares the latest snapshot with the newest
one at least ``period`` older (else the oldest earlier one, and says which it used).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import polars as pl

import store
from dashboards.service._auth import User, require

ACTIVE_STATUSES = ("new", "open", "reopened")


@dataclass(frozen=True)
class KpiSpec:
    """One executive KPI: the snapshot row it reads, its label, and whether lower is better."""

    kpi: str
    dimension: str
    label: str
    lower_is_better: bool


TILES: tuple[KpiSpec, ...] = (
    KpiSpec("project_setup_cycle_time_p50_days", "all", "Project setup cycle time (p50)", True),
    KpiSpec("billing_lag_time_p50_days", "all", "Billing lag, time (p50)", True),
    KpiSpec("billing_lag_milestone_p50_days", "all", "Billing lag, milestones (p50)", True),
    KpiSpec("dso_days", "all", "DSO", True),
    KpiSpec("best_possible_dso_days", "all", "Best possible DSO", True),
    KpiSpec("revenue_leakage_minor", "all", "Revenue leakage", True),
    KpiSpec("bookings_to_billings_ratio", "all", "Bookings to billings", False),
    KpiSpec("backlog_minor", "all", "Backlog", False),
    KpiSpec("ar_total_minor", "all", "Receivables", True),
    KpiSpec("invoice_accuracy_ratio", "all", "Invoice accuracy", False),
    KpiSpec("open_breaks_count", "all", "Open breaks", True),
    KpiSpec("resolutions_count", "kind=manual", "Manual interventions", True),
)
"""The tiles, in display order."""

TRENDS: dict[str, tuple[str, ...]] = {
    "Project setup cycle time (days, p50 and p90)": (
        "project_setup_cycle_time_p50_days", "project_setup_cycle_time_p90_days"),
    "Billing lag (days, p50)": ("billing_lag_time_p50_days", "billing_lag_milestone_p50_days"),
    "DSO against best possible DSO (days)": ("dso_days", "best_possible_dso_days"),
    "Revenue leakage": ("revenue_leakage_minor",),
    "Bookings against billings": ("bookings_minor", "billings_minor"),
}  # fmt: skip
"""Trend charts: title -> the KPIs (dimension ``all``) drawn in it."""

_SNAPSHOT_SCHEMA: dict[str, pl.DataType] = {
    "run_id": pl.Int64(),
    "as_of": pl.Datetime("us", "UTC"),
    "kpi": pl.String(),
    "dimension": pl.String(),
    "value": pl.Float64(),
    "value_minor": pl.Int64(),
    "unit": pl.String(),
    "currency": pl.String(),
}


@dataclass(frozen=True)
class KpiTile:
    """One KPI's latest value and its change against the comparison snapshot."""

    kpi: str
    label: str
    unit: str
    currency: str | None
    value: float | None
    previous: float | None
    lower_is_better: bool

    @property
    def change(self) -> float | None:
        if self.value is None or self.previous is None:
            return None
        return self.value - self.previous

    @property
    def improved(self) -> bool | None:
        """Whether the change is for the better (None when unchanged or unknown)."""
        change = self.change
        if change is None or change == 0:
            return None
        return (change < 0) == self.lower_is_better


@dataclass(frozen=True)
class Executive:
    """The executive page's data: tiles, the snapshots they compare, trends, legal entities."""

    as_of: datetime | None
    compared_with: datetime | None
    tiles: tuple[KpiTile, ...]
    trends: pl.DataFrame
    """Columns: as_of, kpi, value (major units for money), unit, currency."""
    by_legal_entity: pl.DataFrame
    """Columns: legal_entity, open_breaks, at_risk_minor, reporting_currency, setup_p50_days."""


def read_snapshots(db: store.Store, kpis: tuple[str, ...]) -> pl.DataFrame:
    """The stored values of the given KPIs, one row per (as-of, kpi, dimension): the last run's."""
    with db.begin() as conn:
        parts = [store.read_kpi_snapshots(conn, kpi=kpi) for kpi in kpis]
    frame = pl.concat([p.select(list(_SNAPSHOT_SCHEMA)).cast(_SNAPSHOT_SCHEMA) for p in parts])  # type: ignore[arg-type]
    return (
        frame.sort("run_id")
        .unique(["as_of", "kpi", "dimension"], keep="last")
        .sort("as_of", "kpi", "dimension")
    )


def _value(row: dict[str, object]) -> float | None:
    minor, value = row.get("value_minor"), row.get("value")
    if minor is not None:
        return float(minor)  # type: ignore[arg-type]
    return None if value is None else float(value)  # type: ignore[arg-type]


def comparison_as_of(as_ofs: list[datetime], period: timedelta) -> datetime | None:
    """The snapshot a tile compares with: newest at least ``period`` before the latest, else the
    oldest earlier one; None with fewer than two snapshots."""
    if len(as_ofs) < 2:
        return None
    latest = max(as_ofs)
    earlier = sorted(a for a in as_ofs if a < latest)
    old_enough = [a for a in earlier if a <= latest - period]
    return old_enough[-1] if old_enough else earlier[0]


def tiles_of(snapshots: pl.DataFrame, period: timedelta) -> tuple[datetime | None, datetime | None, tuple[KpiTile, ...]]:  # fmt: skip
    """(latest as-of, comparison as-of, tiles) from snapshot rows."""
    as_ofs = snapshots.get_column("as_of").unique().to_list()
    if not as_ofs:
        return (
            None,
            None,
            tuple(KpiTile(s.kpi, s.label, "", None, None, None, s.lower_is_better) for s in TILES),
        )
    latest = max(as_ofs)
    compared = comparison_as_of(as_ofs, period)
    rows = {(r["as_of"], r["kpi"], r["dimension"]): r for r in snapshots.iter_rows(named=True)}
    tiles = []
    for spec in TILES:
        now = rows.get((latest, spec.kpi, spec.dimension))
        before = rows.get((compared, spec.kpi, spec.dimension)) if compared else None
        tiles.append(
            KpiTile(
                kpi=spec.kpi,
                label=spec.label,
                unit=str(now["unit"]) if now else "",
                currency=str(now["currency"]) if now and now["currency"] else None,
                value=_value(now) if now else None,
                previous=_value(before) if before else None,
                lower_is_better=spec.lower_is_better,
            )
        )
    return latest, compared, tuple(tiles)


def trends_of(snapshots: pl.DataFrame) -> pl.DataFrame:
    """Trend rows (dimension ``all``), money in major units of the reporting currency."""
    wanted = sorted({k for kpis in TRENDS.values() for k in kpis})
    frame = snapshots.filter(pl.col("kpi").is_in(wanted) & (pl.col("dimension") == "all"))
    # Reporting currencies of the estate have two decimals except a few (store.currency_exponent).
    exponents = {
        c: store.currency_exponent(c)
        for c in frame.get_column("currency").drop_nulls().unique().to_list()
    }
    scale = pl.col("currency").replace_strict(
        list(exponents), [10.0**e for e in exponents.values()], default=1.0, return_dtype=pl.Float64
    )
    return frame.select(
        "as_of",
        "kpi",
        pl.when(pl.col("value_minor").is_not_null())
        .then(pl.col("value_minor").cast(pl.Float64) / scale)
        .otherwise(pl.col("value"))
        .alias("value"),
        "unit",
        "currency",
    )


def by_legal_entity(open_breaks: pl.DataFrame, snapshots: pl.DataFrame) -> pl.DataFrame:
    """Open breaks and amount at risk per legal entity, with the setup cycle time (p50) there.

    ``open_breaks``: store.read_breaks_by_legal_entity of the active statuses.
    """
    breaks = open_breaks.select(
        pl.col("legal_entity").fill_null("(none)"),
        pl.col("breaks").alias("open_breaks"),
        "at_risk_minor",
        "reporting_currency",
    )
    setup = pl.DataFrame(schema={"legal_entity": pl.String(), "setup_p50_days": pl.Float64()})
    if not snapshots.is_empty():
        latest = snapshots.get_column("as_of").max()
        setup = snapshots.filter(
            (pl.col("as_of") == latest)
            & (pl.col("kpi") == "project_setup_cycle_time_p50_days")
            & pl.col("dimension").str.starts_with("legal_entity=")
        ).select(
            pl.col("dimension").str.strip_prefix("legal_entity=").alias("legal_entity"),
            pl.col("value").alias("setup_p50_days"),
        )
    return (
        breaks.join(setup, on="legal_entity", how="full", coalesce=True)
        .with_columns(pl.col("open_breaks").fill_null(0))
        .sort("legal_entity")
    )


def executive(db: store.Store, user: User, *, period: timedelta = timedelta(days=30)) -> Executive:
    """Everything the executive page shows."""
    require(user, "read")
    kpis = tuple(
        sorted(
            {s.kpi for s in TILES}
            | {k for ks in TRENDS.values() for k in ks}
            | {"project_setup_cycle_time_p50_days"}
        )
    )
    snapshots = read_snapshots(db, kpis)
    with db.begin() as conn:
        open_breaks = store.read_breaks_by_legal_entity(conn, statuses=ACTIVE_STATUSES)
    latest, compared, tiles = tiles_of(snapshots, period)
    return Executive(
        as_of=latest,
        compared_with=compared,
        tiles=tiles,
        trends=trends_of(snapshots),
        by_legal_entity=by_legal_entity(open_breaks, snapshots),
    )
