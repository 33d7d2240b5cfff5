"""What the fuzzing found, pinned: text PostgreSQL cannot store is refused at the boundary, the one
JSON parser takes only strict JSON, and the OpenAPI document lists what each route really answers."""
from datetime import timedelta
from decimal import Decimal

import pytest

import gateway_http.service  # noqa: F401  (declaring the routes fills the document)
from gateway_http.openapi import openapi_document
from services.identity.schemas import LoginInput
from services.usage.reports import check_report
from shared.errors import BadRequest, ValidationFailed
from shared.outbox import rfc3339, utc_now
from shared.schemas import MAX_JSON_DEPTH, NUL_REFUSED, load_or_raise, parse_json


@pytest.mark.parametrize("data, field", [
    ({"email": "ann\x00@example.com", "password": "x"}, "email"),
    ({"email": "ann@example.com", "password": "\x00"}, "password"),
    ({"email": "ann@example.com", "password": "x", "extra": ["fine", {"deep": "no\x00"}]}, "extra"),
    ({"email": "ann@example.com", "password": "x", "key\x00": 1}, "key\x00"),
])
def test_a_nul_character_anywhere_in_a_body_is_a_validation_error_naming_the_field(data, field):
    with pytest.raises(ValidationFailed) as raised:
        load_or_raise(LoginInput(), data)
    assert raised.value.details == {field: [NUL_REFUSED]}


def test_usage_events_with_a_nul_in_their_id_or_account_are_rejected_one_by_one():
    now = utc_now()
    event = {"id": "e1", "account": {"kind": "org", "id": "a1"}, "metric": "storage_bytes", "value": 1,
             "timestamp": rfc3339(now)}
    oldest = now - timedelta(days=1)
    assert check_report(event, now, oldest)[0] is not None
    assert check_report({**event, "id": "e\x001"}, now, oldest) == (None, "bad_id")
    assert check_report({**event, "account": {"kind": "org", "id": "a\x00"}}, now, oldest) == (None, "bad_account")


@pytest.mark.parametrize("raw, reason", [
    ('{"n": NaN}', "NaN is not a JSON number"),
    ("[Infinity]", "Infinity is not a JSON number"),
    ("-Infinity", "-Infinity is not a JSON number"),
    ('{"n": 1e400}', "a number too large"),
    ('{"n": ' + "9" * 5000 + "}", "an integer of more than 4300 digits"),
    ("[" * 100_000 + "]" * 100_000, "arrays and objects nested too deeply"),
    ("[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1), f"nested more than {MAX_JSON_DEPTH} deep"),
    ('{"a": [' * 17 + "1" + "]}" * 17, f"nested more than {MAX_JSON_DEPTH} deep"),  # 34: objects and arrays
])
def test_what_pythons_parser_would_take_but_json_does_not_is_malformed(raw, reason):
    with pytest.raises(BadRequest) as raised:
        parse_json(raw)
    assert raised.value.error_code == "MALFORMED_JSON" and raised.value.details["reason"].endswith(reason)


def test_strict_json_still_parses_as_before():
    deepest = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    assert parse_json(deepest) == parse_json(deepest.encode())
    assert parse_json('{"n": 12345678901234567890, "x": 1.5e300}') == {"n": 12345678901234567890, "x": 1.5e300}
    assert parse_json('{"amount": 1499.50}', exact_decimals=True) == {"amount": Decimal("1499.50")}
    assert parse_json("  ") == {}
    with pytest.raises(BadRequest):
        parse_json('{"amount": 1e400}', exact_decimals=True)
    assert parse_json("[" * 200 + "]" * 200, max_depth=None)  # ingestion: only the parser's own limit


def operation(method, path):
    return openapi_document()["paths"][path][method]


@pytest.mark.parametrize("path, headers", [
    ("/webhooks/stripe", {"Stripe-Signature"}),
    ("/webhooks/cashfree", {"x-webhook-signature", "x-webhook-timestamp"}),
])
def test_webhooks_document_their_signature_headers_and_answer_400_never_422(path, headers):
    webhook = operation("post", path)
    assert {p["name"] for p in webhook["parameters"] if p["in"] == "header" and p["required"]} == headers
    assert "security" not in webhook and "requestBody" in webhook
    assert {"200", "400", "413"} <= set(webhook["responses"]) and "422" not in webhook["responses"]


def test_ingestion_documents_its_key_and_its_422():
    ingestion = operation("post", "/api/v1/usage/events")
    assert ingestion["security"] == [{"usageIngestKey": []}]
    assert {"202", "401", "422"} <= set(ingestion["responses"])


@pytest.mark.parametrize("path", ["/api/v1/billing/personal/checkout", "/api/v1/billing/personal/payment-links"])
def test_a_quote_id_that_names_no_quote_is_a_documented_404(path):
    assert "404" in operation("post", path)["responses"]


def test_login_documents_its_rate_limit():
    assert "429" in operation("post", "/api/v1/auth/login")["responses"]
