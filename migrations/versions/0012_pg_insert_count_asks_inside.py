"""On PostgreSQL, the messages' insert trigger asks inside its function whether the statement counted itself,
instead of in a WHEN clause.

PostgreSQL keeps a trigger's WHEN as a node tree written out in text, and reads it back and prepares it at every
statement that could fire the trigger. The store's publish to a plain queue counts its message in its own statement
(0011: ``litemq.counted``) and so never runs the insert trigger, yet it paid for reading that WHEN at every publish.
A function that returns at once when the statement counted itself costs less than the WHEN: a publish with its lock
and commit, 427,700 instructions of the server with the WHEN and 413,100 without (bench/postgres_instructions.py).
The trigger stays one per statement, and counts what it counted before: every insert that did not count itself.

SQLite: nothing changes.

Revision ID: 0012
Revises: 0011
"""
import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location("litemq_migrations_postgresql", Path(__file__).parents[1] / "postgresql.py")
postgresql = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(postgresql)

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_earlier = importlib.util.spec_from_file_location("litemq_migration_0011",
                                                  Path(__file__).with_name("0011_delta_rows_per_session.py"))
earlier = importlib.util.module_from_spec(_earlier)
_earlier.loader.exec_module(earlier)

ASKS_FIRST = "BEGIN\n    IF current_setting('litemq.counted', true) = 'on' THEN\n        RETURN NULL;\n    END IF;\n"


def _body() -> str:
    """The insert trigger's function as 0011 made it."""
    return earlier.adding_to_own_row(earlier._functions()[earlier.INSERT_TRIGGER])


def upgrade() -> None:
    if not postgresql.on_postgresql():
        return
    body = _body()
    assert body.startswith("BEGIN\n")
    postgresql.create_function(earlier.INSERT_TRIGGER, ASKS_FIRST + body[len("BEGIN\n"):], replace=True)
    earlier._insert_trigger()


def downgrade() -> None:
    if not postgresql.on_postgresql():
        return
    postgresql.create_function(earlier.INSERT_TRIGGER, _body(), replace=True)
    earlier._insert_trigger(f"WHEN ({earlier.COUNTED_BY_THE_STATEMENT}) ")
