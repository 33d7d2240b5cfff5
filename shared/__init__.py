"""Code every service shares: configuration, database, outbox/inbox, errors, event schemas, money.

Importing this package first matters: psycopg picks its wait function when it is imported, and
its default (a C loop) blocks eventlet's hub, so one slow query would stall every worker of a
service. `wait_select` goes through the (green) select module and lets other greenlets run.
"""
import os

os.environ.setdefault("PSYCOPG_WAIT_FUNC", "wait_select")
