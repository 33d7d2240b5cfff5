"""Every event payload that crosses RabbitMQ, as a marshmallow schema.

Events are past-tense facts published by the service that owns the fact, on the nameko exchange
`<service>.events` with the event type as routing key. Each payload carries `event_id` (the
consumer's inbox key: a redelivery has the same id) and `occurred_at`.
"""
from marshmallow import Schema, fields, validate

ROLES = ("owner", "super_admin", "admin", "standard")
COUNTRIES = ("US", "IN")


class EventSchema(Schema):
    event_id = fields.String(required=True)
    occurred_at = fields.String(required=True)  # RFC 3339 UTC


# identity
class UserSignedUp(EventSchema):
    user_id = fields.String(required=True)
    email = fields.Email(required=True)
    name = fields.String(required=True)
    country = fields.String(required=True, validate=validate.OneOf(COUNTRIES))
    pending_plan_code = fields.String(allow_none=True, load_default=None)


# orgs
class OrgCreated(EventSchema):
    org_id = fields.String(required=True)
    name = fields.String(required=True)
    country = fields.String(required=True, validate=validate.OneOf(COUNTRIES))
    owner_id = fields.String(required=True)


class MemberJoined(EventSchema):
    org_id = fields.String(required=True)
    user_id = fields.String(required=True)
    role = fields.String(required=True, validate=validate.OneOf(ROLES))


class MemberRoleChanged(EventSchema):
    org_id = fields.String(required=True)
    user_id = fields.String(required=True)
    old_role = fields.String(required=True, validate=validate.OneOf(ROLES))
    new_role = fields.String(required=True, validate=validate.OneOf(ROLES))
    changed_by = fields.String(required=True)


class MemberRemoved(EventSchema):
    org_id = fields.String(required=True)
    user_id = fields.String(required=True)
    role = fields.String(required=True, validate=validate.OneOf(ROLES))
    removed_by = fields.String(required=True)


EVENT_SCHEMAS = {
    "user.signed_up": UserSignedUp(),
    "org.created": OrgCreated(),
    "member.joined": MemberJoined(),
    "member.role_changed": MemberRoleChanged(),
    "member.removed": MemberRemoved(),
}


class InvalidEvent(ValueError):
    """A service tried to publish a payload its schema refuses: a bug, never user input."""


def validate_event(event_type, payload):
    schema = EVENT_SCHEMAS.get(event_type)
    if schema is None:
        raise InvalidEvent(f"no schema for event type {event_type!r}")
    errors = schema.validate(payload)
    if errors:
        raise InvalidEvent(f"{event_type}: {errors}")
    return payload
