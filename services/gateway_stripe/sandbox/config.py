"""Settings of the Stripe sandbox: defaults for tests, the environment for `python -m`.

Tests build a SandboxConfig directly so that a developer's exported STRIPE_* variables never leak
into them; the command line reads the environment through `SandboxConfig.from_env`: the common
STRIPE_SANDBOX_PORT, _PUBLIC_URL, _WEBHOOK_URL, _RETRY_SCALE and _STATE_FILE (sandbox_kit.config),
and Stripe's own STRIPE_SECRET_KEY, STRIPE_WEBHOOK_SECRET, STRIPE_SANDBOX_WEBHOOK_EVENTS and
STRIPE_SANDBOX_ACCOUNT_ID (which Stripe account the sandbox is: two sandboxes with different ids
stand for two accounts, as when the portal's keys are switched to another one).
"""
import os
from dataclasses import dataclass
from typing import Mapping

from services.sandbox_kit import config
from shared.config import SANDBOX_STRIPE_KEY, SANDBOX_STRIPE_WEBHOOK_SECRET

DEFAULT_PORT = 12111
DEFAULT_ACCOUNT_ID = "acct_1PortalSandbox00"


@dataclass
class SandboxConfig(config.SandboxConfig):
    port: int = DEFAULT_PORT  # 0 picks a free port (tests)
    secret_key: str = SANDBOX_STRIPE_KEY
    webhook_secret: str = SANDBOX_STRIPE_WEBHOOK_SECRET
    webhook_events: tuple = ("*",)  # event types sent (wildcards), like an endpoint's enabled_events
    max_attempts: int = 8  # webhook delivery attempts (webhooks.RETRY_DELAYS between them)
    account_id: str = DEFAULT_ACCOUNT_ID  # GET /v1/account's id

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> "SandboxConfig":
        return cls(
            **config.common_env(env, "stripe", DEFAULT_PORT),
            secret_key=env.get("STRIPE_SECRET_KEY") or SANDBOX_STRIPE_KEY,
            webhook_secret=env.get("STRIPE_WEBHOOK_SECRET") or SANDBOX_STRIPE_WEBHOOK_SECRET,
            account_id=env.get("STRIPE_SANDBOX_ACCOUNT_ID") or DEFAULT_ACCOUNT_ID,
            webhook_events=tuple(part.strip() for part in (env.get("STRIPE_SANDBOX_WEBHOOK_EVENTS") or "*").split(",")
                                 if part.strip()),
        )
