"""PostgreSQL for nameko services: one database per service, one session per worker.

Each service owns `<DATABASE_PREFIX><service>` on the server named by DATABASE_URL; no service
opens another's. The database is created on first use, the schema by Alembic (shared.migrate).
"""
import logging
import uuid
from contextlib import contextmanager
from weakref import WeakKeyDictionary

import psycopg
from nameko.extensions import DependencyProvider
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import sessionmaker

from shared.config import settings

log = logging.getLogger(__name__)

_engines = {}
_commit_listeners = {}


def parse_uuid(value):
    """`value` as a UUID, or None when it is not one (an id from a URL is untrusted text)."""
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def database_name(service_name):
    return f"{settings().database_prefix}{service_name}"


def database_url(service_name):
    """SQLAlchemy URL of the service's own database (psycopg 3 driver)."""
    url = make_url(settings().database_url)
    return url.set(drivername="postgresql+psycopg", database=database_name(service_name))


def ensure_database(service_name):
    """CREATE DATABASE if it does not exist yet; safe when several processes race."""
    url = database_url(service_name)
    conninfo = url.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (url.database,)).fetchone()
        if not exists:
            try:
                conn.execute(f'CREATE DATABASE "{url.database}"')
                log.info("created database %s", url.database)
            except (psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation):
                pass


def engine_for(service_name):
    """The process-wide engine of a service (created with its database on first call)."""
    engine = _engines.get(service_name)
    if engine is None:
        ensure_database(service_name)
        engine = create_engine(
            database_url(service_name),
            pool_size=10,
            max_overflow=10,
            pool_pre_ping=True,  # survive a PostgreSQL restart without a poisoned pool
            pool_recycle=1800,
        )
        _engines[service_name] = engine
    return engine


def dispose_engines():
    for engine in _engines.values():
        engine.dispose()
    _engines.clear()


def on_commit(service_name, callback):
    """Call `callback()` after any session of this service commits with `session.info['outbox']` set."""
    _commit_listeners.setdefault(service_name, []).append(callback)


def remove_commit_listener(service_name, callback):
    listeners = _commit_listeners.get(service_name, [])
    if callback in listeners:
        listeners.remove(callback)


def make_session_factory(service_name):
    factory = sessionmaker(bind=engine_for(service_name), expire_on_commit=False)

    @event.listens_for(factory, "after_commit")
    def _wake_listeners(session):
        if session.info.pop("outbox", False):
            for callback in _commit_listeners.get(service_name, ()):
                callback()

    return factory


class LockBusy(Exception):
    """advisory_lock waited `wait_seconds` and the lock was still held by someone else."""


@contextmanager
def advisory_lock(session, key, wait_seconds):
    """Hold PostgreSQL's session-level advisory lock named `key` while the block runs, across any
    number of the session's own commits (a row lock ends with its transaction; this does not).
    Raises LockBusy, before the block runs, when another holder kept it for `wait_seconds`.

    The lock lives on a connection of its own, taken from the pool for the duration: it is released
    when the block ends, and by PostgreSQL itself if this process dies. A connection whose unlock
    failed is discarded rather than returned to the pool still holding the lock.
    """
    connection = session.get_bind().connect()
    try:
        # SET LOCAL: the wait limit ends with this transaction; the session-level lock does not.
        connection.execute(text(f"SET LOCAL lock_timeout = '{int(wait_seconds * 1000)}ms'"))
        connection.execute(text("SELECT pg_advisory_lock(hashtextextended(:key, 0))"), {"key": key})
        connection.commit()  # no transaction left open while the caller works
    except OperationalError as error:
        connection.close()
        if isinstance(error.orig, psycopg.errors.LockNotAvailable):
            raise LockBusy(key) from None
        raise
    try:
        yield
    finally:
        try:
            connection.execute(text("SELECT pg_advisory_unlock(hashtextextended(:key, 0))"), {"key": key})
            connection.commit()
        except Exception:  # noqa: BLE001  (the connection is unusable: PostgreSQL drops its locks with it)
            connection.invalidate()
            log.warning("advisory lock %s: unlock failed; connection discarded", key, exc_info=True)
        connection.close()


class Database(DependencyProvider):
    """Hands each worker a fresh `Session`; whatever the worker did not commit is rolled back.

    `owner`: the service whose database this is, when a service runs in more than one nameko
    service (usage's ingestion runs apart from its reads); by default the container's own.
    """

    def __init__(self, owner=None):
        self.owner = owner

    def setup(self):
        self.session_factory = make_session_factory(self.owner or self.container.service_name)
        self.sessions = WeakKeyDictionary()

    def get_dependency(self, worker_ctx):
        session = self.sessions[worker_ctx] = self.session_factory()
        return session

    def worker_teardown(self, worker_ctx):
        session = self.sessions.pop(worker_ctx, None)
        if session is not None:
            session.close()
