"""billing's boundary schemas (gateway_http validates requests and shapes answers with these)."""
from marshmallow import Schema, ValidationError, fields, validate, validates_schema


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


class QuoteInput(Schema):
    plan_code = fields.String(required=True, validate=validate.Length(min=1, max=64))


class CheckoutInput(Schema):
    quote_id = fields.String(validate=validate.Length(min=1, max=64))
    plan_code = fields.String(validate=validate.Length(min=1, max=64))

    @validates_schema
    def one_of_quote_or_plan(self, data, **kwargs):
        if ("quote_id" in data) == ("plan_code" in data):
            raise ValidationError("Send either quote_id or plan_code.", "_schema")


class CancelInput(Schema):
    at_period_end = fields.Boolean(load_default=True)


class QuoteLine(Schema):
    description = fields.String(required=True)
    amount = fields.Integer(required=True)


class Recurring(Schema):
    amount = fields.Integer(required=True)
    currency = fields.String(required=True)
    interval = fields.String(required=True)
    starts_at = fields.String(required=True)


class QuoteOut(Schema):
    id = fields.String(required=True)
    kind = fields.String(required=True)  # new | change
    plan = fields.Nested(PlanOut, required=True)
    currency = fields.String(required=True)
    lines = fields.List(fields.Nested(QuoteLine), required=True)
    amount_due = fields.Integer(required=True)
    recurring = fields.Nested(Recurring, required=True)
    created_at = fields.String(required=True)
    expires_at = fields.String(required=True)


class CheckoutOut(Schema):
    id = fields.String(required=True)
    gateway = fields.String(required=True)
    redirect_url = fields.String(required=True, allow_none=True)
    status = fields.String(required=True)
    expires_at = fields.String(required=True)
    quote_id = fields.String(required=True)
    plan_code = fields.String(required=True)
    amount = fields.Integer(required=True)
    currency = fields.String(required=True)
    failure_reason = fields.String(allow_none=True)
    created_at = fields.String(required=True)
    completed_at = fields.String(allow_none=True)


class AccountOut(Schema):
    kind = fields.String(required=True)
    id = fields.String(required=True)
    country = fields.String(required=True)
    currency = fields.String(required=True)
    gateway = fields.String(required=True)


class SubscriptionPlan(Schema):
    code = fields.String(required=True)
    name = fields.String(required=True)
    interval = fields.String(required=True)
    amount = fields.Integer(required=True)
    currency = fields.String(required=True)


class ScheduledChange(Schema):
    """A plan change charged from the next cycle (Cashfree): the current plan and its quota stay
    until the new plan's first charge succeeds, on or after `starts_at`."""

    plan_code = fields.String(required=True)
    plan_name = fields.String(required=True)
    starts_at = fields.String(required=True, allow_none=True)


class SubscriptionOut(Schema):
    plan = fields.Nested(SubscriptionPlan, required=True)
    # incomplete (being paid for; no plan yet) | active | past_due (a renewal failed; the gateway
    # retries) | unpaid (the gateway stopped retrying: no plan; buy again or pay the open invoice) |
    # cancelled
    status = fields.String(required=True, metadata={
        "enum": ["incomplete", "active", "past_due", "unpaid", "cancelled"]})
    current_period_start = fields.String(required=True, allow_none=True)
    current_period_end = fields.String(required=True, allow_none=True)
    next_payment_date = fields.String(required=True, allow_none=True)
    cancel_at_period_end = fields.Boolean(required=True)
    scheduled_change = fields.Nested(ScheduledChange, allow_none=True)


class UsageBrief(Schema):
    used_bytes = fields.Integer(required=True, allow_none=True)
    quota_bytes = fields.Integer(required=True, allow_none=True)
    percent = fields.Float(required=True, allow_none=True)
    over_quota = fields.Boolean()


class SummaryOut(Schema):
    account = fields.Nested(AccountOut, required=True)
    subscription = fields.Nested(SubscriptionOut, required=True, allow_none=True)
    usage = fields.Nested(UsageBrief, required=True)
    can_manage = fields.Boolean(required=True)


class HistoryItem(Schema):
    id = fields.String(required=True)
    date = fields.String(required=True)
    description = fields.String(required=True)
    amount = fields.Integer(required=True)
    currency = fields.String(required=True)
    status = fields.String(required=True)
    invoice_url = fields.String(required=True, allow_none=True)


class HistoryList(Schema):
    items = fields.List(fields.Nested(HistoryItem), required=True)


class PaymentMethodOut(Schema):
    id = fields.String(required=True)
    type = fields.String(required=True)
    brand = fields.String(required=True, allow_none=True)
    last4 = fields.String(required=True, allow_none=True)
    exp_month = fields.Integer(required=True, allow_none=True)
    exp_year = fields.Integer(required=True, allow_none=True)
    is_default = fields.Boolean(required=True)


class PaymentMethodList(Schema):
    items = fields.List(fields.Nested(PaymentMethodOut), required=True)
    stale = fields.Boolean()  # true when the gateway was unreachable and this is the last known list


MAX_LINK_HOURS = 30 * 24


class PaymentLinkInput(Schema):
    plan_code = fields.String(validate=validate.Length(min=1, max=64))
    quote_id = fields.String(validate=validate.Length(min=1, max=64))
    expires_in_hours = fields.Integer(strict=True, load_default=7 * 24,
                                      validate=validate.Range(min=1, max=MAX_LINK_HOURS))

    @validates_schema
    def one_of_quote_or_plan(self, data, **kwargs):
        if ("quote_id" in data) == ("plan_code" in data):
            raise ValidationError("Send either quote_id or plan_code.", "_schema")


class PaymentLinkOut(Schema):
    id = fields.String(required=True)
    url = fields.String(required=True, allow_none=True)
    status = fields.String(required=True)
    plan_code = fields.String(required=True)
    amount = fields.Integer(required=True)
    currency = fields.String(required=True)
    created_by = fields.String(required=True)
    created_at = fields.String(required=True)
    expires_at = fields.String(required=True)
    closed_at = fields.String(allow_none=True)


class PaymentLinkList(Schema):
    items = fields.List(fields.Nested(PaymentLinkOut), required=True)
