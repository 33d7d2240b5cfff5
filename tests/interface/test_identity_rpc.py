"""identity in a container on a real broker and database, called the way other services call it."""
import eventlet
import pytest
from nameko.standalone.rpc import ServiceRpcProxy
from nameko.testing.services import replace_dependencies

from services.identity.service import IdentityService
from shared.errors import Conflict, Unauthorized
from shared.tokens import hash_token
from tests.interface.test_outbox_relay import wait_until

SIGNUP = {"email": "ann@example.com", "password": "correct horse battery", "name": "Ann", "country": "US"}


@pytest.fixture
def identity(container_factory, service_config, clean_databases):
    container = container_factory(IdentityService, service_config)
    billing = replace_dependencies(container, "billing")
    billing.get_plan.return_value = {"code": "starter_monthly", "name": "Starter"}
    container.start()
    with ServiceRpcProxy("identity", service_config) as proxy:
        yield proxy


def test_typed_errors_arrive_as_their_own_types_over_rpc(identity):
    identity.signup(SIGNUP)
    with pytest.raises(Conflict) as raised:
        identity.signup({**SIGNUP, "email": "ANN@example.com"})
    assert raised.value.error_code == "EMAIL_TAKEN"
    with pytest.raises(Unauthorized):
        identity.authenticate_session("forged")


def test_signup_publishes_user_signed_up_once(identity, event_listener):
    received = event_listener(("identity", "user.signed_up"))
    user = identity.signup({**SIGNUP, "plan": "starter_monthly"})["user"]
    wait_until(lambda: received)
    eventlet.sleep(0.5)  # room for a duplicate to show up, if the relay sent one
    [(_, payload)] = received
    assert (payload["user_id"], payload["pending_plan_code"]) == (user["id"], "starter_monthly")


def test_health_checks_the_database(identity):
    assert identity.health() == "ok"


def test_logout_publishes_session_revoked_with_the_tokens_hash(identity, event_listener):
    received = event_listener(("identity", "session.revoked"))
    signed_up = identity.signup(SIGNUP)
    session = identity.authenticate_session(signed_up["token"])
    assert session["user"] == signed_up["user"] and session["expires_at"].endswith("Z")
    identity.logout(signed_up["token"])
    wait_until(lambda: received)
    [(_, payload)] = received
    assert payload["token_hash"] == hash_token(signed_up["token"])
    assert payload["user_id"] == signed_up["user"]["id"]
    with pytest.raises(Unauthorized):
        identity.authenticate_session(signed_up["token"])
