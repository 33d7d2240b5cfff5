"""Cashfree's error body `{"message", "code", "type"}` and its statuses, raised anywhere and
rendered in one place (app.py).

Statuses follow the OpenAPI document of version 2025-01-01: 400 BadRequestError, 401
AuthenticationError, 404 ApiError404, 409 ApiError409 (duplicate ids), 422 IdempotencyError
(the same x-idempotency-key with another request), 500 ApiError. Field errors use Cashfree's
wording, `<field> : is missing in the request` / `<field> : invalid value provided`, with the
field's dotted path in both the message and the code.
"""


class CashfreeError(Exception):
    def __init__(self, status: int, type_: str, message: str, code: str):
        super().__init__(message)
        self.status = status
        self.type = type_
        self.message = message
        self.code = code
        self.problems: list = []  # every schema violation found, for the request log

    def body(self) -> dict:
        return {"message": self.message, "code": self.code, "type": self.type}


def invalid(message: str, code: str = "request_failed") -> CashfreeError:
    return CashfreeError(400, "invalid_request_error", message, code)


def _shape_error(message: str, code: str) -> CashfreeError:
    """A request the API's rules for fields refuse: logged as a validation error (a business
    refusal such as cancelling a paid link is not one)."""
    error = invalid(message, code=code)
    error.problems = [message]
    return error


def missing(field: str) -> CashfreeError:
    return _shape_error(f"{field} : is missing in the request", f"{field}_missing")


def invalid_value(field: str, why: str = "") -> CashfreeError:
    return _shape_error(f"{field} : invalid value provided" + (f". {why}" if why else ""), f"{field}_invalid")


def not_found(kind: str, identifier: str) -> CashfreeError:
    return CashfreeError(404, "invalid_request_error", f"{kind} not found for id: {identifier}",
                         f"{kind}_not_found")


def duplicate(kind: str) -> CashfreeError:
    return CashfreeError(409, "invalid_request_error", f"{kind} with same id is already present",
                         f"{kind}_already_exists")


def bad_url() -> CashfreeError:
    return invalid("bad URL, please check API documentation")


def unauthenticated() -> CashfreeError:
    return CashfreeError(401, "authentication_error", "authentication Failed", "request_failed")


def idempotency(message: str, code: str = "request_invalid") -> CashfreeError:
    return CashfreeError(422, "idempotency_error", message, code)


def api_error(message: str = "internal Server Error") -> CashfreeError:
    return CashfreeError(500, "api_error", message, "internal_error")
