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
           ("outbox backlog", "outbox_backlog"), ("recovery s", "recovery_seconds")]


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
    rows = [[str(row[key]) if key != "outbox_backlog" else (json.dumps(row[key]) if row[key] else "0")
             for _, key in COLUMNS] for row in RESULTS]
    widths = [max(len(title), *(len(r[i]) for r in rows)) for i, (title, _) in enumerate(COLUMNS)]
    write = terminalreporter.write_line
    write("")
    write("fault injection summary (recovery s: from the last payment, the fault over, until the books "
          "balanced; - = they never did)")
    write("  ".join(title.ljust(w) for (title, _), w in zip(COLUMNS, widths)))
    for r in rows:
        write("  ".join(cell.ljust(w) for cell, w in zip(r, widths)))
    write(f"purchases lost: {sum(r['lost'] for r in RESULTS)}, doubled: {sum(r['doubled'] for r in RESULTS)}")
    results = ROOT / "results"
    results.mkdir(exist_ok=True)
    (results / "faults.json").write_text(json.dumps(RESULTS, indent=2))
