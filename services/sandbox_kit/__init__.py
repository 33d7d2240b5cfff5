"""What the local gateway sandboxes (gateway_stripe.sandbox, gateway_cashfree.sandbox) share.

Both stand in for a payment gateway in the same way: a werkzeug server in a background thread,
one store behind one lock, injected faults, idempotent requests, webhooks delivered with retries,
a control API under /_sandbox and an optional state file. That machinery lives here, once; each
sandbox package keeps only what is its gateway's own (API routes and shapes, pages, signing,
error bodies, and its rules: which answers an idempotency key keeps, what counts as delivered).
Dev tooling: nothing outside the sandboxes imports it.

    config.py       the settings every sandbox has, and the <GATEWAY>_SANDBOX_* variables they come from
    store.py        SandboxStore: the lock, transactions, the event outbox, on_change, the clock offset
    idempotency.py  Record, claim and settle: one key, one piece of work, its answer replayed (and saved)
    faults.py       injected failures (error_500, timeout, create_then_timeout) and how a request meets them
    control.py      CommonControl: /_sandbox/health, faults, webhooks pause/resume, events, requests, clock
    webhooks.py     WebhookSender: a thread per delivery, the retry schedule, pause and stop
    persistence.py  StateFile: load (or set aside) at start, a background writer, atomic saves
    server.py       start(), SandboxHandle (stop, wait) and run() for `python -m`
    periods.py      calendar arithmetic: adding days, weeks, months (clamped) and years
"""
