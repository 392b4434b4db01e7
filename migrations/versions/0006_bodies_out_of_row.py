"""Large bodies in a table of their own: ``litemq_bodies`` holds each body over 3 KB, under its message's id, and
the message row holds NULL in ``body``. A claim and a requeue set or clear the message row's lease, and SQLite
rewrites a row whole, overflow pages and all, when its size changes: a 1 MB body was written again at every claim.
A trigger deletes a body with its message, whoever deletes it (litemq, or plain SQL). The views read bodies from
either place. Large bodies already stored move out of their rows here.

SQLite cannot make a column nullable in place: the messages table is rebuilt from its stored definition (views
first dropped, then made again; the indexes made again from theirs).

Revision ID: 0006
Revises: 0005
"""
import importlib.util
import re
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
    """The messages table made again from its own stored definition with ``body`` nullable or not (SQLite's
    documented way to change a column): rows, ids and indexes kept."""
    bind = op.get_bind()
    table = bind.execute(sa.text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'litemq_messages'"))
    definition = table.scalar_one()
    indexes = bind.execute(sa.text("SELECT sql FROM sqlite_master WHERE type = 'index' "
                                   "AND tbl_name = 'litemq_messages' AND sql IS NOT NULL")).scalars().all()
    strict, loose = "body BLOB NOT NULL,", "body BLOB,"
    before, after = (strict, loose) if body_nullable else (loose, strict)
    assert definition.count(before) == 1, definition
    # A table SQLite renamed keeps its name quoted in its stored definition.
    rebuilt = re.sub(r'^CREATE TABLE "?litemq_messages"? \(', "CREATE TABLE litemq_messages_rebuilt (",
                     definition.replace(before, after))
    assert rebuilt.startswith("CREATE TABLE litemq_messages_rebuilt ("), rebuilt
    op.execute(rebuilt)
    op.execute("INSERT INTO litemq_messages_rebuilt SELECT * FROM litemq_messages")
    op.drop_table("litemq_messages")
    op.rename_table("litemq_messages_rebuilt", "litemq_messages")
    for index in indexes:
        op.execute(index)


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
