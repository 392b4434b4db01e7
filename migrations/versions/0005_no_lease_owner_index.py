"""The lease owner index goes: it cost every claim and every ack a write, while only closing a channel or
cleaning up after a dead connection looks leases up by owner, and those now walk the lease expiry index, which
holds just the leased messages.

Revision ID: 0005
Revises: 0004
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_litemq_messages_lease_owner", "litemq_messages")


def downgrade() -> None:
    op.create_index("ix_litemq_messages_lease_owner", "litemq_messages", ["lease_owner"],
                    sqlite_where=sa.text("lease_token IS NOT NULL"), postgresql_where=sa.text("lease_token IS NOT NULL"))
