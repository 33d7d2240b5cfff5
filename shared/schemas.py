"""Schema pieces reused across services' boundary schemas."""
import json

from marshmallow import Schema, ValidationError, fields, validate

from shared.emails import EMAIL_KEY_MAX_LENGTH, email_key
from shared.errors import BadRequest, ValidationFailed
from shared.events import COUNTRIES


class TrimmedEmail(fields.Email):
    """An email address; surrounding spaces (a paste from a mail client) are not an error. One whose
    comparison key (shared.emails) would not fit where keys are kept is not a valid address."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str):
            value = value.strip()
        value = super()._deserialize(value, attr, data, **kwargs)
        if len(email_key(value)) > EMAIL_KEY_MAX_LENGTH:
            raise self.make_error("invalid")
        return value


class TrimmedString(fields.String):
    """Text whose surrounding spaces are dropped before validation ("   " is then empty)."""

    def _deserialize(self, value, attr, data, **kwargs):
        return super()._deserialize(value, attr, data, **kwargs).strip()


class Principal(Schema):
    """The signed-in user as gateway_http hands it to services (identity.authenticate_session's, maybe cached)."""

    id = fields.String(required=True)
    email = fields.Email(required=True)
    name = fields.String(required=True)
    country = fields.String(required=True, validate=validate.OneOf(COUNTRIES))
    created_at = fields.String()


NUL_REFUSED = "Must not contain the NUL character."


def fields_with_nul(data):
    """Top-level fields whose value holds a NUL character somewhere: valid JSON, but PostgreSQL's
    text cannot store it, so it is refused at the boundary (422) instead of failing in a query (500)."""
    def holds_nul(value):
        if isinstance(value, str):
            return "\x00" in value
        if isinstance(value, dict):
            return any(holds_nul(key) or holds_nul(item) for key, item in value.items())
        if isinstance(value, (list, tuple)):
            return any(holds_nul(item) for item in value)
        return False

    if isinstance(data, dict):
        return sorted(str(key) for key, value in data.items() if holds_nul(key) or holds_nul(value))
    return ["_schema"] if holds_nul(data) else []


def load_or_raise(schema, data):
    """schema.load, with marshmallow's errors turned into the shared ValidationFailed (422)."""
    refused = fields_with_nul(data)
    if refused:
        raise ValidationFailed(details={name: [NUL_REFUSED] for name in refused})
    try:
        return schema.load(data)
    except ValidationError as err:
        details = err.messages if isinstance(err.messages, dict) else {"_schema": err.messages}
        raise ValidationFailed(details=details) from None


def malformed_json(position=None):
    """The error for a body that is not JSON (or not UTF-8), with where parsing stopped if known."""
    return BadRequest("The body is not valid JSON.", details={"position": position}, code="MALFORMED_JSON")


def parse_json(raw):
    """A JSON body (bytes or text) -> its value; {} for an empty body; BadRequest MALFORMED_JSON."""
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise malformed_json(getattr(exc, "pos", None)) from None
