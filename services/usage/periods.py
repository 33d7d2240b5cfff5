"""An account's usage periods: shared by ingestion and reads."""
from datetime import datetime, timezone

from shared.periods import add_interval


def calendar_month(moment):
    moment = moment.astimezone(timezone.utc)
    start = datetime(moment.year, moment.month, 1, tzinfo=timezone.utc)
    return start, add_interval(start, "month")


def period_of(account, moment):
    """(start, end) of the account's period holding `moment`.

    The plan's current period as billing announced it; before or after it, periods of the plan's
    interval stepping back from its start or on from its end; without a plan, calendar months (UTC).
    """
    if account is None or account.period_start is None or account.period_end is None:
        return calendar_month(moment)
    start, end = account.period_start, account.period_end
    if start <= moment < end:
        return start, end
    anchor = (end if moment >= end else start).astimezone(timezone.utc)
    interval = account.interval if account.interval in ("month", "year") else "month"
    months = 12 if interval == "year" else 1
    moment_utc = moment.astimezone(timezone.utc)
    step = ((moment_utc.year - anchor.year) * 12 + moment_utc.month - anchor.month) // months
    while add_interval(anchor, interval, step) > moment:
        step -= 1
    while add_interval(anchor, interval, step + 1) <= moment:
        step += 1
    return add_interval(anchor, interval, step), add_interval(anchor, interval, step + 1)
