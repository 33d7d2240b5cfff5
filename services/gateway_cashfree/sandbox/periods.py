"""Times as Cashfree writes them, and the calendar arithmetic of a PERIODIC plan.

Cashfree answers in Indian Standard Time (`2025-01-31T10:00:00+05:30`); months are calendar
months in IST, clamped to the month's last day (Jan 31 + 1 month = Feb 28; sandbox_kit.periods).
"""
from datetime import datetime, timedelta, timezone
from typing import Optional

from services.sandbox_kit import periods

IST = timezone(timedelta(hours=5, minutes=30))
INTERVAL_TYPES = ("DAY", "WEEK", "MONTH", "YEAR")


def iso(timestamp: float) -> str:
    return datetime.fromtimestamp(int(timestamp), tz=IST).isoformat(timespec="seconds")


def parse(text: str) -> Optional[float]:
    """A timestamp from RFC 3339 / ISO 8601 text (`T` or space; offset or Z); None if it is not one."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=IST)  # Cashfree reads offset-less times as IST
    return moment.timestamp()


def add_interval(timestamp: float, interval_type: str, count: int = 1) -> float:
    moment = datetime.fromtimestamp(int(timestamp), tz=IST)
    return periods.add_interval(moment, interval_type.lower(), count).timestamp()
