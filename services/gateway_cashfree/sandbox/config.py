"""Settings of the Cashfree sandbox: defaults for tests, the environment for `python -m`.

Tests build a SandboxConfig directly so that a developer's exported CASHFREE_* variables never
leak into them; the command line reads the environment through `SandboxConfig.from_env`.
"""
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Optional

DEFAULT_PORT = 12112
API_VERSION = "2025-01-01"

# <repo>/../shared/reference: Cashfree's own OpenAPI document, read (never copied) for validation.
DEFAULT_OPENAPI_PATH = str(Path(__file__).resolve().parents[3].parent
                           / "shared" / "reference" / "cashfree" / "openapi-2025-01-01.yaml")


def default_webhook_url(env: Mapping[str, str]) -> str:
    """Where the portal's HTTP gateway listens for Cashfree webhooks (API.md "Gateway webhooks")."""
    base = env.get("PUBLIC_BASE_URL") or f"http://127.0.0.1:{env.get('HTTP_PORT') or 8000}"
    return f"{base.rstrip('/')}/webhooks/cashfree"


@dataclass
class SandboxConfig:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT  # 0 picks a free port (tests)
    public_url: Optional[str] = None  # None: http://<host>:<actual port>
    client_id: str = "cf_sandbox_client"
    client_secret: str = "cf_sandbox_secret"  # also the webhook signing key, as at Cashfree
    webhook_url: str = ""  # empty: events are recorded but not sent
    retry_scale: float = 1.0  # Cashfree retries after 2, 10 and 30 minutes; here that many seconds x scale
    webhook_timeout: float = 10.0
    openapi_path: Optional[str] = DEFAULT_OPENAPI_PATH  # None or absent file: no schema validation
    clock: Callable[[], float] = field(default=time.time)  # injectable so tests control schedules
    state_file: Optional[str] = None  # a JSON file the state is loaded from and saved to; None: memory only

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> "SandboxConfig":
        return cls(
            port=int(env.get("CASHFREE_SANDBOX_PORT") or DEFAULT_PORT),
            public_url=env.get("CASHFREE_SANDBOX_PUBLIC_URL") or None,
            client_id=env.get("CASHFREE_CLIENT_ID") or "cf_sandbox_client",
            client_secret=env.get("CASHFREE_CLIENT_SECRET") or "cf_sandbox_secret",
            webhook_url=env.get("CASHFREE_SANDBOX_WEBHOOK_URL") or default_webhook_url(env),
            retry_scale=float(env.get("CASHFREE_SANDBOX_RETRY_SCALE") or 1.0),
            openapi_path=env.get("CASHFREE_OPENAPI_PATH") or DEFAULT_OPENAPI_PATH,
            state_file=env.get("CASHFREE_SANDBOX_STATE_FILE") or None,
        )
