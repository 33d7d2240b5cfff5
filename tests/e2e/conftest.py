"""The whole stack, started the way `make up` starts it (deploy/Procfile under honcho), on its own
port, RabbitMQ vhost and databases, driven over HTTP."""
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import requests

from deploy.processes import processes
from deploy.wait_healthy import wait_healthy
from shared import db
from shared.migrate import services_with_migrations, upgrade
from tests.conftest import drop_database
from tests.interface.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
RABBIT_API = "http://127.0.0.1:15672/api"
PASSWORD = "correct horse battery"


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    vhost = f"e2e_{uuid.uuid4().hex[:8]}"
    guest = ("guest", "guest")
    requests.put(f"{RABBIT_API}/vhosts/{vhost}", auth=guest, timeout=10).raise_for_status()
    requests.put(f"{RABBIT_API}/permissions/{vhost}/guest", auth=guest, timeout=10,
                 json={"configure": ".*", "write": ".*", "read": ".*"}).raise_for_status()

    prefix = os.environ["DATABASE_PREFIX"] + "e2e_"  # test_e2e_, or per TEST_DATABASE_PREFIX
    previous_prefix = os.environ["DATABASE_PREFIX"]
    os.environ["DATABASE_PREFIX"] = prefix  # shared.db reads it through settings(); reset below
    from shared.config import settings
    settings.cache_clear()
    db.dispose_engines()
    for name in services_with_migrations():
        drop_database(name)
        upgrade(name)
    db.dispose_engines()
    os.environ["DATABASE_PREFIX"] = previous_prefix
    settings.cache_clear()

    port, stripe_port, cashfree_port = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "DATABASE_PREFIX": prefix,
        "HTTP_PORT": str(port),
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        "AMQP_URI": f"pyamqp://guest:guest@127.0.0.1:5672/{vhost}",
        "USAGE_INGEST_KEY": "e2e-usage-key",
        "STRIPE_SANDBOX_PORT": str(stripe_port),
        "STRIPE_API_BASE": f"http://127.0.0.1:{stripe_port}",
        "STRIPE_TIMEOUT_SECONDS": "2",
        "STRIPE_SANDBOX_RETRY_SCALE": "0.2",
        "CASHFREE_SANDBOX_PORT": str(cashfree_port),
        "CASHFREE_API_BASE": f"http://127.0.0.1:{cashfree_port}/pg",
        "CASHFREE_TIMEOUT_SECONDS": "2",
        "CASHFREE_SANDBOX_RETRY_SCALE": "0.1",
        "LINK_EXPIRY_POLL_SECONDS": "1",
        "PYTHONUNBUFFERED": "1",
    }
    log_path = tmp_path_factory.mktemp("stack") / "stack.log"
    with open(log_path, "w") as log:
        honcho = subprocess.Popen(
            [sys.executable, "-m", "honcho", "-f", "deploy/Procfile", "-d", ".", "start", *processes()],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        if not wait_healthy(f"{base_url}/healthz", 60):
            pytest.fail(f"stack did not become healthy; log:\n{log_path.read_text()[-5000:]}")
        for sandbox_port in (stripe_port, cashfree_port):
            if not wait_healthy(f"http://127.0.0.1:{sandbox_port}/_sandbox/health", 30):
                pytest.fail(f"a gateway sandbox did not start; log:\n{log_path.read_text()[-5000:]}")
        yield Stack(base_url, honcho, log_path, env)
    finally:
        honcho.send_signal(signal.SIGTERM)
        try:
            honcho.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(honcho.pid, signal.SIGKILL)
        requests.delete(f"{RABBIT_API}/vhosts/{vhost}", auth=guest, timeout=10)


class Stack:
    def __init__(self, base_url, process, log_path, env):
        self.base_url = base_url
        self.process = process
        self.log_path = log_path
        self.env = env
        self.database_prefix = env["DATABASE_PREFIX"]
        self.stripe_sandbox = f"http://127.0.0.1:{env['STRIPE_SANDBOX_PORT']}"
        self.cashfree_sandbox = f"http://127.0.0.1:{env['CASHFREE_SANDBOX_PORT']}"

    def client(self, token=None):
        return Client(self.base_url, token)


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
    with stack.client() as client:
        yield client


@pytest.fixture
def sign_up(stack):
    """sign_up(country="US", **fields) -> a Client signed in as a brand-new user (with .user)."""
    clients = []

    def make(country="US", email=None, name="Tester", **extra):
        email = email or f"user-{uuid.uuid4().hex[:10]}@example.com"
        client = stack.client()
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
