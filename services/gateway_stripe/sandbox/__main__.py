"""`python -m services.gateway_stripe.sandbox`: serve until SIGINT/SIGTERM (honcho sends SIGTERM)."""
import logging
import signal
import threading

from .config import SandboxConfig
from .server import start

log = logging.getLogger("stripe_sandbox")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    config = SandboxConfig.from_env()
    handle = start(config)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    log.info("Stripe sandbox on %s (pages at %s); webhooks to %s; state %s", handle.url, handle.public_url,
             config.webhook_url or "(nowhere)",
             f"saved to {handle.state.path}" if handle.state else "in memory only")
    while not stop.wait(1):
        pass
    log.info("stopping")
    handle.stop()


if __name__ == "__main__":
    main()
