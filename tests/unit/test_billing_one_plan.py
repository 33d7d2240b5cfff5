"""Never bill twice, never give a plan away: billing's side (services/billing/purchases.py and
settlement.py), one worker at a time on a real PostgreSQL database, the gateways mocked.

The same harness as test_billing_service.py. The org (ORG) pays through Stripe; an Indian person's
personal account pays through Cashfree. Each test is a sequence an unlucky customer or an attacker
could produce; what the adapters are asked to do at the gateway is read from the mocks, what
billing decided from what it committed.
"""
from datetime import timedelta
from uuid import UUID, uuid4

import eventlet
import pytest
from nameko.testing.services import worker_factory
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from services.billing.models import Alert, BillingAccount, Checkout, Subscription
from services.billing.service import BillingService
from shared.errors import Conflict, GatewayError, NotFound, PaymentDeclined
from shared.outbox import utc_now
from tests.unit.test_billing_payment_links import (  # noqa: F401  (fixtures)
    indian, link_entrypoints, link_paid, make_link, pay,
)
from tests.unit.test_billing_service import (  # noqa: F401  (fixtures)
    EXPECTED_STARTER_SUBSCRIPTION, NEXT_PERIOD_END, NOW, ORG, PERIOD_END, PERSONAL, account_id, adapter_snapshot,
    billing, bought, deliver, fake_authorize, gateway_event, outbox_events, purchase_events, refused, roles, session,
    subscription_of, team,
)
from tests.unit.workers import end_like_workers

REFUND = {"gateway_invoice_id": "in_2", "gateway_refund_id": "re_1", "amount": 1900, "currency": "usd",
          "refunded_at": NOW + 120}


@pytest.fixture(autouse=True)
def settle_entrypoints(billing, session):
    end_like_workers(billing, session, ("settle_with_gateways", "reconcile"))
    for adapter in (billing.gateway_stripe, billing.gateway_cashfree):
        adapter.expire_checkout.return_value = {"status": "expired"}
        adapter.refund_purchase.return_value = {"refunds": []}
    return billing


def live_subscriptions(session, account_id):
    session.rollback()
    return session.scalars(select(Subscription).where(
        Subscription.account_id == UUID(account_id), Subscription.status.in_(("incomplete", "active", "past_due")))).all()


def history(billing, actor, ref=ORG):
    return [(item["status"], item["amount"], item["description"]) for item in billing.list_history(actor, ref)]


def second_purchase_events(account_id, checkout_id, subscription="sub_2", invoice="in_2"):
    """A hosted checkout's purchase of Starter as the gateway reports it, under other gateway ids."""
    return [
        gateway_event("checkout_completed", account_id=account_id, checkout_id=checkout_id,
                      gateway_checkout_id="cs_test_1", gateway_subscription_id=subscription, gateway_event_at=NOW + 60),
        gateway_event("subscription_updated", account_id=account_id, checkout_id=checkout_id,
                      gateway_subscription_id=subscription, gateway_event_at=NOW + 60),
        gateway_event("payment_succeeded", account_id=account_id, gateway_subscription_id=subscription,
                      gateway_invoice_id=invoice, gateway_event_at=NOW + 60),
    ]


# -- one live subscription per account ---------------------------------------------------------

def test_the_database_refuses_a_second_live_subscription_for_an_account(billing, team, account_id, session):
    def subscription(gateway_id, status):
        return Subscription(account_id=UUID(account_id), gateway="stripe", gateway_subscription_id=gateway_id,
                            plan_code="starter_monthly", amount=1900, currency="usd", status=status,
                            cancel_at_period_end=False, last_event_at=0)

    session.add_all([subscription("sub_a", "active"), subscription("sub_old", "cancelled"),
                     subscription("sub_unpaid", "unpaid")])
    session.commit()
    for status in ("incomplete", "active", "past_due"):
        session.add(subscription(f"sub_{status}", status))
        with pytest.raises(IntegrityError):
            session.commit()
        session.rollback()


def test_a_checkout_paid_after_a_payment_link_is_refunded_and_the_account_keeps_one_plan(
        billing, team, account_id, session, deliver, make_link, link_paid, pay):
    """A manager opens a Stripe checkout (valid for an hour); someone pays a payment link for the
    account; the manager then pays the still-open session (the gateway could not close it in time)."""
    adapter = billing.gateway_stripe
    checkout = billing.create_checkout(team.owner, ORG, {"plan_code": "starter_monthly"})
    link = make_link()
    adapter.expire_checkout.side_effect = GatewayError()  # the session cannot be closed in time

    pay(link_paid(link["id"]))
    deliver(gateway_event("subscription_updated", account_id=account_id, gateway_subscription_id="sub_link_1",
                          gateway_event_at=NOW))
    assert subscription_of(billing, team.owner)["status"] == "active"
    adapter.expire_checkout.assert_called_with("cs_test_1")  # tried as soon as the link's plan was granted

    adapter.refund_purchase.return_value = {"refunds": [REFUND]}
    deliver(*second_purchase_events(account_id, checkout["id"]))

    [live] = live_subscriptions(session, account_id)
    assert live.gateway_subscription_id == "sub_link_1"
    second = session.scalar(select(Subscription).where(Subscription.gateway_subscription_id == "sub_2"))
    assert (second.status, second.hold_reason, second.duplicate_of) == ("cancelled", "duplicate_purchase", live.id)
    assert second.gateway_settled_at is not None
    (request,), _ = adapter.refund_purchase.call_args
    assert (request["gateway_subscription_id"], request["account_id"]) == ("sub_2", account_id)
    assert ("refunded", 1900, "Refund: a second purchase while the account already had a plan") in history(
        billing, team.owner)
    [refunded] = outbox_events(session, "payment.refunded")
    assert (refunded["gateway_invoice_id"], refunded["amount"], refunded["reason"]) == ("in_2", 1900,
                                                                                       "duplicate_purchase")
    failed = billing.get_checkout(team.owner, ORG, checkout["id"])
    assert (failed["status"], failed["failure_reason"]) == ("failed", "duplicate_purchase")
    assert len(outbox_events(session, "plan.purchased")) == 1
    assert subscription_of(billing, team.owner)["status"] == "active"


def plan_bought_through_a_link(billing, team, account_id, deliver, make_link, link_paid, pay):
    """The org's plan, bought by someone paying a payment link (sub_link_1), while a checkout the
    manager opened earlier could not be closed at the gateway: returns that checkout."""
    checkout = billing.create_checkout(team.owner, ORG, {"plan_code": "starter_monthly"})
    billing.gateway_stripe.expire_checkout.side_effect = GatewayError()
    pay(link_paid(make_link()["id"]))
    deliver(gateway_event("subscription_updated", account_id=account_id, gateway_subscription_id="sub_link_1"))
    return checkout


@pytest.mark.parametrize("order", [(0, 1, 2), (2, 1, 0), (1, 2, 0)])
def test_a_second_purchase_in_any_order_and_delivered_twice_is_refunded_once(
        billing, team, account_id, session, deliver, make_link, link_paid, pay, order):
    checkout = plan_bought_through_a_link(billing, team, account_id, deliver, make_link, link_paid, pay)
    billing.gateway_stripe.refund_purchase.return_value = {"refunds": [REFUND]}
    events = second_purchase_events(account_id, checkout["id"])

    deliver(*[events[i] for i in order])
    deliver(*events)  # every fact again, as redeliveries and reconciliation bring them
    billing.settle_with_gateways()

    assert [s.gateway_subscription_id for s in live_subscriptions(session, account_id)] == ["sub_link_1"]
    assert billing.gateway_stripe.refund_purchase.call_count == 1
    assert len(outbox_events(session, "payment.refunded")) == 1
    assert [line[0] for line in history(billing, team.owner)].count("refunded") == 1
    assert len(outbox_events(session, "plan.purchased")) == 1


def test_a_refund_the_gateway_could_not_make_is_made_by_a_later_pass(billing, team, account_id, session, deliver,
                                                                     make_link, link_paid, pay):
    checkout = plan_bought_through_a_link(billing, team, account_id, deliver, make_link, link_paid, pay)
    billing.gateway_stripe.refund_purchase.side_effect = GatewayError()

    deliver(*second_purchase_events(account_id, checkout["id"]))
    held = session.scalar(select(Subscription).where(Subscription.gateway_subscription_id == "sub_2"))
    assert held.gateway_settled_at is None and outbox_events(session, "payment.refunded") == []

    billing.gateway_stripe.refund_purchase.side_effect = None
    billing.gateway_stripe.refund_purchase.return_value = {"refunds": [REFUND]}
    billing.settle_with_gateways()

    session.rollback()
    assert session.get(Subscription, held.id).gateway_settled_at is not None
    assert len(outbox_events(session, "payment.refunded")) == 1


def test_a_second_one_off_link_payment_is_refunded_at_cashfree(billing, indian, session, make_link, link_paid, pay):
    first, second = make_link("cashfree"), make_link("cashfree")
    adapter = billing.gateway_cashfree
    adapter.refund_purchase.return_value = {"refunds": [{
        "gateway_invoice_id": "order_2", "gateway_refund_id": "refund_1", "amount": 149900, "currency": "inr",
        "refunded_at": NOW}]}

    pay(link_paid(first["id"]), link_paid(second["id"]))

    account = session.scalar(select(BillingAccount).where(BillingAccount.owner_ref == indian["id"]))
    [live] = live_subscriptions(session, str(account.id))
    assert live.gateway_subscription_id == f"link:{first['id']}"
    (request,), _ = adapter.refund_purchase.call_args
    assert request["gateway_subscription_id"] is None
    assert request["gateway_link_id"] == "cflink_2"
    assert ("refunded", 149900) in [line[:2] for line in history(billing, indian, PERSONAL)]


def test_two_concurrent_pay_nows_leave_one_payable_checkout(billing, team, roles, session, db_session):
    """Two managers press Pay Now at once: the first's checkout is still being created at the gateway
    when the second looks for open checkouts to close. Purchases of one account go one at a time."""
    billing.create_quote(team.owner, ORG, {"plan_code": "starter_monthly"})  # makes the account
    created = []
    made = hosted_checkouts_slowly(created)
    workers = []
    for _ in range(2):
        worker = worker_factory(BillingService, db=db_session("billing"))
        worker.orgs.authorize.side_effect = fake_authorize(roles)
        worker.gateway_stripe.create_checkout.side_effect = next(made)
        worker.gateway_stripe.expire_checkout.return_value = {"status": "expired"}
        workers.append(worker)

    threads = [eventlet.spawn(worker.create_checkout, person, ORG, {"plan_code": plan})
               for worker, person, plan in zip(workers, (team.owner, team.super_admin),
                                               ("starter_monthly", "growth_monthly"))]
    results = [thread.wait() for thread in threads]

    session.rollback()
    statuses = sorted(session.scalars(select(Checkout.status)).all())
    assert statuses == ["expired", "open"]
    closed = [call.args[0] for worker in workers for call in worker.gateway_stripe.expire_checkout.call_args_list]
    assert closed == [created[0]]  # the first, closed at the gateway before the second was opened
    assert {result["status"] for result in results} == {"open"}


def hosted_checkouts_slowly(created):
    """One create_checkout per worker, each slow at the gateway (a window for the other to run in)."""
    numbers = iter(range(1, 10))

    def make():
        def create_checkout(request):
            eventlet.sleep(0.5)
            gateway_checkout_id = f"cs_slow_{next(numbers)}"
            created.append(gateway_checkout_id)
            return {"gateway_checkout_id": gateway_checkout_id, "redirect_url": f"http://sandbox/{gateway_checkout_id}",
                    "expires_at": request["expires_at"]}
        return create_checkout

    while True:
        yield make()


def test_a_new_checkout_closes_at_cashfree_one_that_lapsed_here(billing, indian, session):
    """Cashfree keeps a subscription nobody authorised payable for its whole (ten-year) expiry: a
    checkout that lapsed here must still be cancelled there."""
    adapter = billing.gateway_cashfree
    first = billing.create_checkout(indian, PERSONAL, {"plan_code": "starter_monthly"})
    session.get(Checkout, UUID(first["id"])).expires_at = utc_now() - timedelta(seconds=1)
    session.commit()

    billing.create_checkout(indian, PERSONAL, {"plan_code": "growth_monthly"})

    adapter.expire_checkout.assert_called_once_with("cs_test_1")
    session.rollback()
    closed = session.get(Checkout, UUID(first["id"]))
    assert (closed.status, closed.failure_reason) == ("expired", "expired")
    assert closed.gateway_closed_at is not None


def test_reconciliation_keeps_asking_about_a_checkout_closed_here_until_the_gateway_confirms(
        billing, indian, session):
    adapter = billing.gateway_cashfree
    first = billing.create_checkout(indian, PERSONAL, {"plan_code": "starter_monthly"})
    session.get(Checkout, UUID(first["id"])).status = "expired"  # closed here (superseded), never there
    session.get(Checkout, UUID(first["id"])).failure_reason = "superseded"
    session.commit()
    adapter.reconcile.return_value = {"checkouts": {"cs_test_1": "open"}, "recovered": [], "failed": []}
    adapter.expire_checkout.side_effect = GatewayError()

    billing.reconcile({"kind": "personal", "id": indian["id"]})
    (request,), _ = adapter.reconcile.call_args
    assert [c["gateway_checkout_id"] for c in request["checkouts"]] == ["cs_test_1"]

    adapter.expire_checkout.side_effect = None
    summary = billing.reconcile({"kind": "personal", "id": indian["id"]})
    assert summary["closed_checkouts"] == [first["id"]]
    session.rollback()
    assert session.get(Checkout, UUID(first["id"])).gateway_closed_at is not None

    adapter.reconcile.reset_mock()
    billing.reconcile({"kind": "personal", "id": indian["id"]})
    assert adapter.reconcile.call_args.args[0]["checkouts"] == []  # confirmed closed: not asked about again


def test_pay_now_waits_for_a_checkout_the_payer_is_paying(billing, team):
    billing.create_checkout(team.owner, ORG, {"plan_code": "starter_monthly"})
    billing.gateway_stripe.expire_checkout.side_effect = GatewayError(details={"checkout_state": "complete"})

    with pytest.raises(Conflict) as refused:
        billing.create_checkout(team.owner, ORG, {"plan_code": "growth_monthly"})

    assert refused.value.error_code == "PAYMENT_IN_PROGRESS"
    assert billing.gateway_stripe.create_checkout.call_count == 1


def test_a_purchase_still_being_confirmed_blocks_another(billing, team, account_id, deliver):
    checkout = billing.create_checkout(team.owner, ORG, {"plan_code": "starter_monthly"})
    _, updated, _ = purchase_events(account_id, checkout["id"])
    deliver(updated)  # the gateway made the subscription; its word on what it collected is on its way

    for make in (lambda: billing.create_checkout(team.owner, ORG, {"plan_code": "growth_monthly"}),
                 lambda: billing.create_payment_link(team.owner, ORG, {"plan_code": "growth_monthly"})):
        with pytest.raises(Conflict) as refused:
            make()
        assert refused.value.error_code == "PURCHASE_PENDING"


# -- unpaid is not live ------------------------------------------------------------------------

def test_an_unpaid_subscription_is_not_a_plan_and_is_cancelled_when_another_is_bought(
        billing, team, account_id, session, deliver, bought):
    deliver(gateway_event("subscription_updated", account_id=account_id, status="unpaid", gateway_event_at=NOW + 60))

    summary = billing.summary(team.owner, ORG)
    assert (summary["subscription"]["status"], summary["usage"]["quota_bytes"]) == ("unpaid", None)
    assert billing.create_quote(team.owner, ORG, {"plan_code": "starter_monthly"})["kind"] == "new"

    adapter = billing.gateway_stripe
    adapter.cancel_subscription.side_effect = lambda request: adapter_snapshot(
        account_id=request["account_id"], status="cancelled", gateway_event_at=NOW + 200)
    checkout = billing.create_checkout(team.owner, ORG, {"plan_code": "starter_monthly"})
    completed, updated, paid = second_purchase_events(account_id, checkout["id"])
    deliver(completed, updated, paid)

    (request,), _ = adapter.cancel_subscription.call_args
    assert (request["gateway_subscription_id"], request["at_period_end"]) == ("sub_1", False)
    old = session.scalar(select(Subscription).where(Subscription.gateway_subscription_id == "sub_1"))
    assert old.status == "cancelled"
    assert [s.gateway_subscription_id for s in live_subscriptions(session, account_id)] == ["sub_2"]


def test_an_unpaid_subscription_paid_later_beside_a_new_plan_stays_off_and_is_cancelled(
        billing, team, account_id, session, deliver, bought):
    deliver(gateway_event("subscription_updated", account_id=account_id, status="unpaid", gateway_event_at=NOW + 60))
    billing.gateway_stripe.cancel_subscription.side_effect = GatewayError()  # not cancelled yet at the gateway
    checkout = billing.create_checkout(team.owner, ORG, {"plan_code": "starter_monthly"})
    deliver(*second_purchase_events(account_id, checkout["id"]))

    # The old open invoice is paid after all: the gateway revives the old subscription.
    deliver(gateway_event("payment_succeeded", account_id=account_id, gateway_invoice_id="in_old",
                          period_start=PERIOD_END, period_end=NEXT_PERIOD_END, gateway_event_at=NOW + 300),
            gateway_event("subscription_updated", account_id=account_id, status="active", gateway_event_at=NOW + 300,
                          current_period_start=PERIOD_END, current_period_end=NEXT_PERIOD_END))

    assert [s.gateway_subscription_id for s in live_subscriptions(session, account_id)] == ["sub_2"]
    old = session.scalar(select(Subscription).where(Subscription.gateway_subscription_id == "sub_1"))
    assert (old.status, old.hold_reason) == ("cancelled", "second_live_plan")
    [alert] = session.scalars(select(Alert).where(Alert.kind == "second_live_plan")).all()
    assert alert.details["gateway_subscription_id"] == "sub_1"


# -- activate only on the money that was due ---------------------------------------------------

def test_a_checkout_that_collected_another_amount_grants_no_plan(billing, team, account_id, session, deliver):
    checkout = billing.create_checkout(team.owner, ORG, {"plan_code": "starter_monthly"})
    completed, updated, paid = purchase_events(account_id, checkout["id"])
    completed[1]["collected"] = {"amount": 100, "currency": "usd"}  # e.g. a coupon applied at the gateway

    deliver(updated, completed, paid)

    failed = billing.get_checkout(team.owner, ORG, checkout["id"])
    assert (failed["status"], failed["failure_reason"]) == ("failed", "amount_mismatch")
    summary = billing.summary(team.owner, ORG)
    assert summary["subscription"]["status"] == "unpaid" and summary["usage"]["quota_bytes"] is None
    assert outbox_events(session, "plan.purchased") == []
    [alert] = session.scalars(select(Alert)).all()
    assert (alert.kind, alert.details["collected"], alert.details["quoted"]) == (
        "amount_mismatch", {"amount": 100, "currency": "usd"}, {"amount": 1900, "currency": "usd"})
    assert billing.describe_account(ORG)["alerts"][0]["kind"] == "amount_mismatch"
    [listed] = billing.list_alerts()
    assert (listed["id"], listed["account"], listed["kind"]) == (str(alert.id), ORG, "amount_mismatch")

    assert billing.resolve_alert(str(alert.id)) is True
    assert billing.resolve_alert(str(alert.id)) is False
    assert billing.describe_account(ORG)["alerts"] == [] and billing.list_alerts() == []
    with pytest.raises(NotFound):
        billing.resolve_alert(str(uuid4()))


@pytest.mark.parametrize("collected", [{"amount": 1900, "currency": "inr"}, {"amount": 0, "currency": "usd"}])
def test_a_link_paid_with_another_amount_or_currency_grants_no_plan(billing, team, session, make_link, link_paid,
                                                                     pay, collected):
    link = make_link()

    pay(link_paid(link["id"], collected=collected))

    assert billing.summary(team.owner, ORG)["usage"]["quota_bytes"] is None
    assert outbox_events(session, "plan.purchased") == []
    assert session.scalar(select(func.count()).select_from(Alert)) == 1


# -- a plan change takes effect only when it is paid -------------------------------------------

def test_a_declined_plan_change_leaves_the_plan_as_it_was(billing, team, account_id, session, bought):
    billing.gateway_stripe.change_subscription.side_effect = PaymentDeclined(details={"gateway": "stripe"})
    quote = billing.create_quote(team.owner, ORG, {"plan_code": "growth_monthly"})

    with pytest.raises(PaymentDeclined) as declined:
        billing.create_checkout(team.owner, ORG, {"quote_id": quote["id"]})

    checkout = billing.get_checkout(team.owner, ORG, declined.value.details["checkout_id"])
    assert (checkout["status"], checkout["failure_reason"]) == ("failed", "payment_declined")
    assert subscription_of(billing, team.owner) == EXPECTED_STARTER_SUBSCRIPTION
    assert outbox_events(session, "plan.changed") == []


INR = {"amount": 149900, "currency": "inr", "gateway": "cashfree"}


def starter_with_growth_scheduled(billing, indian, session, deliver):
    """An Indian person on Starter (Cashfree) who chose Growth: charged from the next cycle. Returns
    their billing account id."""
    adapter = billing.gateway_cashfree
    checkout = billing.create_checkout(indian, PERSONAL, {"plan_code": "starter_monthly"})
    account_id = str(session.scalar(select(BillingAccount.id).where(BillingAccount.owner_ref == indian["id"])))
    completed, updated, paid = purchase_events(account_id, checkout["id"])
    completed[1].update(gateway="cashfree", collected={"amount": 149900, "currency": "inr"})
    updated[1].update(INR)
    paid[1].update(INR)
    deliver(completed, updated, paid)
    adapter.plan_change_policy.return_value = "next_cycle"
    adapter.change_subscription.side_effect = lambda request: adapter_snapshot(
        account_id=request["account_id"], checkout_id=request["checkout_id"], plan_code="starter_monthly",
        pending_plan_code=None if request["plan"]["code"] == "starter_monthly" else request["plan"]["code"],
        gateway_event_at=NOW + 60 + adapter.change_subscription.call_count, **INR)

    quote = billing.create_quote(indian, PERSONAL, {"plan_code": "growth_monthly"})
    assert quote["amount_due"] == 0
    billing.create_checkout(indian, PERSONAL, {"quote_id": quote["id"]})
    return account_id


def test_a_change_charged_from_the_next_cycle_keeps_the_paid_for_plan_until_that_charge(
        billing, indian, session, deliver):
    account_id = starter_with_growth_scheduled(billing, indian, session, deliver)

    summary = billing.summary(indian, PERSONAL)
    assert summary["subscription"]["plan"]["code"] == "starter_monthly"
    assert summary["subscription"]["scheduled_change"]["plan_code"] == "growth_monthly"
    assert summary["usage"]["quota_bytes"] == 10 * 1024 ** 3  # Starter's, not Growth's
    assert outbox_events(session, "plan.changed") == []

    # The next cycle's charge, at the new plan's price, succeeded: the adapter reports the new plan.
    deliver(gateway_event("subscription_updated", account_id=account_id, plan_code="growth_monthly",
                          gateway_event_at=NOW + 3600, current_period_start=PERIOD_END,
                          current_period_end=NEXT_PERIOD_END, **{**INR, "amount": 399900}))

    summary = billing.summary(indian, PERSONAL)
    assert summary["subscription"]["plan"]["code"] == "growth_monthly"
    assert summary["subscription"]["scheduled_change"] is None
    [changed] = outbox_events(session, "plan.changed")
    assert (changed["from_plan_code"], changed["plan_code"]) == ("starter_monthly", "growth_monthly")


def test_choosing_the_held_plan_again_cancels_a_change_scheduled_for_the_next_cycle(billing, indian, session,
                                                                                    deliver):
    starter_with_growth_scheduled(billing, indian, session, deliver)

    quote = billing.create_quote(indian, PERSONAL, {"plan_code": "starter_monthly"})  # not ALREADY_ON_PLAN now
    billing.create_checkout(indian, PERSONAL, {"quote_id": quote["id"]})

    (request,), _ = billing.gateway_cashfree.change_subscription.call_args
    assert request["plan"]["code"] == "starter_monthly"
    assert billing.summary(indian, PERSONAL)["subscription"]["scheduled_change"] is None
    with pytest.raises(Conflict) as refused:  # nothing scheduled any more: it is simply the plan held
        billing.create_quote(indian, PERSONAL, {"plan_code": "starter_monthly"})
    assert refused.value.error_code == "ALREADY_ON_PLAN"


def test_a_declined_plan_changes_failed_invoice_does_not_make_the_plan_past_due(
        billing, team, account_id, session, deliver, bought):
    deliver(gateway_event("payment_failed", account_id=account_id, gateway_invoice_id="in_change",
                          plan_change=True, gateway_event_at=NOW + 60))

    assert subscription_of(billing, team.owner)["status"] == "active"
    assert [item["status"] for item in billing.list_history(team.owner, ORG)][:1] == ["failed"]  # still shown

    deliver(gateway_event("payment_failed", account_id=account_id, gateway_event_at=NOW + 120))  # a renewal
    assert subscription_of(billing, team.owner)["status"] == "past_due"


def test_a_checkout_quoted_to_replace_a_period_paid_once_stays_payable_until_it_replaces_it(
        billing, indian, session, make_link, link_paid, pay, deliver):
    pay(link_paid(make_link("cashfree")["id"]))  # one period of Starter, paid once
    checkout = billing.create_checkout(indian, PERSONAL, {"plan_code": "growth_monthly"})

    billing.settle_with_gateways()
    billing.gateway_cashfree.expire_checkout.assert_not_called()

    account_id = str(session.scalar(select(BillingAccount.id).where(BillingAccount.owner_ref == indian["id"])))
    inr = {"gateway": "cashfree", "plan_code": "growth_monthly", "amount": 399900, "currency": "inr"}
    completed, updated, _ = purchase_events(account_id, checkout["id"])
    completed[1].update(gateway="cashfree", collected={"amount": 399900, "currency": "inr"})
    updated[1].update(inr)
    deliver(completed, updated)

    [live] = live_subscriptions(session, account_id)
    assert (live.gateway_subscription_id, live.plan_code, live.hold_reason) == ("sub_1", "growth_monthly", None)
    assert billing.summary(indian, PERSONAL)["subscription"]["plan"]["code"] == "growth_monthly"


def test_a_purchase_that_waits_too_long_for_the_one_before_it_is_refused(billing, team, account_id, db_session,
                                                                       monkeypatch):
    from services.billing import service as billing_service
    from shared.db import advisory_lock
    monkeypatch.setattr(billing_service, "PURCHASE_WAIT_SECONDS", 0.2)
    other = db_session("billing")

    with advisory_lock(other, f"billing.purchases:{account_id}", wait_seconds=1):  # another Pay Now, slow gateway
        for make in (lambda: billing.create_checkout(team.owner, ORG, {"plan_code": "starter_monthly"}),
                     lambda: billing.create_payment_link(team.owner, ORG, {"plan_code": "starter_monthly"})):
            with pytest.raises(Conflict) as refused:
                make()
            assert refused.value.error_code == "PURCHASE_IN_PROGRESS"
    billing.gateway_stripe.create_checkout.assert_not_called()
    assert billing.create_checkout(team.owner, ORG, {"plan_code": "starter_monthly"})["status"] == "open"
