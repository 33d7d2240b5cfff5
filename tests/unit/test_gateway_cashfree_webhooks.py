"""gateway_cashfree's webhook intake: Cashfree's signature and age checks, each event stored once,
and Cashfree's subscription and order events turned into the same gateway.* facts as Stripe's."""
import hashlib
import json
import time
from datetime import datetime, timezone
from unittest import mock

import pytest
from nameko.testing.services import worker_factory
from sqlalchemy import select

from services.gateway_cashfree import service as cashfree_service
from services.gateway_cashfree.models import CashfreePlan, CashfreeSubscription, Outbox, WebhookEvent
from services.gateway_cashfree.service import GatewayCashfreeService, cashfree_phone, signature_of
from shared.errors import BadRequest

SECRET = "cf_sandbox_secret"
ACCOUNT = "0b5e7c1e-5b1a-4c55-9e0e-0d7f6a1b2c3d"
CHECKOUT = "7d6c5b4a-3e2f-4a1b-8c9d-0e1f2a3b4c5d"
SUBSCRIPTION = "chk_7d6c5b4a3e2f4a1b8c9d0e1f2a3b4c5d"
AUTHORISED_AT = "2026-11-01T10:00:00+05:30"


def headers_for(body, secret=SECRET, at_ms=None, key=None):
    timestamp = str(at_ms if at_ms is not None else int(time.time() * 1000))
    headers = {"x-webhook-timestamp": timestamp, "x-webhook-signature": signature_of(timestamp, body, secret),
               "x-webhook-version": "2025-01-01"}
    if key:
        headers["x-idempotency-key"] = key
    return headers


def webhook(kind, data, event_time="2026-11-01T10:00:05+05:30"):
    return json.dumps({"data": data, "event_time": event_time, "type": kind})


def payment(status="SUCCESS", payment_type="AUTH", amount="1499.00", payment_id="cfp_1", date=AUTHORISED_AT):
    return {"subscription_id": SUBSCRIPTION, "cf_subscription_id": "cfsub_1", "payment_id": payment_id,
            "cf_payment_id": payment_id, "payment_status": status, "payment_type": payment_type,
            "payment_amount": amount, "payment_initiated_date": date, "payment_schedule_date": date}


def status_changed(status="ACTIVE", plan_id="starter_monthly_inr_149900", amount="1499.00"):
    return {"subscription_details": {
        "subscription_id": SUBSCRIPTION, "cf_subscription_id": "cfsub_1", "subscription_status": status,
        "plan_details": {"plan_id": plan_id, "plan_recurring_amount": amount, "plan_currency": "INR"},
        "subscription_tags": {"account_id": ACCOUNT, "checkout_id": CHECKOUT, "plan_code": "starter_monthly"}}}


def order_payment(status="SUCCESS", amount="999.50"):
    return {"order": {"order_id": "order_1", "order_amount": amount, "order_currency": "INR",
                      "order_tags": {"account_id": ACCOUNT}},
            "payment": {"cf_payment_id": f"pay_{status}", "payment_status": status, "payment_amount": amount,
                        "payment_currency": "INR"}}


@pytest.fixture
def adapter(db_session):
    service = worker_factory(GatewayCashfreeService, db=db_session("gateway_cashfree"))
    service.db.add(CashfreePlan(plan_id="starter_monthly_inr_149900", plan_code="starter_monthly", interval="month"))
    service.db.add(CashfreePlan(plan_id="growth_monthly_inr_399900", plan_code="growth_monthly", interval="month"))
    service.db.add(CashfreeSubscription(subscription_id=SUBSCRIPTION, account_id=ACCOUNT, checkout_id=CHECKOUT,
                                        plan_code="starter_monthly", plan_label="Starter (monthly)", amount=149900,
                                        interval="month"))
    service.db.commit()
    return service


def deliver(adapter, body, **header_options):
    return adapter.handle_webhook(headers_for(body, **header_options), body)["status"]


def facts(adapter, kind=None):
    rows = adapter.db.scalars(select(Outbox).order_by(Outbox.created_at)).all()
    return [(row.event_type, row.payload) for row in rows if kind is None or row.event_type == kind]


def stored(adapter):
    return adapter.db.scalars(select(WebhookEvent.id)).all()


@pytest.mark.parametrize("make_headers, code", [
    (lambda body: headers_for(body, secret="forged"), "SIGNATURE_INVALID"),
    (lambda body: headers_for(body, at_ms=int((time.time() - 301) * 1000)), "SIGNATURE_INVALID"),  # stale
    (lambda body: headers_for(body + " "), "SIGNATURE_INVALID"),  # tampered after signing
    (lambda body: {"x-webhook-timestamp": str(int(time.time() * 1000))}, "SIGNATURE_MISSING"),
    (lambda body: {}, "SIGNATURE_MISSING"),
])
def test_unverifiable_webhooks_are_refused_and_nothing_is_stored(adapter, make_headers, code):
    body = webhook("SUBSCRIPTION_PAYMENT_SUCCESS", payment())
    with pytest.raises(BadRequest) as raised:
        adapter.handle_webhook(make_headers(body), body)
    assert raised.value.error_code == code
    assert stored(adapter) == [] and facts(adapter) == []


def stored_id(body):
    return f"{json.loads(body)['type']}:{hashlib.sha256(body.encode()).hexdigest()}"


def test_an_event_is_known_by_the_body_cashfree_signed(adapter):
    """Cashfree's retry re-signs the same body with a new timestamp: still one event."""
    body = webhook("SUBSCRIPTION_PAYMENT_SUCCESS", payment())
    now_ms = int(time.time() * 1000)
    deliveries = [deliver(adapter, body, at_ms=now_ms - 60_000, key="wh_1"),
                  deliver(adapter, body, at_ms=now_ms, key="wh_1"), deliver(adapter, body)]
    assert deliveries == ["accepted", "duplicate", "duplicate"]
    assert stored(adapter) == [stored_id(body)]
    assert len(facts(adapter, "gateway.payment_succeeded")) == 1


def test_the_unsigned_idempotency_key_neither_names_nor_splits_an_event(adapter):
    """x-idempotency-key is not signed: a delivery sent again under a new key is the same event, and
    a key longer than any id column (300 characters) is no failure."""
    body = webhook("SUBSCRIPTION_PAYMENT_SUCCESS", payment())
    assert deliver(adapter, body, key="k" * 300) == "accepted"
    assert deliver(adapter, body, key="a-fresh-key") == "duplicate"
    assert stored(adapter) == [stored_id(body)]
    assert len(facts(adapter, "gateway.payment_succeeded")) == 1


def test_different_bodies_under_one_idempotency_key_are_two_events(adapter):
    first = webhook("SUBSCRIPTION_PAYMENT_SUCCESS", payment())
    renewal = webhook("SUBSCRIPTION_PAYMENT_SUCCESS", payment(payment_type="CHARGE", payment_id="cfp_2",
                                                              date="2026-12-01T10:00:00+05:30"))
    assert [deliver(adapter, first, key="wh_1"), deliver(adapter, renewal, key="wh_1")] == ["accepted", "accepted"]
    assert sorted(stored(adapter)) == sorted([stored_id(first), stored_id(renewal)])
    assert len(facts(adapter, "gateway.payment_succeeded")) == 2


def test_an_authorised_subscription_completes_its_checkout_and_starts_a_period(adapter):
    deliver(adapter, webhook("SUBSCRIPTION_AUTH_STATUS", payment()))
    deliver(adapter, webhook("SUBSCRIPTION_PAYMENT_SUCCESS", payment()))
    deliver(adapter, webhook("SUBSCRIPTION_STATUS_CHANGED", status_changed()))
    [(_, completed)] = facts(adapter, "gateway.checkout_completed")
    assert (completed["checkout_id"], completed["gateway_subscription_id"]) == (CHECKOUT, SUBSCRIPTION)
    [(_, paid)] = facts(adapter, "gateway.payment_succeeded")
    start = datetime.fromisoformat(AUTHORISED_AT)
    assert (paid["amount"], paid["currency"], paid["period_start"]) == (149900, "inr", int(start.timestamp()))
    assert paid["description"] == "Starter (monthly), first payment"
    assert paid["period_end"] == int(start.replace(month=12).timestamp())
    snapshots = [snapshot for _, snapshot in facts(adapter, "gateway.subscription_updated")]
    assert snapshots  # when the first period was paid, and again with Cashfree's status change
    for snapshot in snapshots:
        assert (snapshot["status"], snapshot["plan_code"], snapshot["amount"]) == ("active", "starter_monthly", 149900)
        assert snapshot["current_period_end"] == paid["period_end"]
    assert completed["collected"] == {"amount": 149900, "currency": "inr"}


def test_a_renewal_moves_the_period_and_a_failed_one_is_a_failed_payment(adapter):
    deliver(adapter, webhook("SUBSCRIPTION_PAYMENT_SUCCESS", payment()))
    deliver(adapter, webhook("SUBSCRIPTION_PAYMENT_SUCCESS", payment(payment_type="CHARGE", payment_id="cfp_2",
                                                                    date="2026-12-01T10:00:00+05:30")))
    deliver(adapter, webhook("SUBSCRIPTION_PAYMENT_FAILED", payment("FAILED", "CHARGE", payment_id="cfp_3",
                                                                     date="2027-01-01T10:00:00+05:30")))
    row = adapter.db.get(CashfreeSubscription, SUBSCRIPTION)
    assert row.current_period_end == datetime(2027, 1, 1, 4, 30, tzinfo=timezone.utc)
    [(_, failed)] = facts(adapter, "gateway.payment_failed")
    assert (failed["gateway_invoice_id"], failed["amount"]) == ("cfp_3", 149900)


def test_a_declined_authorisation_fails_the_checkout_and_bills_nothing(adapter):
    deliver(adapter, webhook("SUBSCRIPTION_AUTH_STATUS", payment("FAILED")))
    deliver(adapter, webhook("SUBSCRIPTION_PAYMENT_FAILED", payment("FAILED")))
    assert [(kind, fact.get("reason")) for kind, fact in facts(adapter)] == [("gateway.checkout_failed", "declined")]


def test_a_never_authorised_subscription_that_is_cancelled_only_closes_its_checkout(adapter):
    deliver(adapter, webhook("SUBSCRIPTION_STATUS_CHANGED", status_changed("CANCELLED")))
    assert [(kind, fact.get("reason")) for kind, fact in facts(adapter)] == [("gateway.checkout_failed", "expired")]


@pytest.mark.parametrize("cashfree_status, ours", [
    ("ACTIVE", "active"), ("ON_HOLD", "past_due"), ("CANCELLED", "cancelled"), ("CUSTOMER_CANCELLED", "cancelled"),
    ("COMPLETED", "cancelled"), ("PAUSED", "past_due"),
])
def test_cashfree_statuses_map_to_ours(adapter, cashfree_status, ours):
    deliver(adapter, webhook("SUBSCRIPTION_AUTH_STATUS", payment()))
    deliver(adapter, webhook("SUBSCRIPTION_STATUS_CHANGED", status_changed(cashfree_status)))
    assert facts(adapter, "gateway.subscription_updated")[-1][1]["status"] == ours


GROWTH = {"code": "growth_monthly", "name": "Growth", "interval": "month", "amount": 399900, "currency": "inr"}


def change_to(adapter, plan, at="2026-11-15T10:00:00+05:30"):
    """The change_subscription RPC (CHANGE_PLAN at Cashfree, answered as Cashfree answers), at `at`."""
    with mock.patch.object(cashfree_service, "cashfree_api") as api, \
            mock.patch.object(cashfree_service, "utc_now", return_value=datetime.fromisoformat(at)):
        api.call.return_value = {"subscription_status": "ACTIVE", "plan_details": {"plan_id": "any"}}
        api.account_scope.return_value = "cf_sandbox_client@127.0.0.1"
        snapshot = adapter.change_subscription({"change_id": "chg-1", "gateway_subscription_id": SUBSCRIPTION,
                                                "account_id": ACCOUNT, "checkout_id": CHECKOUT, "plan": plan})
    _, path, body, *_ = api.call.call_args.args
    assert (path, body["action"]) == (f"/subscriptions/{SUBSCRIPTION}/manage", "CHANGE_PLAN")
    return snapshot


def change_to_growth(adapter):
    snapshot = change_to(adapter, GROWTH)
    assert (snapshot["plan_code"], snapshot["pending_plan_code"], snapshot["amount"]) == (
        "starter_monthly", "growth_monthly", 149900)


def test_a_plan_change_is_the_plan_only_once_its_first_charge_succeeds(adapter):
    """Cashfree charges a changed plan from the next cycle: until a charge of the new plan's amount
    succeeds, the plan paid for (and its quota) stays, whatever Cashfree's plan_details already say."""
    deliver(adapter, webhook("SUBSCRIPTION_AUTH_STATUS", payment()))
    change_to_growth(adapter)

    deliver(adapter, webhook("SUBSCRIPTION_STATUS_CHANGED", status_changed(
        plan_id="growth_monthly_inr_399900", amount="3999.00"), event_time="2026-11-02T10:00:00+05:30"))
    snapshot = facts(adapter, "gateway.subscription_updated")[-1][1]
    assert (snapshot["plan_code"], snapshot["pending_plan_code"], snapshot["amount"]) == (
        "starter_monthly", "growth_monthly", 149900)

    deliver(adapter, webhook("SUBSCRIPTION_PAYMENT_SUCCESS", payment(
        payment_type="CHARGE", amount="3999.00", payment_id="cfp_2", date="2026-12-01T10:00:00+05:30"),
        event_time="2026-12-01T10:00:05+05:30"))
    snapshot = facts(adapter, "gateway.subscription_updated")[-1][1]
    assert (snapshot["plan_code"], snapshot["pending_plan_code"], snapshot["amount"]) == (
        "growth_monthly", None, 399900)
    paid = facts(adapter, "gateway.payment_succeeded")[-1][1]
    assert (paid["amount"], paid["description"]) == (399900, "Growth (monthly), renewal")


@pytest.mark.parametrize("amount, charged_on", [
    # Reconciliation reads every payment again: one of the new plan's amount charged before the
    # change (an earlier plan of that price) must not make the change the plan.
    pytest.param("3999.00", "2026-10-01T10:00:00+05:30", id="an-old-charge-read-again"),
    pytest.param("1499.00", "2026-12-01T10:00:00+05:30", id="a-renewal-still-at-the-old-price"),
])
def test_a_charge_that_is_not_the_new_plans_first_keeps_the_change_pending(adapter, amount, charged_on):
    deliver(adapter, webhook("SUBSCRIPTION_AUTH_STATUS", payment()))
    change_to_growth(adapter)  # on 15 November

    deliver(adapter, webhook("SUBSCRIPTION_PAYMENT_SUCCESS", payment(
        payment_type="CHARGE", amount=amount, payment_id="cfp_2", date=charged_on)))

    row = adapter.db.get(CashfreeSubscription, SUBSCRIPTION)
    adapter.db.refresh(row)
    assert (row.plan_code, row.pending_plan_code) == ("starter_monthly", "growth_monthly")


def test_changing_back_before_the_new_plan_is_charged_drops_the_change(adapter):
    deliver(adapter, webhook("SUBSCRIPTION_AUTH_STATUS", payment()))
    change_to_growth(adapter)

    snapshot = change_to(adapter, {**GROWTH, "code": "starter_monthly", "name": "Starter", "amount": 149900})

    assert (snapshot["plan_code"], snapshot["pending_plan_code"]) == ("starter_monthly", None)


def test_an_order_that_failed_then_succeeded_ends_paid(adapter):
    deliver(adapter, webhook("PAYMENT_FAILED_WEBHOOK", order_payment("FAILED")))
    deliver(adapter, webhook("PAYMENT_SUCCESS_WEBHOOK", order_payment("SUCCESS")))
    assert [kind for kind, _ in facts(adapter)] == ["gateway.payment_failed", "gateway.payment_succeeded"]
    assert facts(adapter, "gateway.payment_succeeded")[0][1]["amount"] == 99950  # ₹999.50, exactly


@pytest.mark.parametrize("late", ["PAYMENT_FAILED_WEBHOOK", "PAYMENT_USER_DROPPED_WEBHOOK"])
def test_only_success_is_final_for_an_order(adapter, late):
    deliver(adapter, webhook("PAYMENT_SUCCESS_WEBHOOK", order_payment("SUCCESS")))
    deliver(adapter, webhook(late, order_payment("FAILED" if "FAILED" in late else "USER_DROPPED")))
    assert [kind for kind, _ in facts(adapter)] == ["gateway.payment_succeeded"]


def test_a_dropped_order_payment_is_a_failed_payment(adapter):
    deliver(adapter, webhook("PAYMENT_USER_DROPPED_WEBHOOK", order_payment("USER_DROPPED")))
    assert [kind for kind, _ in facts(adapter)] == ["gateway.payment_failed"]


def test_events_about_subscriptions_we_did_not_create_are_stored_but_announce_nothing(adapter):
    data = payment()
    data["subscription_id"] = "someone_elses"
    deliver(adapter, webhook("SUBSCRIPTION_PAYMENT_SUCCESS", data))
    deliver(adapter, webhook("SOME_NEW_EVENT_TYPE", {"anything": 1}))
    assert facts(adapter) == [] and len(stored(adapter)) == 2


@pytest.mark.parametrize("method, reference, expected", [
    ("upi", "ann@okaxis", {"type": "upi", "last4": None}),
    ("card", "XXXXXXXXXXXX1111", {"type": "card", "last4": "1111"}),
    ("enach", "HDFC0000000012345", {"type": "netbanking", "last4": None}),
])
def test_payment_methods_are_what_cashfree_says_authorised_the_plan(adapter, monkeypatch, method, reference, expected):
    deliver(adapter, webhook("SUBSCRIPTION_AUTH_STATUS", payment()))
    adapter.db.commit()
    answers = {f"/subscriptions/{SUBSCRIPTION}": {"subscription_status": "ACTIVE", "authorisation_details": {
        "payment_method": method, "authorization_reference": reference}}}
    monkeypatch.setattr("services.gateway_cashfree.cashfree_api.call", lambda method_, path, *a, **k: answers[path])
    [listed] = adapter.list_payment_methods(ACCOUNT)
    assert {"type": listed["type"], "last4": listed["last4"]} == expected
    assert listed["is_default"] is True


def test_the_authorisation_alone_starts_the_first_period(adapter):
    """Webhooks arrive in any order: a status change right after the authorisation already knows the period."""
    deliver(adapter, webhook("SUBSCRIPTION_AUTH_STATUS", payment()))
    deliver(adapter, webhook("SUBSCRIPTION_STATUS_CHANGED", status_changed()))
    snapshot = facts(adapter, "gateway.subscription_updated")[0][1]
    start = datetime.fromisoformat(AUTHORISED_AT)
    assert (snapshot["current_period_start"], snapshot["current_period_end"]) == (
        int(start.timestamp()), int(start.replace(month=12).timestamp()))


def test_a_status_change_without_plan_details_keeps_the_known_price(adapter):
    deliver(adapter, webhook("SUBSCRIPTION_AUTH_STATUS", payment()))
    bare = status_changed()
    del bare["subscription_details"]["plan_details"]
    deliver(adapter, webhook("SUBSCRIPTION_STATUS_CHANGED", bare))
    snapshot = facts(adapter, "gateway.subscription_updated")[0][1]
    assert (snapshot["plan_code"], snapshot["amount"]) == ("starter_monthly", 149900)


def test_a_retried_checkout_sends_cashfree_the_same_request(adapter, monkeypatch):
    """Billing retries a checkout (it died before recording Cashfree's answer) under the same
    idempotency key; a different body under that key is refused by Cashfree, so the retry, an
    hour later, must send the very same one."""
    sent = []

    def cashfree(method, path, idempotency_key=None, body=None):
        sent.append((path, idempotency_key, body))
        return {"subscription_session_id": "session_1"}

    monkeypatch.setattr("services.gateway_cashfree.cashfree_api.call", cashfree)
    moments = iter([datetime(2026, 11, 1, 10, 0, tzinfo=timezone.utc), datetime(2026, 11, 1, 11, 0, tzinfo=timezone.utc)])
    monkeypatch.setattr("services.gateway_cashfree.service.utc_now", lambda: next(moments))
    request = {"checkout_id": CHECKOUT, "account": {"id": ACCOUNT, "email": "ann@example.com", "name": "Ann",
                                                    "phone": "+919812345678"},
               "plan": {"code": "growth_monthly", "name": "Growth", "interval": "month", "amount": 399900,
                        "currency": "inr"},
               "success_url": "http://portal/return", "cancel_url": "http://portal/cancelled",
               "expires_at": 1793530800, "created_at": 1793527200}
    adapter.create_checkout(request)
    adapter.create_checkout(request)
    first, retry = [call for call in sent if call[0] == "/subscriptions"]
    assert first == retry
    assert first[2]["subscription_first_charge_time"].startswith("2026-12-")


@pytest.mark.parametrize("e164, sent", [
    ("+919812345678", "9812345678"),  # Indian: the 10 digits Cashfree asks for
    ("+12015550123", "+12015550123"),  # any other country: as identity keeps it
    ("+447911123456", "+447911123456"),
])
def test_cashfree_is_given_an_indian_phone_as_its_ten_digits_and_any_other_in_e164(e164, sent):
    assert cashfree_phone(e164) == sent


def test_the_payers_phone_goes_to_cashfree_for_subscriptions_and_links(adapter, monkeypatch):
    sent = {}

    def cashfree(method, path, idempotency_key=None, body=None):
        sent[path] = body
        return {"subscription_session_id": "session_1", "link_url": "http://cashfree/link"}

    monkeypatch.setattr("services.gateway_cashfree.cashfree_api.call", cashfree)
    account = {"id": ACCOUNT, "email": "ravi@example.in", "name": "Ravi", "phone": "+919812345678"}
    plan = {"code": "growth_monthly", "name": "Growth", "interval": "month", "amount": 399900, "currency": "inr"}
    adapter.create_checkout({"checkout_id": CHECKOUT, "account": account, "plan": plan,
                             "success_url": "http://portal/return", "cancel_url": "http://portal/cancelled",
                             "expires_at": 1793530800, "created_at": 1793527200})
    adapter.create_payment_link({"link_id": "5e0b3f7a-1c2d-4e5f-8a9b-0c1d2e3f4a5b", "account": account, "plan": plan,
                                 "amount": 399900, "currency": "inr", "expires_at": 1793530800,
                                 "success_url": "http://portal/paid"})

    for path in ("/subscriptions", "/links"):
        assert sent[path]["customer_details"] == {
            "customer_name": "Ravi", "customer_email": "ravi@example.in", "customer_phone": "9812345678"}
