"""A PostgreSQL server and a RabbitMQ node of one's own, in a temporary directory on free ports.

Fault injection restarts the database and the broker; the machine's own are shared with other
work and must never be restarted, so the fault harness (tests/faults) runs its stacks on these.
Both run as their system users (postgres, rabbitmq), which own the directory; RabbitMQ runs as a
second node beside the machine's (its own node name, AMQP, distribution and management ports,
sharing only epmd). Durable state (the data directory, the node's Mnesia and message store) is
kept across `restart()`, as a real restart keeps it.
"""
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from glob import glob
from pathlib import Path

import psycopg
import requests

from deploy.stack import Broker, free_port


def _wait(check, seconds, what):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise RuntimeError(f"{what} not ready after {seconds} s")


def _as(user, *command, **kwargs):
    return subprocess.run(["runuser", "-u", user, "--", *command], check=True, capture_output=True, text=True,
                          **kwargs)


class PrivatePostgres:
    """initdb into a temporary directory, trust authentication, listening on 127.0.0.1:<free port>."""

    def __init__(self):
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="private-pg-"))
        self.data = self.dir / "data"
        shutil.chown(self.dir, "postgres", "postgres")
        self.bin = Path(sorted(glob("/usr/lib/postgresql/*/bin/initdb"))[-1]).parent
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/"

    def start(self):
        if not self.data.exists():
            _as("postgres", str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
                "--no-sync", "-E", "UTF8")
        options = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c max_connections=300 -c synchronous_commit=off")
        _as("postgres", str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options,
            "-l", str(self.dir / "server.log"), "-w", "-t", "60", "start")
        _wait(self.answers, 60, "private PostgreSQL")
        return self

    def answers(self):
        try:
            with psycopg.connect(self.url + "postgres", connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.Error:
            return False

    def stop(self, mode="fast"):
        _as("postgres", str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def restart(self, down_seconds=0):
        self.stop()
        time.sleep(down_seconds)
        self.start()

    def destroy(self):
        if (self.data / "postmaster.pid").exists():
            self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


class PrivateRabbit:
    """A second RabbitMQ node (with the management plugin), its files in a temporary directory."""

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="private-rabbit-"))
        self.node = f"private_{uuid.uuid4().hex[:8]}@localhost"
        self.broker = Broker(amqp_port=free_port(), management_port=free_port())
        (self.dir / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.broker.amqp_port}\n"
            f"management.tcp.port = {self.broker.management_port}\n"
            "management.tcp.ip = 127.0.0.1\n"
            "loopback_users = none\n")
        (self.dir / "enabled_plugins").write_text("[rabbitmq_management].\n")
        for sub in ("mnesia", "log"):
            (self.dir / sub).mkdir()
        subprocess.run(["chown", "-R", "rabbitmq:rabbitmq", str(self.dir)], check=True)
        self.env = {
            **os.environ,
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_PORT": str(self.broker.amqp_port),
            "RABBITMQ_DIST_PORT": str(free_port()),
            "RABBITMQ_CONFIG_FILE": str(self.dir / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(self.dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.dir / "log"),
            "RABBITMQ_PID_FILE": str(self.dir / "rabbit.pid"),
        }
        self.process = None

    def start(self):
        with open(self.dir / "server.out", "a") as out:
            self.process = subprocess.Popen(["rabbitmq-server"], env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        _wait(lambda: self.answers() or self.process.poll() is not None, 120, "private RabbitMQ")
        if not self.answers():
            raise RuntimeError(f"private RabbitMQ exited: {(self.dir / 'server.out').read_text()[-3000:]}")
        return self

    def answers(self):
        try:
            return requests.get(f"{self.broker.api}/overview", auth=(self.broker.user, self.broker.password),
                                timeout=3).status_code == 200
        except requests.RequestException:
            return False

    def stop(self):
        subprocess.run(["rabbitmqctl", "-n", self.node, "stop"], env=self.env, capture_output=True, timeout=120)
        if self.process is not None:
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
            self.process = None

    def restart(self, down_seconds=0):
        self.stop()
        time.sleep(down_seconds)
        self.start()

    def destroy(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
