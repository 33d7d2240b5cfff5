"""gateway_stripe's webhook intake: signature first, stored once, normalized facts in the outbox."""
import hashlib
import hmac
import json
import time

import pytest
from nameko.testing.services import worker_factory
from sqlalchemy import select

from services.gateway_stripe.models import Outbox, StripeCustomer, WebhookEvent
from services.gateway_stripe.service import GatewayStripeService
from shared.errors import BadRequest

SECRET = "whsec_sandbox"
ACCOUNT = "0b5e7c1e-5b1a-4c55-9e0e-0d7f6a1b2c3d"
CHECKOUT = "7d6c5b4a-3e2f-4a1b-8c9d-0e1f2a3b4c5d"
METADATA = {"account_id": ACCOUNT, "checkout_id": CHECKOUT, "plan_code": "growth_monthly"}


def sign(body, secret=SECRET, at=None):
    at = int(at if at is not None else time.time())
    digest = hmac.new(secret.encode(), f"{at}.{body}".encode(), hashlib.sha256).hexdigest()
    return {"Stripe-Signature": f"t={at},v1={digest}"}


def stripe_event(kind, obj, event_id="evt_1", created=1_700_000_000):
    return {"id": event_id, "object": "event", "type": kind, "created": created, "api_version": "2026-10-28.endive",
            "data": {"object": obj}, "livemode": False, "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None}}


def subscription(status="active", start=1_700_000_000, end=1_702_592_000, cancel_at_period_end=False):
    return {
        "id": "sub_1", "object": "subscription", "customer": "cus_1", "status": status, "metadata": METADATA,
        "cancel_at_period_end": cancel_at_period_end, "cancel_at": None,
        "items": {"object": "list", "data": [{
            "id": "si_1", "object": "subscription_item", "current_period_start": start, "current_period_end": end,
            "price": {"id": "price_1", "unit_amount": 4900, "currency": "usd", "lookup_key": "growth_monthly_usd_4900",
                      "metadata": {"plan_code": "growth_monthly"}, "recurring": {"interval": "month"}},
        }]},
    }


def invoice(amount_paid=4900):
    return {
        "id": "in_1", "object": "invoice", "customer": "cus_1", "currency": "usd", "amount_paid": amount_paid,
        "amount_due": 4900, "hosted_invoice_url": "http://sandbox/invoices/in_1",
        "parent": {"type": "subscription_details",
                   "subscription_details": {"subscription": "sub_1", "metadata": METADATA}},
        "lines": {"object": "list", "data": [{"description": "1 × Growth (at $49.00 / month)",
                                              "period": {"start": 1_700_000_000, "end": 1_702_592_000}}]},
    }


def checkout_session(payment_status="paid"):
    return {"id": "cs_test_1", "object": "checkout.session", "mode": "subscription", "customer": "cus_1",
            "client_reference_id": CHECKOUT, "metadata": METADATA, "payment_status": payment_status,
            "subscription": "sub_1", "status": "complete", "amount_total": 4900, "currency": "usd"}


@pytest.fixture
def adapter(db_session):
    return worker_factory(GatewayStripeService, db=db_session("gateway_stripe"))


def deliver(adapter, event, headers=None):
    body = json.dumps(event)
    return adapter.handle_webhook(headers if headers is not None else sign(body), body)


def facts(adapter):
    return [(row.event_type, row.payload) for row in adapter.db.scalars(select(Outbox).order_by(Outbox.created_at))]


def stored(adapter):
    return adapter.db.scalars(select(WebhookEvent.id)).all()


@pytest.mark.parametrize("headers_for, code", [
    (lambda body: sign(body, secret="whsec_forged"), "SIGNATURE_INVALID"),
    (lambda body: sign(body, at=time.time() - 301), "SIGNATURE_INVALID"),  # stale: outside the 300 s tolerance
    (lambda body: sign(body + " "), "SIGNATURE_INVALID"),  # body changed after signing
    (lambda body: {}, "SIGNATURE_MISSING"),
    (lambda body: {"Stripe-Signature": "garbage"}, "SIGNATURE_INVALID"),
])
def test_unverifiable_webhooks_are_refused_and_nothing_is_stored(adapter, headers_for, code):
    body = json.dumps(stripe_event("invoice.paid", invoice()))
    with pytest.raises(BadRequest) as raised:
        adapter.handle_webhook(headers_for(body), body)
    assert raised.value.error_code == code
    assert stored(adapter) == [] and facts(adapter) == []


def test_a_signed_body_that_is_not_an_event_is_refused(adapter):
    body = '{"not": "an event"}'
    with pytest.raises(BadRequest) as raised:
        adapter.handle_webhook(sign(body), body)
    assert raised.value.error_code == "MALFORMED_EVENT"


def test_the_header_name_is_matched_case_insensitively(adapter):
    body = json.dumps(stripe_event("invoice.paid", invoice()))
    headers = {"stripe-signature": sign(body)["Stripe-Signature"]}
    assert adapter.handle_webhook(headers, body) == {"status": "accepted"}


def test_an_event_delivered_three_times_is_stored_and_announced_once(adapter):
    event = stripe_event("invoice.paid", invoice())
    answers = [deliver(adapter, event)["status"] for _ in range(3)]
    assert answers == ["accepted", "duplicate", "duplicate"]
    assert stored(adapter) == ["evt_1"]
    assert [kind for kind, _ in facts(adapter)] == ["gateway.payment_succeeded"]


def test_a_subscription_snapshot_takes_its_period_from_the_items(adapter):
    deliver(adapter, stripe_event("customer.subscription.updated", subscription(cancel_at_period_end=True)))
    [(kind, fact)] = facts(adapter)
    assert kind == "gateway.subscription_updated"
    assert {k: fact[k] for k in ("account_id", "checkout_id", "plan_code", "status", "amount", "currency",
                                 "current_period_start", "current_period_end", "cancel_at_period_end",
                                 "gateway_subscription_id", "gateway_event_at")} == {
        "account_id": ACCOUNT, "checkout_id": CHECKOUT, "plan_code": "growth_monthly", "status": "active",
        "amount": 4900, "currency": "usd", "current_period_start": 1_700_000_000,
        "current_period_end": 1_702_592_000, "cancel_at_period_end": True, "gateway_subscription_id": "sub_1",
        "gateway_event_at": 1_700_000_000}


@pytest.mark.parametrize("stripe_status, ours", [
    ("active", "active"), ("trialing", "active"), ("past_due", "past_due"), ("unpaid", "unpaid"),
    ("incomplete", "incomplete"), ("canceled", "cancelled"), ("incomplete_expired", "cancelled"),
])
def test_stripe_statuses_map_to_ours(adapter, stripe_status, ours):
    deliver(adapter, stripe_event("customer.subscription.deleted", subscription(status=stripe_status)))
    assert facts(adapter)[0][1]["status"] == ours


def test_an_invoice_names_its_subscription_under_parent_subscription_details(adapter):
    deliver(adapter, stripe_event("invoice.paid", invoice()))
    fact = facts(adapter)[0][1]
    assert (fact["gateway_subscription_id"], fact["amount"], fact["period_end"]) == ("sub_1", 4900, 1_702_592_000)
    assert fact["account_id"] == ACCOUNT


def test_a_zero_invoice_is_not_a_payment(adapter):
    deliver(adapter, stripe_event("invoice.paid", invoice(amount_paid=0)))
    assert facts(adapter) == []
    assert stored(adapter) == ["evt_1"]


def test_checkout_outcomes(adapter):
    deliver(adapter, stripe_event("checkout.session.completed", checkout_session(), "evt_a"))
    deliver(adapter, stripe_event("checkout.session.completed", checkout_session("unpaid"), "evt_b"))
    deliver(adapter, stripe_event("checkout.session.async_payment_failed", checkout_session("unpaid"), "evt_c"))
    deliver(adapter, stripe_event("checkout.session.expired", checkout_session("unpaid"), "evt_d"))
    kinds = [(kind, fact.get("reason")) for kind, fact in facts(adapter)]
    assert kinds == [("gateway.checkout_completed", None), ("gateway.checkout_failed", "declined"),
                     ("gateway.checkout_failed", "expired")]
    assert facts(adapter)[0][1]["gateway_subscription_id"] == "sub_1"


def test_unknown_types_and_foreign_objects_are_stored_but_announce_nothing(adapter):
    deliver(adapter, stripe_event("customer.created", {"id": "cus_9", "object": "customer"}, "evt_a"))
    foreign = invoice()
    foreign["parent"]["subscription_details"]["metadata"] = {}
    foreign["customer"] = "cus_not_ours"
    deliver(adapter, stripe_event("invoice.paid", foreign, "evt_b"))
    assert facts(adapter) == []
    assert sorted(stored(adapter)) == ["evt_a", "evt_b"]


def test_the_account_is_found_by_customer_when_metadata_is_missing(adapter):
    adapter.db.add(StripeCustomer(account_id=ACCOUNT, customer_id="cus_1"))
    adapter.db.commit()
    bare = invoice()
    bare["parent"]["subscription_details"]["metadata"] = {}
    deliver(adapter, stripe_event("invoice.paid", bare))
    assert facts(adapter)[0][1]["account_id"] == ACCOUNT
