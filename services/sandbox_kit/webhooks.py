"""Webhook delivery as gateways do it: at least once, retried on a schedule, in no guaranteed order.

Each delivery has its own thread, so one slow or failing event never holds up another and
retries naturally reorder them, which is what a webhook consumer must cope with. Between attempts
the thread waits the gateway's retry delay (x retry_scale, so tests run the schedule in
milliseconds); stopping the sender ends every wait at once. While deliveries are paused
(POST /_sandbox/webhooks/pause), an attempt that falls due is dropped for good, the way a lost
webhook is lost: only reconciliation can find the event again. While they are failing
(POST /_sandbox/webhooks/pause with {"mode": "fail"}: the portal looks unreachable), each attempt
that falls due fails without being sent and the schedule goes on, so after resume the remaining
retries arrive late, after whatever reconciliation recovered in between.

A gateway's WebhookSender subclasses this one with its signing, headers and body, what counts as
delivered, and what it records of each attempt; `_retry` runs the schedule around its attempts.
"""
import logging
import threading
from typing import Callable, Sequence

from .store import SandboxStore


class WebhookSender:
    log = logging.getLogger(__name__)  # a gateway's sender logs under its own module's name

    def __init__(self, store: SandboxStore, url: str, secret: str, *, retry_delays: Sequence[float],
                 max_attempts: int, retry_scale: float = 1.0, timeout: float = 10.0):
        self.store = store
        self.url = url
        self.secret = secret
        self.retry_delays = tuple(retry_delays)  # seconds before attempts 2, 3, ...; the last one repeats
        self.max_attempts = max_attempts
        self.retry_scale = retry_scale
        self.timeout = timeout
        self._stopping = threading.Event()

    def stop(self) -> None:
        self._stopping.set()

    def _delay(self, attempt: int) -> float:
        return self.retry_delays[min(attempt - 2, len(self.retry_delays) - 1)] * self.retry_scale

    def _retry(self, event_id: str, attempt: Callable[[int, bool], bool], drop: Callable[[int], None],
               unreachable: Callable[[int, bool], None]) -> None:
        """Deliver one event (in its delivery thread): `attempt(number, last)` sends and records one
        try and says whether it was delivered; `drop(number)` records one that fell due while paused;
        `unreachable(number, last)` one that failed unsent while webhooks are failing."""
        for number in range(1, self.max_attempts + 1):
            if number > 1 and self._stopping.wait(self._delay(number)):
                return
            if self._stopping.is_set():
                return
            if self.store.webhooks_paused:
                drop(number)
                return
            if self.store.webhooks_failing:
                unreachable(number, number == self.max_attempts)
                continue
            if attempt(number, number == self.max_attempts):
                return
        self.log.warning("webhook %s gave up after %d attempts", event_id, self.max_attempts)


UNREACHABLE = "not sent: webhooks are failing (POST /_sandbox/webhooks/pause with mode fail)"
