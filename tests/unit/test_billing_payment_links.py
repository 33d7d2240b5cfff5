"""Payment links (services/billing/links.py), one billing worker at a time, on a real PostgreSQL database.

The same harness as test_billing_service.py: `worker_factory(BillingService, db=...)` with the fake
permission table behind `orgs.authorize` and mocked gateway adapters. The org (ORG) is a US account
and pays through Stripe; an Indian person's personal account pays through Cashfree. A link's
payment is delivered by calling `on_link_paid` directly with a gateway.link_paid payload, and the
expiry timer by calling `expire_due_links()`. After every call the session is rolled back, as a
worker's session is closed: only what the service committed survives.
"""
import itertools
import logging
from datetime import datetime, timedelta, timezone
from uuid import UUID, uuid4

import pytest
from sqlalchemy import func, select, update

from services.billing.models import BillingAccount, PaymentLink, Quote, Subscription
from shared.config import settings
from shared.errors import Conflict, Forbidden, GatewayError, NotFound, ValidationFailed
from shared.events import validate_event
from shared.outbox import rfc3339, utc_now
from tests.unit.workers import end_like_workers
from tests.unit.test_billing_service import (  # noqa: F401  (billing, deliver, refused, roles, session, team: fixtures)
    EXPECTED_STARTER_SUBSCRIPTION, INDIAN_PHONE, NOW, ORG, PEOPLE, PERSONAL, STARTER, account_id, billing, deliver,
    fake_authorize, gateway_event, make_person, outbox_events, purchase_events, refused, roles, session,
    subscription_of, team,
)

LINK_ENTRYPOINTS = ("create_payment_link", "list_payment_links", "cancel_payment_link", "expire_due_links",
                    "on_link_paid", "settle_with_gateways")
WEEK = timedelta(days=7)
STARTER_LINK = {"plan_code": "starter_monthly"}


# -- helpers -----------------------------------------------------------------------------------

def gateway_links(prefix):
    """adapter.create_payment_link: a new link for each call (plink_1, plink_2, ...)."""
    numbers = itertools.count(1)

    def create_payment_link(request):
        gateway_link_id = f"{prefix}_{next(numbers)}"
        return {"gateway_link_id": gateway_link_id, "url": f"http://sandbox/links/{gateway_link_id}"}

    return create_payment_link


def stored(session, link_id):
    """The link's row as billing committed it."""
    session.rollback()
    return session.get(PaymentLink, UUID(link_id))


def set_in_the_past(session, link_id, field="expires_at"):
    row = session.get(PaymentLink, UUID(link_id))
    setattr(row, field, utc_now() - timedelta(seconds=1))
    session.commit()


def moment(text):
    return datetime.fromisoformat(text)


def start_of_this_month():
    today = utc_now()
    return datetime(today.year, today.month, 1, 9, 30, tzinfo=timezone.utc)


def a_month_after(start):
    """For a start on the 1st: the same time on the 1st of the next month."""
    year, month = (start.year + 1, 1) if start.month == 12 else (start.year, start.month + 1)
    return start.replace(year=year, month=month)


def subscriptions_of(session, account_id):
    session.rollback()
    return session.scalars(select(Subscription).where(Subscription.account_id == account_id)).all()


# -- fixtures ----------------------------------------------------------------------------------

@pytest.fixture(autouse=True)
def link_entrypoints(billing, session):
    """The links entrypoints end like a worker too, and each adapter makes and deactivates links."""

    end_like_workers(billing, session, LINK_ENTRYPOINTS)
    for adapter, prefix in ((billing.gateway_stripe, "plink"), (billing.gateway_cashfree, "cflink")):
        adapter.create_payment_link.side_effect = gateway_links(prefix)
        adapter.cancel_payment_link.return_value = {"outcome": "cancelled"}
        adapter.abandon_payment_link.return_value = {"outcome": "cancelled"}
    return billing


@pytest.fixture
def indian():
    """A person in India: their personal account pays through Cashfree, in rupees."""
    return make_person(country="IN")


@pytest.fixture
def make_link(billing, team, indian):
    """make_link(gateway="stripe", **data): an active link (stripe: the org's; cashfree: the Indian's own)."""

    def make_link(gateway="stripe", **data):
        actor, ref = (team.owner, ORG) if gateway == "stripe" else (indian, PERSONAL)
        return billing.create_payment_link(actor, ref, {**STARTER_LINK, **data})

    return make_link


@pytest.fixture
def link_paid(session):
    """link_paid(link_id, **fields): a gateway.link_paid payload for a stored link, as its adapter
    publishes it (Stripe: with the subscription the payment started; Cashfree: one-off)."""

    def link_paid(link_id, **fields):
        row = stored(session, link_id)
        paid_at = fields.pop("paid_at", NOW)
        payload = {
            "event_id": str(uuid4()), "occurred_at": rfc3339(utc_now()), "gateway": row.gateway,
            "gateway_event_id": f"evt_{uuid4().hex[:16]}", "gateway_event_at": paid_at,
            "account_id": str(row.account_id), "link_id": link_id, "gateway_link_id": row.gateway_link_id,
            "gateway_subscription_id": "sub_link_1" if row.gateway == "stripe" else None, "paid_at": paid_at,
            "collected": {"amount": row.amount, "currency": row.currency},
            **fields,
        }
        validate_event("gateway.link_paid", payload)
        return payload

    return link_paid


@pytest.fixture
def pay(billing, caplog):
    """pay(*payloads): hand each gateway.link_paid payload to on_link_paid; a dropped one fails the test."""

    def pay(*payloads):
        for payload in payloads:
            caplog.clear()
            with caplog.at_level(logging.ERROR, logger="shared.consumers"):
                billing.on_link_paid(payload)
            dropped = [r.getMessage() for r in caplog.records if r.name == "shared.consumers"]
            assert not dropped, dropped

    return pay


# -- creating a link ---------------------------------------------------------------------------

def test_an_owner_gets_an_active_link_at_the_accounts_gateway_valid_for_a_week(billing, team, session):
    before = utc_now()
    link = billing.create_payment_link(team.owner, ORG, STARTER_LINK)
    after = utc_now()

    assert link["status"] == "active"
    assert link["url"] == "http://sandbox/links/plink_1"
    assert (link["plan_code"], link["amount"], link["currency"]) == ("starter_monthly", 1900, "usd")
    assert link["created_by"] == team.owner["id"]
    assert link["closed_at"] is None
    assert before <= moment(link["created_at"]) <= after
    assert before + WEEK <= moment(link["expires_at"]) <= after + WEEK
    row = stored(session, link["id"])
    assert (row.status, row.gateway, row.gateway_link_id) == ("active", "stripe", "plink_1")

    billing.gateway_cashfree.create_payment_link.assert_not_called()
    (request,), _ = billing.gateway_stripe.create_payment_link.call_args
    account = session.get(BillingAccount, row.account_id)
    assert request["link_id"] == link["id"]
    assert request["account"]["id"] == str(account.id)
    assert (request["amount"], request["currency"]) == (1900, "usd")
    assert {k: request["plan"][k] for k in STARTER} == STARTER
    assert request["expires_at"] == int(moment(link["expires_at"]).timestamp())
    base = settings().public_base_url
    assert request["success_url"].startswith(f"{base}/") and link["id"] in request["success_url"]

    [created] = outbox_events(session, "payment_link.created")
    assert created["link_id"] == link["id"]
    assert created["status"] == "active"
    assert (created["plan_code"], created["amount"], created["currency"]) == ("starter_monthly", 1900, "usd")
    assert created["account"] == {"kind": "org", "id": ORG["id"]}
    assert created["billing_account_id"] == str(account.id)


def test_an_indian_account_gets_its_link_from_cashfree_in_rupees(billing, indian):
    link = billing.create_payment_link(indian, PERSONAL, {"plan_code": "growth_yearly"})

    assert (link["status"], link["url"]) == ("active", "http://sandbox/links/cflink_1")
    assert (link["plan_code"], link["amount"], link["currency"]) == ("growth_yearly", 3999000, "inr")
    billing.gateway_stripe.create_payment_link.assert_not_called()
    (request,), _ = billing.gateway_cashfree.create_payment_link.call_args
    assert request["link_id"] == link["id"]
    assert (request["amount"], request["currency"]) == (3999000, "inr")
    assert (request["plan"]["code"], request["plan"]["amount"], request["plan"]["currency"]) == (
        "growth_yearly", 3999000, "inr")


def test_an_indian_link_carries_the_payers_phone_for_cashfree(billing, indian):
    billing.create_payment_link(indian, PERSONAL, STARTER_LINK)

    (request,), _ = billing.gateway_cashfree.create_payment_link.call_args
    assert {k: request["account"][k] for k in ("email", "name", "phone")} == {
        "email": indian["email"], "name": indian["name"], "phone": INDIAN_PHONE}


def test_an_indian_orgs_link_without_its_owners_phone_is_refused_and_nothing_is_recorded(
        billing, team, roles, refused, session):
    billing.orgs.authorize.side_effect = fake_authorize(roles, country="IN")
    team.super_admin["phone"] = PEOPLE[team.super_admin["id"]]["phone"] = INDIAN_PHONE  # not the owner's

    with refused(ValidationFailed, "PHONE_REQUIRED") as caught:
        billing.create_payment_link(team.super_admin, ORG, STARTER_LINK)

    assert list(caught.value.details) == ["phone"]
    assert session.scalar(select(func.count()).select_from(PaymentLink)) == 0
    assert billing.list_payment_links(team.owner, ORG) == []
    billing.gateway_cashfree.create_payment_link.assert_not_called()
    assert outbox_events(session, "payment_link.created") == []


def test_a_link_for_a_quote_is_for_the_quoted_plan(billing, team):
    quote = billing.create_quote(team.owner, ORG, {"plan_code": "growth_monthly"})

    link = billing.create_payment_link(team.super_admin, ORG, {"quote_id": quote["id"]})

    assert (link["status"], link["plan_code"], link["amount"], link["currency"]) == (
        "active", "growth_monthly", 4900, "usd")
    assert link["created_by"] == team.super_admin["id"]


@pytest.mark.parametrize("hours", [1, 48, 720])
def test_a_link_may_expire_after_1_to_720_hours(billing, make_link, hours):
    before = utc_now()
    link = make_link(expires_in_hours=hours)
    after = utc_now()

    expires_at = moment(link["expires_at"])
    assert before + timedelta(hours=hours) <= expires_at <= after + timedelta(hours=hours)
    (request,), _ = billing.gateway_stripe.create_payment_link.call_args
    assert request["expires_at"] == int(expires_at.timestamp())


@pytest.mark.parametrize("hours", [0, 721, -1, "12", 12.5, None])
def test_an_expiry_outside_1_to_720_whole_hours_is_refused(billing, team, refused, session, hours):
    with refused(ValidationFailed) as caught:
        billing.create_payment_link(team.owner, ORG, {**STARTER_LINK, "expires_in_hours": hours})

    assert "expires_in_hours" in caught.value.details
    billing.gateway_stripe.create_payment_link.assert_not_called()
    assert session.scalar(select(PaymentLink)) is None


@pytest.mark.parametrize("data", [
    pytest.param({}, id="neither"),
    pytest.param({"plan_code": "starter_monthly", "quote_id": str(uuid4())}, id="both"),
])
def test_a_link_needs_a_plan_code_or_a_quote_but_not_both(billing, team, refused, session, data):
    with refused(ValidationFailed):
        billing.create_payment_link(team.owner, ORG, data)
    billing.gateway_stripe.create_payment_link.assert_not_called()
    assert session.scalar(select(PaymentLink)) is None


def test_an_unknown_plan_cannot_be_linked(billing, team, refused, session):
    with refused(ValidationFailed) as caught:
        billing.create_payment_link(team.owner, ORG, {"plan_code": "platinum_forever"})
    assert "plan_code" in caught.value.details
    billing.gateway_stripe.create_payment_link.assert_not_called()
    assert session.scalar(select(PaymentLink)) is None


@pytest.mark.parametrize("how", ["plan_code", "quote_made_before_the_purchase", "change_quote"])
def test_an_account_that_has_a_plan_cannot_make_a_link(billing, team, refused, session, deliver, how):
    early_quote = billing.create_quote(team.owner, ORG, {"plan_code": "growth_monthly"})
    checkout = billing.create_checkout(team.owner, ORG, {"plan_code": "starter_monthly"})
    account_id = session.scalar(select(BillingAccount.id).where(BillingAccount.owner_ref == ORG["id"]))
    deliver(*purchase_events(str(account_id), checkout["id"]))
    data = {"plan_code": "growth_monthly"} if how == "plan_code" else {"quote_id": early_quote["id"]}
    if how == "change_quote":
        data = {"quote_id": billing.create_quote(team.owner, ORG, {"plan_code": "growth_monthly"})["id"]}

    with refused(Conflict, "HAS_PLAN"):
        billing.create_payment_link(team.owner, ORG, data)
    billing.gateway_stripe.create_payment_link.assert_not_called()
    assert session.scalar(select(PaymentLink)) is None


def test_an_account_whose_link_was_paid_cannot_make_another(billing, team, refused, make_link, link_paid, pay):
    pay(link_paid(make_link()["id"]))

    with refused(Conflict, "HAS_PLAN"):
        make_link(plan_code="growth_monthly")
    assert billing.gateway_stripe.create_payment_link.call_count == 1


@pytest.mark.parametrize("who, error", [("admin", Forbidden), ("standard", Forbidden), ("outsider", NotFound)])
def test_only_owners_and_super_admins_may_make_links(billing, team, refused, session, who, error):
    with refused(error):
        billing.create_payment_link(team.person(who), ORG, STARTER_LINK)
    billing.gateway_stripe.create_payment_link.assert_not_called()
    assert session.scalar(select(PaymentLink)) is None


def test_a_gateway_failure_leaves_no_active_link_here_or_at_the_gateway(billing, team, refused, session):
    adapter = billing.gateway_stripe
    adapter.create_payment_link.side_effect = GatewayError(details={"gateway": "stripe"})

    with refused(GatewayError) as caught:
        billing.create_payment_link(team.owner, ORG, STARTER_LINK)

    link_id = caught.value.details["link_id"]
    assert caught.value.details["gateway"] == "stripe"
    row = stored(session, link_id)
    assert row.status == "failed"
    assert row.abandoned_at is not None
    assert billing.list_payment_links(team.owner, ORG) == []
    (created,), _ = adapter.create_payment_link.call_args
    (abandoned,), _ = adapter.abandon_payment_link.call_args
    assert created["link_id"] == abandoned["link_id"] == link_id
    assert abandoned["plan"]["code"] == "starter_monthly"
    assert outbox_events(session, "payment_link.created") == []

    billing.expire_due_links()
    assert adapter.abandon_payment_link.call_count == 1  # done once: not again


def test_when_the_abandon_fails_too_the_expiry_pass_abandons_the_link_later(billing, team, refused, session):
    adapter = billing.gateway_stripe
    adapter.create_payment_link.side_effect = GatewayError(details={"gateway": "stripe"})
    adapter.abandon_payment_link.side_effect = GatewayError(details={"gateway": "stripe"})

    with refused(GatewayError) as caught:
        billing.create_payment_link(team.owner, ORG, STARTER_LINK)
    link_id = caught.value.details["link_id"]
    assert stored(session, link_id).abandoned_at is None

    billing.expire_due_links()  # the gateway is still failing
    assert adapter.abandon_payment_link.call_count == 2
    assert stored(session, link_id).abandoned_at is None

    adapter.abandon_payment_link.side_effect = None
    billing.expire_due_links()

    assert adapter.abandon_payment_link.call_count == 3
    assert {c.args[0]["link_id"] for c in adapter.abandon_payment_link.call_args_list} == {link_id}
    row = stored(session, link_id)
    assert row.abandoned_at is not None
    assert row.status == "failed"
    assert billing.list_payment_links(team.owner, ORG) == []

    billing.expire_due_links()
    assert adapter.abandon_payment_link.call_count == 3


def test_a_creation_that_never_finished_is_abandoned_by_the_expiry_pass(billing, team, session):
    billing.create_payment_link(team.owner, ORG, STARTER_LINK)  # makes the account
    account_id = session.scalar(select(BillingAccount.id))
    interrupted = PaymentLink(
        id=uuid4(), account_id=account_id, plan_code="starter_monthly", amount=1900, currency="usd",
        status="creating", gateway="stripe", created_by=team.owner["id"],
        created_at=utc_now() - timedelta(hours=1), expires_at=utc_now() + WEEK - timedelta(hours=1))
    session.add(interrupted)
    session.commit()

    billing.expire_due_links()

    abandoned = [c.args[0]["link_id"] for c in billing.gateway_stripe.abandon_payment_link.call_args_list]
    assert abandoned == [str(interrupted.id)]
    assert stored(session, str(interrupted.id)).abandoned_at is not None


# -- listing links -----------------------------------------------------------------------------

def test_links_are_listed_newest_first_and_an_admin_may_see_them(billing, team, make_link):
    first = make_link()
    second = billing.create_payment_link(team.super_admin, ORG, {"plan_code": "growth_monthly"})
    third = make_link(plan_code="scale_yearly")

    listed = billing.list_payment_links(team.admin, ORG)

    assert [link["id"] for link in listed] == [third["id"], second["id"], first["id"]]
    assert listed == [third, second, first]


def test_failed_creations_are_not_listed(billing, team, refused, make_link):
    kept = make_link()
    billing.gateway_stripe.create_payment_link.side_effect = GatewayError()
    with refused(GatewayError):
        make_link(plan_code="growth_monthly")

    assert [link["id"] for link in billing.list_payment_links(team.owner, ORG)] == [kept["id"]]


@pytest.mark.parametrize("who, error", [("standard", Forbidden), ("outsider", NotFound)])
def test_a_standard_member_and_an_outsider_cannot_list_links(billing, team, refused, make_link, who, error):
    make_link()
    with refused(error):
        billing.list_payment_links(team.person(who), ORG)


# -- cancelling a link -------------------------------------------------------------------------

def test_cancelling_an_active_link_deactivates_it_at_the_gateway(billing, team, session, make_link):
    link = make_link()
    before = utc_now()

    cancelled = billing.cancel_payment_link(team.super_admin, ORG, link["id"])

    billing.gateway_stripe.cancel_payment_link.assert_called_once()
    (request,), _ = billing.gateway_stripe.cancel_payment_link.call_args
    assert request["gateway_link_id"] == "plink_1"
    assert request["link_id"] == link["id"]
    assert cancelled["id"] == link["id"]
    assert cancelled["status"] == "cancelled"
    assert before <= moment(cancelled["closed_at"]) <= utc_now()
    assert billing.list_payment_links(team.owner, ORG) == [cancelled]
    assert stored(session, link["id"]).status == "cancelled"
    [event] = outbox_events(session, "payment_link.cancelled")
    assert (event["link_id"], event["status"]) == (link["id"], "cancelled")


def test_cancelling_a_cancelled_link_again_returns_it_without_asking_the_gateway(billing, team, make_link):
    link = make_link()
    first = billing.cancel_payment_link(team.owner, ORG, link["id"])

    again = billing.cancel_payment_link(team.owner, ORG, link["id"])

    assert again == first
    assert again["status"] == "cancelled"
    assert billing.gateway_stripe.cancel_payment_link.call_count == 1


def test_a_paid_link_cannot_be_cancelled(billing, team, refused, make_link, link_paid, pay):
    link = make_link()
    pay(link_paid(link["id"]))

    with refused(Conflict, "LINK_PAID") as caught:
        billing.cancel_payment_link(team.owner, ORG, link["id"])

    assert caught.value.details["link"]["status"] == "paid"
    billing.gateway_stripe.cancel_payment_link.assert_not_called()


def test_an_expired_link_cannot_be_cancelled(billing, team, refused, session, make_link):
    link = make_link()
    set_in_the_past(session, link["id"])
    billing.expire_due_links()

    with refused(Conflict, "LINK_EXPIRED") as caught:
        billing.cancel_payment_link(team.owner, ORG, link["id"])

    assert caught.value.details["link"]["status"] == "expired"
    assert billing.gateway_stripe.cancel_payment_link.call_count == 1  # by the expiry only
    assert stored(session, link["id"]).status == "expired"


def test_a_payment_that_wins_the_race_with_a_cancel_leaves_the_link_paid(billing, team, refused, session, make_link):
    link = make_link()
    billing.gateway_stripe.cancel_payment_link.return_value = {"outcome": "paid"}

    with refused(Conflict, "LINK_PAID") as caught:
        billing.cancel_payment_link(team.owner, ORG, link["id"])

    assert caught.value.details["link"]["status"] == "paid"
    assert stored(session, link["id"]).status == "paid"
    assert [item["status"] for item in billing.list_payment_links(team.owner, ORG)] == ["paid"]
    [paid] = outbox_events(session, "payment_link.paid")
    assert (paid["link_id"], paid["status"]) == (link["id"], "paid")
    assert outbox_events(session, "payment_link.cancelled") == []


def test_a_gateway_failure_on_cancel_leaves_the_link_active_to_cancel_again(billing, team, refused, session,
                                                                            make_link):
    link = make_link()
    adapter = billing.gateway_stripe
    adapter.cancel_payment_link.side_effect = GatewayError(details={"gateway": "stripe"})

    with refused(GatewayError):
        billing.cancel_payment_link(team.owner, ORG, link["id"])
    assert stored(session, link["id"]).status == "active"
    assert outbox_events(session, "payment_link.cancelled") == []

    adapter.cancel_payment_link.side_effect = None
    assert billing.cancel_payment_link(team.owner, ORG, link["id"])["status"] == "cancelled"


@pytest.mark.parametrize("link_id", ["mine-from-elsewhere", "not-a-uuid", str(uuid4())])
def test_only_the_accounts_own_links_can_be_cancelled(billing, team, refused, session, link_id):
    if link_id == "mine-from-elsewhere":  # the owner's personal link, used on the org's page
        link_id = billing.create_payment_link(team.owner, PERSONAL, STARTER_LINK)["id"]

    with refused(NotFound):
        billing.cancel_payment_link(team.owner, ORG, link_id)
    billing.gateway_stripe.cancel_payment_link.assert_not_called()
    assert [link["status"] for link in billing.list_payment_links(team.owner, PERSONAL)] == (
        ["active"] if billing.gateway_stripe.create_payment_link.called else [])


def test_a_failed_creation_cannot_be_cancelled(billing, team, refused):
    billing.gateway_stripe.create_payment_link.side_effect = GatewayError()
    with refused(GatewayError) as caught:
        billing.create_payment_link(team.owner, ORG, STARTER_LINK)

    with refused(NotFound):
        billing.cancel_payment_link(team.owner, ORG, caught.value.details["link_id"])
    billing.gateway_stripe.cancel_payment_link.assert_not_called()


def test_an_admin_may_not_cancel_a_link(billing, team, refused, session, make_link):
    link = make_link()

    with refused(Forbidden):
        billing.cancel_payment_link(team.admin, ORG, link["id"])
    billing.gateway_stripe.cancel_payment_link.assert_not_called()
    assert stored(session, link["id"]).status == "active"


# -- expiry ------------------------------------------------------------------------------------

def test_a_link_past_its_expiry_is_deactivated_at_the_gateway_and_expires(billing, team, session, make_link):
    due, current = make_link(), make_link(plan_code="growth_monthly")
    set_in_the_past(session, due["id"])

    billing.expire_due_links()

    billing.gateway_stripe.cancel_payment_link.assert_called_once()
    (request,), _ = billing.gateway_stripe.cancel_payment_link.call_args
    assert (request["link_id"], request["gateway_link_id"]) == (due["id"], "plink_1")
    by_id = {link["id"]: link for link in billing.list_payment_links(team.owner, ORG)}
    assert by_id[due["id"]]["status"] == "expired"
    assert by_id[due["id"]]["closed_at"] is not None
    assert by_id[current["id"]]["status"] == "active"
    [expired] = outbox_events(session, "payment_link.expired")
    assert (expired["link_id"], expired["status"]) == (due["id"], "expired")

    billing.expire_due_links()
    assert billing.gateway_stripe.cancel_payment_link.call_count == 1
    assert len(outbox_events(session, "payment_link.expired")) == 1


def test_a_link_the_gateway_cannot_deactivate_stays_active_for_the_next_pass(billing, session, make_link):
    link = make_link()
    set_in_the_past(session, link["id"])
    adapter = billing.gateway_stripe
    adapter.cancel_payment_link.side_effect = GatewayError(details={"gateway": "stripe"})

    billing.expire_due_links()

    assert stored(session, link["id"]).status == "active"
    assert outbox_events(session, "payment_link.expired") == []

    adapter.cancel_payment_link.side_effect = None
    billing.expire_due_links()

    assert adapter.cancel_payment_link.call_count == 2
    assert stored(session, link["id"]).status == "expired"
    assert len(outbox_events(session, "payment_link.expired")) == 1


def test_a_link_paid_just_before_it_expired_ends_paid(billing, session, make_link):
    link = make_link()
    set_in_the_past(session, link["id"])
    billing.gateway_stripe.cancel_payment_link.return_value = {"outcome": "paid"}

    billing.expire_due_links()

    assert stored(session, link["id"]).status == "paid"
    assert len(outbox_events(session, "payment_link.paid")) == 1
    assert outbox_events(session, "payment_link.expired") == []


# -- payment -----------------------------------------------------------------------------------

def test_a_paid_stripe_link_starts_the_subscription_behind_it(billing, team, session, make_link, link_paid, pay,
                                                              deliver):
    link = make_link()
    payment = link_paid(link["id"], gateway_subscription_id="sub_link_1")
    account_id = payment["account_id"]

    pay(payment)

    row = stored(session, link["id"])
    assert (row.status, row.closed_at is not None) == ("paid", True)
    [paid] = outbox_events(session, "payment_link.paid")
    assert (paid["link_id"], paid["status"], paid["amount"]) == (link["id"], "paid", 1900)
    [subscription] = subscriptions_of(session, UUID(account_id))
    assert (subscription.gateway_subscription_id, subscription.plan_code) == ("sub_link_1", "starter_monthly")
    assert subscription_of(billing, team.owner)["status"] == "active"
    assert outbox_events(session, "plan.purchased") == []  # the period comes with the subscription's own events

    facts = {"account_id": account_id, "gateway_subscription_id": "sub_link_1"}
    deliver(gateway_event("subscription_updated", **facts),
            gateway_event("payment_succeeded", **facts),
            gateway_event("subscription_updated", **facts, gateway_event_at=NOW + 1))

    assert subscription_of(billing, team.owner) == EXPECTED_STARTER_SUBSCRIPTION
    [purchased] = outbox_events(session, "plan.purchased")
    assert purchased["plan_code"] == "starter_monthly"
    assert purchased["current_period_end"] == subscription_of(billing, team.owner)["current_period_end"]
    assert len(subscriptions_of(session, UUID(account_id))) == 1


def test_a_paid_stripe_link_ends_the_same_when_the_subscriptions_events_come_first(
        billing, team, session, make_link, link_paid, pay, deliver):
    link = make_link()
    payment = link_paid(link["id"], gateway_subscription_id="sub_link_1")
    facts = {"account_id": payment["account_id"], "gateway_subscription_id": "sub_link_1"}

    deliver(gateway_event("subscription_updated", **facts), gateway_event("payment_succeeded", **facts))
    pay(payment)

    assert stored(session, link["id"]).status == "paid"
    assert subscription_of(billing, team.owner) == EXPECTED_STARTER_SUBSCRIPTION
    assert len(subscriptions_of(session, UUID(payment["account_id"]))) == 1
    assert len(outbox_events(session, "plan.purchased")) == 1
    assert len(outbox_events(session, "payment_link.paid")) == 1


def test_the_payment_that_won_a_race_with_a_cancel_credits_the_account_when_it_arrives(
        billing, indian, refused, session, make_link, link_paid, pay):
    link = make_link("cashfree")
    billing.gateway_cashfree.cancel_payment_link.return_value = {"outcome": "paid"}
    with refused(Conflict, "LINK_PAID"):
        billing.cancel_payment_link(indian, PERSONAL, link["id"])
    assert subscription_of(billing, indian, PERSONAL) is None  # the money is credited by the payment's event

    pay(link_paid(link["id"]))

    assert subscription_of(billing, indian, PERSONAL)["status"] == "active"
    assert len(outbox_events(session, "payment_link.paid")) == 1
    assert len(outbox_events(session, "plan.purchased")) == 1


def utc(text):
    return datetime.fromisoformat(text).astimezone(timezone.utc)


@pytest.mark.parametrize("plan_code, amount, interval, paid_at, period_end", [
    pytest.param("starter_monthly", 149900, "month", start_of_this_month(), a_month_after(start_of_this_month()),
                 id="this-month"),
    pytest.param("starter_monthly", 149900, "month", utc("2026-03-01T09:30:00Z"), utc("2026-04-01T09:30:00Z"),
                 id="a-31-day-month"),
    pytest.param("starter_monthly", 149900, "month", utc("2026-01-31T09:30:00Z"), utc("2026-02-28T09:30:00Z"),
                 id="the-31st-into-february"),
    pytest.param("starter_yearly", 1499000, "year", utc("2026-03-01T09:30:00Z"), utc("2027-03-01T09:30:00Z"),
                 id="a-year"),
])
def test_a_one_off_cashfree_payment_buys_one_period_that_does_not_renew(
        billing, indian, session, make_link, link_paid, pay, plan_code, amount, interval, paid_at, period_end):
    link = make_link("cashfree", plan_code=plan_code)

    pay(link_paid(link["id"], paid_at=int(paid_at.timestamp())))

    assert stored(session, link["id"]).status == "paid"
    assert len(outbox_events(session, "payment_link.paid")) == 1
    subscription = subscription_of(billing, indian, PERSONAL)
    assert subscription == {
        "plan": {"code": plan_code, "name": "Starter", "interval": interval, "amount": amount, "currency": "inr"},
        "status": "active",
        "current_period_start": rfc3339(paid_at),
        "current_period_end": rfc3339(period_end),
        "next_payment_date": None,
        "cancel_at_period_end": True,
        "scheduled_change": None,
    }
    [purchased] = outbox_events(session, "plan.purchased")
    assert (purchased["plan_code"], purchased["gateway"], purchased["currency"]) == (plan_code, "cashfree", "inr")
    assert (purchased["current_period_start"], purchased["current_period_end"]) == (
        rfc3339(paid_at), rfc3339(period_end))


@pytest.mark.parametrize("gateway", ["stripe", "cashfree"])
@pytest.mark.parametrize("redelivery", ["same_event", "same_fact_new_event_id"])
def test_the_same_payment_delivered_twice_changes_nothing_more(billing, session, make_link, link_paid, pay,
                                                               gateway, redelivery):
    link = make_link(gateway)
    payment = link_paid(link["id"])
    pay(payment)
    row = stored(session, link["id"])
    closed_at, account_id = row.closed_at, row.account_id
    purchased = len(outbox_events(session, "plan.purchased"))

    pay(payment if redelivery == "same_event" else {**payment, "event_id": str(uuid4()),
                                                    "gateway_event_id": f"evt_{uuid4().hex[:16]}"})

    row = stored(session, link["id"])
    assert (row.status, row.closed_at) == ("paid", closed_at)
    assert len(outbox_events(session, "payment_link.paid")) == 1
    assert len(subscriptions_of(session, account_id)) == 1
    assert len(outbox_events(session, "plan.purchased")) == purchased == (1 if gateway == "cashfree" else 0)


@pytest.mark.parametrize("gateway", ["stripe", "cashfree"])
@pytest.mark.parametrize("closed", ["cancelled", "expired"])
def test_a_payment_after_the_link_was_closed_still_ends_paid_and_credits_the_account(
        billing, team, indian, session, make_link, link_paid, pay, gateway, closed):
    link = make_link(gateway)
    actor, ref = (team.owner, ORG) if gateway == "stripe" else (indian, PERSONAL)
    if closed == "cancelled":
        billing.cancel_payment_link(actor, ref, link["id"])
    else:
        set_in_the_past(session, link["id"])
        billing.expire_due_links()
    assert stored(session, link["id"]).status == closed

    pay(link_paid(link["id"]))

    assert [item["status"] for item in billing.list_payment_links(actor, ref)] == ["paid"]
    [paid] = outbox_events(session, "payment_link.paid")
    assert paid["link_id"] == link["id"]
    subscription = subscription_of(billing, actor, ref)
    assert (subscription["status"], subscription["plan"]["code"]) == ("active", "starter_monthly")
    assert len(outbox_events(session, "plan.purchased")) == (1 if gateway == "cashfree" else 0)


def test_a_payment_for_a_link_we_never_made_changes_nothing(billing, session, make_link, link_paid, pay):
    link = make_link("cashfree")
    payment = {**link_paid(link["id"]), "link_id": str(uuid4())}

    pay(payment)

    assert stored(session, link["id"]).status == "active"
    assert session.scalar(select(func.count()).select_from(Subscription)) == 0
    assert outbox_events(session, "payment_link.paid") == []


def test_when_a_one_off_period_ends_the_plan_is_cancelled_once(billing, indian, session, make_link, link_paid,
                                                               pay):
    link = make_link("cashfree")
    pay(link_paid(link["id"], paid_at=NOW - 2 * 86400))
    [subscription] = session.scalars(select(Subscription)).all()
    subscription.current_period_end = utc_now() - timedelta(seconds=1)
    session.commit()

    billing.expire_due_links()
    billing.expire_due_links()

    assert subscription_of(billing, indian, PERSONAL)["status"] == "cancelled"
    [cancelled] = outbox_events(session, "plan.cancelled")
    assert (cancelled["plan_code"], cancelled["gateway"]) == ("starter_monthly", "cashfree")
    assert len(outbox_events(session, "plan.purchased")) == 1
    # With the period over, the account may buy again (no HAS_PLAN).
    assert make_link("cashfree")["status"] == "active"


def test_a_one_off_period_still_running_is_left_alone_by_the_expiry_pass(billing, indian, session, make_link,
                                                                          link_paid, pay):
    link = make_link("cashfree")
    pay(link_paid(link["id"], paid_at=int(start_of_this_month().timestamp())))

    billing.expire_due_links()

    assert subscription_of(billing, indian, PERSONAL)["status"] == "active"
    assert outbox_events(session, "plan.cancelled") == []


def test_a_one_off_plan_cancelled_at_its_period_end_needs_no_gateway(billing, indian, session, make_link,
                                                                       link_paid, pay):
    pay(link_paid(make_link("cashfree")["id"], paid_at=int(start_of_this_month().timestamp())))
    before = subscription_of(billing, indian, PERSONAL)

    assert billing.cancel_subscription(indian, PERSONAL, {}) == before
    billing.gateway_cashfree.cancel_subscription.assert_not_called()


def test_a_one_off_plan_cancelled_now_ends_here_without_the_gateway(billing, indian, session, make_link,
                                                                    link_paid, pay):
    pay(link_paid(make_link("cashfree")["id"], paid_at=int(start_of_this_month().timestamp())))
    adapter = billing.gateway_cashfree
    adapter.cancel_subscription.side_effect = GatewayError(details={"gateway": "cashfree"})  # unknown there

    ended = billing.cancel_subscription(indian, PERSONAL, {"at_period_end": False})

    assert ended["status"] == "cancelled"
    adapter.cancel_subscription.assert_not_called()
    assert subscription_of(billing, indian, PERSONAL)["status"] == "cancelled"
    assert len(outbox_events(session, "plan.cancelled")) == 1


def test_a_plan_paid_once_is_upgraded_by_buying_a_subscription_at_full_price(billing, indian, make_link, link_paid,
                                                                              pay):
    pay(link_paid(make_link("cashfree")["id"], paid_at=int(start_of_this_month().timestamp())))
    quote = billing.create_quote(indian, PERSONAL, {"plan_code": "growth_monthly"})
    assert (quote["kind"], quote["amount_due"], quote["currency"]) == ("new", 399900, "inr")
    with pytest.raises(Conflict) as raised:
        billing.create_quote(indian, PERSONAL, {"plan_code": "starter_monthly"})
    assert raised.value.error_code == "ALREADY_ON_PLAN"


def test_an_expired_quote_cannot_make_a_link(billing, team, session):
    quote = billing.create_quote(team.owner, ORG, {"plan_code": "starter_monthly"})
    session.execute(update(Quote).values(expires_at=utc_now() - timedelta(seconds=1)))
    session.commit()
    with pytest.raises(Conflict) as raised:
        billing.create_payment_link(team.owner, ORG, {"quote_id": quote["id"]})
    assert raised.value.error_code == "QUOTE_EXPIRED"


def test_once_the_account_has_a_plan_its_other_links_are_deactivated(billing, team, session, make_link, account_id,
                                                                      deliver):
    """A second payment through another link would buy a second plan: the purchase's own consumer
    closes them right after it commits (and the settle pass would, had that failed)."""
    other = make_link()
    checkout = billing.create_checkout(team.owner, ORG, {"plan_code": "starter_monthly"})
    deliver(*purchase_events(account_id, checkout["id"]))

    billing.settle_with_gateways()  # nothing left to do

    (request,), _ = billing.gateway_stripe.cancel_payment_link.call_args
    assert billing.gateway_stripe.cancel_payment_link.call_count == 1
    assert request["link_id"] == other["id"]
    assert stored(session, other["id"]).status == "cancelled"
    [cancelled] = outbox_events(session, "payment_link.cancelled")
    assert cancelled["link_id"] == other["id"]
