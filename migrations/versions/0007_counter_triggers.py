"""Ready counters kept by triggers: a queue's ``ready_count`` and ``ready_bytes`` change with every write to
litemq_messages and litemq_bodies, litemq's own or by hand (``sqlite3`` at the prompt), so a message deleted,
inserted or updated with plain SQL is counted right. litemq's own statements no longer touch the counters: the
triggers are their one source of truth. The counters of every queue are recounted from the rows here (a file may
already be off, after hand writes under an older litemq).

A message is ready when it holds no lease (``lease_token IS NULL``) and is not delayed (``visible_at IS NULL``),
as litemq's ready index says. Its bytes are its body's length, from its row or, when that is NULL, from
litemq_bodies. The delete trigger of 0006 (a message's out-of-row body goes with it) becomes part of the counting
delete trigger, so the body's size is read before the body goes.

Revision ID: 0007
Revises: 0006
"""
from alembic import op

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
    if op.get_bind().dialect.name != "sqlite":
        raise NotImplementedError("the counter triggers are written for SQLite")
    op.execute(f"DROP TRIGGER IF EXISTS {BODY_TRIGGER_0006}")
    for name, definition in TRIGGERS.items():
        op.execute(f"CREATE TRIGGER {name} {definition}")
    op.execute(RECOUNT)


def downgrade() -> None:
    for name in TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {name}")
    op.execute(f"CREATE TRIGGER {BODY_TRIGGER_0006} AFTER DELETE ON litemq_messages WHEN old.body IS NULL "
               "BEGIN DELETE FROM litemq_bodies WHERE id = old.id; END")
    # litemq 0006 keeps the counters by its own statements, from where they are now: right.
