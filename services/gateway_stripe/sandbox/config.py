"""Settings of the Stripe sandbox: defaults for tests, the environment for `python -m`.

Tests build a SandboxConfig directly so that a developer's exported STRIPE_* variables never leak
into them; the command line reads the environment through `SandboxConfig.from_env`.
"""
import os
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional

DEFAULT_PORT = 12111


def default_webhook_url(env: Mapping[str, str]) -> str:
    """Where the portal's HTTP gateway listens for Stripe webhooks (API.md "Gateway webhooks")."""
    base = env.get("PUBLIC_BASE_URL") or f"http://127.0.0.1:{env.get('HTTP_PORT') or 8000}"
    return f"{base.rstrip('/')}/webhooks/stripe"


@dataclass
class SandboxConfig:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT  # 0 picks a free port (tests)
    public_url: Optional[str] = None  # None: http://<host>:<actual port>
    secret_key: str = "sk_test_sandbox"
    webhook_secret: str = "whsec_sandbox"
    webhook_url: str = ""  # empty: events are recorded but not sent
    webhook_events: tuple = ("*",)  # event types sent (wildcards), like an endpoint's enabled_events
    retry_scale: float = 1.0  # multiplies the webhook retry schedule
    max_attempts: int = 8
    webhook_timeout: float = 10.0
    clock: Callable[[], float] = field(default=time.time)  # injectable so tests control periods
    state_file: Optional[str] = None  # a JSON file the state is loaded from and saved to; None: memory only

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> "SandboxConfig":
        return cls(
            port=int(env.get("STRIPE_SANDBOX_PORT") or DEFAULT_PORT),
            public_url=env.get("STRIPE_SANDBOX_PUBLIC_URL") or None,
            secret_key=env.get("STRIPE_SECRET_KEY") or "sk_test_sandbox",
            webhook_secret=env.get("STRIPE_WEBHOOK_SECRET") or "whsec_sandbox",
            webhook_url=env.get("STRIPE_SANDBOX_WEBHOOK_URL") or default_webhook_url(env),
            webhook_events=tuple(part.strip() for part in (env.get("STRIPE_SANDBOX_WEBHOOK_EVENTS") or "*").split(",")
                                 if part.strip()),
            retry_scale=float(env.get("STRIPE_SANDBOX_RETRY_SCALE") or 1.0),
            state_file=env.get("STRIPE_SANDBOX_STATE_FILE") or None,
        )
