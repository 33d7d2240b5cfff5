"""`python -m services.gateway_stripe.sandbox`: serve until SIGINT/SIGTERM (supervisord sends SIGTERM)."""
import logging

from services.sandbox_kit.server import run

from .config import SandboxConfig
from .server import SandboxHandle, start

log = logging.getLogger("stripe_sandbox")


def announce(handle: SandboxHandle) -> None:
    log.info("Stripe sandbox on %s (pages at %s); webhooks to %s; state %s", handle.url, handle.public_url,
             handle.config.webhook_url or "(nowhere)",
             f"saved to {handle.state.path}" if handle.state else "in memory only")


def main() -> None:
    run(lambda: start(SandboxConfig.from_env()), announce, log)


if __name__ == "__main__":
    main()
