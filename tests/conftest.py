"""Fixtures every suite shares. nameko 2.14 no longer monkey-patches: do it before anything else."""
import warnings

warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
import eventlet  # noqa: E402

eventlet.monkey_patch()  # noqa: E402

import os  # noqa: E402

# Tests own their databases: <prefix><service>, dropped and migrated once per run.
os.environ["DATABASE_PREFIX"] = os.environ.get("TEST_DATABASE_PREFIX", "test_")
os.environ.setdefault("INVITATION_TTL_SECONDS", "3600")

from shared import db  # noqa: E402  (first: it makes psycopg cooperate with eventlet)

import pytest  # noqa: E402
from sqlalchemy import text  # noqa: E402

from deploy.stack import IsolatedStack  # noqa: E402
from shared.config import settings  # noqa: E402
from shared.migrate import recreate_databases, services_with_migrations  # noqa: E402


@pytest.fixture(scope="session")
def migrated_databases():
    """Fresh databases for every service with migrations, at head."""
    recreate_databases()
    yield services_with_migrations()
    db.dispose_engines()


_tables = {}  # service -> its tables (the schema does not change during a run)


def truncate_all(service_name):
    """Empty a service's database. Only the tables that hold rows are truncated: TRUNCATE makes new
    files for every table it names, and most tests write to a few of a service's tables."""
    with db.engine_for(service_name).begin() as conn:
        if service_name not in _tables:
            _tables[service_name] = conn.execute(text(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
            )).scalars().all()
        tables = _tables[service_name]
        if not tables:
            return
        holding_rows = conn.execute(text(" UNION ALL ".join(
            f"SELECT '{table}' WHERE EXISTS (SELECT 1 FROM {table})" for table in tables))).scalars().all()
        if holding_rows:
            conn.execute(text(f"TRUNCATE {', '.join(holding_rows)} CASCADE"))


@pytest.fixture
def clean_databases(migrated_databases):
    """Every service database empty after the test (the run starts from fresh ones, made by
    migrated_databases, so a killed run's rows are gone before the first test)."""
    yield
    for name in migrated_databases:
        truncate_all(name)


@pytest.fixture
def db_session(clean_databases):
    """db_session("orgs") -> a Session on that service's test database, closed after the test."""
    sessions = []

    def make(service_name):
        session = db.make_session_factory(service_name)()
        sessions.append(session)
        return session

    yield make
    for session in sessions:
        session.close()


@pytest.fixture
def service_config(rabbit_config):
    """nameko config for containers under test: the app's settings on a throwaway vhost."""
    return settings().nameko_config(**rabbit_config)


def running_stack(tmp_path_factory, name, **options):
    """Start an IsolatedStack for a fixture to yield (databases <prefix>name_), stopped afterwards;
    a stack that does not come up fails the test with its log's tail."""
    started = IsolatedStack(os.environ["DATABASE_PREFIX"] + f"{name}_",  # e.g. test_e2e_, or per TEST_DATABASE_PREFIX
                            tmp_path_factory.mktemp(name) / "stack.log", **options)
    try:
        started.start()
    except RuntimeError as error:
        pytest.fail(str(error))
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    """The whole stack, started the way `make up` starts it (deploy/Procfile under supervisord), on its own
    port, RabbitMQ vhost and databases: one for the session, shared by tests/e2e and tests/security."""
    yield from running_stack(tmp_path_factory, "e2e")
