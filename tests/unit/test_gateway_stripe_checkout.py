"""gateway_stripe's checkout creation, with the Stripe SDK wrapper replaced: what it asks of Stripe,
and how it recovers when an id it remembers no longer exists there; and, with the SDK replaced, the
wrapper's Idempotency-Keys. tests/unit/test_gateway_scope.py runs the same against sandboxes."""
from types import SimpleNamespace
from unittest import mock

import pytest
from nameko.testing.services import worker_factory
from sqlalchemy import select

from services.gateway_stripe import stripe_api
from services.gateway_stripe.models import StripeCustomer, StripePrice
from services.gateway_stripe.service import GatewayStripeService
from shared.errors import GatewayError

PLAN = {"code": "growth_monthly", "name": "Growth", "interval": "month", "amount": 4900, "currency": "usd"}
REQUEST = {"checkout_id": "chk-1", "account": {"id": "acct-1", "email": "ann@example.com", "name": "Acme"},
           "plan": PLAN, "success_url": "http://portal/ok", "cancel_url": "http://portal/no", "expires_at": 1}


@pytest.fixture
def stripe(monkeypatch):
    fake = mock.Mock()
    fake.account_scope.return_value = "test:acct_1"
    fake.create_customer.side_effect = lambda account_id, email, name, replacing=None: SimpleNamespace(
        id=f"cus_{account_id}_{fake.create_customer.call_count}")
    fake.find_price.return_value = None
    fake.create_price.side_effect = lambda key, plan, replacing=None: SimpleNamespace(
        id=f"price_{fake.create_price.call_count}")
    fake.create_checkout_session.return_value = SimpleNamespace(id="cs_1", url="http://stripe/cs_1", expires_at=1)
    fake.missing_param = stripe_api.missing_param
    for name in ("account_scope", "create_customer", "find_price", "create_price", "create_checkout_session"):
        monkeypatch.setattr(stripe_api, name, getattr(fake, name))
    return fake


@pytest.fixture
def adapter(db_session):
    return worker_factory(GatewayStripeService, db=db_session("gateway_stripe"))


def missing(param):
    return GatewayError(details={"gateway": "stripe", "status": 404, "code": "resource_missing", "param": param})


def test_a_checkout_carries_our_ids_and_is_keyed_by_our_checkout(adapter, stripe):
    answer = adapter.create_checkout(REQUEST)
    assert answer == {"gateway_checkout_id": "cs_1", "redirect_url": "http://stripe/cs_1", "expires_at": 1}
    checkout_id, customer_id, price_id, metadata, *_ = stripe.create_checkout_session.call_args.args
    assert (checkout_id, customer_id, price_id) == ("chk-1", "cus_acct-1_1", "price_1")
    assert metadata == {"account_id": "acct-1", "checkout_id": "chk-1", "plan_code": "growth_monthly"}


def test_customers_and_prices_are_made_once_and_remembered(adapter, stripe):
    adapter.create_checkout(REQUEST)
    adapter.create_checkout({**REQUEST, "checkout_id": "chk-2"})
    assert stripe.create_customer.call_count == stripe.create_price.call_count == 1
    assert adapter.db.scalar(select(StripePrice.lookup_key)) == "growth_monthly_usd_4900"


@pytest.mark.parametrize("param, forgotten", [("line_items[0][price]", StripePrice), ("customer", StripeCustomer)])
def test_a_remembered_id_that_stripe_lost_is_made_again_once(adapter, stripe, param, forgotten):
    adapter.create_checkout(REQUEST)
    lost = adapter.db.scalar(select(forgotten.price_id if forgotten is StripePrice else forgotten.customer_id))
    stripe.create_checkout_session.side_effect = [missing(param), stripe.create_checkout_session.return_value]
    assert adapter.create_checkout({**REQUEST, "checkout_id": "chk-2"})["gateway_checkout_id"] == "cs_1"
    made_again = stripe.create_price if forgotten is StripePrice else stripe.create_customer
    assert made_again.call_count == 2
    assert made_again.call_args.args[-1] == lost  # replacing it: a new request, not Stripe's replay of it


def test_other_gateway_errors_are_not_retried_here(adapter, stripe):
    stripe.create_checkout_session.side_effect = GatewayError(details={"gateway": "stripe", "status": 500})
    with pytest.raises(GatewayError):
        adapter.create_checkout(REQUEST)
    assert stripe.create_checkout_session.call_count == 1


def test_a_second_miss_is_a_gateway_error(adapter, stripe):
    stripe.create_checkout_session.side_effect = missing("line_items[0][price]")
    with pytest.raises(GatewayError):
        adapter.create_checkout(REQUEST)
    assert stripe.create_checkout_session.call_count == 2


@pytest.mark.parametrize("send, sdk_create", [
    (lambda customer, price: stripe_api.create_checkout_session("chk-1", customer, price, {}, "ok", "no", 1),
     lambda sdk: sdk.v1.checkout.sessions.create),
    (lambda customer, price: stripe_api.create_payment_link("L1", price, {}, "ok"),
     lambda sdk: sdk.v1.payment_links.create),
])
def test_a_request_naming_other_objects_or_made_with_other_keys_goes_under_another_idempotency_key(
        monkeypatch, send, sdk_create):
    sdk, scope = mock.Mock(), ["test:acct_A"]
    monkeypatch.setattr(stripe_api, "client", lambda: sdk)
    monkeypatch.setattr(stripe_api, "account_scope", lambda: scope[0])

    def key(customer="cus_1", price="price_1"):
        send(customer, price)
        return sdk_create(sdk).call_args.kwargs["options"]["idempotency_key"]

    first = key()
    assert key() == first  # an exact retry is the same request
    assert key(price="price_2") != first
    scope[0] = "live:acct_A"
    assert key() != first
