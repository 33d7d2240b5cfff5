"""A local stand-in for the part of Cashfree's PG API (version 2025-01-01) the gateway_cashfree
adapter uses: plans, subscriptions, their management, charges and payments, payment links, and
refunds of subscription payments and of orders.

The adapter's plain `requests` calls reach it exactly as https://sandbox.cashfree.com/pg (only
CASHFREE_API_BASE and the keys differ). Every request body is validated against Cashfree's own
OpenAPI document; answers have the document's shapes, amounts are exact JSON numbers in rupees.
It serves the JS SDK (v3), a hosted subscription checkout with Pay and Decline and a payment link
page with Pay, Fail and Drop, delivers signed webhooks with Cashfree's retries, and has a control
API under /_sandbox for tests and demos.

    python -m services.gateway_cashfree.sandbox         # configured by the environment, below
    handle = start_sandbox(port=0, webhook_url=...)     # in-process, for tests; handle.stop()

Environment: CASHFREE_SANDBOX_PORT (12112, on 127.0.0.1), CASHFREE_SANDBOX_PUBLIC_URL (page and
SDK links; http://127.0.0.1:<port>), CASHFREE_CLIENT_ID (cf_sandbox_client), CASHFREE_CLIENT_SECRET
(cf_sandbox_secret; also the webhook signing key), CASHFREE_SANDBOX_WEBHOOK_URL
(PUBLIC_BASE_URL/webhooks/cashfree), CASHFREE_SANDBOX_RETRY_SCALE (1.0: retries after 2, 10, 30 s),
CASHFREE_OPENAPI_PATH (../shared/reference/cashfree/openapi-2025-01-01.yaml; absent: no validation),
CASHFREE_SANDBOX_STATE_FILE (unset: state in memory only; a path, relative to the working directory:
plans, subscriptions, payments, payment links and their orders, events, the clock and idempotent
answers are loaded from it at start and saved to it on every change and at shutdown, so ids the
portal stored survive a restart; see persistence.py).

API (headers x-client-id, x-client-secret, x-api-version: 2025-01-01; optional x-request-id,
x-idempotency-key): POST /pg/plans; GET /pg/plans/{id}; POST /pg/subscriptions;
GET /pg/subscriptions/{id}; POST /pg/subscriptions/{id}/manage; GET /pg/subscriptions/{id}/payments;
POST /pg/subscriptions/pay (payment_type CHARGE); POST /pg/subscriptions/{id}/refunds;
GET /pg/subscriptions/{id}/refunds/{refund_id};
POST /pg/links; GET /pg/links/{id}; POST /pg/links/{id}/cancel; GET /pg/links/{id}/orders[?status=ALL];
GET /pg/orders/{order_id}; GET /pg/orders/{order_id}/payments; POST|GET /pg/orders/{order_id}/refunds;
GET /pg/orders/{order_id}/refunds/{refund_id}.
Payer: GET /js/v3/cashfree.js; GET /checkout/subscription/{session}; POST .../pay | .../decline;
GET /links/{link_id}; POST .../pay | .../fail | .../drop (form field `method`: upi, card, netbanking).

Control API (JSON, no auth): POST /_sandbox/checkout/subscription/{session}/pay {"method"} | /decline;
POST /_sandbox/subscriptions/{id}/charge {"outcome"?: "success"|"failed", "amount"?} (the next scheduled
charge); POST /_sandbox/subscriptions/{id}/charges {"outcome": "success"|"failed"} (how the mandate's
charges turn out from now on, raised or scheduled; "success" until changed);
POST /_sandbox/links/{link_id}/pay | /fail | /drop {"method"?};
POST|GET|DELETE /_sandbox/faults; POST /_sandbox/webhooks/pause {"mode": "drop"|"fail"} | /resume;
POST /_sandbox/webhooks/{event_id}/redeliver; GET /_sandbox/events; GET /_sandbox/requests;
GET|POST /_sandbox/clock {"advance_seconds": n}; GET /_sandbox/health.
"""
from .config import SandboxConfig
from .server import SandboxHandle, start, start_sandbox

__all__ = ["SandboxConfig", "SandboxHandle", "start", "start_sandbox"]
