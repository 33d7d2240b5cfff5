"""Every event payload that crosses RabbitMQ, as a marshmallow schema.

Events are past-tense facts published by the service that owns the fact, on the nameko exchange
`<service>.events` with the event type as routing key. Each payload carries `event_id` (the
consumer's inbox key: a redelivery has the same id) and `occurred_at`.
"""
from marshmallow import Schema, fields, validate

from shared.permissions import ACCOUNT_KINDS, ROLES

COUNTRIES = ("US", "IN")
# Where the region's gateway (Cashfree, India) takes no payment without the payer's phone.
COUNTRIES_NEEDING_PHONE = ("IN",)


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


class SessionRevoked(EventSchema):
    """A session's token was revoked (logout). Every gateway_http process drops the token from its
    cache on hearing it; the token itself never travels, only the SHA-256 identity stores."""

    token_hash = fields.String(required=True, validate=validate.Length(equal=64))
    user_id = fields.String(required=True)


class UserUpdated(EventSchema):
    """A user's name or phone changed (PATCH /me). gateway_http processes drop the cached sessions of
    that user, so every request after it carries the user as they are now."""

    user_id = fields.String(required=True)


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


# gateway adapters (gateway_stripe, gateway_cashfree): the same normalized facts from either gateway.
# Gateway times are unix seconds as the gateway stamped them; they order snapshots of one object.
GATEWAYS = ("stripe", "cashfree")
# unpaid: the gateway stopped trying to collect (Stripe's `unpaid`): not the account's plan any more.
SUBSCRIPTION_STATUSES = ("incomplete", "active", "past_due", "unpaid", "cancelled")


class Collected(Schema):
    """What the gateway collected for a purchase's first period: billing grants the plan only when
    it is the quoted amount in the quoted currency."""

    amount = fields.Integer(required=True, strict=True)
    currency = fields.String(required=True)


class GatewayEvent(EventSchema):
    gateway = fields.String(required=True, validate=validate.OneOf(GATEWAYS))
    gateway_event_id = fields.String(required=True)
    gateway_event_at = fields.Integer(required=True)
    account_id = fields.String(required=True)


class GatewayCheckoutCompleted(GatewayEvent):
    checkout_id = fields.String(required=True)
    gateway_checkout_id = fields.String(required=True)
    gateway_subscription_id = fields.String(allow_none=True, load_default=None)
    gateway_customer_id = fields.String(allow_none=True, load_default=None)
    collected = fields.Nested(Collected, required=True)


class GatewayCheckoutFailed(GatewayEvent):
    checkout_id = fields.String(required=True)
    gateway_checkout_id = fields.String(required=True)
    reason = fields.String(required=True, validate=validate.OneOf(("declined", "expired")))


class GatewaySubscriptionUpdated(GatewayEvent):
    """A full snapshot of one gateway subscription; billing keeps the newest it has seen."""

    gateway_subscription_id = fields.String(required=True)
    checkout_id = fields.String(allow_none=True, load_default=None)
    link_id = fields.String(allow_none=True, load_default=None)  # a subscription a payment link started
    plan_code = fields.String(required=True)  # the plan paid for now
    # A change the gateway charges from the next cycle: it becomes plan_code once that charge succeeds.
    pending_plan_code = fields.String(allow_none=True, load_default=None)
    status = fields.String(required=True, validate=validate.OneOf(SUBSCRIPTION_STATUSES))
    amount = fields.Integer(required=True)
    currency = fields.String(required=True)
    current_period_start = fields.Integer(allow_none=True, load_default=None)
    current_period_end = fields.Integer(allow_none=True, load_default=None)
    cancel_at_period_end = fields.Boolean(required=True)


class GatewayPayment(GatewayEvent):
    """One invoice (charge) of a subscription, paid or failed."""

    gateway_invoice_id = fields.String(required=True)
    gateway_subscription_id = fields.String(allow_none=True, load_default=None)
    amount = fields.Integer(required=True)
    currency = fields.String(required=True)
    description = fields.String(required=True)
    invoice_url = fields.String(allow_none=True, load_default=None)
    period_start = fields.Integer(allow_none=True, load_default=None)
    period_end = fields.Integer(allow_none=True, load_default=None)
    # The charge of a plan change's proration: declined, it leaves the plan as it was (not past due).
    plan_change = fields.Boolean(load_default=False)


# billing: what other services react to (usage takes quotas and periods from these).
class AccountRef(Schema):
    kind = fields.String(required=True, validate=validate.OneOf(ACCOUNT_KINDS))
    id = fields.String(required=True)  # the user id or the org id


class BillingEvent(EventSchema):
    billing_account_id = fields.String(required=True)
    account = fields.Nested(AccountRef, required=True)
    subscription_id = fields.String(required=True)
    gateway = fields.String(required=True, validate=validate.OneOf(GATEWAYS))


class PlanPurchased(BillingEvent):
    checkout_id = fields.String(allow_none=True, load_default=None)
    plan_code = fields.String(required=True)
    data_quota_bytes = fields.Integer(required=True)
    amount = fields.Integer(required=True)
    currency = fields.String(required=True)
    interval = fields.String(required=True)
    current_period_start = fields.String(allow_none=True, load_default=None)
    current_period_end = fields.String(allow_none=True, load_default=None)


class PlanChanged(PlanPurchased):
    from_plan_code = fields.String(required=True)


class PlanCancelled(BillingEvent):
    plan_code = fields.String(required=True)


class PaymentRefunded(BillingEvent):
    """A payment was refunded at the gateway, e.g. a second purchase for an account that already had
    a plan (reason duplicate_purchase); the account keeps its one plan."""

    gateway_invoice_id = fields.String(required=True)
    gateway_refund_id = fields.String(required=True)
    amount = fields.Integer(required=True)
    currency = fields.String(required=True)
    reason = fields.String(required=True)


class PaymentFailed(BillingEvent):
    subscription_id = fields.String(allow_none=True, load_default=None)  # a charge we cannot place
    gateway_invoice_id = fields.String(required=True)
    amount = fields.Integer(required=True)
    currency = fields.String(required=True)


class GatewayLinkPaid(GatewayEvent):
    """A payment link was paid. With a subscription behind it (Stripe) the plan renews; without one
    (a one-off payment, Cashfree) it pays for one period."""

    link_id = fields.String(required=True)
    gateway_link_id = fields.String(required=True)
    gateway_subscription_id = fields.String(allow_none=True, load_default=None)
    paid_at = fields.Integer(required=True)
    collected = fields.Nested(Collected, required=True)


class PaymentLinkEvent(EventSchema):
    billing_account_id = fields.String(required=True)
    account = fields.Nested(AccountRef, required=True)
    link_id = fields.String(required=True)
    plan_code = fields.String(required=True)
    amount = fields.Integer(required=True)
    currency = fields.String(required=True)
    status = fields.String(required=True, validate=validate.OneOf(("active", "paid", "cancelled", "expired")))


# usage
class UsageThresholdCrossed(EventSchema):
    """An account's use of `metric` reached `threshold` % of its plan's quota in the period starting
    at `period_start`; announced once per account, metric, period and threshold."""

    account = fields.Nested(AccountRef, required=True)
    metric = fields.String(required=True)
    threshold = fields.Integer(required=True, validate=validate.OneOf((80, 100)))
    used_bytes = fields.Integer(required=True)
    quota_bytes = fields.Integer(required=True)
    period_start = fields.String(required=True)  # RFC 3339 UTC


EVENT_SCHEMAS = {
    "user.signed_up": UserSignedUp(),
    "session.revoked": SessionRevoked(),
    "user.updated": UserUpdated(),
    "org.created": OrgCreated(),
    "member.joined": MemberJoined(),
    "member.role_changed": MemberRoleChanged(),
    "member.removed": MemberRemoved(),
    "gateway.checkout_completed": GatewayCheckoutCompleted(),
    "gateway.checkout_failed": GatewayCheckoutFailed(),
    "gateway.subscription_updated": GatewaySubscriptionUpdated(),
    "gateway.payment_succeeded": GatewayPayment(),
    "gateway.payment_failed": GatewayPayment(),
    "plan.purchased": PlanPurchased(),
    "plan.changed": PlanChanged(),
    "plan.renewed": PlanPurchased(),
    "plan.cancelled": PlanCancelled(),
    "payment.failed": PaymentFailed(),
    "payment.refunded": PaymentRefunded(),
    "gateway.link_paid": GatewayLinkPaid(),
    "payment_link.created": PaymentLinkEvent(),
    "payment_link.paid": PaymentLinkEvent(),
    "payment_link.cancelled": PaymentLinkEvent(),
    "payment_link.expired": PaymentLinkEvent(),
    "usage.threshold_crossed": UsageThresholdCrossed(),
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
