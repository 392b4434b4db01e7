"""The SQLite store on the stdlib driver: every statement litemq runs on the hot path, prepared once.

Each public method is one atomic verb of the storage contract and runs inside the transaction the caller holds
(``write()`` or ``read()``). The semantic layer computes every policy value (now, expiry, token, target queues)
and passes it in. The per-queue ready counters are kept by triggers in the file (migration 0007), so every write to
the messages counts, litemq's own and those made by hand with plain SQL.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import weakref
from contextlib import suppress
from typing import Any, Callable, Iterator, NamedTuple, Optional, Sequence
from urllib.parse import quote

from ..errors import (NotADatabase, ReadOnlyDatabase, SchemaError, StorageError, StorageFull)
from ..log import debug
from . import SCHEMA_REVISION, VERSION_TABLE

MIN_SQLITE = (3, 35, 0)  # RETURNING
SYNCHRONOUS = ("NORMAL", "FULL")
JOURNAL_SIZE_LIMIT = 64 * 1024 * 1024  # the WAL is truncated back to this after a checkpoint
WAL_CHECKPOINT_PAGES = 1000  # SQLite's default: a commit past this many WAL pages checkpoints
IDENTITY_CHECK_SECONDS = 0.1
"""How often a transaction checks that the path still names the files this connection has open: a file deleted
or replaced under it would take every later commit with it, while new openers start a second, empty broker."""
COMPANIONS = ("", "-wal", "-shm")  # the database and the files SQLite keeps beside it in WAL mode
FREE_SPACE_FLOOR = 32 * 1024 * 1024
"""Publishes are refused with StorageFull while the file system holding the database has less free than this (or
than an eighth of its size, on a smaller one), counting the free pages inside the file that new messages reuse.
The headroom left lets gets, acks, declares, new connections, lease renewals, close and WAL checkpoints go on."""


class ExchangeRow(NamedTuple):
    type: str
    durable: bool
    auto_delete: bool
    internal: bool
    arguments: Optional[str]


class QueueRow(NamedTuple):
    durable: bool
    exclusive: bool
    auto_delete: bool
    arguments: Optional[str]
    owner_connection: Optional[str]
    ready_count: int
    ready_bytes: int = 0
    created_at: Optional[float] = None  # which queue of that name: one deleted and declared again is another


class MessageRow(NamedTuple):
    id: int
    exchange: str
    routing_key: str
    body: bytes
    properties: Optional[str]
    delivery_count: int
    priority: int = 0
    consumers_below: int = 0
    """In a priority-0 consumer's claim: 1 when the queue has consumers of negative priority."""


class StoredMessage(NamedTuple):
    """A message taken out of its queue other than by an ack: expired, dropped, rejected, or due after a delay."""

    id: int
    queue: str
    exchange: str
    routing_key: str
    body: bytes
    properties: Optional[str]
    delivery_count: int


class ReturnedMessage(NamedTuple):
    """A leased message made ready again."""

    id: int
    queue: str
    delivery_count: int


OUT_OF_ROW_BYTES = 3072
"""A larger body is stored in litemq_bodies under its message's id, and the message row holds NULL: a claim or a
requeue sets or clears the row's lease, and SQLite rewrites a row whole, overflow pages and all, when its size
changes (a 1 MB body: 256 pages at every claim). A body up to this size fits its row's page."""

# --- statements: the one source of SQL for the SQLite hot path (tests prepare each against the migrated schema)
SELECT_REVISION = f"SELECT version_num FROM {VERSION_TABLE}"
SELECT_EXCHANGE = "SELECT type, durable, auto_delete, internal, arguments FROM litemq_exchanges WHERE name = ?"
INSERT_EXCHANGE = ("INSERT INTO litemq_exchanges (name, type, durable, auto_delete, internal, arguments, created_at) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?)")
DELETE_EXCHANGE = "DELETE FROM litemq_exchanges WHERE name = ?"
SELECT_ROUTE = ("SELECT e.type, e.internal, e.arguments, b.destination, b.destination_kind, b.routing_key, b.arguments "
                "FROM litemq_exchanges e LEFT JOIN litemq_bindings b ON b.exchange = e.name "
                "WHERE e.name = ? ORDER BY b.id")
SELECT_ROUTING_VERSION = "SELECT version FROM litemq_routing"
SELECT_HAS_BINDINGS = "SELECT 1 FROM litemq_bindings WHERE exchange = ? LIMIT 1"
SELECT_IS_DESTINATION = "SELECT 1 FROM litemq_bindings WHERE destination_kind = 'exchange' AND destination = ? LIMIT 1"
INSERT_BINDING = ("INSERT OR IGNORE INTO litemq_bindings (exchange, destination, destination_kind, routing_key, "
                  "arguments) VALUES (?, ?, ?, ?, ?)")
DELETE_BINDING = ("DELETE FROM litemq_bindings WHERE exchange = ? AND destination = ? AND destination_kind = ? "
                  "AND routing_key = ? AND arguments = ?")
DELETE_BINDINGS_OF_EXCHANGE = ("DELETE FROM litemq_bindings WHERE exchange = ? "
                               "OR (destination_kind = 'exchange' AND destination = ?) RETURNING exchange")
DELETE_BINDINGS_TO_QUEUE = ("DELETE FROM litemq_bindings WHERE destination_kind = 'queue' AND destination = ? "
                            "RETURNING exchange")
SELECT_QUEUE = ("SELECT durable, exclusive, auto_delete, arguments, owner_connection, ready_count, ready_bytes, "
                "created_at FROM litemq_queues WHERE name = ?")
SELECT_QUEUE_CREATED_AT = "SELECT created_at FROM litemq_queues WHERE name = ?"
INSERT_QUEUE = ("INSERT INTO litemq_queues (name, durable, exclusive, auto_delete, arguments, owner_connection, "
                "ready_count, created_at) VALUES (?, ?, ?, ?, ?, ?, 0, ?)")
DELETE_QUEUE = "DELETE FROM litemq_queues WHERE name = ?"
DELETE_QUEUE_MESSAGES = "DELETE FROM litemq_messages WHERE queue = ?"
DELETE_QUEUE_CONSUMERS = "DELETE FROM litemq_consumers WHERE queue = ?"
PURGE_READY = "DELETE FROM litemq_messages WHERE queue = ? AND lease_token IS NULL AND visible_at IS NULL"
# The ready counters are kept by triggers (migration 0007) on every write to the messages, litemq's or by hand: a
# publish reads what they will be with its messages in (its queue's length limits need that before it stores them),
# with the queue's arguments and its number of consumers.
_COUNTS_WITH = ("ready_count + ?1, ready_bytes + ?2, arguments, "
                "(SELECT count(*) FROM litemq_consumers c WHERE c.queue = litemq_queues.name)")
COUNTS_WITH = f"SELECT {_COUNTS_WITH} FROM litemq_queues WHERE name = ?3"
# A message routed to several queues: one statement reads the counts of up to COPIES queues, one stores its copies
# (NULL fills the places a shorter list leaves; such a row matches no queue and stores nothing). OR FAIL: a
# statement that writes many rows and may abort keeps a statement journal, in memory freed at every statement's
# end (the allocator then returns it to the system and faults it in again) or, past a few pages, in a temporary
# file (copies land on as many index pages as queues). Any error rolls back the whole transaction anyway.
COPIES = 16
COUNTS_WITH_QUEUES = (f"SELECT name, {_COUNTS_WITH} FROM litemq_queues "
                      f"WHERE name IN ({', '.join(f'?{3 + i}' for i in range(COPIES))})")
INSERT_COPIES = ("INSERT OR FAIL INTO litemq_messages (queue, exchange, routing_key, body, properties, published_at) "
                 "SELECT column1, ?1, ?2, ?3, ?4, ?5 FROM (VALUES "
                 + ", ".join(f"(?{6 + i})" for i in range(COPIES)) + ") WHERE column1 IS NOT NULL")
# When the next delayed message falls due, the next ready message expires, the next unused queue expires.
_DELAYED_DUE = "(SELECT min(visible_at) FROM litemq_messages WHERE visible_at IS NOT NULL)"
_MESSAGE_EXPIRY = ("(SELECT min(expires_at) FROM litemq_messages WHERE expires_at IS NOT NULL "
                   "AND lease_token IS NULL)")
_QUEUE_EXPIRY = "(SELECT min(expires_at) FROM litemq_queues WHERE expires_at IS NOT NULL)"
# COUNTS_WITH, with what a publish settles first: delayed messages falling due and unused queues expiring.
COUNTS_WITH_FIRST = f"SELECT {_COUNTS_WITH}, {_DELAYED_DUE}, {_QUEUE_EXPIRY} FROM litemq_queues WHERE name = ?3"
SELECT_ARRIVAL_DEADLINES = f"SELECT {_DELAYED_DUE}, {_QUEUE_EXPIRY}"
# A message's body and its size, from the row or from litemq_bodies.
_OUT_OF_ROW = "(SELECT {} FROM litemq_bodies b WHERE b.id = litemq_messages.id)"
BODY = f"coalesce(body, {_OUT_OF_ROW.format('b.body')})"
BODY_BYTES = f"coalesce(length(body), {_OUT_OF_ROW.format('length(b.body)')})"
INSERT_BODY = "INSERT INTO litemq_bodies (id, body) VALUES (?, ?)"
INSERT_MESSAGE = ("INSERT INTO litemq_messages (queue, exchange, routing_key, body, properties, published_at, "
                  "priority, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
# A batch goes in as a few multi-row INSERTs of 256, 128, ... 1 rows (binding row by row costs twice as much),
# so a batch of any size uses at most nine statements, each prepared once. OR FAIL, as for the copies above.
BATCH_ROWS = tuple(1 << k for k in range(8, -1, -1))
INSERT_MESSAGES = {rows: "INSERT OR FAIL INTO litemq_messages (queue, exchange, routing_key, properties, published_at, "
                         "priority, body) VALUES " + ", ".join(f"(?1, ?2, ?3, ?4, ?5, ?6, ?{7 + row})"
                                                               for row in range(rows))
                   for rows in BATCH_ROWS}
INSERT_DELAYED = ("INSERT INTO litemq_messages (queue, exchange, routing_key, body, properties, published_at, "
                  "visible_at) VALUES (?, ?, ?, ?, ?, ?, ?)")
_RETURNED = "RETURNING id, queue, delivery_count"
_TAKEN = f"RETURNING id, queue, exchange, routing_key, {BODY}, properties, delivery_count"
_READY_IN_ORDER = ("SELECT id FROM litemq_messages WHERE queue = ? AND lease_token IS NULL AND visible_at IS NULL "
                   "ORDER BY priority DESC, id LIMIT ?")
RETURN_EXPIRED = ("UPDATE litemq_messages SET lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL "
                  f"WHERE queue = ? AND lease_token IS NOT NULL AND lease_expires_at <= ? {_RETURNED}")
CLAIM = ("UPDATE litemq_messages SET lease_owner = ?, lease_token = ?, lease_expires_at = ?, "
         f"delivery_count = delivery_count + 1 WHERE id IN ({_READY_IN_ORDER}) "
         f"RETURNING id, exchange, routing_key, {BODY}, properties, delivery_count, priority")
CLAIM_AND_DELETE = (f"DELETE FROM litemq_messages WHERE id IN ({_READY_IN_ORDER}) "
                    f"RETURNING id, exchange, routing_key, {BODY}, properties, delivery_count + 1, priority")


def _as_default_consumer(claim: str, queue: int, limit: int, count: str) -> str:
    """A claim statement as a priority-0 consumer's, the common case: nothing while a consumer of higher priority
    has room, and each row says whether consumers of lower priority are there (then the claimer tells them when it is
    full). Both look only at the index of consumers of other than the default priority, usually empty: a consumer
    pays for priorities with no statement of its own."""
    ready = _READY_IN_ORDER.replace("queue = ?", f"queue = ?{queue}").replace("LIMIT ?", f"LIMIT ?{limit}")
    others = f"SELECT 1 FROM litemq_consumers WHERE queue = ?{queue} AND priority != 0 AND priority"
    ranking = (f"AND NOT EXISTS ({others} > 0 AND has_room) RETURNING id, exchange, routing_key, {BODY}, properties, "
               f"{count}, priority, EXISTS ({others} < 0)")
    return claim.format(ready=ready, ranking=ranking)


CLAIM_AS_DEFAULT_CONSUMER = _as_default_consumer(
    "UPDATE litemq_messages SET lease_owner = ?1, lease_token = ?2, lease_expires_at = ?3, "
    "delivery_count = delivery_count + 1 WHERE id IN ({ready}) {ranking}", 4, 5, "delivery_count")
CLAIM_AND_DELETE_AS_DEFAULT_CONSUMER = _as_default_consumer(
    "DELETE FROM litemq_messages WHERE id IN ({ready}) {ranking}", 1, 2, "delivery_count + 1")
TAKE_HEAD = f"DELETE FROM litemq_messages WHERE id IN ({_READY_IN_ORDER}) {_TAKEN}"
TAKE_EXPIRED = ("DELETE FROM litemq_messages WHERE id IN (SELECT id FROM litemq_messages "
                f"WHERE expires_at <= ? AND lease_token IS NULL ORDER BY expires_at LIMIT ?) {_TAKEN}")
TAKE_DUE = ("DELETE FROM litemq_messages WHERE id IN (SELECT id FROM litemq_messages "
            f"WHERE visible_at <= ? ORDER BY visible_at LIMIT ?) {_TAKEN}, visible_at")
SELECT_DEADLINES = f"SELECT {_DELAYED_DUE}, {_MESSAGE_EXPIRY}, {_QUEUE_EXPIRY}"
SELECT_EXPIRED_QUEUES = "SELECT name FROM litemq_queues WHERE expires_at <= ?"
SET_QUEUE_EXPIRY = "UPDATE litemq_queues SET expires_at = ? WHERE name = ?"
ACK = "DELETE FROM litemq_messages WHERE id = ? AND lease_token = ?"
DROP = f"DELETE FROM litemq_messages WHERE id = ? AND lease_token = ? {_TAKEN}"
TAKE_READY = f"DELETE FROM litemq_messages WHERE id = ? AND lease_token IS NULL {_TAKEN}"
REQUEUE = ("UPDATE litemq_messages SET lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL, "
           f"delivery_count = delivery_count - ? WHERE id = ? AND lease_token = ? {_RETURNED}")
RELEASE_OWNER = ("UPDATE litemq_messages SET lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL "
                 f"WHERE lease_owner = ? AND lease_token IS NOT NULL {_RETURNED}")
RELEASE_CONNECTION = ("UPDATE litemq_messages SET lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL "
                      f"WHERE lease_owner >= ? AND lease_owner < ? AND lease_token IS NOT NULL {_RETURNED}")
RENEW_LEASE = "UPDATE litemq_messages SET lease_expires_at = ? WHERE id = ? AND lease_token = ?"
SELECT_NEXT_EXPIRY = ("SELECT min(lease_expires_at) FROM litemq_messages "
                      "WHERE queue = ? AND lease_token IS NOT NULL")
# The same with the deadlines: what a get must settle first, if it is due.
SELECT_DUE = f"SELECT ({SELECT_NEXT_EXPIRY}), {_DELAYED_DUE}, {_MESSAGE_EXPIRY}, {_QUEUE_EXPIRY}"
SELECT_READY_COUNT = "SELECT ready_count FROM litemq_queues WHERE name = ?"
SELECT_CONSUMERS_OF = "SELECT connection_id, channel, consumer_tag FROM litemq_consumers WHERE queue = ?"
SELECT_ALL_CONSUMERS = "SELECT connection_id, channel, consumer_tag FROM litemq_consumers"
DELETE_CONNECTION_CONSUMERS = "DELETE FROM litemq_consumers WHERE connection_id = ? RETURNING queue"
SELECT_CONNECTION_IDS = "SELECT id FROM litemq_connections"
SELECT_CONNECTION = "SELECT 1 FROM litemq_connections WHERE id = ?"
SELECT_REGISTRATION = "SELECT pid, host, started_at FROM litemq_connections WHERE id = ?"
SELECT_UNACKED_COUNT = "SELECT count(*) FROM litemq_messages WHERE queue = ? AND lease_token IS NOT NULL"
SELECT_CONSUMER_COUNT = "SELECT count(*) FROM litemq_consumers WHERE queue = ?"
INSERT_CONSUMER = ("INSERT INTO litemq_consumers (connection_id, channel, consumer_tag, queue, prefetch_count, "
                   "auto_ack, exclusive, started_at, priority) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
# Whether a consumer of higher priority has room (then this one may not claim), and whether one of lower priority
# is there (then this one tells it when it is full).
SELECT_CONSUMER_RANKING = ("SELECT max(priority > ?2 AND has_room), min(priority) < ?2 FROM litemq_consumers "
                           "WHERE queue = ?1")
# The same for a priority-0 consumer: only consumers of other priorities matter, and their index is small.
SELECT_DEFAULT_CONSUMER_RANKING = ("SELECT max(priority > 0 AND has_room), min(priority) < 0 FROM litemq_consumers "
                                   "WHERE queue = ? AND priority != 0")
SET_CONSUMER_ROOM = ("UPDATE litemq_consumers SET has_room = ? WHERE connection_id = ? AND channel = ? "
                     "AND consumer_tag = ?")
DELETE_CONSUMER = "DELETE FROM litemq_consumers WHERE connection_id = ? AND channel = ? AND consumer_tag = ?"
SELECT_EXCLUSIVE_CONSUMER = "SELECT 1 FROM litemq_consumers WHERE queue = ? AND exclusive LIMIT 1"
SELECT_FIRST_CONSUMER = ("SELECT connection_id, channel, consumer_tag FROM litemq_consumers WHERE queue = ? "
                         "ORDER BY rowid LIMIT 1")
INSERT_CONNECTION = "INSERT INTO litemq_connections (id, pid, host, started_at) VALUES (?, ?, ?, ?)"
DELETE_CONNECTION = "DELETE FROM litemq_connections WHERE id = ?"
SELECT_OWNED_QUEUES = "SELECT name FROM litemq_queues WHERE owner_connection = ?"

STATEMENTS = {name: value for name, value in globals().items() if name.isupper() and isinstance(value, str)
              and value.startswith(("SELECT ", "INSERT ", "UPDATE ", "DELETE "))}
STATEMENTS.update({f"INSERT_MESSAGES[{rows}]": sql for rows, sql in INSERT_MESSAGES.items()})


def _padded(queues: Sequence[str]) -> Iterator[tuple[Optional[str], ...]]:
    """The queues in groups of COPIES, the last filled up with NULL, for COUNTS_WITH_QUEUES and INSERT_COPIES."""
    for start in range(0, len(queues), COPIES):
        names = tuple(queues[start:start + COPIES])
        yield names + (None,) * (COPIES - len(names))


def _earliest(times: Sequence[Optional[float]]) -> Optional[float]:
    return min((t for t in times if t is not None), default=None)


_pid = os.getpid()  # this process's, kept current across fork() without a system call per transaction
_stores: "weakref.WeakSet[SQLiteStore]" = weakref.WeakSet()
_held_at_fork: list[Any] = []
FORK_WAIT_SECONDS = 30.0
"""How long fork() waits for a transaction of another thread to end (one that takes longer is left to run)."""


def _before_fork() -> None:
    # fork() waits for every transaction and checkpoint of this process to end. A child forked inside one
    # inherits SQLite's record that this process holds the WAL's write lock (or its mutex mid-change), and a
    # new connection in the child then waited in BEGIN IMMEDIATE for a lock no thread of its own would free.
    for store in list(_stores):
        for lock in (store.lock, store._checkpoint_lock):
            if lock.acquire(timeout=FORK_WAIT_SECONDS):
                _held_at_fork.append(lock)


def _after_fork() -> None:
    while _held_at_fork:
        _held_at_fork.pop().release()


def _forked() -> None:
    global _pid
    _pid = os.getpid()
    _after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork, after_in_child=_forked)


def translate_error(exc: sqlite3.Error, path: str) -> Exception:
    name = getattr(exc, "sqlite_errorname", "")
    if name == "SQLITE_FULL":
        return StorageFull(f"{path}: the disk or database is full; the transaction was rolled back")
    if name.startswith("SQLITE_READONLY"):
        return ReadOnlyDatabase(f"{path} is read-only (or its directory is): litemq needs to write it")
    if name == "SQLITE_NOTADB":
        return NotADatabase(f"{path} is not an SQLite database")
    return StorageError(f"{path}: {exc}")


class SQLiteStore:
    """One connection to a litemq file. Thread-safe: every transaction holds the store's lock."""

    def __init__(self, path: str, *, synchronous: str = "NORMAL", busy_timeout: float = 60.0,
                 share_with_group: bool = False) -> None:
        if synchronous not in SYNCHRONOUS:
            raise ValueError(f"synchronous must be one of {SYNCHRONOUS}, got {synchronous!r}")
        if sqlite3.sqlite_version_info < MIN_SQLITE:
            raise StorageError(f"litemq needs SQLite 3.35 or newer (for RETURNING); this Python has "
                               f"{sqlite3.sqlite_version}")
        self._start(path)
        _stores.add(self)
        self._check_file()
        self._create_file(share_with_group)
        try:
            self._db = sqlite3.connect(self.path, timeout=busy_timeout, isolation_level=None,
                                       check_same_thread=False, cached_statements=len(STATEMENTS) + 32)
        except sqlite3.Error as exc:
            raise translate_error(exc, self.path) from exc
        try:
            self._configure(synchronous, busy_timeout)
            current = self._revision()
            if current != SCHEMA_REVISION:
                from . import migrate  # the slow path: SQLAlchemy and Alembic are imported only here

                if current is None:
                    self._check_not_mixed()
                migrate.upgrade(self.path, busy_timeout=busy_timeout)
                revision = self._revision()
                if revision != SCHEMA_REVISION:
                    raise SchemaError(f"{self.path} is at schema {revision!r} after upgrading, "
                                      f"expected {SCHEMA_REVISION!r}")
            self.check_files()
        except BaseException as exc:
            cause = exc.__cause__ if isinstance(exc, StorageError) else exc
            if isinstance(cause, UnicodeDecodeError) or \
                    getattr(cause, "sqlite_errorname", "").startswith("SQLITE_CORRUPT"):
                exc = self._not_litemq(f"SQLite read pages that are not what its schema says: {cause}")
            self._close_unchanged()
            raise exc

    def _check_file(self) -> None:
        directory = os.path.dirname(self.path)
        if not os.path.isdir(directory):
            raise StorageError(f"cannot open {self.path}: directory {directory} does not exist")
        if os.path.exists(self.path):
            if not os.path.isfile(self.path):
                raise StorageError(f"cannot open {self.path}: not a regular file")
            # The header is checked through SQLite (_configure), never by opening the file here: closing any
            # descriptor of the file would drop this process's SQLite locks on it.
            if not os.access(self.path, os.W_OK):
                raise ReadOnlyDatabase(f"{self.path} is read-only: litemq needs to write it")
        if not os.access(directory, os.W_OK | os.X_OK):
            # WAL mode creates -wal and -shm files beside the database.
            raise ReadOnlyDatabase(f"cannot open {self.path}: directory {directory} is not writable")

    def _create_file(self, share_with_group: bool) -> None:
        """A new file is made here, private to its owner (or shared with its group), before SQLite opens it:
        SQLite would make it 0644 under the usual umask, and gives the -wal and -shm files the mode of the file."""
        mode = 0o660 if share_with_group else 0o600
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
        except FileExistsError:
            # Never opened here (that could drop this process's SQLite locks on it): its mode decides the sharing.
            if share_with_group and not os.stat(self.path).st_mode & 0o020:
                raise StorageError(f"{self.path} exists and is not group-writable, so it cannot be shared with a "
                                   f"group: make it so (chgrp GROUP; chmod g+rw) or open it without "
                                   f"share_with_group") from None
            return
        except OSError as exc:
            raise StorageError(f"cannot create {self.path}: {exc.strerror}") from exc
        try:
            os.fchmod(fd, mode)  # exactly: the umask may have taken group bits
        finally:
            os.close(fd)  # a new, empty file: no SQLite connection of this process can have it open

    def _configure(self, synchronous: str, busy_timeout: float) -> None:
        try:
            self._db.execute("PRAGMA schema_version").fetchone()  # reads the header: SQLITE_NOTADB if not SQLite
        except sqlite3.Error as exc:
            raise translate_error(exc, self.path) from exc
        deadline = time.monotonic() + busy_timeout
        while True:
            try:
                mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                break
            except sqlite3.OperationalError as exc:
                # Switching a new file to WAL can report SQLITE_BUSY at once, without the busy handler, while
                # another process is switching it too.
                if getattr(exc, "sqlite_errorname", "") != "SQLITE_BUSY" or time.monotonic() > deadline:
                    raise translate_error(exc, self.path) from exc
                time.sleep(0.001)
            except sqlite3.Error as exc:
                raise translate_error(exc, self.path) from exc
        if mode.lower() != "wal":
            raise StorageError(f"{self.path}: cannot switch to WAL journal mode (got {mode!r})")
        try:
            self._db.execute(f"PRAGMA synchronous={synchronous}")
            # The commit that takes the WAL past WAL_CHECKPOINT_PAGES copies it into the file (PASSIVE: it never
            # waits for anyone), as SQLite does by default. A checkpoint only in the background thread fell ever
            # further behind a connection writing without pause: the WAL grew without bound (780 MB after 60,000
            # publishes) and every transaction slowed with it. The background thread still checkpoints after a
            # connection's last write, so an idle WAL does not wait for more pages.
            self._db.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
            self._db.execute(f"PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT}")
        except sqlite3.Error as exc:
            raise translate_error(exc, self.path) from exc

    def _revision(self) -> Optional[str]:
        try:
            row = self._db.execute(SELECT_REVISION).fetchone()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return None
            raise translate_error(exc, self.path) from exc
        return row[0] if row else None

    def _check_not_mixed(self) -> None:
        """Refuse a file with litemq's tables but no schema revision: not a file litemq wrote, but pages of two
        databases (migrating would fail on "table already exists", or build over what is left)."""
        tables = self._db.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN "
                                  "('litemq_queues', 'litemq_messages', 'litemq_exchanges')").fetchone()[0]
        if tables == 3:  # (one table of an application's that happens to have a litemq name fails to migrate)
            raise self._not_litemq("it has litemq's tables but no schema revision")

    def _not_litemq(self, what: str) -> StorageError:
        wal = self.path + "-wal"
        try:
            wal_bytes = os.path.getsize(wal)
        except OSError:
            wal_bytes = 0
        if not wal_bytes:
            return StorageError(f"{self.path} is not a litemq file as litemq wrote it ({what}); nothing was changed")
        return StorageError(
            f"{self.path} is not a litemq file as litemq wrote it ({what}): SQLite applied the write-ahead log "
            f"{wal} ({wal_bytes:,} bytes) beside it, which seems to belong to another database (a -wal copied, "
            f"restored or left behind without its own database file). Nothing was changed: move {wal} and "
            f"{self.path}-shm aside (or put back the database they belong to) and open the file again")

    def _close_unchanged(self) -> None:
        """Close a connection that failed to open, without the checkpoint SQLite runs when the last connection to
        a file closes: it would copy a WAL that may belong to another database into this file for good."""
        # A read-only connection that has read the file keeps this one from being the last (so it does not
        # checkpoint), and never checkpoints itself.
        reader: Optional[sqlite3.Connection] = None
        with suppress(sqlite3.Error):
            reader = sqlite3.connect(f"file:{quote(self.path)}?mode=ro", uri=True, isolation_level=None)
            reader.execute("PRAGMA user_version").fetchone()
        try:
            self._db.close()
        finally:
            if reader is not None:
                reader.close()

    # --- transactions
    def write(self) -> "_Transaction":
        """BEGIN IMMEDIATE … COMMIT: the write lock is taken up front, so the busy handler can wait for it."""
        return _Transaction(self, "BEGIN IMMEDIATE")

    def read(self) -> "_Transaction":
        """A consistent snapshot for several reads."""
        return _Transaction(self, "BEGIN")

    def after_commit(self, action: Callable[[], None]) -> None:
        """Run ``action`` once the current transaction has committed (never if it rolls back)."""
        self._after_commit.append(action)

    def _start(self, path: str) -> None:
        """The state every store keeps, before its SQLite connection opens (a read-only store shares it)."""
        self.path = os.path.abspath(path)
        self.commits = 0  # this connection's own commits, which PRAGMA data_version does not report
        self.rollbacks = 0  # what a rolled-back transaction read may be gone: caches of it check this
        self.lock = threading.RLock()
        self._checkpoint_lock = threading.Lock()
        self._checkpointer: Optional[sqlite3.Connection] = None
        self._closed = False
        self._after_commit: list[Callable[[], None]] = []
        self.pid = os.getpid()
        self._identity: dict[str, tuple[int, int]] = {}  # (device, inode) of the database, its -wal and -shm
        self._next_check = 0.0
        self._lost: Optional[str] = None  # why this connection's files are gone, once found
        self._space_budget = 0  # bytes publishes may still add before free space is measured again

    def failed(self, exc: sqlite3.Error) -> Exception:
        """The litemq error for an SQLite error that ended a transaction (rolled back by now). A full disk first
        checkpoints the WAL, so the next transactions reuse its space from the start instead of growing it."""
        error = translate_error(exc, self.path)
        if isinstance(error, StorageFull):
            with suppress(sqlite3.Error):
                self._db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        return error

    def _rollback(self) -> None:
        if self._db.in_transaction:
            self.rollbacks += 1
            self._db.execute("ROLLBACK")

    def check_files(self) -> None:
        """Raise StorageError once the path no longer names the files this connection has open (deleted, renamed
        or replaced): SQLite would go on committing into the unlinked file, each publish reported as stored, and
        lose it all at close. Records a companion file the first time it is seen; measures free space."""
        if self._lost is None:
            for suffix in COMPANIONS:
                path = self.path + suffix
                try:
                    found = os.stat(path)
                except FileNotFoundError:
                    if suffix in self._identity:
                        self._lost = f"{path} was deleted"
                        break
                    continue
                identity = (found.st_dev, found.st_ino)
                if self._identity.setdefault(suffix, identity) != identity:
                    self._lost = f"{path} was replaced by another file"
                    break
            else:
                self._space_budget = self._free_space()[0]
                self._next_check = time.monotonic() + IDENTITY_CHECK_SECONDS
                return
        raise StorageError(f"{self._lost} while this connection to {self.path} was open: what it commits now would "
                           "be lost with the old file, while other processes opening the path start a new one; it "
                           "refuses every operation from now on (close it, restore the file or start afresh)")

    def _free_space(self, in_file: int = 0) -> tuple[int, int, int]:
        """(Bytes free past the floor, free bytes, the floor) on the database's file system, with ``in_file``."""
        try:
            fs = os.statvfs(os.path.dirname(self.path))
        except OSError:
            return 1 << 62, 1 << 62, 0
        floor = min(FREE_SPACE_FLOOR, fs.f_blocks * fs.f_frsize // 8)
        free = fs.f_bavail * fs.f_frsize + in_file
        return free - floor, free, floor

    def reserve(self, size: int) -> None:
        """Refuse a publish of ``size`` bytes (StorageFull) while free space is under the floor; inside ``write()``.
        Free space is measured when a transaction begins, at most every IDENTITY_CHECK_SECONDS, and again when
        publishes since have used it up."""
        size *= 2  # the WAL holds each page again until a checkpoint copies it into the file
        self._space_budget -= size
        if self._space_budget < 0:
            page_size, free_pages = (self._db.execute(f"PRAGMA {name}").fetchone()[0]
                                     for name in ("page_size", "freelist_count"))
            self._space_budget, free, floor = self._free_space(page_size * free_pages)
            self._space_budget -= size
            if self._space_budget < 0:
                raise StorageFull(
                    f"{self.path}: publish refused: {free:,} bytes free on its disk (with free pages in the file), "
                    f"under litemq's floor of {floor:,} kept so that gets, acks and close go on; free disk space "
                    "and publish again (nothing was stored)")

    def check_process(self) -> None:
        if _pid != self.pid:
            raise StorageError(f"this connection to {self.path} was opened in process {self.pid} and cannot be "
                               f"used after fork() in process {os.getpid()}; open a new connection in the child")

    def checkpoint(self) -> None:
        """Copy the WAL into the database without blocking anyone (PASSIVE), on a connection of its own so the
        main one stays free meanwhile. Called from one background thread only."""
        with self._checkpoint_lock:
            if self._closed or self._lost is not None:
                return
            if self._checkpointer is None:
                self.check_files()  # a file put in place of the old one is not this connection's to open
                self._checkpointer = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
                self._checkpointer.execute(f"PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT}")
            # Busy means another checkpoint is running, which does the same work.
            with suppress(sqlite3.OperationalError):
                self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    def close(self) -> None:
        if os.getpid() != self.pid:
            self._closed = True  # a forked child's copy: its locks may be held by a thread it does not have
            return
        with self.lock, self._checkpoint_lock:
            self._closed = True
            if self._checkpointer is not None:
                self._checkpointer.close()
            self._db.close()

    def data_version(self) -> int:
        """Changes whenever another connection commits to the file (cheap; no lock taken)."""
        with self.lock:
            return int(self._db.execute("PRAGMA data_version").fetchone()[0])

    def execute(self, sql: str, params: "Sequence[Any] | dict[str, Any]" = ()) -> sqlite3.Cursor:
        """Run one statement in the current transaction (``?`` or ``:name`` parameters); for tools and tests."""
        return self._db.execute(sql, params)

    # --- exchanges
    def exchange(self, name: str) -> Optional[ExchangeRow]:
        row = self._db.execute(SELECT_EXCHANGE, (name,)).fetchone()
        return ExchangeRow(row[0], bool(row[1]), bool(row[2]), bool(row[3]), row[4]) if row else None

    def insert_exchange(self, name: str, type: str, durable: bool, auto_delete: bool, internal: bool,
                        arguments: Optional[str], now: float) -> None:
        self._db.execute(INSERT_EXCHANGE, (name, type, durable, auto_delete, internal, arguments, now))

    def delete_exchange(self, name: str) -> list[str]:
        """Delete the exchange and every binding from or to it; return the exchanges that lost a binding."""
        sources = [r[0] for r in self._db.execute(DELETE_BINDINGS_OF_EXCHANGE, (name, name))]
        self._db.execute(DELETE_EXCHANGE, (name,))
        return [s for s in sources if s != name]

    def exchange_in_use(self, name: str) -> bool:
        """Whether the exchange is the source or destination of any binding."""
        return (self._db.execute(SELECT_HAS_BINDINGS, (name,)).fetchone() is not None
                or self._db.execute(SELECT_IS_DESTINATION, (name,)).fetchone() is not None)

    def has_bindings(self, exchange: str) -> bool:
        return self._db.execute(SELECT_HAS_BINDINGS, (exchange,)).fetchone() is not None

    def exchange_and_bindings(self, name: str
                              ) -> Optional[tuple[str, bool, Optional[str], list[tuple[str, str, str, str]]]]:
        """The exchange's type, internal flag, arguments and bindings (destination, kind, routing key, arguments
        JSON), or None."""
        rows = self._db.execute(SELECT_ROUTE, (name,)).fetchall()
        if not rows:
            return None
        return rows[0][0], bool(rows[0][1]), rows[0][2], [(r[3], r[4], r[5], r[6]) for r in rows if r[3] is not None]

    def routing_version(self) -> int:
        """Raised by every change to exchanges and bindings, by any connection (or by hand)."""
        return self._db.execute(SELECT_ROUTING_VERSION).fetchone()[0]

    # --- bindings
    def add_binding(self, exchange: str, destination: str, kind: str, routing_key: str, arguments: str) -> None:
        self._db.execute(INSERT_BINDING, (exchange, destination, kind, routing_key, arguments))

    def remove_binding(self, exchange: str, destination: str, kind: str, routing_key: str, arguments: str) -> bool:
        return self._db.execute(DELETE_BINDING, (exchange, destination, kind, routing_key, arguments)).rowcount > 0

    # --- queues
    def queue(self, name: str) -> Optional[QueueRow]:
        row = self._db.execute(SELECT_QUEUE, (name,)).fetchone()
        return QueueRow(bool(row[0]), bool(row[1]), bool(row[2]), *row[3:]) if row else None

    def queue_created_at(self, name: str) -> Optional[float]:
        """When the queue of that name was declared; None when there is none."""
        row = self._db.execute(SELECT_QUEUE_CREATED_AT, (name,)).fetchone()
        return row[0] if row else None

    def insert_queue(self, name: str, durable: bool, exclusive: bool, auto_delete: bool,
                     arguments: Optional[str], owner_connection: Optional[str], now: float) -> None:
        self._db.execute(INSERT_QUEUE, (name, durable, exclusive, auto_delete, arguments, owner_connection, now))

    def delete_queue(self, name: str) -> list[str]:
        """Delete the queue with its messages, bindings and consumers; return the exchanges that lost a binding."""
        self._db.execute(DELETE_QUEUE, (name,))  # first: the messages' delete trigger then has no counter to keep
        self._db.execute(DELETE_QUEUE_MESSAGES, (name,))
        sources = [r[0] for r in self._db.execute(DELETE_BINDINGS_TO_QUEUE, (name,))]
        self._db.execute(DELETE_QUEUE_CONSUMERS, (name,))
        return sources

    def purge_queue(self, name: str) -> int:
        """Delete the queue's ready messages (not the unacked ones); return how many."""
        return self._db.execute(PURGE_READY, (name,)).rowcount

    def unacked_count(self, queue: str) -> int:
        return int(self._db.execute(SELECT_UNACKED_COUNT, (queue,)).fetchone()[0])

    def owned_queues(self, connection_id: str) -> list[str]:
        return [r[0] for r in self._db.execute(SELECT_OWNED_QUEUES, (connection_id,))]

    # --- messages
    def counts_with(self, queue: str, size: int, count: int = 1) -> Optional[tuple[int, int, Optional[str], int]]:
        """The queue's ready count and bytes as they will be with ``count`` more ready messages of ``size`` bytes
        in all (stored, the triggers count them in), its arguments and its number of consumers; or None when the
        queue does not exist."""
        return self._db.execute(COUNTS_WITH, (count, size, queue)).fetchone()

    def counts_with_queues(self, queues: Sequence[str], size: int, count: int = 1
                           ) -> dict[str, tuple[int, int, Optional[str], int]]:
        """``counts_with`` for each of several queues: what it returns, by name, for those that exist."""
        counted = {}
        for names in _padded(queues):
            for name, *row in self._db.execute(COUNTS_WITH_QUEUES, (count, size, *names)):
                counted[name] = tuple(row)
        return counted

    def insert_message(self, queue: str, exchange: str, routing_key: str, body: bytes, properties: Optional[str],
                       now: float, priority: int = 0, expires_at: Optional[float] = None) -> None:
        """Store a ready message."""
        self._insert(INSERT_MESSAGE, (queue, exchange, routing_key, body, properties, now, priority, expires_at))

    def insert_copies(self, queues: Sequence[str], exchange: str, routing_key: str, body: bytes,
                      properties: Optional[str], now: float) -> None:
        """Store a copy of one ready message in each of these queues."""
        if len(queues) == 1 or len(body) > OUT_OF_ROW_BYTES:
            for queue in queues:
                self.insert_message(queue, exchange, routing_key, body, properties, now)
            return
        for names in _padded(queues):
            self._db.execute(INSERT_COPIES, (exchange, routing_key, body, properties, now, *names))

    def insert_messages(self, queue: str, exchange: str, routing_key: str, bodies: Sequence[bytes],
                        properties: Optional[str], now: float, priority: int = 0) -> None:
        """Store ready messages that differ only in their bodies, in this order."""
        if any(len(body) > OUT_OF_ROW_BYTES for body in bodies):
            for body in bodies:
                self.insert_message(queue, exchange, routing_key, body, properties, now, priority)
            return
        start, left = 0, len(bodies)
        for rows in BATCH_ROWS:
            while left >= rows:
                self._db.execute(INSERT_MESSAGES[rows],
                                 (queue, exchange, routing_key, properties, now, priority, *bodies[start:start + rows]))
                start += rows
                left -= rows

    def insert_delayed(self, queue: str, exchange: str, routing_key: str, bodies: Sequence[bytes],
                       properties: Optional[str], now: float, visible_at: float) -> None:
        """Store messages that join the queue at ``visible_at`` (not counted as ready until then), in this order."""
        for body in bodies:
            self._insert(INSERT_DELAYED, (queue, exchange, routing_key, body, properties, now, visible_at))

    def _insert(self, sql: str, row: tuple[Any, ...]) -> None:
        """Run an INSERT of one message whose fourth value is its body, storing a large body in litemq_bodies."""
        body = row[3]
        if len(body) <= OUT_OF_ROW_BYTES:
            self._db.execute(sql, row)
        else:
            message_id = self._db.execute(sql, (*row[:3], None, *row[4:])).lastrowid
            self._db.execute(INSERT_BODY, (message_id, body))

    def take_head(self, queue: str, count: int) -> list[StoredMessage]:
        """Remove up to ``count`` ready messages from the head of the queue (the next to be delivered)."""
        return self._taken_out(self._db.execute(TAKE_HEAD, (queue, count)).fetchall())

    def take_expired(self, now: float, limit: int) -> list[StoredMessage]:
        """Remove up to ``limit`` ready messages of any queue whose TTL ran out by ``now``, soonest first."""
        return self._taken_out(self._db.execute(TAKE_EXPIRED, (now, limit)).fetchall())

    def take_due(self, now: float, limit: int) -> list[tuple[StoredMessage, float]]:
        """Remove up to ``limit`` delayed messages due by ``now`` with their due times, in the order they fall due
        (to be enqueued)."""
        rows = self._db.execute(TAKE_DUE, (now, limit)).fetchall()
        rows.sort(key=lambda r: (r[7], r[0]))
        return [(StoredMessage(*r[:7]), r[7]) for r in rows]

    def arrival_due(self) -> Optional[float]:
        """When the next delayed message falls due or unused queue expires (what a publish settles first)."""
        return _earliest(self._db.execute(SELECT_ARRIVAL_DEADLINES).fetchone())

    def counts_with_first(self, queue: str, size: int, count: int = 1
                          ) -> tuple[Optional[tuple[int, int, Optional[str], int]], Optional[float]]:
        """``counts_with``, and what a publish must settle first: when the next delayed message falls due or unused
        queue expires (None when nothing waits)."""
        row = self._db.execute(COUNTS_WITH_FIRST, (count, size, queue)).fetchone()
        if row is None:
            return None, self.arrival_due()
        return (row[0], row[1], row[2], row[3]), _earliest(row[4:])

    def drop(self, leases: Sequence[tuple[int, int]]) -> list[StoredMessage]:
        """Delete leased messages by (id, token), returning them (for dead-lettering)."""
        taken = []
        for lease in leases:
            row = self._db.execute(DROP, lease).fetchone()
            if row:
                taken.append(StoredMessage(*row))
        return taken

    def take_ready(self, ids: Sequence[int]) -> list[StoredMessage]:
        """Remove ready messages by id (those no longer ready are left alone)."""
        return self._taken_out([row for message_id in ids
                                for row in self._db.execute(TAKE_READY, (message_id,)).fetchall()])

    def _taken_out(self, rows: list[Any]) -> list[StoredMessage]:
        rows.sort()
        return [StoredMessage(*r) for r in rows]

    def return_expired(self, queue: str, now: float) -> list[ReturnedMessage]:
        """Make messages whose lease expired by ``now`` ready again, in their original place."""
        returned = self._returned(self._db.execute(RETURN_EXPIRED, (queue, now)).fetchall())
        if returned:  # their holders hung, ran past the consumer timeout, or died unseen
            debug("litemq: %d expired lease(s) in queue %r of %s returned to the queue (message ids %s)",
                  len(returned), queue, self.path, [message.id for message in returned])
        return returned

    def claim(self, queue: str, limit: int, owner: str, token: int, lease_expires_at: float, *,
              default_consumer: bool = False) -> list[MessageRow]:
        """Lease up to ``limit`` ready messages, in delivery order, to ``owner`` with ``token``. For a
        ``default_consumer`` (priority 0): none while a consumer of higher priority has room."""
        statement = CLAIM_AS_DEFAULT_CONSUMER if default_consumer else CLAIM
        rows = self._db.execute(statement, (owner, token, lease_expires_at, queue, limit)).fetchall()
        return self._taken(rows)

    def claim_and_delete(self, queue: str, limit: int, *, default_consumer: bool = False) -> list[MessageRow]:
        """Take up to ``limit`` ready messages for good (auto-ack), in delivery order (``default_consumer``: as
        ``claim``)."""
        statement = CLAIM_AND_DELETE_AS_DEFAULT_CONSUMER if default_consumer else CLAIM_AND_DELETE
        rows = self._db.execute(statement, (queue, limit)).fetchall()
        return self._taken(rows)

    def _taken(self, rows: list[Any]) -> list[MessageRow]:
        messages = [MessageRow(*r) for r in rows]
        if len(messages) > 1:
            messages.sort(key=lambda m: (-m.priority, m.id))  # RETURNING gives no order: back to delivery order
        return messages

    def ack(self, leases: Sequence[tuple[int, int]]) -> int:
        """Delete messages by (id, token); a message whose token changed is left alone. Returns how many."""
        if len(leases) == 1:
            return self._db.execute(ACK, leases[0]).rowcount
        return sum(self._db.execute(ACK, lease).rowcount for lease in leases)

    def requeue(self, leases: Sequence[tuple[int, int]], undo_delivery: bool = False) -> list[ReturnedMessage]:
        """Return leased messages by (id, token) to their place. ``undo_delivery`` also uncounts the delivery (for
        messages claimed but never handed to the application)."""
        rows = []
        for message_id, token in leases:
            row = self._db.execute(REQUEUE, (1 if undo_delivery else 0, message_id, token)).fetchone()
            if row:
                rows.append(row)
        return self._returned(rows)

    def release_owner(self, owner: str) -> list[ReturnedMessage]:
        """Return every message leased to ``owner`` to its queue."""
        return self._returned(self._db.execute(RELEASE_OWNER, (owner,)).fetchall())

    def release_connection(self, connection_id: str) -> list[ReturnedMessage]:
        """Return every message leased to any channel of the connection."""
        # Owners are "<connection id>/<channel>": a connection's leases are one range of owners.
        return self._returned(self._db.execute(RELEASE_CONNECTION, (connection_id + "/", connection_id + "0")).fetchall())

    def _returned(self, rows: list[Any]) -> list[ReturnedMessage]:
        return [ReturnedMessage(*r) for r in rows]

    def renew(self, leases: Sequence[tuple[float, int, int]]) -> int:
        """Set new expiries on leases given as (expires_at, id, token); returns how many were still held."""
        return sum(self._db.execute(RENEW_LEASE, lease).rowcount for lease in leases)

    def next_lease_expiry(self, queue: str) -> Optional[float]:
        """When the first lease in the queue expires, or None when none is held."""
        row = self._db.execute(SELECT_NEXT_EXPIRY, (queue,)).fetchone()
        return row[0] if row else None

    def next_due(self, queue: str) -> Optional[float]:
        """The earliest of: the first lease in the queue expiring, and ``deadlines()`` (None when nothing waits)."""
        return _earliest(self._db.execute(SELECT_DUE, (queue,)).fetchone())

    def deadlines(self) -> tuple[Optional[float], Optional[float], Optional[float]]:
        """When the next delayed message falls due, the next ready message expires, the next unused queue
        expires (None for each where nothing waits)."""
        return self._db.execute(SELECT_DEADLINES).fetchone()

    def expired_queues(self, now: float) -> list[str]:
        return [r[0] for r in self._db.execute(SELECT_EXPIRED_QUEUES, (now,))]

    def set_queue_expiry(self, queue: str, expires_at: Optional[float]) -> None:
        self._db.execute(SET_QUEUE_EXPIRY, (expires_at, queue))

    def ready_count(self, queue: str) -> Optional[int]:
        row = self._db.execute(SELECT_READY_COUNT, (queue,)).fetchone()
        return row[0] if row else None

    # --- consumers and connections
    def consumer_count(self, queue: str) -> int:
        return int(self._db.execute(SELECT_CONSUMER_COUNT, (queue,)).fetchone()[0])

    def first_consumer(self, queue: str) -> Optional[tuple[str, int, str]]:
        """The queue's longest-standing consumer: (connection id, channel, consumer tag), or None."""
        return self._db.execute(SELECT_FIRST_CONSUMER, (queue,)).fetchone()

    def has_exclusive_consumer(self, queue: str) -> bool:
        return self._db.execute(SELECT_EXCLUSIVE_CONSUMER, (queue,)).fetchone() is not None

    def add_consumer(self, connection_id: str, channel: int, consumer_tag: str, queue: str, prefetch_count: int,
                     auto_ack: bool, exclusive: bool, now: float, priority: int = 0) -> None:
        self._db.execute(INSERT_CONSUMER, (connection_id, channel, consumer_tag, queue, prefetch_count, auto_ack,
                                           exclusive, now, priority))

    def consumer_ranking(self, queue: str, priority: int) -> tuple[bool, bool]:
        """For a consumer of the queue with this priority: (whether a consumer of higher priority has room, whether
        a consumer of lower priority is there)."""
        if priority:
            higher_has_room, lower = self._db.execute(SELECT_CONSUMER_RANKING, (queue, priority)).fetchone()
        else:
            higher_has_room, lower = self._db.execute(SELECT_DEFAULT_CONSUMER_RANKING, (queue,)).fetchone()
        return bool(higher_has_room), bool(lower)

    def set_consumer_room(self, connection_id: str, channel: int, consumer_tag: str, has_room: bool) -> None:
        self._db.execute(SET_CONSUMER_ROOM, (has_room, connection_id, channel, consumer_tag))

    def remove_consumer(self, connection_id: str, channel: int, consumer_tag: str) -> bool:
        return self._db.execute(DELETE_CONSUMER, (connection_id, channel, consumer_tag)).rowcount > 0

    def consumers_of(self, queue: str) -> list[tuple[str, int, str]]:
        """(connection id, channel, consumer tag) of each consumer of the queue."""
        return self._db.execute(SELECT_CONSUMERS_OF, (queue,)).fetchall()

    def all_consumers(self) -> list[tuple[str, int, str]]:
        return self._db.execute(SELECT_ALL_CONSUMERS).fetchall()

    def remove_connection_consumers(self, connection_id: str) -> list[str]:
        """Remove every consumer of the connection; return their queues."""
        return [r[0] for r in self._db.execute(DELETE_CONNECTION_CONSUMERS, (connection_id,)).fetchall()]

    def connection_ids(self) -> list[str]:
        return [r[0] for r in self._db.execute(SELECT_CONNECTION_IDS)]

    def has_connection(self, connection_id: str) -> bool:
        return self._db.execute(SELECT_CONNECTION, (connection_id,)).fetchone() is not None

    def registration(self, connection_id: str) -> Optional[tuple[int, str, float]]:
        """The pid, host and start time a connection registered, or None when it is not registered."""
        row = self._db.execute(SELECT_REGISTRATION, (connection_id,)).fetchone()
        return (row[0], row[1], row[2]) if row else None

    def register_connection(self, connection_id: str, pid: int, host: str, now: float) -> None:
        self._db.execute(INSERT_CONNECTION, (connection_id, pid, host, now))

    def unregister_connection(self, connection_id: str) -> None:
        self._db.execute(DELETE_CONNECTION, (connection_id,))


class _Transaction:
    """``with store.write() as store:`` (or ``read()``): the store's lock and one SQLite transaction, committed
    when the block ends and rolled back when it raises. A class, not a generator: it runs on every operation."""

    __slots__ = ("store", "begin", "writes")

    def __init__(self, store: SQLiteStore, begin: str) -> None:
        self.store = store
        self.begin = begin
        self.writes = begin == "BEGIN IMMEDIATE"

    def __enter__(self) -> SQLiteStore:
        store = self.store
        store.check_process()  # before the lock, which another thread may have held at fork()
        if time.monotonic() >= store._next_check:
            store.check_files()
        store.lock.acquire()
        try:
            store._after_commit = []
            store._db.execute(self.begin)
        except BaseException as exc:
            try:
                store._rollback()
            finally:
                store.lock.release()
            if isinstance(exc, sqlite3.Error):
                raise store.failed(exc) from exc
            raise
        return store

    def __exit__(self, exc_type: Optional[type], exc: Optional[BaseException], traceback: object) -> None:
        store = self.store
        try:
            if exc is not None:
                store._rollback()
                if isinstance(exc, sqlite3.Error):
                    raise store.failed(exc) from exc
                return
            try:
                store._db.execute("COMMIT")
            except BaseException as error:
                store._rollback()
                if isinstance(error, sqlite3.Error):
                    raise store.failed(error) from error
                raise
            if self.writes:
                store.commits += 1
            actions, store._after_commit = store._after_commit, []
            failure: Optional[BaseException] = None
            for action in actions:
                try:
                    action()
                except BaseException as error:  # run every action; report the first failure
                    failure = failure or error
            if failure is not None:
                raise failure
        finally:
            store.lock.release()
