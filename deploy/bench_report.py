"""`make bench`'s table (from the figures deploy/bench.py gathered) and its py-spy summaries."""
import math
import re
from collections import Counter
from pathlib import Path

RATIO_TARGET = 0.5  # of the bare route making one RPC
WEBHOOK_P99_MS, READ_P99_MS, RSS_LIMIT_MB = 50, 25, 120


def _n(value, digits=0):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{digits}f}"


def _ratio(measured, ceiling):
    return measured / ceiling if measured and ceiling else None


def _p50_p99(figures):
    return f"p50 {_n(figures.get('p50_ms'), 1)} / p99 {_n(figures.get('p99_ms'), 1)} ms"


def _verdict(ok):
    return "-" if ok is None else ("pass" if ok else "MISS")


def report(f, wrk):
    """(the table as text, {target: verdict}) from bench.py's figures `f`."""
    rows, verdicts = [], {}

    def row(figure, measured="", ceiling="", ratio="", target="", verdict=""):
        rows.append((figure, measured, ceiling, ratio, target, verdict))

    def target(name, ok):
        verdicts[name] = _verdict(ok)
        return verdicts[name]

    ceilings = f.get("ceilings", {})
    route = ceilings.get("http_one_rpc", {})
    route_aiohttp = route.get("aiohttp", {}).get("per_second")
    beside = f.get("route_beside", {})

    def route_at(phase, client, steady):
        """The route ceiling measured right before and after the phase (their mean), else the steady one."""
        values = beside.get(phase, {}).get(client)
        return sum(values) / len(values) if values else steady

    closed, opened = f["webhooks_closed"], f["webhooks_open"]
    ceiling = route_at("webhooks", "aiohttp", route_aiohttp)
    ratio = _ratio(closed["accepted_per_second"], ceiling)
    row("webhook intake, closed loop 32 (aiohttp)", f"{_n(closed['accepted_per_second'])} /s",
        f"route + 1 RPC {_n(ceiling)} /s beside it", _n(ratio, 2), f">= {RATIO_TARGET}",
        target("webhook intake >= 50 % of route + 1 RPC", ratio is not None and ratio >= RATIO_TARGET))
    row(f"  {closed['sent']} sent ({closed['duplicates']} duplicates) for {closed['payments']} payments",
        f"{closed['failed']} refused at first, {closed['undelivered_after_retries']} after 5 retries")
    to_200 = opened["to_200"]
    row(f"  open loop: {opened['sent']} sent for {opened['payments']} payments",
        f"{opened['failed']} refused at first, {opened['undelivered_after_retries']} after 5 retries")
    row(f"  time to the 200 at {opened['rate']}/s offered", _p50_p99(to_200), "", "", f"p99 < {WEBHOOK_P99_MS} ms",
        target("webhook p99 to the 200 < 50 ms at 100/s", to_200["p99_ms"] < WEBHOOK_P99_MS))
    kombu = ceilings.get("kombu_publish_consume", {})
    purchased = opened["to_plan_purchased"]
    row(f"  time to plan.purchased at {opened['rate']}/s", _p50_p99(purchased),
        f"kombu hop p50 {_n(kombu.get('p50_ms'), 1)} ms", f"x{_n(_ratio(purchased['p50_ms'], kombu.get('p50_ms')), 0)}")
    purchases = f["purchases"]
    once = purchases["announced"] == purchases["distinct_checkouts"] == purchases["unique_payments"]
    row("  purchases announced (plan.purchased)",
        f"{purchases['distinct_checkouts']} of {purchases['unique_payments']} payments, "
        f"{purchases['announced']} events",
        "", "", "= payments, once", target("one purchase per payment", once))
    postgres = ceilings.get("postgres_webhook_rows", {})
    row("  webhook rows stored", f"{_n(closed['accepted_per_second'])} /s",
        f"PostgreSQL rows {_n(postgres.get('per_second'))} /s",
        _n(_ratio(closed["accepted_per_second"], postgres.get("per_second")), 2))

    reads = f["reads"]
    if "wrk" in reads:
        # the same client on both sides of the ratio
        route_wrk = route_at("reads", "wrk", route.get("wrk", {}).get("per_second"))
        ratio = _ratio(reads["wrk"]["per_second"], route_wrk)
        row("summary reads, closed loop 32 (wrk)", f"{_n(reads['wrk']['per_second'])} /s",
            f"route + 1 RPC {_n(route_wrk)} /s beside it", _n(ratio, 2), f">= {RATIO_TARGET}",
            target("summary reads >= 50 % of route + 1 RPC", ratio is not None and ratio >= RATIO_TARGET))
    read_ceiling = route_at("reads", "aiohttp", route_aiohttp)
    ratio = _ratio(reads["aiohttp"]["per_second"], read_ceiling)
    verdict = _verdict(ratio is not None and ratio >= RATIO_TARGET)
    if "wrk" not in reads:
        verdict = target("summary reads >= 50 % of route + 1 RPC", ratio is not None and ratio >= RATIO_TARGET)
    row("summary reads, closed loop 32 (aiohttp)", f"{_n(reads['aiohttp']['per_second'])} /s",
        f"route + 1 RPC {_n(read_ceiling)} /s beside it", _n(ratio, 2), f">= {RATIO_TARGET}", verdict)
    read_open = reads["open_loop"]
    row(f"  latency at {read_open['rate']}/s offered", _p50_p99(read_open), "", "", f"p99 < {READ_P99_MS} ms",
        target("summary p99 < 25 ms at 200/s", read_open["p99_ms"] < READ_P99_MS))
    row("  accounts whose page shows the plan active",
        f"{f['active_plans_on_billing_pages']} of {purchases['unique_payments']}")

    checkout = f["checkout"]
    closed_checkout = checkout["closed_loop"]
    row("checkout creation, closed loop 32 (aiohttp)", f"{_n(closed_checkout['per_second'], 1)} /s",
        f"route + 1 RPC {_n(route_aiohttp)} /s", _n(_ratio(closed_checkout["per_second"], route_aiohttp), 3))
    row("  latency in that closed loop", _p50_p99(closed_checkout))
    open_checkout = checkout["open_loop"]
    row(f"  latency at {open_checkout['rate']}/s offered", _p50_p99(open_checkout))
    per = checkout["sandbox_ms_per_checkout"]
    sandbox_request = checkout["sandbox_request"]
    row("  the sandbox's own time per checkout",
        f"stripe {_n(per['stripe'], 1)} ms, cashfree {_n(per['cashfree'], 1)} ms",
        f"per request {_p50_p99(sandbox_request)}")

    logins = f.get("logins")
    if logins:
        row(f"sign-ins, closed loop 32 ({logins['count']}, argon2id)", f"{_n(logins['per_second'], 1)} /s",
            _p50_p99(logins))

    usage = f.get("usage")
    if usage:
        events, raw = usage.get("ingest_events_per_s"), usage.get("raw_postgres_inserts_per_s")
        row("usage ingestion (make bench-usage)", f"{_n(events)} events/s", f"PostgreSQL rows {_n(raw)} /s",
            _n(_ratio(events, raw), 2))
        if "usage_read_p50_ms" in usage:
            row("  {acct}/usage while ingesting", f"p50 {_n(usage['usage_read_p50_ms'], 1)} / "
                f"p99 {_n(usage.get('usage_read_p99_ms'), 1)} ms")
        row(f"  (results/usage_bench.json, written {usage.get('written_at')})")
    else:
        row("usage ingestion", "no results/usage_bench.json (make bench-usage)")

    row("ceilings, same run")
    for name, label in (("http_constant", "bare nameko HTTP answer"), ("http_one_rpc", "bare route + 1 RPC")):
        both = ceilings.get(name, {})
        text = f"aiohttp {_n(both.get('aiohttp', {}).get('per_second'))} /s"
        if "wrk" in both:
            text = f"wrk {_n(both['wrk']['per_second'])} /s, " + text
        row(f"  {label}, closed loop 32", text, both.get("error", ""))
    echo = ceilings.get("nameko_rpc_echo", {})
    row("  bare nameko RPC echo, 32 callers", f"{_n(echo.get('per_second'))} /s",
        echo.get("error") or f"p50 {_n(echo.get('p50_ms'), 1)} ms")
    row("  kombu publish (confirmed) -> consume", f"{_n(kombu.get('per_second'))} /s",
        kombu.get("error") or f"p50 {_n(kombu.get('p50_ms'), 1)} / p99 {_n(kombu.get('p99_ms'), 1)} ms")
    row(f"  PostgreSQL webhook rows, 1 per commit, {postgres.get('connections', '-')} conns",
        f"{_n(postgres.get('per_second'))} /s", postgres.get("error", ""))
    if not wrk:
        row("  (wrk not installed: apt-get install wrk for the C client's figures)")

    for key, label in (("cpu_ms_per_webhook", "CPU ms per webhook (closed loop, to the last purchase)"),
                       ("cpu_ms_per_read", "CPU ms per summary read (aiohttp closed loop)")):
        cpu = f.get(key)
        if cpu:
            total = cpu["total of the stack"]
            row(label, f"{_n(total, 1)} ms in the stack's processes and PostgreSQL backends",
                f"= {_n(2000 / total if total else None)} /s on 2 idle cores", "", "", "")
            parts = [f"{name} {ms}" for name, ms in cpu.items() if name != "total of the stack" and ms >= 0.05]
            for start in range(0, len(parts), 3):
                row("", ", ".join(parts[start:start + 3]))

    rss = f["rss_mb"]
    services = [name for name in rss["after_run"] if not name.endswith("_sandbox") and not name.startswith("supervisor")]
    worst = max((rss["after_run"][name] for name in services if rss["after_run"][name] is not None), default=None)
    row(f"resident memory (VmRSS), limit {RSS_LIMIT_MB} MB", f"largest service after the run {_n(worst, 1)} MB", "", "",
        f"< {RSS_LIMIT_MB} MB each",
        target("every service < 120 MB resident", worst is not None and worst < RSS_LIMIT_MB))
    for name in rss["after_run"]:
        row(f"  {name}", f"{_n(rss['at_rest'].get(name), 1)} -> {_n(rss['after_run'][name], 1)} MB")

    header = ("figure", "measured", "ceiling / detail", "ratio", "target", "")
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(6)]
    profiled = "  (PROFILED: figures lowered by py-spy)" if f.get("profiled") else ""
    lines = [f"\nmake bench: {f['machine']}, {f['started_at']}{profiled}",
             "  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip(),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.append("")
    lines += [f"  {verdict:4}  {name}" for name, verdict in verdicts.items()]
    return "\n".join(lines), verdicts


# -- py-spy -------------------------------------------------------------------------------------

_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^():]+)(?::\d+)?\)$")
OURS = ("services/", "shared/", "gateway_http/", "deploy/")


def _package(path):
    """Where a frame's code is: ours (a top folder of the project), a library, or the standard library."""
    for ours in OURS:
        if path.startswith(ours):
            return "ours: " + ours.rstrip("/")
    return path.split("/", 1)[0] if "/" in path else "stdlib"


def summarise_profiles(folder, top=12):
    """Per collapsed-stack file: how much of the time the process was busy (not in eventlet's hub
    waiting for I/O), where the busy time went by package, and our functions by inclusive share
    of the busy time (time in them and in what they called)."""
    out = []
    for path in sorted(Path(folder).glob("*.txt")):
        by_package, ours, total, busy = Counter(), Counter(), 0, 0
        for line in path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not count.isdigit():
                continue
            total += int(count)
            frames = [m for m in (_FRAME.match(f) for f in stack.split(";")) if m]
            if not frames or frames[-1]["function"] == "Hub.do_poll":  # idle: epoll_wait in the hub
                continue
            busy += int(count)
            by_package[_package(frames[-1]["file"])] += int(count)
            for name in {f"{m['function']} ({m['file']})" for m in frames if _package(m["file"]).startswith("ours")}:
                ours[name] += int(count)
        if not busy:
            continue
        out.append(f"\n{path.name}: busy in {busy} of {total} samples")
        out.append("  busy time by package: " + ", ".join(f"{name} {count / busy:.0%}"
                                                         for name, count in by_package.most_common(top)))
        out += [f"  {count / busy:5.0%}  {name}" for name, count in ours.most_common(top)]
    return "\n".join(out)
