"""Alembic migrations, one history per service (services/<name>/migrations).

    python -m shared.migrate                      # upgrade every service to head
    python -m shared.migrate identity orgs        # just these
    python -m shared.migrate --revision orgs -m "add x"   # autogenerate a new revision
"""
import argparse
import logging
import os
from pathlib import Path

import psycopg

from alembic import command
from alembic.config import Config

from shared import db
from shared.config import DATABASE_OWNERS, settings

ROOT = Path(__file__).resolve().parent.parent


def migrations_dir(service_name):
    return ROOT / "services" / service_name / "migrations"


def services_with_migrations():
    return [name for name in DATABASE_OWNERS if (migrations_dir(name) / "env.py").exists()]


def alembic_config(service_name):
    config = Config()
    config.set_main_option("script_location", str(migrations_dir(service_name)))
    config.set_main_option("path_separator", "os")
    url = db.database_url(service_name).render_as_string(hide_password=False)
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(service_name):
    db.ensure_database(service_name)
    command.upgrade(alembic_config(service_name), "head")


def drop_database(service_name):
    url = db.database_url(service_name)
    conninfo = url.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')


def recreate_databases(prefix=None):
    """Drop and migrate every service's database (under `prefix`, for tests and benchmarks)."""
    previous = os.environ.get("DATABASE_PREFIX")
    if prefix is not None:
        os.environ["DATABASE_PREFIX"] = prefix
    settings.cache_clear()
    db.dispose_engines()
    try:
        for name in services_with_migrations():
            drop_database(name)
            upgrade(name)
    finally:
        db.dispose_engines()
        if prefix is not None:
            if previous is None:
                os.environ.pop("DATABASE_PREFIX", None)
            else:
                os.environ["DATABASE_PREFIX"] = previous
        settings.cache_clear()


def upgrade_all(names=None):
    for name in names or services_with_migrations():
        upgrade(name)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("services", nargs="*")
    parser.add_argument("--revision", metavar="SERVICE")
    parser.add_argument("-m", "--message", default="change")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.revision:
        upgrade(args.revision)
        command.revision(alembic_config(args.revision), message=args.message, autogenerate=True)
    else:
        upgrade_all(args.services)


if __name__ == "__main__":
    main()
