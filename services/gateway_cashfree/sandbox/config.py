"""Settings of the Cashfree sandbox: defaults for tests, the environment for `python -m`.

Tests build a SandboxConfig directly so that a developer's exported CASHFREE_* variables never
leak into them; the command line reads the environment through `SandboxConfig.from_env`: the
common CASHFREE_SANDBOX_PORT, _PUBLIC_URL, _WEBHOOK_URL, _RETRY_SCALE and _STATE_FILE
(sandbox_kit.config), and Cashfree's own CASHFREE_CLIENT_ID, CASHFREE_CLIENT_SECRET and
CASHFREE_OPENAPI_PATH. Cashfree retries webhooks after 2, 10 and 30 minutes; here that many
seconds x retry_scale.
"""
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional

from services.sandbox_kit import config
from shared.config import SANDBOX_CASHFREE_CLIENT_ID, SANDBOX_CASHFREE_CLIENT_SECRET

DEFAULT_PORT = 12112
API_VERSION = "2025-01-01"

# <repo>/../shared/reference: Cashfree's own OpenAPI document, read (never copied) for validation.
DEFAULT_OPENAPI_PATH = str(Path(__file__).resolve().parents[3].parent
                           / "shared" / "reference" / "cashfree" / "openapi-2025-01-01.yaml")


@dataclass
class SandboxConfig(config.SandboxConfig):
    port: int = DEFAULT_PORT  # 0 picks a free port (tests)
    client_id: str = SANDBOX_CASHFREE_CLIENT_ID
    client_secret: str = SANDBOX_CASHFREE_CLIENT_SECRET  # also the webhook signing key, as at Cashfree
    openapi_path: Optional[str] = DEFAULT_OPENAPI_PATH  # None or absent file: no schema validation

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> "SandboxConfig":
        return cls(
            **config.common_env(env, "cashfree", DEFAULT_PORT),
            client_id=env.get("CASHFREE_CLIENT_ID") or SANDBOX_CASHFREE_CLIENT_ID,
            client_secret=env.get("CASHFREE_CLIENT_SECRET") or SANDBOX_CASHFREE_CLIENT_SECRET,
            openapi_path=env.get("CASHFREE_OPENAPI_PATH") or DEFAULT_OPENAPI_PATH,
        )
