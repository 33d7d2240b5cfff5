"""Identifiers shaped like Cashfree's: numeric strings for its own references (cf_*), opaque
tokens for sessions, UUIDs for webhook idempotency keys.

Numeric references are random rather than counted, so that an adapter whose database outlives a
restarted sandbox never sees an old cf_payment_id handed out again.
"""
import secrets
import string
import uuid

_ALPHABET = string.ascii_letters + string.digits


def numeric_id(taken=(), digits: int = 10) -> str:
    """A random `digits`-long decimal string not in `taken`."""
    while True:
        candidate = str(secrets.randbelow(9 * 10 ** (digits - 1)) + 10 ** (digits - 1))
        if candidate not in taken:
            return candidate


def random_token(length: int = 16) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def random_digits(length: int) -> str:
    return "".join(secrets.choice(string.digits) for _ in range(length))


def session_id() -> str:
    return "sub_session_" + random_token(32)


def new_uuid() -> str:
    return str(uuid.uuid4())
