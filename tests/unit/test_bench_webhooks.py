"""`make bench` delivers the webhooks of paid checkouts itself (deploy/bench_webhooks.py): they must be
the ones the sandbox sends when the payer presses Pay, and pass the adapters' signature checks."""
import json
from decimal import Decimal

import pytest
import requests
import stripe

from deploy.bench_webhooks import CashfreePayments, StripePayments
from services.gateway_cashfree.sandbox import start_sandbox as start_cashfree
from services.gateway_cashfree.sandbox.encoding import dumps as cashfree_dumps
from services.gateway_cashfree.sandbox.encoding import loads as cashfree_loads
from services.gateway_cashfree.service import signature_of
from services.gateway_stripe.sandbox import start_sandbox as start_stripe

STRIPE_KEY, STRIPE_SECRET = "sk_test_sandbox", "whsec_sandbox"
CASHFREE_HEADERS = {"x-client-id": "cf_sandbox_client", "x-client-secret": "cf_sandbox_secret",
                    "x-api-version": "2025-01-01", "x-request-id": "test"}


def keys(value):
    """The shape of a JSON value: its keys, all the way down (ids and times differ; keys may not)."""
    if isinstance(value, dict):
        return {key: keys(inner) for key, inner in value.items()}
    if isinstance(value, list):
        return [keys(value[0])] if value else []
    return None


@pytest.fixture
def stripe_sandbox():
    handle = start_stripe(port=0)
    yield handle
    handle.stop()


@pytest.fixture
def cashfree_sandbox():
    handle = start_cashfree(port=0)
    yield handle
    handle.stop()


def stripe_checkout(client, price, checkout_id):
    """A session made the way gateway_stripe makes one (stripe_api.create_checkout_session)."""
    customer = client.v1.customers.create(params={"email": "ann@example.com", "metadata": {"account_id": "acct-1"}})
    metadata = {"account_id": "acct-1", "checkout_id": checkout_id, "plan_code": "growth_monthly"}
    return client.v1.checkout.sessions.create(params={
        "mode": "subscription", "customer": customer.id, "line_items": [{"price": price.id, "quantity": 1}],
        "success_url": "https://portal.test/done", "cancel_url": "https://portal.test/cancelled",
        "client_reference_id": checkout_id, "metadata": metadata, "subscription_data": {"metadata": metadata}})


def test_stripe_webhooks_are_the_sandboxs_own_for_a_paid_session(stripe_sandbox):
    client = stripe.StripeClient(STRIPE_KEY, base_addresses={"api": stripe_sandbox.url}, max_network_retries=0)
    price = client.v1.prices.create(params={
        "currency": "usd", "unit_amount": 4900, "recurring": {"interval": "month"},
        "lookup_key": "growth_monthly_usd_4900", "product_data": {"name": "Growth"}})
    paid_by_sandbox, paid_by_bench = stripe_checkout(client, price, "chk-1"), stripe_checkout(client, price, "chk-2")
    assert requests.post(f"{stripe_sandbox.url}/_sandbox/checkout/{paid_by_sandbox.id}/pay", timeout=5).ok
    sandbox_events = [event for event in requests.get(f"{stripe_sandbox.url}/_sandbox/events", timeout=5).json()
                      if event["type"] in ("customer.subscription.created", "invoice.paid",
                                           "invoice.payment_succeeded", "checkout.session.completed")]

    webhooks = StripePayments(stripe_sandbox.url, STRIPE_KEY, STRIPE_SECRET).pay("chk-2", paid_by_bench.id)

    assert [w.event_type for w in webhooks] == [e["type"] for e in sandbox_events]
    for webhook, event in zip(webhooks, sandbox_events):
        body = json.loads(webhook.body)
        del event["delivery_attempts"]  # the control API's addition, not part of the event
        assert keys(body) == keys(event)
        assert webhook.event_id == body["id"] and webhook.path == "/webhooks/stripe"
        stripe.WebhookSignature.verify_header(webhook.body.decode(), webhook.headers()["Stripe-Signature"],
                                              STRIPE_SECRET, 300)
    completed = json.loads(webhooks[-1].body)["data"]["object"]
    assert (completed["id"], completed["client_reference_id"], completed["payment_status"]) == (
        paid_by_bench.id, "chk-2", "paid")


def cashfree_subscription(sandbox, subscription_id, checkout_id):
    """A subscription made the way gateway_cashfree makes one (create_checkout)."""
    answer = requests.post(f"{sandbox.url}/pg/subscriptions", headers=CASHFREE_HEADERS, timeout=5, data=cashfree_dumps({
        "subscription_id": subscription_id,
        "customer_details": {"customer_name": "Ann", "customer_email": "ann@example.com",
                             "customer_phone": "9999999999"},
        "plan_details": {"plan_id": "growth_monthly_inr_399900"},
        "authorization_details": {"authorization_amount": Decimal("3999.00"), "authorization_amount_refund": False,
                                  "payment_methods": ["upi", "card", "enach"]},
        "subscription_meta": {"return_url": "https://portal.test/done"},
        "subscription_tags": {"account_id": "acct-1", "checkout_id": checkout_id, "plan_code": "growth_monthly"}}))
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_cashfree_webhooks_are_the_sandboxs_own_for_an_authorised_subscription(cashfree_sandbox):
    plan = requests.post(f"{cashfree_sandbox.url}/pg/plans", headers=CASHFREE_HEADERS, timeout=5, data=cashfree_dumps({
        "plan_id": "growth_monthly_inr_399900", "plan_name": "Growth (monthly)", "plan_type": "PERIODIC",
        "plan_currency": "INR", "plan_recurring_amount": Decimal("3999.00"), "plan_max_amount": Decimal("3999.00"),
        "plan_intervals": 1, "plan_interval_type": "MONTH"}))
    assert plan.status_code == 200, plan.text
    paid_by_sandbox = cashfree_subscription(cashfree_sandbox, "chk_1", "chk-1")
    cashfree_subscription(cashfree_sandbox, "chk_2", "chk-2")
    session = paid_by_sandbox["subscription_session_id"]
    assert requests.post(f"{cashfree_sandbox.url}/_sandbox/checkout/subscription/{session}/pay",
                         json={"method": "upi"}, timeout=5).ok
    sandbox_events = requests.get(f"{cashfree_sandbox.url}/_sandbox/events", timeout=5).json()

    webhooks = CashfreePayments(f"{cashfree_sandbox.url}/pg", CASHFREE_HEADERS["x-client-id"],
                                CASHFREE_HEADERS["x-client-secret"]).pay("chk-2", "chk_2")

    assert [w.event_type for w in webhooks] == [e["type"] for e in sandbox_events] == [
        "SUBSCRIPTION_AUTH_STATUS", "SUBSCRIPTION_STATUS_CHANGED", "SUBSCRIPTION_PAYMENT_SUCCESS"]
    for webhook, event in zip(webhooks, sandbox_events):
        body = cashfree_loads(webhook.body)
        assert keys(body) == keys(event["payload"])
        headers = webhook.headers()
        assert headers["x-idempotency-key"] == webhook.event_id and webhook.path == "/webhooks/cashfree"
        assert headers["x-webhook-signature"] == signature_of(headers["x-webhook-timestamp"], webhook.body.decode(),
                                                              CASHFREE_HEADERS["x-client-secret"])
    assert cashfree_loads(webhooks[0].body)["data"]["subscription_id"] == "chk_2"
