"""Billing periods: a month or a year after a moment, as gateways count them."""
import calendar
from datetime import datetime


def add_interval(moment: datetime, interval: str, count: int = 1) -> datetime:
    """`moment` plus `count` months or years; the 31st of a shorter month becomes its last day."""
    months = count * {"month": 1, "year": 12}[interval]
    month_index = moment.month - 1 + months
    year, month = moment.year + month_index // 12, month_index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)
