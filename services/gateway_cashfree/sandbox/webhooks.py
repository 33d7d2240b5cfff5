"""Webhook delivery as Cashfree does it: signed, at least once, retried, in no guaranteed order.

Each event is POSTed as `{"data": ..., "event_time": ..., "type": ...}` with
  x-webhook-timestamp   milliseconds since the epoch, at sending time
  x-webhook-signature   base64(HMAC-SHA256(key=client secret, msg=timestamp + raw body))
  x-webhook-version     2025-01-01
  x-idempotency-key     the event's id: the same on every retry and redelivery of it
The body is serialised once when the event is created (store.emit) and those exact bytes are signed
and sent on every attempt. Anything but HTTP 200 (or no answer) is a failure, retried after 2, 10
and 30 minutes (here: that many seconds x retry_scale), then given up. The delivery threads, the
schedule, pausing (an attempt that falls due while paused is dropped for good, as a lost webhook
is lost) and stopping are sandbox_kit.webhooks'; the signing, headers and records are Cashfree's.
"""
import base64
import hashlib
import hmac
import logging
import threading
import time

import requests

from services.sandbox_kit import webhooks

from .config import API_VERSION
from .store import Store

log = logging.getLogger(__name__)

RETRY_MINUTES = (2, 10, 30)  # Cashfree's schedule after the first attempt (here: seconds x retry_scale)


def signature(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode("utf-8"), timestamp.encode("utf-8") + body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


class WebhookSender(webhooks.WebhookSender):
    log = log

    def __init__(self, store: Store, url: str, secret: str, *, retry_scale: float = 1.0, timeout: float = 10.0):
        super().__init__(store, url, secret, retry_delays=RETRY_MINUTES,
                         max_attempts=1 + len(RETRY_MINUTES), retry_scale=retry_scale, timeout=timeout)

    def enqueue(self, event_ids) -> None:
        for event_id in event_ids:
            self._start(event_id)

    def redeliver(self, event_id: str) -> None:
        """Send an event again (same body, same x-idempotency-key), with its own retries."""
        self._start(event_id)

    def _start(self, event_id: str) -> None:
        if not self.url:
            return
        with self.store.lock:  # numbered per event: 1 is the original delivery, 2.. redeliveries
            event = self.store.events[event_id]
            event["delivery_runs"] += 1
            run = event["delivery_runs"]
        self.store.changed()
        threading.Thread(target=self._deliver, args=(event_id, run), name=f"cashfree-webhook-{event_id}",
                         daemon=True).start()

    def _deliver(self, event_id: str, run: int) -> None:
        body = self.store.events[event_id]["body"].encode("utf-8")

        def attempt(number: int, last: bool) -> bool:
            status_code, error, timestamp = self._post(event_id, body)
            delivered = status_code == 200
            final = "delivered" if delivered else ("failed" if last else None)
            self._record(event_id, run, number, outcome="delivered" if delivered else "failed", status=final,
                         status_code=status_code, error=error, timestamp=timestamp)
            return delivered

        self._retry(event_id, attempt,
                    drop=lambda number: self._record(event_id, run, number, outcome="dropped", status="dropped"),
                    unreachable=lambda number, last: self._record(
                        event_id, run, number, outcome="failed", status="failed" if last else None,
                        error=webhooks.UNREACHABLE))

    def _post(self, event_id: str, body: bytes):
        """One signed POST; (status, None, timestamp) or (None, what went wrong, timestamp)."""
        timestamp = str(int(time.time() * 1000))
        headers = {
            "Content-Type": "application/json",
            "x-webhook-timestamp": timestamp,
            "x-webhook-signature": signature(self.secret, timestamp, body),
            "x-webhook-version": API_VERSION,
            "x-idempotency-key": event_id,
        }
        try:
            response = requests.post(self.url, data=body, headers=headers, timeout=self.timeout)
            return response.status_code, None, timestamp
        except requests.RequestException as exc:
            return None, f"{type(exc).__name__}: {exc}", timestamp

    def _record(self, event_id: str, run: int, attempt: int, *, outcome: str, status=None, status_code=None,
                error=None, timestamp=None) -> None:
        self.store.record_attempt(event_id, {
            "delivery": run, "attempt": attempt, "status_code": status_code, "error": error, "outcome": outcome,
            "x_webhook_timestamp": timestamp, "at": time.time(), "url": self.url,
        }, status=status)
