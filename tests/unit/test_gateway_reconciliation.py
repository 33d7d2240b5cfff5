"""The adapters' reconcile and replay_webhook: what the gateway answers goes through the webhook's own
intake, so a fact found both by a webhook and by reconciliation (or replayed) is announced once."""
import copy
from unittest import mock

import pytest
from nameko.testing.services import worker_factory
from sqlalchemy import select

from services.gateway_cashfree import service as cashfree_service
from services.gateway_cashfree.models import CashfreeLink, CashfreeSubscription
from services.gateway_stripe import service as stripe_service
from services.gateway_stripe.models import StripeCustomer, SyncCursor, WebhookEvent
from services.gateway_stripe.service import EVENTS_OVERLAP_SECONDS, GatewayStripeService
from shared.errors import GatewayError, NotFound
from tests.unit import test_gateway_cashfree_webhooks as cf
from tests.unit import test_gateway_stripe_webhooks as st
from tests.unit.test_gateway_cashfree_webhooks import adapter as cashfree  # noqa: F401  (a fixture)


@pytest.fixture
def stripe_adapter(db_session):
    adapter = worker_factory(GatewayStripeService, db=db_session("gateway_stripe"))
    adapter.db.add(StripeCustomer(customer_id="cus_1", account_id=st.ACCOUNT))
    adapter.db.commit()
    return adapter


@pytest.fixture
def stripe_api():
    with mock.patch.object(stripe_service, "stripe_api") as api:
        api.retrieve_checkout_session.return_value = mock.Mock(status="complete")
        yield api


def paid_events():
    return [st.stripe_event("customer.subscription.created", st.subscription(), "evt_sub", created=1_700_000_010),
            st.stripe_event("invoice.paid", st.invoice(), "evt_inv", created=1_700_000_020)]


def test_stripe_events_missed_by_webhooks_are_taken_in_once(stripe_adapter, stripe_api):
    subscription_event, invoice_event = paid_events()
    st.deliver(stripe_adapter, subscription_event)  # this one came by webhook; the invoice's was lost
    stripe_api.events_since.return_value = [copy.deepcopy(subscription_event), copy.deepcopy(invoice_event)]

    answer = stripe_adapter.reconcile({"checkouts": [{"checkout_id": st.CHECKOUT, "gateway_checkout_id": "cs_1",
                                                      "account_id": st.ACCOUNT}], "subscriptions": [], "links": []})

    assert answer["recovered"] == [{"gateway_event_id": "evt_inv", "type": "invoice.paid",
                                    "facts": ["gateway.payment_succeeded"]}]
    assert answer["checkouts"] == {"cs_1": "complete"} and answer["events_read"] == 2
    assert [kind for kind, _ in st.facts(stripe_adapter)] == ["gateway.subscription_updated",
                                                              "gateway.payment_succeeded"]
    assert stripe_adapter.db.get(WebhookEvent, "evt_inv").source == "reconcile"
    assert stripe_api.events_since.call_args.args[0] is None  # no cursor yet: all Stripe keeps
    assert stripe_adapter.db.get(SyncCursor, "events").value == 1_700_000_020

    # The lost webhook arrives late: a duplicate. The next pass reads from the cursor on.
    assert st.deliver(stripe_adapter, invoice_event) == {"status": "duplicate"}
    assert stripe_adapter.reconcile({})["recovered"] == []
    assert stripe_api.events_since.call_args.args[0] == 1_700_000_020 - EVENTS_OVERLAP_SECONDS
    assert len(st.facts(stripe_adapter)) == 2


def test_a_stripe_event_that_cannot_be_taken_in_does_not_hold_up_the_others(stripe_adapter, stripe_api):
    broken = st.stripe_event("invoice.paid", {"customer": "cus_1", "amount_paid": 4900}, "evt_broken",
                             created=1_700_000_005)  # no id, no currency: normalizing it fails
    stripe_api.events_since.return_value = [broken, *paid_events()]
    answer = stripe_adapter.reconcile({})
    assert answer["failed"] == ["evt_broken"]
    assert [r["gateway_event_id"] for r in answer["recovered"]] == ["evt_sub", "evt_inv"]
    assert stripe_adapter.db.get(WebhookEvent, "evt_broken") is None  # nothing half-stored
    # The cursor stays at the broken event, so the next pass reads it again rather than losing it.
    assert stripe_adapter.db.get(SyncCursor, "events").value == 1_700_000_005
    stripe_adapter.reconcile({})
    assert stripe_api.events_since.call_args.args[0] == 1_700_000_005 - EVENTS_OVERLAP_SECONDS


def test_a_stripe_checkout_the_gateway_cannot_find_is_unknown_and_a_silent_event_list_raises(
        stripe_adapter, stripe_api):
    stripe_api.retrieve_checkout_session.side_effect = GatewayError()
    stripe_api.events_since.side_effect = GatewayError()
    with pytest.raises(GatewayError):
        stripe_adapter.reconcile({"checkouts": [{"gateway_checkout_id": "cs_gone"}]})


def test_replaying_a_stripe_event_republishes_only_what_it_did_not_announce(stripe_adapter):
    stranger = st.stripe_event("invoice.paid", {**st.invoice(), "customer": "cus_later", "parent": None},
                               "evt_stranger")
    st.deliver(stripe_adapter, stranger)  # names a customer we did not know yet: no facts
    assert st.facts(stripe_adapter) == []
    stripe_adapter.db.add(StripeCustomer(customer_id="cus_later", account_id=st.ACCOUNT))
    stripe_adapter.db.commit()

    replayed = stripe_adapter.replay_webhook("evt_stranger")
    assert (replayed["status"], replayed["facts"]) == ("republished", ["gateway.payment_succeeded"])
    again = stripe_adapter.replay_webhook("evt_stranger")
    assert (again["status"], again["facts"]) == ("unchanged", [])
    assert len(st.facts(stripe_adapter)) == 1
    with pytest.raises(NotFound):
        stripe_adapter.replay_webhook("evt_never")


# -- Cashfree --------------------------------------------------------------------------------

@pytest.fixture
def cashfree_api():
    with mock.patch.object(cashfree_service, "cashfree_api") as api:
        yield api


def cashfree_answers(api, subscription, payments, links=None):
    def call(method, path, body=None, idempotency_key=None):
        answers = {f"/subscriptions/{cf.SUBSCRIPTION}": subscription,
                   f"/subscriptions/{cf.SUBSCRIPTION}/payments": payments, **(links or {})}
        return copy.deepcopy(answers[path])
    api.call.side_effect = call


def checkout_request():
    return {"checkouts": [{"checkout_id": cf.CHECKOUT, "gateway_checkout_id": cf.SUBSCRIPTION,
                           "account_id": cf.ACCOUNT}]}


def test_a_cashfree_payment_found_by_reconciliation_and_by_a_late_webhook_is_one_fact(cashfree, cashfree_api):
    authorisation = {**cf.payment(), "authorization_details": {"authorization_time": cf.AUTHORISED_AT}}
    cashfree_answers(cashfree_api, cf.status_changed()["subscription_details"], [authorisation])

    answer = cashfree.reconcile(checkout_request())

    assert answer["checkouts"] == {cf.SUBSCRIPTION: "complete"} and answer["failed"] == []
    assert sorted(r["type"] for r in answer["recovered"]) == [
        "gateway.checkout_completed", "gateway.payment_succeeded", "gateway.subscription_updated",
        "gateway.subscription_updated"]  # the first period paid, then Cashfree's status
    row = cashfree.db.scalar(select(CashfreeSubscription))
    assert row.authorized_at is not None and row.gateway_status == "ACTIVE"

    # Cashfree's retries arrive late, under their own event ids: nothing new is announced.
    for kind, data in (("SUBSCRIPTION_AUTH_STATUS", authorisation), ("SUBSCRIPTION_PAYMENT_SUCCESS", cf.payment())):
        assert cf.deliver(cashfree, cf.webhook(kind, data), key=f"late-{kind}") == "accepted"
    assert len(cf.facts(cashfree)) == 4
    assert cashfree.reconcile(checkout_request())["recovered"] == []  # and asking again finds nothing new


def test_a_cashfree_status_is_announced_by_reconciliation_only_when_it_differs(cashfree, cashfree_api):
    cf.deliver(cashfree, cf.webhook("SUBSCRIPTION_AUTH_STATUS", cf.payment()))
    cf.deliver(cashfree, cf.webhook("SUBSCRIPTION_STATUS_CHANGED", cf.status_changed()))
    cashfree_answers(cashfree_api, cf.status_changed()["subscription_details"], [cf.payment()])
    request = {"subscriptions": [{"gateway_subscription_id": cf.SUBSCRIPTION, "account_id": cf.ACCOUNT}]}
    assert cashfree.reconcile(request)["recovered"] == []  # the authorisation's webhook brought all of it

    cashfree_answers(cashfree_api, cf.status_changed("CANCELLED")["subscription_details"], [cf.payment()])
    recovered = cashfree.reconcile(request)["recovered"]
    assert [r["type"] for r in recovered] == ["gateway.subscription_updated"]
    (_, snapshot), = cf.facts(cashfree, "gateway.subscription_updated")[-1:]
    assert snapshot["status"] == "cancelled"


def test_a_cashfree_checkout_never_authorised_is_open_until_cancelled(cashfree, cashfree_api):
    cashfree_answers(cashfree_api, cf.status_changed("INITIALIZED")["subscription_details"], [])
    assert cashfree.reconcile(checkout_request())["checkouts"] == {cf.SUBSCRIPTION: "open"}
    cashfree_answers(cashfree_api, cf.status_changed("CANCELLED")["subscription_details"], [])
    answer = cashfree.reconcile(checkout_request())
    assert answer["checkouts"] == {cf.SUBSCRIPTION: "expired"}
    assert [r["type"] for r in answer["recovered"]] == ["gateway.checkout_failed"]


def test_a_paid_cashfree_link_is_recovered_from_its_order(cashfree, cashfree_api):
    cashfree.db.add(CashfreeLink(cashfree_link_id="lnk_1", link_id="link-1", account_id=cf.ACCOUNT))
    cashfree.db.commit()
    order = {"order_id": "lnk_1_order", "order_amount": "999.50", "order_currency": "INR", "order_status": "PAID",
             "order_tags": {"account_id": cf.ACCOUNT, "link_id": "link-1"}}
    paid = {"cf_payment_id": "pay_9", "payment_status": "SUCCESS", "payment_amount": "999.50",
            "payment_time": "2026-11-01T10:00:00+05:30", "payment_method": {"upi": {"upi_id": "ann@okaxis"}}}
    cashfree_answers(cashfree_api, {}, [], links={
        "/links/lnk_1": {"link_status": "PAID"}, "/links/lnk_1/orders": [order], "/orders/lnk_1_order": order,
        "/orders/lnk_1_order/payments": [{**paid, "payment_status": "FAILED", "cf_payment_id": "pay_8"}, paid]})
    request = {"links": [{"link_id": "link-1", "gateway_link_id": "lnk_1", "account_id": cf.ACCOUNT}]}

    assert sorted(r["type"] for r in cashfree.reconcile(request)["recovered"]) == [
        "gateway.link_paid", "gateway.payment_succeeded"]
    assert cashfree.reconcile(request)["recovered"] == []


def test_a_cashfree_object_that_cannot_be_taken_in_does_not_hold_up_the_others(cashfree, cashfree_api):
    cashfree.db.add(CashfreeLink(cashfree_link_id="lnk_1", link_id="link-1", account_id=cf.ACCOUNT))
    cashfree.db.commit()
    order = {"order_id": "lnk_1_order", "order_amount": "999.50", "order_currency": "INR", "order_status": "PAID",
             "order_tags": {"account_id": cf.ACCOUNT, "link_id": "link-1"}}
    paid = {"cf_payment_id": "pay_9", "payment_status": "SUCCESS", "payment_amount": "999.50",
            "payment_time": "2026-11-01T10:00:00+05:30", "payment_method": {"upi": {"upi_id": "ann@okaxis"}}}
    # The subscription's payments come back as something no handler can read.
    cashfree_answers(cashfree_api, cf.status_changed()["subscription_details"], ["not a payment"], links={
        "/links/lnk_1": {"link_status": "PAID"}, "/links/lnk_1/orders": [order], "/orders/lnk_1_order": order,
        "/orders/lnk_1_order/payments": [paid]})

    answer = cashfree.reconcile({**checkout_request(), "links": [
        {"link_id": "link-1", "gateway_link_id": "lnk_1", "account_id": cf.ACCOUNT}]})

    assert answer["failed"] == [cf.SUBSCRIPTION] and answer["checkouts"] == {cf.SUBSCRIPTION: "unknown"}
    assert sorted(r["type"] for r in answer["recovered"]) == ["gateway.link_paid", "gateway.payment_succeeded"]
    assert sorted(kind for kind, _ in cf.facts(cashfree)) == ["gateway.link_paid", "gateway.payment_succeeded"]


@pytest.mark.parametrize("status", ["BANK_APPROVAL_PENDING", "ACTIVE"])
def test_a_cashfree_checkout_the_payer_went_on_with_is_not_cancelled_when_it_expires(cashfree, cashfree_api, status):
    cashfree_api.call.return_value = {"subscription_id": cf.SUBSCRIPTION, "subscription_status": status}
    with pytest.raises(GatewayError):
        cashfree.expire_checkout(cf.SUBSCRIPTION)
    assert [c.args[:2] for c in cashfree_api.call.call_args_list] == [("GET", f"/subscriptions/{cf.SUBSCRIPTION}")]


def test_a_cashfree_checkout_nobody_authorised_is_cancelled_when_it_expires(cashfree, cashfree_api):
    cashfree_api.call.side_effect = [{"subscription_status": "INITIALIZED"}, {"subscription_status": "CANCELLED"}]
    assert cashfree.expire_checkout(cf.SUBSCRIPTION) == {"status": "CANCELLED"}
    assert cashfree_api.call.call_args_list[1].args[:2] == ("POST", f"/subscriptions/{cf.SUBSCRIPTION}/manage")


def test_replaying_a_cashfree_webhook_changes_nothing_once_processed(cashfree):
    body = cf.webhook("SUBSCRIPTION_PAYMENT_SUCCESS", cf.payment())
    cf.deliver(cashfree, body, key="wh_1")
    event_id = cf.stored_id(body)  # the id it is stored under, whatever the delivery's key
    assert cashfree.replay_webhook(event_id) == {"event_id": event_id, "type": "SUBSCRIPTION_PAYMENT_SUCCESS",
                                                 "status": "unchanged", "facts": []}
    assert len(cf.facts(cashfree)) == 3  # the first period paid: checkout, payment, subscription
    with pytest.raises(NotFound):
        cashfree.replay_webhook("wh_never")
