"""Money conversions: exact, refusing floats and sub-minor precision."""

from __future__ import annotations

from decimal import Decimal

import pytest

from store import currency_exponent, from_minor, round_minor, to_minor


@pytest.mark.parametrize(
    ("amount", "currency", "minor"),
    [
        (Decimal("125000.00"), "USD", 12_500_000),
        ("0.01", "gbp", 1),
        (Decimal("-19.99"), "EUR", -1999),
        (Decimal("1500"), "JPY", 1500),
        (Decimal("1.234"), "KWD", 1234),
        (0, "USD", 0),
    ],
)
def test_to_minor_and_back_is_exact(amount: object, currency: str, minor: int) -> None:
    assert to_minor(amount, currency) == minor  # type: ignore[arg-type]
    assert from_minor(minor, currency) == Decimal(str(amount))


def test_from_minor_keeps_the_currency_scale() -> None:
    assert str(from_minor(100, "USD")) == "1.00"
    assert str(from_minor(100, "JPY")) == "100"


@pytest.mark.parametrize(
    ("amount", "currency", "error"),
    [
        (Decimal("0.001"), "USD", ValueError),
        (Decimal("1.5"), "JPY", ValueError),
        (1.1, "USD", TypeError),
        (Decimal("1"), "US", ValueError),
        (Decimal("1"), "US$", ValueError),
    ],
)
def test_to_minor_refuses_what_it_cannot_represent_exactly(
    amount: object, currency: str, error: type[Exception]
) -> None:
    with pytest.raises(error):
        to_minor(amount, currency)  # type: ignore[arg-type]


def test_currency_exponents_follow_iso_4217() -> None:
    assert [currency_exponent(c) for c in ("USD", "GBP", "EUR", "JPY", "BHD")] == [2, 2, 2, 0, 3]


@pytest.mark.parametrize(
    ("value", "rounded"),
    [(Decimal("2.5"), 2), (Decimal("3.5"), 4), (Decimal("-2.5"), -2), (Decimal("7.49"), 7)],
)
def test_round_minor_rounds_half_to_even(value: Decimal, rounded: int) -> None:
    assert round_minor(value) == rounded
