"""Starting the Cashfree sandbox: its OpenAPI contract, store, state file, app and webhook sender,
served by sandbox_kit.server (a werkzeug threaded server in a background thread)."""
from dataclasses import replace

from services.sandbox_kit import server

from . import openapi
from .app import SandboxApp
from .config import SandboxConfig
from .persistence import StateFile
from .store import Store
from .webhooks import WebhookSender


class SandboxHandle(server.SandboxHandle):
    """A running sandbox: `.url` (+ "/pg" for CASHFREE_API_BASE), `.store` for white-box checks, `.stop()`.
    `.state` is its StateFile when it has one (SandboxConfig.state_file), else None."""

    THREAD_NAME = "cashfree-sandbox"

    @property
    def api_base(self) -> str:
        return f"{self.url}/pg"


def start(config: SandboxConfig, quiet: bool = False) -> SandboxHandle:
    contract = openapi.load(config.openapi_path)  # parsed once per process, however many sandboxes
    store = Store(config.clock, webhooks_enabled=bool(config.webhook_url))
    state = StateFile(config.state_file, store) if config.state_file else None

    def build(public_url: str):
        sender = WebhookSender(store, config.webhook_url, config.client_secret, retry_scale=config.retry_scale,
                               timeout=config.webhook_timeout)
        app = SandboxApp(store, public_url, config.client_id, config.client_secret, contract, sender)
        return app, sender

    return server.start(config, store, state, build, handle=SandboxHandle, quiet=quiet)


def start_sandbox(port: int = 0, webhook_url: str = "", *, quiet: bool = True, **options) -> SandboxHandle:
    """Run a sandbox in this process (tests). `options` are SandboxConfig fields: clock, retry_scale,
    client_id, client_secret, public_url, openapi_path, state_file, ..."""
    return start(replace(SandboxConfig(), port=port, webhook_url=webhook_url, **options), quiet=quiet)
