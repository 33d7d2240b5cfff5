"""Starting and stopping the sandbox: a werkzeug threaded server in a background thread.

Plain threads throughout, so it runs the same as its own process (`python -m`) and inside a test
process that eventlet has monkey-patched (the threads are then green, which is fine: nothing here
blocks outside the patched socket, time and threading calls).
"""
import threading
from dataclasses import replace
from typing import Optional

from werkzeug.serving import WSGIRequestHandler, make_server

from .app import SandboxApp
from .config import SandboxConfig
from .persistence import StateFile
from .store import Store
from .webhooks import WebhookSender


class _QuietHandler(WSGIRequestHandler):
    """No access log lines (tests); errors still reach werkzeug's logger."""

    def log_request(self, code="-", size="-"):
        pass


class SandboxHandle:
    """A running sandbox: `.url` for the SDK's base address, `.store` for white-box checks, `.stop()`.
    `.state` is its StateFile when it has one (SandboxConfig.state_file), else None."""

    def __init__(self, config: SandboxConfig, server, store: Store, app: SandboxApp, sender: WebhookSender,
                 state: Optional[StateFile] = None):
        self.config = config
        self.server = server
        self.store = store
        self.app = app
        self.sender = sender
        self.state = state
        self.port = server.server_port
        self.url = f"http://{config.host}:{self.port}"
        self.public_url = app.public_url
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"stripe-sandbox-{self.port}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.sender.stop()
        self.app.stopping.set()
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)
        if self.state is not None:  # after the server: the last answered request is in the final save
            self.state.stop()

    def wait(self) -> None:
        self._thread.join()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.stop()


def start(config: SandboxConfig, quiet: bool = False) -> SandboxHandle:
    store = Store(config.clock, webhooks_enabled=bool(config.webhook_url), enabled_events=config.webhook_events)
    state = StateFile(config.state_file, store) if config.state_file else None
    if state is not None:
        state.load()  # before serving; an unusable file is set aside with a warning and the store starts empty
    # The app needs the bound port (port 0 picks one) for its public URL: bind first, attach after.
    server = make_server(config.host, config.port, app=None, threaded=True,
                         request_handler=_QuietHandler if quiet else None)
    public_url = (config.public_url or f"http://{config.host}:{server.server_port}").rstrip("/")
    app = SandboxApp(store, public_url, config.secret_key)
    server.app = app
    sender = WebhookSender(store, config.webhook_url, config.webhook_secret, retry_scale=config.retry_scale,
                           max_attempts=config.max_attempts, timeout=config.webhook_timeout)
    store.on_events = sender.enqueue
    if state is not None:
        store.on_change = state.changed
        state.start()
    return SandboxHandle(config, server, store, app, sender, state)


def start_sandbox(port: int = 0, webhook_url: str = "", *, quiet: bool = True, **options) -> SandboxHandle:
    """Run a sandbox in this process (tests). `options` are SandboxConfig fields: clock, retry_scale,
    secret_key, webhook_secret, public_url, webhook_events, state_file, ..."""
    return start(replace(SandboxConfig(), port=port, webhook_url=webhook_url, **options), quiet=quiet)
