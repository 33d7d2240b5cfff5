"""The part of a sandbox's state that every sandbox keeps the same way, behind one lock.

One re-entrant lock is enough for a test double and makes every operation atomic: a handler takes
it for the whole operation (`with store.transaction():`), so two requests never interleave half
way. Events emitted inside a transaction are handed to the webhook sender only after the lock is
released, so delivery threads never wait on the operation that created their event. Whatever may
have changed something persistent calls `changed()`, which tells the state file (if any) to save.

A gateway's Store subclasses SandboxStore and adds its objects, how it finds them, and how it
emits events and records delivery attempts (those differ from gateway to gateway).
"""
import threading
from collections import deque
from contextlib import contextmanager
from typing import Callable, List, Optional


class SandboxStore:
    def __init__(self, clock: Callable[[], float], webhooks_enabled: bool = True):
        self.lock = threading.RLock()
        self._clock = clock
        self.clock_offset = 0  # seconds added by POST /_sandbox/clock, for demos of renewals and schedules
        self.webhooks_enabled = webhooks_enabled
        self.webhooks_paused = False  # attempts falling due are lost for good
        self.webhooks_failing = False  # attempts falling due fail unsent; the retries go on
        self.event_ids: List[str] = []  # creation order
        self.deliveries: dict = {}  # event id -> [attempt records]
        self.idempotency: dict = {}  # idempotency key -> sandbox_kit.idempotency.Record
        self.requests: deque = deque(maxlen=500)  # the API request log, for GET /_sandbox/requests
        self.timings: deque = deque(maxlen=20000)  # (method, path, ms) per request served (server.TimedApp)
        self.faults: list = []  # injected faults still to happen (sandbox_kit.faults)
        self._outbox: List[str] = []
        self._depth = 0
        self.on_events: Optional[Callable[[List[str]], None]] = None  # the webhook sender's enqueue
        self.on_change: Optional[Callable[[], None]] = None  # the StateFile's changed, when saving

    def changed(self) -> None:
        """Something persistent may have changed: the state file (if any) saves soon. Cheap; any thread."""
        if self.on_change:
            self.on_change()

    def now(self) -> int:
        return int(self._clock()) + self.clock_offset

    def send_after_transaction(self, event_id: str) -> None:
        """Hand this event to the webhook sender once the outermost transaction ends (call under the lock)."""
        self._outbox.append(event_id)

    @contextmanager
    def transaction(self):
        """Hold the lock for one whole operation; hand its events to the sender afterwards, and tell
        the state file (if any) that the store may have changed."""
        events: List[str] = []
        outermost = False
        try:
            with self.lock:
                self._depth += 1
                try:
                    yield self
                finally:
                    self._depth -= 1
                    if self._depth == 0:  # the outermost transaction flushes
                        outermost = True
                        events, self._outbox = self._outbox, []
        finally:
            if outermost:
                self.changed()
            if events and self.on_events:
                self.on_events(events)
