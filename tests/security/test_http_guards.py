"""Guards seen from outside, on the session's stack: the login brute-force limit over HTTP, webhooks
whose signature is right but whose timestamp is outside the 300 s tolerance (a replay), and Cashfree
deliveries known by what was signed."""
import hashlib
import hmac
import json
import time
import uuid

import psycopg
import pytest
import requests

from services.gateway_cashfree.service import signature_of as cashfree_signature
from shared.config import settings
from tests.e2e.conftest import PASSWORD

pytestmark = pytest.mark.e2e  # drives the session's stack over HTTP

TOLERANCE_SECONDS = 300  # API.md: Stripe-Signature's tolerance; Cashfree's timestamp is held to the same


def test_login_brute_force_gets_429_with_retry_after_and_the_error_body(anonymous, sign_up):
    victim, bystander = sign_up(), sign_up()
    login = "/api/v1/auth/login"
    for _ in range(settings().login_failures_per_email):
        assert anonymous.post(login, json={"email": victim.user["email"], "password": "not the password"}
                              ).status_code == 401
    refused = anonymous.post(login, json={"email": victim.user["email"], "password": PASSWORD})  # the right one
    assert refused.status_code == 429, refused.text
    error = refused.json()["error"]
    assert set(error) == {"code", "message", "details"} and error["code"] == "RATE_LIMITED"
    assert 0 < int(refused.headers["Retry-After"]) == error["details"]["retry_after"]
    assert "token" not in refused.text
    # The same client signs someone else in: the lockout is the victim's email's, not the address's.
    assert anonymous.post(login, json={"email": bystander.user["email"], "password": PASSWORD}).status_code == 200


def stripe_signed(body, at):
    digest = hmac.new(settings().stripe_webhook_secret.encode(), f"{at}.".encode() + body, hashlib.sha256)
    return {"Stripe-Signature": f"t={at},v1={digest.hexdigest()}", "Content-Type": "application/json"}


def cashfree_signed(body, at_ms):
    timestamp = str(at_ms)
    return {"x-webhook-timestamp": timestamp, "x-webhook-version": "2025-01-01", "Content-Type": "application/json",
            "x-webhook-signature": cashfree_signature(timestamp, body.decode(), settings().cashfree_client_secret)}


def stored_webhooks(stack, adapter, event_id):
    with psycopg.connect(f"dbname={stack.database_prefix}{adapter} host=127.0.0.1") as conn:
        return conn.execute("SELECT count(*) FROM webhook_events WHERE id = %s", (event_id,)).fetchone()[0]


def test_a_stripe_event_signed_too_long_ago_is_refused_and_changes_nothing(stack, sign_up, anonymous):
    """A real checkout's 'expired' event, correctly signed 301 s ago, is a replay: 400, the checkout
    stays open and the event is not stored. Signed now, the same event does expire it (the control)."""
    payer = sign_up()
    checkout = payer.post("/api/v1/billing/personal/checkout", json={"plan_code": "starter_monthly"}).json()
    session_id = checkout["redirect_url"].rstrip("/").rsplit("/", 1)[-1].split("?")[0]
    session = requests.get(f"{stack.stripe_sandbox}/v1/checkout/sessions/{session_id}", timeout=10,
                           headers={"Authorization": f"Bearer {settings().stripe_secret_key}"}).json()
    event_id = f"evt_replay_{uuid.uuid4().hex[:12]}"
    body = json.dumps({"id": event_id, "object": "event", "type": "checkout.session.expired",
                       "created": int(time.time()), "data": {"object": {**session, "status": "expired"}}}).encode()

    replay = anonymous.post("/webhooks/stripe", data=body,
                            headers=stripe_signed(body, int(time.time()) - TOLERANCE_SECONDS - 1))
    assert replay.status_code == 400, replay.text
    assert replay.json()["error"]["code"] == "SIGNATURE_INVALID"
    forged = anonymous.post("/webhooks/stripe", data=body, headers={
        **stripe_signed(body, int(time.time())), "Stripe-Signature": f"t={int(time.time())},v1={'0' * 64}"})
    assert forged.status_code == 400
    time.sleep(1)  # what an accepted event would set off (relay, billing) has had its chance
    assert stored_webhooks(stack, "gateway_stripe", event_id) == 0
    assert payer.get(f"/api/v1/billing/personal/checkout/{checkout['id']}").json()["status"] == "open"

    assert anonymous.post("/webhooks/stripe", data=body, headers=stripe_signed(body, int(time.time()))
                          ).status_code == 200
    assert stored_webhooks(stack, "gateway_stripe", event_id) == 1
    deadline = time.monotonic() + 20
    while payer.get(f"/api/v1/billing/personal/checkout/{checkout['id']}").json()["status"] == "open":
        assert time.monotonic() < deadline, "the freshly signed event never reached the checkout"
        time.sleep(0.2)


def cashfree_stored_id(body):
    """The id gateway_cashfree stores a webhook under: its type and the digest of the signed body."""
    return f"{json.loads(body)['type']}:{hashlib.sha256(body).hexdigest()}"


def test_a_cashfree_event_with_an_old_timestamp_is_refused_and_not_stored(stack, anonymous):
    """Cashfree signs its x-webhook-timestamp (milliseconds) with the body; the adapter holds it to
    the same 300 s as Stripe's, so a captured delivery cannot be replayed later."""
    key = f"wh_replay_{uuid.uuid4().hex[:12]}"
    body = json.dumps({"type": "SECURITY_PROBE", "event_time": "2026-11-01T10:00:05+05:30",
                       "data": {"probe": key}}).encode()
    now_ms = int(time.time() * 1000)
    for signed_at_ms in (now_ms - (TOLERANCE_SECONDS + 1) * 1000, now_ms + (TOLERANCE_SECONDS + 60) * 1000):
        replay = anonymous.post("/webhooks/cashfree", data=body,
                                headers={**cashfree_signed(body, signed_at_ms), "x-idempotency-key": key})
        assert replay.status_code == 400, replay.text
    forged = cashfree_signed(body, now_ms)
    forged["x-webhook-signature"] = cashfree_signature(str(now_ms), body.decode(), "not the secret")
    assert anonymous.post("/webhooks/cashfree", data=body, headers={**forged, "x-idempotency-key": key}
                          ).status_code == 400
    assert stored_webhooks(stack, "gateway_cashfree", cashfree_stored_id(body)) == 0

    accepted = anonymous.post("/webhooks/cashfree", data=body,
                              headers={**cashfree_signed(body, now_ms), "x-idempotency-key": key})
    assert accepted.status_code == 200, accepted.text
    assert stored_webhooks(stack, "gateway_cashfree", cashfree_stored_id(body)) == 1


def test_a_cashfree_delivery_is_known_by_its_signed_body_not_its_unsigned_key(stack, anonymous):
    """x-idempotency-key is not signed: a 300-character one is no 500, and the same body sent again
    (re-signed a second later, under another key) is stored once; another body under one key is another event."""
    def event(probe):
        return json.dumps({"type": "SECURITY_PROBE", "event_time": "2026-11-01T10:00:05+05:30",
                           "data": {"probe": probe}}).encode()

    body, other = event(uuid.uuid4().hex), event(uuid.uuid4().hex)
    now_ms = int(time.time() * 1000)
    deliveries = ((body, now_ms, "k" * 300), (body, now_ms + 1000, "another-key"), (other, now_ms, "k" * 300))
    for sent, at_ms, key in deliveries:
        answer = anonymous.post("/webhooks/cashfree", data=sent, headers={**cashfree_signed(sent, at_ms),
                                                                         "x-idempotency-key": key})
        assert answer.status_code == 200, answer.text
    assert stored_webhooks(stack, "gateway_cashfree", cashfree_stored_id(body)) == 1
    assert stored_webhooks(stack, "gateway_cashfree", cashfree_stored_id(other)) == 1
