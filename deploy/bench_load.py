"""Load generators for `make bench`.

- closed loop: N clients, each sending its next request as soon as the last is answered; gives the
  throughput (requests answered per second). aiohttp on one asyncio loop, so 32 clients cost one
  thread rather than 32 (a client in threads spends the 2 cores on itself).
- open loop: requests sent at fixed, scheduled times (a rate below saturation), each latency
  measured from its scheduled time, so a client or server that falls behind shows in the figures
  instead of quietly sending later (coordinated omission).
- wrk, when installed (Debian's `wrk`): plain GETs in closed loop from C, for the read and bare HTTP
  figures, with a fraction of the client CPU that Python needs.
"""
import asyncio
import json
import math
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

TIMEOUT = aiohttp.ClientTimeout(total=60)


@dataclass
class Request:
    method: str
    path: str
    headers: object = None  # a dict, or a callable giving one when sent (signed webhooks)
    body: bytes = None
    tag: object = None  # whatever the caller needs to find the request again


@dataclass
class Result:
    request: Request
    status: int  # 0 when no answer came
    scheduled: float  # perf_counter: when the request was due (open loop) or sent (closed loop)
    sent: float
    answered: float
    error: str = ""
    raw: bytes = b""

    @property
    def latency(self):
        return self.answered - self.scheduled

    @property
    def body(self):
        return json.loads(self.raw) if self.raw else None


@dataclass
class Run:
    results: list
    seconds: float
    extra: dict = field(default_factory=dict)

    @property
    def ok(self):
        return [r for r in self.results if 200 <= r.status < 300]

    @property
    def per_second(self):
        return len(self.ok) / self.seconds if self.seconds else 0.0

    def failures(self):
        return [r for r in self.results if not 200 <= r.status < 300]


def percentile(values, share):
    """Nearest-rank percentile (share in 0..1) of `values`; nan for none."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))]


async def _send(session, base_url, request, scheduled):
    headers = request.headers() if callable(request.headers) else request.headers
    sent = time.perf_counter()
    try:
        async with session.request(request.method, base_url + request.path, headers=headers,
                                   data=request.body) as answer:
            raw = await answer.read()
            return Result(request, answer.status, scheduled, sent, time.perf_counter(), raw=raw)
    except (aiohttp.ClientError, asyncio.TimeoutError) as error:
        return Result(request, 0, scheduled, sent, time.perf_counter(), f"{type(error).__name__}: {error}")


def _session(limit):
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=limit, force_close=False), timeout=TIMEOUT)


async def closed_loop(base_url, requests, concurrency, seconds=None):
    """Each request once (seconds=None), or the list over and over until `seconds` have passed."""
    results = []
    async with _session(concurrency) as session:
        if seconds is None:
            queue = iter(requests)
            deadline = None
        else:
            queue = (requests[i % len(requests)] for i in range(10 ** 9))
            deadline = time.perf_counter() + seconds

        async def client():
            for request in queue:
                if deadline is not None and time.perf_counter() >= deadline:
                    return
                now = time.perf_counter()
                results.append(await _send(session, base_url, request, now))

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        return Run(results, time.perf_counter() - started)


async def open_loop(base_url, requests, rate):
    """Send requests[i] at start + i / rate, whatever happened to the earlier ones."""
    async with _session(0) as session:  # no connection limit: a slow answer must not delay the next send
        start = time.perf_counter() + 0.05
        tasks = []
        for index, request in enumerate(requests):
            due = start + index / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(_send(session, base_url, request, due)))
        results = await asyncio.gather(*tasks)
        return Run(list(results), max(r.answered for r in results) - start if results else 0.0)


# -- wrk ---------------------------------------------------------------------------------------

def wrk_available():
    return shutil.which("wrk") is not None


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _ms(text):
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(number) * _UNITS[unit]


def wrk(base_url, paths, headers, concurrency, seconds):
    """Closed-loop GETs of `paths` in turn with `headers`; {per_second, p50_ms, p99_ms, requests, errors}."""
    def quoted(text):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'

    script = "\n".join([
        "local paths = {" + ", ".join(quoted(p) for p in paths) + "}",
        "local headers = {" + ", ".join(f"[{quoted(k)}] = {quoted(v)}" for k, v in headers.items()) + "}",
        "local i = 0",
        "request = function()",
        "  i = i % #paths + 1",
        '  return wrk.format("GET", paths[i], headers)',
        "end",
    ])
    with tempfile.TemporaryDirectory() as folder:
        lua = Path(folder) / "paths.lua"
        lua.write_text(script)
        # One wrk thread: it keeps 32 connections busy with little CPU, leaving the cores to the server.
        out = subprocess.run(["wrk", "-t1", f"-c{concurrency}", f"-d{seconds}s", "--latency", "-s", str(lua),
                              base_url], capture_output=True, text=True, timeout=seconds + 30, check=True).stdout
    figures = {"per_second": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
               "requests": int(re.search(r"(\d+) requests in", out).group(1))}
    for label, key in (("50%", "p50_ms"), ("99%", "p99_ms")):
        figures[key] = _ms(re.search(rf"^\s+{re.escape(label)}\s+(\S+)", out, re.MULTILINE).group(1))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    figures["errors"] = (int(non_2xx.group(1)) if non_2xx else 0) + (
        sum(int(n) for n in socket_errors.groups()) if socket_errors else 0)
    return figures
