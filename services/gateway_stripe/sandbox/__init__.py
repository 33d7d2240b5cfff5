"""A local stand-in for the part of Stripe's API the gateway_stripe adapter uses.

The adapter's official SDK talks to it exactly as to api.stripe.com (only the base URL and keys
differ): customers, prices, Checkout Sessions in subscription mode, Payment Links (subscription
mode, with restrictions[completed_sessions]), subscriptions with proration and pending updates,
invoices (and voiding them), the payments behind them (InvoicePayments, PaymentIntents, Charges),
refunds, payment methods, events and the account, in the shapes of the SDK's pinned API version.
It serves a hosted checkout page and a payment link page (/b/{link id}), each with Pay and
Decline, delivers signed webhooks with retries, and has a control API under /_sandbox for tests
and demos.

    python -m services.gateway_stripe.sandbox          # configured by the environment, below
    handle = start_sandbox(port=0, webhook_url=...)     # in-process, for tests; handle.stop()

Environment: STRIPE_SANDBOX_PORT (12111, on 127.0.0.1), STRIPE_SANDBOX_PUBLIC_URL (hosted page
links), STRIPE_SECRET_KEY (sk_test_sandbox), STRIPE_WEBHOOK_SECRET (whsec_sandbox),
STRIPE_SANDBOX_ACCOUNT_ID (acct_1PortalSandbox00: the account GET /v1/account names),
STRIPE_SANDBOX_WEBHOOK_URL (PUBLIC_BASE_URL/webhooks/stripe), STRIPE_SANDBOX_RETRY_SCALE (1.0),
STRIPE_SANDBOX_WEBHOOK_EVENTS (comma-separated types, wildcards allowed; default all),
STRIPE_SANDBOX_STATE_FILE (unset: state in memory only; a path, relative to the working directory:
objects, events, the clock and idempotent answers are loaded from it at start and saved to it on
every change and at shutdown, so ids the portal stored survive a restart; see persistence.py).

Payer pages: GET /checkout/{cs id}, POST .../pay | .../decline; GET /b/{plink id}, POST .../pay |
.../decline | .../start (opens the link's checkout session without paying: a payer part way through).

Control API (JSON, no auth): POST /_sandbox/checkout/{id}/pay | /decline;
POST /_sandbox/links/{plink id}/pay | /start;
POST /_sandbox/subscriptions/{id}/renew {"outcome": "paid"|"failed"} (no outcome: as the saved card does);
POST /_sandbox/invoices/{id}/pay (an open invoice paid after all: applies a pending update waiting for it);
POST /_sandbox/customers/{id}/card {"declines": true|false} (sticky: the customer's saved card is
declined off-session, for plan change prorations and renewals without an outcome, until set false);
POST|GET|DELETE /_sandbox/faults; POST /_sandbox/webhooks/pause {"mode": "drop"|"fail"} | /resume;
POST /_sandbox/webhooks/{evt id}/redeliver; GET /_sandbox/events;
GET /_sandbox/requests; GET|POST /_sandbox/clock {"advance_seconds": n}; GET /_sandbox/health.
"""
from .config import SandboxConfig
from .server import SandboxHandle, start, start_sandbox

__all__ = ["SandboxConfig", "SandboxHandle", "start", "start_sandbox"]
