"""One connection of this process to an SQLite file: its transactions (each under the connection's lock, begun
IMMEDIATE when it writes), the guards every transaction passes (the file still the one opened, disk space left,
not a forked child's copy), and its upkeep (WAL checkpoints). The store's verbs (``sqlite``) build on it."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import weakref
from contextlib import suppress

from ..errors import SchemaError, StorageError, StorageFull
from . import SCHEMA_REVISION
from .sqlite_file import (IDENTITY_CHECK_SECONDS, JOURNAL_SIZE_LIMIT, MIN_SQLITE, SYNCHRONOUS, WAL_CHECKPOINT_PAGES,
                          check_file, check_not_mixed, close_unchanged, configure, create_file, free_space, lost,
                          not_litemq, revision, translate_error)
from .contract import WouldWait
from .sqlite_sql import STATEMENTS
from .transaction import Transaction

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Generic, Optional, Sequence, TypeVar
else:
    from ..runtime_types import Generic, TypeVar

S = TypeVar("S", bound="SQLiteConnection")

_pid = os.getpid()  # this process's, kept current across fork() without a system call per transaction
_stores: "weakref.WeakSet[SQLiteConnection]" = weakref.WeakSet()
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


class SQLiteConnection:
    """One connection to a litemq file. Thread-safe: every transaction holds the connection's lock."""

    before_write: Optional[Callable[[Any], None]] = None

    def __init__(self, path: str, *, synchronous: str = "NORMAL", busy_timeout: float = 60.0,
                 share_with_group: bool = False) -> None:
        if synchronous not in SYNCHRONOUS:
            raise ValueError(f"synchronous must be one of {SYNCHRONOUS}, got {synchronous!r}")
        if sqlite3.sqlite_version_info < MIN_SQLITE:
            raise StorageError(f"litemq needs SQLite 3.35 or newer (for RETURNING); this Python has "
                               f"{sqlite3.sqlite_version}")
        self._start(path)
        self.writes_without_waiting = synchronous != "FULL"  # NORMAL in WAL mode: a commit writes, never syncs
        self._busy_ms = int(busy_timeout * 1000)
        _stores.add(self)
        check_file(self.path)
        create_file(self.path, share_with_group)
        try:
            self._db = sqlite3.connect(self.path, timeout=busy_timeout, isolation_level=None,
                                       check_same_thread=False, cached_statements=len(STATEMENTS) + 32)
        except sqlite3.Error as exc:
            raise translate_error(exc, self.path) from exc
        try:
            configure(self._db, self.path, synchronous, busy_timeout)
            current = revision(self._db, self.path)
            if current != SCHEMA_REVISION:
                from . import migrate  # the slow path: SQLAlchemy and Alembic are imported only here

                if current is None:
                    check_not_mixed(self._db, self.path)
                migrate.upgrade(self.path, busy_timeout=busy_timeout)
                upgraded = revision(self._db, self.path)
                if upgraded != SCHEMA_REVISION:
                    raise SchemaError(f"{self.path} is at schema {upgraded!r} after upgrading, "
                                      f"expected {SCHEMA_REVISION!r}")
            self.check_files()
        except BaseException as exc:
            cause = exc.__cause__ if isinstance(exc, StorageError) else exc
            if isinstance(cause, UnicodeDecodeError) or \
                    getattr(cause, "sqlite_errorname", "").startswith("SQLITE_CORRUPT"):
                exc = not_litemq(self.path, f"SQLite read pages that are not what its schema says: {cause}")
            close_unchanged(self._db, self.path)
            raise exc

    # --- transactions
    def write(self: S) -> "_Transaction[S]":
        """BEGIN IMMEDIATE … COMMIT: the write lock is taken up front, so the busy handler can wait for it."""
        return _Transaction(self, "BEGIN IMMEDIATE")

    def write_exclusive(self: S) -> "_Transaction[S]":
        """The same as ``write()``: on SQLite no writer ever runs beside another."""
        return _Transaction(self, "BEGIN IMMEDIATE")

    def read(self: S) -> "_Transaction[S]":
        """A consistent snapshot for several reads."""
        return _Transaction(self, "BEGIN")

    def without_waiting(self) -> "_WithoutWaiting":
        """``contract.Store.without_waiting``: the lock taken only if free, the first write's BEGIN IMMEDIATE with no
        busy wait, and no automatic checkpoint at its commit (the background upkeep does it: ``maintain``). With
        synchronous=NORMAL in WAL mode a commit writes the WAL and syncs nothing; FULL syncs: then never."""
        return _WithoutWaiting(self)

    def after_commit(self, action: Callable[[], None]) -> None:
        """Run ``action`` once the current transaction has committed (never if it rolls back)."""
        self._after_commit.append(action)

    def _start(self, path: str) -> None:
        """The state every store keeps, before its SQLite connection opens (a read-only store shares it)."""
        self.path = os.path.abspath(path)
        self.commits = 0  # this connection's own commits, which PRAGMA data_version does not report
        self.rollbacks = 0  # what a rolled-back transaction read may be gone: caches of it check this
        self.lock = threading.RLock()
        self.writes_without_waiting = False
        self._no_wait = False  # in ``without_waiting``, until its first write begins
        self._checkpoints_off = False  # wal_autocheckpoint=0 since a write that may not wait
        self._busy_off = False  # busy_timeout=0 since a write that may not wait: restored before any other use
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
        checkpoints the WAL, so the next transactions reuse its space from the start instead of growing it. With the
        busy timeout off (``stop_waiting``), SQLITE_BUSY is a write that may not wait refused: WouldWait."""
        if self._busy_off and getattr(exc, "sqlite_errorname", "").startswith("SQLITE_BUSY"):
            return WouldWait(self.path)
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
            self._lost = lost(self.path, self._identity)
            if self._lost is None:
                self._space_budget = free_space(self.path)[0]
                self._next_check = time.monotonic() + IDENTITY_CHECK_SECONDS
                return
        raise StorageError(f"{self._lost} while this connection to {self.path} was open: what it commits now would "
                           "be lost with the old file, while other processes opening the path start a new one; it "
                           "refuses every operation from now on (close it, restore the file or start afresh)")

    def reserve(self, size: int) -> None:
        """Refuse a publish of ``size`` bytes (StorageFull) while free space is under the floor; inside ``write()``.
        Free space is measured when a transaction begins, at most every IDENTITY_CHECK_SECONDS, and again when
        publishes since have used it up."""
        size *= 2  # the WAL holds each page again until a checkpoint copies it into the file
        self._space_budget -= size
        if self._space_budget < 0:
            page_size, free_pages = (self._db.execute(f"PRAGMA {name}").fetchone()[0]
                                     for name in ("page_size", "freelist_count"))
            self._space_budget, free, floor = free_space(self.path, page_size * free_pages)
            self._space_budget -= size
            if self._space_budget < 0:
                raise StorageFull(
                    f"{self.path}: publish refused: {free:,} bytes free on its disk (with free pages in the file), "
                    f"under litemq's floor of {floor:,} kept so that gets, acks and close go on; free disk space "
                    "and publish again (nothing was stored)")

    def before_lock(self) -> None:
        """What a transaction checks before it takes the lock: the process (another thread may have held the lock
        at fork()) and, now and then, the files."""
        self.check_process()
        if time.monotonic() >= self._next_check:
            self.check_files()

    def alone(self) -> bool:
        """Inside the lock: whether a statement may run as a transaction of its own (autocommit), without the
        ``write()`` block's BEGIN and COMMIT: no transaction is open, nothing must run first (``before_write``), and
        no setting of a write that may not wait is left to restore. Inside ``without_waiting`` it may, with those
        settings made (``stop_waiting``): a statement that would wait then fails with SQLITE_BUSY having written
        nothing, which ``failed`` makes WouldWait."""
        if self._db.in_transaction or self.before_write is not None:
            return False
        if self._no_wait:
            self.stop_waiting()
            return True
        return not (self._busy_off or self._checkpoints_off)

    def stop_waiting(self) -> None:
        """Settings for writes that may not wait (``without_waiting``), left for a run of them: set once."""
        db = self._db
        if not self._checkpoints_off:
            # Their commits leave the checkpoint to the background upkeep (its fsyncs would hold up the loop); off
            # until a write that may wait comes, so that a run of them sets it once.
            self._checkpoints_off = True
            db.execute("PRAGMA wal_autocheckpoint=0")
        if not self._busy_off:
            # Left at 0 for a run of such writes (an event loop's publishes, claims and acks): two statements less
            # each. Whatever else uses the connection next restores it first (``may_wait``).
            self._busy_off = True
            db.execute("PRAGMA busy_timeout=0")

    def check_process(self) -> None:
        if _pid != self.pid:
            raise StorageError(f"this connection to {self.path} was opened in process {self.pid} and cannot be "
                               f"used after fork() in process {os.getpid()}; open a new connection in the child")

    def maintain(self) -> None:
        """A checkpoint: copy the WAL into the database without blocking anyone (PASSIVE), on a connection of its
        own so the main one stays free meanwhile. Called from one background thread only, after this connection
        wrote."""
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

    def may_wait(self) -> None:
        """Give the busy timeout back after writes that might not wait (``without_waiting``), before a statement
        that may: called by every transaction but those writes, and by the reads made outside one."""
        if self._busy_off:
            self._busy_off = False
            self._db.execute(f"PRAGMA busy_timeout={self._busy_ms}")

    def _outside(self) -> None:
        # A read the waiters make outside a transaction: with the busy timeout, unless a write that may not wait
        # is about to begin (``without_waiting``), which may not wait for its reads either. Inside a write
        # transaction nothing waits (its lock is held): an event loop's claim keeps the timeout off.
        if self._busy_off and not self._no_wait and not self._db.in_transaction:
            self.may_wait()

    def data_version(self) -> int:
        """Changes whenever another connection commits to the file (cheap; no lock taken)."""
        with self.lock:
            self._outside()
            return int(self._db.execute("PRAGMA data_version").fetchone()[0])

    def execute(self, sql: str, params: "Sequence[Any] | dict[str, Any]" = ()) -> sqlite3.Cursor:
        """Run one statement in the current transaction (``?`` or ``:name`` parameters); for tools and tests."""
        return self._db.execute(sql, params)


class _WithoutWaiting:
    """``without_waiting``'s block: a class, not a generator, as it runs on every write of an event loop."""

    __slots__ = ("store",)

    def __init__(self, store: SQLiteConnection) -> None:
        self.store = store

    def __enter__(self) -> None:
        store = self.store
        if not store.writes_without_waiting or not store.lock.acquire(blocking=False):
            raise WouldWait(store.path)
        store._no_wait = True

    def __exit__(self, *exc: object) -> None:
        self.store._no_wait = False
        self.store.lock.release()


class _Transaction(Transaction, Generic[S]):
    """``with store.write() as store:`` (or ``read()``): the store's lock and one SQLite transaction, committed
    when the block ends and rolled back when it raises. A class, not a generator: it runs on every operation."""

    __slots__ = ()
    driver_error = sqlite3.Error
    store: S

    def __init__(self, store: S, begin: str) -> None:
        self.store = store
        self.begin = begin
        self.writes = begin == "BEGIN IMMEDIATE"

    def __enter__(self) -> S:
        store = self.store
        store.before_lock()
        store.lock.acquire()
        try:
            if store._db.in_transaction:
                # One a Ctrl-C abandoned: a KeyboardInterrupt raised as __exit__ began (before its try) or in
                # _roll_back left it open, holding the write lock, and BEGIN would fail on it from now on.
                store._rollback()
            store._after_commit = []
            if store._no_wait and self.writes:
                store._no_wait = False  # only the first write may refuse: one after it must not be done twice
                store.stop_waiting()
                store._db.execute(self.begin)  # SQLITE_BUSY: ``failed`` below makes it WouldWait
            else:
                if store._busy_off:
                    store.may_wait()
                if store._checkpoints_off and self.writes:
                    store._checkpoints_off = False
                    store._db.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
                store._db.execute(self.begin)
            if self.writes and store.before_write is not None:
                store.before_write(store)
        except BaseException as exc:
            self._abandon()
            if isinstance(exc, sqlite3.Error):
                raise store.failed(exc) from exc
            raise
        return store

    def __exit__(self, exc_type: Optional[type], exc: Optional[BaseException], traceback: object) -> None:
        store = self.store
        try:
            if exc is not None:
                self._roll_back(exc)
                return
            try:
                store._db.execute("COMMIT")
            except BaseException as error:
                self._roll_back(error)
                raise
            if self.writes:
                store.commits += 1
            if store._after_commit:
                failure = self._run_after_commit()
                if failure is not None:
                    raise failure
        finally:
            store.lock.release()
