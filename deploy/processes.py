"""python -m deploy.processes: the Procfile entries to start here, one per line.

Every service always; a gateway sandbox only while that gateway has no real credentials (with
real keys the adapters talk to the real API and nothing should pretend to be it).
"""
from pathlib import Path

from shared.config import cashfree_is_sandbox, stripe_is_sandbox

PROCFILE = Path(__file__).resolve().parent / "Procfile"
SANDBOXES = {"stripe_sandbox": stripe_is_sandbox, "cashfree_sandbox": cashfree_is_sandbox}


def procfile_commands():
    """{name: command} of the Procfile, in its order."""
    entries = (line.split(":", 1) for line in PROCFILE.read_text().splitlines()
               if line.strip() and not line.startswith("#"))
    return {name.strip(): command.strip() for name, command in entries}


def processes():
    return [name for name in procfile_commands() if name not in SANDBOXES or SANDBOXES[name]()]


if __name__ == "__main__":
    print("\n".join(processes()))
