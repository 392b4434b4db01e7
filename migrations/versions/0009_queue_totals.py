"""Cumulative counters per queue, for rates without an event log (the management page and ``/metrics``):
``published_total`` (messages stored into the queue, moved in included), ``delivered_total`` (taken with a lease:
a get or a consumer's delivery that awaits its ack), ``redelivered_total`` (of those, the ones delivered before),
``acked_total`` (leased messages settled for good: acked, or rejected without requeue). A delivery with
auto-ack deletes its message as a purge does, and counts in none of them.

They are kept by the triggers of 0007, which already count every write to the messages: on SQLite the insert
trigger counts every message (not only ready ones), a claim counts in the update trigger that takes it out of
ready, and a trigger of its own counts the leased messages deleted (one more UPDATE of the queue's row per ack). On PostgreSQL the statement triggers add the counts to the delta rows they write, which the store folds into
the queue's row (an ack statement now writes one delta row).

Revision ID: 0009
Revises: 0008
"""
import importlib.util
from pathlib import Path

import sqlalchemy as sa
from alembic import op

# migrations/postgresql.py: what the revisions do differently on PostgreSQL (loaded by path, as revisions are).
_spec = importlib.util.spec_from_file_location("litemq_migrations_postgresql", Path(__file__).parents[1] / "postgresql.py")
postgresql = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(postgresql)

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

TOTALS = ("published_total", "delivered_total", "redelivered_total", "acked_total")
DELTAS = "litemq_queue_deltas"


def _0007():
    spec = importlib.util.spec_from_file_location("litemq_migration_0007",
                                                  Path(__file__).with_name("0007_counter_triggers.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _ready(row: str) -> str:
    return f"{row}.lease_token IS NULL AND {row}.visible_at IS NULL"


def _size(row: str) -> str:
    return f"coalesce(length({row}.body), (SELECT length(b.body) FROM litemq_bodies b WHERE b.id = {row}.id), 0)"


COUNTED = "queue, body, id, lease_token, visible_at"  # 0007's
CHANGED = ("litemq_messages_insert_count", "litemq_messages_update_count_out")  # 0007's, made again
ADDED = ("litemq_messages_delete_acked",)
TRIGGERS = {
    # Every message stored counts as published; a ready one is counted in as well.
    "litemq_messages_insert_count": "AFTER INSERT ON litemq_messages BEGIN UPDATE litemq_queues SET "
                                    f"ready_count = ready_count + ({_ready('new')}), ready_bytes = ready_bytes + "
                                    f"CASE WHEN {_ready('new')} THEN {_size('new')} ELSE 0 END, "
                                    "published_total = published_total + 1 WHERE name = new.queue; END",
    # A ready message that takes a lease is delivered (again, when it was delivered before).
    "litemq_messages_update_count_out": f"AFTER UPDATE OF {COUNTED} ON litemq_messages WHEN {_ready('old')} "
                                        "BEGIN UPDATE litemq_queues SET ready_count = ready_count - 1, "
                                        f"ready_bytes = ready_bytes - {_size('old')}, "
                                        "delivered_total = delivered_total + (new.lease_token IS NOT NULL), "
                                        "redelivered_total = redelivered_total + "
                                        "(new.lease_token IS NOT NULL AND new.delivery_count > 1) "
                                        "WHERE name = old.queue; END",
    # A leased message deleted is settled (0007's delete trigger, unchanged, counts ready ones out).
    "litemq_messages_delete_acked": "AFTER DELETE ON litemq_messages WHEN old.lease_token IS NOT NULL "
                                    "BEGIN UPDATE litemq_queues SET acked_total = acked_total + 1 "
                                    "WHERE name = old.queue; END",
}


def _columns(table: str) -> None:
    for name in TOTALS:
        op.add_column(table, sa.Column(name, postgresql.big_integer(), nullable=False, server_default=sa.text("0")))


def _drop_columns(table: str) -> None:
    # SQLite (3.35+, as litemq requires) drops a column in place; a batch rebuild would trip on the views.
    for name in reversed(TOTALS):
        op.execute(f"ALTER TABLE {table} DROP COLUMN {name}")


def upgrade() -> None:
    _columns("litemq_queues")
    if postgresql.on_postgresql():
        _columns(DELTAS)
        for name, body in POSTGRESQL_FUNCTIONS.items():
            postgresql.create_function(name, f"BEGIN\n    {body};\n    RETURN NULL;\nEND;", replace=True)
        return
    for name in CHANGED:
        op.execute(f"DROP TRIGGER IF EXISTS {name}")
    for name in (*CHANGED, *ADDED):
        op.execute(f"CREATE TRIGGER {name} {TRIGGERS[name]}")


def downgrade() -> None:
    earlier = _0007()
    if postgresql.on_postgresql():
        for name in POSTGRESQL_FUNCTIONS:
            action = earlier.POSTGRESQL_TRIGGERS[name][2]
            postgresql.create_function(name, f"BEGIN\n    {action};\n    RETURN NULL;\nEND;", replace=True)
        _drop_columns(DELTAS)
    else:
        for name in (*CHANGED, *ADDED):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        for name in CHANGED:
            op.execute(f"CREATE TRIGGER {name} {earlier.TRIGGERS[name]}")
    _drop_columns("litemq_queues")


# --- PostgreSQL: the statement triggers' functions, their delta rows carrying the totals too
def _postgresql_size(row: str) -> str:
    return (f"coalesce(length({row}.body), (SELECT length(b.body) FROM {{schema}}.litemq_bodies b "
            f"WHERE b.id = {row}.id), 0)")


def _postgresql_deltas(*changes: str) -> str:
    columns = ("ready_count", "ready_bytes", *TOTALS)
    return (f"INSERT INTO {{schema}}.{DELTAS} (queue, {', '.join(columns)}) "
            f"SELECT queue, {', '.join(f'sum({c})' for c in columns)} FROM ({' UNION ALL '.join(changes)}) "
            "AS changed GROUP BY queue HAVING " + " OR ".join(f"sum({c}) <> 0" for c in columns))


def _change(rows: str, ready: str = "0", size: str = "0", published: str = "0", delivered: str = "0",
            redelivered: str = "0", acked: str = "0", where: str = "true") -> str:
    return (f"SELECT r.queue, {ready} AS ready_count, {size} AS ready_bytes, {published} AS published_total, "
            f"{delivered} AS delivered_total, {redelivered} AS redelivered_total, {acked} AS acked_total "
            f"FROM {rows} WHERE {where}")


POSTGRESQL_FUNCTIONS = {
    "litemq_messages_insert_count": _postgresql_deltas(
        _change("new_rows r", ready=f"({_ready('r')})::int",
                size=f"CASE WHEN {_ready('r')} THEN {_postgresql_size('r')} ELSE 0 END", published="1")),
    "litemq_messages_update_count": _postgresql_deltas(
        _change("new_rows r", ready="1", size=_postgresql_size("r"), where=_ready("r")),
        _change("old_rows r", ready="-1", size=f"-{_postgresql_size('r')}", where=_ready("r")),
        _change("old_rows o JOIN new_rows r ON r.id = o.id", delivered="1", redelivered="(r.delivery_count > 1)::int",
                where=f"{_ready('o')} AND r.lease_token IS NOT NULL")),
    # The body's size is read before the body goes with its message.
    "litemq_messages_delete_count": _postgresql_deltas(
        _change("old_rows r", ready="-1", size=f"-{_postgresql_size('r')}", where=_ready("r")),
        _change("old_rows r", acked="1", where="r.lease_token IS NOT NULL")) + ";\n    "
        "DELETE FROM {schema}.litemq_bodies WHERE id IN (SELECT id FROM old_rows WHERE body IS NULL)",
}
