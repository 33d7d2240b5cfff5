"""The Stripe sandbox, driven only through the official SDK (and its control API).

Each test starts a sandbox in this process on a free port, with a fake clock and a small local
webhook receiver, and talks to it with `stripe.StripeClient` exactly as the adapter does: if the
SDK parses what comes back, the adapter will too. The root conftest has monkey-patched eventlet,
so this also shows the sandbox's threads and locks work as green threads.
"""
import json
import threading
import time
from fractions import Fraction
from pathlib import Path

import pytest
import requests
import stripe

from services.gateway_stripe.sandbox import api as sandbox_api
from services.gateway_stripe.sandbox import start_sandbox
from services.gateway_stripe.sandbox.params import decode
from services.gateway_stripe.sandbox.periods import add_interval
from tests.unit import sandbox_helpers
from tests.unit.sandbox_helpers import FakeClock, event_type

KEY = "sk_test_sandbox"
WEBHOOK_SECRET = "whsec_sandbox"
FIXTURES = Path(__file__).resolve().parents[3] / "shared/reference/stripe/fixtures3.json"
DAY = 24 * 3600


# the world around the sandbox: a clock, a webhook endpoint, SDK clients

class WebhookReceiver(sandbox_helpers.WebhookReceiver):
    """Stands in for gateway_http's /webhooks/stripe: records deliveries, answers as told."""

    PATH = "/webhooks/stripe"

    def accepted_events(self, *types, timeout=5.0):
        """Wait for accepted deliveries of these types (any order); each verified like the adapter will."""
        events = {}
        for delivery in self.accepted_deliveries(*types, timeout=timeout):
            if event_type(delivery) in types:
                events[event_type(delivery)] = stripe.Webhook.construct_event(
                    delivery["body"], delivery["headers"]["Stripe-Signature"], WEBHOOK_SECRET)
        return events


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def receiver():
    endpoint = WebhookReceiver()
    yield endpoint
    endpoint.stop()


@pytest.fixture
def sandbox(receiver, clock):
    handle = start_sandbox(port=0, webhook_url=receiver.url, clock=clock, retry_scale=0.01)
    yield handle
    handle.stop()


@pytest.fixture
def client(sandbox):
    return stripe.StripeClient(KEY, base_addresses={"api": sandbox.url}, max_network_retries=0)


def control(sandbox, verb, path, body=None):
    """A call to the sandbox's own /_sandbox API (not Stripe's, so not through the SDK)."""
    response = requests.request(verb, sandbox.url + path, json=body, timeout=5)
    return response.status_code, response.json()


def make_price(client, lookup_key="pro_monthly", amount=2000, interval="month", name="Pro"):
    return client.v1.prices.create(params={
        "currency": "usd", "unit_amount": amount, "recurring": {"interval": interval}, "lookup_key": lookup_key,
        "product_data": {"name": name, "metadata": {"plan_code": lookup_key}}, "metadata": {"plan_code": lookup_key},
    })


def make_session(client, price, customer=None, **extra):
    customer = customer or client.v1.customers.create(params={
        "email": "ann@example.com", "name": "Ann", "metadata": {"account_id": "acct-1"}})
    return client.v1.checkout.sessions.create(params={
        "mode": "subscription", "customer": customer.id, "line_items": [{"price": price.id, "quantity": 1}],
        "success_url": "https://portal.test/done?session={CHECKOUT_SESSION_ID}",
        "cancel_url": "https://portal.test/cancelled", "client_reference_id": "chk-1",
        "metadata": {"checkout_id": "chk-1"},
        "subscription_data": {"metadata": {"account_id": "acct-1", "checkout_id": "chk-1"}}, **extra,
    })


def paid_subscription(client, sandbox, price=None):
    price = price or make_price(client)
    session = make_session(client, price)
    status, body = control(sandbox, "POST", f"/_sandbox/checkout/{session.id}/pay")
    assert status == 200, body
    return client.v1.subscriptions.retrieve(body["subscription"])


# shapes

def test_sdk_client_runs_under_eventlet_monkey_patching():
    import eventlet.patcher

    assert eventlet.patcher.is_monkey_patched("thread") and eventlet.patcher.is_monkey_patched("socket")


def test_every_object_has_the_fixture_top_level_keys(client, sandbox, clock):
    if not FIXTURES.exists():
        pytest.skip(f"Stripe's fixtures are not at {FIXTURES} (the shared reference folder is absent)")
    fixtures = json.loads(FIXTURES.read_text())["resources"]
    price = make_price(client)
    subscription = paid_subscription(client, sandbox, price)
    clock.advance(DAY)
    client.v1.subscriptions.update(subscription.id, params={
        "items": [{"id": subscription["items"].data[0].id, "price": make_price(client, "max", 5000).id}],
        "proration_behavior": "always_invoice"})
    customer_id = subscription.customer
    session = client.v1.checkout.sessions.list(params={"subscription": subscription.id}).data[0]
    invoices = client.v1.invoices.list(params={"customer": customer_id})
    (invoice_payment,) = paid_payments_of(client, invoices.data[0].id)
    payment_intent = client.v1.payment_intents.retrieve(invoice_payment.payment.payment_intent)
    refund = client.v1.refunds.create(params={"payment_intent": payment_intent.id, "amount": 100})
    decline_card(sandbox, customer_id)
    pending = change_price(client, subscription, make_price(client, "ultra", 9000)).pending_update
    ours = {
        "customer": client.v1.customers.retrieve(customer_id),
        "price": price,
        "product": client.v1.products.retrieve(price.product),
        "checkout.session": session,
        "subscription": subscription,
        "subscription_item": subscription["items"].data[0],
        "invoice": invoices.data[0],
        "line_item": invoices.data[0].lines.data[0],
        "payment_method": client.v1.payment_methods.list(params={"customer": customer_id, "type": "card"}).data[0],
        "event": client.v1.events.list(params={"limit": 1}).data[0],
        "invoice_payment": invoice_payment,
        "payment_intent": payment_intent,
        "charge": client.v1.charges.retrieve(payment_intent.latest_charge),
        "refund": refund,
        "account": client.v1.accounts.retrieve_current(),
    }
    for name, obj in ours.items():
        assert set(obj.to_dict()) == set(fixtures[name]), name
    # The SDK's API version adds cancel_at_period_end to pending updates (2026-09-30); the fixtures predate it.
    assert set(pending.to_dict()) == set(fixtures["subscription"]["pending_update"]) | {"cancel_at_period_end"}
    # The fixtures have no stand-alone list; their embedded lists show its keys.
    assert set(invoices.to_dict()) == set(fixtures["subscription"]["items"]) == set(fixtures["invoice"]["lines"])


def test_form_fields_decode_into_nested_dicts_and_lists():
    pairs = [("line_items[0][price]", "price_1"), ("line_items[0][quantity]", "1"), ("metadata[plan]", "pro"),
             ("expand[]", "customer"), ("expand[]", "invoice"), ("lookup_keys[0]", "a"), ("lookup_keys[1]", "b")]
    assert decode(pairs) == {"line_items": [{"price": "price_1", "quantity": "1"}], "metadata": {"plan": "pro"},
                             "expand": ["customer", "invoice"], "lookup_keys": ["a", "b"]}


# checkout

def test_paying_a_checkout_creates_a_subscription_and_signed_webhooks(client, sandbox, receiver, clock):
    price = make_price(client)
    session = make_session(client, price)
    assert (session.status, session.payment_status, session.amount_total, session.currency) == (
        "open", "unpaid", 2000, "usd")
    assert session.url == f"{sandbox.public_url}/checkout/{session.id}"
    assert session.expires_at == clock() + DAY

    page = requests.get(session.url, timeout=5)
    assert page.status_code == 200 and "Pro" in page.text and "$20.00" in page.text and "Pay" in page.text
    paid = requests.post(f"{session.url}/pay", allow_redirects=False, timeout=5)
    assert paid.status_code == 303
    assert paid.headers["Location"] == f"https://portal.test/done?session={session.id}"

    events = receiver.accepted_events("customer.subscription.created", "invoice.paid", "checkout.session.completed")
    assert {event.api_version for event in events.values()} == {stripe.api_version}
    completed = events["checkout.session.completed"].data.object
    assert (completed.status, completed.payment_status) == ("complete", "paid")
    subscription = events["customer.subscription.created"].data.object
    assert completed.subscription == subscription.id
    assert subscription.metadata.to_dict() == {"account_id": "acct-1", "checkout_id": "chk-1"}
    item = subscription["items"].data[0]
    assert (item.current_period_start, item.current_period_end) == (clock(), add_interval(int(clock()), "month"))
    assert subscription.status == "active" and subscription.default_payment_method.startswith("pm_")
    invoice = events["invoice.paid"].data.object
    assert invoice.parent.type == "subscription_details"
    assert invoice.parent.subscription_details.subscription == subscription.id
    assert invoice.parent.subscription_details.metadata.to_dict() == {"account_id": "acct-1", "checkout_id": "chk-1"}
    assert (invoice.status, invoice.amount_paid, invoice.billing_reason) == ("paid", 2000, "subscription_create")
    assert invoice.status_transitions.paid_at == clock()
    line = invoice.lines.data[0]
    assert (line.period.start, line.period.end) == (item.current_period_start, item.current_period_end)
    assert line.parent.subscription_item_details.proration is False

    customer = client.v1.customers.retrieve(completed.customer)
    card = client.v1.payment_methods.list(params={"customer": customer.id, "type": "card"}).data[0]
    assert customer.invoice_settings.default_payment_method == card.id
    assert (card.card.brand, card.card.last4, card.card.exp_month, card.card.funding, card.card.country) == (
        "visa", "4242", 12, "credit", "US")
    assert client.v1.subscriptions.retrieve(subscription.id).latest_invoice == invoice.id
    assert client.v1.checkout.sessions.retrieve(session.id).invoice == invoice.id
    hosted = requests.get(invoice.hosted_invoice_url, timeout=5)
    assert hosted.status_code == 200 and "$20.00" in hosted.text


def test_declining_ends_the_session_unpaid_and_creates_nothing(client, sandbox, receiver):
    session = make_session(client, make_price(client))
    declined = requests.post(f"{session.url}/decline", allow_redirects=False, timeout=5)
    assert declined.status_code == 303 and declined.headers["Location"] == "https://portal.test/cancelled"

    failed = receiver.accepted_events("checkout.session.async_payment_failed")
    event_session = failed["checkout.session.async_payment_failed"].data.object
    assert (event_session.id, event_session.status, event_session.payment_status) == (session.id, "expired", "unpaid")
    assert client.v1.subscriptions.list(params={"customer": session.customer, "status": "all"}).data == []
    assert client.v1.invoices.list(params={"customer": session.customer}).data == []
    page = requests.get(session.url, timeout=5).text
    assert "expired" in page and "Pay</button>" not in page  # a message, no buttons


def test_expiring_a_session_is_allowed_once(client, receiver):
    session = make_session(client, make_price(client))
    expired = client.v1.checkout.sessions.expire(session.id)
    assert expired.status == "expired"
    receiver.accepted_events("checkout.session.expired")
    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.checkout.sessions.expire(session.id)
    assert refused.value.http_status == 400


def test_a_session_past_expires_at_expires_when_next_read_once(client, sandbox, clock, receiver):
    session = make_session(client, make_price(client), expires_at=int(clock()) + 3600)
    clock.advance(3600)
    assert client.v1.checkout.sessions.retrieve(session.id).status == "expired"
    assert client.v1.checkout.sessions.retrieve(session.id).status == "expired"
    status, body = control(sandbox, "POST", f"/_sandbox/checkout/{session.id}/pay")
    assert status == 409 and "no longer open" in body["error"]["message"]
    receiver.accepted_events("checkout.session.expired")
    expired_events = client.v1.events.list(params={"type": "checkout.session.expired"}).data
    assert [event.data.object.id for event in expired_events] == [session.id]


def test_expires_at_must_be_between_30_minutes_and_24_hours(client, clock):
    price = make_price(client)
    for too_soon_or_late in (int(clock()) + 600, int(clock()) + 2 * DAY):
        with pytest.raises(stripe.InvalidRequestError) as refused:
            make_session(client, price, expires_at=too_soon_or_late)
        assert refused.value.param == "expires_at"


def test_a_session_cannot_be_paid_twice(client, sandbox):
    session = make_session(client, make_price(client))
    assert control(sandbox, "POST", f"/_sandbox/checkout/{session.id}/pay")[0] == 200
    again = requests.post(f"{session.url}/pay", allow_redirects=False, timeout=5)
    assert again.status_code == 409 and "no longer open" in again.text
    assert control(sandbox, "POST", f"/_sandbox/checkout/{session.id}/pay")[0] == 409
    assert len(client.v1.subscriptions.list(params={"customer": session.customer}).data) == 1
    assert len(client.v1.invoices.list(params={"customer": session.customer}).data) == 1
    page = requests.get(session.url, timeout=5).text
    assert "complete" in page and "Pay</button>" not in page


def test_only_subscription_mode_is_supported(client):
    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.checkout.sessions.create(params={"mode": "payment", "success_url": "https://x.test"})
    assert refused.value.param == "mode"


# renewals

def test_a_paid_renewal_advances_the_period_and_bills_a_cycle_invoice(client, sandbox, receiver):
    subscription = paid_subscription(client, sandbox)
    first = subscription["items"].data[0]
    status, body = control(sandbox, "POST", f"/_sandbox/subscriptions/{subscription.id}/renew", {"outcome": "paid"})
    assert status == 200

    renewed = client.v1.subscriptions.retrieve(subscription.id)
    item = renewed["items"].data[0]
    assert item.current_period_start == first.current_period_end
    assert item.current_period_end == add_interval(first.current_period_end, "month")
    invoices = client.v1.invoices.list(params={"customer": subscription.customer, "subscription": subscription.id})
    assert [inv.billing_reason for inv in invoices.data] == ["subscription_cycle", "subscription_create"]
    cycle = invoices.data[0]
    assert (cycle.status, cycle.amount_paid, renewed.latest_invoice) == ("paid", 2000, cycle.id)
    assert cycle.lines.data[0].period.start == item.current_period_start
    events = receiver.accepted_events("invoice.paid", "customer.subscription.updated")
    assert events["customer.subscription.updated"].data.previous_attributes["items"].data[0].current_period_end == (
        first.current_period_end)


def test_a_failed_renewal_leaves_an_open_invoice_and_the_subscription_past_due(client, sandbox, receiver):
    subscription = paid_subscription(client, sandbox)
    status, body = control(sandbox, "POST", f"/_sandbox/subscriptions/{subscription.id}/renew", {"outcome": "failed"})
    assert status == 200

    assert client.v1.subscriptions.retrieve(subscription.id).status == "past_due"
    invoice = client.v1.invoices.retrieve(body["invoice"]["id"])
    assert (invoice.status, invoice.attempt_count, invoice.amount_paid, invoice.amount_remaining) == (
        "open", 1, 0, 2000)
    events = receiver.accepted_events("invoice.payment_failed", "customer.subscription.updated")
    assert events["customer.subscription.updated"].data.object.status == "past_due"
    assert events["customer.subscription.updated"].data.previous_attributes.status == "active"

    assert control(sandbox, "POST", f"/_sandbox/invoices/{invoice.id}/pay")[0] == 200  # the payer fixed the card
    assert client.v1.subscriptions.retrieve(subscription.id).status == "active"


# plan changes and cancellation

def test_plan_change_invoices_prorations_by_the_seconds_left(client, sandbox, clock, receiver):
    subscription = paid_subscription(client, sandbox)  # Pro, 2000 a month
    item = subscription["items"].data[0]
    length = item.current_period_end - item.current_period_start
    clock.advance(length // 4)  # a quarter used: three quarters of each price remain
    bigger = make_price(client, "max_monthly", 5000, name="Max")

    changed = client.v1.subscriptions.update(subscription.id, params={
        "items": [{"id": item.id, "price": bigger.id}], "proration_behavior": "always_invoice",
        "metadata": {"plan_code": "max_monthly"}})

    assert changed["items"].data[0].price.id == bigger.id
    assert changed["items"].data[0].current_period_end == item.current_period_end  # same interval: same period
    invoice = client.v1.invoices.retrieve(changed.latest_invoice)
    assert (invoice.billing_reason, invoice.status) == ("subscription_update", "paid")
    credit, charge = invoice.lines.data
    assert (credit.amount, charge.amount) == (-1500, 3750)
    assert credit.parent.subscription_item_details.proration and charge.parent.subscription_item_details.proration
    assert (credit.period.start, credit.period.end) == (clock(), item.current_period_end)
    assert invoice.total == invoice.amount_paid == 2250
    assert invoice.parent.subscription_details.metadata.plan_code == "max_monthly"
    events = receiver.accepted_events("customer.subscription.updated", "invoice.paid")
    previous = events["customer.subscription.updated"].data.previous_attributes
    assert previous["items"].data[0].price.id == subscription["items"].data[0].price.id


def test_proration_rounds_to_whole_minor_units(client, sandbox, clock):
    subscription = paid_subscription(client, sandbox, make_price(client, amount=999))
    item = subscription["items"].data[0]
    length = item.current_period_end - item.current_period_start
    clock.advance(length // 3 + 7)
    remaining = item.current_period_end - int(clock())
    bigger = make_price(client, "odd", 1333, name="Odd")
    changed = client.v1.subscriptions.update(subscription.id, params={
        "items": [{"id": item.id, "price": bigger.id}], "proration_behavior": "always_invoice"})
    credit, charge = client.v1.invoices.retrieve(changed.latest_invoice).lines.data

    def rounded(amount):
        return int(Fraction(amount * remaining, length) + Fraction(1, 2))

    assert (credit.amount, charge.amount) == (-rounded(999), rounded(1333))


def test_changing_to_another_interval_restarts_the_period_and_charges_in_full(client, sandbox, clock):
    subscription = paid_subscription(client, sandbox)
    item = subscription["items"].data[0]
    clock.advance((item.current_period_end - item.current_period_start) // 2)
    yearly = make_price(client, "pro_yearly", 20000, "year")

    changed = client.v1.subscriptions.update(subscription.id, params={
        "items": [{"id": item.id, "price": yearly.id}], "proration_behavior": "always_invoice"})

    new_item = changed["items"].data[0]
    assert (new_item.current_period_start, new_item.current_period_end) == (
        clock(), add_interval(int(clock()), "year"))
    lines = client.v1.invoices.retrieve(changed.latest_invoice).lines.data
    assert [line.amount for line in lines] == [-1000, 20000]
    assert lines[1].parent.subscription_item_details.proration is False


def test_create_prorations_are_billed_at_the_next_renewal(client, sandbox, clock):
    subscription = paid_subscription(client, sandbox)
    item = subscription["items"].data[0]
    clock.advance((item.current_period_end - item.current_period_start) // 2)
    changed = client.v1.subscriptions.update(subscription.id, params={
        "items": [{"id": item.id, "price": make_price(client, "max", 4000).id}]})
    assert changed.latest_invoice == subscription.latest_invoice  # nothing billed now

    control(sandbox, "POST", f"/_sandbox/subscriptions/{subscription.id}/renew", {"outcome": "paid"})
    renewal = client.v1.invoices.retrieve(client.v1.subscriptions.retrieve(subscription.id).latest_invoice)
    assert [line.amount for line in renewal.lines.data] == [-1000, 2000, 4000]
    assert renewal.amount_paid == 5000


def test_cancel_at_period_end_then_cancel_now(client, sandbox, receiver):
    subscription = paid_subscription(client, sandbox)
    period_end = subscription["items"].data[0].current_period_end

    scheduled = client.v1.subscriptions.update(subscription.id, params={"cancel_at_period_end": True})
    assert (scheduled.cancel_at_period_end, scheduled.cancel_at, scheduled.status) == (True, period_end, "active")
    updated = receiver.accepted_events("customer.subscription.updated")["customer.subscription.updated"]
    assert updated.data.previous_attributes.cancel_at_period_end is False

    canceled = client.v1.subscriptions.cancel(subscription.id)
    assert canceled.status == "canceled" and canceled.ended_at is not None
    deleted = receiver.accepted_events("customer.subscription.deleted")["customer.subscription.deleted"]
    assert deleted.data.object.status == "canceled"
    with pytest.raises(stripe.InvalidRequestError) as gone:  # as at Stripe: a canceled subscription is gone
        client.v1.subscriptions.cancel(subscription.id)
    assert gone.value.http_status == 404
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.subscriptions.update(subscription.id, params={"cancel_at_period_end": False})


def test_a_subscription_set_to_cancel_ends_at_renewal(client, sandbox):
    subscription = paid_subscription(client, sandbox)
    client.v1.subscriptions.update(subscription.id, params={"cancel_at_period_end": True})
    status, body = control(sandbox, "POST", f"/_sandbox/subscriptions/{subscription.id}/renew", {"outcome": "paid"})
    assert status == 200 and body["invoice"] is None
    ended = client.v1.subscriptions.retrieve(subscription.id)
    assert ended.status == "canceled" and ended.ended_at == subscription["items"].data[0].current_period_end


# prices and lists

def test_a_lookup_key_belongs_to_one_active_price_unless_transferred(client):
    first = make_price(client, "pro")
    with pytest.raises(stripe.InvalidRequestError) as taken:
        make_price(client, "pro", 2500)
    assert taken.value.param == "lookup_key"
    second = client.v1.prices.create(params={
        "currency": "usd", "unit_amount": 2500, "recurring": {"interval": "month"}, "lookup_key": "pro",
        "transfer_lookup_key": True, "product": first.product})
    found = client.v1.prices.list(params={"lookup_keys": ["pro"], "active": True, "limit": 1})
    assert [price.id for price in found.data] == [second.id]
    assert client.v1.prices.retrieve(first.id).lookup_key is None


def test_events_list_newest_first_with_filters_and_cursor(client, clock):
    for number in range(3):
        client.v1.customers.create(params={"email": f"c{number}@example.com"})
        clock.advance(10)
    make_price(client)
    everything = client.v1.events.list()
    assert [event.type for event in everything.data][:3] == ["price.created", "product.created", "customer.created"]
    customers = client.v1.events.list(params={"types": ["customer.created"], "limit": 2})
    assert [e.data.object.email for e in customers.data] == ["c2@example.com", "c1@example.com"] and customers.has_more
    rest = client.v1.events.list(params={"type": "customer.*", "starting_after": customers.data[-1].id})
    assert [e.data.object.email for e in rest.data] == ["c0@example.com"] and not rest.has_more
    recent = client.v1.events.list(params={"type": "customer.created", "created": {"gte": int(clock()) - 15}})
    assert [e.data.object.email for e in recent.data] == ["c2@example.com"]
    assert client.v1.events.retrieve(rest.data[0].id).id == rest.data[0].id


def test_expand_replaces_ids_by_objects(client, sandbox):
    subscription = paid_subscription(client, sandbox)
    expanded = client.v1.subscriptions.retrieve(subscription.id, params={"expand": ["latest_invoice", "customer"]})
    assert expanded.latest_invoice.object == "invoice" and expanded.customer.object == "customer"


def test_updating_a_customer_merges_metadata_and_checks_the_default_card(client, sandbox):
    subscription = paid_subscription(client, sandbox)
    card = client.v1.payment_methods.list(params={"customer": subscription.customer}).data[0]
    updated = client.v1.customers.update(subscription.customer, params={
        "metadata": {"account_id": "", "region": "US"}, "invoice_settings": {"default_payment_method": card.id}})
    assert updated.metadata.to_dict() == {"region": "US"}
    assert updated.invoice_settings.default_payment_method == card.id
    stranger = client.v1.customers.create(params={"email": "bob@example.com"})
    with pytest.raises(stripe.InvalidRequestError):  # not his card
        client.v1.customers.update(stranger.id, params={"invoice_settings": {"default_payment_method": card.id}})


def test_the_control_clock_moves_the_sandbox_forward(client, sandbox, clock):
    status, body = control(sandbox, "POST", "/_sandbox/clock", {"advance_seconds": 3600})
    assert status == 200 and body["now"] == int(clock()) + 3600
    assert client.v1.customers.create(params={"email": "ann@example.com"}).created == int(clock()) + 3600


# idempotency and faults

def test_the_same_idempotency_key_replays_the_first_response(client, sandbox):
    params = {"email": "ann@example.com", "metadata": {"account_id": "a1"}}
    first = client.v1.customers.create(params=params, options={"idempotency_key": "customer-a1"})
    again = client.v1.customers.create(params=params, options={"idempotency_key": "customer-a1"})
    assert again.id == first.id
    assert again.last_response.headers.get("Idempotent-Replayed") == "true"
    assert len(sandbox.store.find("customer")) == 1


def test_the_same_idempotency_key_with_other_params_is_refused(client):
    client.v1.customers.create(params={"email": "ann@example.com"}, options={"idempotency_key": "k"})
    with pytest.raises(stripe.IdempotencyError) as refused:
        client.v1.customers.create(params={"email": "bob@example.com"}, options={"idempotency_key": "k"})
    assert refused.value.http_status == 400


def test_a_key_in_use_by_a_running_request_is_409_and_creates_nothing_twice(client, sandbox, monkeypatch):
    real_parse, entered, release = sandbox_api.parse, threading.Event(), threading.Event()

    def slow_parse(*args, **kwargs):  # holds the first request between claiming the key and working
        entered.set()
        release.wait(5)
        return real_parse(*args, **kwargs)

    monkeypatch.setattr(sandbox_api, "parse", slow_parse)
    params, options = {"email": "ann@example.com"}, {"idempotency_key": "same"}
    first = []
    running = threading.Thread(target=lambda: first.append(client.v1.customers.create(params=params, options=options)))
    running.start()
    assert entered.wait(5)
    monkeypatch.setattr(sandbox_api, "parse", real_parse)

    with pytest.raises(stripe.APIError) as busy:  # Stripe's answer; the SDK retries 409s
        client.v1.customers.create(params=params, options=options)
    assert busy.value.http_status == 409 and busy.value.error.type == "idempotency_error"
    release.set()
    running.join(5)
    again = client.v1.customers.create(params=params, options=options)
    assert again.id == first[0].id and len(sandbox.store.find("customer")) == 1


def test_an_injected_500_raises_api_error_and_does_nothing(client, sandbox):
    control(sandbox, "POST", "/_sandbox/faults", {"method": "POST", "path": "/v1/customers", "kind": "error_500",
                                                 "times": 1})
    with pytest.raises(stripe.APIError) as failed:
        client.v1.customers.create(params={"email": "ann@example.com"})
    assert failed.value.http_status == 500
    assert sandbox.store.find("customer") == []
    client.v1.customers.create(params={"email": "ann@example.com"})  # only the next one failed
    assert len(sandbox.store.find("customer")) == 1


def test_an_injected_timeout_answers_500_late_and_does_nothing(client, sandbox):
    control(sandbox, "POST", "/_sandbox/faults", {"method": "POST", "path": "/v1/customers", "kind": "timeout",
                                                 "delay_seconds": 0.2})
    started = time.monotonic()
    with pytest.raises(stripe.APIError):
        client.v1.customers.create(params={"email": "ann@example.com"})
    assert time.monotonic() - started >= 0.2 and sandbox.store.find("customer") == []


def test_a_retry_after_create_then_timeout_gets_the_same_session(client, sandbox):
    price = make_price(client)
    customer = client.v1.customers.create(params={"email": "ann@example.com"})
    control(sandbox, "POST", "/_sandbox/faults", {"method": "POST", "path": "/v1/checkout/sessions",
                                                 "kind": "create_then_timeout", "times": 1, "delay_seconds": 1.5})
    patient = stripe.StripeClient(KEY, base_addresses={"api": sandbox.url}, max_network_retries=2,
                                  http_client=stripe.RequestsClient(timeout=1))

    session = make_session(patient, price, customer=customer)

    assert [s["id"] for s in sandbox.store.find("checkout.session")] == [session.id]
    posts = [r for r in control(sandbox, "GET", "/_sandbox/requests")[1]
             if r["path"] == "/v1/checkout/sessions"]
    assert len(posts) == 2 and len({r["idempotency_key"] for r in posts}) == 1
    assert {r["object_id"] for r in posts} == {session.id}
    assert [r["replayed"] for r in posts] == [False, True]


def test_the_request_log_shows_what_the_client_sent(client, sandbox):
    make_session(client, make_price(client))
    logged = control(sandbox, "GET", "/_sandbox/requests")[1][-1]
    assert (logged["method"], logged["path"], logged["status"]) == ("POST", "/v1/checkout/sessions", 200)
    assert logged["params"]["line_items"][0]["quantity"] == "1"
    assert logged["params"]["subscription_data"]["metadata"]["checkout_id"] == "chk-1"
    assert logged["idempotency_key"] and logged["stripe_version"] == stripe.api_version


# webhook delivery

def test_a_refused_webhook_is_retried_until_accepted(client, sandbox, receiver):
    receiver.answers = [500, 500]
    client.v1.customers.create(params={"email": "ann@example.com"})
    receiver.wait_until(lambda deliveries: len(deliveries) == 3)
    assert [d["status"] for d in receiver.deliveries] == [500, 500, 200]
    assert len({d["body"] for d in receiver.deliveries}) == 1  # the same bytes each time
    event = control(sandbox, "GET", "/_sandbox/events")[1][0]
    assert [(a["attempt"], a["status_code"]) for a in event["delivery_attempts"]] == [(1, 500), (2, 500), (3, 200)]
    assert client.v1.events.retrieve(event["id"]).pending_webhooks == 0


def test_webhooks_sent_while_paused_are_lost(client, sandbox, receiver):
    control(sandbox, "POST", "/_sandbox/webhooks/pause")
    lost = client.v1.customers.create(params={"email": "lost@example.com"})
    deadline = time.monotonic() + 5
    while not control(sandbox, "GET", "/_sandbox/events")[1][0]["delivery_attempts"]:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    control(sandbox, "POST", "/_sandbox/webhooks/resume")
    client.v1.customers.create(params={"email": "found@example.com"})
    receiver.accepted_events("customer.created")
    time.sleep(0.1)  # a dropped delivery is never retried: nothing more arrives
    emails = [json.loads(d["body"])["data"]["object"]["email"] for d in receiver.deliveries]
    assert emails == ["found@example.com"]
    attempts = control(sandbox, "GET", "/_sandbox/events")[1][0]["delivery_attempts"]
    assert [a["outcome"] for a in attempts] == ["dropped"]
    found = client.v1.events.list(params={"type": "customer.created"}).data  # reconciliation still sees it
    assert lost.id in [event.data.object.id for event in found]


def test_webhooks_failing_arrive_late_and_an_event_can_be_resent(client, sandbox, receiver):
    control(sandbox, "POST", "/_sandbox/webhooks/pause", {"mode": "fail"})
    late = client.v1.customers.create(params={"email": "late@example.com"})
    deadline = time.monotonic() + 5
    while not control(sandbox, "GET", "/_sandbox/events")[1][0]["delivery_attempts"]:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert receiver.deliveries == []  # failed unsent, as if the portal were down
    control(sandbox, "POST", "/_sandbox/webhooks/resume")
    receiver.accepted_events("customer.created")  # a later retry of the same event
    attempts = control(sandbox, "GET", "/_sandbox/events")[1][0]["delivery_attempts"]
    assert attempts[0]["outcome"] == "failed" and attempts[-1]["outcome"] == "delivered"

    event_id = control(sandbox, "GET", "/_sandbox/events")[1][0]["id"]
    assert control(sandbox, "POST", f"/_sandbox/webhooks/{event_id}/redeliver") == (200, {"redelivering": event_id})
    receiver.wait_until(lambda deliveries: len([d for d in deliveries if d["status"] == 200]) == 2)
    first, second = [d for d in receiver.deliveries if d["status"] == 200]
    assert first["body"] == second["body"] and json.loads(second["body"])["data"]["object"]["id"] == late.id
    assert control(sandbox, "POST", "/_sandbox/webhooks/evt_nosuch/redeliver")[0] == 404


# errors

def test_a_wrong_api_key_is_an_authentication_error(sandbox):
    stranger = stripe.StripeClient("sk_test_wrong", base_addresses={"api": sandbox.url}, max_network_retries=0)
    with pytest.raises(stripe.AuthenticationError):
        stranger.v1.customers.retrieve("cus_anything")


def test_an_unknown_id_is_an_invalid_request_with_404(client):
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.subscriptions.retrieve("sub_doesnotexist")
    assert missing.value.http_status == 404 and missing.value.code == "resource_missing"


def test_an_unknown_parameter_is_refused_like_stripe(client):
    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.customers.create(params={"emali": "typo@example.com"})
    assert refused.value.param == "emali" and "unknown parameter" in str(refused.value)


def test_an_unknown_route_is_a_stripe_shaped_404(sandbox):
    response = requests.get(f"{sandbox.url}/v1/nothing_here", headers={"Authorization": f"Bearer {KEY}"}, timeout=5)
    assert response.status_code == 404 and response.json()["error"]["type"] == "invalid_request_error"


# persistence across restarts (STRIPE_SANDBOX_STATE_FILE)

def _client_of(handle):
    return stripe.StripeClient(KEY, base_addresses={"api": handle.url}, max_network_retries=0)


def test_objects_survive_a_restart_with_the_same_state_file(receiver, clock, tmp_path):
    path = tmp_path / "var" / "stripe_sandbox.json"  # the folder is made on the first save
    options = dict(port=0, webhook_url=receiver.url, clock=clock, retry_scale=0.01, state_file=str(path))
    first = start_sandbox(**options)
    try:
        client = _client_of(first)
        price = make_price(client)
        subscription = paid_subscription(client, first, price)
        bob = client.v1.customers.create(params={"email": "bob@example.com"}, options={"idempotency_key": "bob-1"})
        customers = [customer.id for customer in client.v1.customers.list().data]
        receiver.accepted_events("customer.created", "customer.subscription.created")
        control(first, "POST", "/_sandbox/clock", {"advance_seconds": 3600})
        control(first, "POST", "/_sandbox/faults", {"path": "/v1/customers", "kind": "error_500", "times": 5})
        control(first, "POST", "/_sandbox/webhooks/pause")
        event_ids = [event["id"] for event in control(first, "GET", "/_sandbox/events")[1]]
    finally:
        first.stop()
    saved = json.loads(path.read_text())
    assert (saved["format"], saved["version"]) == ("stripe-sandbox-state", 2)

    second = start_sandbox(**options)
    try:
        client = _client_of(second)
        assert client.v1.prices.retrieve(price.id).to_dict() == price.to_dict()
        assert [found.id for found in client.v1.prices.list(params={"lookup_keys": ["pro_monthly"]}).data] == [price.id]
        assert client.v1.subscriptions.retrieve(subscription.id).to_dict() == subscription.to_dict()
        assert client.v1.customers.retrieve(subscription.customer).email == "ann@example.com"
        replayed = client.v1.customers.create(params={"email": "bob@example.com"}, options={"idempotency_key": "bob-1"})
        assert replayed.id == bob.id and replayed.last_response.headers.get("Idempotent-Replayed") == "true"
        assert control(second, "GET", "/_sandbox/clock")[1]["offset_seconds"] == 3600
        events = control(second, "GET", "/_sandbox/events")[1]
        assert [event["id"] for event in events] == event_ids
        created = next(event for event in events if event["type"] == "customer.created")
        assert "delivered" in [attempt["outcome"] for attempt in created["delivery_attempts"]]
        # faults and the paused flag belong to the run that set them
        assert control(second, "GET", "/_sandbox/faults")[1]["faults"] == [] and not second.store.webhooks_paused
        newer = client.v1.customers.create(params={"email": "cy@example.com"})  # the creation order carries on
        assert [customer.id for customer in client.v1.customers.list().data] == [newer.id, *customers]
    finally:
        second.stop()


def test_changes_are_saved_while_running_atomically(tmp_path):
    path = tmp_path / "stripe_sandbox.json"
    handle = start_sandbox(port=0, state_file=str(path))
    try:
        customer = _client_of(handle).v1.customers.create(params={"email": "ann@example.com"})
        deadline = time.monotonic() + 3
        while not (path.exists() and customer.id in path.read_text()):  # no stop needed: a crash keeps it
            assert time.monotonic() < deadline, "the change was not saved"
            time.sleep(0.02)
    finally:
        handle.stop()
    assert [entry.name for entry in tmp_path.iterdir()] == [path.name]  # no temporary files left behind


@pytest.mark.parametrize("content", [
    b"{\"format\": \"stripe-sandbox-st",  # cut short
    b"\xff\xfe not text",
    b"[]",
    b'{"format": "cashfree-sandbox-state", "version": 1, "state": {}}',  # another sandbox's file
    b'{"format": "stripe-sandbox-state", "version": 99, "state": {}}',
    b'{"format": "stripe-sandbox-state", "version": 1, "state": {}}',  # before paid invoices kept their payments
    b'{"format": "stripe-sandbox-state", "version": 2, "state": {"objects": []}}',
], ids=["truncated", "binary", "not-an-object", "foreign", "other-version", "version-1", "wrong-shape"])
def test_a_corrupt_or_foreign_state_file_starts_empty_without_crashing(tmp_path, caplog, content):
    path = tmp_path / "stripe_sandbox.json"
    path.write_bytes(content)
    with caplog.at_level("WARNING"):
        handle = start_sandbox(port=0, state_file=str(path))
    try:
        assert "unusable" in caplog.text and not handle.store.objects
        (aside,) = tmp_path.glob("stripe_sandbox.json.unreadable-*")  # kept, not overwritten
        assert aside.read_bytes() == content
        client = _client_of(handle)
        assert client.v1.customers.list().data == []
        customer = client.v1.customers.create(params={"email": "ann@example.com"})
    finally:
        handle.stop()
    again = start_sandbox(port=0, state_file=str(path))
    try:
        assert _client_of(again).v1.customers.retrieve(customer.id).email == "ann@example.com"
    finally:
        again.stop()


def test_without_a_state_file_nothing_is_written(tmp_path, monkeypatch):
    from services.gateway_stripe.sandbox import SandboxConfig

    assert SandboxConfig().state_file is None and SandboxConfig.from_env({}).state_file is None
    assert SandboxConfig.from_env({"STRIPE_SANDBOX_STATE_FILE": "var/stripe_sandbox.json"}).state_file == (
        "var/stripe_sandbox.json")
    monkeypatch.chdir(tmp_path)
    handle = start_sandbox(port=0)
    try:
        assert handle.state is None
        client = _client_of(handle)
        client.v1.customers.create(params={"email": "ann@example.com"})
        make_price(client)
    finally:
        handle.stop()
    assert list(tmp_path.iterdir()) == []


# payment links (what gateway_stripe's create_payment_link / cancel_payment_link send and expect)

LINK_METADATA = {"account_id": "acct-1", "link_id": "L1", "plan_code": "pro_monthly"}
LINK_SUCCESS_URL = "https://portal.test/links/L1/paid"


def link_params(price, **extra):
    """Exactly what stripe_api.create_payment_link sends."""
    return {
        "line_items": [{"price": price.id, "quantity": 1}],
        "metadata": LINK_METADATA,
        "subscription_data": {"metadata": LINK_METADATA},
        "restrictions": {"completed_sessions": {"limit": 1}},
        "after_completion": {"type": "redirect", "redirect": {"url": LINK_SUCCESS_URL}},
        **extra,
    }


def make_link(client, price=None, key="link-L1", **extra):
    return client.v1.payment_links.create(params=link_params(price or make_price(client), **extra),
                                          options={"idempotency_key": key})


def deactivate(client, link):
    """Exactly what stripe_api.deactivate_payment_link sends."""
    return client.v1.payment_links.update(link.id, params={"active": False},
                                          options={"idempotency_key": f"deactivate-{link.id}"})


def sessions_of(client, link, status=None):
    """What stripe_api.checkout_sessions_of_link asks."""
    params = {"payment_link": link.id, "limit": 10, **({"status": status} if status else {})}
    return [session.id for session in client.v1.checkout.sessions.list(params=params).data]


def test_a_payment_link_has_the_fixture_keys_and_echoes_what_was_asked(client, sandbox, receiver):
    link = make_link(client)
    assert link.id.startswith("plink_") and link.object == "payment_link"
    assert (link.active, link.url, link.currency) == (True, f"{sandbox.public_url}/b/{link.id}", "usd")
    assert link.metadata.to_dict() == LINK_METADATA
    assert link.subscription_data.metadata.to_dict() == LINK_METADATA
    assert link.restrictions.completed_sessions.to_dict() == {"count": 0, "limit": 1}
    assert link.after_completion.to_dict() == {"type": "redirect", "redirect": {"url": LINK_SUCCESS_URL}}
    assert client.v1.payment_links.retrieve(link.id).to_dict() == link.to_dict()
    created = receiver.accepted_events("payment_link.created")["payment_link.created"]
    assert created.data.object.id == link.id and created.request.idempotency_key == "link-L1"
    if FIXTURES.exists():
        fixture = json.loads(FIXTURES.read_text())["resources"]["payment_link"]
        assert set(link.to_dict()) == set(fixture)
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.payment_links.retrieve("plink_doesnotexist")
    assert missing.value.http_status == 404 and missing.value.code == "resource_missing"


def test_a_link_is_checked_like_stripe_checks_it(client):
    price = make_price(client)
    one_time = client.v1.prices.create(params={"currency": "usd", "unit_amount": 500, "product": price.product})
    refusals = [
        (link_params(price, after_completion={"type": "redirect"}), "after_completion[redirect][url]"),
        (link_params(price, restrictions={"completed_sessions": {"limit": 0}}),
         "restrictions[completed_sessions][limit]"),
        (link_params(one_time), "line_items[0][price]"),
        ({**link_params(price), "line_items": [{"price": price.id}]}, "line_items[0][quantity]"),
        (link_params(price, custom_field="x"), "custom_field"),
    ]
    for params, param in refusals:
        with pytest.raises(stripe.InvalidRequestError) as refused:
            client.v1.payment_links.create(params=params)
        assert refused.value.param == param, params
    hosted = client.v1.payment_links.create(params={"line_items": [{"price": price.id, "quantity": 2}]})
    assert hosted.after_completion.type == "hosted_confirmation" and hosted.restrictions is None


def test_paying_a_link_on_its_page_starts_a_subscription_for_a_new_customer(client, sandbox, receiver, clock):
    price = make_price(client)
    ann = client.v1.customers.create(params={"email": "ann@example.com", "metadata": {"account_id": "acct-1"}})
    link = make_link(client, price)

    page = requests.get(link.url, timeout=5)
    assert page.status_code == 200 and "Pro" in page.text and "$20.00" in page.text
    assert f"action='{link.id}/pay'" in page.text and f"action='{link.id}/decline'" in page.text
    assert "Pay</button>" in page.text and "Decline</button>" in page.text
    paid = requests.post(f"{link.url}/pay", allow_redirects=False, timeout=5)
    assert paid.status_code == 303 and paid.headers["Location"] == LINK_SUCCESS_URL

    types = ("customer.subscription.created", "invoice.paid", "checkout.session.completed", "payment_link.updated")
    events = receiver.accepted_events(*types)
    completed = events["checkout.session.completed"].data.object
    assert completed.payment_link == link.id
    assert (completed.status, completed.payment_status, completed.mode) == ("complete", "paid", "subscription")
    assert completed.metadata.to_dict() == {} and completed.client_reference_id is None
    subscription = events["customer.subscription.created"].data.object
    assert completed.subscription == subscription.id
    assert subscription.metadata.to_dict() == LINK_METADATA  # from the link's subscription_data
    invoice = events["invoice.paid"].data.object
    assert (invoice.amount_paid, invoice.billing_reason) == (2000, "subscription_create")
    assert invoice.parent.subscription_details.metadata.to_dict() == LINK_METADATA
    assert completed.customer not in (None, ann.id)  # a new customer: the anonymous payer
    payer = client.v1.customers.retrieve(completed.customer)
    assert payer.created == clock() and payer.email.endswith("@example.com") and payer.email != ann.email
    assert payer.invoice_settings.default_payment_method == subscription.default_payment_method

    updated = events["payment_link.updated"].data
    assert updated.object.active is False and updated.object.restrictions.completed_sessions.count == 1
    assert updated.previous_attributes.active is True
    assert updated.previous_attributes.restrictions.completed_sessions.count == 0
    assert [event_type(d) for d in receiver.deliveries if event_type(d) in types][-1] == "payment_link.updated"

    session = client.v1.checkout.sessions.retrieve(completed.id)
    assert session.payment_link == link.id and session.success_url == LINK_SUCCESS_URL
    assert session.url == f"{sandbox.public_url}/checkout/{session.id}"
    assert sessions_of(client, link, "complete") == [session.id] and sessions_of(client, link, "open") == []
    assert client.v1.payment_links.retrieve(link.id).active is False


def test_a_single_use_link_refuses_a_second_payment(client, sandbox):
    link = make_link(client)
    status, session = control(sandbox, "POST", f"/_sandbox/links/{link.id}/pay")
    assert status == 200 and session["payment_link"] == link.id and session["status"] == "complete"
    assert client.v1.subscriptions.retrieve(session["subscription"]).metadata.to_dict() == LINK_METADATA

    page = requests.get(link.url, timeout=5)
    assert page.status_code == 200 and "no longer active" in page.text and "<button" not in page.text
    again = requests.post(f"{link.url}/pay", allow_redirects=False, timeout=5)
    assert again.status_code == 409 and "no longer active" in again.text
    status, body = control(sandbox, "POST", f"/_sandbox/links/{link.id}/pay")
    assert status == 409 and body["error"]["code"] == "payment_link_inactive"
    assert requests.post(f"{link.url}/start", allow_redirects=False, timeout=5).status_code == 409
    assert len(sandbox.store.find("subscription")) == 1 and sessions_of(client, link) == [session["id"]]
    assert client.v1.payment_links.retrieve(link.id).restrictions.completed_sessions.count == 1
    with pytest.raises(stripe.InvalidRequestError) as refused:  # its one use is spent
        client.v1.payment_links.update(link.id, params={"active": True})
    assert refused.value.param == "active"


def test_declining_on_a_link_charges_nothing_and_returns_to_its_page(client, sandbox, receiver):
    link = make_link(client)
    declined = requests.post(f"{link.url}/decline", allow_redirects=False, timeout=5)
    assert declined.status_code == 303 and declined.headers["Location"] == link.url
    assert sessions_of(client, link) == [] and sandbox.store.find("subscription") == []
    assert client.v1.payment_links.retrieve(link.id).active is True
    assert "Pay</button>" in requests.get(link.url, timeout=5).text
    assert requests.get(f"{sandbox.public_url}/b/plink_nope", timeout=5).status_code == 404


def test_a_deactivated_link_refuses_payment(client, sandbox, receiver):
    link = make_link(client)
    inactive = deactivate(client, link)
    assert inactive.active is False
    replayed = deactivate(client, link)  # the adapter's retry: the same answer
    assert replayed.last_response.headers.get("Idempotent-Replayed") == "true" and replayed.active is False
    updated = receiver.accepted_events("payment_link.updated")["payment_link.updated"]
    assert updated.data.object.active is False and updated.data.previous_attributes.to_dict() == {"active": True}
    assert updated.request.idempotency_key == f"deactivate-{link.id}"

    page = requests.get(link.url, timeout=5)
    assert "no longer active" in page.text and "Pay</button>" not in page.text
    refused = requests.post(f"{link.url}/pay", allow_redirects=False, timeout=5)
    assert refused.status_code == 409 and sandbox.store.find("checkout.session") == []
    assert sandbox.store.find("subscription") == []

    changed = client.v1.payment_links.update(link.id, params={"active": True, "metadata": {"plan_code": "",
                                                                                          "note": "again"}})
    assert changed.active is True and changed.metadata.to_dict() == {"account_id": "acct-1", "link_id": "L1",
                                                                      "note": "again"}
    assert "Pay</button>" in requests.get(link.url, timeout=5).text


def test_a_session_started_before_the_link_was_cancelled_can_be_expired_and_not_paid(client, sandbox, receiver):
    link = make_link(client)
    started = requests.post(f"{link.url}/start", allow_redirects=False, timeout=5)
    assert started.status_code == 303
    session_url = started.headers["Location"]
    session_id = session_url.rsplit("/", 1)[1]
    assert session_url == f"{sandbox.public_url}/checkout/{session_id}"
    page = requests.get(session_url, timeout=5)
    assert page.status_code == 200 and "Pay</button>" in page.text and "$20.00" in page.text

    # gateway_stripe's cancel_payment_link: deactivate, nothing completed, expire what is open
    deactivate(client, link)
    assert sessions_of(client, link, "complete") == []
    assert sessions_of(client, link, "open") == [session_id]
    expired = client.v1.checkout.sessions.expire(session_id)
    assert (expired.status, expired.payment_link) == ("expired", link.id)

    paid = requests.post(f"{session_url}/pay", allow_redirects=False, timeout=5)
    assert paid.status_code == 409 and "no longer open" in paid.text
    assert control(sandbox, "POST", f"/_sandbox/checkout/{session_id}/pay")[0] == 409
    assert sandbox.store.find("subscription") == []
    assert sessions_of(client, link, "expired") == [session_id] and sessions_of(client, link, "open") == []
    assert client.v1.payment_links.retrieve(link.id).restrictions.completed_sessions.count == 0
    event = receiver.accepted_events("checkout.session.expired")["checkout.session.expired"]
    assert event.data.object.payment_link == link.id


def test_a_started_session_left_open_can_still_be_paid_after_deactivation(client, sandbox, receiver):
    """As at Stripe: deactivating a link closes its page, not the sessions already opened from it
    (which is why the adapter expires them)."""
    link = make_link(client)
    status, session = control(sandbox, "POST", f"/_sandbox/links/{link.id}/start")
    assert status == 200 and (session["status"], session["payment_link"]) == ("open", link.id)
    deactivate(client, link)
    paid = requests.post(f"{session['url']}/pay", allow_redirects=False, timeout=5)
    assert paid.status_code == 303 and paid.headers["Location"] == LINK_SUCCESS_URL
    assert sessions_of(client, link, "complete") == [session["id"]]
    counted = client.v1.payment_links.retrieve(link.id)
    assert counted.active is False and counted.restrictions.completed_sessions.count == 1
    completed = receiver.accepted_events("checkout.session.completed")["checkout.session.completed"]
    assert completed.data.object.payment_link == link.id


def test_sessions_are_listed_by_payment_link_and_status(client, sandbox, clock):
    price = make_price(client)
    multi = make_link(client, price, key="link-multi", restrictions={"completed_sessions": {"limit": 3}})
    other = make_link(client, price, key="link-other")
    own = make_session(client, price)  # a checkout of the portal's own: no payment link
    paid_ids = []
    for _ in range(2):
        clock.advance(1)
        paid_ids.append(control(sandbox, "POST", f"/_sandbox/links/{multi.id}/pay")[1]["id"])
    clock.advance(1)
    open_id = control(sandbox, "POST", f"/_sandbox/links/{multi.id}/start")[1]["id"]
    other_id = control(sandbox, "POST", f"/_sandbox/links/{other.id}/start")[1]["id"]

    assert sessions_of(client, multi) == [open_id, *reversed(paid_ids)]  # newest first
    assert sessions_of(client, multi, "complete") == list(reversed(paid_ids))
    assert sessions_of(client, multi, "open") == [open_id]
    assert sessions_of(client, other, "open") == [other_id] and sessions_of(client, other, "complete") == []
    assert sessions_of(client, multi, "expired") == []
    page = client.v1.checkout.sessions.list(params={"payment_link": multi.id, "limit": 1})
    assert [s.id for s in page.data] == [open_id] and page.has_more
    unfiltered = [s.id for s in client.v1.checkout.sessions.list(params={"limit": 100}).data]
    assert own.id in unfiltered and len(unfiltered) == 5
    assert client.v1.payment_links.retrieve(multi.id).active is True  # 2 of 3 uses
    clock.advance(DAY)  # the open one runs out
    assert sessions_of(client, multi, "expired") == [open_id]


def test_creating_a_link_is_idempotent(client, sandbox):
    price = make_price(client)
    first = make_link(client, price)
    again = make_link(client, price)
    assert again.id == first.id and again.last_response.headers.get("Idempotent-Replayed") == "true"
    assert len(sandbox.store.find("payment_link")) == 1
    with pytest.raises(stripe.IdempotencyError):
        make_link(client, price, metadata={"account_id": "someone-else"})


def test_create_then_timeout_three_times_makes_one_link_and_every_attempt_times_out(client, sandbox):
    price = make_price(client)
    control(sandbox, "POST", "/_sandbox/faults", {"method": "POST", "path": "/v1/payment_links",
                                                 "kind": "create_then_timeout", "times": 3, "delay_seconds": 1.0})
    patient = stripe.StripeClient(KEY, base_addresses={"api": sandbox.url}, max_network_retries=2,
                                  http_client=stripe.RequestsClient(timeout=0.4))
    with pytest.raises(stripe.APIConnectionError):  # the first attempt and both retries time out
        make_link(patient, price)

    posts = [r for r in control(sandbox, "GET", "/_sandbox/requests")[1] if r["path"] == "/v1/payment_links"]
    assert [r["replayed"] for r in posts] == [False, True, True]
    assert {r["idempotency_key"] for r in posts} == {"link-L1"}
    (made,) = sandbox.store.find("payment_link")
    assert {r["object_id"] for r in posts} == {made["id"]}
    assert control(sandbox, "GET", "/_sandbox/faults")[1]["faults"] == []

    later = make_link(client, price)  # the adapter's next try: the same key gets the same link at once
    assert later.id == made["id"] and later.last_response.headers.get("Idempotent-Replayed") == "true"
    assert len(sandbox.store.find("payment_link")) == 1


def test_a_link_survives_a_restart_with_the_same_state_file(receiver, clock, tmp_path):
    path = tmp_path / "stripe_sandbox.json"
    options = dict(port=0, webhook_url=receiver.url, clock=clock, retry_scale=0.01, state_file=str(path))
    first = start_sandbox(**options)
    try:
        client = _client_of(first)
        price = make_price(client)
        multi = make_link(client, price, key="link-multi", restrictions={"completed_sessions": {"limit": 2}})
        paid = control(first, "POST", f"/_sandbox/links/{multi.id}/pay")[1]
        multi = client.v1.payment_links.retrieve(multi.id)
    finally:
        first.stop()
    second = start_sandbox(**options)
    try:
        client = _client_of(second)
        assert client.v1.payment_links.retrieve(multi.id).to_dict() == multi.to_dict()
        assert multi.restrictions.completed_sessions.count == 1
        assert client.v1.checkout.sessions.retrieve(paid["id"]).payment_link == multi.id
        assert make_link(client, price, key="link-multi", restrictions={"completed_sessions": {"limit": 2}}).id == (
            multi.id)  # the idempotent answer too
        assert requests.post(f"{multi.url.replace(first.public_url, second.public_url)}/pay", allow_redirects=False,
                             timeout=5).status_code == 303
        assert client.v1.payment_links.retrieve(multi.id).active is False  # the second of two uses
    finally:
        second.stop()


# the payments behind paid invoices (what the adapter reads to refund a payment)

def paid_payments_of(client, invoice_id):
    """What the adapter asks: the invoice's paid InvoicePayments."""
    return client.v1.invoice_payments.list(params={"invoice": invoice_id, "status": "paid"}).data


def payment_intent_of(client, invoice_id):
    (payment,) = paid_payments_of(client, invoice_id)
    return client.v1.payment_intents.retrieve(payment.payment.payment_intent)


def decline_card(sandbox, customer_id, declines=True):
    status, body = control(sandbox, "POST", f"/_sandbox/customers/{customer_id}/card", {"declines": declines})
    assert status == 200 and body == {"customer": customer_id, "declines": declines}, body


def test_every_paid_invoice_has_a_succeeded_payment_intent_and_charge(client, sandbox, clock):
    subscription = paid_subscription(client, sandbox)
    control(sandbox, "POST", f"/_sandbox/links/{make_link(client, make_price(client, 'link', 3000)).id}/pay")
    clock.advance(DAY)
    client.v1.subscriptions.update(subscription.id, params={
        "items": [{"id": subscription["items"].data[0].id, "price": make_price(client, "max", 5000).id}],
        "proration_behavior": "always_invoice"})
    control(sandbox, "POST", f"/_sandbox/subscriptions/{subscription.id}/renew", {"outcome": "paid"})
    failed = control(sandbox, "POST", f"/_sandbox/subscriptions/{subscription.id}/renew", {"outcome": "failed"})[1]
    assert control(sandbox, "POST", f"/_sandbox/invoices/{failed['invoice']['id']}/pay")[0] == 200

    invoices = client.v1.invoices.list(params={"status": "paid", "limit": 100}).data
    assert sorted(invoice.billing_reason for invoice in invoices) == [
        "subscription_create", "subscription_create", "subscription_cycle", "subscription_cycle",
        "subscription_update"]
    for invoice in invoices:
        (payment,) = paid_payments_of(client, invoice.id)
        assert (payment.invoice, payment.amount_paid, payment.currency) == (invoice.id, invoice.amount_paid, "usd")
        assert payment.payment.type == "payment_intent"
        assert payment.status_transitions.paid_at == invoice.status_transitions.paid_at
        intent = client.v1.payment_intents.retrieve(payment.payment.payment_intent)
        assert (intent.status, intent.amount_received, intent.customer) == (
            "succeeded", invoice.amount_paid, invoice.customer)
        charge = client.v1.charges.retrieve(intent.latest_charge)
        assert (charge.status, charge.paid, charge.amount, charge.payment_intent) == (
            "succeeded", True, invoice.amount_paid, intent.id)
        assert (charge.amount_refunded, charge.refunded, charge.payment_method_details.card.last4) == (0, False, "4242")


def test_an_open_invoice_paid_later_succeeds_on_the_same_payment_intent(client, sandbox):
    subscription = paid_subscription(client, sandbox)
    invoice_id = control(sandbox, "POST", f"/_sandbox/subscriptions/{subscription.id}/renew",
                         {"outcome": "failed"})[1]["invoice"]["id"]
    (attempt,) = client.v1.invoice_payments.list(params={"invoice": invoice_id}).data
    assert (attempt.status, attempt.amount_paid, attempt.amount_requested) == ("open", None, 2000)
    assert paid_payments_of(client, invoice_id) == []
    declined = client.v1.payment_intents.retrieve(attempt.payment.payment_intent)
    assert declined.status == "requires_payment_method" and declined.last_payment_error.code == "card_declined"
    assert client.v1.charges.retrieve(declined.latest_charge).status == "failed"

    control(sandbox, "POST", f"/_sandbox/invoices/{invoice_id}/pay")
    intent = payment_intent_of(client, invoice_id)
    assert intent.id == declined.id and intent.status == "succeeded"
    charges = client.v1.charges.list(params={"payment_intent": intent.id}).data
    assert [(charge.id, charge.status) for charge in charges] == [
        (intent.latest_charge, "succeeded"), (declined.latest_charge, "failed")]


def test_an_invoice_that_asks_for_nothing_has_no_payment(client, sandbox, clock):
    subscription = paid_subscription(client, sandbox)
    clock.advance(DAY)
    downgraded = client.v1.subscriptions.update(subscription.id, params={
        "items": [{"id": subscription["items"].data[0].id, "price": make_price(client, "mini", 500).id}],
        "proration_behavior": "always_invoice"})
    invoice = client.v1.invoices.retrieve(downgraded.latest_invoice)
    assert (invoice.status, invoice.amount_paid) == ("paid", 0) and invoice.total < 0  # a credit, nobody refunded
    assert client.v1.invoice_payments.list(params={"invoice": invoice.id}).data == []


# refunds

def test_a_refund_returns_the_rest_of_the_charge_once_per_idempotency_key(client, sandbox, receiver):
    subscription = paid_subscription(client, sandbox)
    intent = payment_intent_of(client, subscription.latest_invoice)
    params = {"payment_intent": intent.id, "reason": "duplicate", "metadata": {"purchase_id": "p-1"}}

    refund = client.v1.refunds.create(params=params, options={"idempotency_key": "refund-p-1"})

    assert (refund.status, refund.amount, refund.currency, refund.reason) == ("succeeded", 2000, "usd", "duplicate")
    assert (refund.payment_intent, refund.charge) == (intent.id, intent.latest_charge)
    assert refund.metadata.to_dict() == {"purchase_id": "p-1"}
    charge = client.v1.charges.retrieve(intent.latest_charge)
    assert (charge.amount_refunded, charge.refunded) == (2000, True)
    assert client.v1.refunds.retrieve(refund.id).to_dict() == refund.to_dict()
    assert [r.id for r in client.v1.refunds.list(params={"payment_intent": intent.id}).data] == [refund.id]
    assert client.v1.invoices.retrieve(subscription.latest_invoice).status == "paid"  # as at Stripe
    events = receiver.accepted_events("refund.created", "charge.refunded")
    created = events["refund.created"]
    assert created.data.object.id == refund.id and created.request.idempotency_key == "refund-p-1"
    refunded = events["charge.refunded"].data
    assert (refunded.object.id, refunded.object.amount_refunded, refunded.object.refunded) == (charge.id, 2000, True)
    assert (refunded.previous_attributes.amount_refunded, refunded.previous_attributes.refunded) == (0, False)

    replayed = client.v1.refunds.create(params=params, options={"idempotency_key": "refund-p-1"})
    assert replayed.id == refund.id and replayed.last_response.headers.get("Idempotent-Replayed") == "true"
    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.refunds.create(params=params, options={"idempotency_key": "refund-p-2"})
    assert (refused.value.http_status, refused.value.code) == (400, "charge_already_refunded")
    assert len(sandbox.store.find("refund")) == 1


def test_partial_refunds_by_charge_or_payment_intent_until_nothing_is_left(client, sandbox):
    subscription = paid_subscription(client, sandbox)
    intent = payment_intent_of(client, subscription.latest_invoice)
    first = client.v1.refunds.create(params={"charge": intent.latest_charge, "amount": 500})
    with pytest.raises(stripe.InvalidRequestError) as too_large:
        client.v1.refunds.create(params={"payment_intent": intent.id, "amount": 1600})
    assert (too_large.value.http_status, too_large.value.code, too_large.value.param) == (400, "amount_too_large",
                                                                                            "amount")
    assert "$15.00" in str(too_large.value)
    rest = client.v1.refunds.create(params={"payment_intent": intent.id})

    assert (first.amount, rest.amount) == (500, 1500)
    charge = client.v1.charges.retrieve(intent.latest_charge)
    assert (charge.amount_refunded, charge.refunded) == (2000, True)
    assert [r.id for r in client.v1.refunds.list(params={"charge": charge.id}).data] == [rest.id, first.id]


def test_a_refund_needs_a_succeeded_payment(client, sandbox):
    subscription = paid_subscription(client, sandbox)
    paid_intent = payment_intent_of(client, subscription.latest_invoice)
    open_invoice = control(sandbox, "POST", f"/_sandbox/subscriptions/{subscription.id}/renew",
                           {"outcome": "failed"})[1]["invoice"]["id"]
    (attempt,) = client.v1.invoice_payments.list(params={"invoice": open_invoice}).data
    declined = client.v1.payment_intents.retrieve(attempt.payment.payment_intent)
    refusals = [
        ({"payment_intent": declined.id}, 400, "payment_intent"),
        ({"charge": declined.latest_charge}, 400, "charge"),
        ({"payment_intent": paid_intent.id, "charge": declined.latest_charge}, 400, "charge"),
        ({"payment_intent": paid_intent.id, "amount": 0}, 400, "amount"),
        ({"reason": "duplicate"}, 400, None),
        ({"payment_intent": "pi_doesnotexist"}, 404, "payment_intent"),
    ]
    for params, status, param in refusals:
        with pytest.raises(stripe.InvalidRequestError) as refused:
            client.v1.refunds.create(params=params)
        assert (refused.value.http_status, refused.value.param) == (status, param), params
    assert sandbox.store.find("refund") == []
    assert client.v1.charges.retrieve(paid_intent.latest_charge).amount_refunded == 0


# voiding invoices

def test_voiding_an_open_invoice_cancels_its_payment_and_only_open_ones_can_be(client, sandbox, receiver):
    subscription = paid_subscription(client, sandbox)
    invoice_id = control(sandbox, "POST", f"/_sandbox/subscriptions/{subscription.id}/renew",
                         {"outcome": "failed"})[1]["invoice"]["id"]

    voided = client.v1.invoices.void_invoice(invoice_id)

    assert (voided.status, voided.status_transitions.voided_at) == ("void", sandbox.store.now())
    assert receiver.accepted_events("invoice.voided")["invoice.voided"].data.object.status == "void"
    (payment,) = client.v1.invoice_payments.list(params={"invoice": invoice_id}).data
    assert payment.status == "canceled" and payment.status_transitions.canceled_at == sandbox.store.now()
    assert client.v1.payment_intents.retrieve(payment.payment.payment_intent).status == "canceled"
    for not_open in (invoice_id, subscription.latest_invoice):  # void now; paid
        with pytest.raises(stripe.InvalidRequestError) as refused:
            client.v1.invoices.void_invoice(not_open)
        assert refused.value.http_status == 400 and "open" in str(refused.value)
    assert control(sandbox, "POST", f"/_sandbox/invoices/{invoice_id}/pay")[0] == 409
    assert client.v1.invoices.list(params={"subscription": subscription.id, "status": "void"}).data[0].id == (
        invoice_id)


# the saved card (POST /_sandbox/customers/{id}/card)

def test_a_declining_card_fails_renewals_without_an_outcome_until_it_pays_again(client, sandbox):
    subscription = paid_subscription(client, sandbox)
    renew = f"/_sandbox/subscriptions/{subscription.id}/renew"
    decline_card(sandbox, subscription.customer)
    assert control(sandbox, "POST", renew)[1]["invoice"]["status"] == "open"
    assert client.v1.subscriptions.retrieve(subscription.id).status == "past_due"
    assert control(sandbox, "POST", renew)[1]["invoice"]["status"] == "open"  # sticky
    assert control(sandbox, "POST", renew, {"outcome": "paid"})[1]["invoice"]["status"] == "paid"  # told: paid

    decline_card(sandbox, subscription.customer, False)
    assert control(sandbox, "POST", renew)[1]["invoice"]["status"] == "paid"
    assert client.v1.subscriptions.retrieve(subscription.id).status == "active"


def test_the_card_control_is_checked(sandbox, client):
    customer = client.v1.customers.create(params={"email": "ann@example.com"})
    for body in ({"declines": "yes"}, {}):
        status, answer = control(sandbox, "POST", f"/_sandbox/customers/{customer.id}/card", body)
        assert status == 400 and answer["error"]["param"] == "declines"
    status, answer = control(sandbox, "POST", "/_sandbox/customers/cus_nosuch/card", {"declines": True})
    assert status == 404 and answer["error"]["code"] == "resource_missing"


def test_a_declined_upgrade_applies_at_once_and_goes_past_due_by_default(client, sandbox, clock, receiver):
    subscription = paid_subscription(client, sandbox)
    clock.advance(DAY)
    decline_card(sandbox, subscription.customer)
    bigger = make_price(client, "max", 5000)
    changed = client.v1.subscriptions.update(subscription.id, params={
        "items": [{"id": subscription["items"].data[0].id, "price": bigger.id}],
        "proration_behavior": "always_invoice"})
    assert (changed["items"].data[0].price.id, changed.status, changed.pending_update) == (bigger.id, "past_due", None)
    assert client.v1.invoices.retrieve(changed.latest_invoice).status == "open"
    receiver.accepted_events("invoice.payment_failed")


# pending updates (payment_behavior=pending_if_incomplete)

PENDING_UPDATE_LIFETIME = 23 * 3600


def change_price(client, subscription, price, **extra):
    """What the adapter sends for a plan change that must be paid for before it applies."""
    return client.v1.subscriptions.update(subscription.id, params={
        "items": [{"id": subscription["items"].data[0].id, "price": price.id}],
        "proration_behavior": "always_invoice", "payment_behavior": "pending_if_incomplete", **extra})


def declined_upgrade(client, sandbox, clock, **extra):
    """A Pro subscription a day in, whose upgrade to Max was declined: (subscription, max price, answer)."""
    subscription = paid_subscription(client, sandbox)
    clock.advance(DAY)
    decline_card(sandbox, subscription.customer)
    bigger = make_price(client, "max_monthly", 5000, name="Max")
    return subscription, bigger, change_price(client, subscription, bigger, **extra)


def subscription_updates(receiver, count):
    """Once `count` have arrived, the accepted customer.subscription.updated events (in arrival order,
    which need not be the order they were made in)."""
    def updates(deliveries):
        return [delivery for delivery in deliveries
                if delivery["status"] == 200 and event_type(delivery) == "customer.subscription.updated"]

    receiver.wait_until(lambda deliveries: len(updates(deliveries)) >= count)
    return [stripe.Webhook.construct_event(d["body"], d["headers"]["Stripe-Signature"], WEBHOOK_SECRET)
            for d in updates(receiver.deliveries)]


def without_pending_update(events):
    (event,) = [event for event in events if event.data.object.pending_update is None]
    return event


def test_a_declined_upgrade_waits_as_a_pending_update(client, sandbox, clock, receiver):
    subscription, bigger, changed = declined_upgrade(client, sandbox, clock)

    assert changed.status == "active" and changed.metadata.to_dict() == subscription.metadata.to_dict()
    assert changed["items"].to_dict() == subscription["items"].to_dict()  # nothing of the change applied
    pending = changed.pending_update
    assert pending.expires_at == clock() + PENDING_UPDATE_LIFETIME
    assert [(item.id, item.price.id) for item in pending.subscription_items] == [
        (subscription["items"].data[0].id, bigger.id)]
    assert (pending.billing_cycle_anchor, pending.trial_end, pending.trial_from_plan) == (None, None, None)
    invoice = client.v1.invoices.retrieve(changed.latest_invoice)
    assert (invoice.status, invoice.billing_reason, invoice.amount_paid) == ("open", "subscription_update", 0)
    assert invoice.amount_due > 0 and invoice.id != subscription.latest_invoice
    assert client.v1.subscriptions.retrieve(subscription.id).to_dict() == changed.to_dict()
    failed = receiver.accepted_events("invoice.payment_failed")["invoice.payment_failed"]
    assert failed.data.object.id == invoice.id
    (updated,) = subscription_updates(receiver, 1)
    assert updated.data.previous_attributes.to_dict() == {"latest_invoice": subscription.latest_invoice,
                                                          "pending_update": None}
    assert updated.data.object.pending_update.expires_at == pending.expires_at


def test_cancelling_forgets_the_pending_update_and_leaves_its_invoice_open_to_void(client, sandbox, clock):
    subscription, bigger, changed = declined_upgrade(client, sandbox, clock)

    canceled = client.v1.subscriptions.cancel(subscription.id, params={"invoice_now": False, "prorate": False})

    assert (canceled.status, canceled.pending_update) == ("canceled", None)
    assert client.v1.invoices.retrieve(changed.latest_invoice).status == "open"  # as at Stripe: not voided for us
    assert client.v1.invoices.void_invoice(changed.latest_invoice).status == "void"


def test_paying_the_open_invoice_applies_the_pending_update(client, sandbox, clock, receiver):
    subscription, bigger, changed = declined_upgrade(client, sandbox, clock)
    clock.advance(3600)
    assert control(sandbox, "POST", f"/_sandbox/invoices/{changed.latest_invoice}/pay")[0] == 200

    applied = client.v1.subscriptions.retrieve(subscription.id)
    assert applied.pending_update is None and applied.status == "active"
    item = applied["items"].data[0]
    assert item.price.id == bigger.id and item.current_period_end == subscription["items"].data[0].current_period_end
    assert payment_intent_of(client, changed.latest_invoice).status == "succeeded"
    receiver.accepted_events("customer.subscription.pending_update_applied", "invoice.paid")
    applied_event = without_pending_update(subscription_updates(receiver, 2))
    assert applied_event.data.object["items"].data[0].price.id == bigger.id
    assert applied_event.data.previous_attributes.pending_update.expires_at == changed.pending_update.expires_at


def test_voiding_the_open_invoice_discards_the_pending_update(client, sandbox, clock, receiver):
    subscription, bigger, changed = declined_upgrade(client, sandbox, clock)
    client.v1.invoices.void_invoice(changed.latest_invoice)

    kept = client.v1.subscriptions.retrieve(subscription.id)
    assert kept.pending_update is None and kept["items"].data[0].price.id == subscription["items"].data[0].price.id
    discarded = without_pending_update(subscription_updates(receiver, 2))
    assert discarded.data.previous_attributes.pending_update.expires_at == changed.pending_update.expires_at
    assert discarded.data.object["items"].data[0].price.id == subscription["items"].data[0].price.id


def test_a_pending_update_expires_after_23_hours_and_its_invoice_is_voided(client, sandbox, clock, receiver):
    subscription, bigger, changed = declined_upgrade(client, sandbox, clock)
    clock.advance(PENDING_UPDATE_LIFETIME - 1)
    assert client.v1.subscriptions.retrieve(subscription.id).pending_update is not None
    clock.advance(1)

    kept = client.v1.subscriptions.retrieve(subscription.id)  # the sandbox catches up before it answers
    assert kept.pending_update is None and kept["items"].data[0].price.id == subscription["items"].data[0].price.id
    events = receiver.accepted_events("customer.subscription.pending_update_expired", "invoice.voided")
    assert events["invoice.voided"].data.object.id == changed.latest_invoice
    assert client.v1.invoices.retrieve(changed.latest_invoice).status == "void"
    assert control(sandbox, "POST", f"/_sandbox/invoices/{changed.latest_invoice}/pay")[0] == 409


def test_a_pending_update_survives_a_restart_and_still_expires(receiver, clock, tmp_path):
    options = dict(port=0, webhook_url=receiver.url, clock=clock, retry_scale=0.01,
                   state_file=str(tmp_path / "stripe_sandbox.json"))
    first = start_sandbox(**options)
    try:
        subscription, bigger, changed = declined_upgrade(_client_of(first), first, clock)
    finally:
        first.stop()
    second = start_sandbox(**options)
    try:
        client = _client_of(second)
        assert client.v1.subscriptions.retrieve(subscription.id).pending_update.to_dict() == (
            changed.pending_update.to_dict())
        clock.advance(PENDING_UPDATE_LIFETIME)
        assert client.v1.subscriptions.retrieve(subscription.id).pending_update is None
        assert client.v1.invoices.retrieve(changed.latest_invoice).status == "void"
    finally:
        second.stop()


def test_a_renewal_discards_a_pending_update_before_billing_the_old_price(client, sandbox, clock):
    subscription, bigger, changed = declined_upgrade(client, sandbox, clock)
    decline_card(sandbox, subscription.customer, False)
    renewal = control(sandbox, "POST", f"/_sandbox/subscriptions/{subscription.id}/renew")[1]

    assert renewal["subscription"]["pending_update"] is None
    assert renewal["invoice"]["amount_paid"] == 2000  # Pro, not Max
    assert client.v1.invoices.retrieve(changed.latest_invoice).status == "void"


def test_a_second_change_replaces_the_pending_one(client, sandbox, clock, receiver):
    subscription, bigger, changed = declined_upgrade(client, sandbox, clock)
    other = make_price(client, "team_monthly", 7000, name="Team")
    again = change_price(client, subscription, other)

    assert [item.price.id for item in again.pending_update.subscription_items] == [other.id]
    assert client.v1.invoices.retrieve(changed.latest_invoice).status == "void"
    assert client.v1.invoices.retrieve(again.latest_invoice).status == "open"
    receiver.accepted_events("customer.subscription.pending_update_expired")


def test_a_paid_upgrade_with_pending_if_incomplete_applies_at_once(client, sandbox, clock):
    subscription = paid_subscription(client, sandbox)
    clock.advance(DAY)
    bigger = make_price(client, "max", 5000)
    changed = change_price(client, subscription, bigger, metadata={"plan_code": "max"}, cancel_at_period_end=False)
    assert (changed["items"].data[0].price.id, changed.pending_update, changed.status) == (bigger.id, None, "active")
    assert changed.metadata.plan_code == "max"
    assert client.v1.invoices.retrieve(changed.latest_invoice).status == "paid"


def test_metadata_and_cancel_at_period_end_wait_with_the_pending_update(client, sandbox, clock):
    subscription, bigger, changed = declined_upgrade(client, sandbox, clock, metadata={"plan_code": "max_monthly"},
                                                     cancel_at_period_end=True)
    assert changed.metadata.to_dict() == subscription.metadata.to_dict() and changed.cancel_at_period_end is False
    assert changed.pending_update.metadata.to_dict() == {"plan_code": "max_monthly"}
    assert changed.pending_update.cancel_at_period_end is True

    control(sandbox, "POST", f"/_sandbox/invoices/{changed.latest_invoice}/pay")
    applied = client.v1.subscriptions.retrieve(subscription.id)
    assert applied.metadata.to_dict() == {**subscription.metadata.to_dict(), "plan_code": "max_monthly"}
    assert (applied.cancel_at_period_end, applied.cancel_at) == (True, applied["items"].data[0].current_period_end)


def test_pending_if_incomplete_refuses_what_pending_updates_cannot_hold(client, sandbox):
    subscription = paid_subscription(client, sandbox)
    decline_card(sandbox, subscription.customer)
    card = client.v1.payment_methods.list(params={"customer": subscription.customer}).data[0]
    with pytest.raises(stripe.InvalidRequestError) as refused:
        change_price(client, subscription, make_price(client, "max", 5000), default_payment_method=card.id,
                     cancellation_details={"comment": "upgrade"})
    assert (refused.value.http_status, refused.value.param) == (400, "default_payment_method")
    assert "`default_payment_method`, `cancellation_details` are not supported" in str(refused.value)
    assert client.v1.subscriptions.retrieve(subscription.id).to_dict() == subscription.to_dict()
    assert len(client.v1.invoices.list(params={"subscription": subscription.id}).data) == 1


# what the adapter's cancel and reconciliation ask

def test_cancel_now_without_invoicing_and_the_paid_invoices_of_a_subscription(client, sandbox, receiver):
    subscription = paid_subscription(client, sandbox)
    renew = f"/_sandbox/subscriptions/{subscription.id}/renew"
    cycle = control(sandbox, "POST", renew, {"outcome": "paid"})[1]["invoice"]
    control(sandbox, "POST", renew, {"outcome": "failed"})

    paid = client.v1.invoices.list(params={"subscription": subscription.id, "status": "paid"}).data
    assert [invoice.id for invoice in paid] == [cycle["id"], subscription.latest_invoice]
    canceled = client.v1.subscriptions.cancel(subscription.id, params={"invoice_now": False, "prorate": False})
    assert (canceled.status, canceled.ended_at) == ("canceled", sandbox.store.now())
    assert len(client.v1.invoices.list(params={"subscription": subscription.id}).data) == 3  # nothing invoiced
    receiver.accepted_events("customer.subscription.deleted")


# the account (GET /v1/account)

def test_the_account_is_the_sandboxes_own_and_each_sandbox_can_be_another(client, sandbox, receiver, clock):
    from services.gateway_stripe.sandbox import SandboxConfig
    from services.gateway_stripe.sandbox.config import DEFAULT_ACCOUNT_ID

    account = client.v1.accounts.retrieve_current()
    assert (account.id, account.object, account.country, account.default_currency) == (
        DEFAULT_ACCOUNT_ID, "account", "US", "usd")
    assert account.charges_enabled and account.settings.dashboard.display_name == "Billing portal sandbox"
    assert client.v1.accounts.retrieve_current().to_dict() == account.to_dict()

    other = start_sandbox(port=0, webhook_url=receiver.url, clock=clock, account_id="acct_1OtherAccount0000")
    try:
        assert _client_of(other).v1.accounts.retrieve_current().id == "acct_1OtherAccount0000"
    finally:
        other.stop()
    assert SandboxConfig.from_env({}).account_id == DEFAULT_ACCOUNT_ID
    assert SandboxConfig.from_env({"STRIPE_SANDBOX_ACCOUNT_ID": "acct_1Live"}).account_id == "acct_1Live"
    stranger = stripe.StripeClient("sk_test_wrong", base_addresses={"api": sandbox.url}, max_network_retries=0)
    with pytest.raises(stripe.AuthenticationError):
        stranger.v1.accounts.retrieve_current()
