"""Starting and stopping a sandbox: a werkzeug threaded server in a background thread.

Plain threads throughout, so it runs the same as its own process (`python -m`) and inside a test
process that eventlet has monkey-patched (the threads are then green, which is fine: nothing here
blocks outside the patched socket, time and threading calls).

A gateway's server.py builds its store, state file, app and webhook sender and hands them to
`start`; its __main__ calls `run`.
"""
import logging
import signal
import threading
import time
from typing import Callable, Optional, Tuple

from werkzeug.serving import WSGIRequestHandler, make_server

from .config import SandboxConfig
from .persistence import StateFile
from .store import SandboxStore
from .webhooks import WebhookSender


class QuietHandler(WSGIRequestHandler):
    """No access log lines (tests); errors still reach werkzeug's logger."""

    def log_request(self, code="-", size="-"):
        pass


class TimedApp:
    """Times each request the sandbox serves, from the WSGI call to its last body byte, into
    store.timings (GET /_sandbox/timings): what the gateway itself takes, without the network."""

    def __init__(self, app, store: SandboxStore):
        self.app = app
        self.store = store

    def __call__(self, environ, start_response):
        started = time.perf_counter()
        result = self.app(environ, start_response)
        try:
            body = list(result)  # the sandbox's answers are small and built in full anyway
        finally:
            getattr(result, "close", lambda: None)()
        with self.store.lock:
            self.store.timings.append((environ["REQUEST_METHOD"], environ.get("PATH_INFO", ""),
                                       round((time.perf_counter() - started) * 1000, 3)))
        return body


class SandboxHandle:
    """A running sandbox: `.url` (its base address), `.public_url` (pages), `.store` for white-box
    checks, `.stop()`. `.state` is its StateFile when it has one (SandboxConfig.state_file), else None."""

    THREAD_NAME = "sandbox"  # the serving thread is <THREAD_NAME>-<port>

    def __init__(self, config: SandboxConfig, server, store: SandboxStore, app, sender: WebhookSender,
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
                                        name=f"{self.THREAD_NAME}-{self.port}", daemon=True)
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


def start(config: SandboxConfig, store: SandboxStore, state: Optional[StateFile],
          build: Callable[[str], Tuple[object, WebhookSender]], *, handle=SandboxHandle,
          quiet: bool = False) -> SandboxHandle:
    """Load the state (if any), bind, build the app and sender for the public URL (`build`), wire
    the store to them, and serve in a background thread: `handle(config, server, store, app, sender, state)`."""
    if state is not None:
        state.load()  # before serving; an unusable file is set aside with a warning and the store starts empty
    # The app needs the bound port (port 0 picks one) for its public URL: bind first, attach after.
    server = make_server(config.host, config.port, app=None, threaded=True,
                         request_handler=QuietHandler if quiet else None)
    public_url = (config.public_url or f"http://{config.host}:{server.server_port}").rstrip("/")
    app, sender = build(public_url)
    server.app = TimedApp(app, store)
    store.on_events = sender.enqueue
    if state is not None:
        store.on_change = state.changed
        state.start()
    return handle(config, server, store, app, sender, state)


def run(start_sandbox: Callable[[], SandboxHandle], announce: Callable[[SandboxHandle], None],
        log: logging.Logger) -> None:
    """The body of `python -m <sandbox>`: log to stderr, start, `announce` where it serves, serve
    until SIGINT/SIGTERM (supervisord sends SIGTERM), then stop cleanly (the state file's final save)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    handle = start_sandbox()
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    announce(handle)
    while not stop.wait(1):
        pass
    log.info("stopping")
    handle.stop()
