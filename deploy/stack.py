"""A whole portal stack of its own, started as `make up` starts it (deploy/Procfile under honcho),
on free ports, a fresh RabbitMQ vhost and fresh databases: for end-to-end tests and benchmarks,
which must neither see nor disturb a `make up` running beside them."""
import os
import signal
import socket
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import requests
from sqlalchemy.engine import make_url

from deploy.processes import processes
from deploy.wait_healthy import wait_healthy
from shared.config import settings
from shared.migrate import recreate_databases

ROOT = Path(__file__).resolve().parents[1]
RABBIT_API = "http://127.0.0.1:15672/api"
GUEST = ("guest", "guest")


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _exit_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


class IsolatedStack:
    def __init__(self, database_prefix, log_path, extra_env=None):
        self.database_prefix = database_prefix
        self.log_path = Path(log_path)
        self.vhost = f"stack_{uuid.uuid4().hex[:8]}"
        port, stripe_port, cashfree_port = free_port(), free_port(), free_port()
        self.base_url = f"http://127.0.0.1:{port}"
        self.stripe_sandbox = f"http://127.0.0.1:{stripe_port}"
        self.cashfree_sandbox = f"http://127.0.0.1:{cashfree_port}"
        self.env = {
            **os.environ,
            "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
            "DATABASE_PREFIX": database_prefix,
            "HTTP_PORT": str(port),
            "PUBLIC_BASE_URL": self.base_url,
            "AMQP_URI": f"pyamqp://guest:guest@127.0.0.1:5672/{self.vhost}",
            "USAGE_INGEST_KEY": "e2e-usage-key",
            "STRIPE_SANDBOX_PORT": str(stripe_port),
            "STRIPE_API_BASE": self.stripe_sandbox,
            "STRIPE_TIMEOUT_SECONDS": "2",
            "STRIPE_SANDBOX_RETRY_SCALE": "0.2",
            "CASHFREE_SANDBOX_PORT": str(cashfree_port),
            "CASHFREE_API_BASE": f"{self.cashfree_sandbox}/pg",
            "CASHFREE_TIMEOUT_SECONDS": "2",
            "CASHFREE_SANDBOX_RETRY_SCALE": "0.1",
            "LINK_EXPIRY_POLL_SECONDS": "1",
            # Tests reconcile on demand; one that tests the schedule starts a stack with a short one.
            "RECONCILE_INTERVAL_SECONDS": "3600",
            "PYTHONUNBUFFERED": "1",
            **(extra_env or {}),
        }
        self.process = None

    def database_url(self, service_name):
        """A libpq URL of one service's database in this stack (for benchmarks' own queries)."""
        url = make_url(settings().database_url).set(drivername="postgresql",
                                                    database=f"{self.database_prefix}{service_name}")
        return url.render_as_string(hide_password=False)

    def start(self):
        """Fresh vhost and databases, then every process; returns once all answer (else raises)."""
        if threading.current_thread() is threading.main_thread():
            # The processes run in a session of their own (a Ctrl-C meant for the caller must not
            # kill them before stop() has drained them): on SIGTERM (timeout(1), CI's limit) the caller
            # must still reach its `finally: stack.stop()`, or the stack outlives it.
            signal.signal(signal.SIGTERM, _exit_on_sigterm)
        requests.put(f"{RABBIT_API}/vhosts/{self.vhost}", auth=GUEST, timeout=10).raise_for_status()
        requests.put(f"{RABBIT_API}/permissions/{self.vhost}/guest", auth=GUEST, timeout=10,
                     json={"configure": ".*", "write": ".*", "read": ".*"}).raise_for_status()
        recreate_databases(self.database_prefix)
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "honcho", "-f", "deploy/Procfile", "-d", ".", "start", *processes()],
                cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        for url in (f"{self.base_url}/healthz", f"{self.stripe_sandbox}/_sandbox/health",
                    f"{self.cashfree_sandbox}/_sandbox/health"):
            if not wait_healthy(url, 60):
                self.stop()
                raise RuntimeError(f"{url} did not answer; log:\n{self.log_path.read_text()[-5000:]}")
        return self

    def stop(self):
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
        requests.delete(f"{RABBIT_API}/vhosts/{self.vhost}", auth=GUEST, timeout=10)
