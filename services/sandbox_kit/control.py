"""The /_sandbox endpoints every sandbox has: health, faults, pausing webhooks, the event and
request logs, request timings and the clock. Not a gateway's API; no authentication; JSON in and
out.

A gateway's Control subclasses CommonControl, adds what its gateway does on its own (a payer
paying, a period ending, a charge falling due) and says how its control requests are read and
refused: `body` (the request's JSON object), `bad_request` (its 400), `check_fault_numbers` and
`advance_seconds` (what counts as a number depends on how it parses JSON). Handlers answer
(status, JSON-able body); the gateway's app renders them.
"""
from typing import Tuple

from werkzeug.wrappers import Request

from . import faults
from .store import SandboxStore

Answer = Tuple[int, object]


class CommonControl:
    FAULT_PATH_EXAMPLE: str  # a request path of the gateway's API, shown when a fault's path is not one

    def __init__(self, store: SandboxStore):
        self.store = store

    # what the gateway says

    def body(self, request: Request) -> dict:
        """The request's JSON object ({} when it has none), or the gateway's 400."""
        raise NotImplementedError

    def bad_request(self, message: str) -> Exception:
        """The gateway's 400 for a control request it refuses."""
        raise NotImplementedError

    def check_fault_numbers(self, fault: dict) -> None:
        """Refuse (FaultSpecError) a fault whose `times` or `delay_seconds` is not a number as the
        gateway reads them; may normalise them in place."""
        raise NotImplementedError

    def advance_seconds(self, body: dict) -> int:
        """POST /_sandbox/clock's advance_seconds, or the gateway's 400."""
        raise NotImplementedError

    # the endpoints

    def health(self, request: Request, **_) -> Answer:
        return 200, {"status": "ok"}

    def add_fault(self, request: Request, **_) -> Answer:
        try:
            fault = faults.build(self.body(request), example_path=self.FAULT_PATH_EXAMPLE)
            self.check_fault_numbers(fault)
        except faults.FaultSpecError as exc:
            raise self.bad_request(str(exc))
        fault = faults.add(self.store, fault)
        return 200, {"fault": fault, "faults": faults.listed(self.store)}

    def list_faults(self, request: Request, **_) -> Answer:
        return 200, {"faults": faults.listed(self.store)}

    def clear_faults(self, request: Request, **_) -> Answer:
        faults.clear(self.store)
        return 200, {"faults": []}

    def pause_webhooks(self, request: Request, **_) -> Answer:
        """{"mode": "drop"} (the default): deliveries falling due are lost for good. {"mode": "fail"}:
        they fail unsent, as if the portal were down, and are retried on the gateway's schedule."""
        mode = self.body(request).get("mode", "drop")
        if mode not in ("drop", "fail"):
            raise self.bad_request("mode must be 'drop' or 'fail'")
        with self.store.lock:
            self.store.webhooks_paused = mode == "drop"
            self.store.webhooks_failing = mode == "fail"
        return 200, {"paused": True, "mode": mode}

    def resume_webhooks(self, request: Request, **_) -> Answer:
        with self.store.lock:
            self.store.webhooks_paused = self.store.webhooks_failing = False
        return 200, {"paused": False}

    def events(self, request: Request, **_) -> Answer:
        """Every event, oldest first, each with its `delivery_attempts`: a JSON array."""
        return 200, self.store.events_with_attempts()

    def requests(self, request: Request, **_) -> Answer:
        """The last 500 API requests, oldest first, as a JSON array: what the adapter actually sent."""
        with self.store.lock:
            return 200, list(self.store.requests)

    def timings(self, request: Request, **_) -> Answer:
        """GET: how long the sandbox itself took over each request it served, oldest first
        ([{method, path, ms}], the last 20000); DELETE: forget them. Benchmarks show the gateway's
        share of a checkout apart from the portal's with it."""
        with self.store.lock:
            if request.method == "DELETE":
                self.store.timings.clear()
            return 200, [{"method": method, "path": path, "ms": ms} for method, path, ms in self.store.timings]

    def clock(self, request: Request, **_) -> Answer:
        """GET: the sandbox's now. POST {"advance_seconds": n}: move it forward (renewal and schedule demos)."""
        if request.method == "POST":
            advance = self.advance_seconds(self.body(request))
            with self.store.lock:
                self.store.clock_offset += advance
            self.store.changed()
        return 200, {"now": self.store.now(), "offset_seconds": self.store.clock_offset}


COMMON_ROUTES = [  # (method, path, CommonControl method); a gateway's control adds its own
    ("GET", "/_sandbox/health", "health"),
    ("POST", "/_sandbox/faults", "add_fault"),
    ("GET", "/_sandbox/faults", "list_faults"),
    ("DELETE", "/_sandbox/faults", "clear_faults"),
    ("POST", "/_sandbox/webhooks/pause", "pause_webhooks"),
    ("POST", "/_sandbox/webhooks/resume", "resume_webhooks"),
    ("GET", "/_sandbox/events", "events"),
    ("GET", "/_sandbox/requests", "requests"),
    ("GET", "/_sandbox/timings", "timings"),
    ("DELETE", "/_sandbox/timings", "timings"),
    ("GET", "/_sandbox/clock", "clock"),
    ("POST", "/_sandbox/clock", "clock"),
]
