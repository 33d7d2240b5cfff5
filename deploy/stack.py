"""A whole portal stack of its own, started as `make up` starts it (deploy/Procfile under
supervisord, deploy/supervise.py), on free ports, a fresh RabbitMQ vhost and fresh databases: for
end-to-end tests, benchmarks and fault injection, which must neither see nor disturb a `make up`
running beside them. By default it uses the machine's PostgreSQL and RabbitMQ; `broker` and
`database_url` point it at others (deploy/private_infra.py starts private ones)."""
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests
from sqlalchemy.engine import make_url

from deploy.processes import processes
from deploy.supervise import Supervisor
from deploy.wait_healthy import wait_healthy
from shared.config import settings
from shared.migrate import recreate_databases

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Broker:
    """A RabbitMQ node: its AMQP port and its management API (which makes the stack's vhost)."""
    host: str = "127.0.0.1"
    amqp_port: int = 5672
    management_port: int = 15672
    user: str = "guest"
    password: str = "guest"

    @property
    def api(self):
        return f"http://{self.host}:{self.management_port}/api"

    def amqp_uri(self, vhost):
        return f"pyamqp://{self.user}:{self.password}@{self.host}:{self.amqp_port}/{vhost}"


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _exit_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


@contextmanager
def _environ(**values):
    """os.environ with `values` for a while (shared.migrate reads its settings from there)."""
    previous = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class IsolatedStack:
    def __init__(self, database_prefix, log_path, extra_env=None, broker=None, database_url=None):
        self.database_prefix = database_prefix
        self.log_path = Path(log_path)
        self.broker = broker or Broker()
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
            "AMQP_URI": self.broker.amqp_uri(self.vhost),
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
            "CASHFREE_FIRST_PAYMENT_POLL_SECONDS": "1",
            # Tests reconcile on demand; one that tests the schedule starts a stack with a short one.
            "RECONCILE_INTERVAL_SECONDS": "3600",
            "PYTHONUNBUFFERED": "1",
            **({"DATABASE_URL": database_url} if database_url else {}),
            **(extra_env or {}),
        }
        self.supervisor_dir = Path(tempfile.mkdtemp(prefix="stack-supervisor-"))
        self.supervisor = Supervisor(self.supervisor_dir / "supervisord.conf")
        self.process = None

    def database_url(self, service_name):
        """A libpq URL of one service's database in this stack (for benchmarks' own queries)."""
        url = make_url(self.env.get("DATABASE_URL") or settings().database_url).set(drivername="postgresql",
                                                    database=f"{self.database_prefix}{service_name}")
        return url.render_as_string(hide_password=False)

    def start(self):
        """Fresh vhost and databases, then every process; returns once all answer (else raises)."""
        if threading.current_thread() is threading.main_thread():
            # The processes run in a session of their own (a Ctrl-C meant for the caller must not
            # kill them before stop() has drained them): on SIGTERM (timeout(1), CI's limit) the caller
            # must still reach its `finally: stack.stop()`, or the stack outlives it.
            signal.signal(signal.SIGTERM, _exit_on_sigterm)
        auth = (self.broker.user, self.broker.password)
        requests.put(f"{self.broker.api}/vhosts/{self.vhost}", auth=auth, timeout=10).raise_for_status()
        requests.put(f"{self.broker.api}/permissions/{self.vhost}/{self.broker.user}", auth=auth, timeout=10,
                     json={"configure": ".*", "write": ".*", "read": ".*"}).raise_for_status()
        database_url = self.env.get("DATABASE_URL")
        with _environ(**({"DATABASE_URL": database_url} if database_url else {})):
            recreate_databases(self.database_prefix)
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "deploy.supervise", "--dir", str(self.supervisor_dir), *processes()],
                cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        for url in (f"{self.base_url}/healthz", f"{self.stripe_sandbox}/_sandbox/health",
                    f"{self.cashfree_sandbox}/_sandbox/health"):
            if not wait_healthy(url, 60):
                self.stop()
                raise RuntimeError(f"{url} did not answer; log:\n{self.log_path.read_text()[-5000:]}")
        return self

    def kill(self, name, sig=signal.SIGKILL):
        """Send `sig` to one program (supervisord restarts it if it dies); returns the pid hit."""
        pid = self.supervisor.pid(name)
        if pid is None:
            raise RuntimeError(f"{name} is not running: {self.supervisor.status()}")
        os.kill(pid, sig)
        return pid

    def stop(self):
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
        shutil.rmtree(self.supervisor_dir, ignore_errors=True)
        requests.delete(f"{self.broker.api}/vhosts/{self.vhost}", auth=(self.broker.user, self.broker.password),
                        timeout=10)
