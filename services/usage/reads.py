"""The two statements a usage read costs, whatever it shows, and the one definition of "used".

A read used to be five ORM queries (membership, account, period value, carried value, daily series),
each a round trip with its statement built anew: 3.3 ms of a read's time on this machine. It is now
two prepared text statements: the caller's membership with the account's plan projection, then,
for the period that projection gives, the metric's value and the period's daily series together.
"""
from datetime import timedelta, timezone

from sqlalchemy import text

from services.usage.periods import period_of

# One row always (the VALUES), whether or not the account or the membership are known.
ACCOUNT_AND_ROLE = text("""
    SELECT m.org_id IS NOT NULL AS member_known, m.role,
           a.account_id IS NOT NULL AS account_known, a.quota_bytes, a.interval, a.period_start, a.period_end
    FROM (VALUES (1)) AS one (x)
    LEFT JOIN usage_members m ON m.org_id = :account_id AND m.user_id = :user_id AND :kind = 'org'
    LEFT JOIN usage_accounts a ON a.kind = :kind AND a.account_id = :account_id""")

# A metric's value in the period starting at :start: its period row (one primary-key lookup); for a
# gauge with no report in the period yet, the last known level (storage does not empty itself at a
# renewal): the latest day up to the period's last, one backward index probe. The one definition of
# "used", for reads and for ingestion's threshold check alike.
_USED = """
    COALESCE(
      (SELECT value FROM period_usage
       WHERE kind = :kind AND account_id = :account_id AND metric = :metric AND period_start = :start),
      CASE WHEN :carries_over THEN
        (SELECT value FROM daily_usage
         WHERE kind = :kind AND account_id = :account_id AND metric = :metric AND day <= :last_day
         ORDER BY day DESC LIMIT 1) END,
      0)"""

USED_IN_PERIOD = text(f"SELECT {_USED} AS used")

# The value and the period's daily series, in one round trip.
USAGE_IN_PERIOD = text(f"""
    SELECT {_USED} AS used,
           (SELECT COALESCE(array_agg(day ORDER BY day), '{{}}') FROM daily_usage
            WHERE kind = :kind AND account_id = :account_id AND metric = :metric
              AND day BETWEEN :first_day AND :last_day) AS days,
           (SELECT COALESCE(array_agg(value ORDER BY day), '{{}}') FROM daily_usage
            WHERE kind = :kind AND account_id = :account_id AND metric = :metric
              AND day BETWEEN :first_day AND :last_day) AS values""")


def _period_params(kind, account_id, metric, start, end):
    return {"kind": kind, "account_id": account_id, "metric": metric.name, "start": start,
            "carries_over": metric.carries_over, "first_day": start.astimezone(timezone.utc).date(),
            "last_day": (end - timedelta(microseconds=1)).astimezone(timezone.utc).date()}


def current_value(session, kind, account_id, metric, start, end):
    """`metric`'s value in the period [start, end) (USED_IN_PERIOD)."""
    return session.scalar(USED_IN_PERIOD, _period_params(kind, account_id, metric, start, end))


def account_and_role(session, kind, account_id, user_id):
    """The row of ACCOUNT_AND_ROLE: member_known/role (org accounts only), and the plan projection
    (account_known, quota_bytes, interval, period_start, period_end; None when not known)."""
    return session.execute(ACCOUNT_AND_ROLE, {"kind": kind, "account_id": account_id, "user_id": user_id}).one()


def usage_in_period(session, kind, account_id, metric, projection, moment):
    """(start, end, used, [(day, value), ...]) of `metric` in the period of `projection` holding `moment`."""
    start, end = period_of(projection if projection.account_known else None, moment)
    row = session.execute(USAGE_IN_PERIOD, _period_params(kind, account_id, metric, start, end)).one()
    return start, end, row.used, list(zip(row.days, row.values))
