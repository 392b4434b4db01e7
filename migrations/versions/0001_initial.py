"""The initial schema: exchanges, queues, bindings, messages, connections, consumers, and the predeclared
exchanges.

On PostgreSQL message ids and lease tokens are BIGINT; consumers get the ``rowid`` SQLite gives every table (their
order of arrival); the messages table, a table of churn, leaves room on its pages and is vacuumed early.

Revision ID: 0001
Revises:
"""
import importlib.util
from pathlib import Path

import sqlalchemy as sa
from alembic import op

# migrations/postgresql.py: what the revisions do differently on PostgreSQL (loaded by path, as revisions are).
_spec = importlib.util.spec_from_file_location("litemq_migrations_postgresql", Path(__file__).parents[1] / "postgresql.py")
postgresql = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(postgresql)

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

PREDECLARED = [("amq.direct", "direct"), ("amq.fanout", "fanout"), ("amq.topic", "topic"),
               ("amq.headers", "headers"), ("amq.match", "headers")]

MESSAGES_STORAGE = ("fillfactor = 80, autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_threshold = 1000, "
                    "autovacuum_vacuum_insert_scale_factor = 0.01, autovacuum_analyze_scale_factor = 0.02, "
                    "autovacuum_vacuum_cost_delay = 0")
"""PostgreSQL's storage settings for the messages table (its defaults vacuum after 20 % of the rows changed)."""


def upgrade() -> None:
    exchanges = op.create_table(
        "litemq_exchanges",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("durable", sa.Boolean(), nullable=False),
        sa.Column("auto_delete", sa.Boolean(), nullable=False),
        sa.Column("internal", sa.Boolean(), nullable=False),
        sa.Column("arguments", sa.Text(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_litemq_exchanges")),
    )
    op.create_table(
        "litemq_queues",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("durable", sa.Boolean(), nullable=False),
        sa.Column("exclusive", sa.Boolean(), nullable=False),
        sa.Column("auto_delete", sa.Boolean(), nullable=False),
        sa.Column("arguments", sa.Text(), nullable=True),
        sa.Column("owner_connection", sa.Text(), nullable=True),
        sa.Column("ready_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_litemq_queues")),
    )
    op.create_table(
        "litemq_bindings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("exchange", sa.Text(), nullable=False),
        sa.Column("destination", sa.Text(), nullable=False),
        sa.Column("destination_kind", sa.Text(), nullable=False),
        sa.Column("routing_key", sa.Text(), nullable=False),
        sa.Column("arguments", sa.Text(), server_default=sa.text("'{}'"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_litemq_bindings")),
        sa.UniqueConstraint("exchange", "destination_kind", "destination", "routing_key", "arguments",
                            name=op.f("uq_litemq_bindings_exchange_destination_kind_destination_routing_key_arguments")),
    )
    op.create_index(op.f("ix_litemq_bindings_destination_kind_destination"), "litemq_bindings",
                    ["destination_kind", "destination"])
    op.create_table(
        "litemq_messages",
        sa.Column("id", postgresql.big_integer(), nullable=False),
        sa.Column("queue", sa.Text(), nullable=False),
        sa.Column("exchange", sa.Text(), nullable=False),
        sa.Column("routing_key", sa.Text(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("properties", sa.Text(), nullable=True),
        sa.Column("published_at", sa.Float(), nullable=False),
        sa.Column("delivery_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("lease_owner", sa.Text(), nullable=True),
        sa.Column("lease_token", postgresql.big_integer(), nullable=True),
        sa.Column("lease_expires_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_litemq_messages")),
    )
    op.create_index("ix_litemq_messages_ready", "litemq_messages", ["queue", "id"],
                    sqlite_where=sa.text("lease_token IS NULL"), postgresql_where=sa.text("lease_token IS NULL"))
    op.create_index("ix_litemq_messages_lease_expiry", "litemq_messages", ["queue", "lease_expires_at"],
                    sqlite_where=sa.text("lease_token IS NOT NULL"),
                    postgresql_where=sa.text("lease_token IS NOT NULL"))
    op.create_index("ix_litemq_messages_lease_owner", "litemq_messages", ["lease_owner"],
                    sqlite_where=sa.text("lease_token IS NOT NULL"),
                    postgresql_where=sa.text("lease_token IS NOT NULL"))
    op.create_table(
        "litemq_connections",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("host", sa.Text(), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_litemq_connections")),
    )
    op.create_table(
        "litemq_consumers",
        sa.Column("connection_id", sa.Text(), nullable=False),
        sa.Column("channel", sa.Integer(), nullable=False),
        sa.Column("consumer_tag", sa.Text(), nullable=False),
        sa.Column("queue", sa.Text(), nullable=False),
        sa.Column("prefetch_count", sa.Integer(), nullable=False),
        sa.Column("auto_ack", sa.Boolean(), nullable=False),
        sa.Column("exclusive", sa.Boolean(), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("connection_id", "channel", "consumer_tag", name=op.f("pk_litemq_consumers")),
    )
    op.create_index(op.f("ix_litemq_consumers_queue"), "litemq_consumers", ["queue"])
    if postgresql.on_postgresql():
        op.execute("ALTER TABLE litemq_consumers ADD COLUMN rowid BIGINT GENERATED ALWAYS AS IDENTITY")
        # Every claim, ack and requeue writes a row version; the space left on each page keeps the new version
        # beside the old, and vacuum runs after a small share of the rows changed rather than a fifth of them.
        op.execute(f"ALTER TABLE litemq_messages SET ({MESSAGES_STORAGE})")
    op.bulk_insert(exchanges, [
        {"name": name, "type": kind, "durable": True, "auto_delete": False, "internal": False,
         "arguments": None, "created_at": 0.0}
        for name, kind in PREDECLARED
    ])


def downgrade() -> None:
    for table in ("litemq_consumers", "litemq_connections", "litemq_messages", "litemq_bindings",
                  "litemq_queues", "litemq_exchanges"):
        op.drop_table(table)
