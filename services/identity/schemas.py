"""identity's boundary: what its RPCs accept and return (gateway_http validates with these too)."""
from marshmallow import Schema, fields, validate

from shared.events import COUNTRIES
from shared.schemas import TrimmedEmail, TrimmedString

MIN_PASSWORD_LENGTH = 10


class SignupInput(Schema):
    email = TrimmedEmail(required=True, validate=validate.Length(max=320))
    password = fields.String(required=True, validate=validate.Length(min=MIN_PASSWORD_LENGTH, max=1024))
    name = TrimmedString(required=True, validate=validate.Length(min=1, max=200))
    country = fields.String(required=True, validate=validate.OneOf(COUNTRIES))
    plan = fields.String(load_default=None, allow_none=True, validate=validate.Length(min=1, max=64))


class LoginInput(Schema):
    # No format rules here: a login must not tell which part of the pair was wrong.
    email = fields.String(required=True, validate=validate.Length(max=320))
    password = fields.String(required=True, validate=validate.Length(max=1024))


class UserOut(Schema):
    id = fields.String(required=True)
    email = fields.String(required=True)
    name = fields.String(required=True)
    country = fields.String(required=True)
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
