"""The whole stack, started the way `make up` starts it (deploy/Procfile under supervisord), on its own
port, RabbitMQ vhost and databases, driven over HTTP."""
import os
import time
import uuid

import pytest
import requests

from deploy.stack import IsolatedStack
from tests.e2e.gateways import DRIVERS, EventTap

PASSWORD = "correct horse battery"


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    started = IsolatedStack(os.environ["DATABASE_PREFIX"] + "e2e_",  # test_e2e_, or per TEST_DATABASE_PREFIX
                            tmp_path_factory.mktemp("stack") / "stack.log")
    try:
        started.start()
    except RuntimeError as error:
        pytest.fail(str(error))
    try:
        yield started
    finally:
        started.stop()


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
    """sign_up(country="US", **fields) -> a Client signed in as a brand-new user (with .user)."""
    clients = []

    def make(country="US", email=None, name="Tester", **extra):
        email = email or f"user-{uuid.uuid4().hex[:10]}@example.com"
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
