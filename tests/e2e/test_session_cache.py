"""gateway_http's session cache on the whole stack: a token checked lately needs no identity hop, and
a revocation reaches the cache whichever way it is made."""
import time
from contextlib import contextmanager

import pytest
import requests

from deploy.wait_healthy import wait_healthy
from tests.e2e.conftest import PASSWORD, eventually
from tests.e2e.test_reconciliation import rpc

pytestmark = pytest.mark.e2e

USAGE = "/api/v1/billing/personal/usage"
# A revocation made elsewhere (another gateway_http process, an operator) travels identity's outbox,
# the broker and a broadcast queue: well under a second; this leaves room for a busy machine.
REVOCATION_BOUND_SECONDS = 5


@contextmanager
def identity_stopped(stack):
    """identity down (supervisord's stop) for the test's body, and up and answering again after it."""
    answer = stack.supervisor.ctl("stop", "identity")
    assert stack.supervisor.status().get("identity") == "STOPPED", answer.stdout + answer.stderr
    try:
        yield
    finally:
        stack.supervisor.ctl("start", "identity")
        assert wait_healthy(f"{stack.base_url}/healthz", 60), "identity did not come back"


def test_a_token_checked_lately_is_served_while_identity_is_down(sign_up, stack):
    cached, unchecked = sign_up(), sign_up()
    assert cached.get(USAGE).status_code == 200  # identity asked once; the answer kept

    with identity_stopped(stack):
        started = time.monotonic()
        answer = cached.get(USAGE)
        assert answer.status_code == 200, answer.text
        assert time.monotonic() - started < 2
        # The control: a token this gateway has not seen must ask identity, which cannot answer now.
        with pytest.raises(requests.exceptions.ReadTimeout):
            requests.get(stack.base_url + USAGE, headers={"Authorization": f"Bearer {unchecked.token}"}, timeout=2)


def test_logout_through_identity_directly_reaches_the_gateways_cache(sign_up, stack):
    """A logout not made through this gateway_http process (another process's route, an operator
    calling identity) arrives as session.revoked, broadcast to every gateway_http."""
    user = sign_up()
    assert user.get(USAGE).status_code == 200
    assert user.get(USAGE).status_code == 200  # served from the cache now
    rpc(stack, "identity", "logout", user.token)
    started = time.monotonic()
    refused = eventually(lambda: user.get(USAGE).status_code == 401, timeout=REVOCATION_BOUND_SECONDS, interval=0.05)
    assert refused, f"still served {REVOCATION_BOUND_SECONDS} s after identity revoked it"
    print(f"revocation reached the cache in {time.monotonic() - started:.3f} s")


def test_a_name_changed_in_one_session_is_the_name_every_other_session_carries(sign_up, stack):
    """The user's other sessions (another device, another gateway_http process) were cached with the
    old name: identity's user.updated drops them, so what they do next carries the new one."""
    first = sign_up(name="Ann Old")
    second = requests.Session()
    login = second.post(f"{stack.base_url}/api/v1/auth/login", timeout=30,
                        json={"email": first.user["email"], "password": PASSWORD})
    other_token = login.json()["token"]
    headers = {"Authorization": f"Bearer {other_token}"}
    assert second.get(stack.base_url + USAGE, headers=headers, timeout=30).status_code == 200  # cached: "Ann Old"

    assert first.patch("/api/v1/me", json={"name": "Ann New"}).status_code == 200

    def created_as():
        org = second.post(f"{stack.base_url}/api/v1/orgs", json={"name": "Named"}, headers=headers, timeout=30).json()
        members = second.get(f"{stack.base_url}/api/v1/orgs/{org['id']}/members", headers=headers, timeout=30)
        return members.json()["items"][0]["name"]

    assert eventually(lambda: created_as() == "Ann New", timeout=REVOCATION_BOUND_SECONDS, interval=0.2)
