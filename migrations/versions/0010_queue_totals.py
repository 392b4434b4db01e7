"""Cumulative counters per queue, for rates without an event log (the management page and ``/metrics``):
``published_total`` (messages stored into the queue, moved in included), ``delivered_total`` (taken with a lease:
a get or a consumer's delivery that awaits its ack), ``redelivered_total`` (of those, the ones delivered before),
``acked_total`` (leased messages settled for good: acked, or rejected without requeue). A delivery with
auto-ack deletes its message as a purge does, and counts in none of them.

They are kept by the triggers of 0007, which already count every write to the messages: on SQLite the insert
trigger counts every message (not only ready ones), a claim counts in the update trigger that takes it out of
ready, and a trigger of its own counts the leased messages deleted (one more UPDATE of the queue's row per ack). On PostgreSQL the statement triggers add the counts to the delta rows they write, which the store folds into
the queue's row: 0009's row triggers carry the totals too, and the delete trigger now fires for a leased
message as well (an ack writes one delta row again; a lease renewal still runs no trigger).

Revision ID: 0010
Revises: 0009
"""
import importlib.util
from pathlib import Path

import sqlalchemy as sa
from alembic import op

# migrations/postgresql.py: what the revisions do differently on PostgreSQL (loaded by path, as revisions are).
_spec = importlib.util.spec_from_file_location("litemq_migrations_postgresql", Path(__file__).parents[1] / "postgresql.py")
postgresql = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(postgresql)

revision = "0010"
down_revision = "0009"
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
        postgresql.create_function("litemq_messages_insert_count",
                                   f"BEGIN\n    {POSTGRESQL_INSERT};\n    RETURN NULL;\nEND;", replace=True)
        _0009().create_row_triggers(POSTGRESQL_ROW_TRIGGERS)
        return
    for name in CHANGED:
        op.execute(f"DROP TRIGGER IF EXISTS {name}")
    for name in (*CHANGED, *ADDED):
        op.execute(f"CREATE TRIGGER {name} {TRIGGERS[name]}")


def downgrade() -> None:
    earlier = _0007()
    if postgresql.on_postgresql():
        action = earlier.POSTGRESQL_TRIGGERS["litemq_messages_insert_count"][2]
        postgresql.create_function("litemq_messages_insert_count",
                                   f"BEGIN\n    {action};\n    RETURN NULL;\nEND;", replace=True)
        previous = _0009()
        previous.create_row_triggers(previous.ROW_TRIGGERS)
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


POSTGRESQL_INSERT = _postgresql_deltas(
    _change("new_rows r", ready=f"({_ready('r')})::int",
            size=f"CASE WHEN {_ready('r')} THEN {_postgresql_size('r')} ELSE 0 END", published="1"))


def _row_delta(row: str, **counts: str) -> str:
    """One delta row for the row's queue: ``counts`` by column, 0 for the rest."""
    columns = ("ready_count", "ready_bytes", *TOTALS)
    values = ", ".join(counts.get(column, "0") for column in columns)
    return f"INSERT INTO {{schema}}.{DELTAS} (queue, {', '.join(columns)}) VALUES ({row}.queue, {values})"


_READY_OLD, _READY_NEW = _ready("old"), _ready("new")
# 0009's row triggers (event, WHEN, what the function does), with the totals: a ready message taking a lease is
# delivered (again when it was before); a leased message deleted is settled for good (acked).
POSTGRESQL_ROW_TRIGGERS = {
    "litemq_messages_update_count": (
        "UPDATE",
        f"(({_READY_OLD}) OR ({_READY_NEW})) AND (({_READY_OLD}) IS DISTINCT FROM ({_READY_NEW}) "
        "OR old.queue IS DISTINCT FROM new.queue OR old.body IS DISTINCT FROM new.body)",
        f"IF {_READY_OLD} THEN\n        "
        + _row_delta("old", ready_count="-1", ready_bytes=f"-{_postgresql_size('old')}",
                     delivered_total="(new.lease_token IS NOT NULL)::int",
                     redelivered_total="(new.lease_token IS NOT NULL AND new.delivery_count > 1)::int")
        + f";\n    END IF;\n    IF {_READY_NEW} THEN\n        "
        + _row_delta("new", ready_count="1", ready_bytes=_postgresql_size("new")) + ";\n    END IF;"),
    "litemq_messages_delete_count": (
        "DELETE",
        f"({_READY_OLD}) OR old.body IS NULL OR old.lease_token IS NOT NULL",
        # the body's size is read before the body goes
        f"IF {_READY_OLD} THEN\n        "
        + _row_delta("old", ready_count="-1", ready_bytes=f"-{_postgresql_size('old')}")
        + ";\n    END IF;\n    IF old.lease_token IS NOT NULL THEN\n        "
        + _row_delta("old", acked_total="1") + ";\n    END IF;\n    IF old.body IS NULL THEN\n"
        "        DELETE FROM {schema}.litemq_bodies WHERE id = old.id;\n    END IF;"),
}


def _0009():
    spec = importlib.util.spec_from_file_location("litemq_migration_0009",
                                                  Path(__file__).with_name("0009_row_counter_triggers.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
