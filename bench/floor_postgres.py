"""The PostgreSQL floor: psycopg 3 running the least SQL that does each workload's work, the yardstick of
``python -m bench --engine postgresql`` (bench/floor.py is SQLite's).

A schema of its own per run, on one autocommit connection (each statement is its own transaction), statements
prepared by psycopg after their fifth use, no ORM:

    messages(id bigserial PRIMARY KEY, queue text, body bytea, lease_until float8)  -- id order is queue order
    bindings(exchange text, kind text, queue text, pattern text)                     -- fanout and topic routes
    routes(version bigint)                                                           -- bumped when bindings change

- publish: one ``INSERT``; 100 per transaction: one ``INSERT ... SELECT $queue, unnest($bodies::bytea[])``.
- claim: ``UPDATE messages SET lease_until = now + 30 WHERE id = (SELECT id ... ready ... ORDER BY id LIMIT 1
  FOR UPDATE SKIP LOCKED) RETURNING id, body``; with a prefetch the SELECT ``LIMIT k`` sits in a CTE, which
  PostgreSQL runs once, so the UPDATE cannot touch more rows than it claimed. Time is bound from Python.
- ack: ``DELETE WHERE id = $1``; 100 per transaction: ``DELETE WHERE id = ANY($ids)``.
- fanout and topic: as bench/floor.py (``INSERT ... SELECT queue, $body FROM bindings``; topics matched in
  Python against a trie, stored with ``INSERT ... WHERE (SELECT version FROM routes) = $seen``).
- large bodies: nothing special: PostgreSQL moves a body over 2 KB out of the row (TOAST), and an UPDATE of
  ``lease_until`` keeps the pointer without copying the body.
- waiting for a message in another process (``notify``): the publisher's INSERT and a ``pg_notify`` on the
  schema's channel go in one statement (one round trip); the consumer LISTENs on its own connection and claims
  when a notification comes (or its wait times out). Without a consumer waiting (a, b, c, ...) there is no NOTIFY.
"""

from __future__ import annotations

import time
from typing import Any, Optional

from .floor import LEASE_SECONDS, FloorReceiver, Routes

SCHEMA = (
    "CREATE TABLE messages (id bigserial PRIMARY KEY, queue text NOT NULL, body bytea NOT NULL, "
    "lease_until double precision)",
    "CREATE TABLE bindings (exchange text NOT NULL, kind text NOT NULL, queue text NOT NULL, pattern text NOT NULL)",
    "CREATE TABLE routes (version bigint NOT NULL)",
    "INSERT INTO routes (version) VALUES (0)",
)
INSERT = "INSERT INTO messages (queue, body) VALUES (%s, %s)"
INSERT_NOTIFY = "WITH m AS (INSERT INTO messages (queue, body) VALUES (%s, %s)) SELECT pg_notify(%s, '')"
INSERT_MANY = "INSERT INTO messages (queue, body) SELECT %s, unnest(%s::bytea[])"
INSERT_MANY_NOTIFY = ("WITH m AS (INSERT INTO messages (queue, body) SELECT %s, unnest(%s::bytea[])) "
                      "SELECT pg_notify(%s, '')")
READY = "queue = %s AND (lease_until IS NULL OR lease_until < %s)"
CLAIM_ONE = (f"UPDATE messages SET lease_until = %s WHERE id = (SELECT id FROM messages WHERE {READY} "
             "ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING id, body")
CLAIM_SOME = (f"WITH c AS (SELECT id FROM messages WHERE {READY} ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED) "
              "UPDATE messages m SET lease_until = %s FROM c WHERE m.id = c.id RETURNING m.id, m.body")
DELETE = "DELETE FROM messages WHERE id = %s"
DELETE_MANY = "DELETE FROM messages WHERE id = ANY(%s)"
FANOUT = "INSERT INTO messages (queue, body) SELECT queue, %s FROM bindings WHERE exchange = %s"
ROUTED = "INSERT INTO messages (queue, body) SELECT %s, %s WHERE (SELECT version FROM routes) = %s"


def connect(url: str, schema: str) -> Any:
    import psycopg

    return psycopg.connect(url, autocommit=True, options=f"-c search_path={schema}")


def create(url: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    with connect(url, schema) as conn:
        with conn.transaction():
            for statement in SCHEMA:
                conn.execute(statement)


class PgFloor(Routes):
    """One connection to a floor schema. ``batch`` = 1 (one message per transaction) or 100; ``notify``: wake
    consumers in other processes on each publish."""

    KIND = "SELECT kind FROM bindings WHERE exchange = %s LIMIT 1"

    def __init__(self, url: str, schema: str, batch: int = 1, notify: bool = False) -> None:
        super().__init__()
        self.db = connect(url, schema)
        self.channel = schema  # channels are per database: the schema's name keeps runs apart
        self.batch = batch
        self.notify = notify

    def close(self) -> None:
        self.db.close()

    # --- topology
    def bind_many(self, exchange: str, kind: str, rows: list[tuple[str, str]]) -> None:
        with self.db.transaction():
            with self.db.cursor() as cursor:
                cursor.executemany("INSERT INTO bindings (exchange, kind, queue, pattern) VALUES (%s, %s, %s, %s)",
                                   [(exchange, kind, queue, pattern) for queue, pattern in rows])
            self.db.execute("UPDATE routes SET version = version + 1")

    # --- publishing
    def publish(self, queue: str, body: bytes) -> None:
        if self.notify:
            self.db.execute(INSERT_NOTIFY, (queue, body, self.channel))
        else:
            self.db.execute(INSERT, (queue, body))

    def publish_many(self, queue: str, bodies: list[bytes]) -> None:
        """All of ``bodies`` in one statement, so one transaction."""
        if self.notify:
            self.db.execute(INSERT_MANY_NOTIFY, (queue, bodies, self.channel))
        else:
            self.db.execute(INSERT_MANY, (queue, bodies))

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
                with self.db.transaction():
                    stored = sum(self.db.execute(ROUTED, (queue, body, self.topic_version)).rowcount
                                 for queue in queues)
                if stored == len(queues):
                    return
            self.topic_version = -1  # the bindings changed since they were read: read them again

    def publish_to_many(self, exchange: str, keys: list[str], bodies: list[bytes]) -> None:
        """One transaction for the whole batch."""
        db = self.db
        if self.kind(exchange) == "fanout":
            with db.transaction(), db.cursor() as cursor:
                cursor.executemany(FANOUT, [(data, exchange) for data in bodies])
            return
        while True:
            with db.transaction():
                current = db.execute("SELECT version FROM routes FOR SHARE").fetchone()[0]
                if current == self.topic_version:
                    queues, data = [], []
                    for key, message in zip(keys, bodies):
                        for queue in self._topic_queues(exchange, key):
                            queues.append(queue)
                            data.append(message)
                    db.execute("INSERT INTO messages (queue, body) SELECT unnest(%s::text[]), unnest(%s::bytea[])",
                               (queues, data))
                    return
            self.topic_version = -1
            self._topic_queues(exchange, keys[0])

    def _read_bindings(self) -> tuple[int, list[tuple[str, str, str]]]:
        with self.db.transaction():
            version = self.db.execute("SELECT version FROM routes").fetchone()[0]
            bindings = self.db.execute("SELECT exchange, queue, pattern FROM bindings").fetchall()
        return version, bindings

    def fill(self, queue: str, bodies: list[bytes]) -> None:
        with self.db.cursor() as cursor, cursor.copy("COPY messages (queue, body) FROM STDIN") as copy:
            for data in bodies:
                copy.write_row((queue, data))

    # --- consuming
    def claim(self, queue: str, limit: int = 1) -> list[tuple[int, bytes]]:
        now = time.time()
        if limit == 1:
            return self.db.execute(CLAIM_ONE, (now + LEASE_SECONDS, queue, now)).fetchall()
        rows = self.db.execute(CLAIM_SOME, (queue, now, limit, now + LEASE_SECONDS)).fetchall()
        rows.sort()
        return rows

    def ack(self, message_id: int) -> None:
        self.db.execute(DELETE, (message_id,))

    def ack_many(self, ids: list[int]) -> None:
        self.db.execute(DELETE_MANY, (ids,))

    def depth(self, queue: str) -> int:
        return self.db.execute("SELECT count(*) FROM messages WHERE queue = %s", (queue,)).fetchone()[0]

    def listen(self) -> None:
        self.db.execute(f'LISTEN "{self.channel}"')

    def wait(self, timeout: float) -> None:
        """Until a notification comes (or came since the last wait) or ``timeout`` seconds pass."""
        for _ in self.db.notifies(timeout=max(0.0, timeout), stop_after=1):
            pass


class PgFloorReceiver(FloorReceiver):
    """The SQLite floor's consumer (its acks and batches) on the psycopg floor; it waits for a notification, not
    a data_version change. LISTENs from the start, so a notification sent between an empty claim and the wait is
    not missed (psycopg keeps it for the next wait)."""

    floor: PgFloor  # type: ignore[assignment]

    def __init__(self, floor: PgFloor, queue: str, prefetch: int) -> None:
        super().__init__(floor, queue, prefetch)  # type: ignore[arg-type]
        floor.listen()

    def next(self, timeout: float) -> Optional[tuple[bytes, int]]:
        if not self.buffer:
            self.flush()
            deadline: Optional[float] = None
            while True:
                rows = self.floor.claim(self.queue, self.prefetch)
                if rows:
                    rows.reverse()
                    self.buffer = rows
                    break
                now = time.monotonic()
                if deadline is None:
                    deadline = now + timeout
                elif now >= deadline:
                    return None
                self.floor.wait(deadline - now)
        message_id, data = self.buffer.pop()
        return data, message_id
