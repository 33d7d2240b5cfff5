"""The settings every sandbox has, and reading them from <GATEWAY>_SANDBOX_* variables.

A gateway's SandboxConfig subclasses this one, sets its default port and adds its keys. Tests
build configs directly so that a developer's exported variables never leak into them; only
`python -m` reads the environment (the gateway's `SandboxConfig.from_env`, through `common_env`).
"""
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional


@dataclass
class SandboxConfig:
    host: str = "127.0.0.1"
    port: int = 0  # 0 picks a free port (tests); each gateway's config sets its own default
    public_url: Optional[str] = None  # None: http://<host>:<actual port>
    webhook_url: str = ""  # empty: events are recorded but not sent
    retry_scale: float = 1.0  # multiplies the gateway's webhook retry schedule
    webhook_timeout: float = 10.0
    clock: Callable[[], float] = field(default=time.time)  # injectable so tests control periods and schedules
    state_file: Optional[str] = None  # a JSON file the state is loaded from and saved to; None: memory only


def default_webhook_url(env: Mapping[str, str], gateway: str) -> str:
    """Where the portal's HTTP gateway listens for this gateway's webhooks (API.md "Gateway webhooks")."""
    base = env.get("PUBLIC_BASE_URL") or f"http://127.0.0.1:{env.get('HTTP_PORT') or 8000}"
    return f"{base.rstrip('/')}/webhooks/{gateway}"


def common_env(env: Mapping[str, str], gateway: str, default_port: int) -> dict:
    """The common settings from <GATEWAY>_SANDBOX_PORT, _PUBLIC_URL, _WEBHOOK_URL (default: the
    portal's /webhooks/<gateway>), _RETRY_SCALE and _STATE_FILE, as SandboxConfig keywords."""
    prefix = f"{gateway.upper()}_SANDBOX_"
    return dict(
        port=int(env.get(prefix + "PORT") or default_port),
        public_url=env.get(prefix + "PUBLIC_URL") or None,
        webhook_url=env.get(prefix + "WEBHOOK_URL") or default_webhook_url(env, gateway),
        retry_scale=float(env.get(prefix + "RETRY_SCALE") or 1.0),
        state_file=env.get(prefix + "STATE_FILE") or None,
    )
