"""Injected failures, so tests can show what the adapter does when Cashfree misbehaves.

error_500: answer 500 at once without doing anything. timeout: wait, then 500, without doing
anything (the client has usually given up). create_then_timeout: do the work and store the
idempotent response, then wait before answering: the client gives up although the object exists,
and its retry with the same x-idempotency-key must get that object rather than a 409 duplicate.
Paths are full request paths (`/pg/subscriptions`) and may use `*` wildcards
(`/pg/subscriptions/*/manage`).
"""
from decimal import Decimal
from fnmatch import fnmatchcase
from typing import Optional

from .store import Store

KINDS = ("error_500", "timeout", "create_then_timeout")


class FaultSpecError(ValueError):
    pass


def add(store: Store, spec: dict) -> dict:
    fault = {
        "method": str(spec.get("method", "POST")).upper(),
        "path": spec.get("path"),
        "kind": spec.get("kind"),
        "times": spec.get("times", 1),
        "delay_seconds": spec.get("delay_seconds", 30),
    }
    if not isinstance(fault["path"], str) or not fault["path"].startswith("/"):
        raise FaultSpecError("path must be an absolute request path such as /pg/subscriptions")
    if fault["kind"] not in KINDS:
        raise FaultSpecError(f"kind must be one of {', '.join(KINDS)}")
    if isinstance(fault["times"], bool) or not isinstance(fault["times"], int) or fault["times"] < 1:
        raise FaultSpecError("times must be a positive integer")
    delay = fault["delay_seconds"]
    if isinstance(delay, bool) or not isinstance(delay, (int, float, Decimal)) or delay < 0:
        raise FaultSpecError("delay_seconds must be a non-negative number")
    fault["delay_seconds"] = float(delay)
    with store.lock:
        store.faults.append(fault)
    return dict(fault)


def clear(store: Store) -> None:
    with store.lock:
        store.faults.clear()


def take(store: Store, method: str, path: str) -> Optional[dict]:
    """The first fault matching this request, used up by one; None when the request runs normally."""
    with store.lock:
        for fault in store.faults:
            if fault["method"] == method and fnmatchcase(path, fault["path"]):
                fault["times"] -= 1
                if fault["times"] == 0:
                    store.faults.remove(fault)
                return dict(fault)
    return None
