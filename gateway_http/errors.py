"""The one table from error type to HTTP status (API.md "status" table), and the error body."""
import json

from werkzeug.wrappers import Response

from shared.errors import (
    AppError, BadRequest, Conflict, Forbidden, GatewayError, NotFound, PayloadTooLarge, PaymentDeclined,
    RateLimited, Unauthorized, ValidationFailed,
)

STATUS_BY_ERROR = {
    BadRequest: 400,
    Unauthorized: 401,
    PaymentDeclined: 402,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    PayloadTooLarge: 413,
    ValidationFailed: 422,
    RateLimited: 429,
    GatewayError: 502,
}


def status_for(error):
    """The status of the nearest class in the error's MRO that the table names (500 if none)."""
    for cls in type(error).__mro__:
        if cls in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[cls]
    return 500


def json_response(status, body=None, headers=None):
    if body is None:
        return Response(status=status, headers=headers)
    return Response(json.dumps(body), status=status, headers=headers, mimetype="application/json")


def error_response(status, code, message, details=None, headers=None):
    return json_response(status, {"error": {"code": code, "message": message, "details": details or {}}}, headers)


def app_error_response(error: AppError):
    headers, details = {}, error.details
    if isinstance(error, RateLimited) and "retry_after" in details:
        headers["Retry-After"] = str(details["retry_after"])
    return error_response(status_for(error), error.error_code, error.message, details, headers)
