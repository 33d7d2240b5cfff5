"""Cashfree's x-idempotency-key: the first successful response to a key is the answer for that key.

A key is bound to one request: the same method, path and body (compared as canonical JSON, so key
order and 10 vs 10.00 do not matter) replays the stored response with `x-idempotency-replayed:
true`; anything else under that key is an idempotency_error (422, the status the OpenAPI document
gives IdempotencyError). The key is claimed under the store lock before the work starts, so two
concurrent requests with one key never both do the work. Only 200s are kept: after an error the
key is released and the client may send the request again under it.
"""
from dataclasses import dataclass
from decimal import Decimal
from typing import Optional

from .encoding import dumps
from .errors import idempotency
from .store import Store


@dataclass
class Record:
    method: str
    path: str
    body: str  # canonical JSON of the parsed body
    request_id: str
    status: Optional[int] = None
    response: Optional[bytes] = None


def canonical(body) -> str:
    return dumps(_normalised(body), sort_keys=True)


def _normalised(value):
    if isinstance(value, dict):
        return {key: _normalised(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_normalised(item) for item in value]
    if isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value)
    return value


def claim(store: Store, key: str, method: str, path: str, body, request_id: str) -> Optional[Record]:
    """None: this request owns the key and must do the work. A Record: replay its response."""
    text = canonical(body)
    with store.lock:
        record = store.idempotency.get(key)
        if record is None:
            store.idempotency[key] = Record(method, path, text, request_id)
            return None
        if (record.method, record.path) != (method, path) or record.body != text:
            raise idempotency(f"x-idempotency-key {key} was already used with a different request; use a new key "
                              "for a different request")
        if record.status is None:
            raise idempotency(f"a request with x-idempotency-key {key} is still in progress; retry later",
                              code="request_in_progress")
        return record


def settle(store: Store, key: str, status: int, response: bytes) -> None:
    """Remember a 200 for replays; release the key after anything else."""
    with store.lock:
        if status != 200:
            store.idempotency.pop(key, None)
        else:
            record = store.idempotency[key]
            record.status, record.response = status, response
    store.changed()  # finished records are saved with the state
