"""On PostgreSQL, the messages' update and delete triggers ask inside their functions whether the row changes a
count, instead of in WHEN clauses.

0009 made them row triggers whose WHEN skips a row that changes no count. PostgreSQL keeps a trigger's WHEN as a
node tree written out in text (2,658 characters for the update trigger's, 830 for the delete's) and reads it back
and prepares it at every statement that fires the trigger, as 0012 found for the insert trigger: a claim (an
update) and an ack (a delete) paid for it every time, while both change a count and so run the function anyway.
The update trigger's function now begins with 0009's WHEN, and returns at once when it is false; the delete
trigger's function needs no such test, since it counts only what its WHEN let through (a ready row, a leased one,
one whose body is in litemq_bodies) and does nothing for any other row. A row that changes no count (a lease
renewal, a delayed message deleted) now runs the function and returns: rarer than claims and acks.

The triggers count what they counted before, row by row; SQLite: nothing changes.

Revision ID: 0013
Revises: 0012
"""
import importlib.util
from pathlib import Path

from alembic import op


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# migrations/postgresql.py: what the revisions do differently on PostgreSQL (loaded by path, as revisions are).
postgresql = _load("litemq_migrations_postgresql", Path(__file__).parents[1] / "postgresql.py")

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

UPDATE_TRIGGER, DELETE_TRIGGER = "litemq_messages_update_count", "litemq_messages_delete_count"


def _triggers() -> dict[str, tuple[str, str, str]]:
    """name: (event, WHEN, function body) of the two row triggers as 0012 left them (0010's, with 0011's bodies)."""
    here = Path(__file__).parent
    deltas = _load("litemq_migration_0011", here / "0011_delta_rows_per_session.py")
    totals = _load("litemq_migration_0010", here / "0010_queue_totals.py")
    bodies = deltas._functions()
    return {name: (event, when, deltas.adding_to_own_row(bodies[name]))
            for name, (event, when, _) in totals.POSTGRESQL_ROW_TRIGGERS.items()}


def _trigger(name: str, event: str, when: str = "") -> None:
    op.execute(f"DROP TRIGGER {name} ON litemq_messages")
    op.execute(f"CREATE TRIGGER {name} AFTER {event} ON litemq_messages FOR EACH ROW {when}"
               f"EXECUTE FUNCTION {name}()")


def upgrade() -> None:
    if not postgresql.on_postgresql():
        return
    for name, (event, when, body) in _triggers().items():
        assert body.startswith("BEGIN\n")
        if name == UPDATE_TRIGGER:
            body = f"BEGIN\n    IF NOT ({when}) THEN\n        RETURN NULL;\n    END IF;\n" + body[len("BEGIN\n"):]
        postgresql.create_function(name, body, replace=True)
        _trigger(name, event)


def downgrade() -> None:
    if not postgresql.on_postgresql():
        return
    for name, (event, when, body) in _triggers().items():
        postgresql.create_function(name, body, replace=True)
        _trigger(name, event, f"WHEN ({when}) ")
