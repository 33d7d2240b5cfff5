"""What a usage report is allowed to be: the checks one report passes before it is recorded.

Why not marshmallow per report: a batch has up to 1000 reports and must be answered in a few
milliseconds; a marshmallow load costs tens of microseconds per report (nested schema, error
dicts), more than the whole batch's INSERT. And a bad report must not fail the batch: it is
listed in `rejected` with one short machine reason, which check_report returns directly.
schemas.UsageEventInput documents the same rules for OpenAPI.
"""
import os
import re
from datetime import datetime, timedelta

from services.usage.metrics import BIGINT_MAX, METRICS
from shared.permissions import ACCOUNT_KINDS

DEFAULT_RAW_RETENTION_DAYS = 35
FUTURE_TOLERANCE = timedelta(minutes=5)  # senders' clocks drift a little; more than this is a bug
MAX_ID_LENGTH = 200
MAX_ACCOUNT_ID_LENGTH = 100

_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})\Z")


def raw_retention_days():
    """USAGE_RAW_RETENTION_DAYS (default 35): how long raw reports are kept, and how old one may be.

    Read here rather than in shared.config, which this service does not own; read per call so a
    change needs no restart of anything but the environment.
    """
    try:
        return max(1, int(os.environ.get("USAGE_RAW_RETENTION_DAYS") or DEFAULT_RAW_RETENTION_DAYS))
    except ValueError:
        return DEFAULT_RAW_RETENTION_DAYS


def parse_rfc3339(text):
    """An aware datetime for an RFC 3339 timestamp (Z or an offset), or None."""
    if not isinstance(text, str) or not _RFC3339.match(text):
        return None
    try:
        return datetime.fromisoformat(text.upper().replace(" ", "T"))
    except ValueError:  # 2024-02-30, 25:00, ...
        return None


def check_report(event, now, oldest):
    """(row for usage_events, None) for a good report, (None, reason) for a bad one."""
    if not isinstance(event, dict):
        return None, "bad_event"
    event_id = event.get("id")
    if event_id is None or event_id == "":
        return None, "missing_id"
    if not isinstance(event_id, str) or len(event_id) > MAX_ID_LENGTH or "\x00" in event_id:  # no NUL in text
        return None, "bad_id"
    account = event.get("account")
    if not isinstance(account, dict) or account.get("kind") not in ACCOUNT_KINDS:
        return None, "bad_account"
    account_id = account.get("id")
    if (not isinstance(account_id, str) or not account_id or len(account_id) > MAX_ACCOUNT_ID_LENGTH
            or "\x00" in account_id):
        return None, "bad_account"
    metric = event.get("metric")
    if not isinstance(metric, str) or metric not in METRICS:
        return None, "unknown_metric"
    value = event.get("value")
    if type(value) is not int:  # `type is`, not isinstance: True is an int to Python, not a byte count
        return None, "bad_value"
    if value < 0:
        return None, "negative_value"
    if value > BIGINT_MAX:
        return None, "value_too_large"
    moment = parse_rfc3339(event.get("timestamp"))
    if moment is None:
        return None, "bad_timestamp"
    if moment > now + FUTURE_TOLERANCE:
        return None, "future_timestamp"
    if moment < oldest:
        return None, "too_old"  # older than the raw retention: its id could no longer be deduplicated
    return {"event_id": event_id, "kind": account["kind"], "account_id": account_id, "metric": metric,
            "value": value, "occurred_at": moment}, None


def given_id(event):
    """The id a refused report was sent with, as far as it can be echoed back."""
    event_id = event.get("id") if isinstance(event, dict) else None
    return event_id if isinstance(event_id, (str, int)) and not isinstance(event_id, bool) else None
