"""`make bench`: the portal's hot paths against ceilings measured in the same run on the same machine.

Starts a stack of its own (deploy/stack.py: every service and both gateway sandboxes, its own
RabbitMQ vhost and databases), then:

1. checkout creation (POST {acct}/checkout) at the sandboxes, for many organizations of both
   regions: open loop at a modest rate (latency), then closed loop at 32 clients (throughput); the
   sandboxes time their own work (GET /_sandbox/timings), shown apart;
2. webhook intake: for each checkout, the webhooks its sandbox would send once paid
   (deploy/bench_webhooks.py), signed, 10 % of them sent twice; closed loop at 32 clients for one
   half of the payments, open loop at 100 webhooks/s for the other half; plan.purchased is watched
   on billing's exchange, and must come exactly once per payment;
3. billing summary reads (GET {acct}): closed loop at 32 (wrk when installed, and aiohttp), open
   loop at 200 reads/s;
4. ceilings: a bare nameko HTTP answer and a bare route making one RPC (deploy/bench_ceiling.py;
   each with wrk and aiohttp, which is also the client's own ceiling), a bare nameko RPC echo, a
   bare kombu publish -> consume, and the webhook rows inserted straight into PostgreSQL;
5. resident memory of every service at rest and after the run (which ends with a burst of sign-ins,
   whose argon2 password checks take 64 MiB each).

Prints one table (with the usage benchmark's figures from results/usage_bench.json when present)
and writes results/bench.json. `--profile` also samples the services with py-spy during the closed
loops and writes results/profiles/ (figures are then lower: py-spy takes CPU too).
"""
import argparse
import asyncio
import json
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import psycopg
import requests
from kombu import Connection, Consumer, Exchange, Producer, Queue
from sqlalchemy.engine import make_url

from deploy import bench_load
from deploy.bench_load import Request, closed_loop, open_loop, percentile
from deploy.bench_webhooks import CashfreePayments, StripePayments
from deploy.stack import ROOT, IsolatedStack, free_port
from shared.config import SANDBOX_VALUES, settings
from shared.migrate import services_with_migrations

CONCURRENCY = 32
WEBHOOK_RATE, READ_RATE, CHECKOUT_RATE = 100, 200, 10
DUPLICATE_SHARE = 0.10
PLAN = "growth_monthly"
PASSWORD = "bench password 1"
PHONES = {"US": None, "IN": "+919812345678"}  # Cashfree takes no payment without the payer's phone
SERVICES = ("identity", "orgs", "billing", "gateway_stripe", "gateway_cashfree", "usage", "gateway_http")
# The bench always runs against the sandboxes, whatever credentials the shell has.
SANDBOX_CREDENTIALS = SANDBOX_VALUES


def log(message):
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def ms(seconds):
    return round(seconds * 1000, 1)


def latency_figures(latencies_s):
    return {"p50_ms": ms(percentile(latencies_s, 0.50)), "p99_ms": ms(percentile(latencies_s, 0.99)),
            "count": len(latencies_s)}


def checked(run, what, allowed=()):
    """A load run whose failures are reported (a few are tolerated only when listed as allowed)."""
    failures = [r for r in run.failures() if r.status not in allowed]
    if failures:
        sample = failures[0]
        log(f"{what}: {len(failures)} of {len(run.results)} failed, e.g. {sample.status} {sample.error}")
    return run


# -- processes and memory ----------------------------------------------------------------------

def _parent(pid):
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


def stack_processes(root_pid):
    """{name: pid} of the stack's processes that descend from `root_pid` (its supervisor; other
    stacks may run beside it): `python -m shared.runner <name>` by service name, and the sandboxes
    (`python -m services.gateway_<x>.sandbox`) as <x>_sandbox."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            words = [a.decode(errors="replace") for a in (entry / "cmdline").read_bytes().split(b"\0") if a]
        except OSError:
            continue
        if "shared.runner" in words and words.index("shared.runner") + 1 < len(words):
            name = words[words.index("shared.runner") + 1]
        elif any(w.startswith("services.gateway_") and w.endswith(".sandbox") for w in words):
            name = next(w for w in words if w.endswith(".sandbox")).split(".")[1].removeprefix("gateway_") + "_sandbox"
        else:
            continue
        ancestor, hops = int(entry.name), 0
        while ancestor > 1 and ancestor != root_pid and hops < 10:
            ancestor, hops = _parent(ancestor), hops + 1
        if ancestor == root_pid:
            found[name] = int(entry.name)
    return found


def cpu_seconds(pid):
    """User + system CPU time a process has used so far (None once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU time each of the stack's processes, the PostgreSQL backends serving its databases, and
    this client spent during a phase. (RabbitMQ is one process for every vhost on the machine, so
    its share cannot be told apart.)"""

    def __init__(self, pids, postgres_url, database_prefix):
        self.pids, self.postgres_url, self.database_prefix = pids, postgres_url, database_prefix

    def _backends(self):
        """{pid: CPU s} of the PostgreSQL backends connected to the stack's databases."""
        try:
            with psycopg.connect(self.postgres_url, autocommit=True) as conn:
                pids = [row[0] for row in conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname LIKE %s", (self.database_prefix + "%",))]
        except psycopg.OperationalError:  # out of connections on a shared machine: not measured
            return None
        return {pid: cpu_seconds(pid) for pid in pids}

    def snapshot(self):
        own = os.times()
        return {**{name: cpu_seconds(pid) for name, pid in self.pids.items()},
                "bench client": own.user + own.system + own.children_user + own.children_system,
                "postgres backends": self._backends()}

    def per_request(self, before, requests_done):
        """{process: CPU ms per request} since `before`, biggest first, with the stack's total."""
        after = self.snapshot()
        backends_before, backends_after = before.pop("postgres backends"), after.pop("postgres backends")
        spent = {name: (after[name] - before[name]) * 1000 / requests_done
                 for name in after if after.get(name) is not None and before.get(name) is not None and requests_done}
        if backends_before is not None and backends_after is not None and requests_done:
            # Backends that ended in between are lost; those born in between count from their start.
            spent["postgres backends"] = sum((cpu or 0) - (backends_before.get(pid) or 0)
                                             for pid, cpu in backends_after.items()) * 1000 / requests_done
        ordered = dict(sorted(((k, round(v, 2)) for k, v in spent.items()), key=lambda kv: -kv[1]))
        ordered["total of the stack"] = round(sum(v for k, v in spent.items() if k != "bench client"), 2)
        return ordered


def rss_mb(pid):
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def py_spy():
    """py-spy from the virtualenv (a dev tool: pip install py-spy) or the PATH."""
    return shutil.which("py-spy", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")


class Profiler:
    """py-spy record on some services for the length of a phase (raw collapsed stacks)."""

    def __init__(self, folder, pids):
        self.folder, self.pids, self.running = folder, pids, []

    def start(self, phase, names):
        if self.folder is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        for name in names:
            out = self.folder / f"{phase}-{name}.txt"
            self.running.append(subprocess.Popen(
                [py_spy(), "record", "--nonblocking", "--format", "raw", "--rate", "200", "-o", str(out),
                 "-p", str(self.pids[name])], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def stop(self):
        for process in self.running:
            process.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        for process in self.running:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
        self.running = []


# -- the purchase tap ---------------------------------------------------------------------------

class PurchaseTap:
    """Watches plan.purchased on billing's exchange: when each checkout's purchase was announced."""

    def __init__(self, amqp_uri):
        self.connection = Connection(amqp_uri)
        exchange = Exchange("billing.events", type="topic", durable=True)
        self.queue = Queue(f"bench-purchases-{uuid.uuid4().hex[:8]}", exchange, routing_key="plan.purchased",
                           durable=False, auto_delete=True)
        self.first_seen, self.count = {}, 0
        self.lock, self.stopping = threading.Lock(), threading.Event()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, name="purchase-tap", daemon=True)
        self.thread.start()
        if not self.ready.wait(15):
            raise RuntimeError("the plan.purchased tap could not bind to billing.events")

    def _on_message(self, body, message):
        seen = time.perf_counter()
        with self.lock:
            self.count += 1
            self.first_seen.setdefault(body.get("checkout_id"), seen)

    def _run(self):
        with Consumer(self.connection.channel(), queues=[self.queue], callbacks=[self._on_message],
                      accept=["json"], no_ack=True):
            self.ready.set()
            while not self.stopping.is_set():
                try:
                    self.connection.drain_events(timeout=0.5)
                except socket.timeout:
                    pass

    def wait_for(self, checkout_ids, seconds):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            with self.lock:
                if all(c in self.first_seen for c in checkout_ids):
                    return True
            time.sleep(0.1)
        return False

    def close(self):
        self.stopping.set()
        self.thread.join(5)
        self.connection.release()


# -- the phases ---------------------------------------------------------------------------------

class Bench:
    def __init__(self, stack, orgs_per_country, profile_dir):
        self.stack, self.base = stack, stack.base_url
        self.orgs_per_country = orgs_per_country
        self.figures = {"machine": f"{platform.node()}, {os.cpu_count()} cores, Python {platform.python_version()}",
                        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        self.all_pids = {**stack_processes(stack.process.pid), "supervisor": stack.process.pid}
        self.pids = {name: pid for name, pid in self.all_pids.items() if name in SERVICES}
        self.cpu = CpuMeter(self.all_pids, database_url(stack, "postgres"), stack.database_prefix)
        self.profiler = Profiler(profile_dir, self.pids)
        self.ceiling_processes = []

    # setup

    def signup(self, country):
        email = f"bench-{country.lower()}-{uuid.uuid4().hex[:8]}@example.com"
        answer = requests.post(f"{self.base}/api/v1/auth/signup", timeout=30, json={
            "email": email, "password": PASSWORD, "name": f"Bench {country}", "country": country,
            "phone": PHONES[country]})
        answer.raise_for_status()
        self.emails.append(email)
        return {"Authorization": f"Bearer {answer.json()['token']}", "Content-Type": "application/json"}

    def make_orgs(self):
        self.emails = []
        self.auth = {country: self.signup(country) for country in ("US", "IN")}
        wanted = [Request("POST", "/api/v1/orgs", self.auth[country],
                          json.dumps({"name": f"Bench {country} {i}", "country": country}).encode(), country)
                  for i in range(self.orgs_per_country) for country in ("US", "IN")]
        run = checked(asyncio.run(closed_loop(self.base, wanted, CONCURRENCY)), "org creation")
        self.orgs = []  # (country, org id)
        for result in run.ok:
            self.orgs.append((result.request.tag, result.body["id"]))
        log(f"{len(self.orgs)} organizations in {run.seconds:.1f} s")

    # 1. checkouts

    def checkout_requests(self, orgs):
        return [Request("POST", f"/api/v1/orgs/{org_id}/billing/checkout", self.auth[country],
                        json.dumps({"plan_code": PLAN}).encode(), (country, org_id)) for country, org_id in orgs]

    def sandbox_timings(self):
        """Per gateway: the sandbox's own ms for each API request it served since the last call."""
        out = {}
        for gateway, url, prefix in (("stripe", self.stack.stripe_sandbox, "/v1/"),
                                     ("cashfree", self.stack.cashfree_sandbox, "/pg/")):
            answer = requests.get(f"{url}/_sandbox/timings", timeout=10)
            answer.raise_for_status()
            requests.delete(f"{url}/_sandbox/timings", timeout=10).raise_for_status()
            out[gateway] = [t["ms"] for t in answer.json() if t["path"].startswith(prefix)]
        return out

    def checkouts(self):
        open_count = min(len(self.orgs) // 8, 4 * CHECKOUT_RATE)
        latency_orgs, throughput_orgs = self.orgs[:open_count], self.orgs[open_count:]
        self.sandbox_timings()
        latency_run = checked(asyncio.run(open_loop(self.base, self.checkout_requests(latency_orgs), CHECKOUT_RATE)),
                              "checkouts (open loop)")
        latency_sandbox = self.sandbox_timings()
        run = checked(asyncio.run(closed_loop(self.base, self.checkout_requests(throughput_orgs), CONCURRENCY)),
                      "checkouts (closed loop)")
        sandbox = self.sandbox_timings()
        self.checkouts_made = [(r.request.tag[0], r.request.tag[1], r.body) for r in latency_run.ok + run.ok]
        made = Counter(country for country, _, _ in self.checkouts_made)
        sandbox_ms = {gateway: sum(latency_sandbox[gateway]) + sum(sandbox[gateway]) for gateway in sandbox}
        per_checkout = {gateway: round(sandbox_ms[gateway] / made[country], 2) if made[country] else None
                        for gateway, country in (("stripe", "US"), ("cashfree", "IN"))}
        all_requests = latency_sandbox["stripe"] + sandbox["stripe"] + latency_sandbox["cashfree"] + sandbox["cashfree"]
        self.figures["checkout"] = {
            "closed_loop": {"per_second": round(run.per_second, 1), **latency_figures([r.latency for r in run.ok]),
                            "failed": len(run.failures())},
            "open_loop": {"rate": CHECKOUT_RATE, **latency_figures([r.latency for r in latency_run.ok]),
                          "failed": len(latency_run.failures())},
            "sandbox_ms_per_checkout": per_checkout,
            "sandbox_request": {"count": len(all_requests), "p50_ms": round(percentile(all_requests, 0.5), 2),
                                "p99_ms": round(percentile(all_requests, 0.99), 2)},
        }
        log(f"checkouts: {run.per_second:.1f}/s closed loop; open loop p50/p99 "
            f"{self.figures['checkout']['open_loop']['p50_ms']}/{self.figures['checkout']['open_loop']['p99_ms']} ms;"
            f" sandbox ms per checkout {per_checkout}")

    # 2. webhooks

    def build_webhooks(self):
        stripe_pay = StripePayments(self.stack.stripe_sandbox, SANDBOX_CREDENTIALS["STRIPE_SECRET_KEY"],
                                    SANDBOX_CREDENTIALS["STRIPE_WEBHOOK_SECRET"])
        cashfree_pay = CashfreePayments(f"{self.stack.cashfree_sandbox}/pg", SANDBOX_CREDENTIALS["CASHFREE_CLIENT_ID"],
                                        SANDBOX_CREDENTIALS["CASHFREE_CLIENT_SECRET"])
        payments = []  # [[Webhook, ...] per checkout], in the order the sandbox emits them
        for country, _, checkout in self.checkouts_made:
            if country == "US":
                session_id = checkout["redirect_url"].rstrip("/").rsplit("/", 1)[1]
                payments.append(stripe_pay.pay(checkout["id"], session_id))
            else:  # the adapter names the Cashfree subscription after our checkout
                payments.append(cashfree_pay.pay(checkout["id"], f"chk_{checkout['id'].replace('-', '')}"))
        random.Random(7).shuffle(payments)  # both gateways mixed
        half = len(payments) // 2
        self.payment_sets = {"closed": payments[:half], "open": payments[half:]}
        types = Counter(w.event_type for p in payments for w in p)
        self.figures["webhook_mix"] = dict(types)
        log(f"webhooks built for {len(payments)} payments: {dict(types)}")

    @staticmethod
    def with_duplicates(payments, seed):
        """The payments' webhooks in order, and 10 % of them sent again somewhere later, as retries are."""
        stream = [w for payment in payments for w in payment]
        rng = random.Random(seed)
        for original in rng.sample(range(len(stream)), round(DUPLICATE_SHARE * len(stream))):
            stream.insert(rng.randint(original + 1, len(stream)), stream[original])
        return stream

    @staticmethod
    def webhook_request(webhook):
        return Request("POST", webhook.path, webhook.headers, webhook.body, webhook)

    def redeliver(self, run, what):
        """Send again what was not answered 200, as a gateway retries (its figures keep the failure):
        a purchase must not be missing because this machine's PostgreSQL ran out of connections."""
        failed = [r.request for r in run.failures()]
        for attempt in range(5):
            if not failed:
                return 0
            time.sleep(0.5 * (attempt + 1))
            retry = asyncio.run(closed_loop(self.base, failed, 4))
            failed = [r.request for r in retry.failures()]
        log(f"{what}: {len(failed)} webhooks still refused after 5 redeliveries")
        return len(failed)

    def webhooks(self):
        tap = PurchaseTap(self.stack.env["AMQP_URI"])
        try:
            self._webhooks_closed(tap)
            self._webhooks_open(tap)
        finally:
            tap.close()
        self.figures["purchases"] = {
            "unique_payments": sum(map(len, self.payment_sets.values())),
            "announced": tap.count, "distinct_checkouts": len(tap.first_seen)}

    def _webhooks_closed(self, tap):
        payments = self.payment_sets["closed"]
        stream = [self.webhook_request(w) for w in self.with_duplicates(payments, 1)]
        self.route_beside("webhooks", "aiohttp")
        self.profiler.start("webhooks", ["gateway_http", "gateway_stripe", "gateway_cashfree", "billing"])
        cpu_before = self.cpu.snapshot()
        try:
            run = checked(asyncio.run(closed_loop(self.base, stream, CONCURRENCY)), "webhooks (closed loop)")
        finally:
            self.profiler.stop()
        undelivered = self.redeliver(run, "webhooks (closed loop)")
        ids = [p[0].checkout_id for p in payments]
        complete = tap.wait_for(ids, 90)
        # Until every purchase is announced: billing's share of a webhook comes after the 200.
        self.figures["cpu_ms_per_webhook"] = self.cpu.per_request(cpu_before, len(stream))
        self.route_beside("webhooks", "aiohttp")
        self.figures["webhooks_closed"] = {
            "sent": len(stream), "duplicates": len(stream) - sum(map(len, payments)), "payments": len(payments),
            "accepted_per_second": round(run.per_second, 1), "failed": len(run.failures()),
            "undelivered_after_retries": undelivered,
            **latency_figures([r.latency for r in run.ok]), "all_purchased": complete}
        log(f"webhooks closed loop: {run.per_second:.1f}/s accepted ({len(run.failures())} failed); "
            f"all purchased: {complete}")

    def _webhooks_open(self, tap):
        payments = self.payment_sets["open"]
        stream = [self.webhook_request(w) for w in self.with_duplicates(payments, 2)]
        run = checked(asyncio.run(open_loop(self.base, stream, WEBHOOK_RATE)), "webhooks (open loop)")
        undelivered = self.redeliver(run, "webhooks (open loop)")
        ids = [p[0].checkout_id for p in payments]
        complete = tap.wait_for(ids, 90)
        first_due = {}
        for result in run.results:
            first_due.setdefault(result.request.tag.checkout_id, result.scheduled)
        with tap.lock:
            to_purchase = [tap.first_seen[c] - first_due[c] for c in ids if c in tap.first_seen and c in first_due]
        self.figures["webhooks_open"] = {
            "rate": WEBHOOK_RATE, "sent": len(stream), "payments": len(payments), "failed": len(run.failures()),
            "undelivered_after_retries": undelivered,
            "to_200": latency_figures([r.latency for r in run.ok]),
            "to_plan_purchased": latency_figures(to_purchase), "all_purchased": complete}
        log(f"webhooks open loop at {WEBHOOK_RATE}/s: to 200 {self.figures['webhooks_open']['to_200']}, "
            f"to plan.purchased {self.figures['webhooks_open']['to_plan_purchased']}")

    # 3. reads

    def read_requests(self):
        return [Request("GET", f"/api/v1/orgs/{org_id}/billing", self.auth[country], None, org_id)
                for country, org_id in self.orgs]

    def reads(self):
        reads = self.read_requests()
        # Once each (and a warm-up): every paid account's page shows its plan active.
        check = asyncio.run(closed_loop(self.base, reads, CONCURRENCY))
        active = sum(1 for r in check.ok if (r.body.get("subscription") or {}).get("status") == "active")
        self.figures["active_plans_on_billing_pages"] = active
        figures = {}
        if bench_load.wrk_available():
            us = [r.path for r in reads if r.headers is self.auth["US"]]
            # wrk sends one set of headers: the US owner's pages only (the IN owner's are the same work).
            self.route_beside("reads", "wrk")
            figures["wrk"] = bench_load.wrk(self.base, us, {"Authorization": self.auth["US"]["Authorization"]},
                                            CONCURRENCY, 8)
            self.route_beside("reads", "wrk")
        self.route_beside("reads", "aiohttp")
        self.profiler.start("reads", ["gateway_http", "billing", "identity", "orgs", "usage"])
        cpu_before = self.cpu.snapshot()
        try:
            run = checked(asyncio.run(closed_loop(self.base, reads, CONCURRENCY, seconds=8)), "reads (closed loop)")
        finally:
            self.profiler.stop()
        self.figures["cpu_ms_per_read"] = self.cpu.per_request(cpu_before, len(run.results))
        self.route_beside("reads", "aiohttp")
        figures["aiohttp"] = {"per_second": round(run.per_second, 1), "failed": len(run.failures()),
                              **latency_figures([r.latency for r in run.ok])}
        count = READ_RATE * 5  # 5 s of reads: past saturation the queue (and the run) grows with it
        run = checked(asyncio.run(open_loop(self.base, [reads[i % len(reads)] for i in range(count)], READ_RATE)),
                      "reads (open loop)")
        figures["open_loop"] = {"rate": READ_RATE, "failed": len(run.failures()),
                                **latency_figures([r.latency for r in run.ok])}
        self.figures["reads"] = figures
        log(f"reads: {json.dumps(figures)}")

    def logins(self, count=16):
        """A burst of sign-ins (each an argon2id check of 64 MiB): identity's memory after it counts too."""
        body = [json.dumps({"email": email, "password": PASSWORD}).encode() for email in self.emails]
        wanted = [Request("POST", "/api/v1/auth/login", {"Content-Type": "application/json"}, body[i % len(body)])
                  for i in range(count)]
        run = checked(asyncio.run(closed_loop(self.base, wanted, CONCURRENCY)), "logins")
        self.figures["logins"] = {"count": len(run.results), "per_second": round(run.per_second, 1),
                                  "failed": len(run.failures()), **latency_figures([r.latency for r in run.ok])}
        log(f"logins: {self.figures['logins']}")

    # 4. ceilings

    def start_ceiling_services(self):
        port = free_port()
        env = {**self.stack.env, "PYTHONUNBUFFERED": "1"}
        for argv in (["echo"], ["http", str(port)]):
            self.ceiling_processes.append(subprocess.Popen(
                [sys.executable, "-m", "deploy.bench_ceiling", *argv], cwd=ROOT, env=env, start_new_session=True,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        self.ceiling_url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.ceiling_url}/rpc", timeout=5).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.3)
        raise RuntimeError("the ceiling services did not start")

    def stop_ceiling_services(self):
        for process in self.ceiling_processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.ceiling_processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        self.ceiling_processes = []

    def ceiling(self, name, measure):
        """One ceiling's figures; on a shared machine one may fail (PostgreSQL out of connections...):
        it is then reported as such and the others still count."""
        try:
            figures = measure()
        except Exception as error:  # noqa: BLE001
            log(f"ceiling {name} failed: {error!r}")
            figures = {"error": repr(error)[:300]}
        self.figures.setdefault("ceilings", {})[name] = figures
        log(f"ceiling {name}: {json.dumps(figures)}")

    def http_ceiling(self, path):
        figures = {}
        if bench_load.wrk_available():
            figures["wrk"] = bench_load.wrk(self.ceiling_url, [path], {}, CONCURRENCY, 5)
        run = checked(asyncio.run(closed_loop(self.ceiling_url, [Request("GET", path)], CONCURRENCY, seconds=5)), path)
        figures["aiohttp"] = {"per_second": round(run.per_second, 1), **latency_figures([r.latency for r in run.ok])}
        return figures

    def ceilings(self):
        """The ceilings that need the stack's broker (measured while the stack idles)."""
        self.ceiling("http_constant", lambda: self.http_ceiling("/constant"))
        self.ceiling("http_one_rpc", lambda: self.http_ceiling("/rpc"))
        self.ceiling("nameko_rpc_echo", self.rpc_echo_ceiling)
        self.stop_ceiling_services()
        self.ceiling("kombu_publish_consume", self.kombu_ceiling)

    def route_beside(self, phase, client):
        """The bare route with one RPC, 3 s, right before or after `phase`: on a machine whose load
        drifts, a ratio compares figures measured minutes apart otherwise. Kept per phase."""
        if client == "wrk":
            figure = bench_load.wrk(self.ceiling_url, ["/rpc"], {}, CONCURRENCY, 3)["per_second"]
        else:
            figure = asyncio.run(closed_loop(self.ceiling_url, [Request("GET", "/rpc")], CONCURRENCY, 3)).per_second
        beside = self.figures.setdefault("route_beside", {}).setdefault(phase, {}).setdefault(client, [])
        beside.append(round(figure, 1))

    def rpc_echo_ceiling(self):
        out = subprocess.run([sys.executable, "-m", "deploy.bench_ceiling", "rpc-client", "5", str(CONCURRENCY)],
                             cwd=ROOT, env=self.stack.env, capture_output=True, text=True, timeout=120, check=True)
        result = json.loads(out.stdout.strip().splitlines()[-1])
        return {"per_second": round(result["calls"] / result["seconds"], 1), **latency_figures(result["latencies"])}

    def kombu_ceiling(self, count=3000):
        """Publish with broker confirms, persistent (as the outbox relay does), one message after the
        other; consume in another thread: messages/s through one hop, and each one's time in it."""
        exchange = Exchange(f"bench-ceiling-{uuid.uuid4().hex[:6]}", type="topic", durable=True, auto_delete=True)
        queue = Queue(f"{exchange.name}-q", exchange, routing_key="bench", durable=False, auto_delete=True)
        in_flight, ready, done = [], threading.Event(), threading.Event()

        def on_message(body, message):
            in_flight.append(time.perf_counter() - body["sent"])
            if len(in_flight) >= count:
                done.set()

        def consume():
            with Connection(self.stack.env["AMQP_URI"]) as connection:
                with Consumer(connection.channel(), queues=[queue], accept=["json"], no_ack=True,
                              callbacks=[on_message]):
                    ready.set()
                    deadline = time.monotonic() + 120
                    while not done.is_set() and time.monotonic() < deadline:
                        try:
                            connection.drain_events(timeout=0.5)
                        except socket.timeout:
                            pass

        consumer = threading.Thread(target=consume, name="kombu-ceiling", daemon=True)
        consumer.start()
        if not ready.wait(15):
            raise RuntimeError("the kombu ceiling's consumer did not start")
        with Connection(self.stack.env["AMQP_URI"], transport_options={"confirm_publish": True}) as connection:
            producer = Producer(connection.channel(), exchange=exchange, serializer="json")
            started = time.perf_counter()
            for i in range(count):
                producer.publish({"sent": time.perf_counter(), "i": i}, routing_key="bench", delivery_mode=2)
            done.wait(60)
            elapsed = time.perf_counter() - started
        consumer.join(5)
        return {"per_second": round(len(in_flight) / elapsed, 1), **latency_figures(in_flight)}

    def postgres_ceiling(self):
        """The webhook rows the closed loop stored, inserted straight into tables shaped like the
        adapters' webhook_events: one row per transaction, from as many connections as the two
        adapters' workers (nameko max_workers) could use at once."""
        webhooks = [w for payment in self.payment_sets["closed"] for w in payment]
        rows = []
        for copy in range(3):  # enough rows for a steady rate
            for w in webhooks:
                if w.gateway == "stripe":
                    event = json.loads(w.body)
                    rows.append(("stripe", (f"{w.event_id}-{copy}", w.event_type, event["created"], w.body.decode())))
                else:
                    rows.append(("cashfree", (f"{w.event_id}-{copy}", w.event_type, w.body.decode())))
        sql = {"stripe": "INSERT INTO bench_ceiling (id, type, created, payload, received_at)"
                         " VALUES (%s, %s, %s, %s::jsonb, now())",
               "cashfree": "INSERT INTO bench_ceiling (id, type, body, received_at) VALUES (%s, %s, %s, now())"}
        urls = {g: self.database(f"gateway_{g}") for g in sql}
        for url in urls.values():
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("DROP TABLE IF EXISTS bench_ceiling")
                conn.execute("CREATE TABLE bench_ceiling (LIKE webhook_events INCLUDING ALL)")
        # As many connections as the adapters' workers could hold (10 each), each on one gateway's rows.
        per_gateway = settings().nameko_config()["max_workers"]
        chunks = [(gateway, [row for g, row in rows if g == gateway][i::per_gateway])
                  for gateway in sql for i in range(per_gateway)]

        def insert(chunk):
            gateway, chunk_rows = chunk
            with connect(urls[gateway]) as conn:
                for row in chunk_rows:
                    with conn.transaction():
                        conn.execute(sql[gateway], row)

        try:
            started = time.perf_counter()
            with ThreadPoolExecutor(len(chunks)) as pool:
                list(pool.map(insert, chunks))
            elapsed = time.perf_counter() - started
        finally:
            for url in urls.values():
                with psycopg.connect(url, autocommit=True) as conn:
                    conn.execute("DROP TABLE IF EXISTS bench_ceiling")
        return {"per_second": round(len(rows) / elapsed, 1), "rows": len(rows), "connections": len(chunks)}

    def database(self, service):
        return database_url(self.stack, f"{self.stack.database_prefix}{service}")

    # 5. memory

    def memory(self, moment):
        self.figures.setdefault("rss_mb", {})[moment] = {name: rss_mb(pid)
                                                         for name, pid in sorted(self.all_pids.items())}


def connect(url, attempts=20):
    """psycopg.connect, waiting a little while PostgreSQL has no connection to spare (a shared machine)."""
    for attempt in range(attempts):
        try:
            return psycopg.connect(url)
        except psycopg.OperationalError as error:
            if "too many clients" not in str(error) or attempt == attempts - 1:
                raise
            time.sleep(0.5)


def database_url(stack, database):
    """A libpq URL of `database` on the stack's PostgreSQL server."""
    base = make_url(stack.env.get("DATABASE_URL") or "postgresql://127.0.0.1:5432/")
    return base.set(drivername="postgresql", database=database).render_as_string(hide_password=False)


def drop_databases(stack):
    with psycopg.connect(database_url(stack, "postgres"), autocommit=True) as conn:
        for name in services_with_migrations():
            conn.execute(f'DROP DATABASE IF EXISTS "{stack.database_prefix}{name}" WITH (FORCE)')


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orgs", type=int, default=200, help="organizations per region (one payment each)")
    parser.add_argument("--profile", action="store_true", help="py-spy the services during the closed loops")
    args = parser.parse_args(argv)
    if args.profile and py_spy() is None:
        parser.error("--profile needs py-spy (pip install py-spy)")
    os.environ.update(SANDBOX_CREDENTIALS)
    # SIGTERM (a CI timeout, kill) unwinds like Ctrl-C, through the clean-up below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    prefix = os.environ.get("BENCH_DATABASE_PREFIX", "bench_portal_")
    log_path = Path(tempfile.mkdtemp(prefix="bench-")) / "stack.log"
    profile_dir = ROOT / "results" / "profiles" if args.profile else None
    log(f"starting a stack (databases {prefix}*, log {log_path})")
    stack = IsolatedStack(prefix, log_path)
    bench, measured = None, False
    try:
        stack.start()
        time.sleep(3)  # let every service settle before memory is read at rest
        bench = Bench(stack, args.orgs, profile_dir)
        missing = set(SERVICES) - set(bench.pids)
        if missing:
            raise RuntimeError(f"service processes not found: {sorted(missing)}")
        bench.memory("at_rest")
        bench.start_ceiling_services()  # idle until measured; the ratios use them beside each phase too
        bench.make_orgs()
        bench.checkouts()
        bench.build_webhooks()
        bench.webhooks()
        bench.reads()
        bench.logins()
        bench.ceilings()
        bench.memory("after_run")
        measured = True
    finally:
        if bench is not None:
            bench.profiler.stop()
            bench.stop_ceiling_services()
        stack.stop()
        try:
            if measured:  # with the stack's connections closed: a shared PostgreSQL may have few to spare
                bench.ceiling("postgres_webhook_rows", bench.postgres_ceiling)
        finally:
            drop_databases(stack)
            log("stack stopped; its vhost and databases removed")

    from deploy.bench_report import report  # noqa: PLC0415  (after the run: nothing to import before)
    figures = bench.figures
    figures["usage"] = load_usage_figures()
    figures["profiled"] = args.profile
    text, verdicts = report(figures, wrk=bench_load.wrk_available())
    figures["targets"] = verdicts
    print(text)
    out = ROOT / "results" / "bench.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(figures, indent=2, default=str))
    print(f"written to {out}")
    if args.profile:
        from deploy.bench_report import summarise_profiles  # noqa: PLC0415
        print(summarise_profiles(profile_dir))
    return 0


def load_usage_figures():
    """The usage benchmark's figures (`make bench-usage`, run before this by `make bench`), if present."""
    path = ROOT / "results" / "usage_bench.json"
    if not path.exists():
        return None
    figures = json.loads(path.read_text())
    figures["written_at"] = datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).isoformat(timespec="seconds")
    return figures


if __name__ == "__main__":
    sys.exit(main())
