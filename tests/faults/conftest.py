"""Fault injection runs on a PostgreSQL server and a RabbitMQ node of its own (deploy/private_infra.py):
the machine's are shared and must never be restarted. One pair for the session, a fresh stack
(vhost, databases, processes) per scenario."""
import json
from pathlib import Path

import pytest

from deploy.private_infra import PrivatePostgres, PrivateRabbit

RESULTS = []  # one row per scenario, printed at the end of the run
ROOT = Path(__file__).resolve().parents[2]

COLUMNS = [("scenario", "scenario"), ("attempted", "attempted"), ("paid", "paid"), ("active", "active"),
           ("plan.purchased", "events"), ("redelivered", "redelivered"), ("lost", "lost"), ("doubled", "doubled"), ("orphans", "orphan_checkouts"),
           ("outbox backlog", "outbox_backlog"), ("two live here", "two_live_here"),
           ("two live at gateways", "two_live_at_gateways"), ("unsettled holds", "unsettled_holds"),
           ("recovery s", "recovery_seconds")]


@pytest.fixture(scope="session")
def private_postgres():
    server = PrivatePostgres().start()
    yield server
    server.destroy()


@pytest.fixture(scope="session")
def private_rabbit():
    node = PrivateRabbit().start()
    yield node
    node.destroy()


def pytest_terminal_summary(terminalreporter):
    if not RESULTS:
        return
    rows = [[(json.dumps(row[key]) if any(row[key].values()) else "0") if isinstance(row[key], dict)
             else str(row[key]) for _, key in COLUMNS] for row in RESULTS]
    widths = [max(len(title), *(len(r[i]) for r in rows)) for i, (title, _) in enumerate(COLUMNS)]
    write = terminalreporter.write_line
    write("")
    write("fault injection summary (recovery s: from the last payment, the fault over, until the books "
          "balanced; - = they never did)")
    write("  ".join(title.ljust(w) for (title, _), w in zip(COLUMNS, widths)))
    for r in rows:
        write("  ".join(cell.ljust(w) for cell, w in zip(r, widths)))
    write(f"purchases lost: {sum(r['lost'] for r in RESULTS)}, doubled: {sum(r['doubled'] for r in RESULTS)}, "
          f"accounts with two live subscriptions: {sum(r['two_live_here'] for r in RESULTS)} here, "
          f"{sum(sum(r['two_live_at_gateways'].values()) for r in RESULTS)} at the gateways")
    results = ROOT / "results"
    results.mkdir(exist_ok=True)
    (results / "faults.json").write_text(json.dumps(RESULTS, indent=2))
