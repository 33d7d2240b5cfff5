#!/usr/bin/env bash
# `make up`: migrate, start every service under supervisord (deploy/supervise.py: a process that dies
# is restarted), wait for /healthz, print the URL, and stay
# in the foreground. Ctrl-C (or `make down`) stops every process it started.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
mkdir -p var

bash deploy/ensure_infra.sh

# Services' callers need this key; make one on the first run and keep it for the next.
if [ -z "${USAGE_INGEST_KEY:-}" ]; then
  [ -s var/usage_ingest_key ] || python -c 'import secrets; print(secrets.token_urlsafe(32))' > var/usage_ingest_key
  USAGE_INGEST_KEY=$(cat var/usage_ingest_key)
  export USAGE_INGEST_KEY
fi

# Outside sandbox mode every secret must be set (README: Secrets): say which now, rather than
# have each service refuse and be restarted until supervisord gives up.
python -m shared.config

if [ -f var/stack.pid ] && kill -0 "$(cat var/stack.pid)" 2>/dev/null; then
  echo "The portal is already running (supervisord pid $(cat var/stack.pid)); 'make down' stops it." >&2
  exit 1
fi

# The gateway sandboxes remember their objects across restarts, as the real gateways do (our
# databases keep the ids they handed out).
export STRIPE_SANDBOX_STATE_FILE="${STRIPE_SANDBOX_STATE_FILE:-var/stripe_sandbox.json}"
export CASHFREE_SANDBOX_STATE_FILE="${CASHFREE_SANDBOX_STATE_FILE:-var/cashfree_sandbox.json}"

python -m shared.migrate
rm -f var/stop-requested

# shellcheck disable=SC2046  # one word per process name
python -m deploy.supervise --dir var/supervisor $(python -m deploy.processes) &
stack_pid=$!
echo "$stack_pid" > var/stack.pid
stop() {
  trap - INT TERM EXIT
  kill -TERM "$stack_pid" 2>/dev/null || true
  wait "$stack_pid" 2>/dev/null || true
  rm -f var/stack.pid
}
trap stop INT TERM EXIT

port="${HTTP_PORT:-8000}"
base_url="${PUBLIC_BASE_URL:-http://127.0.0.1:$port}"
python -m deploy.wait_healthy "http://127.0.0.1:$port/healthz" 90
cat <<MSG

  Billing portal is up:   $base_url
  API document:           $base_url/api/v1/openapi.json
  Usage ingest key:       $USAGE_INGEST_KEY
  Stop with Ctrl-C or 'make down'.

MSG
status=0
wait "$stack_pid" || status=$?
if [ -f var/stop-requested ]; then  # `make down` asked for it: a clean stop, not a failure
  rm -f var/stop-requested
  status=0
fi
exit "$status"
