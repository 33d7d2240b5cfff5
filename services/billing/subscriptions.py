"""Applying gateway snapshots of a subscription so that duplicates and any delivery order end in
the same state.

Snapshots are ordered by the gateway's own time; at the same second, by how far along they are
(a later period, then a cancelled state). A cancelled subscription never comes back: gateways do
not revive one, so a stale "active" arriving after the cancellation is ignored.
"""
from datetime import datetime, timezone

STATUS_RANK = {"incomplete": 0, "active": 1, "past_due": 1, "unpaid": 1, "cancelled": 2}


def from_unix(seconds):
    return datetime.fromtimestamp(seconds, timezone.utc) if seconds else None


def to_unix(moment):
    return int(moment.timestamp()) if moment else 0


def snapshot_order(event_at, period_end, status, cancel_at_period_end):
    return (event_at, period_end or 0, STATUS_RANK[status], bool(cancel_at_period_end))


def is_newer(subscription, snapshot):
    """True when `snapshot` (gateway.subscription_updated data) should replace what we hold."""
    if subscription.status == "cancelled" and snapshot["status"] != "cancelled":
        return False
    held = snapshot_order(subscription.last_event_at, to_unix(subscription.current_period_end),
                          subscription.status, subscription.cancel_at_period_end)
    offered = snapshot_order(snapshot["gateway_event_at"], snapshot["current_period_end"], snapshot["status"],
                             snapshot["cancel_at_period_end"])
    return offered > held


def next_payment_date(subscription):
    """The current period's end while the plan is active and will renew; otherwise none."""
    if subscription.status == "active" and not subscription.cancel_at_period_end:
        return subscription.current_period_end
    return None
