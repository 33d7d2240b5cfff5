"""Schema pieces reused across services' boundary schemas."""
from marshmallow import Schema, ValidationError, fields, validate

from shared.errors import ValidationFailed
from shared.events import COUNTRIES


class TrimmedEmail(fields.Email):
    """An email address; surrounding spaces (a paste from a mail client) are not an error."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str):
            value = value.strip()
        return super()._deserialize(value, attr, data, **kwargs)


class TrimmedString(fields.String):
    """Text whose surrounding spaces are dropped before validation ("   " is then empty)."""

    def _deserialize(self, value, attr, data, **kwargs):
        return super()._deserialize(value, attr, data, **kwargs).strip()


class Principal(Schema):
    """The signed-in user as gateway_http hands it to services (from identity.authenticate)."""

    id = fields.String(required=True)
    email = fields.Email(required=True)
    name = fields.String(required=True)
    country = fields.String(required=True, validate=validate.OneOf(COUNTRIES))
    created_at = fields.String()


def load_or_raise(schema, data):
    """schema.load, with marshmallow's errors turned into the shared ValidationFailed (422)."""
    try:
        return schema.load(data)
    except ValidationError as err:
        details = err.messages if isinstance(err.messages, dict) else {"_schema": err.messages}
        raise ValidationFailed(details=details) from None
