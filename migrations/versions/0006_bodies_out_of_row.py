"""Large bodies in a table of their own: ``litemq_bodies`` holds each body over 3 KB, under its message's id, and
the message row holds NULL in ``body``. A claim and a requeue set or clear the message row's lease, and SQLite
rewrites a row whole, overflow pages and all, when its size changes: a 1 MB body was written again at every claim.
A trigger deletes a body with its message, whoever deletes it (litemq, or plain SQL). The views read bodies from
either place. Large bodies already stored move out of their rows here.

SQLite cannot make a column nullable in place: the messages table is rebuilt from its stored definition (views
first dropped, then made again; the indexes made again from theirs).

PostgreSQL keeps an UPDATE off a large value it does not change (TOAST), so it keeps every body in its row; the
table and the trigger are there for rows written by hand, and the views read bodies from either place as on SQLite.

Revision ID: 0006
Revises: 0005
"""
import importlib.util
import re
from pathlib import Path

import sqlalchemy as sa
from alembic import op

# migrations/postgresql.py: what the revisions do differently on PostgreSQL (loaded by path, as revisions are).
_spec = importlib.util.spec_from_file_location("litemq_migrations_postgresql", Path(__file__).parents[1] / "postgresql.py")
postgresql = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(postgresql)

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


def _views_of_0003(dialect: str = "sqlite") -> dict:
    spec = importlib.util.spec_from_file_location("litemq_migration_0003",
                                                  Path(__file__).with_name("0003_amqp_extras.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module._views(dialect)


def _views(dialect: str = "sqlite") -> dict:
    """0003's views, reading each body where it is."""
    views = _views_of_0003(dialect)
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


# PostgreSQL's body trigger: once per statement, over the rows it deleted.
POSTGRESQL_DELETE_BODIES = ("DELETE FROM {schema}.litemq_bodies WHERE id IN "
                            "(SELECT id FROM old_rows WHERE body IS NULL)")
POSTGRESQL_BODY_TRIGGER = ("CREATE TRIGGER {name} AFTER DELETE ON litemq_messages REFERENCING OLD TABLE AS old_rows "
                           "FOR EACH STATEMENT EXECUTE FUNCTION {name}()")


def create_postgresql_body_trigger() -> None:
    postgresql.create_function(BODY_TRIGGER, f"BEGIN\n    {POSTGRESQL_DELETE_BODIES};\n    RETURN NULL;\nEND;")
    op.execute(POSTGRESQL_BODY_TRIGGER.format(name=BODY_TRIGGER))


def upgrade() -> None:
    on_postgresql = postgresql.on_postgresql()
    views = _views(op.get_bind().dialect.name)
    _drop_views(views)
    if on_postgresql:
        op.alter_column("litemq_messages", "body", nullable=True)
    else:
        _rebuild_messages(body_nullable=True)
    op.create_table("litemq_bodies",
                    sa.Column("id", postgresql.big_integer(), nullable=False, autoincrement=False),
                    sa.Column("body", sa.LargeBinary(), nullable=False),
                    sa.PrimaryKeyConstraint("id", name="pk_litemq_bodies"))
    if on_postgresql:
        create_postgresql_body_trigger()
        _create_views(views)
        return
    op.execute("INSERT INTO litemq_bodies (id, body) SELECT id, body FROM litemq_messages "
               f"WHERE length(body) > {OUT_OF_ROW_BYTES}")
    op.execute(f"UPDATE litemq_messages SET body = NULL WHERE length(body) > {OUT_OF_ROW_BYTES}")
    op.execute(f"CREATE TRIGGER {BODY_TRIGGER} AFTER DELETE ON litemq_messages WHEN old.body IS NULL "
               "BEGIN DELETE FROM litemq_bodies WHERE id = old.id; END")
    _create_views(views)


def downgrade() -> None:
    on_postgresql = postgresql.on_postgresql()
    dialect = op.get_bind().dialect.name
    _drop_views(_views())
    if on_postgresql:
        op.execute(f"DROP TRIGGER IF EXISTS {BODY_TRIGGER} ON litemq_messages")
        postgresql.drop_function(BODY_TRIGGER)
    else:
        op.execute(f"DROP TRIGGER IF EXISTS {BODY_TRIGGER}")
    op.execute("UPDATE litemq_messages SET body = (SELECT b.body FROM litemq_bodies b WHERE b.id = litemq_messages.id) "
               "WHERE body IS NULL")
    op.drop_table("litemq_bodies")
    if on_postgresql:
        op.alter_column("litemq_messages", "body", nullable=False)
    else:
        _rebuild_messages(body_nullable=False)
    _create_views(_views_of_0003(dialect))
