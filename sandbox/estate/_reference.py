"""Reference data of the firm: legal entities, payment terms, holiday calendars, FX rates, id encoders."""

from __future__ import annotations

import zlib
from datetime import date, timedelta

import numpy as np
import polars as pl

from sandbox.estate.schema import RATE

US = 1_000_000
"""Microseconds per second: every instant in the generator is int64 microseconds since epoch."""
MINUTE = 60 * US
HOUR = 3600 * US
DAY = 86_400 * US

LEGAL_ENTITIES = pl.DataFrame(
    {
        "code": ["US01", "UK01", "DE01"],
        "name": [
            "Northwind Consulting Inc.",
            "Northwind Consulting Ltd",
            "Northwind Beratung GmbH",
        ],
        "country": ["US", "GB", "DE"],
        "currency": ["USD", "GBP", "EUR"],
        "netsuite_subsidiary_id": ["1", "2", "3"],
        "netsuite_currency_id": ["1", "2", "3"],
        "holiday_calendar": ["US", "GB", "DE"],
    }
)
CURRENCIES = ("USD", "GBP", "EUR")

PAYMENT_TERMS = pl.DataFrame(
    {
        "name": ["Net 30", "Net 45", "Net 60"],
        "days": [30, 45, 60],
        "netsuite_term_id": ["1", "2", "3"],
    },
    schema={"name": pl.Utf8, "days": pl.Int32, "netsuite_term_id": pl.Utf8},
)


def rng_for(seed: int, name: str) -> np.random.Generator:
    """An independent, named random stream: adding a stream never shifts the others."""
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def _easter(year: int) -> date:
    # Anonymous Gregorian algorithm (Meeus/Jones/Butcher).
    a, b, c = year % 19, year // 100, year % 100
    d, e = b // 4, b % 4
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = c // 4, c % 4
    l_ = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * l_) // 451
    month = (h + l_ - 7 * m + 114) // 31
    day = (h + l_ - 7 * m + 114) % 31 + 1
    return date(year, month, day)


def _nth_weekday(year: int, month: int, weekday: int, n: int) -> date:
    """n-th (1-based; -1 = last) weekday (Mon=0) of a month."""
    if n > 0:
        first = date(year, month, 1)
        return first + timedelta(days=(weekday - first.weekday()) % 7 + 7 * (n - 1))
    nxt = date(year + (month == 12), month % 12 + 1, 1)
    last = nxt - timedelta(days=1)
    return last - timedelta(days=(last.weekday() - weekday) % 7)


def holidays(first_year: int, last_year: int) -> pl.DataFrame:
    """Public holidays of the three calendars (no weekend substitution)."""
    rows: list[tuple[str, date, str]] = []
    for y in range(first_year, last_year + 1):
        easter = _easter(y)
        rows += [
            ("US", date(y, 1, 1), "New Year's Day"),
            ("US", _nth_weekday(y, 1, 0, 3), "Martin Luther King Jr. Day"),
            ("US", _nth_weekday(y, 5, 0, -1), "Memorial Day"),
            ("US", date(y, 7, 4), "Independence Day"),
            ("US", _nth_weekday(y, 9, 0, 1), "Labor Day"),
            ("US", _nth_weekday(y, 11, 3, 4), "Thanksgiving Day"),
            ("US", date(y, 12, 25), "Christmas Day"),
            ("GB", date(y, 1, 1), "New Year's Day"),
            ("GB", easter - timedelta(days=2), "Good Friday"),
            ("GB", easter + timedelta(days=1), "Easter Monday"),
            ("GB", _nth_weekday(y, 5, 0, 1), "Early May Bank Holiday"),
            ("GB", _nth_weekday(y, 5, 0, -1), "Spring Bank Holiday"),
            ("GB", _nth_weekday(y, 8, 0, -1), "Summer Bank Holiday"),
            ("GB", date(y, 12, 25), "Christmas Day"),
            ("GB", date(y, 12, 26), "Boxing Day"),
            ("DE", date(y, 1, 1), "Neujahr"),
            ("DE", easter - timedelta(days=2), "Karfreitag"),
            ("DE", easter + timedelta(days=1), "Ostermontag"),
            ("DE", date(y, 5, 1), "Tag der Arbeit"),
            ("DE", easter + timedelta(days=39), "Christi Himmelfahrt"),
            ("DE", easter + timedelta(days=50), "Pfingstmontag"),
            ("DE", date(y, 10, 3), "Tag der Deutschen Einheit"),
            ("DE", date(y, 12, 25), "1. Weihnachtstag"),
            ("DE", date(y, 12, 26), "2. Weihnachtstag"),
        ]
    rows.sort()
    return pl.DataFrame(
        {
            "calendar": [r[0] for r in rows],
            "date": [r[1] for r in rows],
            "name": [r[2] for r in rows],
        },
        schema={"calendar": pl.Utf8, "date": pl.Date, "name": pl.Utf8},
    )


def fx_table(seed: int, first: date, last: date) -> pl.DataFrame:
    """Daily USD-per-unit rates for GBP and EUR: a seeded random walk around realistic levels."""
    rng = rng_for(seed, "fx")
    days = (last - first).days + 1
    dates = pl.date_range(first, last, "1d", eager=True)
    frames = []
    for cur, level in (("GBP", 1.27), ("EUR", 1.09)):
        walk = np.cumsum(rng.normal(0.0, 0.004, days))
        micro = np.round(level * np.exp(walk) * 1_000_000).astype(np.int64)
        frames.append(
            pl.DataFrame({"date": dates, "currency": [cur] * days, "micro": micro}).select(
                "date",
                "currency",
                (pl.col("micro").cast(pl.Decimal(24, 6)) / 1_000_000)
                .cast(RATE)
                .alias("usd_per_unit"),
            )
        )
    return pl.concat(frames).sort("date", "currency")


def busday_add(
    days: np.ndarray, n: np.ndarray, entity: np.ndarray, hol: pl.DataFrame
) -> np.ndarray:
    """`days` (int days since epoch) plus `n` business days of each row's entity calendar."""
    out = np.empty_like(days)
    for i, cal in enumerate(LEGAL_ENTITIES["holiday_calendar"]):
        mask = entity == i
        if not mask.any():
            continue
        h = hol.filter(pl.col("calendar") == cal)["date"].to_numpy().astype("datetime64[D]")
        d = days[mask].astype("datetime64[D]")
        out[mask] = np.busday_offset(d, n[mask], roll="forward", holidays=h).astype(np.int64)
    return out


# --- ids ----------------------------------------------------------------------------------------

_B62 = np.frombuffer(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", np.uint8)
_B36 = _B62[:36]


def _encode(nums: np.ndarray, alphabet: np.ndarray, width: int, prefix: str) -> pl.Series:
    nums = nums.astype(np.uint64)
    base = np.uint64(len(alphabet))
    pre = np.frombuffer(prefix.encode(), np.uint8)
    mat = np.empty((len(nums), len(pre) + width), np.uint8)
    mat[:, : len(pre)] = pre
    rest = nums.copy()
    for j in range(width - 1, -1, -1):
        mat[:, len(pre) + j] = alphabet[(rest % base).astype(np.intp)]
        rest //= base
    raw = mat.view(f"S{mat.shape[1]}").ravel()
    return pl.Series(raw, dtype=pl.Binary).cast(pl.Utf8)


def salesforce_ids(key_prefix: str, seq: np.ndarray) -> pl.Series:
    """18-character Salesforce ids: key prefix, pod, then a base-36 sequence."""
    return _encode(seq, _B36, 10, key_prefix + "8d000")


def _splitmix(x: np.ndarray) -> np.ndarray:
    # A bijection on uint64: distinct inputs give distinct, random-looking outputs.
    z = x.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def stripe_ids(prefix: str, seq: np.ndarray, salt: int) -> pl.Series:
    """Stripe-looking ids (`in_1P...`): unique per (salt, seq), random-looking."""
    mixed = _splitmix((np.uint64(salt) << np.uint64(40)) | seq.astype(np.uint64))
    return _encode(mixed, _B62, 11, prefix + "_1Q")


def numeric_ids(start: int, n: int) -> pl.Series:
    """Kantata and NetSuite style ids: decimal strings."""
    return pl.Series(np.arange(start, start + n, dtype=np.int64)).cast(pl.Utf8)
