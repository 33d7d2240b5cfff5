"""Starting the Stripe sandbox: its store, state file, app and webhook sender, served by
sandbox_kit.server (a werkzeug threaded server in a background thread)."""
from dataclasses import replace

from services.sandbox_kit import server

from .app import SandboxApp
from .config import SandboxConfig
from .persistence import StateFile
from .store import Store
from .webhooks import WebhookSender


class SandboxHandle(server.SandboxHandle):
    """A running Stripe sandbox: `.url` for the SDK's base address, `.store` for white-box checks, `.stop()`.
    `.state` is its StateFile when it has one (SandboxConfig.state_file), else None."""

    THREAD_NAME = "stripe-sandbox"


def start(config: SandboxConfig, quiet: bool = False) -> SandboxHandle:
    store = Store(config.clock, webhooks_enabled=bool(config.webhook_url), enabled_events=config.webhook_events)
    state = StateFile(config.state_file, store) if config.state_file else None

    def build(public_url: str):
        app = SandboxApp(store, public_url, config.secret_key, config.account_id)
        sender = WebhookSender(store, config.webhook_url, config.webhook_secret, retry_scale=config.retry_scale,
                               max_attempts=config.max_attempts, timeout=config.webhook_timeout)
        return app, sender

    return server.start(config, store, state, build, handle=SandboxHandle, quiet=quiet)


def start_sandbox(port: int = 0, webhook_url: str = "", *, quiet: bool = True, **options) -> SandboxHandle:
    """Run a sandbox in this process (tests). `options` are SandboxConfig fields: clock, retry_scale,
    secret_key, webhook_secret, public_url, webhook_events, state_file, account_id, ..."""
    return start(replace(SandboxConfig(), port=port, webhook_url=webhook_url, **options), quiet=quiet)
