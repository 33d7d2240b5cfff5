"""Schemas of the HTTP layer itself (errors, health, composed answers); the rest come from services."""
from marshmallow import Schema, fields

from services.identity.schemas import PendingPlanOut, UserOut


class ErrorBody(Schema):
    code = fields.String(required=True)
    message = fields.String(required=True)
    details = fields.Dict(required=True)


class ErrorResponse(Schema):
    error = fields.Nested(ErrorBody, required=True)


class Health(Schema):
    status = fields.String(required=True)
    services = fields.Dict(keys=fields.String(), values=fields.String(), required=True)


class MyOrgBrief(Schema):
    id = fields.String(required=True)
    name = fields.String(required=True)
    role = fields.String(required=True)


class MeOut(Schema):
    user = fields.Nested(UserOut, required=True)
    pending_plan = fields.Nested(PendingPlanOut, allow_none=True, required=True)
    organizations = fields.List(fields.Nested(MyOrgBrief), required=True)

