"""Hostile JSON on every route that takes a body, over HTTP on the session's stack: numbers Python's
parser chokes on or takes too readily (5,000 digits, NaN, Infinity, 1e400), nesting that would exhaust
the recursion of whatever walks a body, and integers too large for any column, in every field. Each is
a 4xx in the API's error format, never a 500: MALFORMED_JSON (400) for a body that is not strict
JSON, a 422 naming the field for a value out of range. Webhooks are checked past their signature,
with bodies the gateway's key has signed."""
import json
import re
import time
import uuid

import pytest

import gateway_http.service  # noqa: F401  (declaring the routes fills ROUTES)
from gateway_http.routing import ROUTES
from tests.security.test_http_guards import cashfree_signed, stripe_signed

pytestmark = pytest.mark.e2e  # drives the session's stack over HTTP

INGESTION = "/api/v1/usage/events"
WEBHOOKS = ("/webhooks/stripe", "/webhooks/cashfree")
JSON_ROUTES = [spec for spec in ROUTES if (spec.body is not None or spec.raw_body) and spec.path not in WEBHOOKS]
DEEP = 20_000  # far past any parser's recursion, and within a webhook's 256 KiB
PAST_THE_LIMIT = 33  # shared.schemas.MAX_JSON_DEPTH + 1

NOT_STRICT_JSON = {  # what a body says -> the body
    "a 5,000-digit integer": '{"n": ' + "9" * 5000 + "}",
    "NaN": '{"n": NaN}',
    "Infinity": '{"n": Infinity}',
    "-Infinity": '{"n": [1, -Infinity]}',
    "1e400, a float's Infinity": '{"n": 1e400}',
    f"{DEEP:,} nested arrays": "[" * DEEP + "]" * DEEP,
    f"{DEEP:,} nested objects": '{"a":' * DEEP + "1" + "}" * DEEP,
}
HUGE_INTEGERS = (10 ** 30, 10 ** 4000)  # past bigint; just under Python's 4300-digit limit


def nested(levels):
    return "[" * levels + "]" * levels


def ids(specs):
    return [f"{spec.method} {spec.path}" for spec in specs]


@pytest.fixture
def caller(stack, sign_up):
    """caller(spec) -> (headers, path): an org owner's token (the ingestion key for ingestion), and
    the route's path with the owner's organization (other ids are made up: the body is refused first)."""
    owner = sign_up(name="Jason Bodies")
    org = owner.post("/api/v1/orgs", json={"name": "Bodies"}).json()
    token = owner.token

    def for_route(spec):
        key = stack.env["USAGE_INGEST_KEY"] if spec.path == INGESTION else token
        path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>",
                      lambda match: org["id"] if match[1] == "org_id" else str(uuid.uuid4()), spec.path)
        return {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}, path

    return for_route


def send(anonymous, caller, spec, body):
    headers, path = caller(spec)
    return anonymous.request(spec.method, path, data=body.encode() if isinstance(body, str) else body,
                             headers=headers)


def assert_malformed(answer, what):
    assert answer.status_code == 400, f"{what}: {answer.status_code} {answer.text[:300]}"
    error = answer.json()["error"]
    assert set(error) == {"code", "message", "details"} and error["code"] == "MALFORMED_JSON", f"{what}: {answer.text}"


@pytest.mark.parametrize("spec", JSON_ROUTES, ids=ids(JSON_ROUTES))
def test_a_body_that_is_not_strict_json_is_a_400_on_every_route(anonymous, caller, spec):
    for what, body in NOT_STRICT_JSON.items():
        assert_malformed(send(anonymous, caller, spec, body), what)


@pytest.mark.parametrize("spec", [spec for spec in JSON_ROUTES if spec.path != INGESTION],
                         ids=ids([spec for spec in JSON_ROUTES if spec.path != INGESTION]))
def test_nesting_past_the_limit_is_a_400_on_every_validated_route(anonymous, caller, spec):
    for body in (nested(PAST_THE_LIMIT), f'{{"name": {nested(PAST_THE_LIMIT - 1)}}}'):
        assert_malformed(send(anonymous, caller, spec, body), f"{PAST_THE_LIMIT} levels")
    within = f'{{"name": {nested(PAST_THE_LIMIT - 2)}}}'
    assert send(anonymous, caller, spec, within).status_code == 422  # JSON, just not a name


@pytest.mark.parametrize("spec", [spec for spec in JSON_ROUTES if spec.body is not None],
                         ids=ids([spec for spec in JSON_ROUTES if spec.body is not None]))
def test_a_huge_integer_in_any_field_is_a_422_naming_the_field(anonymous, caller, spec):
    for field in spec.body._declared_fields:
        for huge in HUGE_INTEGERS:
            answer = send(anonymous, caller, spec, json.dumps({field: huge}))
            said = f"{field} of {len(str(huge))} digits: {answer.status_code} {answer.text[:300]}"
            assert answer.status_code == 422, said
            assert field in answer.json()["error"]["details"], answer.text[:300]


def test_ingestion_refuses_huge_values_and_deep_reports_one_by_one(anonymous, caller):
    """Ingestion checks each report itself (a bad one must not fail the batch): a value past bigint,
    an id that is a huge number, or a report nested where a value belongs is refused by name."""
    spec = next(spec for spec in JSON_ROUTES if spec.path == INGESTION)
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    report = {"account": {"kind": "org", "id": str(uuid.uuid4())}, "metric": "storage_bytes", "value": 1,
              "timestamp": now}
    deep = json.loads(nested(PAST_THE_LIMIT))
    batch = {"events": [{**report, "id": "huge-value", "value": HUGE_INTEGERS[1]},
                        {**report, "id": 10 ** 40},
                        {**report, "id": "deep", "account": deep}, deep]}
    answer = send(anonymous, caller, spec, json.dumps(batch))
    assert answer.status_code == 202, answer.text[:300]
    reasons = [(item["id"], item["reason"]) for item in answer.json()["rejected"]]
    assert reasons == [("huge-value", "value_too_large"), (10 ** 40, "bad_id"), ("deep", "bad_account"),
                       (None, "bad_event")]


def stripe_event(data_object):
    return json.dumps({"id": f"evt_json_{uuid.uuid4().hex[:12]}", "object": "event", "type": "invoice.paid",
                       "created": int(time.time()), "data": {"object": data_object}})


def cashfree_event(data):
    return json.dumps({"type": "SUBSCRIPTION_PAYMENT_SUCCESS", "event_time": "2026-11-01T10:00:05+05:30",
                       "data": data})


SIGNED = {
    "/webhooks/stripe": (stripe_event, lambda body: stripe_signed(body, int(time.time()))),
    "/webhooks/cashfree": (cashfree_event, lambda body: cashfree_signed(body, int(time.time() * 1000))),
}


@pytest.mark.parametrize("path", WEBHOOKS)
def test_a_signed_webhook_that_is_not_strict_json_is_a_400(anonymous, path):
    make_event, sign = SIGNED[path]
    bodies = {**NOT_STRICT_JSON, **{
        "NaN in an event": make_event({"amount_paid": float("nan")}),
        "Infinity in an event": make_event({"amount_paid": float("inf")}),
        f"an event nested {PAST_THE_LIMIT} deep": make_event({"lines": json.loads(nested(PAST_THE_LIMIT))}),
    }}
    for what, body in bodies.items():
        raw = body.encode()
        answer = anonymous.post(path, data=raw, headers=sign(raw))
        assert_malformed(answer, what)
