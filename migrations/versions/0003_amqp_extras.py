"""AMQP extras: message priority, TTL and delayed delivery on messages; ready bytes and queue TTL on queues; the
ready index in delivery order (priority, then publication); indexes to find what falls due; views that show them.

Revision ID: 0003
Revises: 0002
"""
import importlib.util
from pathlib import Path

import sqlalchemy as sa
from alembic import op

# migrations/postgresql.py: what the revisions do differently on PostgreSQL (loaded by path, as revisions are).
_spec = importlib.util.spec_from_file_location("litemq_migrations_postgresql", Path(__file__).parents[1] / "postgresql.py")
postgresql = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(postgresql)

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _0002():
    spec = importlib.util.spec_from_file_location("litemq_migration_0002",
                                                  Path(__file__).with_name("0002_inspection_views.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _views_of_0002(dialect: str = "sqlite") -> dict:
    return _0002().views(dialect)


def _views(dialect: str = "sqlite") -> dict:
    """0002's views, telling delayed messages from ready ones and showing priority, expiry and due time."""
    iso = _0002()._iso
    views = _views_of_0002(dialect)
    views["litemq_message_view"] = views["litemq_message_view"].replace(
        "CASE WHEN m.lease_token IS NULL THEN 'ready' ELSE 'unacked' END AS state",
        "CASE WHEN m.visible_at IS NOT NULL THEN 'delayed' WHEN m.lease_token IS NULL THEN 'ready' "
        "ELSE 'unacked' END AS state",
    ).replace(
        "AS lease_expires_at\n",
        "AS lease_expires_at,\n               m.priority,\n"
        f"               {iso('m.expires_at', dialect)} AS expires_at,\n"
        f"               {iso('m.visible_at', dialect)} AS delayed_until\n",
    )
    views["litemq_queue_stats"] = views["litemq_queue_stats"].replace(
        "WHERE m.queue = q.name AND m.lease_token IS NULL ORDER BY m.id LIMIT 1) AS oldest_ready_seconds,",
        "WHERE m.queue = q.name AND m.lease_token IS NULL AND m.visible_at IS NULL ORDER BY m.id LIMIT 1)"
        " AS oldest_ready_seconds,",
    ).replace(
        "q.arguments\n",
        "q.arguments,\n"
        "               (SELECT count(*) FROM litemq_messages m\n"
        "                 WHERE m.queue = q.name AND m.visible_at IS NOT NULL) AS delayed,\n"
        "               q.ready_bytes\n",
    )
    assert "delayed_until" in views["litemq_message_view"] and "ready_bytes" in views["litemq_queue_stats"]
    return views


def _replace_views(views: dict) -> None:
    for name, body in views.items():
        op.execute(f"DROP VIEW IF EXISTS {name}")
        op.execute(f"CREATE VIEW {name} AS {body}")


def upgrade() -> None:
    op.add_column("litemq_messages", sa.Column("priority", sa.Integer(), server_default=sa.text("0"),
                                               nullable=False))
    op.add_column("litemq_messages", sa.Column("expires_at", sa.Float(), nullable=True))
    op.add_column("litemq_messages", sa.Column("visible_at", sa.Float(), nullable=True))
    op.add_column("litemq_queues", sa.Column("ready_bytes", postgresql.big_integer(), server_default=sa.text("0"),
                                             nullable=False))
    op.add_column("litemq_queues", sa.Column("expires_at", sa.Float(), nullable=True))
    op.drop_index("ix_litemq_messages_ready", "litemq_messages")
    op.create_index("ix_litemq_messages_ready", "litemq_messages", ["queue", sa.text("priority DESC"), "id"],
                    sqlite_where=sa.text("lease_token IS NULL AND visible_at IS NULL"),
                    postgresql_where=sa.text("lease_token IS NULL AND visible_at IS NULL"))
    op.create_index("ix_litemq_messages_expiry", "litemq_messages", ["expires_at"],
                    sqlite_where=sa.text("expires_at IS NOT NULL AND lease_token IS NULL"),
                    postgresql_where=sa.text("expires_at IS NOT NULL AND lease_token IS NULL"))
    op.create_index("ix_litemq_messages_delayed", "litemq_messages", ["visible_at"],
                    sqlite_where=sa.text("visible_at IS NOT NULL"), postgresql_where=sa.text("visible_at IS NOT NULL"))
    op.create_index("ix_litemq_queues_expires_at", "litemq_queues", ["expires_at"],
                    sqlite_where=sa.text("expires_at IS NOT NULL"), postgresql_where=sa.text("expires_at IS NOT NULL"))
    # Counters start right for the data of 0002: the body bytes of each queue's ready messages.
    op.execute("UPDATE litemq_queues SET ready_bytes = (SELECT coalesce(sum(length(m.body)), 0) "
               "FROM litemq_messages m WHERE m.queue = litemq_queues.name AND m.lease_token IS NULL)")
    _replace_views(_views(op.get_bind().dialect.name))


def downgrade() -> None:
    # Delayed messages have no place at 0002: they become ready, as if their delay had passed.
    op.execute("UPDATE litemq_queues SET ready_count = ready_count + (SELECT count(*) FROM litemq_messages m "
               "WHERE m.queue = litemq_queues.name AND m.visible_at IS NOT NULL)")
    dialect = op.get_bind().dialect.name
    for name in _views():
        op.execute(f"DROP VIEW IF EXISTS {name}")
    for index, table in (("ix_litemq_queues_expires_at", "litemq_queues"),
                         ("ix_litemq_messages_delayed", "litemq_messages"),
                         ("ix_litemq_messages_expiry", "litemq_messages"),
                         ("ix_litemq_messages_ready", "litemq_messages")):
        op.drop_index(index, table)
    for table, column in (("litemq_queues", "expires_at"), ("litemq_queues", "ready_bytes"),
                          ("litemq_messages", "visible_at"), ("litemq_messages", "expires_at"),
                          ("litemq_messages", "priority")):
        op.drop_column(table, column)
    op.create_index("ix_litemq_messages_ready", "litemq_messages", ["queue", "id"],
                    sqlite_where=sa.text("lease_token IS NULL"), postgresql_where=sa.text("lease_token IS NULL"))
    _replace_views(_views_of_0002(dialect))
