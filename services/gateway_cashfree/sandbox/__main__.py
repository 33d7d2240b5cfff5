"""`python -m services.gateway_cashfree.sandbox`: serve until SIGINT/SIGTERM (supervisord sends SIGTERM)."""
import logging

from services.sandbox_kit.server import run

from .config import SandboxConfig
from .server import SandboxHandle, start

log = logging.getLogger("cashfree_sandbox")


def announce(handle: SandboxHandle) -> None:
    log.info("Cashfree sandbox: API at %s, pages at %s; webhooks to %s; OpenAPI validation %s; state %s",
             handle.api_base, handle.public_url, handle.config.webhook_url or "(nowhere)",
             "on" if handle.app.contract is not None else "OFF",
             f"saved to {handle.state.path}" if handle.state else "in memory only")


def main() -> None:
    run(lambda: start(SandboxConfig.from_env()), announce, log)


if __name__ == "__main__":
    main()
