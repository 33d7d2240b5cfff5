#!/usr/bin/env bash
# `make down`: stop what `make up` started, and wait until every service process has exited.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -f var/stack.pid ]; then echo "Not running."; exit 0; fi
pid=$(cat var/stack.pid)
touch var/stop-requested
kill -TERM "$pid" 2>/dev/null || true
for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
if kill -0 "$pid" 2>/dev/null; then
  echo "supervisord did not stop in 60 s; killing its process group" >&2
  kill -KILL -- "-$(ps -o pgid= "$pid" | tr -d ' ')" 2>/dev/null || true
fi
rm -f var/stack.pid
echo "Stopped."
