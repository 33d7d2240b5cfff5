"""The Cashfree sandbox, driven with plain `requests` exactly as the gateway_cashfree adapter does.

Each test starts a sandbox in this process on a free port, with a fake clock and a small local
webhook receiver. Every call to the PG API goes through `CashfreeApi.call`, which checks the
answer against the operation's response schema in Cashfree's own OpenAPI document (parsed once
per test session): if it validates there, it has the shape the real API documents. The root
conftest has monkey-patched eventlet, so this also shows the sandbox's threads and locks work as
green threads.
"""
import base64
import copy
import hashlib
import hmac
import json
import re
import time
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path

import pytest
import requests
from openapi_schema_validator import OAS30Validator
from referencing import Registry, Resource, Specification

from services.gateway_cashfree.sandbox import openapi as sandbox_openapi
from services.gateway_cashfree.sandbox import start_sandbox
from tests.unit import sandbox_helpers
from tests.unit.sandbox_helpers import FakeClock, event_type

CLIENT_ID = "cf_sandbox_client"
SECRET = "cf_sandbox_secret"
VERSION = "2025-01-01"
OPENAPI = Path(__file__).resolve().parents[3] / "shared/reference/cashfree/openapi-2025-01-01.yaml"
RETURN_URL = "https://portal.test/billing/return?org=acme"
IST_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\+05:30|Z)$")
JUNE_1ST = 1_748_716_200.0  # 2025-06-01T00:00:00+05:30, where the fake clock starts: "a month later" is 30 days
MONTH_LATER = 30 * 24 * 3600  # the fake clock starts on the 1st of a 30-day month (JUNE_1ST)


# the contract: Cashfree's OpenAPI document, read once per test session

class Contract:
    """Validators for the operations' documented answers, `$ref`s resolved through a registry."""

    BASE = "urn:test:cashfree-openapi"
    OPERATIONS = [  # (method, request path under /pg as a regex, the operation's path in the document)
        ("POST", r"/plans", "/plans"),
        ("GET", r"/plans/[^/]+", "/plans/{plan_id}"),
        ("POST", r"/subscriptions", "/subscriptions"),
        ("GET", r"/subscriptions/[^/]+", "/subscriptions/{subscription_id}"),
        ("POST", r"/subscriptions/[^/]+/manage", "/subscriptions/{subscription_id}/manage"),
        ("GET", r"/subscriptions/[^/]+/payments", "/subscriptions/{subscription_id}/payments"),
        ("POST", r"/subscriptions/pay", "/subscriptions/pay"),
        ("POST", r"/subscriptions/[^/]+/refunds", "/subscriptions/{subscription_id}/refunds"),
        ("GET", r"/subscriptions/[^/]+/refunds/[^/]+", "/subscriptions/{subscription_id}/refunds/{refund_id}"),
        ("POST", r"/links", "/links"),
        ("GET", r"/links/[^/]+", "/links/{link_id}"),
        ("POST", r"/links/[^/]+/cancel", "/links/{link_id}/cancel"),
        ("GET", r"/links/[^/]+/orders", "/links/{link_id}/orders"),
        ("GET", r"/orders/[^/]+", "/orders/{order_id}"),
        ("POST", r"/orders/[^/]+/refunds", "/orders/{order_id}/refunds"),
        ("GET", r"/orders/[^/]+/refunds", "/orders/{order_id}/refunds"),
        ("GET", r"/orders/[^/]+/refunds/[^/]+", "/orders/{order_id}/refunds/{refund_id}"),
    ]
    UNDOCUMENTED = {409: "ApiError409"}  # Cashfree answers 409 for duplicate ids; the paths omit it

    def __init__(self, document):
        self.document = document
        self.registry = Registry().with_resource(
            self.BASE, Resource(contents=document, specification=Specification.OPAQUE))
        self._cache = {}

    def template(self, method, path):
        for verb, pattern, template in self.OPERATIONS:
            if verb == method and re.fullmatch(pattern, path):
                return template
        return None

    def answer_validator(self, method, template, status):
        key = (method, template, status)
        if key not in self._cache:
            responses = self.document["paths"][template][method.lower()]["responses"]
            if str(status) in responses:
                schema = responses[str(status)]["content"]["application/json"]["schema"]
            elif status in self.UNDOCUMENTED:
                schema = {"$ref": f"#/components/schemas/{self.UNDOCUMENTED[status]}"}
            else:
                raise AssertionError(f"{method} {template} does not document status {status}")
            self._cache[key] = self._validator(schema)
        return self._cache[key]

    def component_validator(self, name):
        if name not in self._cache:
            self._cache[name] = self._validator({"$ref": f"#/components/schemas/{name}"})
        return self._cache[name]

    def _validator(self, schema):
        text = json.dumps(schema).replace('"$ref": "#/', f'"$ref": "{self.BASE}#/')
        return OAS30Validator(json.loads(text), registry=self.registry)


def problems(validator, instance):
    return [f"{'.'.join(map(str, error.absolute_path)) or '<root>'}: {error.message}"
            for error in validator.iter_errors(instance)]


@pytest.fixture(scope="session")
def contract():
    """The document as the sandbox parsed it (1 MB of YAML is parsed once per process), judged here
    by validators of the test's own."""
    if not OPENAPI.exists():
        pytest.skip(f"Cashfree's OpenAPI document is not at {OPENAPI} (the shared reference folder is absent)")
    return Contract(sandbox_openapi.load(str(OPENAPI)).document)


# the adapter's side: requests with Cashfree's headers, bodies with exact amounts

def to_json(body):
    """JSON with Decimal amounts written as exact numbers (json.dumps alone cannot)."""
    text = json.dumps(body, default=lambda value: f"@decimal:{value}@")
    return re.sub(r'"@decimal:([-0-9.E+]+)@"', r"\1", text)


class Answer:
    def __init__(self, response):
        self.status = response.status_code
        self.headers = response.headers
        self.text = response.text
        self.body = json.loads(response.text, parse_float=Decimal)


class CashfreeApi:
    """What the adapter does: requests at CASHFREE_API_BASE with the client id, secret and version."""

    def __init__(self, base, contract, client_id=CLIENT_ID, secret=SECRET):
        self.base = base
        self.contract = contract
        self.headers = {"x-client-id": client_id, "x-client-secret": secret, "x-api-version": VERSION}

    def call(self, method, path, body=None, *, idempotency_key=None, headers=None, timeout=5):
        sent = {**self.headers, "x-request-id": f"test-{time.monotonic_ns()}", **(headers or {})}
        sent = {name: value for name, value in sent.items() if value is not None}
        if body is not None:
            sent["Content-Type"] = "application/json"
        if idempotency_key:
            sent["x-idempotency-key"] = idempotency_key
        response = requests.request(method, self.base + path, headers=sent, timeout=timeout,
                                    data=None if body is None else to_json(body).encode("utf-8"))
        answer = Answer(response)
        self.check(method, path, answer)
        return answer

    def check(self, method, path, answer):
        """Every answer, success or error, has the shape the OpenAPI document gives that status."""
        if answer.status != 200:
            assert set(answer.body) == {"message", "code", "type"}, answer.body
        template = self.contract.template(method, path.split("?")[0])
        if template is None:
            assert answer.status != 200, f"{method} {path} is not an operation of the document"
            return
        found = problems(self.contract.answer_validator(method, template, answer.status), answer.body)
        assert not found, f"{method} {path} -> {answer.status} does not match the OpenAPI document: {found}"

    # the calls the adapter makes

    def create_plan(self, plan_id="pro_monthly", amount=Decimal("1499.00"), name="Pro", **extra):
        answer = self.call("POST", "/plans", {
            "plan_id": plan_id, "plan_name": name, "plan_type": "PERIODIC", "plan_currency": "INR",
            "plan_recurring_amount": amount, "plan_max_amount": Decimal("10000.00"), "plan_interval_type": "MONTH",
            "plan_intervals": 1, "plan_note": "monthly", **extra})
        assert answer.status == 200, answer.body
        return answer.body

    def subscription_body(self, subscription_id="sub-acme-1", plan_id="pro_monthly", amount=Decimal("1499.00"),
                          **extra):
        return {
            "subscription_id": subscription_id,
            "customer_details": {"customer_name": "Ann", "customer_email": "ann@example.com",
                                 "customer_phone": "9876543210"},
            "plan_details": {"plan_id": plan_id},
            "authorization_details": {"authorization_amount": amount, "authorization_amount_refund": False,
                                      "payment_methods": ["upi", "card", "enach"]},
            "subscription_meta": {"return_url": RETURN_URL},
            "subscription_tags": {"account_id": "acct-1", "checkout_id": "chk-1"},
            **extra,
        }

    def create_subscription(self, **options):
        key = options.pop("idempotency_key", None)
        answer = self.call("POST", "/subscriptions", self.subscription_body(**options), idempotency_key=key)
        assert answer.status == 200, answer.body
        return answer.body

    def subscription(self, subscription_id="sub-acme-1"):
        answer = self.call("GET", f"/subscriptions/{subscription_id}")
        assert answer.status == 200, answer.body
        return answer.body

    def payments(self, subscription_id="sub-acme-1"):
        answer = self.call("GET", f"/subscriptions/{subscription_id}/payments")
        assert answer.status == 200, answer.body
        return answer.body

    def link_body(self, link_id="lnk_L1", amount=Decimal("1499.00"), **extra):
        """What gateway_cashfree's create_payment_link sends."""
        return {
            "link_id": link_id, "link_amount": amount, "link_currency": "INR", "link_purpose": "Pro (monthly)",
            "customer_details": {"customer_phone": "9999999999", "customer_email": "ann@example.com",
                                 "customer_name": "Ann"},
            "link_partial_payments": False, "link_expiry_time": "2025-06-08T18:30:00Z",
            "link_notes": {"account_id": "acct-1", "link_id": "L1", "plan_code": "pro_monthly"},
            "link_meta": {"return_url": RETURN_URL}, "link_auto_reminders": False, **extra,
        }

    def create_link(self, idempotency_key="link-L1", **options):
        answer = self.call("POST", "/links", self.link_body(**options), idempotency_key=idempotency_key)
        assert answer.status == 200, answer.body
        return answer.body

    def link(self, link_id="lnk_L1"):
        answer = self.call("GET", f"/links/{link_id}")
        assert answer.status == 200, answer.body
        return answer.body

    def link_orders(self, link_id="lnk_L1", status=None):
        answer = self.call("GET", f"/links/{link_id}/orders" + (f"?status={status}" if status else ""))
        assert answer.status == 200, answer.body
        return answer.body

    def cancel_link(self, link_id="lnk_L1"):
        """What gateway_cashfree's cancel_payment_link sends."""
        return self.call("POST", f"/links/{link_id}/cancel", {}, idempotency_key=f"cancel-{link_id}")

    def raise_charge(self, payment_id="chk-1-first-period", amount=Decimal("1499.00"), subscription_id="sub-acme-1",
                     idempotency_key=None, **extra):
        """What the adapter sends to charge a period now: POST /subscriptions/pay, payment_type CHARGE
        (scheduled for now: Cashfree requires a date for UPI and card mandates)."""
        body = {"subscription_id": subscription_id, "payment_id": payment_id, "payment_type": "CHARGE",
                "payment_amount": amount, "payment_schedule_date": "2025-06-01T00:00:00+05:30", **extra}
        return self.call("POST", "/subscriptions/pay", {k: v for k, v in body.items() if v is not None},
                         idempotency_key=idempotency_key)

    def refund_payment(self, refund_id="refund-1", amount=Decimal("1499.00"), subscription_id="sub-acme-1",
                       idempotency_key=None, **extra):
        """POST /subscriptions/{id}/refunds; name the payment with payment_id= or cf_payment_id=."""
        body = {"subscription_id": subscription_id, "refund_id": refund_id, "refund_amount": amount, **extra}
        return self.call("POST", f"/subscriptions/{subscription_id}/refunds", body, idempotency_key=idempotency_key)

    def refund_order(self, order_id="lnk_L1_order", refund_id="refund-1", amount=Decimal("1499.00"),
                     idempotency_key=None, **extra):
        body = {"refund_id": refund_id, "refund_amount": amount, **extra}
        return self.call("POST", f"/orders/{order_id}/refunds", body, idempotency_key=idempotency_key)

    def manage(self, action, subscription_id="sub-acme-1", **details):
        body = {"subscription_id": subscription_id, "action": action}
        if details:
            body["action_details"] = details
        return self.call("POST", f"/subscriptions/{subscription_id}/manage", body)


# the world around the sandbox: a clock and a webhook endpoint

class WebhookReceiver(sandbox_helpers.WebhookReceiver):
    """Stands in for gateway_http's /webhooks/cashfree: records deliveries, answers as told."""

    PATH = "/webhooks/cashfree"

    def accepted(self, *types, timeout=5.0):
        """Wait for accepted deliveries of these types (any order); each verified as the adapter will.
        Returns {type: [event payloads]}."""
        events = {}
        for delivery in self.accepted_deliveries(*types, timeout=timeout):
            events.setdefault(event_type(delivery), []).append(verified(delivery))
        return events


def verified(delivery, secret=SECRET):
    """The adapter's check: base64 HMAC-SHA256 of timestamp + raw body, keyed with the client secret."""
    headers = {name.lower(): value for name, value in delivery["headers"].items()}
    timestamp = headers["x-webhook-timestamp"]
    expected = base64.b64encode(hmac.new(secret.encode(), timestamp.encode() + delivery["body"],
                                         hashlib.sha256).digest()).decode()
    assert hmac.compare_digest(headers["x-webhook-signature"], expected), "bad webhook signature"
    assert timestamp.isdigit() and abs(int(timestamp) / 1000 - time.time()) < 60  # milliseconds, now
    assert headers["x-webhook-version"] == VERSION
    assert headers["content-type"].startswith("application/json")
    assert headers["x-idempotency-key"]
    event = json.loads(delivery["body"], parse_float=Decimal)
    assert list(event) == ["data", "event_time", "type"] and IST_TIME.match(event["event_time"])
    return event


@pytest.fixture
def clock():
    return FakeClock(JUNE_1ST)


@pytest.fixture
def receiver():
    endpoint = WebhookReceiver()
    yield endpoint
    endpoint.stop()


@pytest.fixture
def sandbox(receiver, clock):
    handle = start_sandbox(port=0, webhook_url=receiver.url, clock=clock, retry_scale=0.01)
    yield handle
    handle.stop()


@pytest.fixture
def cashfree(sandbox, contract):
    return CashfreeApi(sandbox.api_base, contract)


def control(sandbox, verb, path, body=None):
    """A call to the sandbox's own /_sandbox API (not Cashfree's)."""
    response = requests.request(verb, sandbox.url + path, data=None if body is None else to_json(body),
                                headers={"Content-Type": "application/json"}, timeout=5)
    return response.status_code, json.loads(response.text, parse_float=Decimal)


def authorised_subscription(cashfree, sandbox, method="upi", **options):
    """A plan, a subscription on it, and the payer's Pay: the subscription as it then is."""
    if "plan_id" not in options:
        cashfree.create_plan()
    created = cashfree.create_subscription(**options)
    status, body = control(sandbox, "POST", f"/_sandbox/checkout/subscription/{created['subscription_session_id']}/pay",
                           {"method": method})
    assert status == 200, body
    return cashfree.subscription(created["subscription_id"])


def subscription_posts(sandbox):
    return [entry for entry in control(sandbox, "GET", "/_sandbox/requests")[1] if entry["path"] == "/pg/subscriptions"]


def events_of(sandbox):
    return control(sandbox, "GET", "/_sandbox/events")[1]


# the environment

def test_the_sandbox_runs_under_eventlet_monkey_patching():
    import eventlet.patcher

    assert eventlet.patcher.is_monkey_patched("thread") and eventlet.patcher.is_monkey_patched("socket")


# plans and validation

def test_a_plan_is_created_active_fetched_and_unique(cashfree):
    plan = cashfree.create_plan(amount=Decimal("1499.99"))
    assert (plan["plan_id"], plan["plan_status"], plan["plan_type"], plan["plan_currency"]) == (
        "pro_monthly", "ACTIVE", "PERIODIC", "INR")
    assert plan["plan_recurring_amount"] == Decimal("1499.99") and plan["plan_max_amount"] == 10000
    fetched = cashfree.call("GET", "/plans/pro_monthly")
    assert fetched.status == 200 and fetched.body == plan and '"plan_recurring_amount":1499.99' in fetched.text

    duplicate = cashfree.call("POST", "/plans", {"plan_id": "pro_monthly", "plan_name": "Again",
                                                 "plan_type": "ON_DEMAND", "plan_max_amount": 100})
    assert duplicate.status == 409 and duplicate.body["type"] == "invalid_request_error"
    missing = cashfree.call("GET", "/plans/nope")
    assert missing.status == 404 and missing.body["type"] == "invalid_request_error"


def test_invalid_bodies_are_refused_with_the_field_named(cashfree, sandbox):
    cashfree.create_plan()
    body = cashfree.subscription_body()
    del body["customer_details"]
    no_customer = cashfree.call("POST", "/subscriptions", body)
    assert no_customer.status == 400 and no_customer.body["type"] == "invalid_request_error"
    assert "customer_details" in no_customer.body["message"] and no_customer.body["code"] == "customer_details_missing"

    string_amount = cashfree.call("POST", "/subscriptions", cashfree.subscription_body(amount="1499.00"))
    assert string_amount.status == 400
    assert "authorization_details.authorization_amount" in string_amount.body["message"]

    for bad_plan in ({"plan_id": "odd", "plan_name": "Odd", "plan_type": "WEEKLY", "plan_max_amount": 100},
                     {"plan_id": "odd", "plan_name": "Odd", "plan_type": "ON_DEMAND", "plan_max_amount": "100"},
                     {"plan_id": "odd", "plan_name": "Odd", "plan_type": "ON_DEMAND",
                      "plan_max_amount": Decimal("10.005")}):
        refused = cashfree.call("POST", "/plans", bad_plan)
        assert refused.status == 400, bad_plan
        assert refused.body["message"].startswith(("plan_type", "plan_max_amount")), refused.body
    inline = cashfree.call("POST", "/subscriptions", cashfree.subscription_body(
        plan_details={"plan_name": "Odd", "plan_type": "YEARLY", "plan_max_amount": 100}))
    assert inline.status == 400 and inline.body["code"] == "plan_details.plan_type_invalid"

    logged = [entry for entry in control(sandbox, "GET", "/_sandbox/requests")[1] if entry["status"] == 400]
    assert len(logged) == 6 and all(entry["validation_errors"] for entry in logged)
    assert any("customer_details" in error for error in logged[0]["validation_errors"])
    assert "1499.00" in str(logged[1]["body"]["authorization_details"]["authorization_amount"])
    assert cashfree.call("GET", "/subscriptions/sub-acme-1").status == 404  # nothing was created


def test_without_the_openapi_document_the_handlers_still_refuse_bad_bodies(contract, tmp_path, caplog):
    with caplog.at_level("WARNING"):
        handle = start_sandbox(port=0, openapi_path=str(tmp_path / "absent.yaml"))
    try:
        assert "NOT validated" in caplog.text and handle.app.contract is None
        cashfree = CashfreeApi(handle.api_base, contract)
        cashfree.create_plan()
        body = cashfree.subscription_body()
        del body["customer_details"]
        refused = cashfree.call("POST", "/subscriptions", body)
        assert refused.status == 400 and refused.body["code"] == "customer_details_missing"
        assert cashfree.call("POST", "/subscriptions", cashfree.subscription_body(amount="1")).status == 400
        assert cashfree.create_subscription()["subscription_status"] == "INITIALIZED"
    finally:
        handle.stop()


# the payer's side

def test_pay_flow_end_to_end(cashfree, sandbox, receiver, clock):
    plan = cashfree.create_plan()
    created = cashfree.create_subscription()
    assert created["subscription_status"] == "INITIALIZED" and created["subscription_session_id"].startswith(
        "sub_session_")
    assert created["plan_details"] == plan and created["cf_subscription_id"].isdigit()
    assert created["authorisation_details"]["authorization_status"] == "INITIALIZED"
    assert created["authorisation_details"]["authorization_amount"] == Decimal("1499")
    assert created["subscription_tags"] == {"account_id": "acct-1", "checkout_id": "chk-1"}
    assert created["subscription_meta"]["return_url"] == RETURN_URL

    script = requests.get(f"{sandbox.public_url}/js/v3/cashfree.js", timeout=5)
    assert script.status_code == 200 and "javascript" in script.headers["Content-Type"]
    assert "subscriptionsCheckout" in script.text and f'"{sandbox.public_url}"' in script.text
    assert "/checkout/subscription/" in script.text
    page_url = f"{sandbox.public_url}/checkout/subscription/{created['subscription_session_id']}"
    page = requests.get(page_url, timeout=5)
    assert page.status_code == 200 and "Pro" in page.text and "₹1,499.00" in page.text
    assert "Pay</button>" in page.text and "Decline</button>" in page.text
    assert "value='upi' checked" in page.text and "value='netbanking'" in page.text

    paid = requests.post(f"{page_url}/pay", data={"method": "upi"}, allow_redirects=False, timeout=5)
    assert paid.status_code == 303
    assert paid.headers["Location"] == RETURN_URL + "&subscription_id=sub-acme-1"

    subscription = cashfree.subscription()
    auth = subscription["authorisation_details"]
    assert subscription["subscription_status"] == "ACTIVE"
    assert (auth["authorization_status"], auth["payment_method"], auth["authorization_reference"]) == (
        "ACTIVE", "upi", "ann@okaxis")
    assert IST_TIME.match(auth["authorization_time"])
    assert subscription["next_schedule_date"] == "2025-07-01T00:00:00+05:30"
    (payment,) = cashfree.payments()
    assert (payment["payment_type"], payment["payment_status"], payment["payment_amount"]) == ("AUTH", "SUCCESS", 1499)
    assert payment["cf_payment_id"].isdigit() and payment["payment_id"] == auth["payment_id"]
    assert payment["payment_initiated_date"] == payment["payment_schedule_date"] == "2025-06-01T00:00:00+05:30"

    types = ("SUBSCRIPTION_AUTH_STATUS", "SUBSCRIPTION_STATUS_CHANGED", "SUBSCRIPTION_PAYMENT_SUCCESS")
    events = receiver.accepted(*types)
    (auth_event,), (changed,), (success,) = (events[name] for name in types)
    assert auth_event["data"]["payment_status"] == "SUCCESS" and auth_event["data"]["payment_type"] == "AUTH"
    assert auth_event["data"]["authorization_details"]["authorization_status"] == "ACTIVE"
    assert (auth_event["data"]["subscription_id"], auth_event["data"]["cf_subscription_id"]) == (
        "sub-acme-1", created["cf_subscription_id"])
    assert changed["data"]["subscription_details"]["subscription_status"] == "ACTIVE"
    assert changed["data"]["subscription_details"]["subscription_tags"] == created["subscription_tags"]
    assert success["data"] == auth_event["data"] and success["data"]["payment_amount"] == 1499
    keys = {delivery["headers"]["X-Idempotency-Key"] for delivery in receiver.deliveries}
    assert len(keys) == 3  # one per event
    contract = cashfree.contract
    for payload in (auth_event["data"], success["data"]):
        assert not problems(contract.component_validator("SubscriptionPaymentEntity"), payload)
    assert not problems(contract.component_validator("SubscriptionEntity"), changed["data"]["subscription_details"])

    closed = requests.get(page_url, timeout=5).text
    assert "already authorised" in closed and "Pay</button>" not in closed


def test_card_and_netbanking_mandates_have_their_references(cashfree, sandbox):
    cashfree.create_plan()
    card = authorised_subscription(cashfree, sandbox, "card", subscription_id="sub-card", plan_id="pro_monthly")
    bank = authorised_subscription(cashfree, sandbox, "netbanking", subscription_id="sub-bank", plan_id="pro_monthly")
    card_auth = card["authorisation_details"]
    assert (card_auth["payment_method"], card_auth["authorization_reference"]) == ("card", "XXXXXXXXXXXX1111")
    assert bank["authorisation_details"]["payment_method"] == "enach"
    assert re.fullmatch(r"HDFC\d{13}", bank["authorisation_details"]["authorization_reference"])


def test_declining_fails_the_authorisation_and_leaves_the_subscription_initialized(cashfree, sandbox, receiver):
    cashfree.create_plan()
    created = cashfree.create_subscription()
    page_url = f"{sandbox.public_url}/checkout/subscription/{created['subscription_session_id']}"
    declined = requests.post(f"{page_url}/decline", allow_redirects=False, timeout=5)
    assert declined.status_code == 303 and declined.headers["Location"] == RETURN_URL + "&subscription_id=sub-acme-1"

    subscription = cashfree.subscription()
    assert subscription["subscription_status"] == "INITIALIZED"
    assert subscription["authorisation_details"]["authorization_status"] == "FAILED"
    (payment,) = cashfree.payments()
    assert (payment["payment_type"], payment["payment_status"]) == ("AUTH", "FAILED")
    assert payment["failure_details"]["failure_reason"] == "Payment declined by customer"
    events = receiver.accepted("SUBSCRIPTION_AUTH_STATUS", "SUBSCRIPTION_PAYMENT_FAILED")
    assert events["SUBSCRIPTION_AUTH_STATUS"][0]["data"]["payment_status"] == "FAILED"
    assert events["SUBSCRIPTION_PAYMENT_FAILED"][0]["data"]["failure_details"]["failure_reason"] == (
        "Payment declined by customer")
    assert "SUBSCRIPTION_STATUS_CHANGED" not in events
    page = requests.get(page_url, timeout=5).text
    assert "declined" in page and "Pay</button>" not in page
    assert requests.post(f"{page_url}/pay", allow_redirects=False, timeout=5).status_code == 409


def test_a_session_cannot_be_paid_twice(cashfree, sandbox):
    cashfree.create_plan()
    created = cashfree.create_subscription()
    session = created["subscription_session_id"]
    assert control(sandbox, "POST", f"/_sandbox/checkout/subscription/{session}/pay", {"method": "upi"})[0] == 200
    again = requests.post(f"{sandbox.public_url}/checkout/subscription/{session}/pay", data={"method": "card"},
                          allow_redirects=False, timeout=5)
    assert again.status_code == 409 and "no longer active" in again.text
    status, body = control(sandbox, "POST", f"/_sandbox/checkout/subscription/{session}/pay")
    assert status == 409 and body["code"] == "subscription_session_closed"
    assert control(sandbox, "POST", f"/_sandbox/checkout/subscription/{session}/decline")[0] == 409
    assert len(cashfree.payments()) == 1
    assert cashfree.subscription()["authorisation_details"]["payment_method"] == "upi"


def test_unknown_sessions_and_order_checkouts_are_404(sandbox):
    assert requests.get(f"{sandbox.public_url}/checkout/subscription/sub_session_nope", timeout=5).status_code == 404
    assert requests.get(f"{sandbox.public_url}/checkout/order/session_x", timeout=5).status_code == 404
    assert control(sandbox, "POST", "/_sandbox/checkout/subscription/sub_session_nope/pay")[0] == 404


# charges

def test_a_successful_charge_pays_the_plan_amount_and_moves_the_schedule(cashfree, sandbox, receiver):
    authorised_subscription(cashfree, sandbox)
    status, payment = control(sandbox, "POST", "/_sandbox/subscriptions/sub-acme-1/charge", {"outcome": "success"})
    assert status == 200
    assert (payment["payment_type"], payment["payment_status"], payment["payment_amount"]) == (
        "CHARGE", "SUCCESS", Decimal("1499"))
    assert payment["payment_schedule_date"] == "2025-07-01T00:00:00+05:30"
    assert cashfree.subscription()["next_schedule_date"] == "2025-08-01T00:00:00+05:30"
    assert [p["payment_type"] for p in cashfree.payments()] == ["CHARGE", "AUTH"]  # newest first
    receiver.wait_until(lambda ds: [event_type(d) for d in ds].count("SUBSCRIPTION_PAYMENT_SUCCESS") == 2)
    charged = [verified(d) for d in receiver.deliveries if event_type(d) == "SUBSCRIPTION_PAYMENT_SUCCESS"]
    assert {event["data"]["payment_type"] for event in charged} == {"AUTH", "CHARGE"}


def test_a_failed_charge_puts_the_subscription_on_hold(cashfree, sandbox, receiver):
    authorised_subscription(cashfree, sandbox)
    receiver.accepted("SUBSCRIPTION_STATUS_CHANGED")
    status, payment = control(sandbox, "POST", "/_sandbox/subscriptions/sub-acme-1/charge", {"outcome": "failed"})
    assert status == 200 and payment["payment_status"] == "FAILED" and payment["failure_details"]["failure_reason"]
    assert cashfree.subscription()["subscription_status"] == "ON_HOLD"
    events = receiver.accepted("SUBSCRIPTION_PAYMENT_FAILED")
    receiver.wait_until(lambda ds: [event_type(d) for d in ds].count("SUBSCRIPTION_STATUS_CHANGED") == 2)
    changes = [verified(d)["data"]["subscription_details"]["subscription_status"] for d in receiver.deliveries
               if event_type(d) == "SUBSCRIPTION_STATUS_CHANGED"]
    assert sorted(changes) == ["ACTIVE", "ON_HOLD"]
    assert events["SUBSCRIPTION_PAYMENT_FAILED"][0]["data"]["payment_id"] == payment["payment_id"]

    status, retried = control(sandbox, "POST", "/_sandbox/subscriptions/sub-acme-1/charge", {"outcome": "success"})
    assert status == 200 and retried["payment_status"] == "SUCCESS"
    assert cashfree.subscription()["subscription_status"] == "ACTIVE"  # a successful retry lifts the hold


# managing

def test_cancel_ends_the_subscription_once(cashfree, sandbox, receiver):
    authorised_subscription(cashfree, sandbox)
    cancelled = cashfree.manage("CANCEL")
    assert cancelled.status == 200 and cancelled.body["subscription_status"] == "CANCELLED"
    receiver.wait_until(lambda ds: any(
        event_type(d) == "SUBSCRIPTION_STATUS_CHANGED"
        and json.loads(d["body"])["data"]["subscription_details"]["subscription_status"] == "CANCELLED" for d in ds))
    again = cashfree.manage("CANCEL")
    assert again.status == 400 and again.body["type"] == "invalid_request_error"
    assert cashfree.manage("ACTIVATE").status == 400
    assert control(sandbox, "POST", "/_sandbox/subscriptions/sub-acme-1/charge")[0] == 409


def test_change_plan_applies_the_new_amount_from_the_next_charge(cashfree, sandbox, receiver):
    authorised_subscription(cashfree, sandbox)
    bigger = cashfree.create_plan("max_monthly", Decimal("2999.50"), "Max")
    changed = cashfree.manage("CHANGE_PLAN", plan_id="max_monthly")
    assert changed.status == 200 and changed.body["plan_details"] == bigger
    assert changed.body["subscription_status"] == "ACTIVE" and len(cashfree.payments()) == 1  # nothing charged now
    receiver.wait_until(lambda ds: any(
        event_type(d) == "SUBSCRIPTION_STATUS_CHANGED"
        and json.loads(d["body"])["data"]["subscription_details"]["plan_details"]["plan_id"] == "max_monthly"
        for d in ds))

    status, payment = control(sandbox, "POST", "/_sandbox/subscriptions/sub-acme-1/charge", {"outcome": "success"})
    assert status == 200 and payment["payment_amount"] == Decimal("2999.50")
    unknown = cashfree.manage("CHANGE_PLAN", plan_id="no_such_plan")
    assert unknown.status == 400 and "action_details.plan_id" in unknown.body["message"]


def test_pause_and_activate(cashfree, sandbox):
    authorised_subscription(cashfree, sandbox)
    assert cashfree.manage("PAUSE").body["subscription_status"] == "PAUSED"
    assert control(sandbox, "POST", "/_sandbox/subscriptions/sub-acme-1/charge")[0] == 409
    assert cashfree.manage("PAUSE").status == 400
    activated = cashfree.manage("ACTIVATE", next_scheduled_time="2025-09-01T00:00:00+05:30")
    assert activated.body["subscription_status"] == "ACTIVE"
    assert activated.body["next_schedule_date"] == "2025-09-01T00:00:00+05:30"
    wrong = cashfree.call("POST", "/subscriptions/sub-acme-1/manage", {"subscription_id": "other", "action": "PAUSE"})
    assert wrong.status == 400
    unknown = cashfree.call("POST", "/subscriptions/sub-acme-1/manage", {"subscription_id": "sub-acme-1",
                                                                        "action": "DELETE"})
    assert unknown.status == 400 and unknown.body["code"] == "action_invalid"


def test_an_inline_plan_becomes_the_subscriptions_plan(cashfree):
    answer = cashfree.call("POST", "/subscriptions", cashfree.subscription_body(plan_details={
        "plan_name": "Team", "plan_type": "PERIODIC", "plan_amount": Decimal("999.90"),
        "plan_max_amount": Decimal("5000"), "plan_interval_type": "WEEK"}))
    assert answer.status == 200
    plan = answer.body["plan_details"]
    assert (plan["plan_recurring_amount"], plan["plan_interval_type"], plan["plan_intervals"]) == (
        Decimal("999.9"), "WEEK", 1)
    assert cashfree.call("GET", f"/plans/{plan['plan_id']}").body == plan


def test_an_unknown_subscription_is_404(cashfree):
    for method, path in (("GET", "/subscriptions/nope"), ("GET", "/subscriptions/nope/payments")):
        missing = cashfree.call(method, path)
        assert missing.status == 404 and missing.body["code"] == "subscription_not_found"
    assert cashfree.manage("CANCEL", subscription_id="nope").status == 404


# idempotency, authentication, versions

def test_the_same_idempotency_key_replays_the_first_response(cashfree, sandbox):
    cashfree.create_plan()
    body = cashfree.subscription_body()
    first = cashfree.call("POST", "/subscriptions", body, idempotency_key="checkout-chk-1")
    again = cashfree.call("POST", "/subscriptions", body, idempotency_key="checkout-chk-1")
    assert first.status == again.status == 200 and again.body == first.body
    assert (first.headers["x-idempotency-replayed"], again.headers["x-idempotency-replayed"]) == ("false", "true")

    conflict = cashfree.call("POST", "/subscriptions", {**body, "subscription_note": "changed"},
                             idempotency_key="checkout-chk-1")
    assert conflict.status == 422 and conflict.body["type"] == "idempotency_error"
    without_key = cashfree.call("POST", "/subscriptions", body)
    assert without_key.status == 409 and without_key.body["code"] == "subscription_already_exists"
    posts = subscription_posts(sandbox)
    assert [(entry["status"], entry["replayed"]) for entry in posts] == [(200, False), (200, True), (422, False),
                                                                         (409, False)]


def test_a_wrong_secret_is_an_authentication_error(sandbox, contract):
    stranger = CashfreeApi(sandbox.api_base, contract, secret="not-the-secret")
    refused = stranger.call("GET", "/plans/pro_monthly")
    assert refused.status == 401
    assert refused.body == {"message": "authentication Failed", "code": "request_failed",
                            "type": "authentication_error"}
    assert CashfreeApi(sandbox.api_base, contract, client_id="other").call("GET", "/plans/x").status == 401


def test_the_api_version_header_is_required(cashfree):
    missing = cashfree.call("GET", "/plans/pro_monthly", headers={"x-api-version": None})
    assert missing.status == 400 and missing.body["type"] == "invalid_request_error"
    assert "x-api-version" in missing.body["message"]
    older = cashfree.call("GET", "/plans/pro_monthly", headers={"x-api-version": "2023-08-01"})
    assert older.status == 400


def test_an_unknown_route_is_a_bad_url(cashfree):
    answer = cashfree.call("GET", "/subscriptions/x/y/z")
    assert answer.status == 400 and "bad URL" in answer.body["message"]


# faults

def test_an_injected_500_does_nothing(cashfree, sandbox):
    cashfree.create_plan()
    control(sandbox, "POST", "/_sandbox/faults", {"method": "POST", "path": "/pg/subscriptions", "kind": "error_500"})
    failed = cashfree.call("POST", "/subscriptions", cashfree.subscription_body(), idempotency_key="k1")
    assert failed.status == 500 and failed.body["type"] == "api_error"
    assert cashfree.call("GET", "/subscriptions/sub-acme-1").status == 404
    assert cashfree.create_subscription(idempotency_key="k1")["subscription_status"] == "INITIALIZED"

    control(sandbox, "POST", "/_sandbox/faults", {"method": "POST", "path": "/pg/subscriptions/*/manage",
                                                 "kind": "error_500", "times": 2})
    assert [cashfree.manage("CANCEL").status for _ in range(3)] == [500, 500, 200]
    assert control(sandbox, "GET", "/_sandbox/faults")[1] == {"faults": []}


def test_a_retry_after_create_then_timeout_gets_the_same_subscription(cashfree, sandbox):
    cashfree.create_plan()
    control(sandbox, "POST", "/_sandbox/faults", {"method": "POST", "path": "/pg/subscriptions",
                                                 "kind": "create_then_timeout", "delay_seconds": 1.0})
    body = cashfree.subscription_body()
    with pytest.raises(requests.Timeout):
        cashfree.call("POST", "/subscriptions", body, idempotency_key="checkout-chk-1", timeout=0.3)
    retried = cashfree.call("POST", "/subscriptions", body, idempotency_key="checkout-chk-1")
    assert retried.status == 200 and retried.headers["x-idempotency-replayed"] == "true"
    assert list(sandbox.store.subscriptions) == ["sub-acme-1"]
    assert retried.body["cf_subscription_id"] == sandbox.store.subscriptions["sub-acme-1"]["cf_subscription_id"]
    posts = subscription_posts(sandbox)
    assert [entry["replayed"] for entry in posts] == [False, True]
    assert {entry["headers"]["x-idempotency-key"] for entry in posts} == {"checkout-chk-1"}
    assert {entry["object_id"] for entry in posts} == {"sub-acme-1"}


def test_an_injected_timeout_answers_500_late_and_does_nothing(cashfree, sandbox):
    control(sandbox, "POST", "/_sandbox/faults", {"method": "GET", "path": "/pg/plans/*", "kind": "timeout",
                                                 "delay_seconds": 0.2})
    started = time.monotonic()
    assert cashfree.call("GET", "/plans/anything").status == 500
    assert time.monotonic() - started >= 0.2


# webhook delivery

def test_a_refused_webhook_is_retried_on_cashfrees_schedule(cashfree, sandbox, receiver):
    cashfree.create_plan()
    cashfree.create_subscription()
    receiver.answers = [500, 500]
    cashfree.manage("CANCEL")  # one event: SUBSCRIPTION_STATUS_CHANGED
    receiver.wait_until(lambda deliveries: len(deliveries) == 3)
    assert [d["status"] for d in receiver.deliveries] == [500, 500, 200]
    assert len({d["body"] for d in receiver.deliveries}) == 1  # the same bytes every time
    assert len({d["headers"]["X-Idempotency-Key"] for d in receiver.deliveries}) == 1
    for delivery in receiver.deliveries:
        verified(delivery)
    first, second, third = (d["at"] for d in receiver.deliveries)
    assert second - first >= 2 * 0.01 * 0.9 and third - second >= 10 * 0.01 * 0.9  # 2 and 10 "minutes"
    (event,) = events_of(sandbox)
    assert event["status"] == "delivered" and event["idempotency_key"] == event["id"]
    assert [(a["attempt"], a["status_code"]) for a in event["delivery_attempts"]] == [(1, 500), (2, 500), (3, 200)]


def test_a_webhook_is_given_up_after_three_retries(cashfree, sandbox, receiver):
    cashfree.create_plan()
    cashfree.create_subscription()
    receiver.answers = [503] * 10
    cashfree.manage("CANCEL")
    receiver.wait_until(lambda deliveries: len(deliveries) == 4)
    deadline = time.monotonic() + 5
    while events_of(sandbox)[0]["status"] != "failed":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    time.sleep(0.1)
    assert len(receiver.deliveries) == 4


def test_webhooks_sent_while_paused_are_lost(cashfree, sandbox, receiver):
    cashfree.create_plan()
    cashfree.create_subscription(subscription_id="sub-lost")
    cashfree.create_subscription(subscription_id="sub-found")
    control(sandbox, "POST", "/_sandbox/webhooks/pause")
    cashfree.manage("CANCEL", subscription_id="sub-lost")
    deadline = time.monotonic() + 5
    while not events_of(sandbox)[0]["delivery_attempts"]:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    control(sandbox, "POST", "/_sandbox/webhooks/resume")
    cashfree.manage("CANCEL", subscription_id="sub-found")
    events = receiver.accepted("SUBSCRIPTION_STATUS_CHANGED")
    time.sleep(0.1)  # a dropped delivery is never retried: nothing more arrives
    assert [e["data"]["subscription_details"]["subscription_id"] for e in events["SUBSCRIPTION_STATUS_CHANGED"]] == [
        "sub-found"]
    lost = events_of(sandbox)[0]
    assert lost["status"] == "dropped" and [a["outcome"] for a in lost["delivery_attempts"]] == ["dropped"]


def test_a_redelivered_event_carries_the_same_idempotency_key(cashfree, sandbox, receiver):
    authorised_subscription(cashfree, sandbox)
    receiver.accepted("SUBSCRIPTION_PAYMENT_SUCCESS")
    event = next(e for e in events_of(sandbox) if e["type"] == "SUBSCRIPTION_PAYMENT_SUCCESS")
    status, _ = control(sandbox, "POST", f"/_sandbox/webhooks/{event['id']}/redeliver")
    assert status == 200
    receiver.wait_until(lambda ds: [event_type(d) for d in ds].count("SUBSCRIPTION_PAYMENT_SUCCESS") == 2)
    first, second = [d for d in receiver.deliveries if event_type(d) == "SUBSCRIPTION_PAYMENT_SUCCESS"]
    assert first["headers"]["X-Idempotency-Key"] == second["headers"]["X-Idempotency-Key"] == event["id"]
    assert first["body"] == second["body"] and verified(second) == verified(first)
    attempts = next(e for e in events_of(sandbox) if e["id"] == event["id"])["delivery_attempts"]
    assert [(a["delivery"], a["outcome"]) for a in attempts] == [(1, "delivered"), (2, "delivered")]
    assert control(sandbox, "POST", "/_sandbox/webhooks/no-such-event/redeliver")[0] == 404


# amounts

def test_amounts_stay_exact_decimal_numbers(cashfree, sandbox):
    cashfree.create_plan(amount=Decimal("0.10"))
    answer = cashfree.call("POST", "/subscriptions", cashfree.subscription_body(amount=Decimal("0.30")))
    assert '"authorization_amount":0.3' in answer.text
    status, payment = control(sandbox, "POST", f"/_sandbox/checkout/subscription/"
                                               f"{answer.body['subscription_session_id']}/pay")
    assert payment["payment"]["payment_amount"] == Decimal("0.3")
    charged = [control(sandbox, "POST", "/_sandbox/subscriptions/sub-acme-1/charge")[1]["payment_amount"]
               for _ in range(2)]
    assert sum(charged, Decimal("0.3")) == Decimal("0.5")  # 0.1 + 0.1 + 0.3, exactly


# persistence across restarts (CASHFREE_SANDBOX_STATE_FILE)

def test_objects_survive_a_restart_with_the_same_state_file(receiver, clock, contract, tmp_path):
    path = tmp_path / "var" / "cashfree_sandbox.json"  # the folder is made on the first save
    options = dict(port=0, webhook_url=receiver.url, clock=clock, retry_scale=0.01, state_file=str(path))
    first = start_sandbox(**options)
    try:
        cashfree = CashfreeApi(first.api_base, contract)
        cashfree.create_plan(plan_id="tenth", amount=Decimal("0.10"))
        subscription = authorised_subscription(cashfree, first)
        session_id = subscription["subscription_session_id"]
        control(first, "POST", "/_sandbox/subscriptions/sub-acme-1/charge", {"outcome": "success"})
        body = cashfree.subscription_body(subscription_id="sub-acme-2")
        created = cashfree.call("POST", "/subscriptions", body, idempotency_key="checkout-chk-2")
        answers = {path: cashfree.call("GET", path).text for path in (
            "/plans/pro_monthly", "/plans/tenth", "/subscriptions/sub-acme-1", "/subscriptions/sub-acme-1/payments",
            "/subscriptions/sub-acme-2")}
        receiver.accepted("SUBSCRIPTION_AUTH_STATUS", "SUBSCRIPTION_PAYMENT_SUCCESS")
        control(first, "POST", "/_sandbox/clock", {"advance_seconds": 3600})
        control(first, "POST", "/_sandbox/faults", {"path": "/pg/subscriptions", "kind": "error_500", "times": 5})
        control(first, "POST", "/_sandbox/webhooks/pause")
        event_ids = [event["id"] for event in events_of(first)]
    finally:
        first.stop()
    saved = json.loads(path.read_text())
    assert (saved["format"], saved["version"]) == ("cashfree-sandbox-state", 1)

    second = start_sandbox(**options)
    try:
        cashfree = CashfreeApi(second.api_base, contract)
        assert {path: cashfree.call("GET", path).text for path in answers} == answers  # byte for byte
        tenth = second.store.plans["tenth"]["plan_recurring_amount"]
        assert isinstance(tenth, Decimal) and str(tenth) == "0.10"  # exact, exponent and all
        replayed = cashfree.call("POST", "/subscriptions", body, idempotency_key="checkout-chk-2")
        assert replayed.text == created.text and replayed.headers["x-idempotency-replayed"] == "true"
        assert cashfree.call("POST", "/subscriptions", body).status == 409  # it still exists
        page = requests.get(f"{second.public_url}/checkout/subscription/{session_id}", timeout=5).text
        assert "already authorised" in page
        assert control(second, "GET", "/_sandbox/clock")[1]["offset_seconds"] == 3600
        events = events_of(second)
        assert [event["id"] for event in events] == event_ids
        auth = next(event for event in events if event["type"] == "SUBSCRIPTION_AUTH_STATUS")
        assert auth["status"] == "delivered" and auth["delivery_attempts"][-1]["outcome"] == "delivered"
        # faults and the paused flag belong to the run that set them
        assert control(second, "GET", "/_sandbox/faults")[1]["faults"] == [] and not second.store.webhooks_paused
        # the schedule carries on where it was, with fresh numeric references
        status, charge = control(second, "POST", "/_sandbox/subscriptions/sub-acme-1/charge", {"outcome": "success"})
        assert status == 200 and charge["payment_schedule_date"] == "2025-08-01T00:00:00+05:30"
        old_ids = {payment["cf_payment_id"] for payment in json.loads(answers["/subscriptions/sub-acme-1/payments"])}
        assert charge["cf_payment_id"] not in old_ids and old_ids <= second.store.cf_ids
    finally:
        second.stop()


def test_changes_are_saved_while_running_atomically(tmp_path, contract):
    path = tmp_path / "cashfree_sandbox.json"
    handle = start_sandbox(port=0, state_file=str(path))
    try:
        CashfreeApi(handle.api_base, contract).create_plan(plan_id="saved_plan")
        deadline = time.monotonic() + 3
        while not (path.exists() and "saved_plan" in path.read_text()):  # no stop needed: a crash keeps it
            assert time.monotonic() < deadline, "the change was not saved"
            time.sleep(0.02)
    finally:
        handle.stop()
    assert [entry.name for entry in tmp_path.iterdir()] == [path.name]  # no temporary files left behind


@pytest.mark.parametrize("content", [
    b"{\"format\": \"cashfree-sandbox-st",  # cut short
    b"\xff\xfe not text",
    b"[]",
    b'{"format": "stripe-sandbox-state", "version": 1, "state": {}}',  # another sandbox's file
    b'{"format": "cashfree-sandbox-state", "version": 99, "state": {}}',
    b'{"format": "cashfree-sandbox-state", "version": 1, "state": {"plans": []}}',
], ids=["truncated", "binary", "not-an-object", "foreign", "other-version", "wrong-shape"])
def test_a_corrupt_or_foreign_state_file_starts_empty_without_crashing(tmp_path, caplog, contract, content):
    path = tmp_path / "cashfree_sandbox.json"
    path.write_bytes(content)
    with caplog.at_level("WARNING"):
        handle = start_sandbox(port=0, state_file=str(path))
    try:
        assert "unusable" in caplog.text and not handle.store.plans and not handle.store.subscriptions
        (aside,) = tmp_path.glob("cashfree_sandbox.json.unreadable-*")  # kept, not overwritten
        assert aside.read_bytes() == content
        cashfree = CashfreeApi(handle.api_base, contract)
        assert cashfree.call("GET", "/plans/pro_monthly").status == 404
        cashfree.create_plan()
    finally:
        handle.stop()
    again = start_sandbox(port=0, state_file=str(path))
    try:
        assert CashfreeApi(again.api_base, contract).call("GET", "/plans/pro_monthly").status == 200
    finally:
        again.stop()


def test_without_a_state_file_nothing_is_written(tmp_path, monkeypatch, contract):
    from services.gateway_cashfree.sandbox import SandboxConfig

    assert SandboxConfig().state_file is None and SandboxConfig.from_env({}).state_file is None
    assert SandboxConfig.from_env({"CASHFREE_SANDBOX_STATE_FILE": "var/cashfree_sandbox.json"}).state_file == (
        "var/cashfree_sandbox.json")
    monkeypatch.chdir(tmp_path)
    handle = start_sandbox(port=0)
    try:
        assert handle.state is None
        cashfree = CashfreeApi(handle.api_base, contract)
        cashfree.create_plan()
        cashfree.create_subscription()
    finally:
        handle.stop()
    assert list(tmp_path.iterdir()) == []


# payment links (what gateway_cashfree's create_payment_link / cancel_payment_link / _order_payment /
# _on_payment_link_event send and expect)

LINK_NOTES = {"account_id": "acct-1", "link_id": "L1", "plan_code": "pro_monthly"}
LINK_RETURN = RETURN_URL + "&link_id=lnk_L1"
METHOD_SCHEMAS = {"upi": "PaymentMethodUPIInPaymentsEntity_upi", "card": "PaymentMethodCardInPaymentsEntity_card",
                  "netbanking": "PaymentMethodNetBankingInPaymentsEntity_netbanking"}


def link_page(sandbox, link_id="lnk_L1"):
    return f"{sandbox.public_url}/links/{link_id}"


def check_payment_webhook(contract, event, kind, method):
    """A PaymentWebhook as the document describes it, where it can: its PaymentEntity.payment_method
    is a oneOf no real payload satisfies (most variants match any object, two require a top-level
    `channel`), and real webhooks send payment_offers as null where the document says array; so the
    method is judged by its variant's own schema, and payment_offers by hand."""
    assert event["type"] == kind
    data = event["data"]
    assert data["payment_offers"] is None
    judged = copy.deepcopy(data)
    del judged["payment_offers"]
    ((name, details),) = judged["payment"].pop("payment_method").items()
    assert name == method
    assert not problems(contract.component_validator("PaymentWebhookDataEntity"), judged)
    assert not problems(contract.component_validator(METHOD_SCHEMAS[method]), details)
    return data


def test_a_link_is_created_active_fetched_and_unique(cashfree, sandbox, clock):
    link = cashfree.create_link()
    assert (link["link_id"], link["link_status"], link["link_currency"]) == ("lnk_L1", "ACTIVE", "INR")
    assert link["link_amount"] == Decimal("1499") and link["link_amount_paid"] == 0
    assert link["cf_link_id"].isdigit() and link["link_url"] == link_page(sandbox)
    assert link["link_created_at"] == "2025-06-01T00:00:00+05:30"
    assert link["link_expiry_time"] == "2025-06-08T18:30:00Z"  # as sent
    assert link["link_notes"] == LINK_NOTES and link["link_meta"]["return_url"] == RETURN_URL
    assert link["customer_details"]["customer_phone"] == "9999999999"
    assert (link["link_purpose"], link["link_partial_payments"], link["link_auto_reminders"]) == (
        "Pro (monthly)", False, False)
    fetched = cashfree.call("GET", "/links/lnk_L1")
    assert fetched.status == 200 and fetched.body == link

    replayed = cashfree.call("POST", "/links", cashfree.link_body(), idempotency_key="link-L1")
    assert replayed.status == 200 and replayed.headers["x-idempotency-replayed"] == "true"
    assert replayed.body == link
    duplicate = cashfree.call("POST", "/links", cashfree.link_body())
    assert duplicate.status == 409 and duplicate.body["code"] == "link_already_exists"
    missing = cashfree.call("GET", "/links/lnk_nope")
    assert missing.status == 404 and missing.body["code"] == "link_not_found"
    assert cashfree.call("GET", "/links/lnk_nope/orders").status == 404
    assert cashfree.link_orders() == [] and cashfree.link_orders(status="ALL") == []

    body = cashfree.link_body(link_id="lnk_default")
    del body["link_expiry_time"]
    del body["link_meta"]
    later = cashfree.call("POST", "/links", body).body
    assert later["link_expiry_time"] == "2025-07-01T00:00:00+05:30"  # Cashfree's default: 30 days
    assert later["link_meta"]["return_url"] == ""
    logged = [entry for entry in control(sandbox, "GET", "/_sandbox/requests")[1] if entry["path"] == "/pg/links"]
    assert [entry["object_id"] for entry in logged if entry["status"] == 200] == ["lnk_L1", "lnk_L1", "lnk_default"]


def test_an_invalid_link_is_refused_with_the_field_named(cashfree, sandbox):
    body = cashfree.link_body()
    del body["link_purpose"]
    refusals = [
        (body, "link_purpose_missing"),
        (cashfree.link_body(link_amount="1499.00"), "link_amount_invalid"),
        (cashfree.link_body(link_amount=Decimal("14.999")), "link_amount_invalid"),
        (cashfree.link_body(link_currency="USD"), "link_currency_invalid"),
        (cashfree.link_body(link_partial_payments=True), "link_partial_payments_invalid"),
        (cashfree.link_body(link_expiry_time="2025-05-31T18:00:00Z"), "link_expiry_time_invalid"),  # past
        (cashfree.link_body(link_id="lnk with spaces"), "link_id_invalid"),
        (cashfree.link_body(customer_details={"customer_email": "ann@example.com"}),
         "customer_details.customer_phone_missing"),
    ]
    for refused_body, code in refusals:
        refused = cashfree.call("POST", "/links", refused_body)
        assert refused.status == 400 and refused.body["code"] == code, (code, refused.body)
    assert cashfree.call("GET", "/links/lnk_L1").status == 404  # nothing was created
    assert control(sandbox, "POST", "/_sandbox/links/lnk_nope/pay")[0] == 404
    assert requests.get(link_page(sandbox, "lnk_nope"), timeout=5).status_code == 404


def test_paying_a_link_on_its_page_sends_both_webhooks(cashfree, sandbox, receiver, contract):
    link = cashfree.create_link()
    page = requests.get(link["link_url"], timeout=5)
    assert page.status_code == 200 and "Pro (monthly)" in page.text and "₹1,499.00" in page.text
    assert "value='upi' checked" in page.text and "value='card'" in page.text and "value='netbanking'" in page.text
    for action in ("pay", "fail", "drop"):
        assert f"action='lnk_L1/{action}'" in page.text
    assert "Pay</button>" in page.text and "Fail</button>" in page.text and "Drop</button>" in page.text

    paid = requests.post(f"{link['link_url']}/pay", data={"method": "card"}, allow_redirects=False, timeout=5)
    assert paid.status_code == 303 and paid.headers["Location"] == LINK_RETURN

    events = receiver.accepted("PAYMENT_SUCCESS_WEBHOOK", "PAYMENT_LINK_EVENT")
    (success,), (link_event,) = events["PAYMENT_SUCCESS_WEBHOOK"], events["PAYMENT_LINK_EVENT"]
    data = check_payment_webhook(contract, success, "PAYMENT_SUCCESS_WEBHOOK", "card")
    (order,) = cashfree.link_orders()
    assert data["order"] == {"order_id": "lnk_L1_order", "order_amount": Decimal("1499"), "order_currency": "INR",
                             "order_tags": {**LINK_NOTES, "cf_link_id": link["cf_link_id"]}}
    payment = data["payment"]
    assert (payment["payment_status"], payment["payment_amount"], payment["payment_currency"]) == (
        "SUCCESS", Decimal("1499"), "INR")
    assert payment["payment_group"] == "credit_card" and payment["cf_payment_id"].isdigit()
    assert payment["payment_method"] == {"card": {
        "channel": "link", "card_number": "XXXXXXXXXXXX1111", "card_network": "visa", "card_type": "credit_card",
        "card_country": "IN", "card_bank_name": "HDFC"}}
    assert IST_TIME.match(payment["payment_time"]) and payment["bank_reference"] and payment["auth_id"]
    assert "error_details" not in data
    assert data["customer_details"] == {"customer_name": "Ann", "customer_id": order["customer_details"]["customer_id"],
                                        "customer_email": "ann@example.com", "customer_phone": "9999999999"}
    assert data["payment_gateway_details"]["gateway_order_id"] == order["cf_order_id"]

    link_data = link_event["data"]
    assert (link_data["link_id"], link_data["link_status"], link_data["link_amount_paid"]) == (
        "lnk_L1", "PAID", Decimal("1499"))
    assert link_data["link_notes"] == LINK_NOTES
    assert link_data["order"]["order_id"] == "lnk_L1_order" and link_data["order"]["transaction_status"] == "SUCCESS"
    assert link_data["order"]["transaction_id"] == int(payment["cf_payment_id"])
    assert link_data["order"]["order_hash"] and link_data["order"]["order_expiry_time"] == link["link_expiry_time"]
    assert not problems(contract.component_validator("LinkEntity"),
                        {key: value for key, value in link_data.items() if key != "order"})
    keys = {d["headers"]["X-Idempotency-Key"] for d in receiver.deliveries}
    assert len(keys) == 2
    emitted = [event["type"] for event in events_of(sandbox)]
    assert emitted == ["PAYMENT_SUCCESS_WEBHOOK", "PAYMENT_LINK_EVENT"]  # in that order

    now = cashfree.link()
    assert (now["link_status"], now["link_amount_paid"]) == ("PAID", Decimal("1499"))
    assert (order["order_id"], order["order_status"], order["link_id"], order["order_amount"]) == (
        "lnk_L1_order", "PAID", "lnk_L1", Decimal("1499"))
    assert order["order_tags"] == {**LINK_NOTES, "cf_link_id": link["cf_link_id"]}
    assert order["payment_session_id"].startswith("session_") and order["cf_order_id"].isdigit()

    closed = requests.get(link["link_url"], timeout=5)
    assert "has been paid" in closed.text and "<button" not in closed.text
    again = requests.post(f"{link['link_url']}/pay", data={"method": "upi"}, allow_redirects=False, timeout=5)
    assert again.status_code == 409 and "no longer active" in again.text
    status, body = control(sandbox, "POST", "/_sandbox/links/lnk_L1/pay")
    assert status == 409 and body["code"] == "link_not_active"
    assert len(sandbox.store.order_payments["lnk_L1_order"]) == 1

    refused = cashfree.cancel_link()  # the adapter's cancel after the payment won the race
    assert refused.status == 400 and refused.body["code"] == "link_already_paid"
    assert cashfree.link()["link_status"] == "PAID"


def test_a_failed_attempt_then_a_successful_one_pays_the_one_order(cashfree, sandbox, receiver, contract, clock):
    link = cashfree.create_link()
    failed = requests.post(f"{link['link_url']}/fail", data={"method": "upi"}, allow_redirects=False, timeout=5)
    assert failed.status_code == 303 and failed.headers["Location"] == link["link_url"]
    (failure,) = receiver.accepted("PAYMENT_FAILED_WEBHOOK")["PAYMENT_FAILED_WEBHOOK"]
    data = check_payment_webhook(contract, failure, "PAYMENT_FAILED_WEBHOOK", "upi")
    assert data["payment"]["payment_status"] == "FAILED"
    assert data["payment"]["payment_method"] == {"upi": {"channel": "collect", "upi_id": "ann@okaxis"}}
    assert data["error_details"]["error_code"] == "TRANSACTION_DECLINED" and data["error_details"]["error_reason"]
    assert cashfree.link()["link_status"] == "ACTIVE"
    assert cashfree.link_orders() == []  # Cashfree lists PAID orders unless asked for ALL
    (pending,) = cashfree.link_orders(status="ALL")
    assert (pending["order_id"], pending["order_status"]) == ("lnk_L1_order", "ACTIVE")
    retry_page = requests.get(link["link_url"], timeout=5).text
    assert "did not go through" in retry_page and "Pay</button>" in retry_page

    clock.advance(60)
    status, answer = control(sandbox, "POST", "/_sandbox/links/lnk_L1/pay", {"method": "netbanking"})
    assert status == 200 and answer["redirect_url"] == LINK_RETURN
    assert (answer["link"]["link_status"], answer["order"]["order_status"]) == ("PAID", "PAID")
    (success,) = receiver.accepted("PAYMENT_SUCCESS_WEBHOOK", "PAYMENT_LINK_EVENT")["PAYMENT_SUCCESS_WEBHOOK"]
    paid = check_payment_webhook(contract, success, "PAYMENT_SUCCESS_WEBHOOK", "netbanking")
    assert paid["payment"]["payment_method"]["netbanking"]["netbanking_bank_name"] == "HDFC Bank"
    assert paid["payment"]["payment_group"] == "net_banking"
    assert paid["order"]["order_id"] == data["order"]["order_id"]  # one order, two payments on it
    assert paid["payment"]["cf_payment_id"] != data["payment"]["cf_payment_id"]

    (order,) = cashfree.link_orders(status="ALL")
    assert cashfree.link_orders() == [order] and order["order_status"] == "PAID"
    assert [p["payment_status"] for p in sandbox.store.order_payments[order["order_id"]]] == ["FAILED", "SUCCESS"]
    assert cashfree.link()["link_amount_paid"] == Decimal("1499")


def test_dropping_out_leaves_the_link_payable(cashfree, sandbox, receiver, contract):
    link = cashfree.create_link()
    dropped = requests.post(f"{link['link_url']}/drop", allow_redirects=False, timeout=5)
    assert dropped.status_code == 303 and dropped.headers["Location"] == link["link_url"]
    (event,) = receiver.accepted("PAYMENT_USER_DROPPED_WEBHOOK")["PAYMENT_USER_DROPPED_WEBHOOK"]
    data = check_payment_webhook(contract, event, "PAYMENT_USER_DROPPED_WEBHOOK", "upi")
    assert data["payment"]["payment_status"] == "USER_DROPPED" and data["error_details"]["error_code"] == (
        "USER_DROPPED")
    assert data["order"]["order_tags"]["link_id"] == "L1"
    assert cashfree.link()["link_status"] == "ACTIVE"
    assert "Pay</button>" in requests.get(link["link_url"], timeout=5).text
    status, body = control(sandbox, "POST", "/_sandbox/links/lnk_L1/drop", {"method": "wallet"})
    assert status == 400 and body["code"] == "method_invalid"


def test_cancelling_a_link_closes_it(cashfree, sandbox, receiver):
    link = cashfree.create_link()
    cancelled = cashfree.cancel_link()
    assert cancelled.status == 200 and cancelled.body["link_status"] == "CANCELLED"
    retried = cashfree.cancel_link()  # the adapter's retry with the same key: the same answer
    assert retried.status == 200 and retried.headers["x-idempotency-replayed"] == "true"
    again = cashfree.call("POST", "/links/lnk_L1/cancel", {})
    assert again.status == 400 and again.body["code"] == "link_already_cancelled"
    assert cashfree.link()["link_status"] == "CANCELLED"
    assert cashfree.call("POST", "/links/lnk_nope/cancel", {}).status == 404

    page = requests.get(link["link_url"], timeout=5)
    assert "cancelled" in page.text and "<button" not in page.text
    assert requests.post(f"{link['link_url']}/pay", allow_redirects=False, timeout=5).status_code == 409
    assert requests.post(f"{link['link_url']}/fail", allow_redirects=False, timeout=5).status_code == 409
    assert cashfree.link_orders(status="ALL") == [] and events_of(sandbox) == []

    cashfree.create_link(idempotency_key=None, link_id="lnk_bodyless")
    bodyless = requests.post(f"{sandbox.api_base}/links/lnk_bodyless/cancel", headers=cashfree.headers, timeout=5)
    assert bodyless.status_code == 200 and bodyless.json()["link_status"] == "CANCELLED"  # no body at all


def test_an_expired_link_reads_expired_and_refuses_payment(cashfree, sandbox, clock):
    link = cashfree.create_link(link_expiry_time="2025-06-01T01:00:00+05:30")
    assert control(sandbox, "POST", "/_sandbox/links/lnk_L1/fail")[0] == 200  # an order exists
    clock.advance(3599)
    assert cashfree.link()["link_status"] == "ACTIVE"
    clock.advance(1)
    assert cashfree.link()["link_status"] == "EXPIRED"
    (order,) = cashfree.link_orders(status="ALL")
    assert order["order_status"] == "EXPIRED"
    page = requests.get(link["link_url"], timeout=5)
    assert "expired" in page.text and "<button" not in page.text
    status, body = control(sandbox, "POST", "/_sandbox/links/lnk_L1/pay")
    assert status == 409 and "EXPIRED" in body["message"]
    refused = cashfree.cancel_link()
    assert refused.status == 400 and refused.body["code"] == "link_not_active"


def test_an_expired_link_is_found_out_when_paid(cashfree, sandbox, clock):
    link = cashfree.create_link(link_expiry_time="2025-06-01T01:00:00+05:30")
    clock.advance(3600)  # nobody looked: paying is the first to find out
    paid = requests.post(f"{link['link_url']}/pay", allow_redirects=False, timeout=5)
    assert paid.status_code == 409 and "EXPIRED" in paid.text
    assert cashfree.link()["link_status"] == "EXPIRED" and sandbox.store.orders == {}


def test_create_then_timeout_three_times_leaves_one_link(cashfree, sandbox):
    control(sandbox, "POST", "/_sandbox/faults", {"method": "POST", "path": "/pg/links",
                                                 "kind": "create_then_timeout", "times": 3, "delay_seconds": 1.0})
    body = cashfree.link_body()
    for _ in range(3):  # the adapter's request and its two retries, all with the same key
        with pytest.raises(requests.Timeout):
            cashfree.call("POST", "/links", body, idempotency_key="link-L1", timeout=0.3)
    assert list(sandbox.store.links) == ["lnk_L1"]
    assert control(sandbox, "GET", "/_sandbox/faults")[1] == {"faults": []}

    later = cashfree.call("POST", "/links", body, idempotency_key="link-L1", timeout=0.9)
    assert later.status == 200 and later.headers["x-idempotency-replayed"] == "true"
    assert later.body["cf_link_id"] == sandbox.store.links["lnk_L1"]["cf_link_id"]
    posts = [entry for entry in control(sandbox, "GET", "/_sandbox/requests")[1] if entry["path"] == "/pg/links"]
    assert [entry["replayed"] for entry in posts] == [False, True, True, True]
    assert {entry["object_id"] for entry in posts} == {"lnk_L1"}
    assert list(sandbox.store.links) == ["lnk_L1"]


def test_links_survive_a_restart_with_the_same_state_file(receiver, clock, contract, tmp_path):
    path = tmp_path / "cashfree_sandbox.json"
    options = dict(port=0, webhook_url=receiver.url, clock=clock, retry_scale=0.01, state_file=str(path))
    first = start_sandbox(**options)
    try:
        cashfree = CashfreeApi(first.api_base, contract)
        created = cashfree.call("POST", "/links", cashfree.link_body(link_amount=Decimal("0.10")),
                                idempotency_key="link-L1")
        control(first, "POST", "/_sandbox/links/lnk_L1/fail", {"method": "card"})
        answers = {path: cashfree.call("GET", path).text for path in (
            "/links/lnk_L1", "/links/lnk_L1/orders?status=ALL")}
    finally:
        first.stop()
    assert "lnk_L1_order" in path.read_text()

    second = start_sandbox(**options)
    try:
        cashfree = CashfreeApi(second.api_base, contract)
        assert {path: cashfree.call("GET", path).text for path in answers} == answers  # byte for byte
        amount = second.store.links["lnk_L1"]["link_amount"]
        assert isinstance(amount, Decimal) and str(amount) == "0.10"
        replayed = cashfree.call("POST", "/links", cashfree.link_body(link_amount=Decimal("0.10")),
                                 idempotency_key="link-L1")
        assert replayed.text == created.text and replayed.headers["x-idempotency-replayed"] == "true"
        status, answer = control(second, "POST", "/_sandbox/links/lnk_L1/pay")
        assert status == 200 and answer["order"]["order_id"] == "lnk_L1_order"  # the same order carries on
        assert [p["payment_status"] for p in second.store.order_payments["lnk_L1_order"]] == ["FAILED", "SUCCESS"]
    finally:
        second.stop()


def test_a_state_file_from_before_payment_links_still_loads(tmp_path, contract, clock):
    path = tmp_path / "cashfree_sandbox.json"
    handle = start_sandbox(port=0, state_file=str(path), clock=clock)
    try:
        CashfreeApi(handle.api_base, contract).create_plan()
    finally:
        handle.stop()
    document = json.loads(path.read_text())
    for name in ("links", "link_facts", "orders", "order_payments"):
        del document["state"][name]
    path.write_text(json.dumps(document))
    again = start_sandbox(port=0, state_file=str(path), clock=clock)
    try:
        cashfree = CashfreeApi(again.api_base, contract)
        assert cashfree.call("GET", "/plans/pro_monthly").status == 200
        assert cashfree.create_link()["link_status"] == "ACTIVE"
    finally:
        again.stop()


# reconciliation: what the adapter asks when webhooks were missed

def test_an_order_and_its_payments_can_be_fetched(cashfree, sandbox, receiver, contract):
    cashfree.create_link()
    control(sandbox, "POST", "/_sandbox/links/lnk_L1/fail", {"method": "upi"})
    control(sandbox, "POST", "/_sandbox/links/lnk_L1/pay", {"method": "card"})
    (listed,) = cashfree.link_orders()
    order = cashfree.call("GET", f"/orders/{listed['order_id']}")  # checked against OrderEntity
    assert order.status == 200 and order.body["order_status"] == "PAID" and "link_id" not in order.body
    assert order.body["order_tags"] == listed["order_tags"]
    # PaymentEntity's payment_method is a oneOf no real payload satisfies: judged as the webhooks' are
    answer = requests.get(f"{sandbox.api_base}/orders/{listed['order_id']}/payments", timeout=5,
                          headers={**cashfree.headers, "x-request-id": "test-payments"})
    payments = json.loads(answer.text, parse_float=Decimal)
    assert answer.status_code == 200 and [p["payment_status"] for p in payments] == ["FAILED", "SUCCESS"]
    for payment, method in zip(payments, ("upi", "card")):
        ((name, details),) = payment.pop("payment_method").items()
        assert name == method and not problems(contract.component_validator(METHOD_SCHEMAS[method]), details)
        assert not problems(contract.component_validator("PaymentEntity"), payment)
    assert cashfree.call("GET", "/orders/no-such-order").status == 404
    assert requests.get(f"{sandbox.api_base}/orders/no-such-order/payments", headers=cashfree.headers,
                        timeout=5).status_code == 404


def test_webhooks_failing_are_retried_late_after_resume(cashfree, sandbox, receiver):
    cashfree.create_plan()
    cashfree.create_subscription()
    assert control(sandbox, "POST", "/_sandbox/webhooks/pause", {"mode": "fail"})[0] == 200
    cashfree.manage("CANCEL")
    deadline = time.monotonic() + 5
    while not events_of(sandbox)[0]["delivery_attempts"]:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert receiver.deliveries == []  # failed unsent: the portal looked unreachable
    control(sandbox, "POST", "/_sandbox/webhooks/resume")
    assert receiver.accepted("SUBSCRIPTION_STATUS_CHANGED")  # a later retry got through
    attempts = events_of(sandbox)[0]["delivery_attempts"]
    assert attempts[0]["outcome"] == "failed" and attempts[-1]["outcome"] == "delivered"
    assert control(sandbox, "POST", "/_sandbox/webhooks/pause", {"mode": "sometimes"})[0] == 400


# charges the merchant raises (what gateway_cashfree sends to charge a period now: POST /subscriptions/pay)

def payment_events(receiver, kind, count=1):
    """The first `count` accepted deliveries of this webhook type, verified, in arrival order."""
    receiver.wait_until(lambda ds: sum(event_type(d) == kind and d["status"] == 200 for d in ds) >= count)
    return [verified(d) for d in receiver.deliveries if event_type(d) == kind and d["status"] == 200]


def test_a_raised_charge_debits_the_mandate_under_the_merchants_payment_id(cashfree, sandbox, receiver):
    subscription = authorised_subscription(cashfree, sandbox)
    assert subscription["next_schedule_date"] == "2025-07-01T00:00:00+05:30"

    charged = cashfree.raise_charge(payment_remarks="first period", idempotency_key="charge-chk-1")
    assert charged.status == 200, charged.body  # checked against CreateSubscriptionPaymentResponse
    answer = charged.body
    assert (answer["payment_id"], answer["payment_type"], answer["payment_status"], answer["payment_amount"]) == (
        "chk-1-first-period", "CHARGE", "SUCCESS", Decimal("1499"))
    assert (answer["subscription_id"], answer["payment_method"], answer["data"]) == ("sub-acme-1", "upi", {})
    assert answer["cf_payment_id"].isdigit() and answer["failure_details"] == {"failure_reason": ""}

    charge, auth = cashfree.payments()  # newest first
    assert (charge["payment_id"], charge["cf_payment_id"], charge["payment_type"]) == (
        "chk-1-first-period", answer["cf_payment_id"], "CHARGE")
    assert charge["payment_schedule_date"] == charge["payment_initiated_date"] == "2025-06-01T00:00:00+05:30"
    assert charge["payment_remarks"] == "first period" and auth["payment_type"] == "AUTH"
    assert cashfree.subscription()["next_schedule_date"] == "2025-07-01T00:00:00+05:30"  # the schedule stays

    (_, raised) = payment_events(receiver, "SUBSCRIPTION_PAYMENT_SUCCESS", 2)
    assert raised["data"] == charge
    assert not problems(cashfree.contract.component_validator("SubscriptionPaymentEntity"), raised["data"])

    later = cashfree.raise_charge("chk-1-later", Decimal("10.50"), payment_schedule_date="2025-06-02 10:00:00")
    assert later.status == 200 and later.body["payment_amount"] == Decimal("10.5")
    assert cashfree.payments()[0]["payment_schedule_date"] == "2025-06-02T10:00:00+05:30"


@pytest.mark.parametrize("method, refused", [("upi", True), ("card", True), ("netbanking", False)])
def test_a_charge_on_a_upi_or_card_mandate_needs_its_schedule_date(cashfree, sandbox, method, refused):
    authorised_subscription(cashfree, sandbox, method=method)
    answer = cashfree.raise_charge(payment_schedule_date=None)
    if refused:
        assert answer.status == 400 and "payment_schedule_date" in answer.body["message"], answer.body
    else:
        assert answer.status == 200, answer.body


def test_a_payment_id_is_charged_once_and_a_retry_with_its_key_gets_the_first_answer(cashfree, sandbox):
    authorised_subscription(cashfree, sandbox)
    first = cashfree.raise_charge(idempotency_key="charge-chk-1")
    retried = cashfree.raise_charge(idempotency_key="charge-chk-1")
    assert retried.status == 200 and retried.text == first.text
    assert (first.headers["x-idempotency-replayed"], retried.headers["x-idempotency-replayed"]) == ("false", "true")

    again = cashfree.raise_charge(idempotency_key="charge-chk-1-again")
    assert again.status == 409 and again.body["code"] == "payment_already_exists"
    cashfree.create_subscription(subscription_id="sub-acme-2", plan_id="pro_monthly")
    authorised = control(sandbox, "POST", "/_sandbox/checkout/subscription/"
                         + cashfree.subscription("sub-acme-2")["subscription_session_id"] + "/pay")
    assert authorised[0] == 200
    elsewhere = cashfree.raise_charge(subscription_id="sub-acme-2")  # the merchant's ids are unique, full stop
    assert elsewhere.status == 409 and elsewhere.body["code"] == "payment_already_exists"
    assert [p["payment_type"] for p in cashfree.payments()] == ["CHARGE", "AUTH"]
    assert [p["payment_type"] for p in cashfree.payments("sub-acme-2")] == ["AUTH"]


def test_raised_charges_follow_the_sticky_outcome_and_a_failure_puts_the_subscription_on_hold(
        cashfree, sandbox, receiver):
    authorised_subscription(cashfree, sandbox)
    status, body = control(sandbox, "POST", "/_sandbox/subscriptions/sub-acme-1/charges", {"outcome": "failed"})
    assert status == 200 and body == {"subscription_id": "sub-acme-1", "outcome": "failed"}

    refused = cashfree.raise_charge("pay-1")
    assert refused.status == 200 and refused.body["payment_status"] == "FAILED"
    assert refused.body["failure_details"]["failure_reason"] == "Insufficient balance in the customer's account"
    assert cashfree.subscription()["subscription_status"] == "ON_HOLD"
    (failed,) = payment_events(receiver, "SUBSCRIPTION_PAYMENT_FAILED")
    assert failed["data"]["payment_id"] == "pay-1" and failed["data"]["payment_status"] == "FAILED"
    receiver.wait_until(lambda ds: any(
        event_type(d) == "SUBSCRIPTION_STATUS_CHANGED"
        and json.loads(d["body"])["data"]["subscription_details"]["subscription_status"] == "ON_HOLD" for d in ds))

    assert cashfree.raise_charge("pay-2").body["payment_status"] == "FAILED"  # sticky, and ON_HOLD can be retried
    status, scheduled = control(sandbox, "POST", "/_sandbox/subscriptions/sub-acme-1/charge")
    assert status == 200 and scheduled["payment_status"] == "FAILED"  # the scheduled charge follows it too
    assert cashfree.subscription()["subscription_status"] == "ON_HOLD"

    control(sandbox, "POST", "/_sandbox/subscriptions/sub-acme-1/charges", {"outcome": "success"})
    paid = cashfree.raise_charge("pay-3")
    assert paid.body["payment_status"] == "SUCCESS"
    assert cashfree.subscription()["subscription_status"] == "ACTIVE"  # a successful retry lifts the hold
    assert [p["payment_status"] for p in cashfree.payments()] == ["SUCCESS", "FAILED", "FAILED", "FAILED", "SUCCESS"]

    wrong = control(sandbox, "POST", "/_sandbox/subscriptions/sub-acme-1/charges", {"outcome": "maybe"})
    assert wrong[0] == 400 and wrong[1]["code"] == "outcome_invalid"
    assert control(sandbox, "POST", "/_sandbox/subscriptions/sub-acme-1/charges", {})[0] == 400
    assert control(sandbox, "POST", "/_sandbox/subscriptions/nope/charges", {"outcome": "failed"})[0] == 404


def test_a_charge_is_refused_unless_an_authorised_mandate_can_pay_it(cashfree, sandbox):
    cashfree.create_plan()
    cashfree.create_subscription()
    unauthorised = cashfree.raise_charge()
    assert unauthorised.status == 409 and unauthorised.body["code"] == "subscription_not_active"
    assert "INITIALIZED" in unauthorised.body["message"]
    session = cashfree.subscription()["subscription_session_id"]
    control(sandbox, "POST", f"/_sandbox/checkout/subscription/{session}/pay")

    too_much = cashfree.raise_charge(amount=Decimal("10000.01"))  # plan_max_amount is 10000
    assert too_much.status == 400 and too_much.body["code"] == "payment_amount_invalid"
    auth = cashfree.raise_charge(payment_type="AUTH")
    assert auth.status == 400 and auth.body["code"] == "payment_type_invalid"
    unknown = cashfree.raise_charge(subscription_id="nope")
    assert unknown.status == 404 and unknown.body["code"] == "subscription_not_found"
    for field in ("payment_amount", "payment_id", "subscription_id"):
        absent = cashfree.raise_charge(**{field: None})
        assert absent.status == 400 and absent.body["code"] == f"{field}_missing", absent.body
    as_text = cashfree.raise_charge(amount="1499.00")
    assert as_text.status == 400 and as_text.body["code"] == "payment_amount_invalid"
    assert cashfree.raise_charge(payment_schedule_date="next tuesday").status == 400

    cashfree.manage("PAUSE")
    paused = cashfree.raise_charge()
    assert paused.status == 409 and "PAUSED" in paused.body["message"]
    assert [p["payment_type"] for p in cashfree.payments()] == ["AUTH"]  # nothing was charged
    logged = [entry for entry in control(sandbox, "GET", "/_sandbox/requests")[1]
              if entry["path"] == "/pg/subscriptions/pay"]
    assert [bool(entry["validation_errors"]) for entry in logged if entry["status"] == 409] == [False, False]


def test_cancel_ends_an_active_or_on_hold_subscription_and_no_charge_follows(cashfree, sandbox, receiver):
    cashfree.create_plan()
    authorised_subscription(cashfree, sandbox, plan_id="pro_monthly")
    authorised_subscription(cashfree, sandbox, subscription_id="sub-held", plan_id="pro_monthly")
    control(sandbox, "POST", "/_sandbox/subscriptions/sub-held/charge", {"outcome": "failed"})
    assert cashfree.subscription("sub-held")["subscription_status"] == "ON_HOLD"

    for subscription_id in ("sub-acme-1", "sub-held"):  # the adapter cancels a duplicate at once
        cancelled = cashfree.manage("CANCEL", subscription_id=subscription_id)
        assert cancelled.status == 200 and cancelled.body["subscription_status"] == "CANCELLED"
        assert cancelled.body["next_schedule_date"] == ""
        refused = cashfree.raise_charge(payment_id=f"after-cancel-{subscription_id}", subscription_id=subscription_id)
        assert refused.status == 409 and "CANCELLED" in refused.body["message"]
        assert control(sandbox, "POST", f"/_sandbox/subscriptions/{subscription_id}/charge")[0] == 409
    assert [p["payment_type"] for p in cashfree.payments("sub-held")] == ["CHARGE", "AUTH"]
    receiver.wait_until(lambda ds: sum(
        event_type(d) == "SUBSCRIPTION_STATUS_CHANGED"
        and json.loads(d["body"])["data"]["subscription_details"]["subscription_status"] == "CANCELLED"
        for d in ds) == 2)


# e-NACH: the mandate is registered, nothing is collected

def test_an_enach_authorisation_collects_nothing_and_keeps_the_mandate_amount(cashfree, sandbox, receiver):
    cashfree.create_plan()
    bank = authorised_subscription(cashfree, sandbox, "netbanking", plan_id="pro_monthly")
    assert bank["authorisation_details"]["payment_method"] == "enach"
    assert bank["authorisation_details"]["authorization_amount"] == Decimal("1499")  # the mandate's amount
    (auth,) = cashfree.payments()
    assert (auth["payment_type"], auth["payment_status"], auth["payment_amount"]) == ("AUTH", "SUCCESS", 0)
    assert auth["authorization_details"]["authorization_amount"] == Decimal("1499")
    events = receiver.accepted("SUBSCRIPTION_AUTH_STATUS", "SUBSCRIPTION_PAYMENT_SUCCESS")
    assert events["SUBSCRIPTION_AUTH_STATUS"][0]["data"]["payment_amount"] == 0
    assert events["SUBSCRIPTION_PAYMENT_SUCCESS"][0]["data"]["payment_amount"] == 0

    first_period = cashfree.raise_charge()  # what the adapter does when the authorisation did not pay
    assert first_period.body["payment_status"] == "SUCCESS" and first_period.body["payment_method"] == "enach"

    card = authorised_subscription(cashfree, sandbox, "card", subscription_id="sub-card", plan_id="pro_monthly")
    (card_auth,) = cashfree.payments("sub-card")
    assert card["authorisation_details"]["payment_method"] == "card" and card_auth["payment_amount"] == 1499
    paper = authorised_subscription(cashfree, sandbox, "netbanking", subscription_id="sub-paper", plan_id="pro_monthly",
                                    authorization_details={"authorization_amount": Decimal("1499.00"),
                                                           "payment_methods": ["pnach"]})
    assert paper["authorisation_details"]["payment_method"] == "pnach"
    assert cashfree.payments("sub-paper")[0]["payment_amount"] == 0


# refunds of a subscription's payments

def test_a_subscription_payment_is_refunded_in_parts_up_to_what_it_collected(cashfree, sandbox, receiver):
    authorised_subscription(cashfree, sandbox)
    charge = cashfree.raise_charge("pay-1").body
    assert cashfree.manage("CANCEL").status == 200  # a duplicate subscription is cancelled, then refunded

    first = cashfree.refund_payment("refund-1", Decimal("1000.00"), payment_id="pay-1", refund_note="duplicate",
                                    idempotency_key="refund-key-1")
    assert first.status == 200, first.body  # checked against SubscriptionPaymentRefundEntity
    assert (first.body["refund_id"], first.body["payment_id"], first.body["cf_payment_id"]) == (
        "refund-1", "pay-1", charge["cf_payment_id"])
    assert (first.body["refund_amount"], first.body["refund_status"], first.body["refund_speed"]) == (
        Decimal("1000"), "SUCCESS", "STANDARD")  # UPI refunds are STANDARD
    assert first.body["refund_note"] == "duplicate" and first.body["cf_refund_id"].isdigit()
    fetched = cashfree.call("GET", "/subscriptions/sub-acme-1/refunds/refund-1")
    assert fetched.status == 200 and fetched.body == first.body
    replayed = cashfree.refund_payment("refund-1", Decimal("1000.00"), payment_id="pay-1", refund_note="duplicate",
                                       idempotency_key="refund-key-1")
    assert replayed.text == first.text and replayed.headers["x-idempotency-replayed"] == "true"

    rest = cashfree.refund_payment("refund-2", Decimal("499.00"), cf_payment_id=int(charge["cf_payment_id"]))
    assert rest.status == 200 and rest.body["payment_id"] == "pay-1"
    over = cashfree.refund_payment("refund-3", Decimal("0.01"), payment_id="pay-1")
    assert over.status == 400 and over.body["code"] == "refund_amount_exceeded"
    assert "₹0.00 left" in over.body["message"]
    again = cashfree.refund_payment("refund-1", Decimal("1.00"), payment_id="pay-1")
    assert again.status == 409 and again.body["code"] == "refund_already_exists"
    auth_id = cashfree.payments()[-1]["payment_id"]
    auth_too = cashfree.refund_payment("refund-auth", Decimal("1499.01"), payment_id=auth_id)
    assert auth_too.status == 400 and auth_too.body["code"] == "refund_amount_exceeded"
    assert not any("REFUND" in event["type"] for event in events_of(sandbox))  # the document defines no webhook


def test_a_subscription_refund_is_refused_for_what_cannot_be_refunded(cashfree, sandbox):
    authorised_subscription(cashfree, sandbox)
    control(sandbox, "POST", "/_sandbox/subscriptions/sub-acme-1/charges", {"outcome": "failed"})
    cashfree.raise_charge("pay-failed")
    charge_id = cashfree.payments()[0]["cf_payment_id"]

    refusals = [
        (dict(payment_id="pay-failed"), 400, "payment_not_successful"),
        (dict(payment_id="no-such-payment"), 400, "payment_not_found"),
        (dict(payment_id="pay-failed", cf_payment_id=int(charge_id) + 1), 400, "payment_not_found"),
        (dict(), 400, "payment_id_missing"),
        (dict(payment_id="pay-failed", refund_amount=Decimal("0")), 400, "refund_amount_invalid"),
        (dict(payment_id="pay-failed", subscription_id="sub-other"), 404, "subscription_not_found"),
        (dict(payment_id="pay-failed", cf_payment_id=charge_id), 400, "cf_payment_id_invalid"),  # a number
    ]
    for extra, status, code in refusals:
        refused = cashfree.refund_payment(**extra)
        assert (refused.status, refused.body["code"]) == (status, code), (extra, refused.body)
    mismatch = cashfree.call("POST", "/subscriptions/sub-acme-1/refunds", {
        "subscription_id": "sub-other", "refund_id": "r", "refund_amount": 1, "payment_id": "pay-failed"})
    assert mismatch.status == 400 and mismatch.body["code"] == "subscription_id_invalid"
    instant = cashfree.refund_payment("refund-instant", Decimal("1.00"), refund_speed="INSTANT",
                                      payment_id=cashfree.payments()[-1]["payment_id"])
    assert instant.status == 400 and instant.body["code"] == "refund_speed_invalid"  # UPI refunds are STANDARD only
    missing = cashfree.call("GET", "/subscriptions/sub-acme-1/refunds/no-such-refund")
    assert missing.status == 404 and missing.body["code"] == "refund_not_found"
    assert cashfree.call("GET", "/subscriptions/nope/refunds/refund-1").status == 404
    assert sandbox.store.subscription_refunds == {}
    logged = [entry for entry in control(sandbox, "GET", "/_sandbox/requests")[1] if entry["path"].endswith("/refunds")]
    # well-formed requests refused for what they ask are not validation errors (the e2e checks count those)
    assert [bool(entry["validation_errors"]) for entry in logged[:5]] == [False, False, False, True, True]


def test_an_enach_payment_is_refunded_instantly_and_its_empty_authorisation_not_at_all(cashfree, sandbox):
    authorised_subscription(cashfree, sandbox, "netbanking")
    cashfree.raise_charge("pay-1")
    refunded = cashfree.refund_payment(payment_id="pay-1")
    assert refunded.status == 200 and refunded.body["refund_speed"] == "INSTANT"
    auth_id = cashfree.payments()[-1]["payment_id"]
    nothing = cashfree.refund_payment("refund-auth", Decimal("1.00"), payment_id=auth_id)
    assert nothing.status == 400 and nothing.body["code"] == "refund_amount_exceeded"
    standard = cashfree.refund_payment("refund-std", Decimal("1.00"), payment_id="pay-1", refund_speed="STANDARD")
    assert standard.status == 400 and standard.body["code"] == "refund_speed_invalid"


# refunds of an order (a payment link's)

def test_a_paid_orders_payment_is_refunded_and_announced(cashfree, sandbox, receiver, contract):
    cashfree.create_link()
    control(sandbox, "POST", "/_sandbox/links/lnk_L1/pay", {"method": "card"})
    (paid,) = receiver.accepted("PAYMENT_SUCCESS_WEBHOOK")["PAYMENT_SUCCESS_WEBHOOK"]
    assert cashfree.call("GET", "/orders/lnk_L1_order/refunds").body == []

    answer = cashfree.refund_order(amount=Decimal("1000.00"), refund_note="paid twice", idempotency_key="refund-L1")
    assert answer.status == 200, answer.body  # checked against RefundEntity
    refund = answer.body
    assert (refund["refund_id"], refund["order_id"], refund["cf_payment_id"], refund["entity"]) == (
        "refund-1", "lnk_L1_order", paid["data"]["payment"]["cf_payment_id"], "refund")
    assert (refund["refund_amount"], refund["refund_currency"], refund["refund_status"]) == (
        Decimal("1000"), "INR", "SUCCESS")
    assert (refund["refund_type"], refund["refund_mode"], refund["refund_note"]) == (
        "MERCHANT_INITIATED", "STANDARD", "paid twice")
    assert refund["refund_speed"]["processed"] == "STANDARD" and refund["cf_refund_id"].isdigit()
    assert refund["created_at"] == refund["processed_at"] == "2025-06-01T00:00:00+05:30" and refund["refund_arn"]
    replayed = cashfree.refund_order(amount=Decimal("1000.00"), refund_note="paid twice", idempotency_key="refund-L1")
    assert replayed.text == answer.text and replayed.headers["x-idempotency-replayed"] == "true"

    (announced,) = receiver.accepted("REFUND_STATUS_WEBHOOK")["REFUND_STATUS_WEBHOOK"]
    assert announced["data"] == {"refund": refund}
    assert not problems(contract.component_validator("RefundWebhook"), announced)

    rest = cashfree.refund_order(refund_id="refund-2", amount=Decimal("499.00"), refund_speed="INSTANT")
    assert rest.status == 200 and rest.body["refund_mode"] == "INSTANT"
    assert [r["refund_id"] for r in cashfree.call("GET", "/orders/lnk_L1_order/refunds").body] == [
        "refund-1", "refund-2"]
    assert cashfree.call("GET", "/orders/lnk_L1_order/refunds/refund-1").body == refund
    over = cashfree.refund_order(refund_id="refund-3", amount=Decimal("0.01"))
    assert over.status == 400 and over.body["code"] == "refund_amount_exceeded"
    again = cashfree.refund_order(amount=Decimal("1.00"))
    assert again.status == 409 and again.body["code"] == "refund_already_exists"
    receiver.wait_until(lambda ds: sum(event_type(d) == "REFUND_STATUS_WEBHOOK" for d in ds) == 2)
    assert cashfree.call("GET", "/orders/lnk_L1_order").body["order_status"] == "PAID"  # as at Cashfree
    assert cashfree.link()["link_status"] == "PAID"


def test_only_a_paid_order_can_be_refunded(cashfree, sandbox):
    cashfree.create_link()
    control(sandbox, "POST", "/_sandbox/links/lnk_L1/fail")
    unpaid = cashfree.refund_order()
    assert unpaid.status == 400 and unpaid.body["code"] == "order_not_paid" and "ACTIVE" in unpaid.body["message"]
    unknown = cashfree.refund_order(order_id="no-such-order")
    assert unknown.status == 404 and unknown.body["code"] == "order_not_found"
    for path in ("/orders/no-such-order/refunds", "/orders/lnk_L1_order/refunds/refund-1"):
        assert cashfree.call("GET", path).status == 404
    short = cashfree.refund_order(refund_id="r1")
    assert short.status == 400 and short.body["code"] == "refund_id_invalid"  # 3 to 40 characters
    slow = cashfree.refund_order(refund_speed="SLOW")
    assert slow.status == 400 and slow.body["code"] == "refund_speed_invalid"
    assert sandbox.store.order_refunds == {} and events_of(sandbox)[-1]["type"] == "PAYMENT_FAILED_WEBHOOK"


@contextmanager
def running(contract, **options):
    """One run of a sandbox (start_sandbox options) and the adapter's client for it; stopped at the end."""
    handle = start_sandbox(**options)
    try:
        yield handle, CashfreeApi(handle.api_base, contract)
    finally:
        handle.stop()


def test_charges_refunds_and_the_charge_outcome_survive_a_restart(receiver, clock, contract, tmp_path):
    options = dict(port=0, webhook_url=receiver.url, clock=clock, retry_scale=0.01,
                   state_file=str(tmp_path / "cashfree_sandbox.json"))
    with running(contract, **options) as (first, cashfree):
        authorised_subscription(cashfree, first)
        cashfree.raise_charge("pay-1")
        cashfree.refund_payment(payment_id="pay-1", amount=Decimal("0.10"))
        cashfree.create_link()
        control(first, "POST", "/_sandbox/links/lnk_L1/pay")
        cashfree.refund_order(amount=Decimal("0.10"))
        control(first, "POST", "/_sandbox/subscriptions/sub-acme-1/charges", {"outcome": "failed"})
        answers = {path: cashfree.call("GET", path).text for path in (
            "/subscriptions/sub-acme-1/refunds/refund-1", "/orders/lnk_L1_order/refunds",
            "/subscriptions/sub-acme-1/payments")}

    with running(contract, **options) as (second, cashfree):
        assert {path: cashfree.call("GET", path).text for path in answers} == answers  # byte for byte
        assert cashfree.raise_charge("pay-1").status == 409
        assert cashfree.raise_charge("pay-2").body["payment_status"] == "FAILED"
        assert cashfree.refund_payment(payment_id="pay-1", amount=Decimal("1499.00")).status == 409
        over = cashfree.refund_order(refund_id="refund-2", amount=Decimal("1498.91"))
        assert over.status == 400 and over.body["code"] == "refund_amount_exceeded"
        assert str(second.store.order_refunds["lnk_L1_order"][0]["refund_amount"]) == "0.10"
