"""An SQLite file as litemq opens it: checked before SQLite touches it, created private to its owner, switched to
WAL, and recognised (or refused) as litemq's; then watched, while a connection has it open, for being deleted or
replaced under it, and for the disk filling up. SQLite's errors become litemq's. No connection state here: the
store (``sqlite``) holds that."""

from __future__ import annotations

import os
import sqlite3
import time
from contextlib import suppress
from typing import Optional
from urllib.parse import quote

from ..errors import NotADatabase, ReadOnlyDatabase, StorageError, StorageFull
from .sqlite_sql import SELECT_REVISION

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


def translate_error(exc: sqlite3.Error, path: str) -> Exception:
    name = getattr(exc, "sqlite_errorname", "")
    if name == "SQLITE_FULL":
        return StorageFull(f"{path}: the disk or database is full; the transaction was rolled back")
    if name.startswith("SQLITE_READONLY"):
        return ReadOnlyDatabase(f"{path} is read-only (or its directory is): litemq needs to write it")
    if name == "SQLITE_NOTADB":
        return NotADatabase(f"{path} is not an SQLite database")
    return StorageError(f"{path}: {exc}")


def check_file(path: str) -> None:
    """Refuse a path that cannot be a litemq file this process may write (before SQLite opens it)."""
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        raise StorageError(f"cannot open {path}: directory {directory} does not exist")
    if os.path.exists(path):
        if not os.path.isfile(path):
            raise StorageError(f"cannot open {path}: not a regular file")
        # The header is checked through SQLite (configure), never by opening the file here: closing any
        # descriptor of the file would drop this process's SQLite locks on it.
        if not os.access(path, os.W_OK):
            raise ReadOnlyDatabase(f"{path} is read-only: litemq needs to write it")
    if not os.access(directory, os.W_OK | os.X_OK):
        # WAL mode creates -wal and -shm files beside the database.
        raise ReadOnlyDatabase(f"cannot open {path}: directory {directory} is not writable")


def create_file(path: str, share_with_group: bool) -> None:
    """A new file is made here, private to its owner (or shared with its group), before SQLite opens it:
    SQLite would make it 0644 under the usual umask, and gives the -wal and -shm files the mode of the file."""
    mode = 0o660 if share_with_group else 0o600
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    except FileExistsError:
        # Never opened here (that could drop this process's SQLite locks on it): its mode decides the sharing.
        if share_with_group and not os.stat(path).st_mode & 0o020:
            raise StorageError(f"{path} exists and is not group-writable, so it cannot be shared with a "
                               f"group: make it so (chgrp GROUP; chmod g+rw) or open it without "
                               f"share_with_group") from None
        return
    except OSError as exc:
        raise StorageError(f"cannot create {path}: {exc.strerror}") from exc
    try:
        os.fchmod(fd, mode)  # exactly: the umask may have taken group bits
    finally:
        os.close(fd)  # a new, empty file: no SQLite connection of this process can have it open


def configure(db: sqlite3.Connection, path: str, synchronous: str, busy_timeout: float) -> None:
    """WAL journal, the commit's durability, and the WAL's limits; SQLITE_NOTADB for a file that is not SQLite."""
    try:
        db.execute("PRAGMA schema_version").fetchone()  # reads the header: SQLITE_NOTADB if not SQLite
    except sqlite3.Error as exc:
        raise translate_error(exc, path) from exc
    deadline = time.monotonic() + busy_timeout
    while True:
        try:
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            break
        except sqlite3.OperationalError as exc:
            # Switching a new file to WAL can report SQLITE_BUSY at once, without the busy handler, while
            # another process is switching it too.
            if getattr(exc, "sqlite_errorname", "") != "SQLITE_BUSY" or time.monotonic() > deadline:
                raise translate_error(exc, path) from exc
            time.sleep(0.001)
        except sqlite3.Error as exc:
            raise translate_error(exc, path) from exc
    if mode.lower() != "wal":
        raise StorageError(f"{path}: cannot switch to WAL journal mode (got {mode!r})")
    try:
        db.execute(f"PRAGMA synchronous={synchronous}")
        # The commit that takes the WAL past WAL_CHECKPOINT_PAGES copies it into the file (PASSIVE: it never
        # waits for anyone), as SQLite does by default. A checkpoint only in the background thread fell ever
        # further behind a connection writing without pause: the WAL grew without bound (780 MB after 60,000
        # publishes) and every transaction slowed with it. The background thread still checkpoints after a
        # connection's last write, so an idle WAL does not wait for more pages.
        db.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
        db.execute(f"PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT}")
        # Statement journals and other temporary structures in memory, never in temporary files: a claim or a
        # count with a subquery otherwise opened one per statement, and the allocator returned and faulted in its
        # memory again at each (about 60,000 brk calls for 20,000 publishes and get + acks in some processes).
        db.execute("PRAGMA temp_store=MEMORY")
    except sqlite3.Error as exc:
        raise translate_error(exc, path) from exc


def revision(db: sqlite3.Connection, path: str) -> Optional[str]:
    """The file's schema revision; None when it has no litemq tables yet."""
    try:
        row = db.execute(SELECT_REVISION).fetchone()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return None
        raise translate_error(exc, path) from exc
    return row[0] if row else None


def check_not_mixed(db: sqlite3.Connection, path: str) -> None:
    """Refuse a file with litemq's tables but no schema revision: not a file litemq wrote, but pages of two
    databases (migrating would fail on "table already exists", or build over what is left)."""
    tables = db.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN "
                        "('litemq_queues', 'litemq_messages', 'litemq_exchanges')").fetchone()[0]
    if tables == 3:  # (one table of an application's that happens to have a litemq name fails to migrate)
        raise not_litemq(path, "it has litemq's tables but no schema revision")


def not_litemq(path: str, what: str) -> StorageError:
    """The error for a file that is not what litemq wrote, naming a stray -wal beside it."""
    wal = path + "-wal"
    try:
        wal_bytes = os.path.getsize(wal)
    except OSError:
        wal_bytes = 0
    if not wal_bytes:
        return StorageError(f"{path} is not a litemq file as litemq wrote it ({what}); nothing was changed")
    return StorageError(
        f"{path} is not a litemq file as litemq wrote it ({what}): SQLite applied the write-ahead log "
        f"{wal} ({wal_bytes:,} bytes) beside it, which seems to belong to another database (a -wal copied, "
        f"restored or left behind without its own database file). Nothing was changed: move {wal} and "
        f"{path}-shm aside (or put back the database they belong to) and open the file again")


def close_unchanged(db: sqlite3.Connection, path: str) -> None:
    """Close a connection that failed to open, without the checkpoint SQLite runs when the last connection to
    a file closes: it would copy a WAL that may belong to another database into this file for good."""
    # A read-only connection that has read the file keeps this one from being the last (so it does not
    # checkpoint), and never checkpoints itself.
    reader: Optional[sqlite3.Connection] = None
    with suppress(sqlite3.Error):
        reader = sqlite3.connect(f"file:{quote(path)}?mode=ro", uri=True, isolation_level=None)
        reader.execute("PRAGMA user_version").fetchone()
    try:
        db.close()
    finally:
        if reader is not None:
            reader.close()


def free_space(path: str, in_file: int = 0) -> tuple[int, int, int]:
    """(Bytes free past the floor, free bytes, the floor) on the database's file system, with ``in_file``."""
    try:
        fs = os.statvfs(os.path.dirname(path))
    except OSError:
        return 1 << 62, 1 << 62, 0
    floor = min(FREE_SPACE_FLOOR, fs.f_blocks * fs.f_frsize // 8)
    free = fs.f_bavail * fs.f_frsize + in_file
    return free - floor, free, floor


def lost(path: str, identity: dict[str, tuple[int, int]]) -> Optional[str]:
    """What happened to the files a connection has open (deleted, renamed or replaced), or None while the path
    still names them; ``identity`` holds their (device, inode), and records a companion the first time it is
    seen."""
    for suffix in COMPANIONS:
        name = path + suffix
        try:
            found = os.stat(name)
        except FileNotFoundError:
            if suffix in identity:
                return f"{name} was deleted"
            continue
        if identity.setdefault(suffix, (found.st_dev, found.st_ino)) != (found.st_dev, found.st_ino):
            return f"{name} was replaced by another file"
    return None
