"""The floor: stdlib sqlite3 running the least SQL that does each workload's work, the yardstick of the table.

One file, WAL, ``synchronous=NORMAL``, no ORM, statements prepared once by sqlite3's statement cache:

    messages(id INTEGER PRIMARY KEY, queue TEXT, body BLOB, lease_until REAL)   -- rowid order is queue order
    bindings(exchange TEXT, kind TEXT, queue TEXT, pattern TEXT)               -- fanout and topic routes
    routes(version INTEGER)                                                    -- bumped when bindings change

- publish: one ``INSERT`` (autocommit: the statement is its transaction); 100 per transaction: one
  ``INSERT ... VALUES (...), (...), ...`` of 100 rows.
- claim: ``UPDATE messages SET lease_until = now + 30 WHERE id = (SELECT id ... ready ... ORDER BY id LIMIT 1)
  RETURNING id, body``; with a prefetch, ``WHERE id IN (SELECT ... LIMIT k)``.
- ack: ``DELETE WHERE id = ?``; 100 per transaction: one ``DELETE WHERE id IN (?, ...)``.
- fanout: ``INSERT INTO messages (queue, body) SELECT queue, ? FROM bindings WHERE exchange = ?`` (the route is
  read in the same statement that stores the copies).
- topic: topic matching is not SQL, so the bindings are read into a word trie and each routing key's queues
  cached; each publish stores its copies with ``INSERT ... SELECT ?, ? WHERE (SELECT version FROM routes) = ?``,
  which stores nothing when the bindings changed since they were read (then they are read again and the publish
  retried).
- large bodies (``split``): a claim's UPDATE would rewrite the whole row, body included, so the bodies live in
  ``bodies(id, body)``: publish = two INSERTs in one transaction; claim = the same UPDATE, ``RETURNING id,
  (SELECT body FROM bodies WHERE id = messages.id)``; ack = two DELETEs in one transaction.
- waiting for a message in another process: poll ``PRAGMA data_version`` (a read, no lock) every 0.25 ms and
  claim when it changes.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any, Optional

LEASE_SECONDS = 30.0
POLL_SECONDS = 0.00025

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS messages (id INTEGER PRIMARY KEY, queue TEXT NOT NULL, body BLOB NOT NULL, "
    "lease_until REAL)",
    ("CREATE TABLE IF NOT EXISTS bindings (exchange TEXT NOT NULL, kind TEXT NOT NULL, queue TEXT NOT NULL, "
     "pattern TEXT NOT NULL)"),
    "CREATE TABLE IF NOT EXISTS routes (version INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS bodies (id INTEGER PRIMARY KEY, body BLOB NOT NULL)",
    "INSERT INTO routes (version) SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM routes)",
)
INSERT = "INSERT INTO messages (queue, body) VALUES (?, ?)"
READY = "queue = ? AND (lease_until IS NULL OR lease_until < ?)"
CLAIM_ONE = (f"UPDATE messages SET lease_until = ? WHERE id = (SELECT id FROM messages WHERE {READY} "
             "ORDER BY id LIMIT 1) RETURNING id, body")
CLAIM_SOME = (f"UPDATE messages SET lease_until = ? WHERE id IN (SELECT id FROM messages WHERE {READY} "
              "ORDER BY id LIMIT ?) RETURNING id, body")
DELETE = "DELETE FROM messages WHERE id = ?"
SPLIT_BODY = "(SELECT body FROM bodies WHERE bodies.id = messages.id)"
SPLIT_CLAIM_ONE = CLAIM_ONE.replace("RETURNING id, body", f"RETURNING id, {SPLIT_BODY}")
SPLIT_CLAIM_SOME = CLAIM_SOME.replace("RETURNING id, body", f"RETURNING id, {SPLIT_BODY}")
FANOUT = "INSERT INTO messages (queue, body) SELECT queue, ? FROM bindings WHERE exchange = ?"
ROUTED = "INSERT INTO messages (queue, body) SELECT ?, ? WHERE (SELECT version FROM routes) = ?"


def connect(path: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=60, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    return db


def create(path: str) -> None:
    db = connect(path)
    for statement in SCHEMA:
        db.execute(statement)
    db.close()


def words(key: str) -> list[str]:
    return key.split(".") if key else []


class TopicTrie:
    """Topic bindings as a trie of words (AMQP: ``*`` is exactly one word, ``#`` zero or more)."""

    def __init__(self, bindings: list[tuple[str, str]]) -> None:
        self.root: dict = {}
        for queue, pattern in bindings:
            node = self.root
            for word in words(pattern):
                node = node.setdefault(word, {})
            node.setdefault(None, set()).add(queue)

    def match(self, key: str) -> list[str]:
        found: set[str] = set()
        self._walk(self.root, words(key), 0, found)
        return sorted(found)

    def _walk(self, node: dict, key: list[str], i: int, found: set[str]) -> None:
        hashes = node.get("#")
        if hashes is not None:
            for j in range(i, len(key) + 1):
                self._walk(hashes, key, j, found)
        if i == len(key):
            found.update(node.get(None, ()))
            return
        for word in (key[i], "*"):
            child = node.get(word)
            if child is not None:
                self._walk(child, key, i + 1, found)


class Routes:
    """What both floors (this one and bench/floor_postgres.py) keep of their bindings: each exchange's kind, and
    the queues each topic key routes to, read again whenever ``topic_version`` is set back to -1."""

    KIND = "SELECT kind FROM bindings WHERE exchange = ? LIMIT 1"
    db: Any

    def __init__(self) -> None:
        self.exchange_kinds: dict[str, str] = {}
        self.tries: dict[str, TopicTrie] = {}
        self.topic_routes: dict[str, dict[str, list[str]]] = {}
        self.topic_version = -1

    def kind(self, exchange: str) -> str:
        kind = self.exchange_kinds.get(exchange)
        if kind is None:
            row = self.db.execute(self.KIND, (exchange,)).fetchone()
            kind = self.exchange_kinds[exchange] = row[0] if row else "topic"
        return kind

    def _read_bindings(self) -> tuple[int, list[tuple[str, str, str]]]:
        """(the routes' version, every (exchange, queue, pattern)), read in one transaction."""
        raise NotImplementedError

    def _topic_queues(self, exchange: str, key: str) -> list[str]:
        if self.topic_version < 0:
            self.topic_routes.clear()
            self.tries.clear()
            self.topic_version, bindings = self._read_bindings()
            for name in {row[0] for row in bindings}:
                self.tries[name] = TopicTrie([(queue, pattern) for ex, queue, pattern in bindings if ex == name])
        routes = self.topic_routes.setdefault(exchange, {})
        queues = routes.get(key)
        if queues is None:
            trie = self.tries.get(exchange)
            queues = routes[key] = trie.match(key) if trie else []
        return queues


class Floor(Routes):
    """One connection to a floor file. ``batch`` = 1 (one message per transaction) or 100."""

    def __init__(self, path: str, batch: int = 1, split: bool = False) -> None:
        super().__init__()
        self.db: sqlite3.Connection = connect(path)
        self.batch = batch
        self.split = split
        self.many: dict[int, str] = {}
        self.deletes: dict[int, str] = {}

    def close(self) -> None:
        self.db.close()

    # --- topology
    def bind_many(self, exchange: str, kind: str, rows: list[tuple[str, str]]) -> None:
        """Bind (queue, pattern) pairs to an exchange of ``kind`` (fanout or topic)."""
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        db.executemany("INSERT INTO bindings (exchange, kind, queue, pattern) VALUES (?, ?, ?, ?)",
                       [(exchange, kind, queue, pattern) for queue, pattern in rows])
        db.execute("UPDATE routes SET version = version + 1")
        db.execute("COMMIT")

    # --- publishing
    def publish(self, queue: str, body: bytes) -> None:
        if self.split:
            db = self.db
            db.execute("BEGIN IMMEDIATE")
            body_id = db.execute("INSERT INTO bodies (body) VALUES (?)", (body,)).lastrowid
            db.execute("INSERT INTO messages (id, queue, body) VALUES (?, ?, x'')", (body_id, queue))
            db.execute("COMMIT")
            return
        self.db.execute(INSERT, (queue, body))

    def publish_many(self, queue: str, bodies: list[bytes]) -> None:
        """All of ``bodies`` in one statement, so one transaction."""
        n = len(bodies)
        sql = self.many.get(n)
        if sql is None:
            sql = self.many[n] = "INSERT INTO messages (queue, body) VALUES " + ", ".join(["(?, ?)"] * n)
        params: list[object] = []
        for data in bodies:
            params.append(queue)
            params.append(data)
        self.db.execute(sql, params)

    def publish_to(self, exchange: str, key: str, body: bytes) -> None:
        if self.kind(exchange) == "fanout":
            self.db.execute(FANOUT, (body, exchange))
            return
        while True:
            queues = self._topic_queues(exchange, key)
            if len(queues) == 1:
                if self.db.execute(ROUTED, (queues[0], body, self.topic_version)).rowcount:
                    return
            else:
                db = self.db
                db.execute("BEGIN IMMEDIATE")
                stored = sum(db.execute(ROUTED, (queue, body, self.topic_version)).rowcount for queue in queues)
                db.execute("COMMIT")
                if stored == len(queues):
                    return
            self.topic_version = -1  # the bindings changed since they were read: read them again

    def publish_to_many(self, exchange: str, keys: list[str], bodies: list[bytes]) -> None:
        """One transaction for the whole batch."""
        db = self.db
        fanout = self.kind(exchange) == "fanout"
        while True:
            db.execute("BEGIN IMMEDIATE")
            if fanout:
                db.executemany(FANOUT, [(data, exchange) for data in bodies])
                db.execute("COMMIT")
                return
            current = db.execute("SELECT version FROM routes").fetchone()[0]
            if current != self.topic_version:
                db.execute("COMMIT")
                self.topic_version = -1
                self._topic_queues(exchange, keys[0])
                continue
            rows = [(queue, data) for key, data in zip(keys, bodies) for queue in self._topic_queues(exchange, key)]
            db.executemany(INSERT, rows)
            db.execute("COMMIT")
            return

    def _read_bindings(self) -> tuple[int, list[tuple[str, str, str]]]:
        db = self.db
        db.execute("BEGIN")
        version = db.execute("SELECT version FROM routes").fetchone()[0]
        bindings = db.execute("SELECT exchange, queue, pattern FROM bindings").fetchall()
        db.execute("COMMIT")
        return version, bindings

    def fill(self, queue: str, bodies: list[bytes]) -> None:
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        db.executemany(INSERT, [(queue, data) for data in bodies])
        db.execute("COMMIT")

    # --- consuming
    def claim(self, queue: str, limit: int = 1) -> list[tuple[int, bytes]]:
        now = time.time()
        if limit == 1:
            return self.db.execute(SPLIT_CLAIM_ONE if self.split else CLAIM_ONE,
                                   (now + LEASE_SECONDS, queue, now)).fetchall()
        rows = self.db.execute(SPLIT_CLAIM_SOME if self.split else CLAIM_SOME,
                               (now + LEASE_SECONDS, queue, now, limit)).fetchall()
        rows.sort()
        return rows

    def ack(self, message_id: int) -> None:
        if self.split:
            db = self.db
            db.execute("BEGIN IMMEDIATE")
            db.execute(DELETE, (message_id,))
            db.execute("DELETE FROM bodies WHERE id = ?", (message_id,))
            db.execute("COMMIT")
            return
        self.db.execute(DELETE, (message_id,))

    def ack_many(self, ids: list[int]) -> None:
        n = len(ids)
        sql = self.deletes.get(n)
        if sql is None:
            sql = self.deletes[n] = f"DELETE FROM messages WHERE id IN ({', '.join(['?'] * n)})"
        self.db.execute(sql, ids)

    def depth(self, queue: str) -> int:
        return self.db.execute("SELECT count(*) FROM messages WHERE queue = ?", (queue,)).fetchone()[0]

    def data_version(self) -> int:
        return self.db.execute("PRAGMA data_version").fetchone()[0]


class FloorReceiver:
    """A consumer on the floor: claims ``prefetch`` at a time; acks one per transaction, or 100 per transaction
    (``batch`` 100: flushed when 100 are pending and before the next claim)."""

    def __init__(self, floor: Floor, queue: str, prefetch: int) -> None:
        self.floor = floor
        self.queue = queue
        self.prefetch = max(1, prefetch)
        self.buffer: list[tuple[int, bytes]] = []
        self.pending: list[int] = []

    def next(self, timeout: float) -> Optional[tuple[bytes, int]]:
        if not self.buffer:
            self.flush()
            deadline: Optional[float] = None
            while True:
                seen = self.floor.data_version()
                rows = self.floor.claim(self.queue, self.prefetch)
                if rows:
                    rows.reverse()
                    self.buffer = rows
                    break
                if deadline is None:
                    deadline = time.monotonic() + timeout
                while self.floor.data_version() == seen:
                    if time.monotonic() >= deadline:
                        return None
                    time.sleep(POLL_SECONDS)
        message_id, data = self.buffer.pop()
        return data, message_id

    def idle(self, seconds: float) -> Optional[tuple[bytes, int]]:
        return self.next(seconds)

    def ack(self, message_id: int) -> None:
        if self.floor.batch == 1:
            self.floor.ack(message_id)
            return
        self.pending.append(message_id)
        if len(self.pending) >= self.floor.batch:
            self.flush()

    def stop(self) -> list[tuple[bytes, int]]:
        return []  # nothing arrives once next() has returned None

    def flush(self) -> None:
        if self.pending:
            self.floor.ack_many(self.pending)
            self.pending = []

    def close(self) -> None:
        self.flush()
