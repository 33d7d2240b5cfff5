"""Optional persistence: the sandbox remembers its objects across restarts, as Stripe does.

The portal keeps the ids Stripe gave it (customers, prices, subscriptions) in its database, so a
sandbox that forgot them on every `make up` would answer "No such price" to ids it handed out
itself. With a state file (SandboxConfig.state_file, STRIPE_SANDBOX_STATE_FILE) the store is
loaded from it at start and saved to it after every change and at shutdown.

What is saved (file format FORMAT_VERSION): every object as served and what Stripe keeps private
about it (a session's line items, a subscription's pending proration lines), the creation order
that breaks ties between equal `created`, the events with the exact bodies their deliveries sent
and their delivery records, the clock offset, and the idempotency records of finished requests (a
retry after a restart replays the original answer). Not saved: the request log (a diagnostic of
one run), in-progress idempotency claims, injected faults and the paused flag (test switches that
must never outlive the run that set them). Webhook deliveries still pending at shutdown are not
resumed after a restart: those events stay listed (GET /v1/events, pending_webhooks as they were)
for reconciliation, as a lost webhook would.

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
from typing import Callable, Optional

from .idempotency import Record
from .store import Store

log = logging.getLogger(__name__)

FORMAT = "stripe-sandbox-state"
FORMAT_VERSION = 1
SAVE_INTERVAL = 0.2  # seconds: a burst of changes is one write


class StateError(ValueError):
    """The file's content is not a state this version can restore."""


# what is saved, and restoring it

def snapshot(store: Store) -> dict:
    """The persistent part of the store (live references: serialise before releasing the lock)."""
    return {
        "clock_offset": store.clock_offset,
        "objects": store.objects,
        "private": store.private,
        "sequence": store._sequence,
        "event_ids": store.event_ids,
        "event_bodies": store.event_bodies,
        "deliveries": store.deliveries,
        "idempotency": {key: {"method": record.method, "path": record.path, "params": record.params,
                              "request_id": record.request_id, "status": record.status,
                              "body": record.body.decode("utf-8")}
                        for key, record in store.idempotency.items() if record.status is not None},
    }


def restore(store: Store, state: dict) -> None:
    """Replace the store's persistent part by `state`, all or nothing (StateError if it does not fit)."""
    try:
        clock_offset = state["clock_offset"]
        objects, private, sequence = _dict(state, "objects"), _dict(state, "private"), _dict(state, "sequence")
        event_ids, bodies, deliveries = list(state["event_ids"]), _dict(state, "event_bodies"), _dict(
            state, "deliveries")
        if not isinstance(clock_offset, int):
            raise StateError("clock_offset is not an integer")
        for object_id, obj in objects.items():
            if not isinstance(obj, dict) or obj.get("id") != object_id or not isinstance(obj.get("object"), str):
                raise StateError(f"object {object_id!r} is not a Stripe object")
        for event_id in event_ids:
            if event_id not in objects or not isinstance(bodies.get(event_id), str):
                raise StateError(f"event {event_id!r} has no object or body")
            # Delivery records come back as they were; deliveries still pending at shutdown are not
            # resumed (their threads died with the old process): the event stays listed for reconciliation.
            deliveries.setdefault(event_id, [])
        order = sorted(objects, key=lambda object_id: (sequence.get(object_id, float("inf"))))
        sequence = {object_id: position for position, object_id in enumerate(order)}  # gap-free, complete
        idempotency = {key: Record(method=entry["method"], path=entry["path"], params=entry["params"],
                                   request_id=entry["request_id"], status=int(entry["status"]),
                                   body=entry["body"].encode("utf-8"))
                       for key, entry in _dict(state, "idempotency").items()}
    except StateError:
        raise
    except Exception as exc:  # any other misfit (a missing key, a wrong type) is the same verdict
        raise StateError(f"{type(exc).__name__}: {exc}") from None
    with store.lock:
        store.clock_offset = clock_offset
        store.objects, store.private = objects, private
        store._sequence = sequence
        store.reset_counter(len(sequence))
        store.event_ids, store.event_bodies, store.deliveries = event_ids, bodies, deliveries
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
                 encode: Callable[[dict], str] = json.dumps, decode: Callable[[str], object] = json.loads):
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
            log.info("Stripe sandbox state file %s does not exist yet: starting empty", self.path)
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
        log.info("Stripe sandbox state loaded from %s: %d objects, of which %d events", self.path,
                 len(self.store.objects), len(self.store.event_ids))
        return True

    def _set_aside(self, problem: Exception) -> None:
        aside = f"{self.path}.unreadable-{time.strftime('%Y%m%dT%H%M%S')}"
        try:
            os.replace(self.path, aside)
            where = f"moved to {aside}"
        except OSError as exc:
            where = f"could not be moved aside ({exc}) and will be overwritten"
        log.warning("Stripe sandbox state file %s is unusable (%s): starting empty; the file %s",
                    self.path, problem, where)

    # saving

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="stripe-sandbox-state", daemon=True)
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
            log.exception("Stripe sandbox state could not be saved to %s", self.path)

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
                log.exception("Stripe sandbox state could not be saved to %s", self.path)

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
                log.warning("Stripe sandbox state could not be saved to %s: %s", self.path, exc)
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
