"""Ready counters kept by triggers: a queue's ``ready_count`` and ``ready_bytes`` change with every write to
litemq_messages and litemq_bodies, litemq's own or by hand (``sqlite3`` at the prompt), so a message deleted,
inserted or updated with plain SQL is counted right. litemq's own statements no longer touch the counters: the
triggers are their one source of truth. The counters of every queue are recounted from the rows here (a file may
already be off, after hand writes under an older litemq).

A message is ready when it holds no lease (``lease_token IS NULL``) and is not delayed (``visible_at IS NULL``),
as litemq's ready index says. Its bytes are its body's length, from its row or, when that is NULL, from
litemq_bodies. The delete trigger of 0006 (a message's out-of-row body goes with it) becomes part of the counting
delete trigger, so the body's size is read before the body goes.

On PostgreSQL a trigger that updated the queue's row would make that row a lock every publisher of the queue waits
for until it commits, and leave a dead row version per message. Its triggers run once per statement instead and
insert what the statement changed into ``litemq_queue_deltas`` (one row per queue it touched); a queue's counts are
its row's plus its deltas', and the store folds the deltas into the rows from time to time (litemq.store.postgres
says why and what it costs).

Revision ID: 0007
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

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

BODY_TRIGGER_0006 = "litemq_messages_delete_body"


def _ready(row: str) -> str:
    return f"{row}.lease_token IS NULL AND {row}.visible_at IS NULL"


def _size(row: str) -> str:
    return f"coalesce(length({row}.body), (SELECT length(b.body) FROM litemq_bodies b WHERE b.id = {row}.id), 0)"


def _count(row: str, sign: str) -> str:
    return (f"UPDATE litemq_queues SET ready_count = ready_count {sign} 1, ready_bytes = ready_bytes {sign} "
            f"{_size(row)} WHERE name = {row}.queue")


# What a message's body in litemq_bodies adds to its queue's bytes: nothing unless its message is ready and keeps
# no body in its own row.
def _body_bytes(row: str, sign: str) -> str:
    return (f"UPDATE litemq_queues SET ready_bytes = ready_bytes {sign} length({row}.body) WHERE name = "
            f"(SELECT m.queue FROM litemq_messages m WHERE m.id = {row}.id AND m.body IS NULL AND {_ready('m')})")


# Any column a ready message is counted by: its queue, body, id (where an out-of-row body is found), and readiness.
COUNTED = "queue, body, id, lease_token, visible_at"
TRIGGERS = {
    "litemq_messages_insert_count": f"AFTER INSERT ON litemq_messages WHEN {_ready('new')} "
                                    f"BEGIN {_count('new', '+')}; END",
    # One trigger, so the body's size is read before the body is deleted.
    "litemq_messages_delete_count": f"AFTER DELETE ON litemq_messages WHEN ({_ready('old')}) OR old.body IS NULL "
                                    f"BEGIN {_count('old', '-')} AND {_ready('old')}; "
                                    "DELETE FROM litemq_bodies WHERE id = old.id AND old.body IS NULL; END",
    "litemq_messages_update_count_out": f"AFTER UPDATE OF {COUNTED} ON litemq_messages WHEN {_ready('old')} "
                                        f"BEGIN {_count('old', '-')}; END",
    "litemq_messages_update_count_in": f"AFTER UPDATE OF {COUNTED} ON litemq_messages WHEN {_ready('new')} "
                                       f"BEGIN {_count('new', '+')}; END",
    "litemq_bodies_insert_count": f"AFTER INSERT ON litemq_bodies BEGIN {_body_bytes('new', '+')}; END",
    "litemq_bodies_delete_count": f"AFTER DELETE ON litemq_bodies BEGIN {_body_bytes('old', '-')}; END",
    "litemq_bodies_update_count": f"AFTER UPDATE OF id, body ON litemq_bodies "
                                  f"BEGIN {_body_bytes('old', '-')}; {_body_bytes('new', '+')}; END",
}

RECOUNT = ("UPDATE litemq_queues SET (ready_count, ready_bytes) = (SELECT count(*), coalesce(sum("
           f"{_size('m')}), 0) FROM litemq_messages m WHERE m.queue = litemq_queues.name AND {_ready('m')})")


def upgrade() -> None:
    if postgresql.on_postgresql():
        _upgrade_postgresql()
        return
    op.execute(f"DROP TRIGGER IF EXISTS {BODY_TRIGGER_0006}")
    for name, definition in TRIGGERS.items():
        op.execute(f"CREATE TRIGGER {name} {definition}")
    op.execute(RECOUNT)


def downgrade() -> None:
    if postgresql.on_postgresql():
        _downgrade_postgresql()
        return
    for name in TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {name}")
    op.execute(f"CREATE TRIGGER {BODY_TRIGGER_0006} AFTER DELETE ON litemq_messages WHEN old.body IS NULL "
               "BEGIN DELETE FROM litemq_bodies WHERE id = old.id; END")
    # litemq 0006 keeps the counters by its own statements, from where they are now: right.


# --- PostgreSQL: delta rows per statement, from its transition tables
DELTAS = "litemq_queue_deltas"
DELTAS_STORAGE = ("autovacuum_vacuum_threshold = 1000, autovacuum_vacuum_scale_factor = 0, "
                  "autovacuum_vacuum_insert_threshold = 1000, autovacuum_vacuum_insert_scale_factor = 0, "
                  "autovacuum_vacuum_cost_delay = 0")
"""Deltas are inserted and soon folded away: vacuumed after every thousand, whatever the table's size."""


def _postgresql_size(row: str) -> str:
    return (f"coalesce(length({row}.body), (SELECT length(b.body) FROM {{schema}}.litemq_bodies b "
            f"WHERE b.id = {row}.id), 0)")


def _postgresql_ready(rows: str, sign: str) -> str:
    return (f"SELECT r.queue, {sign}1 AS ready_count, {sign}{_postgresql_size('r')} AS ready_bytes "
            f"FROM {rows} r WHERE {_ready('r')}")


def _postgresql_body_bytes(rows: str, sign: str) -> str:
    return (f"SELECT m.queue, 0 AS ready_count, {sign}length(r.body) AS ready_bytes FROM {rows} r "
            f"JOIN {{schema}}.litemq_messages m ON m.id = r.id AND m.body IS NULL AND {_ready('m')}")


def _postgresql_deltas(*changes: str) -> str:
    return (f"INSERT INTO {{schema}}.{DELTAS} (queue, ready_count, ready_bytes) "
            f"SELECT queue, sum(ready_count), sum(ready_bytes) FROM ({' UNION ALL '.join(changes)}) AS changed "
            "GROUP BY queue HAVING sum(ready_count) <> 0 OR sum(ready_bytes) <> 0")


# name: (event, transition tables, what the function does)
POSTGRESQL_TRIGGERS = {
    "litemq_messages_insert_count": ("INSERT ON litemq_messages", "NEW TABLE AS new_rows",
                                     _postgresql_deltas(_postgresql_ready("new_rows", "+"))),
    "litemq_messages_update_count": ("UPDATE ON litemq_messages", "OLD TABLE AS old_rows NEW TABLE AS new_rows",
                                     _postgresql_deltas(_postgresql_ready("new_rows", "+"),
                                                        _postgresql_ready("old_rows", "-"))),
    # The body's size is read before the body goes with its message.
    "litemq_messages_delete_count": ("DELETE ON litemq_messages", "OLD TABLE AS old_rows",
                                     _postgresql_deltas(_postgresql_ready("old_rows", "-")) + ";\n    "
                                     "DELETE FROM {schema}.litemq_bodies WHERE id IN "
                                     "(SELECT id FROM old_rows WHERE body IS NULL)"),
    "litemq_messages_truncate_count": ("TRUNCATE ON litemq_messages", "",
                                       "DELETE FROM {schema}.litemq_bodies;\n    "
                                       f"DELETE FROM {{schema}}.{DELTAS};\n    "
                                       "UPDATE {schema}.litemq_queues SET ready_count = 0, ready_bytes = 0"),
    "litemq_bodies_insert_count": ("INSERT ON litemq_bodies", "NEW TABLE AS new_rows",
                                   _postgresql_deltas(_postgresql_body_bytes("new_rows", "+"))),
    "litemq_bodies_delete_count": ("DELETE ON litemq_bodies", "OLD TABLE AS old_rows",
                                   _postgresql_deltas(_postgresql_body_bytes("old_rows", "-"))),
    "litemq_bodies_update_count": ("UPDATE ON litemq_bodies", "OLD TABLE AS old_rows NEW TABLE AS new_rows",
                                   _postgresql_deltas(_postgresql_body_bytes("new_rows", "+"),
                                                      _postgresql_body_bytes("old_rows", "-"))),
}
# The queue's counts as a person reads them in the views: its row's and its deltas'.
POSTGRESQL_COUNTED = {column: f"(q.{column} + coalesce((SELECT sum(d.{column}) FROM {DELTAS} d "
                              f"WHERE d.queue = q.name), 0))::bigint" for column in ("ready_count", "ready_bytes")}
FOLD = (f"UPDATE litemq_queues q SET ready_count = q.ready_count + d.ready_count, "
        f"ready_bytes = q.ready_bytes + d.ready_bytes FROM (SELECT queue, sum(ready_count) AS ready_count, "
        f"sum(ready_bytes) AS ready_bytes FROM {DELTAS} GROUP BY queue) d WHERE q.name = d.queue")


def _0006():
    spec = importlib.util.spec_from_file_location("litemq_migration_0006",
                                                  Path(__file__).with_name("0006_bodies_out_of_row.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _postgresql_views() -> dict:
    """0006's views, counting the deltas in."""
    views = _0006()._views("postgresql")
    views["litemq_queue_stats"] = views["litemq_queue_stats"].replace(
        "q.ready_count", POSTGRESQL_COUNTED["ready_count"]).replace(
        "q.ready_bytes\n", f"{POSTGRESQL_COUNTED['ready_bytes']} AS ready_bytes\n")
    return views


def _replace_views(views: dict) -> None:
    for name, body in views.items():
        op.execute(f"DROP VIEW IF EXISTS {name}")
        op.execute(f"CREATE VIEW {name} AS {body}")


def _upgrade_postgresql() -> None:
    op.execute(f"DROP TRIGGER IF EXISTS {BODY_TRIGGER_0006} ON litemq_messages")
    postgresql.drop_function(BODY_TRIGGER_0006)
    op.create_table(DELTAS,
                    sa.Column("queue", sa.Text(), nullable=False),
                    sa.Column("ready_count", sa.BigInteger(), nullable=False),
                    sa.Column("ready_bytes", sa.BigInteger(), nullable=False))
    op.create_index(f"ix_{DELTAS}_queue", DELTAS, ["queue"])
    op.execute(f"ALTER TABLE {DELTAS} SET ({DELTAS_STORAGE})")
    for name, (event, transitions, action) in POSTGRESQL_TRIGGERS.items():
        postgresql.create_function(name, f"BEGIN\n    {action};\n    RETURN NULL;\nEND;")
        referencing = f"REFERENCING {transitions} " if transitions else ""
        op.execute(f"CREATE TRIGGER {name} AFTER {event} {referencing}FOR EACH STATEMENT EXECUTE FUNCTION {name}()")
    op.execute(RECOUNT)
    _replace_views(_postgresql_views())


def _downgrade_postgresql() -> None:
    op.execute(FOLD)
    _replace_views(_0006()._views("postgresql"))
    for name, (event, _, _) in POSTGRESQL_TRIGGERS.items():
        op.execute(f"DROP TRIGGER IF EXISTS {name} ON {event.split(' ON ')[1]}")
        postgresql.drop_function(name)
    op.drop_table(DELTAS)
    _0006().create_postgresql_body_trigger()
