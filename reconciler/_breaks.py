"""From rule findings to breaks: stable ids, reporting-currency amounts, ageing, SLA clocks.

The stable id is a hash of the break type and the key of the problem's primary record, so the
same problem keeps its id across runs whatever else changes (amounts, records, detail). Ages are
calendar days from ``since`` (when the condition began) to the as-of time; SLA clocks count
business days in the legal entity's calendar (weekend mask and holidays from the config).
"""

from __future__ import annotations

import hashlib
from datetime import datetime

import polars as pl

from reconciler._config import ReconcileConfig
from reconciler._fx import to_reporting

AGEING_BUCKETS: tuple[str, ...] = ("0-1", "2-7", "8-30", ">30")
"""Break ageing buckets, in days since the condition began."""

BREAK_SCHEMA: dict[str, pl.DataType] = {
    "break_id": pl.String(),
    "break_type": pl.String(),
    "severity": pl.String(),
    "remediation": pl.String(),
    "key": pl.String(),
    "records": pl.String(),
    "systems": pl.String(),
    "legal_entity": pl.String(),
    "amount_minor": pl.Int64(),
    "currency": pl.String(),
    "amount_reporting_minor": pl.Int64(),
    "reporting_currency": pl.String(),
    "since": pl.Datetime("us", "UTC"),
    "detail": pl.String(),
    "age_days": pl.Int64(),
    "ageing_bucket": pl.String(),
    "business_days_open": pl.Int64(),
    "sla_business_days": pl.Int64(),
    "sla_breached": pl.Boolean(),
}


def break_id(break_type: str, key: str) -> str:
    """The stable id of a break: the same type and primary record give the same id, always."""
    return hashlib.sha256(f"{break_type}\x1f{key}".encode()).hexdigest()[:32]


def _ids(types: pl.Series, keys: pl.Series) -> pl.Series:
    # One hash per break (not per canonical record): tens of thousands at most.
    return pl.Series(
        "break_id", [break_id(t, k) for t, k in zip(types, keys, strict=True)], pl.String()
    )


def ageing_bucket(age_days: pl.Expr) -> pl.Expr:
    return (
        pl.when(age_days <= 1)
        .then(pl.lit("0-1"))
        .when(age_days <= 7)
        .then(pl.lit("2-7"))
        .when(age_days <= 30)
        .then(pl.lit("8-30"))
        .otherwise(pl.lit(">30"))
    )


def business_days(
    start: pl.Expr, end: pl.Expr, legal_entity: pl.Expr, entities: list[str | None],
    config: ReconcileConfig,
) -> pl.Expr:  # fmt: skip
    """Business days in [start, end) in each row's legal-entity calendar."""

    def count(entity: str | None) -> pl.Expr:
        cal = config.calendar(entity)
        return pl.business_day_count(
            start, end, week_mask=cal.week_mask, holidays=sorted(cal.holidays)
        )

    expr: pl.Expr = count(None)
    for entity in entities:
        if entity is not None and entity in config.calendars:
            expr = pl.when(legal_entity == entity).then(count(entity)).otherwise(expr)
    return expr.clip(lower_bound=0).cast(pl.Int64)


def enrich(findings: pl.DataFrame, as_of: datetime, config: ReconcileConfig) -> pl.DataFrame:
    """Findings (with break_type, severity, remediation) -> breaks with BREAK_SCHEMA columns."""
    if findings.is_empty():
        return pl.DataFrame(schema=BREAK_SCHEMA)
    frame = findings.with_columns(_ids(findings["break_type"], findings["key"]))
    since = pl.col("since").fill_null(pl.lit(as_of).dt.convert_time_zone("UTC"))
    age = ((pl.lit(as_of) - since).dt.total_seconds() // 86_400).clip(lower_bound=0)
    entities = frame.get_column("legal_entity").unique().to_list()
    sla = pl.col("break_type").replace_strict(
        list(config.sla_business_days), list(config.sla_business_days.values()), default=None,
        return_dtype=pl.Int64,
    )  # fmt: skip
    open_days = business_days(
        since.dt.date(), pl.lit(as_of.date()), pl.col("legal_entity"), entities, config
    )
    frame = frame.with_columns(
        to_reporting(pl.col("amount_minor"), pl.col("currency"), config).alias(
            "amount_reporting_minor"
        ),
        pl.lit(config.reporting_currency).alias("reporting_currency"),
        age.cast(pl.Int64).alias("age_days"),
        open_days.alias("business_days_open"),
        sla.alias("sla_business_days"),
    ).with_columns(
        ageing_bucket(pl.col("age_days")).alias("ageing_bucket"),
        (pl.col("business_days_open") > pl.col("sla_business_days"))
        .fill_null(False)
        .alias("sla_breached"),
    )
    return frame.select(list(BREAK_SCHEMA)).cast(BREAK_SCHEMA)  # type: ignore[arg-type]
