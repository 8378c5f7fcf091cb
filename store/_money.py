"""Money as integer minor units with an ISO 4217 currency: exact on every backend and in polars."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

# Minor-unit exponents of ISO 4217. Currencies not listed use 2, the overwhelmingly common case;
# the exceptions matter because a wrong exponent scales an amount by 100.
_EXPONENT_EXCEPTIONS: dict[str, int] = {
    "BHD": 3, "BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "IQD": 3, "ISK": 0, "JOD": 3, "JPY": 0,
    "KMF": 0, "KRW": 0, "KWD": 3, "LYD": 3, "OMR": 3, "PYG": 0, "RWF": 0, "TND": 3, "UGX": 0,
    "UYI": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
}  # fmt: skip


def currency_exponent(currency: str) -> int:
    """Number of decimal places of the currency's minor unit (USD 2, JPY 0, KWD 3)."""
    code = normalize_currency(currency)
    return _EXPONENT_EXCEPTIONS.get(code, 2)


def normalize_currency(currency: str) -> str:
    """Upper-case ISO code; raises ValueError for anything that is not three letters."""
    code = currency.strip().upper()
    if len(code) != 3 or not code.isalpha():
        raise ValueError(f"not an ISO 4217 currency code: {currency!r}")
    return code


def to_minor(amount: Decimal | int | str, currency: str) -> int:
    """Convert a major-unit amount to integer minor units; refuses sub-minor precision.

    Floats are refused on purpose: by the time a float exists the cents may already be wrong.
    """
    if isinstance(amount, float):
        raise TypeError("money must not be a float; pass Decimal, int or str")
    value = Decimal(amount)
    scaled = value.scaleb(currency_exponent(currency))
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{amount} {currency} has more precision than the currency's minor unit")
    return int(scaled)


def from_minor(minor: int, currency: str) -> Decimal:
    """Integer minor units back to a Decimal in major units, quantized to the currency."""
    exponent = currency_exponent(currency)
    return Decimal(minor).scaleb(-exponent).quantize(Decimal(1).scaleb(-exponent))


def round_minor(value: Decimal) -> int:
    """Round a fractional minor-unit amount (hours x rate) to whole minor units, half to even."""
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
