"""Large bodies in a table of their own: ``litemq_bodies`` holds each body over 3 KB, under its message's id, and
the message row holds NULL in ``body``. A claim and a requeue set or clear the message row's lease, and SQLite
rewrites a row whole, overflow pages and all, when its size changes: a 1 MB body was written again at every claim.
A trigger deletes a body with its message, whoever deletes it (litemq, or plain SQL). The views read bodies from
either place. Large bodies already stored move out of their rows here.

SQLite cannot make a column nullable in place: the messages table is rebuilt (views first dropped, then made
again; the indexes made again as they were).

Revision ID: 0006
Revises: 0005
"""
import importlib.util
from pathlib import Path

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

OUT_OF_ROW_BYTES = 3072  # litemq.store.sqlite's, as of this revision
BODY_TRIGGER = "litemq_messages_delete_body"
BODY = "coalesce(m.body, (SELECT b.body FROM litemq_bodies b WHERE b.id = m.id))"
BODY_BYTES = "coalesce(length(m.body), (SELECT length(b.body) FROM litemq_bodies b WHERE b.id = m.id))"
COLUMNS = ("id, queue, exchange, routing_key, body, properties, published_at, delivery_count, lease_owner, "
           "lease_token, lease_expires_at, priority, expires_at, visible_at")


def _views_of_0003() -> dict:
    spec = importlib.util.spec_from_file_location("litemq_migration_0003",
                                                  Path(__file__).with_name("0003_amqp_extras.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module._views()


def _views() -> dict:
    """0003's views, reading each body where it is."""
    views = _views_of_0003()
    resolved = COLUMNS.replace("body,", f"{BODY} AS body,")
    views["litemq_message_view"] = views["litemq_message_view"].replace(
        "FROM litemq_messages m", f"FROM (SELECT {resolved} FROM litemq_messages m) m")
    views["litemq_queue_stats"] = views["litemq_queue_stats"].replace("sum(length(m.body))", f"sum({BODY_BYTES})")
    assert "litemq_bodies" in views["litemq_message_view"] and "litemq_bodies" in views["litemq_queue_stats"]
    return views


def _rebuild_messages(body_nullable: bool) -> None:
    """The messages table made again with ``body`` nullable or not, its rows, ids and indexes kept."""
    op.create_table(
        "litemq_messages_rebuilt",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("queue", sa.Text(), nullable=False),
        sa.Column("exchange", sa.Text(), nullable=False),
        sa.Column("routing_key", sa.Text(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=body_nullable),
        sa.Column("properties", sa.Text(), nullable=True),
        sa.Column("published_at", sa.Float(), nullable=False),
        sa.Column("delivery_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("lease_owner", sa.Text(), nullable=True),
        sa.Column("lease_token", sa.Integer(), nullable=True),
        sa.Column("lease_expires_at", sa.Float(), nullable=True),
        sa.Column("priority", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=True),
        sa.Column("visible_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_litemq_messages"),
    )
    op.execute(f"INSERT INTO litemq_messages_rebuilt ({COLUMNS}) SELECT {COLUMNS} FROM litemq_messages")
    op.drop_table("litemq_messages")
    op.rename_table("litemq_messages_rebuilt", "litemq_messages")
    op.create_index("ix_litemq_messages_ready", "litemq_messages", ["queue", sa.text("priority DESC"), "id"],
                    sqlite_where=sa.text("lease_token IS NULL AND visible_at IS NULL"))
    op.create_index("ix_litemq_messages_expiry", "litemq_messages", ["expires_at"],
                    sqlite_where=sa.text("expires_at IS NOT NULL AND lease_token IS NULL"))
    op.create_index("ix_litemq_messages_delayed", "litemq_messages", ["visible_at"],
                    sqlite_where=sa.text("visible_at IS NOT NULL"))
    op.create_index("ix_litemq_messages_lease_expiry", "litemq_messages", ["queue", "lease_expires_at"],
                    sqlite_where=sa.text("lease_token IS NOT NULL"))


def _drop_views(views: dict) -> None:
    for name in views:
        op.execute(f"DROP VIEW IF EXISTS {name}")


def _create_views(views: dict) -> None:
    for name, body in views.items():
        op.execute(f"CREATE VIEW {name} AS {body}")


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        raise NotImplementedError("the messages table rebuild and the body trigger are written for SQLite")
    views = _views()
    _drop_views(views)
    _rebuild_messages(body_nullable=True)
    op.create_table("litemq_bodies",
                    sa.Column("id", sa.Integer(), nullable=False),
                    sa.Column("body", sa.LargeBinary(), nullable=False),
                    sa.PrimaryKeyConstraint("id", name="pk_litemq_bodies"))
    op.execute("INSERT INTO litemq_bodies (id, body) SELECT id, body FROM litemq_messages "
               f"WHERE length(body) > {OUT_OF_ROW_BYTES}")
    op.execute(f"UPDATE litemq_messages SET body = NULL WHERE length(body) > {OUT_OF_ROW_BYTES}")
    op.execute(f"CREATE TRIGGER {BODY_TRIGGER} AFTER DELETE ON litemq_messages WHEN old.body IS NULL "
               "BEGIN DELETE FROM litemq_bodies WHERE id = old.id; END")
    _create_views(views)


def downgrade() -> None:
    _drop_views(_views())
    op.execute(f"DROP TRIGGER IF EXISTS {BODY_TRIGGER}")
    op.execute("UPDATE litemq_messages SET body = (SELECT b.body FROM litemq_bodies b WHERE b.id = litemq_messages.id) "
               "WHERE body IS NULL")
    op.drop_table("litemq_bodies")
    _rebuild_messages(body_nullable=False)
    _create_views(_views_of_0003())
