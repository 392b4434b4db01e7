"""Reading and tending a file for people and tools (the ``litemq`` command): listings over the inspection views,
peeking without leases, moving messages, and file maintenance. Each function runs inside the caller's transaction,
except the maintenance ones, which must run outside any."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from typing import Any, Optional
from urllib.parse import quote

from ..errors import StorageError
from . import VERSION_TABLE
from .sqlite import BODY, BODY_BYTES, SQLiteStore, translate_error

SELECT_QUEUES = ("SELECT queue, ready, unacked, total, consumers, durable, exclusive, auto_delete, arguments, "
                 "oldest_ready_seconds, bytes FROM litemq_queue_stats ORDER BY queue")
SELECT_EXCHANGES = ("SELECT name, type, durable, auto_delete, internal, arguments FROM litemq_exchanges "
                    "ORDER BY name")
SELECT_BINDINGS = ("SELECT exchange, destination, destination_kind, routing_key, arguments FROM litemq_bindings "
                   "ORDER BY exchange, destination, routing_key, id")
SELECT_CONNECTIONS = ("SELECT connection_id, pid, host, started_at, unacked, count(consumer_tag) AS consumers "
                      "FROM litemq_connection_view GROUP BY connection_id ORDER BY started_at, connection_id")
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
ADD_READY = "UPDATE litemq_queues SET ready_count = ready_count + ?, ready_bytes = ready_bytes + ? WHERE name = ?"


def _rows(store: SQLiteStore, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    cursor = store.execute(sql, params)
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def queues(store: SQLiteStore) -> list[dict[str, Any]]:
    return _rows(store, SELECT_QUEUES)


def exchanges(store: SQLiteStore) -> list[dict[str, Any]]:
    return _rows(store, SELECT_EXCHANGES)


def bindings(store: SQLiteStore) -> list[dict[str, Any]]:
    return _rows(store, SELECT_BINDINGS)


def connections(store: SQLiteStore) -> list[dict[str, Any]]:
    return _rows(store, SELECT_CONNECTIONS)


def peek(store: SQLiteStore, queue: str, limit: int) -> list[dict[str, Any]]:
    """The first ``limit`` ready messages of the queue, in order, without leasing them."""
    return _rows(store, PEEK, (queue, limit))


def move(store: SQLiteStore, source: str, destination: str, limit: Optional[int], max_priority: int = 0) -> int:
    """Move up to ``limit`` ready messages (all when None) from the head of one queue to the tail of another, in
    delivery order, keeping their expiry; ``max_priority`` is the destination's (0: not a priority queue).
    Returns how many."""
    of_head = {"source": source, "limit": -1 if limit is None else limit}
    head = store.execute(SELECT_HEAD, of_head).fetchall()
    last = store.execute(SELECT_LAST_ID).fetchone()[0]
    store.execute(MOVE_COPY, {**of_head, "last": last, "destination": destination, "max_priority": max_priority})
    for position, (message_id, elsewhere, _) in enumerate(head, start=1):
        if elsewhere:  # before the originals go, or the trigger would delete the body with them
            store.execute(MOVE_BODY, (last + position, message_id))
    store.execute(MOVE_DELETE, of_head)
    size = sum(size for _, _, size in head)
    store.execute(ADD_READY, (-len(head), -size, source))
    store.execute(ADD_READY, (len(head), size, destination))
    return len(head)


def file_sizes(path: str) -> dict[str, int]:
    """Bytes of the database and its WAL (stat only: the files are never opened here)."""
    sizes = {}
    for name, suffix in (("file_bytes", ""), ("wal_bytes", "-wal")):
        try:
            sizes[name] = os.stat(path + suffix).st_size
        except FileNotFoundError:
            sizes[name] = 0
    return sizes


def integrity_check(store: SQLiteStore) -> list[str]:
    return [row[0] for row in store.execute("PRAGMA integrity_check").fetchall()]


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


def is_litemq_file(path: str) -> bool:
    """Whether the SQLite file holds litemq's tables (read only; never creates them)."""
    check_sqlite(path)
    # A URI, for mode=ro, so the path is quoted: an unquoted ``?`` or ``%41`` would name another file.
    with contextlib.closing(sqlite3.connect(f"file:{quote(path)}?mode=ro", uri=True, isolation_level=None)) as db:
        found = db.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (VERSION_TABLE,)).fetchone()
    return found is not None
