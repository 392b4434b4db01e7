"""Consumer priorities: each consumer row carries its ``priority`` (RabbitMQ's ``x-priority``, 0 by default) and
whether it ``has_room`` for another message (false once it holds its prefetch). A queue delivers to its
highest-priority consumers that have room; consumers in other processes read both columns to know whether they may
claim; an index of the consumers of other than the default priority lets a priority-0 consumer rank itself at
almost no cost. Existing consumers get priority 0 and room, which is how they behaved.

Revision ID: 0008
Revises: 0006
"""
import importlib.util
from pathlib import Path

import sqlalchemy as sa
from alembic import op

# migrations/postgresql.py: what the revisions do differently on PostgreSQL (loaded by path, as revisions are).
_spec = importlib.util.spec_from_file_location("litemq_migrations_postgresql", Path(__file__).parents[1] / "postgresql.py")
postgresql = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(postgresql)

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    priority = sa.Integer().with_variant(sa.BigInteger(), "postgresql")  # 64-bit, as x-priority is
    op.add_column("litemq_consumers", sa.Column("priority", priority, nullable=False, server_default=sa.text("0")))
    room = sa.text("true") if postgresql.on_postgresql() else sa.text("1")
    op.add_column("litemq_consumers", sa.Column("has_room", sa.Boolean(), nullable=False, server_default=room))
    op.create_index("ix_litemq_consumers_ranked", "litemq_consumers", ["queue", "priority", "has_room"],
                    sqlite_where=sa.text("priority != 0"), postgresql_where=sa.text("priority != 0"))


def downgrade() -> None:
    op.drop_index("ix_litemq_consumers_ranked", "litemq_consumers")
    # SQLite (3.35+, as litemq requires) drops a column in place; a batch rebuild would trip on the views.
    for column in ("has_room", "priority"):
        op.execute(f"ALTER TABLE litemq_consumers DROP COLUMN {column}")
