"""Gateway objects the adapters remember belong to the gateway account and mode they were made in.

The adapters run against in-process sandboxes through their real API modules (the Stripe SDK,
Cashfree's REST calls), as when the same databases are pointed at other keys: the local sandbox,
then Stripe's test mode, then live; a Cashfree sandbox, then production. A second sandbox is the
other account. Stripe's scope (GET /v1/account) is stubbed per sandbox: these tests are about
what the adapter keeps under it, not about how it is asked for.
"""
import json
import time
from dataclasses import replace
from urllib.parse import urlsplit

import pytest
import requests
import stripe
from nameko.testing.services import worker_factory
from sqlalchemy import select

from services.gateway_cashfree import cashfree_api
from services.gateway_cashfree.models import CashfreePlan
from services.gateway_cashfree.sandbox import start_sandbox as start_cashfree_sandbox
from services.gateway_cashfree.service import GatewayCashfreeService
from services.gateway_stripe import stripe_api
from services.gateway_stripe.models import StripeCustomer, StripePaymentLink, StripePrice
from services.gateway_stripe.sandbox import start_sandbox as start_stripe_sandbox
from services.gateway_stripe.service import GatewayStripeService
from shared.config import settings
from shared.models import UNKNOWN_SCOPE
from tests.unit import test_gateway_stripe_webhooks as st

ACCOUNT = {"id": "acct-1", "email": "ann@example.com", "name": "Acme", "phone": "+919812345678"}
PLAN = {"code": "growth_monthly", "name": "Growth", "interval": "month", "amount": 4900, "currency": "usd"}


def checkout_request(checkout_id):
    return {"checkout_id": checkout_id, "account": ACCOUNT, "plan": PLAN, "success_url": "http://portal/ok",
            "cancel_url": "http://portal/no", "expires_at": int(time.time()) + 3600}


def link_request(link_id):
    return {"link_id": link_id, "account": ACCOUNT, "plan": PLAN, "success_url": "http://portal/paid"}


# -- Stripe --------------------------------------------------------------------------------------

class StripeAccount:
    """One Stripe account (a sandbox of its own) and the SDK client the adapter would have for it."""

    def __init__(self, name):
        self.scope = f"test:{name}"
        self.sandbox = start_stripe_sandbox(port=0)
        self.client = stripe.StripeClient("sk_test_sandbox", base_addresses={"api": self.sandbox.url},
                                          max_network_retries=0)

    def has(self, kind, object_id):
        """kind: the SDK service, e.g. "checkout.sessions"."""
        service = self.client.v1
        for name in kind.split("."):
            service = getattr(service, name)
        try:
            service.retrieve(object_id)
        except stripe.InvalidRequestError as error:
            assert error.code == "resource_missing"
            return False
        return True

    def lose(self, object_id):
        """Stripe no longer has it (deleted there, or a sandbox that lost its state)."""
        with self.sandbox.store.lock:
            del self.sandbox.store.objects[object_id]


@pytest.fixture
def stripe_accounts():
    accounts = [StripeAccount("acct_A"), StripeAccount("acct_B")]
    yield accounts
    for account in accounts:
        account.sandbox.stop()


@pytest.fixture
def stripe_keys(monkeypatch):
    """use(account): the adapter's keys are now that account's (as after a restart with other keys)."""
    def use(account):
        monkeypatch.setattr(stripe_api, "client", lambda: account.client)
        monkeypatch.setattr(stripe_api, "account_scope", lambda: account.scope)
    return use


@pytest.fixture
def stripe_adapter(db_session):
    return worker_factory(GatewayStripeService, db=db_session("gateway_stripe"))


def remembered(adapter, model, *columns):
    return set(adapter.db.execute(select(*(getattr(model, column) for column in columns))).all())


def test_after_a_switch_to_another_stripe_account_pay_now_and_links_make_their_objects_there(
        stripe_adapter, stripe_accounts, stripe_keys):
    a, b = stripe_accounts
    stripe_keys(a)
    stripe_adapter.create_checkout(checkout_request("chk-1"))
    stripe_adapter.create_payment_link(link_request("L1"))
    customers_at_a = remembered(stripe_adapter, StripeCustomer, "customer_id")
    prices_at_a = remembered(stripe_adapter, StripePrice, "price_id")

    stripe_keys(b)  # the same databases, another Stripe: every id kept for A is unknown there
    pay_now = checkout_request("chk-2")
    checkout = stripe_adapter.create_checkout(pay_now)
    link = stripe_adapter.create_payment_link(link_request("L2"))

    assert b.has("checkout.sessions", checkout["gateway_checkout_id"])
    assert b.has("payment_links", link["gateway_link_id"])
    customers = remembered(stripe_adapter, StripeCustomer, "customer_id", "scope", "kind")
    prices = remembered(stripe_adapter, StripePrice, "price_id", "scope")
    # A's rows are left alone (still A's); one customer and one price were made at B, under B's scope.
    assert {(customer_id, a.scope, "account") for customer_id, in customers_at_a} < customers
    assert {(price_id, a.scope) for price_id, in prices_at_a} < prices
    (customer_at_b, *customer_scope_and_kind), = {row for row in customers if row[1] != a.scope}
    (price_at_b, price_scope), = {row for row in prices if row[1] != a.scope}
    assert customer_scope_and_kind == [b.scope, "account"] and price_scope == b.scope
    assert b.has("customers", customer_at_b) and b.has("prices", price_at_b)
    assert stripe_adapter.db.get(StripePaymentLink, link["gateway_link_id"]).scope == b.scope
    # Billing's retry of the same checkout is the same request: Stripe answers the same session.
    assert stripe_adapter.create_checkout(pay_now) == checkout


def test_a_customer_and_price_stripe_lost_are_made_again_under_new_keys_for_pay_now_and_links(
        stripe_adapter, stripe_accounts, stripe_keys):
    a, _ = stripe_accounts
    stripe_keys(a)
    stripe_adapter.create_checkout(checkout_request("chk-1"))
    customer_id, price_id = (stripe_adapter.db.scalars(select(StripeCustomer.customer_id)).one(),
                             stripe_adapter.db.scalars(select(StripePrice.price_id)).one())
    a.lose(price_id)

    link = stripe_adapter.create_payment_link(link_request("L1"))
    assert a.has("payment_links", link["gateway_link_id"])
    new_price_id = stripe_adapter.db.scalars(select(StripePrice.price_id)).one()
    assert new_price_id != price_id and a.has("prices", new_price_id)

    a.lose(customer_id)
    a.lose(new_price_id)
    checkout = stripe_adapter.create_checkout(checkout_request("chk-2"))  # both lost: both made again
    assert a.has("checkout.sessions", checkout["gateway_checkout_id"])
    assert stripe_adapter.db.scalars(select(StripeCustomer.customer_id)).one() != customer_id
    assert stripe_adapter.db.scalars(select(StripePrice.price_id)).one() not in (price_id, new_price_id)


def test_a_link_paid_by_someone_else_first_does_not_make_their_customer_the_accounts(
        stripe_adapter, stripe_accounts, stripe_keys):
    a, _ = stripe_accounts
    stripe_keys(a)
    link = stripe_adapter.create_payment_link(link_request("L1"))
    paid = requests.post(f"{a.sandbox.url}/_sandbox/links/{link['gateway_link_id']}/pay", timeout=5).json()
    completed = next(event for event in a.client.v1.events.list(params={"type": "checkout.session.completed"})
                     if event.data.object.id == paid["id"])
    assert st.deliver(stripe_adapter, json.loads(json.dumps(completed.to_dict()))) == {"status": "accepted"}

    checkout = stripe_adapter.create_checkout(checkout_request("chk-1"))

    session = a.client.v1.checkout.sessions.retrieve(checkout["gateway_checkout_id"])
    own = a.client.v1.customers.retrieve(session.customer)
    assert session.customer != paid["customer"]
    assert (own.email, own.metadata.to_dict()) == (ACCOUNT["email"], {"account_id": ACCOUNT["id"]})
    # The payer's customer is still the account's for Stripe's events, and so is their card.
    assert stripe_adapter._account_for_customer(paid["customer"]) == ACCOUNT["id"]
    payer_card = a.client.v1.payment_methods.list(params={"customer": paid["customer"], "type": "card"}).data[0]
    assert payer_card.id in {method["id"] for method in stripe_adapter.list_payment_methods(ACCOUNT["id"])}


# -- Cashfree ------------------------------------------------------------------------------------

@pytest.fixture
def cashfree_sandboxes():
    sandboxes = [start_cashfree_sandbox(port=0), start_cashfree_sandbox(port=0)]
    yield sandboxes
    for sandbox in sandboxes:
        sandbox.stop()


@pytest.fixture
def cashfree_credentials(monkeypatch):
    """use(sandbox): the adapter's Cashfree is now that one (another environment's API host)."""
    def use(sandbox):
        pointed = replace(settings(), cashfree_api_base=sandbox.api_base)
        monkeypatch.setattr(cashfree_api, "settings", lambda: pointed)
    return use


def cashfree_scope(sandbox):
    return f"cf_sandbox_client@{urlsplit(sandbox.api_base).netloc}"


@pytest.fixture
def cashfree_adapter(db_session):
    return worker_factory(GatewayCashfreeService, db=db_session("gateway_cashfree"))


def cashfree_checkout(checkout_id):
    return {**checkout_request(checkout_id), "plan": {**PLAN, "amount": 399900, "currency": "inr"},
            "created_at": 1_893_456_000}


def cashfree_plan_at(sandbox, plan_id):
    return requests.get(f"{sandbox.api_base}/plans/{plan_id}", timeout=5, headers={
        "x-client-id": "cf_sandbox_client", "x-client-secret": "cf_sandbox_secret", "x-api-version": "2025-01-01"})


def test_cashfree_plans_are_made_again_with_other_credentials(cashfree_adapter, cashfree_sandboxes,
                                                              cashfree_credentials):
    first, second = cashfree_sandboxes
    cashfree_credentials(first)
    cashfree_adapter.create_checkout(cashfree_checkout("chk-1"))

    cashfree_credentials(second)
    cashfree_adapter.create_checkout(cashfree_checkout("chk-2"))

    assert cashfree_plan_at(second, "growth_monthly_inr_399900").status_code == 200
    assert remembered(cashfree_adapter, CashfreePlan, "scope", "plan_id") == {
        (cashfree_scope(first), "growth_monthly_inr_399900"), (cashfree_scope(second), "growth_monthly_inr_399900")}


def test_a_cashfree_plan_kept_before_scopes_is_asked_for_again_and_one_cashfree_has_is_fine(
        cashfree_adapter, cashfree_sandboxes, cashfree_credentials):
    sandbox, _ = cashfree_sandboxes
    cashfree_credentials(sandbox)
    cashfree_adapter.create_checkout(cashfree_checkout("chk-1"))
    plan = cashfree_adapter.db.scalar(select(CashfreePlan))
    plan.scope = UNKNOWN_SCOPE  # as the migration leaves a plan kept before
    cashfree_adapter.db.commit()

    cashfree_adapter.create_checkout(cashfree_checkout("chk-2"))  # Cashfree answers 409: it has the plan

    assert remembered(cashfree_adapter, CashfreePlan, "scope") == {(UNKNOWN_SCOPE,), (cashfree_scope(sandbox),)}
