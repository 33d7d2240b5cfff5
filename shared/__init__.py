"""Code every service shares: configuration, database, outbox/inbox, errors, event schemas, money.

psycopg picks its wait function when it is imported, and its default (a C loop) blocks eventlet's
hub: one slow query, or one lock wait, would stall every greenthread of the process (a test that
truncates while a worker holds a lock would deadlock). `wait_select` goes through the green select
module. psycopg detects gevent's patching but not eventlet's, so we choose for it, even when
psycopg was imported before this package.
"""
import os
import sys

os.environ.setdefault("PSYCOPG_WAIT_FUNC", "wait_select")

if "psycopg.waiting" in sys.modules:
    _waiting = sys.modules["psycopg.waiting"]
    _waiting.wait = _waiting.wait_select
    _waiting._ready = _waiting._ready_select
