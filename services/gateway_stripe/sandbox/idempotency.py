"""Stripe's idempotent requests: the first response to a key is the answer for that key.

The claiming and replaying is sandbox_kit.idempotency's; these are Stripe's rules. A key is bound
to one endpoint and one set of parameters (compared as canonical JSON). A second request while
the first is still running is told the key is in use (409, as Stripe answers; the SDK retries
409s) and, once the first has finished, gets its stored response. Validation failures (4xx other
than 402) are not stored, as at Stripe, so the client may fix the request and send it again under
the same key.
"""
import json
from typing import Optional

from services.sandbox_kit import idempotency
from services.sandbox_kit.idempotency import Record

from .errors import idempotency as idempotency_error
from .store import Store


def claim(store: Store, key: str, method: str, path: str, params: dict, request_id: str) -> Optional[Record]:
    """None: this request owns the key and must do the work. A Record: replay its response."""
    return idempotency.claim(store, key, Record(method, path, json.dumps(params, sort_keys=True), request_id),
                             _refuse)


def _refuse(key: str, earlier: Record, new: Record) -> None:
    if (earlier.method, earlier.path) != (new.method, new.path):
        raise idempotency_error(f"Keys for idempotent requests can only be used for the same endpoint they were "
                                f"first used for ('{earlier.method} {earlier.path}' vs '{new.method} {new.path}'). "
                                "Try using a key other than '%s' if you meant to execute a different request." % key)
    if earlier.request != new.request:
        raise idempotency_error("Keys for idempotent requests can only be used with the same parameters they were "
                                f"first used with. Try using a key other than '{key}' if you meant to execute a "
                                "different request.")
    if earlier.status is None:
        raise idempotency_error("There is currently another in-progress request using this Idempotent Key (that "
                                "probably means you submitted twice, and the other request is still going through): "
                                f"{key}. Please try again later.", status=409, code="idempotency_key_in_use")


def settle(store: Store, key: str, status: int, body: bytes) -> None:
    """Remember the response for replays, or release the key if Stripe would not keep this one."""
    idempotency.settle(store, key, status, body, keep=not (400 <= status < 500 and status != 402))
