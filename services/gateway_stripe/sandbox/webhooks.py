"""Webhook delivery as Stripe does it: signed, at least once, retried, in no guaranteed order.

The threads, the retry schedule, pausing and stopping are sandbox_kit.webhooks'; this is Stripe's
part. The body is serialised once when the event is created (store.emit) and those exact bytes
are signed (Stripe-Signature) and sent on every attempt; any 2xx is delivered. Events are retried
after RETRY_DELAYS (Stripe's days, compressed into seconds). A delivery dropped while paused is
lost for good: only reconciliation through GET /v1/events can find it again.
"""
import logging
import threading
import time

import requests
import stripe

from services.sandbox_kit import webhooks

from .store import Store

log = logging.getLogger(__name__)

RETRY_DELAYS = (0.5, 1, 2, 4, 8, 16, 32)  # seconds before attempts 2..8: Stripe's days, compressed


class WebhookSender(webhooks.WebhookSender):
    log = log

    def __init__(self, store: Store, url: str, secret: str, *, retry_scale: float = 1.0, max_attempts: int = 8,
                 timeout: float = 10.0):
        super().__init__(store, url, secret, retry_delays=RETRY_DELAYS, max_attempts=max_attempts,
                         retry_scale=retry_scale, timeout=timeout)

    def enqueue(self, event_ids) -> None:
        if not self.url:
            return
        for event_id in event_ids:
            threading.Thread(target=self._deliver, args=(event_id,), name=f"webhook-{event_id}",
                             daemon=True).start()

    def _deliver(self, event_id: str) -> None:
        body = self.store.event_bodies[event_id]

        def attempt(number: int, last: bool) -> bool:
            status, error = self._post(body)
            delivered = status is not None and 200 <= status < 300
            self._record(event_id, number, outcome="delivered" if delivered else "failed", final=delivered or last,
                         status=status, error=error)
            return delivered

        self._retry(event_id, attempt,
                    drop=lambda number: self._record(event_id, number, outcome="dropped", final=True),
                    unreachable=lambda number, last: self._record(event_id, number, outcome="failed", final=last,
                                                                  error=webhooks.UNREACHABLE))

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
