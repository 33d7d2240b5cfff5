"""Cashfree's x-idempotency-key: the first successful response to a key is the answer for that key.

The claiming and replaying is sandbox_kit.idempotency's; these are Cashfree's rules. A key is bound
to one request: the same method, path and body (compared as canonical JSON, so key order and 10
vs 10.00 do not matter) replays the stored response with `x-idempotency-replayed: true`; anything
else under that key is an idempotency_error (422, the status the OpenAPI document gives
IdempotencyError), and so is a second request while the first is still running. Only 200s are
kept: after an error the key is released and the client may send the request again under it.
"""
from decimal import Decimal
from typing import Optional

from services.sandbox_kit import idempotency
from services.sandbox_kit.idempotency import Record

from .encoding import dumps
from .errors import idempotency as idempotency_error
from .store import Store


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
    return idempotency.claim(store, key, Record(method, path, canonical(body), request_id), _refuse)


def _refuse(key: str, earlier: Record, new: Record) -> None:
    if (earlier.method, earlier.path, earlier.request) != (new.method, new.path, new.request):
        raise idempotency_error(f"x-idempotency-key {key} was already used with a different request; use a new key "
                                "for a different request")
    if earlier.status is None:
        raise idempotency_error(f"a request with x-idempotency-key {key} is still in progress; retry later",
                                code="request_in_progress")


def settle(store: Store, key: str, status: int, response: bytes) -> None:
    """Remember a 200 for replays; release the key after anything else."""
    idempotency.settle(store, key, status, response, keep=status == 200)
