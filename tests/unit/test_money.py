from decimal import Decimal

import pytest

from shared.money import CurrencyMismatch, Money


@pytest.mark.parametrize("major, currency, minor", [
    ("19.00", "usd", 1900), ("0.01", "usd", 1), (Decimal("1499"), "INR", 149900), (7, "inr", 700),
])
def test_from_major_gives_integer_minor_units(major, currency, minor):
    assert Money.from_major(major, currency) == Money(minor, currency.lower())


def test_floats_are_refused_everywhere():
    with pytest.raises(TypeError):
        Money.from_major(19.99, "usd")
    with pytest.raises(TypeError):
        Money(19.99, "usd")


def test_more_precision_than_the_currency_has_is_refused():
    with pytest.raises(ValueError):
        Money.from_major("1.005", "usd")


def test_unknown_currency_is_refused():
    with pytest.raises(ValueError):
        Money(100, "eur")


def test_arithmetic_keeps_the_currency_and_refuses_mixing():
    assert Money(1900, "usd") - Money(400, "usd") == Money(1500, "usd")
    assert -Money(5, "inr") == Money(-5, "inr")
    with pytest.raises(CurrencyMismatch):
        Money(1900, "usd") + Money(1900, "inr")


@pytest.mark.parametrize("numerator, denominator, expected", [
    (15, 30, 950), (1, 3, 633), (2, 3, 1267), (0, 30, 0), (30, 30, 1900),
])
def test_prorate_rounds_half_up_to_a_whole_minor_unit(numerator, denominator, expected):
    assert Money(1900, "usd").prorate(numerator, denominator) == Money(expected, "usd")


def test_format_for_people():
    assert Money(149900, "inr").format() == "₹1,499.00"
    assert Money(-1234, "usd").format() == "-$12.34"


def test_major_units_round_trip_exactly():
    assert str(Money(149950, "inr").to_major()) == "1499.50"
    assert Money.from_major(Money(1, "usd").to_major(), "usd") == Money(1, "usd")
