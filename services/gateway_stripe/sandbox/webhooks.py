"""Webhook delivery as Stripe does it: signed, at least once, retried, in no guaranteed order.

Each event gets its own delivery thread, so one slow or failing event never holds up another
and retries naturally reorder them, which is what a webhook consumer must cope with. The body is
serialised once when the event is created (store.emit) and those exact bytes are signed and sent
on every attempt. While deliveries are paused, an attempt that falls due is dropped for good, the
way a lost webhook is lost: only reconciliation through GET /v1/events can find it again.
"""
import logging
import threading
import time

import requests
import stripe

from .store import Store

log = logging.getLogger(__name__)

RETRY_DELAYS = (0.5, 1, 2, 4, 8, 16, 32)  # seconds before attempts 2..8: Stripe's days, compressed


class WebhookSender:
    def __init__(self, store: Store, url: str, secret: str, *, retry_scale: float = 1.0, max_attempts: int = 8,
                 timeout: float = 10.0):
        self.store = store
        self.url = url
        self.secret = secret
        self.retry_scale = retry_scale
        self.max_attempts = max_attempts
        self.timeout = timeout
        self._stopping = threading.Event()

    def enqueue(self, event_ids) -> None:
        if not self.url:
            return
        for event_id in event_ids:
            threading.Thread(target=self._deliver, args=(event_id,), name=f"webhook-{event_id}",
                             daemon=True).start()

    def stop(self) -> None:
        self._stopping.set()

    def _deliver(self, event_id: str) -> None:
        body = self.store.event_bodies[event_id]
        for attempt in range(1, self.max_attempts + 1):
            if attempt > 1 and self._stopping.wait(self._delay(attempt)):
                return
            if self._stopping.is_set():
                return
            if self.store.webhooks_paused:
                self._record(event_id, attempt, outcome="dropped", final=True)
                return
            status, error = self._post(body)
            delivered = status is not None and 200 <= status < 300
            final = delivered or attempt == self.max_attempts
            self._record(event_id, attempt, outcome="delivered" if delivered else "failed", final=final,
                         status=status, error=error)
            if delivered:
                return
        log.warning("webhook %s gave up after %d attempts", event_id, self.max_attempts)

    def _delay(self, attempt: int) -> float:
        return RETRY_DELAYS[min(attempt - 2, len(RETRY_DELAYS) - 1)] * self.retry_scale

    def _post(self, body: str):
        """One signed POST; (status, None) or (None, what went wrong)."""
        header = stripe.WebhookSignature.generate_signature_header(body, self.secret, int(time.time()))
        try:
            response = requests.post(
                self.url, data=body.encode("utf-8"), timeout=self.timeout,
                headers={"Content-Type": "application/json; charset=utf-8", "Stripe-Signature": header,
                         "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)"},
            )
            return response.status_code, None
        except requests.RequestException as exc:
            return None, f"{type(exc).__name__}: {exc}"

    def _record(self, event_id: str, attempt: int, *, outcome: str, final: bool, status=None, error=None) -> None:
        self.store.record_attempt(event_id, {
            "event_id": event_id, "attempt": attempt, "status_code": status, "error": error, "outcome": outcome,
            "at": time.time(), "url": self.url,
        }, final=final)
