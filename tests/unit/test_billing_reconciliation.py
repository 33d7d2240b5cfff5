"""billing.reconcile: what it sends the adapters, what it does with their answers (the facts they
recover arrive through the ordinary consumers, tested in test_billing_service.py)."""
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from services.billing.models import Checkout
from shared.errors import GatewayError, NotFound
from shared.outbox import utc_now
from tests.unit.test_billing_service import (  # noqa: F401  (billing, deliver, roles, session, team: fixtures)
    ORG, ORG_ID, account_id, billing, bought, deliver, refused, roles, session, team,
)


def answered(checkouts=None, recovered=None):
    return {"checkouts": checkouts or {}, "recovered": recovered or [], "events_read": 0}


@pytest.fixture
def adapter(billing):
    billing.gateway_stripe.reconcile.return_value = answered()
    billing.gateway_cashfree.reconcile.return_value = answered()
    return billing.gateway_stripe  # the org is in the US


def stored_checkout(session, checkout_id):
    session.rollback()
    return session.scalar(select(Checkout).where(Checkout.id == checkout_id))


def test_the_accounts_open_things_are_sent_to_its_gateway_and_what_it_recovered_reported(
        billing, team, adapter, bought):
    adapter.reconcile.return_value = answered(recovered=[
        {"gateway_event_id": "evt_1", "type": "invoice.paid", "facts": ["gateway.payment_succeeded"]}])

    summary = billing.reconcile({"kind": "org", "id": ORG_ID})

    (request,), _ = adapter.reconcile.call_args
    assert [s["gateway_subscription_id"] for s in request["subscriptions"]] == ["sub_1"]
    assert request["checkouts"] == [] and request["links"] == []  # the bought checkout is complete
    assert billing.gateway_cashfree.reconcile.call_count == 0  # one account: its own gateway only
    assert summary == {"accounts": 1, "checked": {"checkouts": 0, "subscriptions": 1, "links": 0},
                       "recovered": [{"gateway": "stripe", "gateway_event_id": "evt_1",
                                      "facts": ["gateway.payment_succeeded"]}],
                       "closed_checkouts": [], "failed": []}


def test_reconciling_everyone_asks_every_gateway_even_with_nothing_open(billing, adapter):
    summary = billing.reconcile(None)
    assert summary["accounts"] == 0
    assert adapter.reconcile.call_count == billing.gateway_cashfree.reconcile.call_count == 1


def test_an_unknown_account_is_not_found(billing, adapter, refused):
    with refused(NotFound):
        billing.reconcile({"kind": "org", "id": "no-such-org"})


def test_a_checkout_expired_at_the_gateway_is_closed_here(billing, team, adapter, session):
    checkout = billing.create_checkout(team.owner, ORG, {"plan_code": "starter_monthly"})
    adapter.reconcile.return_value = answered({"cs_test_1": "expired"})

    summary = billing.reconcile({"kind": "org", "id": ORG_ID})

    (request,), _ = adapter.reconcile.call_args
    assert [c["checkout_id"] for c in request["checkouts"]] == [checkout["id"]]
    assert summary["closed_checkouts"] == [checkout["id"]]
    assert (stored_checkout(session, checkout["id"]).status, adapter.expire_checkout.call_count) == ("expired", 0)
    assert billing.get_checkout(team.owner, ORG, checkout["id"])["status"] == "expired"


def test_a_checkout_past_its_expiry_but_payable_at_the_gateway_is_closed_there_first(
        billing, team, adapter, session):
    checkout = billing.create_checkout(team.owner, ORG, {"plan_code": "starter_monthly"})
    session.execute(update(Checkout).where(Checkout.id == checkout["id"])
                    .values(expires_at=utc_now() - timedelta(minutes=1)))
    session.commit()
    adapter.reconcile.return_value = answered({"cs_test_1": "open"})

    assert billing.reconcile({"kind": "org", "id": ORG_ID})["closed_checkouts"] == [checkout["id"]]
    adapter.expire_checkout.assert_called_once_with("cs_test_1")
    assert stored_checkout(session, checkout["id"]).failure_reason == "expired"


def test_an_open_checkout_still_in_time_or_paid_at_the_gateway_is_left_alone(billing, team, adapter, session):
    checkout = billing.create_checkout(team.owner, ORG, {"plan_code": "starter_monthly"})
    for state in ("open", "complete", "unknown"):
        adapter.reconcile.return_value = answered({"cs_test_1": state})
        assert billing.reconcile({"kind": "org", "id": ORG_ID})["closed_checkouts"] == []
    assert stored_checkout(session, checkout["id"]).status == "open" and adapter.expire_checkout.call_count == 0


def test_a_gateway_that_cannot_close_a_lapsed_checkout_leaves_it_for_the_next_pass(billing, team, adapter, session):
    checkout = billing.create_checkout(team.owner, ORG, {"plan_code": "starter_monthly"})
    session.execute(update(Checkout).where(Checkout.id == checkout["id"])
                    .values(expires_at=utc_now() - timedelta(minutes=1)))
    session.commit()
    adapter.reconcile.return_value = answered({"cs_test_1": "open"})
    adapter.expire_checkout.side_effect = GatewayError()
    assert billing.reconcile({"kind": "org", "id": ORG_ID})["closed_checkouts"] == []
    assert stored_checkout(session, checkout["id"]).status == "open"


def test_a_silent_gateway_is_reported_not_raised(billing, team, adapter, bought):
    adapter.reconcile.side_effect = GatewayError()
    summary = billing.reconcile({"kind": "org", "id": ORG_ID})
    assert summary["failed"] == ["stripe"] and summary["recovered"] == []


def test_describe_account_shows_what_operators_need(billing, team, adapter, bought):
    described = billing.describe_account({"kind": "org", "id": ORG_ID})
    assert described["account"]["gateway"] == "stripe"
    assert [(s["status"], s["gateway_subscription_id"]) for s in described["subscriptions"]] == [("active", "sub_1")]
    assert [(p["status"], p["amount"]) for p in described["payments"]] == [("paid", 1900)]
    assert described["checkouts"] == [] and described["links"] == []
    assert billing.describe_account({"kind": "org", "id": "nobody"}) is None


def test_a_checkout_that_lapsed_here_unseen_by_the_gateway_is_closed_there(billing, team, adapter, session):
    checkout = billing.create_checkout(team.owner, ORG, {"plan_code": "starter_monthly"})
    session.execute(update(Checkout).where(Checkout.id == checkout["id"])
                    .values(expires_at=utc_now() - timedelta(minutes=1)))
    session.commit()
    assert billing.get_checkout(team.owner, ORG, checkout["id"])["status"] == "expired"  # marked here only
    adapter.reconcile.return_value = answered({"cs_test_1": "open"})

    assert billing.reconcile({"kind": "org", "id": ORG_ID})["closed_checkouts"] == [checkout["id"]]
    adapter.expire_checkout.assert_called_once_with("cs_test_1")
    assert billing.reconcile({"kind": "org", "id": ORG_ID})["checked"]["checkouts"] == 0  # closed for good
