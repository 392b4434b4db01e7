"""Reading and tending a broker for people and tools (the ``litemq`` command): listings of exchanges, bindings and
connections (the queues' counts are the management page's: management.py), peeking without leases, moving messages,
and file maintenance. Each function runs inside the caller's transaction, except the maintenance ones, which must
run outside any.

The statements are SQLite's text, which the PostgreSQL store's ``execute`` takes too (translating the placeholders),
except where the SQL differs; the file's maintenance (sizes, VACUUM, checkpoint) is SQLite's only
(postgres_inspect.py has the server's).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from typing import Any, NamedTuple, Optional

from ..errors import StorageError
from . import lockfiles, postgres_sql
from .contract import Store
from .sqlite import SQLiteStore
from .sqlite_file import translate_error
from .sqlite_sql import BODY, BODY_BYTES

SELECT_EXCHANGES = ("SELECT name, type, durable, auto_delete, internal, arguments FROM litemq_exchanges "
                    "ORDER BY name")
SELECT_BINDINGS = ("SELECT exchange, destination, destination_kind, routing_key, arguments FROM litemq_bindings "
                   "ORDER BY exchange, destination, routing_key, id")
SELECT_CONNECTIONS = ("SELECT connection_id, pid, host, started_at, unacked, count(consumer_tag) AS consumers "
                      "FROM litemq_connection_view GROUP BY connection_id, pid, host, started_at, unacked "
                      "ORDER BY started_at, connection_id")
PEEK = (f"SELECT id, exchange, routing_key, {BODY} AS body, properties, delivery_count, published_at "
        "FROM litemq_messages WHERE queue = ? AND lease_token IS NULL AND visible_at IS NULL "
        "ORDER BY priority DESC, id LIMIT ?")
_HEAD = ("SELECT id FROM litemq_messages WHERE queue = :source AND lease_token IS NULL AND visible_at IS NULL "
         "ORDER BY priority DESC, id LIMIT :limit")
SELECT_HEAD = (f"SELECT id, body IS NULL, {BODY_BYTES} FROM litemq_messages WHERE id IN ({_HEAD}) "
               "ORDER BY priority DESC, id")
SELECT_LAST_ID = "SELECT coalesce(max(id), 0) FROM litemq_messages"
# The copies get ids after the last one, numbered in delivery order: the k-th message of the head becomes
# last + k, so a body kept in litemq_bodies can follow its message.
MOVE_COPY = ("INSERT INTO litemq_messages (id, queue, exchange, routing_key, body, properties, published_at, "
             "delivery_count, priority, expires_at) SELECT :last + row_number() OVER (ORDER BY priority DESC, id), "
             ":destination, exchange, routing_key, body, properties, published_at, delivery_count, "
             "min(priority, :max_priority), expires_at "
             f"FROM litemq_messages WHERE id IN ({_HEAD})")
MOVE_BODY = "UPDATE litemq_bodies SET id = ? WHERE id = ?"
MOVE_DELETE = f"DELETE FROM litemq_messages WHERE id IN ({_HEAD})"
# On PostgreSQL one statement takes the head and copies it to the tail: claims run beside it there, and a message one
# holds meanwhile is skipped as claims skip it (the head chosen as a claim chooses it, fenced so no more rows are taken
# than asked). Its sequence numbers the copies in delivery order, and its bodies are in their rows (or the copy takes
# one from litemq_bodies, which the delete trigger then removes).
MOVE_POSTGRESQL = (
    postgres_sql._CHOSEN.format(where=postgres_sql._READY.format(queue="$1"), order=postgres_sql._IN_ORDER,
                                limit="$2")
    + f", moved AS ({postgres_sql._TAKE}RETURNING id, exchange, routing_key, {BODY} AS body, properties, "
    "published_at, delivery_count, priority, expires_at), copied AS (INSERT INTO litemq_messages (queue, exchange, "
    "routing_key, body, properties, published_at, delivery_count, priority, expires_at) SELECT $3, exchange, "
    "routing_key, body, properties, published_at, delivery_count, least(priority, $4), expires_at FROM moved "
    "ORDER BY priority DESC, id RETURNING 1) SELECT count(*) FROM copied")
# A queue's ready counters, as its rows say (what the triggers of migration 0007 keep them equal to).
_READY_ROWS = (f"SELECT queue, count(*) AS ready_count, coalesce(sum({BODY_BYTES}), 0) AS ready_bytes "
               "FROM litemq_messages WHERE lease_token IS NULL AND visible_at IS NULL GROUP BY queue")
_MISMATCHES = ("SELECT q.name, {count}, {bytes}, coalesce(r.ready_count, 0), coalesce(r.ready_bytes, 0) "
               f"FROM litemq_queues q {{deltas}}LEFT JOIN ({_READY_ROWS}) r ON r.queue = q.name "
               "WHERE {count} != coalesce(r.ready_count, 0) OR {bytes} != coalesce(r.ready_bytes, 0) "
               "ORDER BY q.name")
SELECT_COUNTER_MISMATCHES = _MISMATCHES.format(count="q.ready_count", bytes="q.ready_bytes", deltas="")
# On PostgreSQL a queue's counters are its row's plus its delta rows' (migration 0007), as the store counts them.
SELECT_COUNTER_MISMATCHES_POSTGRESQL = _MISMATCHES.format(
    count="q.ready_count + coalesce(d.ready_count, 0)", bytes="q.ready_bytes + coalesce(d.ready_bytes, 0)",
    deltas="LEFT JOIN (SELECT queue, sum(ready_count)::bigint AS ready_count, sum(ready_bytes)::bigint AS "
           f"ready_bytes FROM {postgres_sql.DELTAS} GROUP BY queue) d ON d.queue = q.name ")
RECOUNT = ("UPDATE litemq_queues SET (ready_count, ready_bytes) = (SELECT count(*), "
           f"coalesce(sum({BODY_BYTES}), 0) FROM litemq_messages WHERE queue = litemq_queues.name "
           "AND lease_token IS NULL AND visible_at IS NULL) WHERE name = ?")
# ... and its delta rows go in the same statement, so it counts the rows and drops the deltas of one snapshot: a
# publish committed meanwhile keeps its delta, and its rows were not counted. The totals the dropped deltas carried
# (migration 0010) are added to the row.
_CARRIED = ", ".join(f"{c} = {c} + (SELECT coalesce(sum(d.{c}), 0) FROM dropped d)" for c in postgres_sql.TOTALS)
RECOUNT_POSTGRESQL = (f"WITH dropped AS (DELETE FROM {postgres_sql.DELTAS} WHERE queue = $1 "
                      f"RETURNING {', '.join(postgres_sql.TOTALS)}) "
                      + postgres_sql.from_sqlite(RECOUNT).replace(
                          "UPDATE litemq_queues SET ", f"UPDATE litemq_queues SET {_CARRIED}, ", 1))


def _on_postgresql(store: Any) -> bool:
    return not isinstance(store, SQLiteStore)


def sqlite_of(store: Store) -> SQLiteStore:
    """The store as the SQLite store these tools work on; StorageError for another engine's."""
    if not isinstance(store, SQLiteStore):
        raise StorageError(f"{store.path} is a {store.engine} broker: this works on SQLite files only")
    return store


def is_alive(path: str, connection_id: str) -> Optional[bool]:
    """Whether a connection to the file still holds its lock; None when this user cannot open its lock file."""
    try:
        return lockfiles.is_alive(path, connection_id)
    except (OSError, StorageError):  # said so rather than guessed
        return None


def _rows(store: SQLiteStore, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    cursor = store.execute(sql, params)
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def exchanges(store: SQLiteStore) -> list[dict[str, Any]]:
    return _rows(store, SELECT_EXCHANGES)


def bindings(store: SQLiteStore) -> list[dict[str, Any]]:
    return _rows(store, SELECT_BINDINGS)


def connections(store: SQLiteStore) -> list[dict[str, Any]]:
    return _rows(store, SELECT_CONNECTIONS)


def peek(store: SQLiteStore, queue: str, limit: int) -> list[dict[str, Any]]:
    """The first ``limit`` ready messages of the queue, in order, without leasing them."""
    return _rows(store, PEEK, (queue, limit))


def move(store: Store, source: str, destination: str, limit: Optional[int], max_priority: int = 0) -> int:
    """Move up to ``limit`` ready messages (all when None) from the head of one queue to the tail of another, in
    delivery order, keeping their expiry; ``max_priority`` is the destination's (0: not a priority queue).
    Returns how many."""
    if _on_postgresql(store):
        return int(store.execute(MOVE_POSTGRESQL, (source, limit, destination, max_priority)).fetchone()[0])
    of_head = {"source": source, "limit": -1 if limit is None else limit}
    head = store.execute(SELECT_HEAD, of_head).fetchall()
    last = store.execute(SELECT_LAST_ID).fetchone()[0]
    store.execute(MOVE_COPY, {**of_head, "last": last, "destination": destination, "max_priority": max_priority})
    for position, (message_id, elsewhere, _) in enumerate(head, start=1):
        if elsewhere:  # before the originals go, or the trigger would delete the body with them
            store.execute(MOVE_BODY, (last + position, message_id))
    store.execute(MOVE_DELETE, of_head)
    return len(head)


class CounterMismatch(NamedTuple):
    """A queue whose ready counters (``litemq_queues``) differ from its ready rows (``litemq_messages``)."""

    queue: str
    ready_count: int
    ready_bytes: int
    rows_count: int
    rows_bytes: int

    def __str__(self) -> str:
        return (f"queue {self.queue!r}: counted {self.ready_count} ready messages of {self.ready_bytes} bytes, "
                f"the rows hold {self.rows_count} of {self.rows_bytes} bytes")


def counter_mismatches(store: SQLiteStore) -> list[CounterMismatch]:
    """Each queue whose ready_count or ready_bytes differ from its ready rows, by name (reads every ready row)."""
    sql = SELECT_COUNTER_MISMATCHES_POSTGRESQL if _on_postgresql(store) else SELECT_COUNTER_MISMATCHES
    return [CounterMismatch(*row) for row in store.execute(sql).fetchall()]


def recount(store: SQLiteStore) -> list[CounterMismatch]:
    """Set the counters of each queue that is off from its rows (inside a write transaction); returns what they
    were."""
    off = counter_mismatches(store)
    for mismatch in off:
        store.execute(RECOUNT_POSTGRESQL if _on_postgresql(store) else RECOUNT, (mismatch.queue,))
    return off


def file_sizes(path: str) -> dict[str, int]:
    """Bytes of the database and its WAL (stat only: the files are never opened here)."""
    sizes = {}
    for name, suffix in (("file_bytes", ""), ("wal_bytes", "-wal")):
        try:
            sizes[name] = os.stat(path + suffix).st_size
        except FileNotFoundError:
            sizes[name] = 0
    return sizes


def vacuum(store: SQLiteStore) -> None:
    """Rebuild the file to return free pages to the disk (outside any transaction)."""
    with store.lock:
        store.execute("VACUUM")


def checkpoint(store: SQLiteStore) -> tuple[int, int, int]:
    """Copy the whole WAL into the database and truncate it, outside any transaction. It does not wait for
    readers (a waiting TRUNCATE checkpoint would hold every writer back): ``busy`` says when one was in the way."""
    with store.lock, contextlib.closing(sqlite3.connect(store.path, timeout=0, isolation_level=None)) as db:
        busy, log_frames, checkpointed = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    return busy, log_frames, checkpointed


def check_sqlite(path: str) -> None:
    """Refuse a file that is not an SQLite database, asking SQLite (the file is never opened here); any other
    failure to read it (locked, unreadable) is reported as what it is."""
    if not os.path.isfile(path):
        raise StorageError(f"cannot open {path}: not a regular file")
    try:
        with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
            db.execute("PRAGMA schema_version").fetchone()
    except sqlite3.Error as exc:
        raise translate_error(exc, path) from exc


def contents(store: SQLiteStore) -> tuple[int, int]:
    """How many queues and messages the file holds (counted: for a rare question, such as before a downgrade)."""
    queues = store.execute("SELECT count(*) FROM litemq_queues").fetchone()[0]
    messages = store.execute("SELECT count(*) FROM litemq_messages").fetchone()[0]
    return queues, messages
