"""Optional persistence: the sandbox remembers its objects across restarts, as Cashfree does.

The portal keeps the ids it used and Cashfree gave it (plans, subscriptions, cf_payment_ids) in
its database, so a sandbox that forgot them on every `make up` would answer "not found" to its own
references. With a state file (SandboxConfig.state_file, CASHFREE_SANDBOX_STATE_FILE) the store
is loaded from it at start and saved to it after every change and at shutdown.

What is saved (file format FORMAT_VERSION): plans and subscriptions as served, what Cashfree keeps
private about a subscription (its payments, whether its checkout session is still open, the
allowed methods, the next charge time), checkout sessions, payments, every numeric cf_* reference
handed out (so none is handed out twice), the events with the exact bodies their deliveries sent,
their status and delivery records, the clock offset, and the idempotency records of successful
requests (a retry after a restart replays the original answer). Amounts stay exact: a Decimal is
written as {"__decimal__": "1499.00"}. Not saved: the request log (a diagnostic of one run),
in-progress idempotency claims, injected faults and the paused flag (test switches that must never
outlive the run that set them). Webhook deliveries still pending at shutdown are not resumed after
a restart: those events stay listed (GET /_sandbox/events, status "pending") and can be sent again
with POST /_sandbox/webhooks/{event_id}/redeliver.

Writes are cheap and atomic: a change only sets a flag; one writer thread serialises the store
under its lock at most every SAVE_INTERVAL seconds, writes outside the lock to a temporary file in
the same folder, fsyncs it and renames it over the old one, so a crash leaves the previous state or
the new one, never half of each. A file that is unreadable, not JSON, or not this format and
version is moved aside (<file>.unreadable-<time>) with a warning and the sandbox starts empty: a
mistyped path never destroys another program's file, and a corrupt file never stops the sandbox.
"""
import json
import logging
import os
import secrets
import threading
import time
from decimal import Decimal
from typing import Callable, Optional

from .idempotency import Record
from .store import Store

log = logging.getLogger(__name__)

FORMAT = "cashfree-sandbox-state"
FORMAT_VERSION = 1
SAVE_INTERVAL = 0.2  # seconds: a burst of changes is one write


class StateError(ValueError):
    """The file's content is not a state this version can restore."""


# what is saved, and restoring it

DECIMAL = "__decimal__"


def encode(document: dict) -> str:
    return json.dumps(document, default=_tag)


def decode(text: str):
    return json.loads(text, object_hook=_untag)


def _tag(value):
    if isinstance(value, Decimal):
        return {DECIMAL: str(value)}  # str keeps the exponent: 1499.00 comes back as 1499.00
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _untag(obj: dict):
    if len(obj) == 1 and DECIMAL in obj:
        return Decimal(obj[DECIMAL])
    return obj


def snapshot(store: Store) -> dict:
    """The persistent part of the store (live references: serialise before releasing the lock)."""
    return {
        "clock_offset": store.clock_offset,
        "plans": store.plans,
        "subscriptions": store.subscriptions,
        "private": store.private,
        "sessions": store.sessions,
        "payments": store.payments,
        "cf_ids": sorted(store.cf_ids),
        "events": store.events,
        "event_ids": store.event_ids,
        "deliveries": store.deliveries,
        "idempotency": {key: {"method": record.method, "path": record.path, "body": record.body,
                              "request_id": record.request_id, "status": record.status,
                              "response": record.response.decode("utf-8")}
                        for key, record in store.idempotency.items() if record.status is not None},
    }


def restore(store: Store, state: dict) -> None:
    """Replace the store's persistent part by `state`, all or nothing (StateError if it does not fit)."""
    try:
        clock_offset = state["clock_offset"]
        if isinstance(clock_offset, bool) or not isinstance(clock_offset, int):
            raise StateError("clock_offset is not an integer")
        plans, subscriptions = _dict(state, "plans"), _dict(state, "subscriptions")
        private, sessions, payments = _dict(state, "private"), _dict(state, "sessions"), _dict(state, "payments")
        cf_ids = set(state["cf_ids"])
        events, event_ids, deliveries = _dict(state, "events"), list(state["event_ids"]), _dict(state, "deliveries")
        for subscription_id, subscription in subscriptions.items():
            if not isinstance(subscription, dict) or subscription.get("subscription_id") != subscription_id:
                raise StateError(f"subscription {subscription_id!r} is not a subscription")
            facts = private[subscription_id]
            if any(payment_id not in payments for payment_id in facts["payments"]):
                raise StateError(f"subscription {subscription_id!r} names a payment that is not there")
        for session_id, subscription_id in sessions.items():
            if subscription_id not in subscriptions:
                raise StateError(f"session {session_id!r} belongs to no subscription")
        for event_id in event_ids:
            event = events[event_id]
            if not isinstance(event["body"], str) or not isinstance(event["delivery_runs"], int):
                raise StateError(f"event {event_id!r} has no body")
            # Delivery records come back as they were; deliveries still pending at shutdown are not
            # resumed (their threads died with the old process): the event stays listed for reconciliation.
            deliveries.setdefault(event_id, [])
        idempotency = {key: Record(method=entry["method"], path=entry["path"], body=entry["body"],
                                   request_id=entry["request_id"], status=int(entry["status"]),
                                   response=entry["response"].encode("utf-8"))
                       for key, entry in _dict(state, "idempotency").items()}
    except StateError:
        raise
    except Exception as exc:  # any other misfit (a missing key, a wrong type) is the same verdict
        raise StateError(f"{type(exc).__name__}: {exc}") from None
    with store.lock:
        store.clock_offset = clock_offset
        store.plans, store.subscriptions, store.private = plans, subscriptions, private
        store.sessions, store.payments, store.cf_ids = sessions, payments, cf_ids
        store.events, store.event_ids, store.deliveries = events, event_ids, deliveries
        store.idempotency = idempotency


def _dict(state: dict, name: str) -> dict:
    value = state[name]
    if not isinstance(value, dict):
        raise StateError(f"{name} is not an object")
    return value


# the file

class StateFile:
    """Keeps one store and one JSON file in step: `load()` before serving, `start()`, `stop()` at the end."""

    def __init__(self, path: str, store: Store, *, interval: float = SAVE_INTERVAL,
                 encode: Callable[[dict], str] = encode, decode: Callable[[str], object] = decode):
        self.path = os.path.abspath(path)
        self.store = store
        self.interval = interval
        self._encode = encode
        self._decode = decode
        self._dirty = threading.Event()
        self._stopping = threading.Event()
        self._write_lock = threading.Lock()  # one write at a time, so an older state never lands last
        self._last_text: Optional[str] = None  # what the file holds, to skip writes that change nothing
        self._last_write = 0.0
        self._thread: Optional[threading.Thread] = None

    # loading

    def load(self) -> bool:
        """Restore the store from the file if it holds a state of this version; True if it did."""
        if not os.path.exists(self.path):
            log.info("Cashfree sandbox state file %s does not exist yet: starting empty", self.path)
            return False
        try:
            with open(self.path, "r", encoding="utf-8") as file:
                text = file.read()
            document = self._decode(text)
            if not isinstance(document, dict) or document.get("format") != FORMAT:
                raise StateError(f"not a {FORMAT} file")
            if document.get("version") != FORMAT_VERSION:
                raise StateError(f"version {document.get('version')!r}, this sandbox reads {FORMAT_VERSION}")
            if not isinstance(document.get("state"), dict):
                raise StateError("no state object")
            restore(self.store, document["state"])
        except Exception as exc:  # unreadable, not JSON, foreign, another version, or not restorable
            self._set_aside(exc)
            return False
        with self.store.lock:
            self._last_text = self._render()
        log.info("Cashfree sandbox state loaded from %s: %d plans, %d subscriptions, %d events", self.path,
                 len(self.store.plans), len(self.store.subscriptions), len(self.store.event_ids))
        return True

    def _set_aside(self, problem: Exception) -> None:
        aside = f"{self.path}.unreadable-{time.strftime('%Y%m%dT%H%M%S')}"
        try:
            os.replace(self.path, aside)
            where = f"moved to {aside}"
        except OSError as exc:
            where = f"could not be moved aside ({exc}) and will be overwritten"
        log.warning("Cashfree sandbox state file %s is unusable (%s): starting empty; the file %s",
                    self.path, problem, where)

    # saving

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="cashfree-sandbox-state", daemon=True)
        self._thread.start()

    def changed(self) -> None:
        """The store may have changed (called with or without its lock held): save soon."""
        self._dirty.set()

    def stop(self) -> None:
        """Stop the writer and save the final state. Changes after this are not saved."""
        self._stopping.set()
        self._dirty.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            self.save()
        except Exception:  # stopping must finish whatever the store holds
            log.exception("Cashfree sandbox state could not be saved to %s", self.path)

    def _run(self) -> None:
        while True:
            self._dirty.wait()
            if self._stopping.is_set():
                return
            wait = self._last_write + self.interval - time.monotonic()
            if wait > 0 and self._stopping.wait(wait):
                return  # stop() saves
            self._dirty.clear()  # changes from here on set it again and are saved next round
            try:
                self.save()
            except Exception:  # never let the writer die: the next change tries again
                log.exception("Cashfree sandbox state could not be saved to %s", self.path)

    def save(self) -> bool:
        """Write the store's state now if it differs from the file's; True if it wrote."""
        with self._write_lock:
            with self.store.lock:
                text = self._render()  # under the lock: a consistent state
            self._last_write = time.monotonic()
            if text == self._last_text:
                return False
            try:
                _write_atomically(self.path, text)
            except OSError as exc:
                log.warning("Cashfree sandbox state could not be saved to %s: %s", self.path, exc)
                return False
            self._last_text = text
            return True

    def _render(self) -> str:
        return self._encode({"format": FORMAT, "version": FORMAT_VERSION, "state": snapshot(self.store)})


def _write_atomically(path: str, text: str) -> None:
    """A temporary file in the same folder, fsynced, then renamed over `path`."""
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    temporary = f"{path}.{secrets.token_hex(6)}.tmp"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask decides, as for any file
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
    if hasattr(os, "O_DIRECTORY"):  # make the rename itself durable (POSIX)
        try:
            directory = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        except OSError:
            pass
