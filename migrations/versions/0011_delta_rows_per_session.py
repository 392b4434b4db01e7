"""On PostgreSQL, one delta row per queue and server session, added to in place, instead of a new row per write.

0007's triggers inserted a delta row at every write to the messages, and a queue's counts summed its deltas until
the store folded them into the queue's row. Every get reads that sum: it walked the deltas not yet folded (up to
256) and, through the index, the rows already folded but not yet vacuumed (up to a thousand more), about a fifth of
the server's time in a get and its ack (``perf`` on the backend, 20,000 gets). Now each delta row belongs to the
server process of the session that writes it (``backend_pid``, which no two live sessions share): a trigger adds to
its own session's row (``INSERT ... ON CONFLICT DO UPDATE``), a row that only its session writes, so publishers on
many machines still never wait on one another, and whose new versions PostgreSQL keeps on the same page (no
indexed column changes: a HOT update) and prunes there. A queue has as many delta rows as sessions that wrote to it
since the last fold; a fold still moves them into the queue's row (a later write of that session starts its row
again). The table keeps half of each page free for those new versions.

The store's publish to a plain queue, the hot path's one-statement transaction, counts its message in that
statement and says so for its transaction only (``litemq.counted``, a setting of the session local to the
transaction): the insert's statement trigger then does not run, which was a sixth of the server's time in such a
publish (a PL/pgSQL call and its own INSERT). Every other write, litemq's or by hand, counts through the triggers.

SQLite has no deltas: nothing changes there.

Revision ID: 0011
Revises: 0010
"""
import importlib.util
import re
from pathlib import Path

from alembic import op

# migrations/postgresql.py: what the revisions do differently on PostgreSQL (loaded by path, as revisions are).
_spec = importlib.util.spec_from_file_location("litemq_migrations_postgresql", Path(__file__).parents[1] / "postgresql.py")
postgresql = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(postgresql)

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

DELTAS = "litemq_queue_deltas"
COUNTED = ("ready_count", "ready_bytes", "published_total", "delivered_total", "redelivered_total", "acked_total")
FOLD = (f"WITH folded AS (DELETE FROM {DELTAS} RETURNING queue, {', '.join(COUNTED)}) "
        "UPDATE litemq_queues q SET " + ", ".join(f"{c} = q.{c} + f.{c}" for c in COUNTED)
        + " FROM (SELECT queue, " + ", ".join(f"sum({c}) AS {c}" for c in COUNTED)
        + " FROM folded GROUP BY queue) f WHERE q.name = f.queue")


def _load(name: str, file: str):
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(file))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _functions() -> dict:
    """The counting trigger functions as 0010 left them: name -> body."""
    earlier, totals = _load("litemq_migration_0007", "0007_counter_triggers.py"), _load("litemq_migration_0010",
                                                                                       "0010_queue_totals.py")
    bodies = {name: f"BEGIN\n    {action};\n    RETURN NULL;\nEND;"
              for name, (_, _, action) in earlier.POSTGRESQL_TRIGGERS.items() if name.startswith("litemq_bodies_")}
    bodies["litemq_messages_insert_count"] = f"BEGIN\n    {totals.POSTGRESQL_INSERT};\n    RETURN NULL;\nEND;"
    for name, (_, _, action) in totals.POSTGRESQL_ROW_TRIGGERS.items():
        bodies[name] = f"BEGIN\n    {action}\n    RETURN NULL;\nEND;"
    return bodies


def adding_to_own_row(body: str) -> str:
    """``body`` with each of its inserts into the deltas adding to the writing session's row of the queue."""
    def upsert(insert: re.Match) -> str:
        columns = [column.strip() for column in insert.group(1).split(",")]
        added = ", ".join(f"{column} = {DELTAS}.{column} + excluded.{column}" for column in columns)
        return f"{insert.group(0)} ON CONFLICT (queue, backend_pid) DO UPDATE SET {added}"

    return re.sub(r"INSERT INTO \{schema\}\." + DELTAS + r" \(queue, ([^)]*)\)[^;]*", upsert, body)


INSERT_TRIGGER = "litemq_messages_insert_count"
COUNTED_BY_THE_STATEMENT = "current_setting('litemq.counted', true) IS DISTINCT FROM 'on'"


def _insert_trigger(when: str = "") -> None:
    op.execute(f"DROP TRIGGER {INSERT_TRIGGER} ON litemq_messages")
    op.execute(f"CREATE TRIGGER {INSERT_TRIGGER} AFTER INSERT ON litemq_messages REFERENCING NEW TABLE AS new_rows "
               f"FOR EACH STATEMENT {when}EXECUTE FUNCTION {INSERT_TRIGGER}()")


def upgrade() -> None:
    if not postgresql.on_postgresql():
        return
    op.execute(f"LOCK TABLE {DELTAS} IN EXCLUSIVE MODE")  # no delta written between the fold and the new index
    op.execute(FOLD)
    op.execute(f"ALTER TABLE {DELTAS} ADD COLUMN backend_pid integer NOT NULL DEFAULT pg_backend_pid()")
    op.execute(f"CREATE UNIQUE INDEX ix_{DELTAS}_queue_backend_pid ON {DELTAS} (queue, backend_pid)")
    op.execute(f"DROP INDEX ix_{DELTAS}_queue")
    op.execute(f"ALTER TABLE {DELTAS} SET (fillfactor = 50)")
    for name, body in _functions().items():
        postgresql.create_function(name, adding_to_own_row(body), replace=True)
    _insert_trigger(f"WHEN ({COUNTED_BY_THE_STATEMENT}) ")


def downgrade() -> None:
    if not postgresql.on_postgresql():
        return
    op.execute(f"LOCK TABLE {DELTAS} IN EXCLUSIVE MODE")
    op.execute(FOLD)
    for name, body in _functions().items():
        postgresql.create_function(name, body, replace=True)
    _insert_trigger()
    op.execute(f"ALTER TABLE {DELTAS} RESET (fillfactor)")
    op.execute(f"CREATE INDEX ix_{DELTAS}_queue ON {DELTAS} (queue)")
    op.execute(f"DROP INDEX ix_{DELTAS}_queue_backend_pid")
    op.execute(f"ALTER TABLE {DELTAS} DROP COLUMN backend_pid")
