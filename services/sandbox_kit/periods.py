"""Calendar arithmetic both gateways bill by: a moment plus days, weeks, months or years.

Months are calendar months in the moment's own time zone (Stripe anchors in UTC, Cashfree in
IST), clamped to the month's last day (Jan 31 + 1 month = Feb 28); a year is twelve months.
"""
import calendar
from datetime import datetime, timedelta


def add_interval(moment: datetime, interval: str, count: int = 1) -> datetime:
    """`moment` plus `count` intervals: "day", "week", "month" or "year" (anything else counts as a month)."""
    if interval == "day":
        return moment + timedelta(days=count)
    if interval == "week":
        return moment + timedelta(weeks=count)
    months = count * (12 if interval == "year" else 1)
    year, month_index = divmod(moment.month - 1 + months, 12)
    year += moment.year
    day = min(moment.day, calendar.monthrange(year, month_index + 1)[1])
    return moment.replace(year=year, month=month_index + 1, day=day)
