#!/usr/bin/env bash
# `make down`: stop what `make up` started, and wait until every service process has exited.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -f var/honcho.pid ]; then echo "Not running."; exit 0; fi
pid=$(cat var/honcho.pid)
touch var/stop-requested
kill -TERM "$pid" 2>/dev/null || true
for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
if kill -0 "$pid" 2>/dev/null; then
  echo "honcho did not stop in 30 s; killing its process group" >&2
  kill -KILL -- "-$(ps -o pgid= "$pid" | tr -d ' ')" 2>/dev/null || true
fi
rm -f var/honcho.pid
echo "Stopped."
