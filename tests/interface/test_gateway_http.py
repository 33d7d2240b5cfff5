"""gateway_http in a real container on a real port, with the services behind it mocked.

Pins the HTTP layer's own behaviour: the error format and status table, body limits, auth,
request ids, health, and the OpenAPI document.
"""
import json
import logging

import pytest
import requests
from nameko.exceptions import RpcTimeout
from nameko.standalone.events import event_dispatcher
from nameko.testing.services import replace_dependencies
from openapi_spec_validator import validate

from gateway_http.service import HttpGateway
from shared.config import SERVICE_NAMES, settings
from shared.errors import Forbidden, NotFound, Unauthorized
from shared.tokens import hash_token
from tests.interface.test_outbox_relay import wait_until
from deploy.stack import free_port

ANN = {"id": "u1", "email": "ann@example.com", "name": "Ann", "country": "US", "created_at": "2026-01-01T00:00:00Z"}
ORG = {"id": "o1", "name": "Acme", "country": "US", "owner_id": "u1", "created_at": "2026-01-01T00:00:00Z"}
AUTH = {"Authorization": "Bearer good-token"}


@pytest.fixture
def gateway(container_factory, service_config):
    port = free_port()
    container = container_factory(HttpGateway, {**service_config, "WEB_SERVER_ADDRESS": f"127.0.0.1:{port}"})
    mocks = dict(zip(SERVICE_NAMES, replace_dependencies(container, *SERVICE_NAMES)))

    def authenticate_session(token):
        if token not in ("good-token", "other-token"):
            raise Unauthorized("Your session is invalid or has expired; sign in again.", code="INVALID_TOKEN")
        return {"user": ANN, "expires_at": "2099-01-01T00:00:00Z"}

    mocks["identity"].authenticate_session.side_effect = authenticate_session
    container.start()

    class Client(requests.Session):
        base = f"http://127.0.0.1:{port}"
        services = mocks

        def request(self, method, url, *args, **kwargs):
            return super().request(method, self.base + url, *args, **kwargs)

    with Client() as client:
        yield client


def assert_error(response, status, code=None):
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    if code:
        assert body["error"]["code"] == code
    return body["error"]


def test_malformed_json_is_a_400(gateway):
    response = gateway.post("/api/v1/orgs", data=b'{"name": "Acme"', headers=AUTH)
    assert_error(response, 400, "MALFORMED_JSON")
    gateway.services["orgs"].create_org.assert_not_called()


def test_a_body_that_is_not_utf8_is_a_400(gateway):
    assert_error(gateway.post("/api/v1/orgs", data=b'\xff\xfe{}', headers=AUTH), 400, "MALFORMED_JSON")


def test_wrong_field_types_are_a_422_naming_each_field(gateway):
    response = gateway.post("/api/v1/auth/signup", json={"email": 5, "password": ["x"], "name": "A", "country": "US"})
    error = assert_error(response, 422, "VALIDATION_FAILED")
    assert set(error["details"]) == {"email", "password"}
    assert all(isinstance(messages, list) for messages in error["details"].values())


def test_a_json_array_instead_of_an_object_is_a_422(gateway):
    assert_error(gateway.post("/api/v1/auth/login", json=[1, 2]), 422)


def test_unknown_fields_are_refused(gateway):
    error = assert_error(gateway.post("/api/v1/orgs", json={"name": "Acme", "plan_cod": "x"}, headers=AUTH), 422)
    assert "plan_cod" in error["details"]


@pytest.mark.parametrize("send", ["content-length", "chunked"])
def test_a_body_over_one_mebibyte_is_a_413(gateway, send):
    body = json.dumps({"name": "x" * (1024 * 1024)}).encode()
    data = body if send == "content-length" else iter([body[i:i + 65536] for i in range(0, len(body), 65536)])
    response = gateway.post("/api/v1/orgs", data=data, headers=AUTH)
    assert_error(response, 413, "PAYLOAD_TOO_LARGE")
    gateway.services["orgs"].create_org.assert_not_called()


@pytest.mark.parametrize("headers", [{}, {"Authorization": "good-token"}, {"Authorization": "Bearer "},
                                     {"Authorization": "Basic Z3Vlc3Q6Z3Vlc3Q="}, {"Authorization": "Bearer forged"}])
def test_missing_or_bad_tokens_are_a_401(gateway, headers):
    assert_error(gateway.get("/api/v1/orgs", headers=headers), 401)
    gateway.services["orgs"].list_my_orgs.assert_not_called()


def test_service_errors_keep_their_type_code_and_details(gateway):
    gateway.services["orgs"].get_org.side_effect = NotFound("No such organization.")
    assert assert_error(gateway.get("/api/v1/orgs/o2", headers=AUTH), 404, "NOT_FOUND")["message"] == \
        "No such organization."
    gateway.services["orgs"].invite.side_effect = Forbidden()
    assert_error(gateway.post("/api/v1/orgs/o1/invitations", json={"email": "b@example.com", "role": "admin"},
                              headers=AUTH), 403, "FORBIDDEN")


def test_the_signed_in_user_and_path_are_passed_to_the_service(gateway):
    gateway.services["orgs"].get_org.return_value = ORG
    assert gateway.get("/api/v1/orgs/o1", headers=AUTH).json() == ORG
    gateway.services["orgs"].get_org.assert_called_once_with(ANN, "o1")


@pytest.mark.parametrize("orgs_answer, status", [
    pytest.param({"org_id": "o1", "role": "standard"}, 200, id="accepted"),
    pytest.param(Forbidden("This invitation was sent to another email address.",
                           code="INVITATION_EMAIL_MISMATCH"), 403, id="refused"),
    pytest.param(RuntimeError("boom"), 500, id="crashed"),
])
def test_an_invitation_token_never_reaches_the_log(gateway, caplog, orgs_answer, status):
    # Every log of this process but the test's own HTTP client's, at every level; eventlet's access
    # line is off, as shared.runner sets up every process. (Each call also sets caplog's handler to
    # its level: DEBUG last.)
    caplog.set_level(logging.WARNING, logger="urllib3")
    caplog.set_level(logging.WARNING, logger="nameko.web.server")
    caplog.set_level(logging.DEBUG)
    token = "inv-" + "k" * 40
    accept = gateway.services["orgs"].accept_invitation
    accept.side_effect = orgs_answer if isinstance(orgs_answer, Exception) else None
    accept.return_value = orgs_answer

    response = gateway.post(f"/api/v1/invitations/{token}/accept", headers={**AUTH, "X-Request-Id": "accept-1"})

    assert response.status_code == status
    accept.assert_called_once_with(ANN, token)
    [request_line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("accept-1 ")]
    assert request_line.startswith(f"accept-1 POST /api/v1/invitations/{{token}}/accept {status} ")
    assert token not in caplog.text


def test_a_service_that_does_not_answer_is_a_503_not_a_hang(gateway):
    gateway.services["orgs"].list_my_orgs.side_effect = RpcTimeout()
    assert_error(gateway.get("/api/v1/orgs", headers=AUTH), 503, "SERVICE_UNAVAILABLE")


def test_an_unexpected_crash_is_a_500_with_the_request_id(gateway):
    gateway.services["orgs"].list_my_orgs.side_effect = RuntimeError("boom")
    response = gateway.get("/api/v1/orgs", headers=AUTH)
    error = assert_error(response, 500, "INTERNAL_ERROR")
    assert "boom" not in response.text
    assert error["details"]["request_id"] == response.headers["X-Request-Id"]


def test_request_ids_are_echoed_or_made(gateway):
    gateway.services["orgs"].list_my_orgs.return_value = []
    assert gateway.get("/api/v1/orgs", headers={**AUTH, "X-Request-Id": "abc-123"}).headers["X-Request-Id"] == \
        "abc-123"
    made = gateway.get("/api/v1/orgs", headers={**AUTH, "X-Request-Id": "bad id\twith spaces"})
    assert len(made.headers["X-Request-Id"]) == 32


def test_unknown_routes_are_a_json_404(gateway):
    assert_error(gateway.get("/api/v1/nothing-here"), 404, "NOT_FOUND")


@pytest.mark.parametrize("method", ["PUT", "OPTIONS", "TRACE"])
def test_a_method_the_route_does_not_have_is_a_json_404_not_an_html_405(gateway, method):
    assert_error(gateway.request(method, "/api/v1/me", headers=AUTH), 404, "NOT_FOUND")


def test_logout_revokes_the_token_it_was_sent_with(gateway):
    assert gateway.post("/api/v1/auth/logout", headers=AUTH).status_code == 204
    gateway.services["identity"].logout.assert_called_once_with("good-token")


def test_a_token_is_checked_with_identity_once_then_served_from_the_cache(gateway):
    gateway.services["orgs"].list_my_orgs.return_value = []
    for _ in range(3):
        assert gateway.get("/api/v1/orgs", headers=AUTH).status_code == 200
    gateway.services["identity"].authenticate_session.assert_called_once_with("good-token")


def test_a_refused_token_asks_identity_every_time(gateway):
    for _ in range(2):
        assert_error(gateway.get("/api/v1/orgs", headers={"Authorization": "Bearer forged"}), 401)
    assert gateway.services["identity"].authenticate_session.call_count == 2


def test_after_logout_this_process_refuses_the_token_at_once(gateway):
    gateway.services["orgs"].list_my_orgs.return_value = []
    assert gateway.get("/api/v1/orgs", headers=AUTH).status_code == 200  # cached now
    gateway.services["identity"].authenticate_session.side_effect = Unauthorized(code="INVALID_TOKEN")
    assert gateway.post("/api/v1/auth/logout", headers=AUTH).status_code == 204
    assert_error(gateway.get("/api/v1/orgs", headers=AUTH), 401)


def test_patch_me_passes_the_change_to_identity_and_this_process_forgets_the_cached_user(gateway):
    renamed = {**ANN, "name": "Ann B.", "phone": "+919812345678"}
    gateway.services["orgs"].list_my_orgs.return_value = []
    assert gateway.get("/api/v1/orgs", headers=AUTH).status_code == 200  # cached now
    gateway.services["identity"].update_me.return_value = {"user": renamed}

    answer = gateway.patch("/api/v1/me", json={"name": "Ann B.", "phone": "+91 98123 45678"}, headers=AUTH)

    assert (answer.status_code, answer.json()) == (200, {"user": renamed})
    gateway.services["identity"].update_me.assert_called_once_with("u1", {"name": "Ann B.", "phone": "+919812345678"})
    authenticate_session = gateway.services["identity"].authenticate_session
    calls = authenticate_session.call_count
    assert gateway.get("/api/v1/orgs", headers=AUTH).status_code == 200
    assert authenticate_session.call_count == calls + 1  # asked again: the new name is seen at once


@pytest.mark.parametrize("body", [{}, {"phone": "12345"}, {"name": "A", "email": "b@example.com"}])
def test_patch_me_refuses_a_body_it_cannot_apply_without_asking_identity(gateway, body):
    assert_error(gateway.patch("/api/v1/me", json=body, headers=AUTH), 422, "VALIDATION_FAILED")
    gateway.services["identity"].update_me.assert_not_called()


def test_session_revoked_from_identity_evicts_the_token(gateway, service_config):
    gateway.services["orgs"].list_my_orgs.return_value = []
    other = {"Authorization": "Bearer other-token"}
    for headers in (AUTH, other):
        assert gateway.get("/api/v1/orgs", headers=headers).status_code == 200
    authenticate_session = gateway.services["identity"].authenticate_session
    assert authenticate_session.call_count == 2
    dispatch = event_dispatcher(service_config)
    dispatch("identity", "session.revoked", {"event_id": "e1", "occurred_at": "2026-01-01T00:00:00Z",
                                             "token_hash": hash_token("good-token"), "user_id": "u1"})

    def asked_identity_again():
        gateway.get("/api/v1/orgs", headers=AUTH)
        return authenticate_session.call_count > 2

    wait_until(asked_identity_again)
    calls = authenticate_session.call_count
    gateway.get("/api/v1/orgs", headers=other)
    assert authenticate_session.call_count == calls  # the other token is still cached


def test_plans_need_a_country_when_anonymous(gateway):
    assert_error(gateway.get("/api/v1/plans"), 422)
    assert_error(gateway.get("/api/v1/plans?country=FR"), 422)
    gateway.services["billing"].list_plans.return_value = []
    assert gateway.get("/api/v1/plans", headers=AUTH).json() == {"items": []}
    gateway.services["billing"].list_plans.assert_called_once_with("US")


def test_healthz_names_each_service(gateway):
    for name in SERVICE_NAMES:
        gateway.services[name].health.return_value = "ok"
    assert gateway.get("/healthz").json() == {"status": "ok", "services": dict.fromkeys(SERVICE_NAMES, "ok")}
    assert {"identity", "orgs", "billing", "usage", "usage_ingest", "gateway_stripe",
            "gateway_cashfree"} == set(SERVICE_NAMES)

    gateway.services["usage"].health.side_effect = RpcTimeout()
    response = gateway.get("/healthz")
    assert response.status_code == 503
    assert response.json()["services"]["usage"] == "unavailable"


def test_the_openapi_document_is_valid_and_covers_the_routes_built_so_far(gateway):
    document = gateway.get("/api/v1/openapi.json").json()
    validate(document)
    expected = {
        ("post", "/api/v1/auth/signup"), ("post", "/api/v1/auth/login"), ("post", "/api/v1/auth/logout"),
        ("get", "/api/v1/me"), ("patch", "/api/v1/me"), ("delete", "/api/v1/me/pending-plan"), ("post", "/api/v1/orgs"),
        ("get", "/api/v1/orgs"), ("get", "/api/v1/orgs/{org_id}"), ("get", "/api/v1/orgs/{org_id}/members"),
        ("post", "/api/v1/orgs/{org_id}/invitations"), ("get", "/api/v1/orgs/{org_id}/invitations"),
        ("delete", "/api/v1/orgs/{org_id}/invitations/{invitation_id}"),
        ("post", "/api/v1/invitations/{token}/accept"), ("patch", "/api/v1/orgs/{org_id}/members/{user_id}"),
        ("delete", "/api/v1/orgs/{org_id}/members/{user_id}"), ("post", "/api/v1/orgs/{org_id}/transfer-ownership"),
        ("get", "/api/v1/plans"), ("get", "/healthz"), ("get", "/api/v1/openapi.json"),
        ("post", "/webhooks/stripe"), ("post", "/webhooks/cashfree"), ("post", "/api/v1/usage/events"),
    }
    for acct in ("/api/v1/billing/personal", "/api/v1/orgs/{org_id}/billing"):
        expected |= {("get", acct), ("post", f"{acct}/quotes"), ("post", f"{acct}/checkout"),
                     ("get", f"{acct}/checkout/{{checkout_id}}"), ("get", f"{acct}/history"),
                     ("get", f"{acct}/payment-methods"), ("post", f"{acct}/subscription/cancel"),
                     ("post", f"{acct}/payment-links"), ("get", f"{acct}/payment-links"),
                     ("post", f"{acct}/payment-links/{{link_id}}/cancel"), ("get", f"{acct}/usage")}
    documented = {(method, path) for path, ops in document["paths"].items() for method in ops}
    assert expected <= documented
    ingestion = document["paths"]["/api/v1/usage/events"]["post"]
    assert ingestion["security"] == [{"usageIngestKey": []}] and "requestBody" in ingestion
    signup = document["paths"]["/api/v1/auth/signup"]["post"]
    assert {"201", "409", "413", "422"} <= set(signup["responses"])
    schemas = document["components"]["schemas"]
    assert "phone" in schemas["SignupInput"]["properties"] and "phone" in schemas["UserOut"]["properties"]
    assert set(schemas["UpdateMeInput"]["properties"]) == {"name", "phone"}


def test_a_chunked_body_within_the_limit_is_read(gateway):
    gateway.services["orgs"].create_org.return_value = ORG
    response = gateway.post("/api/v1/orgs", data=iter([b'{"name": ', b'"Acme"}']), headers=AUTH)
    assert response.status_code == 201, response.text
    gateway.services["orgs"].create_org.assert_called_once_with(ANN, {"name": "Acme", "country": None})


def test_usage_reports_go_to_the_ingestion_process_and_its_answer_comes_back(gateway, monkeypatch):
    monkeypatch.setenv("USAGE_INGEST_KEY", "ingest-key")
    settings.cache_clear()
    try:
        answer = {"accepted": 1, "duplicates": 0, "rejected": [{"id": "b", "reason": "negative_value"}]}
        gateway.services["usage_ingest"].record_batch.return_value = answer
        events = [{"id": "a", "account": {"kind": "org", "id": "o"}, "metric": "storage_bytes", "value": 1,
                   "timestamp": "2026-01-01T00:00:00Z"}]
        body = json.dumps({"events": events})
        response = gateway.post("/api/v1/usage/events", data=body,
                                headers={"Authorization": "Bearer ingest-key", "Content-Type": "application/json"})
        assert (response.status_code, response.json()) == (202, answer)
        # the body goes on untouched, as text: usage_ingest parses it, not gateway_http
        gateway.services["usage_ingest"].record_batch.assert_called_once_with(body)
        assert gateway.services["usage"].mock_calls == []  # the read side is not asked to write

        assert_error(gateway.post("/api/v1/usage/events", data=body,
                                  headers={"Authorization": "Bearer another-key"}), 401)
        assert_error(gateway.post("/api/v1/usage/events", data=b'{"events": "\xff\xfe"}',
                                  headers={"Authorization": "Bearer ingest-key"}), 400, "MALFORMED_JSON")  # not UTF-8
        assert gateway.services["usage_ingest"].record_batch.call_count == 1
    finally:
        settings.cache_clear()
