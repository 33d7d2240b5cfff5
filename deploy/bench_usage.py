"""`make bench-usage`: usage ingestion and reads, measured against PostgreSQL's own insert rate.

Starts a stack of its own (deploy/stack.py), makes 20 organizations, then:
- ingestion: batches of 1000 storage_bytes events through POST /api/v1/usage/events, 10 % of each
  batch resent from the batch before (duplicates), from 4 concurrent senders, as fast as answered
  (closed loop): events/s accepted and durable (the 202 comes after the commit);
- reads: GET {acct}/usage at a fixed 50/s (open loop) while ingestion runs: p50/p99;
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
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import psycopg
import requests

from deploy.stack import ROOT, IsolatedStack

BATCH, SENDERS, BATCHES, READ_RATE = 1000, 4, 60, 50
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

        read_latencies, stop = [], threading.Event()

        def reader():
            session, next_at = requests.Session(), time.perf_counter()
            while not stop.is_set():
                next_at += 1 / READ_RATE
                started = time.perf_counter()
                answer = session.get(f"{stack.base_url}/api/v1/orgs/{orgs[len(read_latencies) % 20]}/billing/usage",
                                     headers=auth)
                if answer.status_code == 200:
                    read_latencies.append((time.perf_counter() - started) * 1000)
                time.sleep(max(0.0, next_at - time.perf_counter()))

        def send(batch):
            answer = requests.post(f"{stack.base_url}/api/v1/usage/events", json={"events": batch},
                                   headers={"Authorization": f"Bearer {KEY}"}, timeout=60)
            answer.raise_for_status()
            return answer.json()

        read_thread = threading.Thread(target=reader)
        read_thread.start()
        started = time.perf_counter()
        with ThreadPoolExecutor(SENDERS) as pool:
            results = list(pool.map(send, batches))
        elapsed = time.perf_counter() - started
        stop.set()
        read_thread.join()
        accepted = sum(r["accepted"] for r in results)
        duplicates = sum(r["duplicates"] for r in results)
        rejected = sum(len(r["rejected"]) for r in results)

        # The ceiling: the same rows, straight into PostgreSQL.
        rows = [(e["id"] + "-raw", e["account"]["kind"], e["account"]["id"], e["metric"], e["value"], e["timestamp"])
                for batch in batches for e in batch]
        with psycopg.connect("dbname=bench_usage host=127.0.0.1") as conn:
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
            "raw_postgres_inserts_per_s": round(len(rows) / raw_elapsed),
            "ratio_to_ceiling": round((len(rows) / elapsed) / (len(rows) / raw_elapsed), 2),
            "usage_read_p50_ms": round(percentile(read_latencies, 0.50), 1),
            "usage_read_p99_ms": round(percentile(read_latencies, 0.99), 1),
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
