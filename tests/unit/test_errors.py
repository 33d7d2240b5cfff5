"""Errors cross RPC as their own types, and each maps to the status of API.md's table."""
import pytest
from nameko.exceptions import RemoteError, deserialize, serialize

from gateway_http.errors import app_error_response, status_for
from shared.errors import (
    AppError, BadRequest, Conflict, Forbidden, GatewayError, NotFound, PayloadTooLarge, PaymentDeclined, RateLimited,
    Unauthorized, ValidationFailed,
)


@pytest.mark.parametrize("error_cls, status, code", [
    (BadRequest, 400, "BAD_REQUEST"),
    (Unauthorized, 401, "UNAUTHORIZED"),
    (PaymentDeclined, 402, "PAYMENT_DECLINED"),
    (Forbidden, 403, "FORBIDDEN"),
    (NotFound, 404, "NOT_FOUND"),
    (Conflict, 409, "CONFLICT"),
    (PayloadTooLarge, 413, "PAYLOAD_TOO_LARGE"),
    (ValidationFailed, 422, "VALIDATION_FAILED"),
    (RateLimited, 429, "RATE_LIMITED"),
    (GatewayError, 502, "GATEWAY_ERROR"),
])
def test_each_error_type_has_its_status_and_code(error_cls, status, code):
    error = error_cls()
    assert status_for(error) == status
    assert error.error_code == code


def test_a_subclass_inherits_its_parents_status():
    class EmailTaken(Conflict):
        code = "EMAIL_TAKEN"

    assert status_for(EmailTaken()) == 409


def test_an_untyped_error_is_a_500():
    assert status_for(AppError()) == 500
    assert status_for(RuntimeError()) == 500


def test_errors_survive_the_rpc_round_trip_as_types_with_their_details():
    sent = ValidationFailed("Bad.", details={"email": ["Not an email."]}, code="EMAIL_FORMAT")
    received = deserialize(serialize(sent))
    assert type(received) is ValidationFailed
    assert (received.message, received.details, received.error_code) == ("Bad.", {"email": ["Not an email."]},
                                                                          "EMAIL_FORMAT")


def test_unregistered_exceptions_still_arrive_as_remote_errors():
    assert isinstance(deserialize(serialize(KeyError("x"))), RemoteError)


def test_the_error_body_has_the_api_shape():
    response = app_error_response(Conflict("Taken.", code="EMAIL_TAKEN"))
    assert response.status_code == 409
    assert response.get_json() == {"error": {"code": "EMAIL_TAKEN", "message": "Taken.", "details": {}}}


def test_rate_limited_answers_carry_retry_after():
    response = app_error_response(RateLimited(details={"retry_after": 30}))
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "30"


def test_details_keep_their_types_across_rpc():
    """nameko stringifies exception args it does not know; details must come back as they were sent."""
    details = {"retry_after": 42, "fields": {"amount": [1, 2]}, "ok": True, "none": None}
    rebuilt = deserialize(serialize(RateLimited("Slow down.", details=details)))
    assert type(rebuilt) is RateLimited
    assert rebuilt.details == details
    assert rebuilt.message == "Slow down."
    response = app_error_response(rebuilt)
    assert response.headers["Retry-After"] == "42"
    assert response.get_json()["error"]["details"]["retry_after"] == 42
