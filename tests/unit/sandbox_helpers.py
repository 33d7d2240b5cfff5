"""What the gateway sandboxes' tests (test_stripe_sandbox.py, test_cashfree_sandbox.py) share:
the world around a sandbox, which is the same for both gateways.

FakeClock is the sandbox's notion of now, moved by the test. WebhookReceiver stands in for
gateway_http's /webhooks/<gateway> endpoint: a small local server that records every delivery
and answers with the statuses a test asks for; each test file subclasses it with how its
gateway's deliveries are verified, as the adapter verifies them.
"""
import json
import threading
import time
from typing import Optional

from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response


class FakeClock:
    """The sandbox's notion of now (whole seconds); tests move it to a known point of a period."""

    def __init__(self, start: Optional[float] = None):
        self.now = float(int(time.time())) if start is None else start

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += seconds


class QuietHandler(WSGIRequestHandler):
    def log_request(self, *args):
        pass


def event_type(delivery) -> str:
    return json.loads(delivery["body"])["type"]


class WebhookReceiver:
    """Records deliveries to PATH (the portal's webhook path for the gateway), answers as told."""

    PATH = "/webhooks"

    def __init__(self):
        self.deliveries = []  # {"body", "headers", "status", "at"} in arrival order
        self.answers = []  # statuses to answer next, then 200
        self._changed = threading.Condition()
        self._server = make_server("127.0.0.1", 0, self._app, threaded=True, request_handler=QuietHandler)
        self.url = f"http://127.0.0.1:{self._server.server_port}{self.PATH}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()

    def _app(self, environ, start_response):
        request = Request(environ)
        with self._changed:
            status = self.answers.pop(0) if self.answers else 200
            self.deliveries.append({"body": request.get_data(), "headers": dict(request.headers), "status": status,
                                    "at": time.monotonic()})
            self._changed.notify_all()
        return Response("ok" if status < 300 else "try again", status=status)(environ, start_response)

    def wait_until(self, condition, timeout=5.0):
        with self._changed:
            assert self._changed.wait_for(lambda: condition(self.deliveries), timeout), (
                f"webhooks not as expected after {timeout}s: {[event_type(d) for d in self.deliveries]}")

    def accepted_deliveries(self, *types, timeout=5.0):
        """Wait for accepted deliveries of these types (any order); then every accepted delivery so far."""
        def arrived(deliveries):
            return set(types) <= {event_type(d) for d in deliveries if d["status"] == 200}

        self.wait_until(arrived, timeout)
        return [delivery for delivery in self.deliveries if delivery["status"] == 200]

    def stop(self):
        self._server.shutdown()
        self._server.server_close()
