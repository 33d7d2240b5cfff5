"""The adapters' part in never billing twice and never giving a plan away: what the gateway
collected travels with each purchase, a declined plan change changes nothing, a second purchase is
cancelled and refunded in full, a checkout is closed at the gateway unless it was paid, and at
Cashfree the first period is charged when the mandate's authorisation did not collect it.

The gateways' APIs are replaced by mocks here (the whole flow against the sandboxes is in
tests/e2e/test_money.py); the webhook intake is the real one (tests/unit/test_gateway_*_webhooks.py).
"""
from types import SimpleNamespace
from unittest import mock

import pytest

from services.gateway_cashfree import service as cashfree_service
from services.gateway_cashfree.cashfree_api import rupees
from services.gateway_cashfree.models import CashfreeSubscription
from services.gateway_stripe import service as stripe_service
from services.gateway_stripe import stripe_api as real_stripe_api
from services.gateway_stripe.models import StripePaymentLink
from shared.errors import GatewayError, PaymentDeclined
from tests.unit import test_gateway_cashfree_webhooks as cf
from tests.unit import test_gateway_stripe_webhooks as st
from tests.unit.test_gateway_cashfree_webhooks import adapter as cashfree  # noqa: F401  (a fixture)
from tests.unit.test_gateway_stripe_webhooks import adapter as stripe_adapter  # noqa: F401  (a fixture)


def refused(status, code=None):
    return GatewayError(details={"gateway": "cashfree", "status": status, "code": code})


@pytest.fixture
def stripe_api():
    with mock.patch.object(stripe_service, "stripe_api") as api:
        yield api


@pytest.fixture
def cashfree_api():
    with mock.patch.object(cashfree_service, "cashfree_api") as api:
        yield api


# -- Stripe ------------------------------------------------------------------------------------

def test_a_completed_stripe_checkout_and_link_say_what_they_collected(stripe_adapter):
    st.deliver(stripe_adapter, st.stripe_event("checkout.session.completed", st.checkout_session(), "evt_a"))
    stripe_adapter.db.add(StripePaymentLink(payment_link_id="plink_1", link_id="link-1", account_id=st.ACCOUNT,
                                            scope="test:acct_1"))
    stripe_adapter.db.commit()
    paid_link = {**st.checkout_session(), "id": "cs_link", "payment_link": "plink_1", "amount_total": 1900}
    st.deliver(stripe_adapter, st.stripe_event("checkout.session.completed", paid_link, "evt_b"))

    [(_, completed)] = [fact for fact in st.facts(stripe_adapter) if fact[0] == "gateway.checkout_completed"]
    assert completed["collected"] == {"amount": 4900, "currency": "usd"}
    [(_, link)] = [fact for fact in st.facts(stripe_adapter) if fact[0] == "gateway.link_paid"]
    assert (link["link_id"], link["collected"]) == ("link-1", {"amount": 1900, "currency": "usd"})


def test_a_plan_change_naming_a_price_stripe_lost_makes_it_again_under_a_new_key(stripe_adapter, stripe_api):
    subscription = mock.MagicMock(id="sub_1")
    subscription.__getitem__.side_effect = {"items": SimpleNamespace(data=[SimpleNamespace(id="si_1")])}.__getitem__
    stripe_api.retrieve_subscription.return_value = subscription
    stripe_api.missing_param = real_stripe_api.missing_param
    changed = st.subscription()
    stripe_api.change_subscription_price.side_effect = [
        GatewayError(details={"code": "resource_missing", "param": "items[0][price]"}),
        mock.Mock(pending_update=None, to_dict=lambda: changed)]
    prices = iter(["price_lost", "price_new"])
    with mock.patch.object(stripe_service.GatewayStripeService, "_price_for", side_effect=lambda plan, replacing=None:
                           next(prices)):
        snapshot = stripe_adapter.change_subscription({
            "change_id": "chk-2", "gateway_subscription_id": "sub_1", "account_id": st.ACCOUNT,
            "checkout_id": "chk-2", "plan": {"code": "growth_monthly"}})
    assert [call.args[2] for call in stripe_api.change_subscription_price.call_args_list] == ["price_lost", "price_new"]
    assert snapshot["plan_code"] == "growth_monthly"


def test_a_snapshot_names_the_plan_of_the_price_charged(stripe_adapter):
    """After a plan change the subscription's metadata may still name the plan it was bought with."""
    changed = st.subscription()
    changed["metadata"] = {**st.METADATA, "plan_code": "starter_monthly", "link_id": "link-1"}
    st.deliver(stripe_adapter, st.stripe_event("customer.subscription.updated", changed))
    [(_, snapshot)] = st.facts(stripe_adapter)
    assert (snapshot["plan_code"], snapshot["link_id"]) == ("growth_monthly", "link-1")


def test_a_declined_proration_changes_nothing_and_its_invoice_is_voided(stripe_adapter, stripe_api):
    subscription = mock.MagicMock(id="sub_1")
    subscription.__getitem__.side_effect = {"items": SimpleNamespace(data=[SimpleNamespace(id="si_1")])}.__getitem__
    stripe_api.retrieve_subscription.return_value = subscription
    stripe_api.change_subscription_price.return_value = SimpleNamespace(pending_update={"expires_at": 1},
                                                                        latest_invoice="in_9")
    with mock.patch.object(stripe_service.GatewayStripeService, "_price_for", return_value="price_growth"):
        with pytest.raises(PaymentDeclined):
            stripe_adapter.change_subscription({"change_id": "chk-2", "gateway_subscription_id": "sub_1",
                                                "account_id": st.ACCOUNT, "checkout_id": "chk-2",
                                                "plan": {"code": "growth_monthly"}})
    stripe_api.void_invoice.assert_called_once_with("in_9")


@pytest.mark.parametrize("status, payment_status, subscription_status, outcome", [
    ("expired", "unpaid", None, {"status": "expired"}),
    ("complete", "unpaid", "incomplete_expired", {"status": "complete"}),  # a delayed payment that failed
    ("complete", "unpaid", "incomplete", "pending"),  # a delayed payment still processing
    ("complete", "paid", "active", "complete"),
    ("open", "unpaid", None, None),  # Stripe could not expire it and it is open: a plain failure
])
def test_expiring_a_stripe_checkout_that_is_no_longer_open(stripe_adapter, stripe_api, status, payment_status,
                                                           subscription_status, outcome):
    stripe_api.expire_checkout_session.side_effect = GatewayError(details={"status": 400})
    stripe_api.retrieve_checkout_session.return_value = SimpleNamespace(
        status=status, payment_status=payment_status, subscription="sub_1" if subscription_status else None)
    stripe_api.retrieve_subscription.return_value = SimpleNamespace(status=subscription_status)
    if isinstance(outcome, dict):
        assert stripe_adapter.expire_checkout("cs_1") == outcome
        return
    with pytest.raises(GatewayError) as raised:
        stripe_adapter.expire_checkout("cs_1")
    assert raised.value.details.get("checkout_state") == outcome


def test_cancelling_now_to_settle_a_hold_voids_what_could_revive_it(stripe_adapter, stripe_api):
    stripe_api.cancel_subscription_now.return_value = mock.Mock(to_dict=lambda: st.subscription("canceled"))
    stripe_api.invoices_of.side_effect = lambda subscription, status: [SimpleNamespace(id="in_old")] if status == "open" else []

    snapshot = stripe_adapter.cancel_subscription({"request_id": "settle-1", "gateway_subscription_id": "sub_1",
                                                   "account_id": st.ACCOUNT, "at_period_end": False,
                                                   "void_open_invoices": True})

    assert snapshot["status"] == "cancelled"
    stripe_api.void_invoice.assert_called_once_with("in_old")


def test_a_stripe_purchase_is_cancelled_and_every_payment_refunded(stripe_adapter, stripe_api):
    stripe_api.invoices_of.side_effect = lambda subscription, status: {
        "open": [SimpleNamespace(id="in_open")],
        "paid": [SimpleNamespace(id="in_1", amount_paid=4900), SimpleNamespace(id="in_0", amount_paid=0)]}[status]
    stripe_api.payment_intents_of.return_value = ["pi_1"]
    stripe_api.refund.return_value = SimpleNamespace(id="re_1", amount=4900, currency="usd", created=1_700_000_100)

    answer = stripe_adapter.refund_purchase({"request_id": "settle-1", "account_id": st.ACCOUNT,
                                             "gateway_subscription_id": "sub_2", "gateway_link_id": None,
                                             "reason": "duplicate"})

    stripe_api.cancel_subscription_now.assert_called_once_with("sub_2")
    stripe_api.void_invoice.assert_called_once_with("in_open")
    stripe_api.payment_intents_of.assert_called_once_with("in_1")  # a zero invoice collected nothing
    assert stripe_api.refund.call_args.args[:2] == ("pi_1", "refund-in_1-pi_1")
    assert answer == {"refunds": [{"gateway_invoice_id": "in_1", "gateway_refund_id": "re_1", "amount": 4900,
                                   "currency": "usd", "refunded_at": 1_700_000_100}]}


def test_a_refund_stripe_already_made_is_reported_not_made_again(stripe_adapter, stripe_api):
    stripe_api.invoices_of.side_effect = lambda subscription, status: (
        [SimpleNamespace(id="in_1", amount_paid=4900)] if status == "paid" else [])
    stripe_api.payment_intents_of.return_value = ["pi_1"]
    stripe_api.refund.side_effect = GatewayError(details={"code": "charge_already_refunded"})
    stripe_api.refunds_of.return_value = [SimpleNamespace(id="re_old", amount=4900, currency="usd", created=5)]

    answer = stripe_adapter.refund_purchase({"request_id": "r", "account_id": st.ACCOUNT,
                                             "gateway_subscription_id": "sub_2", "gateway_link_id": None})

    assert [refund["gateway_refund_id"] for refund in answer["refunds"]] == ["re_old"]


# -- Cashfree: the first period is paid only by money collected ----------------------------------

def test_an_authorisation_that_collected_nothing_completes_no_checkout_and_the_first_period_is_charged(
        cashfree, cashfree_api):
    charged = []
    cashfree_api.call.side_effect = lambda method, path, body=None, idempotency_key=None: (
        charged.append((path, body, idempotency_key)) or {"payment_status": "PENDING"})

    cf.deliver(cashfree, cf.webhook("SUBSCRIPTION_AUTH_STATUS", cf.payment(amount="0.00")))  # an e-NACH mandate
    assert charged == []  # the webhook's answer does not wait on Cashfree: the next pass charges
    cashfree.settle_first_payments()

    assert cf.facts(cashfree) == []
    [(path, body, key)] = charged
    assert (path, body["payment_type"], body["payment_amount"], body["payment_id"], key) == (
        "/subscriptions/pay", "CHARGE", rupees(149900), f"first_{cf.SUBSCRIPTION}", f"first-charge-{cf.SUBSCRIPTION}")
    assert body["payment_schedule_date"]  # required by Cashfree for UPI and card mandates
    cashfree.db.rollback()
    assert cashfree.db.get(CashfreeSubscription, cf.SUBSCRIPTION).first_payment == "charged"

    cf.deliver(cashfree, cf.webhook("SUBSCRIPTION_PAYMENT_SUCCESS", cf.payment(
        payment_type="CHARGE", payment_id="cfp_first", date="2026-11-02T10:00:00+05:30")))

    [(_, completed)] = cf.facts(cashfree, "gateway.checkout_completed")
    assert completed["collected"] == {"amount": 149900, "currency": "inr"}
    [(_, paid)] = cf.facts(cashfree, "gateway.payment_succeeded")
    assert (paid["description"], paid["period_start"] is not None) == ("Starter (monthly), first payment", True)


def test_a_first_charge_that_fails_declines_the_checkout_and_cancels_the_mandate(cashfree, cashfree_api):
    calls = []
    cashfree_api.call.side_effect = lambda method, path, body=None, idempotency_key=None: (
        calls.append((method, path, (body or {}).get("action"))) or {"subscription_status": "CANCELLED"})
    cf.deliver(cashfree, cf.webhook("SUBSCRIPTION_AUTH_STATUS", cf.payment(amount="0.00")))

    cashfree.settle_first_payments()  # raises the charge

    cf.deliver(cashfree, cf.webhook("SUBSCRIPTION_PAYMENT_FAILED", cf.payment(
        status="FAILED", payment_type="CHARGE", payment_id="cfp_first")))
    cashfree.settle_first_payments()  # cancels the mandate

    [(_, failed)] = cf.facts(cashfree, "gateway.checkout_failed")
    assert failed["reason"] == "declined"
    assert cf.facts(cashfree, "gateway.payment_failed") == []  # not a bill: nothing was ever paid
    assert ("POST", f"/subscriptions/{cf.SUBSCRIPTION}/manage", "CANCEL") in calls
    cashfree.db.rollback()
    assert cashfree.db.get(CashfreeSubscription, cf.SUBSCRIPTION).first_payment == "failed"


@pytest.mark.parametrize("refusal, state", [(400, "failed"), (422, "failed"), (500, "charge")])
def test_a_first_charge_cashfree_refuses_for_good_declines_the_checkout(cashfree, cashfree_api, refusal, state):
    def call(method, path, body=None, idempotency_key=None):
        if path == "/subscriptions/pay":
            raise refused(refusal)
        return {"subscription_status": "CANCELLED"}

    cashfree_api.call.side_effect = call
    cf.deliver(cashfree, cf.webhook("SUBSCRIPTION_AUTH_STATUS", cf.payment(amount="0.00")))

    cashfree.settle_first_payments()

    cashfree.db.rollback()
    assert cashfree.db.get(CashfreeSubscription, cf.SUBSCRIPTION).first_payment == state
    declined = [fact["reason"] for _, fact in cf.facts(cashfree, "gateway.checkout_failed")]
    assert declined == (["declined"] if state == "failed" else [])  # a 500 is asked again, not given up


def test_a_status_change_to_authorised_completes_the_checkout_when_the_auth_webhook_was_lost(
        cashfree, cashfree_api):
    authorised = cf.status_changed()
    authorised["subscription_details"]["authorisation_details"] = {"authorization_status": "ACTIVE"}
    cashfree_api.call.side_effect = lambda method, path, body=None, idempotency_key=None: {
        f"/subscriptions/{cf.SUBSCRIPTION}/payments": [cf.payment()]}[path]

    cf.deliver(cashfree, cf.webhook("SUBSCRIPTION_STATUS_CHANGED", authorised))
    cashfree.settle_first_payments()  # the next pass (CASHFREE_FIRST_PAYMENT_POLL_SECONDS), not reconciliation

    [(_, completed)] = cf.facts(cashfree, "gateway.checkout_completed")
    assert (completed["checkout_id"], completed["collected"]) == (cf.CHECKOUT, {"amount": 149900, "currency": "inr"})
    assert cashfree.db.get(CashfreeSubscription, cf.SUBSCRIPTION).first_payment == "paid"


def test_a_first_charge_cashfree_cannot_take_now_is_raised_by_the_timer(cashfree, cashfree_api):
    cashfree_api.call.side_effect = GatewayError(details={"gateway": "cashfree"})
    cf.deliver(cashfree, cf.webhook("SUBSCRIPTION_AUTH_STATUS", cf.payment(amount="0.00")))
    cashfree.settle_first_payments()  # Cashfree did not answer
    cashfree.db.rollback()
    assert cashfree.db.get(CashfreeSubscription, cf.SUBSCRIPTION).first_payment == "charge"

    cashfree_api.call.side_effect = None
    cashfree_api.call.return_value = {"payment_status": "PENDING"}
    cashfree.settle_first_payments()

    cashfree.db.rollback()
    assert cashfree.db.get(CashfreeSubscription, cf.SUBSCRIPTION).first_payment == "charged"


# -- Cashfree: closing and refunding -------------------------------------------------------------

@pytest.mark.parametrize("status, outcome", [
    ("CANCELLED", {"status": "CANCELLED"}), ("EXPIRED", {"status": "EXPIRED"}),
    ("ACTIVE", "complete"), ("BANK_APPROVAL_PENDING", "pending"),
])
def test_expiring_a_cashfree_checkout_that_is_no_longer_open(cashfree, cashfree_api, status, outcome):
    cashfree_api.call.return_value = {"subscription_status": status}
    if isinstance(outcome, dict):
        assert cashfree.expire_checkout(cf.SUBSCRIPTION) == outcome
        return
    with pytest.raises(GatewayError) as raised:
        cashfree.expire_checkout(cf.SUBSCRIPTION)
    assert raised.value.details["checkout_state"] == outcome


def test_a_cashfree_purchase_is_cancelled_and_every_collected_payment_refunded(cashfree, cashfree_api):
    posted = []

    def call(method, path, body=None, idempotency_key=None):
        if path.endswith("/payments"):
            return [{**cf.payment(), "cf_payment_id": 101, "payment_id": "auth_1"},
                    {**cf.payment(payment_type="CHARGE"), "cf_payment_id": 102, "payment_id": "charge_1"},
                    {**cf.payment(status="FAILED", payment_type="CHARGE"), "cf_payment_id": 103},
                    {**cf.payment(amount="0.00"), "cf_payment_id": 104}]
        if method == "GET":  # a refund read back
            return {"refund_amount": "1499.00", "refund_id": path.rsplit("/", 1)[-1]}
        posted.append((path, body, idempotency_key))
        if path.endswith("/refunds") and body["refund_id"] == "dup_102":
            raise refused(409)  # made by an earlier attempt whose answer was lost
        return {"refund_amount": body.get("refund_amount"), "refund_id": body.get("refund_id")}

    cashfree_api.call.side_effect = call
    answer = cashfree.refund_purchase({"request_id": "settle-1", "account_id": cf.ACCOUNT,
                                       "gateway_subscription_id": cf.SUBSCRIPTION, "gateway_link_id": None})

    assert posted[0][0] == f"/subscriptions/{cf.SUBSCRIPTION}/manage" and posted[0][1]["action"] == "CANCEL"
    assert [r["gateway_invoice_id"] for r in answer["refunds"]] == ["101", "102"]
    assert {r["amount"] for r in answer["refunds"]} == {149900}
    refunds_asked = [(body["refund_id"], body["payment_id"], key) for path, body, key in posted
                     if path.endswith("/refunds")]
    # keyed by the payment: asking again (a retried settle pass) names the same refunds
    assert refunds_asked == [("dup_101", "auth_1", "dup_101"), ("dup_102", "charge_1", "dup_102")]


def test_a_one_off_link_payment_is_refunded_through_its_order(cashfree, cashfree_api):
    answers = {"/links/lnk_1/orders": [{"order_id": "order_1"}],
               "/orders/order_1": {"order_id": "order_1", "order_status": "PAID", "order_amount": "1499.00",
                                   "order_currency": "INR"}}

    def call(method, path, body=None, idempotency_key=None):
        if method == "POST":
            return {"refund_amount": body["refund_amount"], "refund_id": body["refund_id"]}
        return answers[path]

    cashfree_api.call.side_effect = call
    answer = cashfree.refund_purchase({"request_id": "r", "account_id": cf.ACCOUNT,
                                       "gateway_subscription_id": None, "gateway_link_id": "lnk_1"})

    assert answer["refunds"][0]["gateway_invoice_id"] == "order_1"
    assert (answer["refunds"][0]["amount"], answer["refunds"][0]["currency"]) == (149900, "inr")
