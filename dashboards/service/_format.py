"""Display of money (integer minor units with their currency) and of times, for every page."""

from __future__ import annotations

from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal

import polars as pl

from store import from_minor


def money(minor: int | None, currency: str | None) -> str:
    """``123456, "EUR"`` -> ``"1,234.56 EUR"``; an unknown amount is an empty string."""
    if minor is None:
        return ""
    if not currency:
        return f"{minor:,} (minor units, no currency)"
    try:
        major = from_minor(int(minor), currency)
    except ValueError:
        return f"{minor:,} {currency} (minor units)"
    return f"{major:,} {currency}"


_SCALES = ((Decimal(10**9), "B"), (Decimal(10**6), "M"))


def money_short(minor: int | None, currency: str | None) -> str:
    """Money for a tile: millions and billions with two decimals (``"16.78M USD"``), else as
    ``money``. A tile is a glance; the exact amount goes in its tooltip."""
    if minor is None or not currency:
        return money(minor, currency)
    try:
        major = from_minor(int(minor), currency)
    except ValueError:
        return money(minor, currency)
    for size, suffix in _SCALES:
        if abs(major) >= size:
            short = (major / size).quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN)
            return f"{short:,}{suffix} {currency}"
    return money(minor, currency)


def money_column(frame: pl.DataFrame, minor: str, currency: str, alias: str) -> pl.DataFrame:
    """Add a display column of an amount with its currency (for the rows a page shows)."""
    values = [money(m, c) for m, c in frame.select(minor, currency).iter_rows()]
    return frame.with_columns(pl.Series(alias, values, pl.String()))


def when(at: datetime | None) -> str:
    """A UTC time as ``2026-06-30 12:00 UTC``; unknown is an empty string."""
    if at is None:
        return ""
    return at.strftime("%Y-%m-%d %H:%M UTC")
