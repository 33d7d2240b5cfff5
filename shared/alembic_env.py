"""The body of every service's migrations/env.py: online migrations only."""
from alembic import context
from sqlalchemy import create_engine, pool


def run_migrations(target_metadata):
    url = context.config.get_main_option("sqlalchemy.url")
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata, compare_type=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()
