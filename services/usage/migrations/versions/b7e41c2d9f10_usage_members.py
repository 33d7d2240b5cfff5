"""usage_members: the membership projection that authorizes usage reads

Revision ID: b7e41c2d9f10
Revises: a2cc61af23f2
Create Date: 2026-11-26 16:50:00

"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = 'b7e41c2d9f10'
down_revision: Union[str, Sequence[str], None] = 'a2cc61af23f2'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        'usage_members',
        sa.Column('org_id', sa.String(length=100), nullable=False),
        sa.Column('user_id', sa.String(length=100), nullable=False),
        sa.Column('role', sa.String(length=20), nullable=True),
        sa.Column('changed_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('org_id', 'user_id'),
    )


def downgrade() -> None:
    op.drop_table('usage_members')
