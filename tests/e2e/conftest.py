"""Driving the whole stack (the `stack` fixture of tests/conftest.py) over HTTP."""
import time
import uuid

import psycopg
import pytest
import requests

from tests.e2e.gateways import DRIVERS, EventTap

PASSWORD = "correct horse battery"


class Client(requests.Session):
    """requests against the stack; `token` is sent as the bearer token."""

    def __init__(self, base_url, token=None):
        super().__init__()
        self.base_url = base_url
        self.token = token
        self.user = None

    def request(self, method, url, *args, **kwargs):
        headers = kwargs.pop("headers", None) or {}
        if self.token and "Authorization" not in headers:
            headers["Authorization"] = f"Bearer {self.token}"
        return super().request(method, self.base_url + url, *args, headers=headers, timeout=30, **kwargs)


@pytest.fixture
def anonymous(stack):
    with Client(stack.base_url) as client:
        yield client


@pytest.fixture
def sign_up(stack):
    """sign_up(country="US", **fields) -> a Client signed in as a brand-new user (with .user); with
    the phone signup requires in India unless `phone` is given."""
    clients = []

    def make(country="US", email=None, name="Tester", **extra):
        email = email or f"user-{uuid.uuid4().hex[:10]}@example.com"
        if country in DRIVERS and DRIVERS[country].payer_phone:
            extra.setdefault("phone", DRIVERS[country].payer_phone)
        client = Client(stack.base_url)
        response = client.post("/api/v1/auth/signup", json={
            "email": email, "password": PASSWORD, "name": name, "country": country, **extra})
        assert response.status_code == 201, response.text
        body = response.json()
        client.token, client.user = body["token"], body["user"]
        client.signup_answer = body
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def team(sign_up):
    """An org with one signed-in member of each role, plus an outsider who belongs elsewhere."""
    owner = sign_up(name="Olive Owner")
    org = owner.post("/api/v1/orgs", json={"name": "Acme"}).json()
    members = {"owner": owner}
    for role in ("super_admin", "admin", "standard"):
        member = sign_up(name=role)
        invitation = owner.post(f"/api/v1/orgs/{org['id']}/invitations",
                                json={"email": member.user["email"], "role": role}).json()
        assert member.post(f"/api/v1/invitations/{invitation['token']}/accept").json()["role"] == role
        members[role] = member
    outsider = sign_up(name="Otto Outsider")
    outsider.post("/api/v1/orgs", json={"name": "Elsewhere"})
    members["outsider"] = outsider
    return org, members


# -- billing scenarios, per region (country -> gateway sandbox) ------------------------------

@pytest.fixture(params=sorted(DRIVERS))
def region(request, stack):
    driver = DRIVERS[request.param](stack)
    yield driver
    driver.clear_faults()
    driver.assert_requests_valid()


@pytest.fixture
def tap(stack):
    taps = []

    def make(source, event_type):
        taps.append(EventTap(stack.env["AMQP_URI"], source, event_type))
        return taps[-1]

    yield make
    for one in taps:
        one.close()


def eventually(check, timeout=20, interval=0.2):
    """Poll `check` until it returns a truthy value (webhooks arrive asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


@pytest.fixture
def org_owner(sign_up, region):
    owner = sign_up(country=region.country, name="Olive Owner")
    org = owner.post("/api/v1/orgs", json={"name": "Acme"}).json()
    owner.acct = f"/api/v1/orgs/{org['id']}/billing"
    owner.org = org
    return owner


@pytest.fixture
def cashfree(stack):
    """India's gateway sandbox, for scenarios that only India has."""
    driver = DRIVERS["IN"](stack)
    yield driver
    driver.assert_requests_valid()


@pytest.fixture
def phoneless_indian_org(sign_up):
    """An Indian organization whose owner signed up in the US, where nobody is asked for a phone."""
    owner = sign_up(country="US", name="Pat Phoneless")
    assert owner.user["phone"] is None
    org = owner.post("/api/v1/orgs", json={"name": "Mumbai Ops", "country": "IN"}).json()
    owner.acct = f"/api/v1/orgs/{org['id']}/billing"
    owner.org = org
    return owner


def billing_rows(stack, table, org_id):
    """How many rows of billing's `table` (checkouts, payment_links, quotes) an organization's account has."""
    with psycopg.connect(f"dbname={stack.database_prefix}billing host=127.0.0.1") as conn:
        return conn.execute(f"SELECT count(*) FROM {table} JOIN accounts ON accounts.id = {table}.account_id "
                            "WHERE accounts.kind = 'org' AND accounts.owner_ref = %s", (org_id,)).fetchone()[0]


def buy(client, region, plan_code="growth_monthly"):
    """Quote, Pay Now, press Pay on the gateway's page, and wait for the plan to be active."""
    quote = client.post(f"{client.acct}/quotes", json={"plan_code": plan_code})
    assert quote.status_code == 201, quote.text
    checkout = client.post(f"{client.acct}/checkout", json={"quote_id": quote.json()["id"]})
    assert checkout.status_code == 201, checkout.text
    checkout = checkout.json()
    assert (checkout["status"], checkout["gateway"]) == ("open", region.gateway)
    back_home = region.pay(checkout["redirect_url"])
    assert back_home.status_code == 200
    # Gateways send their webhooks in any order: wait until the plan is active and its period known.
    summary = eventually(lambda: (s := client.get(client.acct).json())["subscription"] and
                         s["subscription"]["status"] == "active" and s["subscription"]["next_payment_date"] and s)
    assert summary, client.get(client.acct).text
    return checkout, summary
