"""Injected failures, so tests can show what an adapter does when its gateway misbehaves.

error_500: answer 500 at once without doing anything. timeout: wait, then 500, without doing
anything (the client has usually given up). create_then_timeout: do the work and store the
idempotent response, then wait before answering: the client gives up although the object exists,
and its retry with the same idempotency key must get that object rather than a second one. The
fault is met before the idempotency key is looked at, so with `times: n` each of the first n
matching requests waits: the first does the work, the retries within n replay its stored answer
and time out all the same (the work is still done once), and the first request after them gets
the replay at once.
Paths are full request paths and may use shell wildcards (`/v1/subscriptions/*`).

A fault is added through POST /_sandbox/faults (control.py); the gateway's control checks the
numbers in it, because what a JSON number is depends on how its control API parses bodies.
"""
import threading
from fnmatch import fnmatchcase
from typing import Callable, Optional

from .store import SandboxStore

KINDS = ("error_500", "timeout", "create_then_timeout")


class FaultSpecError(ValueError):
    pass


def build(spec: dict, *, example_path: str) -> dict:
    """A fault from a control request's JSON, defaults filled in, its path and kind checked."""
    fault = {
        "method": str(spec.get("method", "POST")).upper(),
        "path": spec.get("path"),
        "kind": spec.get("kind"),
        "times": spec.get("times", 1),
        "delay_seconds": spec.get("delay_seconds", 30),
    }
    if not isinstance(fault["path"], str) or not fault["path"].startswith("/"):
        raise FaultSpecError(f"path must be an absolute request path such as {example_path}")
    if fault["kind"] not in KINDS:
        raise FaultSpecError(f"kind must be one of {', '.join(KINDS)}")
    return fault


def add(store: SandboxStore, fault: dict) -> dict:
    with store.lock:
        store.faults.append(fault)
    return dict(fault)


def listed(store: SandboxStore) -> list:
    with store.lock:
        return [dict(fault) for fault in store.faults]


def clear(store: SandboxStore) -> None:
    with store.lock:
        store.faults.clear()


def take(store: SandboxStore, method: str, path: str) -> Optional[dict]:
    """The first fault matching this request, used up by one; None when the request runs normally."""
    with store.lock:
        for fault in store.faults:
            if fault["method"] == method and fnmatchcase(path, fault["path"]):
                fault["times"] -= 1
                if fault["times"] == 0:
                    store.faults.remove(fault)
                return dict(fault)
    return None


def inject(store: SandboxStore, method: str, path: str, stopping: threading.Event,
           api_error: Callable[[str], Exception]) -> float:
    """Meet this API request's fault, if one is set, before any work is done: error_500 and timeout
    raise the gateway's 500 (timeout after waiting, cut short when the server stops);
    create_then_timeout returns how long to wait after the work, before answering (else 0)."""
    fault = take(store, method, path)
    if fault and fault["kind"] != "create_then_timeout":
        if fault["kind"] == "timeout":
            stopping.wait(fault["delay_seconds"])
        raise api_error("Injected fault: " + fault["kind"])
    return fault["delay_seconds"] if fault else 0.0
