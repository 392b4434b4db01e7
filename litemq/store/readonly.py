"""Reading a file without writing to it, for the read commands of the ``litemq`` command (queues, peek, stats,
db check, ...): no schema is created, upgraded or rebuilt, no connection registers, and a file that nobody may
write (or whose directory nobody may write) can be read.

SQLite opens the file through a URI with ``mode=ro``, which takes the usual WAL locks and sees what live
connections commit. A WAL file without its ``-wal`` has no connection open, and ``mode=ro`` would create
``-wal`` and ``-shm`` beside it (and fail where the directory is read-only): it is read ``immutable`` instead,
which takes no locks, and the read is done again if the file changed meanwhile.
"""

from __future__ import annotations

import math
import os
import sqlite3
import urllib.parse
from typing import Any, Callable, Optional, TypeVar

from ..errors import SchemaTooNew, StorageError
from . import SCHEMA_REVISION, VERSION_TABLE
from .sqlite import SQLiteStore
from .sqlite_file import translate_error
from .sqlite_sql import SELECT_REVISION

T = TypeVar("T")
ATTEMPTS = 10  # reads of an immutable snapshot that a writer changed meanwhile, before giving up


class NoLitemqData(StorageError):
    """The SQLite file holds no litemq tables."""


class FileBehind(StorageError):
    """The file is at an older schema, and this read needs the current one."""


class ReadOnlyStore(SQLiteStore):
    """The store's read verbs over a connection that cannot write. Only ``read()`` transactions are for it."""

    def __init__(self, path: str, immutable: bool) -> None:
        # Not SQLiteStore.__init__: that one switches the file to WAL and migrates it, both writes.
        self._start(path)
        self._next_check = math.inf  # one short read: the identity and free-space checks are for writers
        mode = "immutable=1" if immutable else "mode=ro"
        try:
            self._db = sqlite3.connect(uri(path, mode), uri=True, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise translate_error(exc, path) from exc

    def revision(self) -> Optional[str]:
        """The file's schema revision; None when it holds no litemq tables."""
        if self._db.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (VERSION_TABLE,)).fetchone() is None:
            return None
        row = self._db.execute(SELECT_REVISION).fetchone()
        return row[0] if row else None


def uri(path: str, mode: str) -> str:
    """An SQLite URI naming exactly this file: ``?``, ``#``, ``%`` and spaces in the path are quoted."""
    return f"file:{urllib.parse.quote(os.path.abspath(path))}?{mode}"


def _stamp(path: str) -> tuple[int, int, int, bool]:
    info = os.stat(path)
    return info.st_ino, info.st_size, info.st_mtime_ns, os.path.exists(path + "-wal")


def read(path: str, action: Callable[[ReadOnlyStore], T], *, litemq_only: bool = True,
         any_revision: bool = False) -> T:
    """``action(store)`` inside one read transaction of the file, opened read-only.

    Unless ``any_revision``, a file from a newer litemq is refused (SchemaTooNew), and one at an older revision is
    read when the action can read it, else refused with FileBehind (it needs ``litemq db upgrade``). With
    ``litemq_only``, an SQLite file without litemq's tables is refused with NoLitemqData.
    """
    if not os.path.isfile(path):
        raise StorageError(f"cannot open {path}: not a regular file")
    for _ in range(ATTEMPTS):
        before = _stamp(path)
        immutable = not before[3]
        store = ReadOnlyStore(path, immutable)
        try:
            with store.read():
                store.execute("PRAGMA schema_version").fetchone()  # reads the header: SQLITE_NOTADB if not SQLite
                result = checked(store, action, litemq_only, any_revision, (sqlite3.OperationalError,))
        except sqlite3.Error as exc:
            raise translate_error(exc, path) from exc
        finally:
            store.close()
        if not immutable or _stamp(path) == before:
            return result
    raise StorageError(f"{path} kept changing while it was read; try again")


def checked(store: Any, action: Callable[[Any], T], litemq_only: bool, any_revision: bool,
            missing: tuple[type[Exception], ...]) -> T:
    """``action(store)`` after the revision checks of ``read`` (for either engine's read-only store);
    ``missing`` are the engine's errors for a table, column or view that is not there."""
    revision = store.revision()
    if revision is None and litemq_only:
        raise NoLitemqData(f"{store.path} holds no litemq data (nothing was changed)")
    if any_revision or revision == SCHEMA_REVISION or revision is None:
        return action(store)
    if not _known(revision):
        raise SchemaTooNew(f"{store.path} has schema revision {revision!r}, which this litemq does not know (it "
                           f"writes {SCHEMA_REVISION!r}): it was written by a newer litemq; upgrade litemq "
                           "to read it")
    try:
        return action(store)
    except missing as exc:  # a table, column or view this litemq reads is not there yet
        raise FileBehind(f"{store.path} is at schema {revision}, older than this litemq's {SCHEMA_REVISION}, and "
                         f"cannot be read as it is ({first_line(exc)}): `litemq db upgrade` brings it up to date "
                         "(nothing was changed)") from exc


def first_line(exc: BaseException) -> str:
    """An error's message for a one-line report (PostgreSQL's add lines that point into the statement)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _known(revision: str) -> bool:
    from alembic.config import Config  # a file behind is rare: only then is Alembic imported
    from alembic.script import ScriptDirectory

    from .migrate import script_location

    config = Config()
    config.set_main_option("script_location", script_location())
    try:
        return ScriptDirectory.from_config(config).get_revision(revision) is not None
    except Exception:  # alembic raises several resolution errors for an unknown id
        return False


def integrity_check(path: str) -> list[str]:
    """``PRAGMA integrity_check``'s lines (``["ok"]`` for a sound file), read-only. A file too damaged to be read
    at all gives SQLite's error as its one line; a file that is not SQLite raises NotADatabase."""
    def check(store: ReadOnlyStore) -> list[str]:
        return [row[0] for row in store.execute("PRAGMA integrity_check").fetchall()]

    try:
        return read(path, check, litemq_only=False, any_revision=True)
    except StorageError as exc:
        cause = exc.__cause__
        if isinstance(cause, sqlite3.DatabaseError) and \
                getattr(cause, "sqlite_errorname", "").startswith("SQLITE_CORRUPT"):
            return [str(cause)]
        raise
