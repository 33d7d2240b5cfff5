"""The whole stack, started the way `make up` starts it (deploy/Procfile under honcho), on its own
port, RabbitMQ vhost and databases, driven over HTTP."""
import os
import uuid

import pytest
import requests

from deploy.stack import IsolatedStack

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
