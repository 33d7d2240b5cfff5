"""one live subscription per account; verified first payments, holds, gateway settlement, alerts

Revision ID: c3a9e1f07b52
Revises: 48ead985578d
Create Date: 2026-12-01 23:40:00

Existing subscriptions were granted under the old rules: those that were ever announced or are live
count as verified. An account that already holds two live subscriptions keeps the newest (the one
the billing page showed); the others are put on hold as `second_live_plan`, so the settle pass
cancels them at the gateway, and an alert asks an operator to decide on refunds: they charged the
customer, unseen, every cycle.
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = 'c3a9e1f07b52'
down_revision: Union[str, Sequence[str], None] = '48ead985578d'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

LIVE = "status IN ('incomplete', 'active', 'past_due')"


def upgrade() -> None:
    op.add_column('checkouts', sa.Column('gateway_closed_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('subscriptions', sa.Column('link_id', sa.UUID(), nullable=True))
    op.add_column('subscriptions', sa.Column('pending_plan_code', sa.String(length=64), nullable=True))
    op.add_column('subscriptions', sa.Column('verified_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('subscriptions', sa.Column('hold_reason', sa.String(length=30), nullable=True))
    op.add_column('subscriptions', sa.Column('duplicate_of', sa.UUID(), nullable=True))
    op.add_column('subscriptions', sa.Column('gateway_settled_at', sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        'alerts',
        sa.Column('id', sa.UUID(), nullable=False),
        sa.Column('account_id', sa.UUID(), nullable=False),
        sa.Column('kind', sa.String(length=40), nullable=False),
        sa.Column('message', sa.Text(), nullable=False),
        sa.Column('details', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['account_id'], ['accounts.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index(op.f('ix_alerts_account_id'), 'alerts', ['account_id'], unique=False)

    op.execute(f"UPDATE subscriptions SET verified_at = created_at WHERE purchased_at IS NOT NULL OR {LIVE}")
    op.execute(f"""
        WITH ranked AS (
            SELECT id, account_id, first_value(id) OVER w AS kept, row_number() OVER w AS rank
            FROM subscriptions WHERE {LIVE}
            WINDOW w AS (PARTITION BY account_id ORDER BY created_at DESC, id DESC)
        ), held AS (
            UPDATE subscriptions s SET status = 'cancelled', cancelled_at = now(),
                   hold_reason = 'second_live_plan', duplicate_of = ranked.kept
            FROM ranked WHERE s.id = ranked.id AND ranked.rank > 1
            RETURNING s.id, s.account_id, s.gateway_subscription_id, ranked.kept
        )
        INSERT INTO alerts (id, account_id, kind, message, details)
        SELECT gen_random_uuid(), account_id, 'second_live_plan',
               'A second live subscription was found beside the plan: it is being cancelled at the gateway; '
               'decide whether to refund what it charged.',
               jsonb_build_object('subscription_id', id::text, 'gateway_subscription_id', gateway_subscription_id,
                                  'kept_subscription_id', kept::text)
        FROM held
    """)
    op.create_index('uq_subscriptions_one_live_per_account', 'subscriptions', ['account_id'], unique=True,
                    postgresql_where=sa.text(LIVE))


def downgrade() -> None:
    op.drop_index('uq_subscriptions_one_live_per_account', table_name='subscriptions',
                  postgresql_where=sa.text(LIVE))
    op.drop_index(op.f('ix_alerts_account_id'), table_name='alerts')
    op.drop_table('alerts')
    for column in ('gateway_settled_at', 'duplicate_of', 'hold_reason', 'verified_at', 'pending_plan_code',
                   'link_id'):
        op.drop_column('subscriptions', column)
    op.drop_column('checkouts', 'gateway_closed_at')
