"""PostgreSQL: the counters' update and delete triggers run per row, and only for rows that change a count.

0007's triggers run once per statement over its transition tables. An ack deletes a leased message, which changes
no count, and a lease renewal updates one; each paid for the whole trigger anyway (the transition table built, the
function run, its queries planned and run on nothing): about a fifth of the server's time of a get and its ack.
Row triggers with a ``WHEN`` clause are skipped by the server before any function runs when the row changes no
count, and insert one delta row when it does (a claim of ten messages: ten rows, folded as before). Inserts keep
their statement trigger: a batch of a thousand messages still adds one delta row.

SQLite's triggers are row triggers with ``WHEN`` already: nothing changes there.

Revision ID: 0009
Revises: 0008
"""
import importlib.util
from pathlib import Path

from alembic import op

_here = Path(__file__).parent


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# migrations/postgresql.py: what the revisions do differently on PostgreSQL (loaded by path, as revisions are).
postgresql = _load("litemq_migrations_postgresql", _here.parent / "postgresql.py")

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

DELTAS = "{schema}.litemq_queue_deltas"
_READY = "{row}.lease_token IS NULL AND {row}.visible_at IS NULL"


def _delta(row: str, sign: str) -> str:
    size = (f"coalesce(length({row}.body), (SELECT length(b.body) FROM {{schema}}.litemq_bodies b "
            f"WHERE b.id = {row}.id), 0)")
    return (f"IF {_READY.format(row=row)} THEN\n"
            f"        INSERT INTO {DELTAS} (queue, ready_count, ready_bytes) VALUES ({row}.queue, {sign}1, {sign}{size});\n"
            "    END IF;")


# name: (event, WHEN, what the function does); the names of 0007's statement triggers they replace
ROW_TRIGGERS = {
    "litemq_messages_update_count": (
        "UPDATE",
        # a row that was or becomes ready, and whose readiness, queue or body changed (a renewal changes none)
        f"(({_READY.format(row='old')}) OR ({_READY.format(row='new')})) AND "
        f"(({_READY.format(row='old')}) IS DISTINCT FROM ({_READY.format(row='new')}) "
        "OR old.queue IS DISTINCT FROM new.queue OR old.body IS DISTINCT FROM new.body)",
        f"{_delta('old', '-')}\n    {_delta('new', '+')}"),
    "litemq_messages_delete_count": (
        "DELETE",
        # a ready row, or one whose body is in litemq_bodies (an ack of a leased message: neither)
        f"({_READY.format(row='old')}) OR old.body IS NULL",
        # the body's size is read before the body goes
        f"{_delta('old', '-')}\n    IF old.body IS NULL THEN\n"
        "        DELETE FROM {schema}.litemq_bodies WHERE id = old.id;\n    END IF;"),
}


def _0007():
    return _load("litemq_migration_0007", _here / "0007_counter_triggers.py")


def create_row_triggers(triggers: dict) -> None:
    """Each trigger of litemq_messages named in ``triggers`` (name: event, WHEN, function body) made again as a
    row trigger (0010 makes them again with its totals)."""
    for name, (event, when, action) in triggers.items():
        op.execute(f"DROP TRIGGER {name} ON litemq_messages")
        postgresql.drop_function(name)
        postgresql.create_function(name, f"BEGIN\n    {action}\n    RETURN NULL;\nEND;")
        op.execute(f"CREATE TRIGGER {name} AFTER {event} ON litemq_messages FOR EACH ROW WHEN ({when}) "
                   f"EXECUTE FUNCTION {name}()")


def upgrade() -> None:
    if postgresql.on_postgresql():
        create_row_triggers(ROW_TRIGGERS)


def downgrade() -> None:
    if not postgresql.on_postgresql():
        return
    statement_triggers = _0007().POSTGRESQL_TRIGGERS
    for name in ROW_TRIGGERS:
        event, transitions, action = statement_triggers[name]
        op.execute(f"DROP TRIGGER {name} ON litemq_messages")
        postgresql.drop_function(name)
        postgresql.create_function(name, f"BEGIN\n    {action};\n    RETURN NULL;\nEND;")
        op.execute(f"CREATE TRIGGER {name} AFTER {event} REFERENCING {transitions} FOR EACH STATEMENT "
                   f"EXECUTE FUNCTION {name}()")
