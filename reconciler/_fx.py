"""Conversion of minor-unit amounts to the reporting currency, exactly, with the config's FX table."""

from __future__ import annotations

from decimal import Decimal

import polars as pl

from reconciler._config import ReconcileConfig
from store import currency_exponent

_RATE = pl.Decimal(38, 12)


def minor_rates(config: ReconcileConfig) -> dict[str, Decimal]:
    """Reporting-currency minor units per minor unit of each currency (exponents folded in)."""
    target = currency_exponent(config.reporting_currency)
    return {
        code: (rate * Decimal(10) ** (target - currency_exponent(code))).quantize(Decimal("1e-12"))
        for code, rate in config.fx_rates.items()
    }


def to_reporting(amount: pl.Expr, currency: pl.Expr, config: ReconcileConfig) -> pl.Expr:
    """``amount`` (Int64 minor units in ``currency``) in reporting minor units, half-even rounded.

    Null when the amount is null or the currency has no rate. Decimal arithmetic: no float ever
    touches the money.
    """
    rates = minor_rates(config)
    rate = currency.str.to_uppercase().replace_strict(
        list(rates), [str(v) for v in rates.values()], default=None, return_dtype=pl.String()
    )
    return (amount.cast(pl.Decimal(38, 0)) * rate.cast(_RATE)).round(0).cast(pl.Int64)
