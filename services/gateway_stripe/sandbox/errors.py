"""Stripe's error body and status codes, raised anywhere and rendered in one place (app.py).

The SDK picks its exception class from the HTTP status and `error.type`, so getting these right
is what makes `stripe.InvalidRequestError`, `stripe.IdempotencyError` etc. appear in the adapter.
"""
from typing import Optional


class StripeError(Exception):
    def __init__(self, status: int, type_: str, message: str, code: Optional[str] = None,
                 param: Optional[str] = None, headers: Optional[dict] = None):
        super().__init__(message)
        self.status = status
        self.type = type_
        self.message = message
        self.code = code
        self.param = param
        self.headers = headers or {}

    def body(self, request_id: Optional[str] = None) -> dict:
        error = {"type": self.type, "message": self.message}
        if self.code:
            error["code"] = self.code
            error["doc_url"] = f"https://stripe.com/docs/error-codes/{self.code.replace('_', '-')}"
        if self.param:
            error["param"] = self.param
        if request_id:
            error["request_log_url"] = f"https://dashboard.stripe.com/test/logs/{request_id}"
        return {"error": error}


def invalid(message: str, param: Optional[str] = None, code: Optional[str] = None) -> StripeError:
    return StripeError(400, "invalid_request_error", message, code=code, param=param)


def missing_param(param: str) -> StripeError:
    return invalid(f"Missing required param: {param}.", param=param, code="parameter_missing")


def no_such(kind: str, object_id: str, param: str = "id") -> StripeError:
    return StripeError(404, "invalid_request_error", f"No such {kind}: '{object_id}'",
                       code="resource_missing", param=param)


def unrecognized_url(method: str, path: str) -> StripeError:
    return StripeError(404, "invalid_request_error",
                       f"Unrecognized request URL ({method}: {path}). Please see https://stripe.com/docs "
                       "or we can help at https://support.stripe.com/.")


def unauthenticated(key: Optional[str]) -> StripeError:
    if not key:
        return StripeError(401, "invalid_request_error",
                           "You did not provide an API key. You need to provide your API key in the "
                           "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY').")
    shown = key[:8] + "*" * max(len(key) - 12, 4) + key[-4:] if len(key) > 12 else "*" * len(key)
    return StripeError(401, "invalid_request_error", f"Invalid API Key provided: {shown}")


def idempotency(message: str, status: int = 400, code: Optional[str] = None) -> StripeError:
    return StripeError(status, "idempotency_error", message, code=code)


def api_error(message: str = "An unknown error occurred while processing your request.") -> StripeError:
    return StripeError(500, "api_error", message)
