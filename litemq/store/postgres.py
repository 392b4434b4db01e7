"""The PostgreSQL store on psycopg 3: one server session per store, shared by its threads under ``lock``.

URLs: ``postgresql://user@host:port/db`` or ``postgresql+psycopg://...``; ``?schema=NAME`` (default ``litemq``)
names the schema that holds litemq's tables, ``?listen=0`` makes waiting consumers poll instead of LISTEN (for
PgBouncer in transaction mode); both are removed before the URL goes to libpq, which reads the rest.

Transactions. PostgreSQL runs writers side by side (READ COMMITTED). ``write()`` holds a shared transaction-level
advisory lock on the schema and ``write_exclusive()`` the same lock exclusively: declaring, deleting, binding,
consumers coming and going and reaping run alone, as on SQLite, while publishes, claims and acks run together.
A write's BEGIN and lock go with its first statement
(one round trip; the server runs them in order, so that statement's snapshot comes after the lock), an exclusive
one's before anything else; a write that is one statement sends the lock and the statement alone, which the server
runs as one implicit transaction up to the pipeline's sync point. ``lock_queue`` takes a transaction-level lock keyed by the queue (a length
limit counts before it stores). ``read()`` is REPEATABLE READ: one snapshot for several reads.

Claims are one statement: a materialised CTE picks the queue's next ready rows from the ready index in delivery
order, ``FOR UPDATE SKIP LOCKED`` (a row another claim holds is passed over, never waited for) and ``LIMIT n``
(the CTE is a fence: the planner cannot re-run it and take more), and the UPDATE (or DELETE, for auto-ack) leases
exactly those. Only the rows taken are read from the table (a row lock lives in its row): the walk in delivery
order is the partial ready index's alone, and no count reads a row. Expired leases return through the lease expiry
index; bulk returns skip locked rows, so two processes returning or reaping the same leases never both return one,
nor wait on each other. Message bodies stay in their rows: PostgreSQL moves a large one out of line (TOAST) and an
UPDATE of the lease leaves it there, so ``litemq_bodies`` serves only rows written by hand.

Counts (migrations 0007 and 0011). A counter in the queue's row, raised by every publish, is a row lock that every
publisher of the queue waits on until it commits, WAL flush included, and a new row version per message. Instead
the triggers add each write's changes to a delta row of ``litemq_queue_deltas`` that belongs to the writing session
(one per queue and server process: no two sessions write the same row, nobody waits on another); a queue's ready
count is its row's plus its few delta rows, and ``maintain()`` folds the deltas into the rows from the background
thread, taking the rows no transaction is writing and waiting for none (a reader that saw more than FOLD_AT delta
rows of a queue also folds, after its commit). Writes by hand with plain SQL count through the same triggers. Until
0011 each write inserted a delta row of its own: a get's count then walked up to 256 of them, and through its index
the folded ones not yet vacuumed, a fifth of the server's time in a get and its ack (``perf`` on the backend). An
update of a session's row changes no indexed column, so PostgreSQL keeps its new version on the same page (HOT) and
prunes the old ones there: nothing for the index or vacuum. Measured here (PostgreSQL 15, 2 shared cores, load
average 0.6 to 3 with other work; ``python bench/postgres_counts.py --seconds 5 --rounds 2``), 8 publisher processes,
one 100-byte message per transaction as the broker publishes (counts read, then insert) into one queue:

    delta rows per session   3,078 and 3,393 msgs/s, p99 9.0 and 9.2 ms; 45 and 36 queue row updates (the folds),
                             199 and 158 delta rows inserted, 15,191 and 16,808 updated in place (HOT)
    counter UPDATE           2,183 and 2,112 msgs/s, p99 16.8 and 17.0 ms; one queue row update per message

(A delta row per statement, before 0011, under a load average of 6 to 13: 368 and 411 msgs/s against 151 and 318.)
A count stays O(1) in depth: at 1,000,000 ready messages reading it took 0.043 ms of server time folded and 0.079
ms with 256 deltas, against 573 ms for count(*) over the ready index.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from typing import Any, Callable, ContextManager, Iterable, Optional, Sequence

import psycopg
import psycopg.sql
from psycopg import errors as pg_errors

from ..errors import DatabaseNotFound, ReadOnlyDatabase, SchemaError, ServerUnreachable, StorageError, StorageFull
from ..log import debug
from . import SCHEMA_REVISION, remember
from . import postgres_sql as sql
from . import postgres_url
from .contract import (Binding, Consumer, Counts, ExchangeRow, Lease, MessageRow, QueueRow, Registration,
                       ReturnedMessage, StoredMessage, WouldWait)
from .postgres_keys import channel, lock_key, quoted
from .postgres_listen import TICK_SECONDS, Doorbell, Poller, Relay, _disown, relay_for, release
from .postgres_liveness import PostgresLiveness
from .postgres_wire import Rows, Wire
from .transaction import Transaction

FOLD_AT = 256
"""A reader that sees more deltas than this for a queue folds them once its transaction commits."""
FOLD_LOCK_TIMEOUT = "100ms"
"""A fold waits no longer than this for a queue row another transaction holds: it gives up, to fold later."""
SYNCHRONOUS = ("NORMAL", "FULL")
_COMMIT: tuple[str, Sequence[Any], Optional[bool]] = ("COMMIT", (), False)
_IDLE, _ACTIVE = psycopg.pq.TransactionStatus.IDLE.value, psycopg.pq.TransactionStatus.ACTIVE.value


_pid = os.getpid()
_stores: "weakref.WeakSet[PostgresStore]" = weakref.WeakSet()


class PostgresStore:
    """One connection to a litemq schema on a PostgreSQL server."""

    engine = "postgresql"
    before_write: Optional[Callable[[Any], None]] = None

    def __init__(self, url: str, *, synchronous: str = "NORMAL", busy_timeout: float = 60.0,
                 share_with_group: bool = False, connect_timeout: float = 10.0) -> None:
        if synchronous not in SYNCHRONOUS:
            raise ValueError(f"synchronous must be one of {SYNCHRONOUS}, got {synchronous!r}")
        self.conninfo, self.schema, self.path, listen = postgres_url.parse(url)
        self.lock = threading.RLock()
        self.commits = 0
        self.rollbacks = 0
        self.pid = os.getpid()
        self.closed = False
        self._after_commit: list[Callable[[], None]] = []
        self._wakes: dict[str, None] = {}  # queues to notify once the transaction commits
        self._fold_wanted = False
        self._not_plain: dict[str, None] = {}  # queues seen with arguments or an owner: no single-step publish or get
        self._write_key = lock_key(self.schema, "write")
        self._fold_key = lock_key(self.schema, "fold")
        self._channel = channel(self.schema)
        # write() sends its BEGIN and lock with its first statement (a pipeline): the server runs them in order, so
        # the lock is granted before that statement takes its snapshot (READ COMMITTED: one per statement).
        # (The lock prepared once, as the statements are: its text parsed and planned at every write was a twentieth
        # of the server's time in a publish, perf on the backend. Its key in the text, not a parameter: nothing to
        # convert at every write.)
        self._begin_write = [("BEGIN", (), False), (sql.LOCK_SHARED.format(key=self._write_key), (), True)]
        self._begin_exclusive = "BEGIN; " + sql.LOCK_EXCLUSIVE.format(key=self._write_key)
        self._in_transaction = False
        self._pending: list[tuple[str, Sequence[Any], Optional[bool]]] = []  # sent with the next statement or the COMMIT
        self._conn = self._connect(connect_timeout)
        _stores.add(self)
        self._relay: Optional[Relay] = None
        self._poller = Poller()
        try:
            settings = [f"SET search_path TO {quoted(self.schema)}",
                        f"SET lock_timeout = {int(busy_timeout * 1000)}"]
            if synchronous == "FULL":  # NORMAL leaves the server's own setting
                settings.append("SET synchronous_commit = on")
            self._controls = self._conn.cursor()
            self._control("; ".join(settings))
            self._wire = Wire(self._conn)
            current = self._revision()
            if current != SCHEMA_REVISION:
                from . import migrate  # the slow path: SQLAlchemy and Alembic are imported only here

                migrate.upgrade_postgresql(self.conninfo, self.schema, self.path)
                current = self._revision()
                if current != SCHEMA_REVISION:
                    raise SchemaError(f"{self.path} is at schema {current!r} after upgrading, "
                                      f"expected {SCHEMA_REVISION!r}")
            if listen:
                self._relay = relay_for(self.conninfo, self._channel, self.path)
                # A store dropped without close() still lets go of its share of the process's listening session.
                self._release_relay = weakref.finalize(self, release, self._relay)
        except BaseException:
            self.close()
            raise

    def _connect(self, connect_timeout: float) -> psycopg.Connection:
        where = self.path
        try:
            # psycopg prepares nothing itself (prepare_threshold=None): its cache would answer a ROLLBACK with
            # DEALLOCATE ALL, taking the statements the wire prepared with it.
            return psycopg.connect(self.conninfo, autocommit=True, connect_timeout=max(1, round(connect_timeout)),
                                   application_name=f"litemq {os.getpid()}", prepare_threshold=None)
        except psycopg.OperationalError as exc:
            text = str(exc)
            if "does not exist" in text and "database" in text:
                raise DatabaseNotFound(f"cannot open {where}: {text.strip()}") from None
            if "FATAL" in text:  # the server answered, and refused
                raise StorageError(f"the PostgreSQL server of {where} refused the connection: {text.strip()}") \
                    from None
            raise ServerUnreachable(f"cannot reach the PostgreSQL server of {where}: {text.strip()}") from None

    def _revision(self) -> Optional[str]:
        try:
            row = self.run(sql.SELECT_REVISION).fetchone()
        except StorageError as exc:
            if isinstance(exc.__cause__, (pg_errors.UndefinedTable, pg_errors.InvalidSchemaName)):
                return None
            raise
        return row[0] if row else None

    def failed(self, exc: psycopg.Error) -> StorageError:
        """The litemq error for a driver error, naming the server and schema."""
        if isinstance(exc, pg_errors.DiskFull):
            return StorageFull(f"{self.path}: the server's disk is full; the transaction was rolled back")
        if isinstance(exc, pg_errors.ReadOnlySqlTransaction):
            return ReadOnlyDatabase(f"{self.path} is read-only (a standby?): litemq needs to write it")
        if isinstance(exc, psycopg.OperationalError) and self._conn.broken:
            return ServerUnreachable(f"lost the connection to {self.path}: {str(exc).strip()}")
        return StorageError(f"{self.path}: {str(exc).strip()}")

    def run(self, statement: str, params: Sequence[Any] = (), *, prepare: Optional[bool] = None) -> Rows:
        """Run one statement (``$N`` parameters) in the current transaction, or on its own outside one; what waits
        to be sent (the BEGIN and its lock, statements run ``later``) goes with it, in one round trip."""
        if _pid != self.pid:  # a forked child's copy: its session is the parent's (a transaction checked at BEGIN)
            self.check_process()
        pending, self._pending = self._pending, []
        try:
            return self._wire.send([*pending, (statement, params, prepare)])
        except psycopg.Error as exc:
            raise self.failed(exc) from exc

    def later(self, statement: str, params: Sequence[Any] = ()) -> None:
        """Run a statement whose result nobody reads in the current transaction: it goes to the server with the
        next statement or the COMMIT, in the same round trip (a failure then fails that statement, or the commit:
        the transaction rolls back either way). Outside a transaction it runs at once."""
        if self._in_transaction:
            self._pending.append((statement, params, None))
        else:
            self.run(statement, params)

    def one(self, statement: str, params: Sequence[Any] = ()) -> Any:
        """The one row of a statement that always returns one (an aggregate)."""
        return self.run(statement, params).fetchone()

    def execute(self, statement: str, params: Sequence[Any] = ()) -> Rows:
        """Run one statement with SQLite's ``?`` placeholders; for tools and tests (never prepared)."""
        return self.run(sql.from_sqlite(statement), params, prepare=False)

    def _control(self, statements: str) -> None:
        """BEGIN, COMMIT and the like: several statements without parameters, in one round trip."""
        try:
            self._controls.execute(statements, prepare=False)
        except psycopg.Error as exc:
            raise self.failed(exc) from exc

    # --- transactions
    def write(self) -> "_Transaction":
        return _Transaction(self, None, True)

    def write_exclusive(self) -> "_Transaction":
        return _Transaction(self, self._begin_exclusive, True)

    def read(self) -> "_Transaction":
        return _Transaction(self, "BEGIN ISOLATION LEVEL REPEATABLE READ", False)

    writes_without_waiting = False
    """A commit is a round trip to the server, which waits for its disk."""
    statements_are_round_trips = True

    def without_waiting(self) -> ContextManager[None]:
        raise WouldWait(self.path)

    def after_commit(self, action: Callable[[], None]) -> None:
        self._after_commit.append(action)

    def _settle_interrupted(self) -> None:
        """A statement that an exception interrupted on its way (a signal handler that raised in this thread) leaves
        the session busy, and every later statement would fail: cancel it and read what the server still sends."""
        if self._conn.pgconn.transaction_status == _ACTIVE and not self._conn.broken:
            try:
                self._conn.cancel_safe()
                while self._conn.pgconn.get_result() is not None:
                    pass
            except psycopg.Error as exc:
                raise self.failed(exc) from exc

    def _rollback(self) -> None:
        self._in_transaction = False
        self._pending = []
        if self._conn.pgconn.transaction_status == _IDLE:  # every transaction's start: nothing to undo
            return
        self._settle_interrupted()
        if self._conn.pgconn.transaction_status != _IDLE and not self._conn.broken:
            self.rollbacks += 1
            try:
                self._controls.execute("ROLLBACK", prepare=False)
            except psycopg.Error as exc:
                raise self.failed(exc) from exc

    def check_process(self) -> None:
        if _pid != self.pid:
            raise StorageError(f"this connection to {self.path} was opened in process {self.pid} and cannot be "
                               f"used after fork() in process {os.getpid()}; open a new connection in the child")

    def reserve(self, size: int) -> None:
        """Nothing to measure here: the server's disk is the server's (a full one fails the commit: StorageFull)."""

    def lock_queue(self, queue: str) -> None:
        self.run(sql.LOCK, (lock_key(self.schema, "queue", queue),))

    def close(self) -> None:
        if os.getpid() != self.pid:
            self.closed = True  # a forked child's copy: the session is the parent's
            return
        with self.lock:
            if self.closed:
                return
            self.closed = True
            if self._relay is not None:
                self._release_relay()
                self._relay = None
            self._conn.close()

    def _drop_in_child(self) -> None:
        self.lock = threading.RLock()  # another thread of the parent may have held it at fork()
        if not self._conn.closed:
            _disown(self._conn)

    # --- what only the engine knows
    def liveness(self, connection_id: str,
                 registration: Callable[[str], Optional[Registration]]) -> PostgresLiveness:
        return PostgresLiveness(self, connection_id, registration)

    def doorbell(self, connection_id: str, channel: int, consumer_tag: str, queue: str, owner: str) -> Doorbell:
        return Doorbell(self._relay, queue, self._poller)

    def wake(self, queues: Optional[Iterable[str]]) -> None:
        """Once this transaction commits, notify the schema's channel with each queue ("" for every queue): the
        relay of every process rings its consumers' doorbells.

        Not inside the transaction: a transaction that notifies holds a lock of the whole database from its commit
        until its WAL is flushed, so notifying publishers would commit one at a time, without group commit
        (bench/postgres_counts.py --wake measured it). The notification goes after the commit, in a transaction of
        its own that does not wait for the flush (its loss in a crash costs a waiter's TICK_SECONDS, never a
        message)."""
        self._wakes.update(dict.fromkeys([""] if queues is None else queues))
        if not self._in_transaction:
            self._notify()

    def _notify(self) -> None:
        queues, self._wakes = ([""] if "" in self._wakes else list(self._wakes)), {}
        channel = psycopg.sql.Literal(self._channel).as_string(self._conn)
        notices = ", ".join(f"pg_notify({channel}, {psycopg.sql.Literal(queue).as_string(self._conn)})"
                            for queue in queues)
        try:
            self._control(f"BEGIN; SET LOCAL synchronous_commit = off; SELECT {notices}; COMMIT")
        except StorageError as exc:  # what woke nobody is found by the waiters' next look
            debug("litemq: cannot notify %s of %s (%s)", self.path, queues, exc)

    def data_version(self) -> int:
        """The relay's count of notifications, plus a tick every TICK_SECONDS; without LISTEN, the number of
        changes seen in the server's snapshot, polled with backoff."""
        if self._relay is not None and self._relay.listening:
            return self._relay.version + int(time.monotonic() / TICK_SECONDS)
        if self._poller.due() and self.lock.acquire(blocking=False):
            try:
                self._poller.saw(self.one("SELECT pg_current_snapshot()::text")[0])
            finally:
                self.lock.release()
        return self._poller.version

    def maintain(self) -> None:
        """Fold the counters' deltas into the queue rows (one folder at a time; it gives up rather than wait)."""
        with self.lock:
            if not self.closed:
                self._fold()

    def _fold(self) -> None:
        self._fold_wanted = False
        if self.run(sql.ANY_DELTAS).fetchone() is None:
            return
        begin = f"BEGIN; SET LOCAL lock_timeout = '{FOLD_LOCK_TIMEOUT}'; " + sql.LOCK_SHARED.format(key=self._write_key)
        try:
            with _Transaction(self, begin, False):
                if self.one(sql.TRY_LOCK, (self._fold_key,))[0]:
                    self.run(sql.FOLD)
        except StorageError as exc:
            if not isinstance(exc.__cause__, pg_errors.LockNotAvailable):
                raise
            debug("litemq: folding the counters of %s waited too long; later", self.path)

    def _counted(self, deltas: int) -> None:
        if deltas > FOLD_AT:
            self._fold_wanted = True

    def report(self) -> dict[str, Any]:
        """What ``litemq db check`` shows for a PostgreSQL schema: each table's live and dead rows, sizes and last
        vacuum, and the transaction holding back vacuum the longest (the oldest snapshot still in use)."""
        tables = [dict(zip(("table", "live_rows", "dead_rows", "table_bytes", "index_bytes", "last_autovacuum",
                            "last_vacuum"), row))
                  for row in self.run(sql.REPORT_TABLES, (self.schema,)).fetchall()]
        oldest = self.run(sql.REPORT_OLDEST_XMIN).fetchone()
        holder = None if oldest is None else dict(zip(
            ("pid", "database", "user", "application", "state", "xmin_age", "transaction_seconds", "query"), oldest))
        return {"schema": self.schema, "tables": tables, "oldest_snapshot": holder}

    # --- exchanges and bindings
    def exchange(self, name: str) -> Optional[ExchangeRow]:
        row = self.run(sql.SELECT_EXCHANGE, (name,)).fetchone()
        return ExchangeRow(*row) if row else None

    def insert_exchange(self, name: str, type: str, durable: bool, auto_delete: bool, internal: bool,
                        arguments: Optional[str], now: float) -> None:
        self.run(sql.INSERT_EXCHANGE, (name, type, durable, auto_delete, internal, arguments, now))

    def delete_exchange(self, name: str) -> list[str]:
        sources = [r[0] for r in self.run(sql.DELETE_BINDINGS_OF_EXCHANGE, (name, name)).fetchall()]
        self.run(sql.DELETE_EXCHANGE, (name,))
        return [s for s in sources if s != name]

    def exchange_in_use(self, name: str) -> bool:
        return (self.run(sql.SELECT_HAS_BINDINGS, (name,)).fetchone() is not None
                or self.run(sql.SELECT_IS_DESTINATION, (name,)).fetchone() is not None)

    def has_bindings(self, exchange: str) -> bool:
        return self.run(sql.SELECT_HAS_BINDINGS, (exchange,)).fetchone() is not None

    def exchange_and_bindings(self, name: str) -> Optional[tuple[str, bool, Optional[str], list[Binding]]]:
        rows = self.run(sql.SELECT_ROUTE, (name,)).fetchall()
        if not rows:
            return None
        return rows[0][0], rows[0][1], rows[0][2], [(r[3], r[4], r[5], r[6]) for r in rows if r[3] is not None]

    def routing_version(self) -> int:
        return int(self.one(sql.SELECT_ROUTING_VERSION)[0])

    def add_binding(self, exchange: str, destination: str, kind: str, routing_key: str, arguments: str) -> None:
        self.run(sql.INSERT_BINDING, (exchange, destination, kind, routing_key, arguments))

    def remove_binding(self, exchange: str, destination: str, kind: str, routing_key: str, arguments: str) -> bool:
        return self.run(sql.DELETE_BINDING, (exchange, destination, kind, routing_key, arguments)).rowcount > 0

    # --- queues
    def queue(self, name: str) -> Optional[QueueRow]:
        row = self.run(sql.SELECT_QUEUE, (name,)).fetchone()
        if row is None:
            return None
        self._counted(row[8])
        return QueueRow(*row[:8])

    def queue_created_at(self, name: str) -> Optional[float]:
        row = self.run(sql.SELECT_QUEUE_CREATED_AT, (name,)).fetchone()
        return row[0] if row else None

    def insert_queue(self, name: str, durable: bool, exclusive: bool, auto_delete: bool,
                     arguments: Optional[str], owner_connection: Optional[str], now: float) -> None:
        self.run(sql.INSERT_QUEUE, (name, durable, exclusive, auto_delete, arguments, owner_connection, now))

    def delete_queue(self, name: str) -> list[str]:
        self.run(sql.DELETE_QUEUE, (name,))
        self.run(sql.DELETE_QUEUE_MESSAGES, (name,))
        self.run(sql.DELETE_QUEUE_DELTAS, (name,))  # after the messages, whose triggers add some
        sources = [r[0] for r in self.run(sql.DELETE_BINDINGS_TO_QUEUE, (name,)).fetchall()]
        self.run(sql.DELETE_QUEUE_CONSUMERS, (name,))
        return sources

    def purge_queue(self, name: str) -> int:
        return self.run(sql.PURGE_READY, (name,)).rowcount

    def unacked_count(self, queue: str) -> int:
        return int(self.one(sql.SELECT_UNACKED_COUNT, (queue,))[0])

    def owned_queues(self, connection_id: str) -> list[str]:
        return [r[0] for r in self.run(sql.SELECT_OWNED_QUEUES, (connection_id,)).fetchall()]

    def ready_count(self, queue: str) -> Optional[int]:
        row = self.run(sql.SELECT_READY_COUNT, (queue,)).fetchone()
        if row is None:
            return None
        self._counted(row[1])
        return int(row[0])

    def ready_count_ranked(self, queue: str) -> tuple[Optional[int], bool]:
        ready = self.ready_count(queue)
        return ready, ready is not None and self.consumer_ranking(queue, 0)[0]

    def expired_queues(self, now: float) -> list[str]:
        return [r[0] for r in self.run(sql.SELECT_EXPIRED_QUEUES, (now,)).fetchall()]

    def set_queue_expiry(self, queue: str, expires_at: Optional[float]) -> None:
        self.run(sql.SET_QUEUE_EXPIRY, (expires_at, queue))

    # --- publishing
    def counts_with(self, queue: str, size: int, count: int = 1) -> Optional[Counts]:
        row = self.run(sql.COUNTS_WITH, (count, size, queue)).fetchone()
        if row is None:
            return None
        self._counted(row[4])
        return row[0], row[1], row[2], row[3]

    def counts_with_queues(self, queues: Sequence[str], size: int, count: int = 1) -> dict[str, Counts]:
        counted = {}
        for name, ready, ready_bytes, arguments, consumers, deltas in self.run(
                sql.COUNTS_WITH_QUEUES, (count, size, list(queues))).fetchall():
            counted[name] = (ready, ready_bytes, arguments, consumers)
            self._counted(deltas)
        return counted

    def counts_with_first(self, queue: str, size: int, count: int = 1) -> tuple[Optional[Counts], Optional[float]]:
        row = self.run(sql.COUNTS_WITH_FIRST, (count, size, queue)).fetchone()
        if row is None:
            return None, self.arrival_due()
        self._counted(row[4])
        return (row[0], row[1], row[2], row[3]), _earliest(row[5:])

    def arrival_due(self) -> Optional[float]:
        return _earliest(self.one(sql.SELECT_ARRIVAL_DEADLINES))

    def insert_message(self, queue: str, exchange: str, routing_key: str, body: bytes, properties: Optional[str],
                       now: float, priority: int = 0, expires_at: Optional[float] = None) -> None:
        # Every body stays in its row: PostgreSQL moves a large one out of line itself (TOAST), and an UPDATE of
        # the lease leaves it where it is.
        self.later(sql.INSERT_MESSAGE, (queue, exchange, routing_key, body, properties, now, priority, expires_at))

    def insert_copies(self, queues: Sequence[str], exchange: str, routing_key: str, body: bytes,
                      properties: Optional[str], now: float) -> None:
        self.later(sql.INSERT_COPIES, (exchange, routing_key, body, properties, now, list(queues)))

    def insert_messages(self, queue: str, exchange: str, routing_key: str, bodies: Sequence[bytes],
                        properties: Optional[str], now: float, priority: int = 0) -> None:
        self.later(sql.INSERT_MESSAGES, (queue, exchange, routing_key, properties, now, priority, list(bodies)))

    def insert_delayed(self, queue: str, exchange: str, routing_key: str, bodies: Sequence[bytes],
                       properties: Optional[str], now: float, visible_at: float) -> None:
        for body in bodies:
            self.later(sql.INSERT_DELAYED, (queue, exchange, routing_key, body, properties, now, visible_at))

    # --- claiming and settling
    def claim(self, queue: str, limit: int, owner: str, token: int, lease_expires_at: float, *,
              default_consumer: bool = False) -> list[MessageRow]:
        statement = sql.CLAIM_AS_DEFAULT_CONSUMER if default_consumer else sql.CLAIM
        return _in_order(self.run(statement, (owner, token, lease_expires_at, queue, limit)).fetchall())

    def claim_unless_due(self, queue: str, limit: int, owner: str, token: int, lease_expires_at: float, now: float
                         ) -> Optional[list[MessageRow]]:
        rows = self.run(sql.CLAIM_UNLESS_DUE, (owner, token, lease_expires_at, queue, limit, now)).fetchall()
        due = rows[0][0]
        if due is not None and due <= now:
            return None
        return _in_order([r[1:] for r in rows if r[1] is not None])

    def ack_and_claim_unless_due(self, lease: Lease, queue: str, limit: int, owner: str, token: int,
                                 lease_expires_at: float, now: float
                                 ) -> Optional[tuple[int, Optional[list[MessageRow]]]]:
        params = (owner, token, lease_expires_at, queue, limit, now, *lease)
        first = self._pending == self._begin_write
        # The transaction's first statement: COMMIT goes with it (one round trip for an ack and the next delivery).
        rows = (self._first_and_commit if first else self.run)(sql.ACK_AND_CLAIM_UNLESS_DUE, params).fetchall()
        acked, due = rows[0][0], rows[0][1]
        claimed = None if due is not None and due <= now else _in_order([r[2:] for r in rows if r[2] is not None])
        if first and (claimed is None or not acked or any(m.consumers_below for m in claimed)):
            self._begin_again(queue, False)  # the block has more to do, which begins where the statement ended
        return acked, claimed

    def claim_and_delete(self, queue: str, limit: int, *, default_consumer: bool = False) -> list[MessageRow]:
        statement = sql.CLAIM_AND_DELETE_AS_DEFAULT_CONSUMER if default_consumer else sql.CLAIM_AND_DELETE
        return _in_order(self.run(statement, (queue, limit)).fetchall())

    def claim_with_queue(self, queue: str, limit: int, owner: str, token: int, lease_expires_at: float,
                         now: float, *, auto_ack: bool = False
                         ) -> tuple[Optional[QueueRow], Optional[float], Optional[list[MessageRow]]]:
        params: tuple[Any, ...] = (queue, limit, now) if auto_ack else (owner, token, lease_expires_at, queue, limit, now)
        if self._may_commit_with(queue):
            # A plain queue's claim is the transaction's only write and nothing undoes it: COMMIT goes with it.
            plain = sql.CLAIM_AND_DELETE_WITH_PLAIN_QUEUE if auto_ack else sql.CLAIM_WITH_PLAIN_QUEUE
            row, due, claimed = self._with_queue(self._first_and_commit(plain, params).fetchall())
            if claimed is not None:
                return row, due, claimed
            self._begin_again(queue, row is not None and (row.arguments is not None or row.owner_connection is not None))
        statement = sql.CLAIM_AND_DELETE_WITH_QUEUE if auto_ack else sql.CLAIM_WITH_QUEUE
        return self._with_queue(self.run(statement, params).fetchall())

    def _with_queue(self, rows: list[Any]) -> tuple[Optional[QueueRow], Optional[float], Optional[list[MessageRow]]]:
        first = rows[0]
        row = None
        if first[1] is not None:
            self._counted(first[9])
            row = QueueRow(*first[1:9])
        claimed = _in_order([r[11:] for r in rows if r[11] is not None]) if first[0] else None
        return row, first[10], claimed

    def ack(self, leases: Sequence[Lease]) -> int:
        return self.run(*_acking(leases)).rowcount

    def ack_last(self, leases: Sequence[Lease]) -> int:
        if not self._in_transaction:
            return self.ack(leases)
        # The DELETE is token-fenced: nothing is read to decide. Alone in its transaction it needs no write lock:
        # what an exclusive writer does to the same rows (deleting their queue, returning a dead connection's
        # leases) it waits for on the rows themselves, then finds them gone and acks none, as after that writer.
        return self._first_and_commit(*_acking(leases), locked=False).rowcount

    def publish_plain(self, queue: str, exchange: str, routing_key: str, body: bytes, properties: Optional[str],
                      now: float) -> Optional[bool]:
        if not self._may_commit_with(queue):
            return None
        stored = self._first_and_commit(sql.PUBLISH_PLAIN, (queue, exchange, routing_key, body, properties, now)
                                        ).fetchone()
        if stored is None:
            # The block goes on in a new transaction, which first asks why: a queue with arguments or an owner is
            # left to the general path from now on (a round trip more, on this path only).
            self._begin_again(queue, False)
            plain = self.run(sql.SELECT_PLAIN, (queue,)).fetchone()
            if plain is not None and not plain[0]:
                remember(self._not_plain, queue)
            return None
        return bool(stored[0])

    def publish_alone(self, queue: str, exchange: str, routing_key: str, body: bytes, properties: Optional[str],
                      now: float, routing_version: Optional[int] = None) -> Optional[bool]:
        """Never: ``publish_plain`` in a ``write()`` block already takes one round trip."""
        return None

    def ack_alone(self, lease: Lease) -> Optional[int]:
        """Never: ``ack_last`` in a ``write()`` block already takes one round trip."""
        return None

    def claim_alone(self, queue: str, owner: str, token: int, lease_expires_at: float, now: float
                    ) -> Optional[list[MessageRow]]:
        """Never: a claim's BEGIN and COMMIT already go with its statements."""
        return None

    def _may_commit_with(self, queue: str) -> bool:
        """Whether a write to the queue may go with BEGIN and COMMIT: it is the transaction's first statement, and the
        queue was not seen with arguments or an owner (which a single step leaves to the general path)."""
        return self._pending == self._begin_write and queue not in self._not_plain

    def _first_and_commit(self, statement: str, params: Sequence[Any], locked: bool = True) -> Rows:
        """What waits (BEGIN, its lock, statements run ``later``), ``statement`` and COMMIT, in one round trip (one
        implicit transaction when the transaction had not begun): the statement's rows. What the block runs next runs on its own (``_begin_again`` undoes that).
        ``locked=False``: without the write lock when the statement is the transaction's only one."""
        pending, self._pending = self._pending, []
        if pending[:2] == self._begin_write:
            # Not begun yet: the pipeline's statements up to its sync point are one implicit transaction, which the
            # server commits at that point (or rolls back, when one fails), so BEGIN and COMMIT need not be sent.
            alone = not locked and len(pending) == 2  # nothing but BEGIN and the lock waits: the lock may go too
            statements, wanted = [*pending[2 if alone else 1:], (statement, params, None)], -1
        else:
            statements, wanted = [*pending, (statement, params, None), _COMMIT], -2
        try:
            rows = self._wire.send(statements, wanted=wanted)
        except psycopg.Error as exc:
            raise self.failed(exc) from exc
        self._in_transaction = False
        return rows

    def _begin_again(self, queue: str, not_plain: bool) -> None:
        """After a single step that wrote nothing: the block goes on in a new transaction, as if it began now."""
        if not_plain:
            remember(self._not_plain, queue)
        self._pending = list(self._begin_write)
        self._in_transaction = True

    def drop(self, leases: Sequence[Lease]) -> list[StoredMessage]:
        return _taken_out(self.run(sql.DROP, _lease_arrays(leases)).fetchall())

    def requeue(self, leases: Sequence[Lease], undo_delivery: bool = False) -> list[ReturnedMessage]:
        rows = self.run(sql.REQUEUE, (*_lease_arrays(leases), 1 if undo_delivery else 0)).fetchall()
        return [ReturnedMessage(*r) for r in rows]

    def renew(self, leases: Sequence[tuple[float, int, int]]) -> int:
        return self.run(sql.RENEW_LEASES, ([lease[1] for lease in leases], [lease[2] for lease in leases],
                                           [lease[0] for lease in leases])).rowcount

    def release_owner(self, owner: str) -> list[ReturnedMessage]:
        return [ReturnedMessage(*r) for r in self.run(sql.RELEASE_OWNER, (owner,)).fetchall()]

    def release_connection(self, connection_id: str) -> list[ReturnedMessage]:
        # Owners are "<connection id>/<channel>": a connection's leases are one range of owners.
        rows = self.run(sql.RELEASE_CONNECTION, (connection_id + "/", connection_id + "0")).fetchall()
        return [ReturnedMessage(*r) for r in rows]

    def return_expired(self, queue: str, now: float) -> list[ReturnedMessage]:
        returned = [ReturnedMessage(*r) for r in self.run(sql.RETURN_EXPIRED, (queue, now)).fetchall()]
        if returned:  # their holders hung, ran past the consumer timeout, or died unseen
            debug("litemq: %d expired lease(s) in queue %r of %s returned to the queue (message ids %s)",
                  len(returned), queue, self.path, [message.id for message in returned])
        return returned

    def take_head(self, queue: str, count: int) -> list[StoredMessage]:
        return _taken_out(self.run(sql.TAKE_HEAD, (queue, count)).fetchall())

    def take_ready(self, ids: Sequence[int]) -> list[StoredMessage]:
        return _taken_out(self.run(sql.TAKE_READY, (list(ids),)).fetchall())

    def take_expired(self, now: float, limit: int) -> list[StoredMessage]:
        return _taken_out(self.run(sql.TAKE_EXPIRED, (now, limit)).fetchall())

    def take_due(self, now: float, limit: int) -> list[tuple[StoredMessage, float]]:
        rows = self.run(sql.TAKE_DUE, (now, limit)).fetchall()
        rows.sort(key=lambda r: (r[7], r[0]))
        return [(StoredMessage(*r[:7]), r[7]) for r in rows]

    def next_lease_expiry(self, queue: str) -> Optional[float]:
        row = self.run(sql.SELECT_NEXT_EXPIRY, (queue,)).fetchone()
        return row[0] if row else None

    def next_lease_expiries(self, queues: Sequence[str]) -> dict[str, float]:
        return dict(self.run(sql.SELECT_NEXT_EXPIRIES, (list(queues),)).fetchall())

    def next_due(self, queue: str) -> Optional[float]:
        return _earliest(self.one(sql.SELECT_DUE, (queue,)))

    def deadlines(self) -> tuple[Optional[float], Optional[float], Optional[float]]:
        row = self.one(sql.SELECT_DEADLINES)
        return row[0], row[1], row[2]

    # --- consumers and connections
    def consumer_count(self, queue: str) -> int:
        return int(self.one(sql.SELECT_CONSUMER_COUNT, (queue,))[0])

    def first_consumer(self, queue: str) -> Optional[Consumer]:
        row = self.run(sql.SELECT_FIRST_CONSUMER, (queue,)).fetchone()
        return (row[0], row[1], row[2]) if row else None

    def has_exclusive_consumer(self, queue: str) -> bool:
        return self.run(sql.SELECT_EXCLUSIVE_CONSUMER, (queue,)).fetchone() is not None

    def add_consumer(self, connection_id: str, channel: int, consumer_tag: str, queue: str, prefetch_count: int,
                     auto_ack: bool, exclusive: bool, now: float, priority: int = 0) -> None:
        self.run(sql.INSERT_CONSUMER, (connection_id, channel, consumer_tag, queue, prefetch_count, auto_ack,
                                       exclusive, now, priority))

    def consumer_ranking(self, queue: str, priority: int) -> tuple[bool, bool]:
        if priority:
            row = self.one(sql.SELECT_CONSUMER_RANKING, (queue, priority))
        else:
            row = self.one(sql.SELECT_DEFAULT_CONSUMER_RANKING, (queue,))
        return bool(row[0]), bool(row[1])

    def set_consumer_room(self, connection_id: str, channel: int, consumer_tag: str, has_room: bool) -> None:
        self.run(sql.SET_CONSUMER_ROOM, (has_room, connection_id, channel, consumer_tag))

    def remove_consumer(self, connection_id: str, channel: int, consumer_tag: str) -> bool:
        return self.run(sql.DELETE_CONSUMER, (connection_id, channel, consumer_tag)).rowcount > 0

    def consumers_of(self, queue: str) -> list[Consumer]:
        return [(r[0], r[1], r[2]) for r in self.run(sql.SELECT_CONSUMERS_OF, (queue,)).fetchall()]

    def all_consumers(self) -> list[Consumer]:
        return [(r[0], r[1], r[2]) for r in self.run(sql.SELECT_ALL_CONSUMERS).fetchall()]

    def remove_connection_consumers(self, connection_id: str) -> list[str]:
        return [r[0] for r in self.run(sql.DELETE_CONNECTION_CONSUMERS, (connection_id,)).fetchall()]

    def connection_ids(self) -> list[str]:
        return [r[0] for r in self.run(sql.SELECT_CONNECTION_IDS).fetchall()]

    def has_connection(self, connection_id: str) -> bool:
        return self.run(sql.SELECT_CONNECTION, (connection_id,)).fetchone() is not None

    def registration(self, connection_id: str) -> Optional[Registration]:
        row = self.run(sql.SELECT_REGISTRATION, (connection_id,)).fetchone()
        return Registration(row[0], row[1], row[2]) if row else None

    def register_connection(self, connection_id: str, pid: int, host: str, now: float) -> None:
        self.run(sql.INSERT_CONNECTION, (connection_id, pid, host, now))

    def unregister_connection(self, connection_id: str) -> None:
        self.run(sql.DELETE_CONNECTION, (connection_id,))


def _earliest(times: Sequence[Optional[float]]) -> Optional[float]:
    return min((t for t in times if t is not None), default=None)


def _in_order(rows: list[Any]) -> list[MessageRow]:
    messages = [MessageRow(*r) for r in rows]
    if len(messages) > 1:
        messages.sort(key=lambda m: (-m.priority, m.id))  # RETURNING gives no order: back to delivery order
    return messages


def _taken_out(rows: list[Any]) -> list[StoredMessage]:
    rows.sort()
    return [StoredMessage(*r) for r in rows]


def _acking(leases: Sequence[Lease]) -> tuple[str, Sequence[Any]]:
    """The statement that acks ``leases``, with its parameters."""
    if len(leases) == 1:
        return sql.ACK_ONE, leases[0]
    return sql.ACK, _lease_arrays(leases)


def _lease_arrays(leases: Sequence[Lease]) -> tuple[list[int], list[int]]:
    return [lease[0] for lease in leases], [lease[1] for lease in leases]


class _Transaction(Transaction):
    """``with store.write() as store:``: the store's lock and one transaction, committed when the block ends and
    rolled back when it raises. A class, not a generator: it runs on every operation."""

    __slots__ = ()
    driver_error = psycopg.Error
    store: PostgresStore

    def __init__(self, store: PostgresStore, begin: Optional[str], writes: bool) -> None:
        self.store = store
        self.begin = begin
        self.writes = writes

    def __enter__(self) -> PostgresStore:
        store = self.store
        store.check_process()  # before the lock, which another thread may have held at fork()
        store.lock.acquire()
        try:
            store._after_commit = []
            store._wakes = {}
            # A statement or a whole transaction an interrupt abandoned (see sqlite_connection's begin): settled
            # and rolled back, so this one begins afresh.
            store._rollback()
            if self.begin is None:  # write(): BEGIN and the shared lock go with the first statement
                store._pending = list(store._begin_write)
            else:
                store._pending = []
                store._control(self.begin)  # BEGIN and the lock in one round trip, before anything is read
            store._in_transaction = True
            if self.writes and store.before_write is not None:
                store.before_write(store)
        except BaseException:
            self._abandon()
            raise
        return store

    def __exit__(self, exc_type: Optional[type], exc: Optional[BaseException], traceback: object) -> None:
        store = self.store
        try:
            if exc is not None:
                self._roll_back(exc)
                return
            try:
                if store._pending == store._begin_write:  # nothing ran: nothing to begin or commit
                    store._pending = []
                elif store._in_transaction:  # (ack_last may have committed it)
                    store.run("COMMIT", prepare=False)  # with the statements run later, in one round trip
                store._in_transaction = False
            except BaseException:
                store._rollback()
                raise
            if self.writes:
                store.commits += 1
            if store._wakes:
                store._notify()
            failure = self._run_after_commit() if store._after_commit else None
            if store._fold_wanted and self.writes:
                try:
                    store._fold()
                except StorageError as error:  # this transaction committed: the fold is for later
                    debug("litemq: folding the counters of %s failed (%s); later", store.path, error)
            if failure is not None:
                raise failure
        finally:
            store.lock.release()


def _after_fork_in_child() -> None:
    global _pid
    _pid = os.getpid()
    for store in list(_stores):
        store._drop_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
