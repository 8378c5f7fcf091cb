"""The O2C KPIs of one run, measured at its as-of time; every formula is written out in docs/kpis.md.

A KPI value is one row: ``kpi`` (name with its unit suffix), ``dimension`` (``all`` or e.g.
``legal_entity=US01``), ``value`` (days, ratio or count, Float64) or ``value_minor`` (money in the
reporting currency's minor units, Int64, with ``currency``), and ``unit``. Money KPIs convert
each amount with the config's FX table; amounts in a currency without a rate are left out and
counted in ``fx_missing_amounts_count``.
"""

from __future__ import annotations

import calendar
from datetime import date, datetime, timedelta

import polars as pl

from reconciler._chains import deal_invoices
from reconciler._context import RuleContext, day_start
from reconciler._fx import to_reporting

KPI_SCHEMA: dict[str, pl.DataType] = {
    "kpi": pl.String(),
    "dimension": pl.String(),
    "value": pl.Float64(),
    "value_minor": pl.Int64(),
    "unit": pl.String(),
    "currency": pl.String(),
}

AR_BUCKETS: tuple[str, ...] = ("current", "1-30", "31-60", "61-90", ">90")
"""Receivables ageing buckets, in days past due."""

LEAKAGE_TYPES = ("approved_time_not_invoiced", "completed_milestone_not_invoiced")

DURATION_BUCKETS_SECONDS: tuple[int, ...] = tuple(
    int(h * 3600)
    for h in (
        1,
        4,
        12,
        24,
        48,
        72,
        120,
        168,
        240,
        336,
        504,
        720,
        1080,
        1440,
        2160,
        2880,
        4320,
        8760,
    )
)
"""Upper bounds of the cycle-time histograms (1 h to 365 d): cycles of hours to months."""


class _Rows:
    def __init__(self, reporting_currency: str) -> None:
        self.rows: list[dict[str, object]] = []
        self.currency = reporting_currency

    def days(self, kpi: str, value: float | None, dimension: str = "all") -> None:
        self.rows.append({"kpi": kpi, "dimension": dimension, "value": value, "unit": "days"})

    def ratio(self, kpi: str, value: float | None, dimension: str = "all") -> None:
        self.rows.append({"kpi": kpi, "dimension": dimension, "value": value, "unit": "ratio"})

    def count(self, kpi: str, value: int, dimension: str = "all") -> None:
        self.rows.append(
            {"kpi": kpi, "dimension": dimension, "value": float(value), "unit": "count"}
        )

    def timestamp(self, kpi: str, value: datetime | None, dimension: str = "all") -> None:
        seconds = None if value is None else value.timestamp()
        self.rows.append(
            {"kpi": kpi, "dimension": dimension, "value": seconds, "unit": "timestamp"}
        )

    def money(self, kpi: str, value: int | None, dimension: str = "all") -> None:
        self.rows.append(
            {"kpi": kpi, "dimension": dimension, "value_minor": value, "unit": "minor",
             "currency": self.currency}
        )  # fmt: skip

    def frame(self) -> pl.DataFrame:
        return pl.DataFrame(self.rows, schema=KPI_SCHEMA)


def _quantiles(rows: _Rows, name: str, frame: pl.DataFrame, by: str | None = None) -> None:
    """p50 and p90 (linear interpolation) of ``days``, overall and per ``by``."""
    groups: list[tuple[str, pl.DataFrame]] = [("all", frame)]
    if by is not None:
        for (key,), part in sorted(
            frame.filter(pl.col(by).is_not_null()).group_by(by), key=lambda g: str(g[0][0])
        ):
            groups.append((f"{by}={key}", part))
    for dimension, part in groups:
        days = part.get_column("days").drop_nulls()
        for q in (50, 90):
            value = days.quantile(q / 100, "linear") if days.len() else None
            rows.days(f"{name}_p{q}_days", value, dimension)


def _histogram(rows: _Rows, name: str, frame: pl.DataFrame, by: str | None = None) -> None:
    """Cumulative bucket counts and the sum (seconds) of ``days``, per value of ``by``.

    Rows ``{name}_seconds_bucket`` (count, dimension ``[by=value,]le=bound``, ``le=+Inf`` = all)
    and ``{name}_seconds_sum`` (seconds, dimension ``all`` or ``by=value``): a Prometheus classic
    histogram, exported as is. A null ``by`` value is ``none``.
    """
    groups: list[tuple[str, pl.Series]] = []
    if by is None:
        groups.append(("", frame.get_column("days")))
    else:
        for (key,), part in sorted(frame.group_by(by), key=lambda g: str(g[0][0])):
            groups.append((f"{by}={'none' if key is None else key},", part.get_column("days")))
    for prefix, days in groups:
        seconds = (days.drop_nulls() * 86_400).to_numpy()
        for bound in DURATION_BUCKETS_SECONDS:
            rows.count(
                f"{name}_seconds_bucket", int((seconds <= bound).sum()), f"{prefix}le={bound}"
            )
        rows.count(f"{name}_seconds_bucket", len(seconds), f"{prefix}le=+Inf")
        rows.rows.append(
            {"kpi": f"{name}_seconds_sum", "dimension": prefix.rstrip(",") or "all",
             "value": float(seconds.sum()), "unit": "seconds"}
        )  # fmt: skip


def _span_days(start: pl.Expr, end: pl.Expr) -> pl.Expr:
    return ((end - start).dt.total_seconds() / 86_400).alias("days")


def _sum(frame: pl.DataFrame, column: str) -> int:
    return int(frame.get_column(column).drop_nulls().sum())


def countback_dso(ar: int, monthly_sales: list[tuple[int, int]]) -> float | None:
    """Countback DSO: consume AR against each month's sales, newest first.

    ``monthly_sales`` is (days in the period, sales) from the as-of month backwards; a full
    month adds its days, the month that exhausts AR adds the fraction of its days AR covers.
    """
    if ar <= 0:
        return 0.0
    remaining, total = ar, 0.0
    for days, sales in monthly_sales:
        if sales > 0 and remaining <= sales:
            return total + days * remaining / sales
        total += days
        remaining -= max(sales, 0)
    return total


def _month_periods(as_of: date, months: int) -> list[tuple[date, date, int]]:
    """(first day, last day, days counted) from the as-of month backwards."""
    periods = [(as_of.replace(day=1), as_of, as_of.day)]
    year, month = as_of.year, as_of.month
    for _ in range(months - 1):
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
        last = calendar.monthrange(year, month)[1]
        periods.append((date(year, month, 1), date(year, month, last), last))
    return periods


def compute_kpis(ctx: RuleContext, breaks: pl.DataFrame, chains: pl.DataFrame) -> pl.DataFrame:
    """Every KPI of the run except those of the break register (see the service)."""
    config, as_of = ctx.config, ctx.as_of
    today = as_of.date()
    window = config.kpi_window_days
    window_start = today - timedelta(days=window)
    rows = _Rows(config.reporting_currency)
    missing_fx = 0

    # --- project setup cycle time: won -> project active, per legal entity
    setup = chains.filter(
        pl.col("won_at").is_not_null() & pl.col("project_activated_at").is_not_null()
    ).with_columns(_span_days(pl.col("won_at"), pl.col("project_activated_at")))
    _quantiles(rows, "project_setup_cycle_time", setup, by="legal_entity")
    _histogram(rows, "project_setup_cycle_time", setup, by="legal_entity")

    # --- billing lag: approved time -> invoiced; milestone completed -> invoiced
    psa_issued = ctx.psa_invoices.select(
        pl.col("k_id").alias("invoice_ref"), day_start("k_issued").alias("issued_at")
    )
    time_lag = (
        ctx.data.time_entries.filter(
            (pl.col("source_system") == ctx.systems.psa)
            & pl.col("approved_at").is_not_null()
            & pl.col("invoice_ref").is_not_null()
        )
        .join(psa_issued, on="invoice_ref")
        .filter(pl.col("issued_at") <= as_of)
        .select(_span_days(pl.col("approved_at"), pl.col("issued_at")))
    )
    ms_lag = (
        ctx.data.milestones.filter(
            (pl.col("source_system") == ctx.systems.psa)
            & pl.col("completed_at").is_not_null()
            & pl.col("invoice_ref").is_not_null()
        )
        .join(psa_issued, on="invoice_ref")
        .filter(pl.col("issued_at") <= as_of)
        .select(_span_days(pl.col("completed_at"), pl.col("issued_at")))
    )

    # --- receivables
    invoices = deal_invoices(ctx).with_columns(
        pl.coalesce("e_remaining", pl.col("e_total") - pl.col("collected").fill_null(0)).alias(
            "remaining"
        ),
        to_reporting(pl.col("e_total"), pl.col("e_currency"), config).alias("total_rep"),
    )
    invoices = invoices.with_columns(
        to_reporting(pl.col("remaining"), pl.col("e_currency"), config).alias("remaining_rep")
    ).select(  # only what is read below: every ERP invoice's other columns cost 0.5 GiB at 40
        "e_system", "e_id", "e_total", "e_state", "e_issued", "e_due", "collected",
        "last_payment_at", "remaining", "total_rep", "remaining_rep",
    )  # fmt: skip
    time_lag_df, ms_lag_df, inv = pl.collect_all([time_lag, ms_lag, invoices])
    _quantiles(rows, "billing_lag_time", time_lag_df)
    _quantiles(rows, "billing_lag_milestone", ms_lag_df)
    _histogram(rows, "billing_lag", pl.concat([
        time_lag_df.with_columns(pl.lit("time").alias("kind")),
        ms_lag_df.with_columns(pl.lit("milestone").alias("kind")),
    ]), by="kind")  # fmt: skip

    missing_fx += inv.filter(pl.col("total_rep").is_null() & pl.col("e_total").is_not_null()).height
    paid = inv.filter(
        (pl.col("e_total") > 0)
        & (pl.col("collected").fill_null(0) >= pl.col("e_total"))
        & pl.col("last_payment_at").is_not_null()
    ).with_columns(_span_days(day_start("e_issued"), pl.col("last_payment_at")))
    _quantiles(rows, "time_to_cash", paid)
    _histogram(rows, "time_to_cash", paid)

    open_ar = inv.filter((pl.col("e_state") == "open") & (pl.col("remaining") != 0))
    ar = _sum(open_ar, "remaining_rep")
    past_due = (pl.lit(today) - pl.col("e_due")).dt.total_days()
    current_ar = _sum(
        open_ar.filter(pl.col("e_due").is_null() | (pl.col("e_due") >= today)), "remaining_rep"
    )
    in_window = inv.filter((pl.col("e_issued") > window_start) & (pl.col("e_issued") <= today))
    sales = _sum(in_window, "total_rep")
    per_day = sales / window if sales > 0 else None
    rows.days("dso_days", ar / per_day if per_day else None)
    rows.days("best_possible_dso_days", current_ar / per_day if per_day else None)
    by_month = dict(
        inv.filter(pl.col("e_issued") <= today)
        .group_by(pl.col("e_issued").dt.month_start().alias("month"))
        .agg(pl.col("total_rep").sum())
        .iter_rows()
    )
    monthly = [
        (days, int(by_month.get(first) or 0)) for first, _, days in _month_periods(today, 24)
    ]
    rows.days("dso_countback_days", countback_dso(ar, monthly) if inv.height else None)
    rows.money("ar_total_minor", ar)
    aged = open_ar.with_columns(past_due.alias("past_due"))
    bucket = (
        pl.when(pl.col("past_due").is_null() | (pl.col("past_due") <= 0))
        .then(pl.lit("current"))
        .when(pl.col("past_due") <= 30)
        .then(pl.lit("1-30"))
        .when(pl.col("past_due") <= 60)
        .then(pl.lit("31-60"))
        .when(pl.col("past_due") <= 90)
        .then(pl.lit("61-90"))
        .otherwise(pl.lit(">90"))
    )
    by_bucket = dict(
        aged.group_by(bucket.alias("bucket")).agg(pl.col("remaining_rep").sum()).iter_rows()
    )
    for name in AR_BUCKETS:
        rows.money("ar_ageing_minor", int(by_bucket.get(name) or 0), f"bucket={name}")

    # --- revenue leakage: approved time and completed milestones not invoiced
    leaks = breaks.filter(pl.col("break_type").is_in(LEAKAGE_TYPES))
    missing_fx += leaks.filter(
        pl.col("amount_reporting_minor").is_null() & pl.col("amount_minor").is_not_null()
    ).height
    rows.money("revenue_leakage_minor", _sum(leaks, "amount_reporting_minor"))
    for t in LEAKAGE_TYPES:
        part = leaks.filter(pl.col("break_type") == t)
        rows.money("revenue_leakage_minor", _sum(part, "amount_reporting_minor"), f"type={t}")

    # --- invoice accuracy: window's ERP invoices without an amount or currency break
    inaccurate_keys = breaks.filter(
        pl.col("break_type").is_in(["invoice_amount_mismatch", "currency_mismatch"])
    ).select("key")
    issued = in_window.with_columns(
        pl.concat_str(pl.lit("invoices:"), pl.col("e_system"), pl.lit(":"), pl.col("e_id")).alias(
            "key"
        )
    )
    wrong = issued.join(inaccurate_keys, on="key", how="semi").height
    rows.ratio("invoice_accuracy_ratio", 1 - wrong / issued.height if issued.height else None)

    # --- bookings-to-billings: bookings / billings in the window (> 1: backlog grows)
    booked = chains.filter(
        pl.col("won_at").is_not_null()
        & (pl.col("booked_minor") > 0)
        & (pl.col("won_at").dt.date() > window_start)
    ).with_columns(to_reporting(pl.col("booked_minor"), pl.col("currency"), config).alias("rep"))
    missing_fx += booked.filter(pl.col("rep").is_null()).height
    bookings = _sum(booked, "rep")
    rows.money("bookings_minor", bookings)
    rows.money("billings_minor", sales)
    rows.ratio("bookings_to_billings_ratio", bookings / sales if sales > 0 else None)

    # --- backlog: won value not yet billed
    backlog = chains.filter(pl.col("booked_minor") > 0).with_columns(
        to_reporting(
            (pl.col("booked_minor") - pl.col("billed_minor")).clip(lower_bound=0),
            pl.col("currency"),
            config,
        ).alias("rep")
    )
    missing_fx += backlog.filter(pl.col("rep").is_null()).height
    rows.money("backlog_minor", _sum(backlog, "rep"))

    # --- stuck transactions by stage
    stuck = dict(chains.filter(pl.col("stuck")).group_by("stage").len().iter_rows())
    for stage in config.stuck_after:
        rows.count("stuck_transactions_count", int(stuck.get(stage, 0)), f"stage={stage}")
    oldest = dict(
        chains.filter(pl.col("stuck"))
        .group_by("stage")
        .agg(pl.col("stage_since").min())
        .iter_rows()
    )
    for stage in config.stuck_after:
        rows.timestamp("stuck_transactions_oldest_since", oldest.get(stage), f"stage={stage}")

    rows.count("fx_missing_amounts_count", missing_fx)
    return rows.frame()


def break_kpis(
    open_breaks: pl.DataFrame, break_types: tuple[str, ...], reporting_currency: str
) -> pl.DataFrame:
    """Open breaks by type (count and amount at risk in the reporting currency)."""
    rows = _Rows(reporting_currency)
    counts = {t: (n, a) for t, n, a in open_breaks.group_by("break_type").agg(
        pl.len(), pl.col("amount_reporting_minor").sum()).iter_rows()}  # fmt: skip
    rows.count("open_breaks_count", open_breaks.height)
    for t in break_types:
        n, amount = counts.get(t, (0, 0))
        rows.count("open_breaks_count", int(n), f"type={t}")
        rows.money("open_breaks_amount_minor", int(amount or 0), f"type={t}")
    _break_aggregates(rows, open_breaks, break_types)
    return rows.frame()


def _break_aggregates(rows: _Rows, breaks: pl.DataFrame, break_types: tuple[str, ...]) -> None:
    """The exporter's break aggregates (bounded dimensions only, never an id).

    ``open_breaks_detail_count`` by type, severity and legal entity (``none`` when it has none);
    ``open_breaks_by_system_count`` by system, type and severity (a break involving two systems
    counts under each); ``open_breaks_oldest_since`` (when the oldest open break of a type
    began, a timestamp); ``open_breaks_sla_breached_count`` by type and severity, when the
    frame knows each break's ``sla_breached``.
    """
    entity = pl.col("legal_entity").fill_null("none")
    for t, severity, le, n in (
        breaks.group_by("break_type", "severity", entity.alias("le"))
        .len()
        .sort(pl.all())
        .iter_rows()
    ):
        rows.count("open_breaks_detail_count", int(n),
                   f"break_type={t},severity={severity},legal_entity={le}")  # fmt: skip
    systems = (
        breaks.select("break_type", "severity", pl.col("systems").str.split(",").alias("system"))
        .explode("system")
        .filter(pl.col("system").is_not_null() & (pl.col("system") != ""))
    )
    for system, t, severity, n in (
        systems.group_by("system", "break_type", "severity").len().sort(pl.all()).iter_rows()
    ):
        rows.count("open_breaks_by_system_count", int(n),
                   f"system={system},break_type={t},severity={severity}")  # fmt: skip
    oldest = dict(breaks.group_by("break_type").agg(pl.col("since").min()).iter_rows())
    for t in break_types:
        rows.timestamp("open_breaks_oldest_since", oldest.get(t), f"type={t}")
    if "sla_breached" in breaks.columns:
        breached = breaks.filter(pl.col("sla_breached").fill_null(False))
        by_type = {t: int(n) for t, n in breached.group_by("break_type").len().iter_rows()}
        for t in break_types:
            rows.count("open_breaks_sla_breached_count", by_type.get(t, 0), f"type={t}")
