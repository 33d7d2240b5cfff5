#!/usr/bin/env bash
# Makes sure the local PostgreSQL and RabbitMQ (with its management API, which the test suite's
# per-test vhosts need) are running. Machines of this project's kind run both already; this starts
# whichever is down. Pointed at remote servers (DATABASE_URL / AMQP_URI), it only checks them.
set -euo pipefail

pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
rabbit_up() { (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; }
mgmt_up() { curl -sf -u guest:guest http://127.0.0.1:15672/api/overview >/dev/null 2>&1; }

wait_for() {  # wait_for <what> <check-fn> <seconds>
  for _ in $(seq 1 "$3"); do "$2" && return 0; sleep 1; done
  echo "ensure_infra: $1 is not up after $3 s" >&2; return 1
}

if ! pg_up; then
  echo "ensure_infra: starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n 1)" main start || true
  wait_for PostgreSQL pg_up 60
fi

if ! rabbit_up; then
  echo "ensure_infra: starting RabbitMQ"
  rabbitmq-server -detached || true
  wait_for RabbitMQ rabbit_up 90
fi

if ! mgmt_up; then
  echo "ensure_infra: enabling the RabbitMQ management plugin"
  rabbitmq-plugins enable rabbitmq_management >/dev/null
  wait_for "RabbitMQ management API" mgmt_up 60
fi
