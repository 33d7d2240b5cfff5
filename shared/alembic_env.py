"""The body of every service's migrations/env.py (online migrations only), and what revisions share."""
import sqlalchemy as sa
from alembic import context, op
from sqlalchemy import create_engine, pool

from shared.emails import email_key


def run_migrations(target_metadata):
    url = context.config.get_main_option("sqlalchemy.url")
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata, compare_type=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


def fill_email_keys(table_name):
    """Fill a new, nullable `email_key` column of `table_name` from its `email`, then make it NOT NULL.
    In Python: PostgreSQL has NFKC but no casefold."""
    table = sa.table(table_name, sa.column("email", sa.String), sa.column("email_key", sa.String))
    bind = op.get_bind()
    emails = bind.execute(sa.select(table.c.email).distinct()).scalars().all()
    if emails:
        bind.execute(table.update().where(table.c.email == sa.bindparam("typed"))
                     .values(email_key=sa.bindparam("key")),
                     [{"typed": email, "key": email_key(email)} for email in emails])
    op.alter_column(table_name, "email_key", nullable=False)
