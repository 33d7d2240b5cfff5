"""billing's boundary schemas."""
from marshmallow import Schema, fields


class PlanOut(Schema):
    code = fields.String(required=True)
    name = fields.String(required=True)
    interval = fields.String(required=True)
    amount = fields.Integer(required=True)
    currency = fields.String(required=True)
    data_quota_bytes = fields.Integer(required=True)
    features = fields.List(fields.String(), required=True)


class PlanList(Schema):
    items = fields.List(fields.Nested(PlanOut), required=True)
