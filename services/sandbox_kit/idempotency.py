"""Idempotent requests: one key, one piece of work, and its answer replayed to every retry.

The key is claimed under the store lock before the work starts, so two concurrent requests with
the same key can never both do the work. What the gateway decides (its idempotency.py): how a
request is written for comparison, which error a mismatched or still-running key gets, and which
answers are kept (the others release the key, so the client may fix the request and send it
again under the same key). Finished records are saved with the state file (`saved`, `restored`),
so a retry after a restart still replays the original answer; claims still in progress are not.
"""
from dataclasses import dataclass
from typing import Callable, Optional

from .store import SandboxStore


@dataclass
class Record:
    method: str
    path: str
    request: str  # canonical JSON of what was sent, to tell a retry from another request
    request_id: str
    status: Optional[int] = None  # None while the first request is still running
    response: Optional[bytes] = None  # the answer replayed to retries


def claim(store: SandboxStore, key: str, new: Record,
          refuse: Callable[[str, Record, Record], None]) -> Optional[Record]:
    """None: this request owns the key and must do the work. A Record: replay its response.
    `refuse(key, earlier, new)` raises the gateway's error when the key's earlier use does not
    allow this request (another request, or the first one still running); it returns otherwise."""
    with store.lock:
        earlier = store.idempotency.get(key)
        if earlier is None:
            store.idempotency[key] = new
            return None
        refuse(key, earlier, new)
        return earlier


def settle(store: SandboxStore, key: str, status: int, response: bytes, *, keep: bool) -> None:
    """Remember the response for replays (`keep`), or release the key."""
    with store.lock:
        if keep:
            record = store.idempotency[key]
            record.status, record.response = status, response
        else:
            store.idempotency.pop(key, None)
    store.changed()  # finished records are saved with the state


def saved(records: dict, *, request_field: str, response_field: str) -> dict:
    """The finished records as JSON for the state file; the gateway's file format names the fields
    that hold the request and the response."""
    return {key: {"method": record.method, "path": record.path, request_field: record.request,
                  "request_id": record.request_id, "status": record.status,
                  response_field: record.response.decode("utf-8")}
            for key, record in records.items() if record.status is not None}


def restored(entries: dict, *, request_field: str, response_field: str) -> dict:
    """The records `saved` wrote, back (any misfit raises)."""
    return {key: Record(method=entry["method"], path=entry["path"], request=entry[request_field],
                        request_id=entry["request_id"], status=int(entry["status"]),
                        response=entry[response_field].encode("utf-8"))
            for key, entry in entries.items()}
