"""Stripe's idempotent requests: the first response to a key is the answer for that key.

The key is claimed under the store lock before the work starts, so two concurrent requests with
the same key can never both do the work: the second is told the key is in use (409, as Stripe
answers; the SDK retries 409s) and, once the first has finished, gets its stored response.
Validation failures (4xx other than 402) are not stored, as at Stripe, so the client may fix the
request and send it again under the same key.
"""
import json
from dataclasses import dataclass
from typing import Optional

from .errors import idempotency
from .store import Store


@dataclass
class Record:
    method: str
    path: str
    params: str  # canonical JSON of the parsed parameters
    request_id: str
    status: Optional[int] = None
    body: Optional[bytes] = None


def claim(store: Store, key: str, method: str, path: str, params: dict, request_id: str) -> Optional[Record]:
    """None: this request owns the key and must do the work. A Record: replay its response."""
    canonical = json.dumps(params, sort_keys=True)
    with store.lock:
        record = store.idempotency.get(key)
        if record is None:
            store.idempotency[key] = Record(method, path, canonical, request_id)
            return None
        if (record.method, record.path) != (method, path):
            raise idempotency(f"Keys for idempotent requests can only be used for the same endpoint they were first "
                              f"used for ('{record.method} {record.path}' vs '{method} {path}'). Try using a key "
                              "other than '%s' if you meant to execute a different request." % key)
        if record.params != canonical:
            raise idempotency("Keys for idempotent requests can only be used with the same parameters they were "
                              f"first used with. Try using a key other than '{key}' if you meant to execute a "
                              "different request.")
        if record.status is None:
            raise idempotency("There is currently another in-progress request using this Idempotent Key (that "
                              "probably means you submitted twice, and the other request is still going through): "
                              f"{key}. Please try again later.", status=409, code="idempotency_key_in_use")
        return record


def settle(store: Store, key: str, status: int, body: bytes) -> None:
    """Remember the response for replays, or release the key if Stripe would not keep this one."""
    with store.lock:
        if 400 <= status < 500 and status != 402:
            store.idempotency.pop(key, None)
        else:
            record = store.idempotency[key]
            record.status, record.body = status, body
    store.changed()  # finished records are saved with the state
