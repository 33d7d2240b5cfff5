"""`make bench-usage`: usage ingestion and reads, measured against PostgreSQL's own insert rate.

Starts a stack of its own (deploy/stack.py), makes 20 organizations, then:
- reads alone: GET {acct}/usage at a fixed 50/s (open loop) on the quiet stack: p50/p99, after
  every client has connected and read every url once;
- ingestion: 200 batches of 1000 storage_bytes events through POST /api/v1/usage/events, 10 % of
  each batch resent from the batch before (duplicates), from 4 concurrent senders, as fast as
  answered (closed loop): events/s accepted and durable (the 202 comes after the commit), over the
  whole run and over its first 60 batches (the run's length before 2026-11-26's evening: the rate
  falls as the run goes on). Bodies are encoded
  before the clock starts: the senders' own JSON encoding is not the system's work;
- reads under ingestion: the same reads while ingestion runs: p50/p99. The reader is a process of
  its own, so the senders' threads cannot hold the GIL it needs to send and time its requests;
- the ceiling: the same rows inserted straight into a table of the same shape with psycopg
  (executemany in one transaction per 1000), in the same run on the same machine.
Prints a table and writes results/usage_bench.json.
"""
import json
import os
import platform
import statistics
import sys
import tempfile
import multiprocessing
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import psycopg
import requests

from deploy.stack import ROOT, IsolatedStack

# 200 batches: about 10 s of ingestion, so that reads under it number in the hundreds (a p99 of a
# hundred reads is their maximum).
BATCH, SENDERS, BATCHES, READ_RATE, QUIET_READS = 1000, 4, 200, 50, 500
FIRST_BATCHES = 60  # the rate over the first 60 batches too: what earlier runs of this bench measured
READ_CONNECTIONS = 8
KEY = "e2e-usage-key"


def make_events(accounts, previous):
    now = datetime.now(timezone.utc).isoformat()
    resent = previous[: BATCH // 10]
    fresh = [{"id": uuid.uuid4().hex, "account": accounts[i % len(accounts)], "metric": "storage_bytes",
              "value": i * 1024, "timestamp": now} for i in range(BATCH - len(resent))]
    return resent + fresh


def percentile(values, share):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


def timed_reads(urls, auth, rate, count=None, stop=None, ready=None):
    """GET the urls in turn at `rate` per second, open loop: each request has a scheduled start and is
    sent then by one of READ_CONNECTIONS clients, whether or not earlier ones have been answered,
    and its latency counts from the scheduled start (a slow answer delays no later measurement).

    Untimed first, every client connects and reads every url once: a client's first request pays
    for its TCP connection, and a url's first read for statements the server prepares once; neither
    is what a read costs. `ready` (an Event) is set then."""
    local = threading.local()
    warmed = threading.Barrier(READ_CONNECTIONS)

    def warm_up():
        local.session = requests.Session()
        for url in urls:
            local.session.get(url, headers=auth, timeout=30)
        warmed.wait()  # holds each client's thread until all are warm: one warm-up per thread

    def read(url, scheduled):
        time.sleep(max(0.0, scheduled - time.perf_counter()))
        answer = local.session.get(url, headers=auth, timeout=30)
        return (time.perf_counter() - scheduled) * 1000 if answer.status_code == 200 else None

    with ThreadPoolExecutor(READ_CONNECTIONS) as pool:
        for warming in [pool.submit(warm_up) for _ in range(READ_CONNECTIONS)]:
            warming.result()
        if ready is not None:
            ready.set()
        futures, scheduled = [], time.perf_counter()
        while (count is None or len(futures) < count) and not (stop is not None and stop.is_set()):
            scheduled += 1 / rate
            futures.append(pool.submit(read, urls[len(futures) % len(urls)], scheduled))
            time.sleep(max(0.0, scheduled - time.perf_counter() - 0.001))
    return [latency for latency in (future.result() for future in futures) if latency is not None]


def read_until(urls, auth, rate, stop, ready, results_queue):
    """The reader process's body: warms up, says `ready`, reads until `stop`, hands back the latencies."""
    results_queue.put(timed_reads(urls, auth, rate, stop=stop, ready=ready))


def main():
    log = Path(tempfile.mkdtemp()) / "stack.log"
    stack = IsolatedStack("bench_", log).start()
    try:
        http = requests.Session()
        owner = http.post(f"{stack.base_url}/api/v1/auth/signup", json={
            "email": f"bench-{uuid.uuid4().hex[:6]}@example.com", "password": "bench password 1",
            "name": "Bench", "country": "US"}).json()
        auth = {"Authorization": f"Bearer {owner['token']}"}
        orgs = [http.post(f"{stack.base_url}/api/v1/orgs", json={"name": f"Org {i}"}, headers=auth).json()["id"]
                for i in range(20)]
        accounts = [{"kind": "org", "id": org_id} for org_id in orgs]
        time.sleep(2)  # usage learns of the orgs from org.created

        batches, previous = [], []
        for _ in range(BATCHES):
            previous = make_events(accounts, previous)
            batches.append(previous)

        bodies = [json.dumps({"events": batch}).encode() for batch in batches]
        read_urls = [f"{stack.base_url}/api/v1/orgs/{org_id}/billing/usage" for org_id in orgs]
        quiet_reads = timed_reads(read_urls, auth, READ_RATE, QUIET_READS)

        finished = []  # perf_counter when each batch was answered

        def send(body):
            answer = requests.post(f"{stack.base_url}/api/v1/usage/events", data=body, timeout=60, headers={
                "Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
            answer.raise_for_status()
            finished.append(time.perf_counter())
            return answer.json()

        context = multiprocessing.get_context("spawn")
        stop, ready, results_queue = context.Event(), context.Event(), context.Queue()
        reader = context.Process(target=read_until, args=(read_urls, auth, READ_RATE, stop, ready, results_queue))
        reader.start()
        ready.wait(60)
        started = time.perf_counter()
        with ThreadPoolExecutor(SENDERS) as pool:
            results = list(pool.map(send, bodies))
        elapsed = time.perf_counter() - started
        stop.set()
        read_latencies = results_queue.get(timeout=60)
        reader.join(30)
        accepted = sum(r["accepted"] for r in results)
        duplicates = sum(r["duplicates"] for r in results)
        rejected = sum(len(r["rejected"]) for r in results)

        # The ceiling: the same rows, straight into PostgreSQL.
        rows = [(e["id"] + "-raw", e["account"]["kind"], e["account"]["id"], e["metric"], e["value"], e["timestamp"])
                for batch in batches for e in batch]
        with psycopg.connect(stack.database_url("usage")) as conn:
            conn.execute("CREATE TEMP TABLE raw_ceiling (id text PRIMARY KEY, kind text, account text, metric text,"
                         " value bigint, ts timestamptz)")
            raw_started = time.perf_counter()
            for i in range(0, len(rows), BATCH):
                with conn.transaction():
                    conn.cursor().executemany("INSERT INTO raw_ceiling VALUES (%s, %s, %s, %s, %s, %s)"
                                              " ON CONFLICT DO NOTHING",
                                              rows[i:i + BATCH])
            raw_elapsed = time.perf_counter() - raw_started

        figures = {
            "machine": f"{platform.node()} {os.cpu_count()} cores, {platform.python_version()}",
            "events_sent": len(rows), "accepted": accepted, "duplicates": duplicates, "rejected": rejected,
            "ingest_events_per_s": round(len(rows) / elapsed),
            f"ingest_events_per_s_first_{FIRST_BATCHES}_batches": round(
                FIRST_BATCHES * BATCH / (sorted(finished)[FIRST_BATCHES - 1] - started)),
            "raw_postgres_inserts_per_s": round(len(rows) / raw_elapsed),
            "ratio_to_ceiling": round((len(rows) / elapsed) / (len(rows) / raw_elapsed), 2),
            "usage_read_quiet_p50_ms": round(percentile(quiet_reads, 0.50), 1),
            "usage_read_quiet_p99_ms": round(percentile(quiet_reads, 0.99), 1),
            "usage_read_p50_ms": round(percentile(read_latencies, 0.50), 1),
            "usage_read_p99_ms": round(percentile(read_latencies, 0.99), 1),
            "usage_read_max_ms": round(max(read_latencies), 1) if read_latencies else None,
            "reads_measured": len(read_latencies),
            "reads_mean_ms": round(statistics.fmean(read_latencies), 1) if read_latencies else None,
        }
    finally:
        stack.stop()
    width = max(map(len, figures))
    print("\nusage benchmark")
    for name, value in figures.items():
        print(f"  {name:<{width}}  {value}")
    out = ROOT / "results" / "usage_bench.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(figures, indent=2))
    print(f"\nwritten to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
