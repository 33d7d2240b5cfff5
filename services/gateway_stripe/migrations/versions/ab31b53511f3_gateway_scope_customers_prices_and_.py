"""gateway scope: customers, prices and payment links kept per Stripe account and mode; a link
payer's customer apart from the account's own

Revision ID: ab31b53511f3
Revises: 657f8a219adf
Create Date: 2026-12-01 23:09:05.118341

Rows kept until now get the scope "unknown" (shared.models.UNKNOWN_SCOPE), which matches no real
scope (stripe_api.account_scope): whether they were made in the Stripe account and mode in use
(or in the local sandbox, or in test mode before going live) cannot be known without asking
Stripe. So none of them is named to Stripe again: the first checkout or link after this migration
makes the account's own customer, and finds (by lookup key) or makes each price, under the real
scope. That costs each account one new Stripe customer, and never puts a possibly foreign
customer (another Stripe's, or a link payer's) on an account's Checkout. The old customers still
map Stripe's events back to their accounts and their cards are still listed.

Which old customers were a link payer's is told by the events kept here: a payer's customer was
only ever recorded from a stored checkout.session.completed of one of our Payment Links
(_remember_payer), and Stripe makes a new customer for each such payment. Those are "payer"; the
others are the ones made for the accounts' checkouts ("account"). Either way none is reused (the
scope), so the kind only keeps the record true.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = 'ab31b53511f3'
down_revision: Union[str, Sequence[str], None] = '657f8a219adf'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.add_column('customers', sa.Column('kind', sa.String(length=10), server_default='payer', nullable=False))
    op.add_column('customers', sa.Column('scope', sa.String(length=200), server_default='unknown', nullable=False))
    op.execute("""
        UPDATE customers SET kind = 'account'
        WHERE NOT EXISTS (
            SELECT 1 FROM webhook_events
            WHERE webhook_events.type = 'checkout.session.completed'
              AND webhook_events.payload -> 'data' -> 'object' ->> 'payment_link' IS NOT NULL
              AND webhook_events.payload -> 'data' -> 'object' ->> 'customer' = customers.customer_id)
    """)
    op.add_column('payment_links', sa.Column('scope', sa.String(length=200), server_default='unknown', nullable=False))
    op.add_column('prices', sa.Column('scope', sa.String(length=200), server_default='unknown', nullable=False))
    op.drop_constraint('prices_pkey', 'prices', type_='primary')
    op.create_primary_key('prices_pkey', 'prices', ['scope', 'lookup_key'])


def downgrade() -> None:
    """Downgrade schema: one price per lookup key again (the newest; the others are found at Stripe
    by their lookup key), customers of every scope and kind reused as before."""
    op.execute("""
        DELETE FROM prices WHERE EXISTS (
            SELECT 1 FROM prices AS newer
            WHERE newer.lookup_key = prices.lookup_key
              AND (newer.created_at, newer.scope) > (prices.created_at, prices.scope))
    """)
    op.drop_constraint('prices_pkey', 'prices', type_='primary')
    op.create_primary_key('prices_pkey', 'prices', ['lookup_key'])
    op.drop_column('prices', 'scope')
    op.drop_column('payment_links', 'scope')
    op.drop_column('customers', 'scope')
    op.drop_column('customers', 'kind')
