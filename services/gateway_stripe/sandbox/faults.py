"""Injected failures, so tests can show what the adapter does when Stripe misbehaves.

error_500: answer 500 at once without doing anything. timeout: wait, then 500, without doing
anything (the client has usually given up). create_then_timeout: do the work and store the
idempotent response, then wait before answering: the client gives up although the object exists,
and its retry with the same Idempotency-Key must get that object rather than a second one.
Paths may use shell wildcards (`/v1/subscriptions/*`).
"""
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
        raise FaultSpecError("path must be an absolute request path such as /v1/checkout/sessions")
    if fault["kind"] not in KINDS:
        raise FaultSpecError(f"kind must be one of {', '.join(KINDS)}")
    if not isinstance(fault["times"], int) or fault["times"] < 1:
        raise FaultSpecError("times must be a positive integer")
    if not isinstance(fault["delay_seconds"], (int, float)) or fault["delay_seconds"] < 0:
        raise FaultSpecError("delay_seconds must be a non-negative number")
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
