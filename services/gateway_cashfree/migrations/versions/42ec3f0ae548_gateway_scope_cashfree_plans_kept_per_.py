"""gateway scope: Cashfree plans kept per merchant and environment

Revision ID: 42ec3f0ae548
Revises: e8d54d0e268d
Create Date: 2026-12-01 23:09:08.284757

Plans kept until now get the scope "unknown" (shared.models.UNKNOWN_SCOPE), which matches no real
scope (cashfree_api.account_scope: "<client id>@<API host>"): which credentials made them is not
recorded. So each plan is asked for once more under the real scope; where Cashfree already has it
(the same merchant and environment), it answers 409 and the plan is recorded as it is. The old
rows stay: they still tell a plan id's catalogue plan to the events of older subscriptions.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '42ec3f0ae548'
down_revision: Union[str, Sequence[str], None] = 'e8d54d0e268d'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.add_column('plans', sa.Column('scope', sa.String(length=200), server_default='unknown', nullable=False))
    op.drop_constraint('plans_pkey', 'plans', type_='primary')
    op.create_primary_key('plans_pkey', 'plans', ['scope', 'plan_id'])


def downgrade() -> None:
    """Downgrade schema: one row per plan id again (they name the same catalogue plan)."""
    op.execute("""
        DELETE FROM plans WHERE EXISTS (
            SELECT 1 FROM plans AS other WHERE other.plan_id = plans.plan_id AND other.scope > plans.scope)
    """)
    op.drop_constraint('plans_pkey', 'plans', type_='primary')
    op.create_primary_key('plans_pkey', 'plans', ['plan_id'])
    op.drop_column('plans', 'scope')
