"""parked_messages: what billing's consumers could not apply, kept for an operator to replay

Revision ID: 72cfbcd060b3
Revises: c3a9e1f07b52
Create Date: 2026-12-01 23:14:32

"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = '72cfbcd060b3'
down_revision: Union[str, Sequence[str], None] = 'c3a9e1f07b52'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        'parked_messages',
        sa.Column('id', sa.UUID(), nullable=False),
        sa.Column('event_type', sa.String(length=100), nullable=False),
        sa.Column('event_id', sa.String(length=200), nullable=True),
        sa.Column('payload', sa.Text(), nullable=False),
        sa.Column('error', sa.Text(), nullable=False),
        sa.Column('parked_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.Column('replayed_at', sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('event_id'),
    )


def downgrade() -> None:
    op.drop_table('parked_messages')
