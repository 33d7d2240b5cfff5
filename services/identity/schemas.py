"""identity's boundary: what its RPCs accept and return (gateway_http validates with these too)."""
import phonenumbers
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from shared.events import COUNTRIES, COUNTRIES_NEEDING_PHONE
from shared.schemas import TrimmedEmail, TrimmedString

MIN_PASSWORD_LENGTH = 10
PHONE_NEEDED = "Required for India: the payment gateway needs the payer's phone."


class PhoneNumber(fields.String):
    """A phone number in international format (any spacing: "+91 98123 45678"), loaded as E.164
    ("+919812345678") once libphonenumber knows it for a valid number of its country."""

    default_error_messages = {
        "international": "Use the international format with the country code, e.g. +919812345678.",
        "invalid_number": "Not a valid phone number.",
    }

    def __init__(self, **kwargs):
        kwargs.setdefault("metadata", {"description": "International format; stored as E.164",
                                       "example": "+919812345678"})
        super().__init__(**kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs).strip()
        if not text.startswith("+"):  # a national number means nothing without its country
            raise self.make_error("international")
        try:
            number = phonenumbers.parse(text, None)
        except phonenumbers.NumberParseException:
            raise self.make_error("invalid_number") from None
        if not phonenumbers.is_valid_number(number):
            raise self.make_error("invalid_number")
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


class SignupInput(Schema):
    email = TrimmedEmail(required=True, validate=validate.Length(max=320))
    password = fields.String(required=True, validate=validate.Length(min=MIN_PASSWORD_LENGTH, max=1024))
    name = TrimmedString(required=True, validate=validate.Length(min=1, max=200))
    country = fields.String(required=True, validate=validate.OneOf(COUNTRIES))
    phone = PhoneNumber(load_default=None, allow_none=True)
    plan = fields.String(load_default=None, allow_none=True, validate=validate.Length(min=1, max=64))

    @validates_schema
    def phone_where_the_gateway_needs_one(self, data, **kwargs):
        if data.get("country") in COUNTRIES_NEEDING_PHONE and data.get("phone") is None:
            raise ValidationError(PHONE_NEEDED, "phone")


class UpdateMeInput(Schema):
    """PATCH /me: what a user may change about themself (the country decides the gateway and stays)."""

    name = TrimmedString(validate=validate.Length(min=1, max=200))
    phone = PhoneNumber(allow_none=True)  # null removes it

    @validates_schema
    def something_to_change(self, data, **kwargs):
        if not data:
            raise ValidationError("Send name or phone.", "_schema")


class LoginInput(Schema):
    # No format rules here: a login must not tell which part of the pair was wrong.
    email = fields.String(required=True, validate=validate.Length(max=320))
    password = fields.String(required=True, validate=validate.Length(max=1024))


class UserOut(Schema):
    id = fields.String(required=True)
    email = fields.String(required=True)
    name = fields.String(required=True)
    country = fields.String(required=True)
    phone = fields.String(required=True, allow_none=True)  # E.164
    created_at = fields.String(required=True)


class PendingPlanOut(Schema):
    code = fields.String(required=True)
    name = fields.String(required=True)


class SignupOut(Schema):
    token = fields.String(required=True)
    user = fields.Nested(UserOut, required=True)
    pending_plan = fields.Nested(PendingPlanOut, allow_none=True, required=True)


class LoginOut(Schema):
    token = fields.String(required=True)
    user = fields.Nested(UserOut, required=True)


class UpdatedMeOut(Schema):
    user = fields.Nested(UserOut, required=True)
