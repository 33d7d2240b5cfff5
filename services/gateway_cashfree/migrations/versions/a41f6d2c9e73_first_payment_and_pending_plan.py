"""the first period's money, and plan changes pending until they are charged

Revision ID: a41f6d2c9e73
Revises: 42ec3f0ae548
Create Date: 2026-12-01 23:55:00

Subscriptions authorised before this revision were activated on their authorisation: they count as
paid (`first_payment` = 'paid'), as billing already treats them.
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = 'a41f6d2c9e73'
down_revision: Union[str, Sequence[str], None] = '42ec3f0ae548'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.add_column('subscriptions', sa.Column('first_payment', sa.String(length=10), nullable=True))
    op.add_column('subscriptions', sa.Column('pending_plan_code', sa.String(length=64), nullable=True))
    op.add_column('subscriptions', sa.Column('pending_plan_label', sa.String(length=200), nullable=True))
    op.add_column('subscriptions', sa.Column('pending_amount', sa.BigInteger(), nullable=True))
    op.add_column('subscriptions', sa.Column('pending_interval', sa.String(length=10), nullable=True))
    op.add_column('subscriptions', sa.Column('pending_since', sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE subscriptions SET first_payment = 'paid' WHERE authorized_at IS NOT NULL")


def downgrade() -> None:
    for column in ('pending_since', 'pending_interval', 'pending_amount', 'pending_plan_label', 'pending_plan_code',
                   'first_payment'):
        op.drop_column('subscriptions', column)
