"""Billing-period arithmetic: calendar intervals and proration, all in integers.

Months are calendar months in UTC, clamped to the month's last day (Jan 31 + 1 month = Feb 28),
which is how Stripe anchors periods (sandbox_kit.periods). Money stays in integer minor units:
proration rounds half up with integer arithmetic, never through floats.
"""
from datetime import datetime, timezone

from services.sandbox_kit import periods

INTERVALS = ("day", "week", "month", "year")


def add_interval(timestamp: int, interval: str, count: int = 1) -> int:
    moment = datetime.fromtimestamp(timestamp, tz=timezone.utc)
    return int(periods.add_interval(moment, interval, count).timestamp())


def prorate(amount: int, remaining_seconds: int, period_seconds: int) -> int:
    """`amount` x remaining/period, rounded half away from zero to whole minor units."""
    if period_seconds <= 0:
        return 0
    remaining_seconds = max(0, min(remaining_seconds, period_seconds))
    magnitude = (abs(amount) * remaining_seconds * 2 + period_seconds) // (2 * period_seconds)
    return magnitude if amount >= 0 else -magnitude


def format_date(timestamp: int) -> str:
    """'26 Jul 2024', as Stripe writes dates in proration line descriptions."""
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).strftime("%-d %b %Y")
