"""usage's boundary: the ingestion envelope (gateway_http validates with it; OpenAPI shows it).

The envelope checks only its shape: a list of at most 1000 objects. Each event is checked by
service.validate_event, by hand and in bulk: one bad event is reported in `rejected` and must not
fail the whole request, and 1000 marshmallow loads would cost more than the batch's insert.
UsageEventInput documents an event for OpenAPI.
"""
from marshmallow import Schema, fields, validate

from services.usage.metrics import METRICS
from shared.events import AccountRef

MAX_EVENTS_PER_REQUEST = 1000
TOO_MANY_EVENTS = "At most 1000 events per request."


class UsageEventInput(Schema):
    id = fields.String(required=True, validate=validate.Length(min=1, max=200),
                       metadata={"description": "The sender's idempotency key: the same id twice counts once."})
    account = fields.Nested(AccountRef, required=True)
    metric = fields.String(required=True, validate=validate.OneOf(tuple(METRICS)))
    value = fields.Integer(required=True, strict=True, validate=validate.Range(min=0, max=2 ** 63 - 1))
    timestamp = fields.String(required=True, metadata={"format": "date-time",
                                                       "description": "RFC 3339, Z or an offset."})


class UsageBatchInput(Schema):
    """What POST /api/v1/usage/events takes, for the OpenAPI document: the usage service itself checks
    the list and each event (fast, and naming each refused event rather than failing the batch)."""

    events = fields.List(fields.Nested(UsageEventInput), required=True,
                         validate=validate.Length(max=MAX_EVENTS_PER_REQUEST))


class RejectedEvent(Schema):
    id = fields.Raw(allow_none=True)
    reason = fields.String(required=True)


class UsageBatchOut(Schema):
    accepted = fields.Integer(required=True)
    duplicates = fields.Integer(required=True)
    rejected = fields.List(fields.Nested(RejectedEvent), required=True)


class DailyUsageOut(Schema):
    date = fields.String(required=True)
    used_bytes = fields.Integer(required=True)


class UsageOut(Schema):
    period_start = fields.String(required=True)
    period_end = fields.String(required=True)
    used_bytes = fields.Integer(required=True)
    quota_bytes = fields.Integer(allow_none=True)
    percent = fields.Float(allow_none=True)
    daily = fields.List(fields.Nested(DailyUsageOut), required=True)
    over_quota = fields.Boolean(required=True)
