"""Typed errors that cross RPC as types.

nameko serialises an exception as its import path plus `args`; a caller that has the same path
in `nameko.exceptions.registry` gets the real class back instead of `RemoteError`. Every subclass
registers itself, so `gateway_http` can catch `NotFound` raised three services away, and the
error's code, message and details survive the trip (they are its `args`). nameko turns every
argument that is not a string into text on the way (a number of seconds would arrive as "42"), so
the details travel as one JSON string and are read back with their types.

The HTTP status of each class lives in gateway_http's table, not here.
"""
import json

from nameko.exceptions import get_module_path, registry


class AppError(Exception):
    """An expected failure with a stable machine code and a safe human message."""

    code = "ERROR"
    default_message = "Something went wrong."

    def __init__(self, message=None, details=None, code=None):
        # A str is details already encoded: the error being rebuilt from its args after an RPC.
        encoded = details if isinstance(details, str) else json.dumps(details or {}, default=str)
        super().__init__(message or self.default_message, encoded, code or self.code)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        registry[get_module_path(cls)] = cls

    @property
    def message(self):
        return self.args[0]

    @property
    def details(self):
        return json.loads(self.args[1])

    @property
    def error_code(self):
        return self.args[2]

    def to_dict(self):
        return {"code": self.error_code, "message": self.message, "details": self.details}


registry[get_module_path(AppError)] = AppError


class BadRequest(AppError):
    code = "BAD_REQUEST"
    default_message = "The request could not be read."


class Unauthorized(AppError):
    code = "UNAUTHORIZED"
    default_message = "Sign in to continue."


class Forbidden(AppError):
    code = "FORBIDDEN"
    default_message = "Your role does not allow this."


class NotFound(AppError):
    code = "NOT_FOUND"
    default_message = "Not found."


class Conflict(AppError):
    code = "CONFLICT"
    default_message = "This conflicts with the current state."


class PayloadTooLarge(AppError):
    code = "PAYLOAD_TOO_LARGE"
    default_message = "The request body is too large."


class ValidationFailed(AppError):
    """`details` maps each bad field to a list of messages (marshmallow's shape)."""

    code = "VALIDATION_FAILED"
    default_message = "Some fields are invalid."


class RateLimited(AppError):
    code = "RATE_LIMITED"
    default_message = "Too many requests; try again later."


class GatewayError(AppError):
    """The payment gateway failed or timed out. Adapters raise only this, never SDK errors."""

    code = "GATEWAY_ERROR"
    default_message = "The payment gateway did not answer; nothing was charged. Try again."


class PaymentDeclined(GatewayError):
    """The gateway tried the payer's saved payment method and it was declined (e.g. the proration of a
    plan change): nothing changed, and the payer may try again with another card. A GatewayError, so
    adapters still raise only that family; its own status (402) in gateway_http's table."""

    code = "PAYMENT_DECLINED"
    default_message = "The payment was declined; nothing changed."


# Every expected error: entrypoints list these so nameko does not log them as crashes.
EXPECTED_ERRORS = (AppError,)
