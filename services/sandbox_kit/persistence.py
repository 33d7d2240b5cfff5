"""Optional persistence: a sandbox remembers its objects across restarts, as the real gateway does.

The portal keeps the ids a gateway gave it in its database, so a sandbox that forgot them on every
`make up` would answer "not found" to ids it handed out itself. With a state file (SandboxConfig.
state_file, <GATEWAY>_SANDBOX_STATE_FILE) the store is loaded from it at start and saved to it
after every change and at shutdown. What is saved is the gateway's to say (its persistence.py:
`snapshot` and `restore`); never saved are the request log (a diagnostic of one run), in-progress
idempotency claims, injected faults and the paused flag (test switches that must never outlive
the run that set them).

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

from .store import SandboxStore

SAVE_INTERVAL = 0.2  # seconds: a burst of changes is one write


class StateError(ValueError):
    """The file's content is not a state this version can restore."""


def dict_field(state: dict, name: str) -> dict:
    """state[name], which must be a JSON object (StateError otherwise)."""
    value = state[name]
    if not isinstance(value, dict):
        raise StateError(f"{name} is not an object")
    return value


class StateFile:
    """Keeps one store and one JSON file in step: `load()` before serving, `start()`, `stop()` at the end.

    A gateway subclasses it with its FORMAT and FORMAT_VERSION (a file of another format or
    version is set aside, never read), LABEL for log lines, and `snapshot`, `restore` and
    `summary`. The file holds {"format": FORMAT, "version": FORMAT_VERSION, "state": snapshot}."""

    FORMAT: str  # e.g. "stripe-sandbox-state"; also the writer thread's name
    FORMAT_VERSION: int
    LABEL: str  # e.g. "Stripe sandbox"
    log = logging.getLogger(__name__)  # a gateway's state file logs under its own module's name

    def __init__(self, path: str, store: SandboxStore, *, interval: float = SAVE_INTERVAL,
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

    # what the gateway says

    def snapshot(self) -> dict:
        """The persistent part of the store (called under its lock; live references are fine)."""
        raise NotImplementedError

    def restore(self, state: dict) -> None:
        """Replace the store's persistent part by `state`, all or nothing: check everything first, then
        assign. Raise StateError, or let any other exception out: a missing key or a wrong type is
        reported as a StateError too."""
        raise NotImplementedError

    def summary(self) -> str:
        """What was loaded, for the log line: "12 objects, of which 5 events"."""
        raise NotImplementedError

    # loading

    def load(self) -> bool:
        """Restore the store from the file if it holds a state of this version; True if it did."""
        if not os.path.exists(self.path):
            self.log.info("%s state file %s does not exist yet: starting empty", self.LABEL, self.path)
            return False
        try:
            with open(self.path, "r", encoding="utf-8") as file:
                text = file.read()
            document = self._decode(text)
            if not isinstance(document, dict) or document.get("format") != self.FORMAT:
                raise StateError(f"not a {self.FORMAT} file")
            if document.get("version") != self.FORMAT_VERSION:
                raise StateError(f"version {document.get('version')!r}, this sandbox reads {self.FORMAT_VERSION}")
            if not isinstance(document.get("state"), dict):
                raise StateError("no state object")
            self._restore(document["state"])
        except Exception as exc:  # unreadable, not JSON, foreign, another version, or not restorable
            self._set_aside(exc)
            return False
        with self.store.lock:
            self._last_text = self._render()
        self.log.info("%s state loaded from %s: %s", self.LABEL, self.path, self.summary())
        return True

    def _restore(self, state: dict) -> None:
        try:
            self.restore(state)
        except StateError:
            raise
        except Exception as exc:  # any other misfit (a missing key, a wrong type) is the same verdict
            raise StateError(f"{type(exc).__name__}: {exc}") from None

    def _set_aside(self, problem: Exception) -> None:
        aside = f"{self.path}.unreadable-{time.strftime('%Y%m%dT%H%M%S')}"
        try:
            os.replace(self.path, aside)
            where = f"moved to {aside}"
        except OSError as exc:
            where = f"could not be moved aside ({exc}) and will be overwritten"
        self.log.warning("%s state file %s is unusable (%s): starting empty; the file %s",
                         self.LABEL, self.path, problem, where)

    # saving

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.FORMAT, daemon=True)
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
            self.log.exception("%s state could not be saved to %s", self.LABEL, self.path)

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
                self.log.exception("%s state could not be saved to %s", self.LABEL, self.path)

    def save(self) -> bool:
        """Write the store's state now if it differs from the file's; True if it wrote."""
        with self._write_lock:
            with self.store.lock:
                text = self._render()  # under the lock: a consistent state
            self._last_write = time.monotonic()
            if text == self._last_text:
                return False
            try:
                write_atomically(self.path, text)
            except OSError as exc:
                self.log.warning("%s state could not be saved to %s: %s", self.LABEL, self.path, exc)
                return False
            self._last_text = text
            return True

    def _render(self) -> str:
        return self._encode({"format": self.FORMAT, "version": self.FORMAT_VERSION, "state": self.snapshot()})


def write_atomically(path: str, text: str) -> None:
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
