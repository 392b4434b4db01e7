"""Reading a PostgreSQL schema without writing to it, for the read commands of the ``litemq`` command (queues, peek,
stats, db check, ...): readonly.py's counterpart for a server. The session's transactions are read-only
(``default_transaction_read_only``, and each one begun READ ONLY), its ``search_path`` is litemq's schema and
nothing else, and it never creates or upgrades the schema, registers a connection or takes a lock: a schema that
is missing or holds no litemq tables is refused as a file without them is, one from a newer litemq with
SchemaTooNew.

Each read is one REPEATABLE READ transaction: one snapshot, as a file's read transaction is.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional, Sequence, TypeVar

from ..errors import StorageError
from . import VERSION_TABLE, postgres_sql, readonly
from .contract import QueueRow
from .postgres_keys import quoted
from .postgres_url import ServerURL

if TYPE_CHECKING:
    import psycopg

T = TypeVar("T")
CONNECT_TIMEOUT = 10  # seconds; a URL's own connect_timeout wins
APPLICATION_NAME = "litemq command"  # what pg_stat_activity shows for it, unless the URL says otherwise


class ReadOnlyPostgres:
    """The read verbs the command uses (as the PostgreSQL store's), over a session that cannot write. Only
    ``read()`` transactions are for it."""

    engine = "postgresql"
    rollbacks = 0  # (what the route cache watches: nothing read here is ever rolled back)

    def __init__(self, server: ServerURL) -> None:
        driver = _psycopg()
        self.path = server.where
        self.schema = server.schema
        self.lock = threading.RLock()
        given = driver.conninfo.conninfo_to_dict(server.conninfo)
        defaults = {"connect_timeout": CONNECT_TIMEOUT, "application_name": APPLICATION_NAME}
        try:
            self._db: psycopg.Connection[Any] = driver.connect(
                server.conninfo, autocommit=True, cursor_factory=driver.RawCursor,
                **{key: value for key, value in defaults.items() if key not in given})
        except driver.Error as exc:
            raise unreachable(server.where, exc) from None
        try:
            self._db.execute("SET default_transaction_read_only = on")
            self._db.execute(f"SET search_path TO {quoted(self.schema)}")
        except driver.Error as exc:
            self._db.close()
            raise failed(server.where, exc) from None

    @contextmanager
    def read(self) -> Iterator["ReadOnlyPostgres"]:
        """One snapshot for several reads."""
        with self.lock:
            self._db.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            try:
                yield self
            finally:
                self._db.execute("ROLLBACK")  # it wrote nothing: nothing to commit

    def execute(self, sql: str, params: Sequence[Any] = ()) -> "psycopg.Cursor[Any]":
        """One statement with SQLite's ``?`` placeholders (PostgreSQL's ``$N`` pass as they are), as the PostgreSQL
        store's ``execute`` takes them: inspect.py's statements run on either engine's store."""
        return self._db.execute(postgres_sql.from_sqlite(sql), params or None)

    def value(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """The one value the statement returns."""
        row = self.execute(sql, params).fetchone()
        assert row is not None, sql
        return row[0]

    def close(self) -> None:
        self._db.close()

    def has_schema(self) -> bool:
        return self.execute("SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1",
                            (self.schema,)).fetchone() is not None

    def revision(self) -> Optional[str]:
        """The schema's revision; None when it holds no litemq tables (or does not exist)."""
        if self.execute("SELECT 1 FROM pg_catalog.pg_tables WHERE schemaname = $1 AND tablename = $2",
                        (self.schema, VERSION_TABLE)).fetchone() is None:
            return None
        row = self.execute(postgres_sql.SELECT_REVISION).fetchone()
        return row[0] if row else None

    # --- the store's read verbs the command asks for (peek, route)
    def queue(self, name: str) -> Optional[QueueRow]:
        row = self.execute(postgres_sql.SELECT_QUEUE, (name,)).fetchone()
        return QueueRow(*row[:8]) if row else None

    def routing_version(self) -> int:
        return int(self.value(postgres_sql.SELECT_ROUTING_VERSION))

    def exchange_and_bindings(self, name: str
                              ) -> Optional[tuple[str, bool, Optional[str], list[tuple[str, str, str, str]]]]:
        rows = self.execute(postgres_sql.SELECT_ROUTE, (name,)).fetchall()
        if not rows:
            return None
        return rows[0][0], bool(rows[0][1]), rows[0][2], [(r[3], r[4], r[5], r[6]) for r in rows if r[3] is not None]


def read(server: ServerURL, action: Callable[[ReadOnlyPostgres], T], *, litemq_only: bool = True,
         any_revision: bool = False) -> T:
    """``action(store)`` inside one read-only transaction on the schema: ``readonly.read`` for a server, with the
    same refusals (NoLitemqData for a missing schema or one without litemq's tables, SchemaTooNew, FileBehind)."""
    store = ReadOnlyPostgres(server)
    try:
        return read_on(store, action, litemq_only=litemq_only, any_revision=any_revision)
    finally:
        store.close()


def read_on(store: ReadOnlyPostgres, action: Callable[[ReadOnlyPostgres], T], *, litemq_only: bool = True,
            any_revision: bool = False) -> T:
    """``read`` on a session already open, for a reader that looks often (the management page keeps one)."""
    driver = _psycopg()
    missing = (driver.errors.UndefinedTable, driver.errors.UndefinedColumn, driver.errors.UndefinedFunction)
    try:
        with store.read():
            return readonly.checked(store, action, litemq_only, any_revision, missing)
    except driver.Error as exc:
        raise failed(store.path, exc) from exc


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError as exc:
        raise StorageError("litemq reads PostgreSQL through psycopg, which is not installed: "
                           "pip install 'litemq[postgresql]'") from exc
    return psycopg


def unreachable(where: str, exc: BaseException) -> StorageError:
    return StorageError(f"cannot connect to the PostgreSQL server of {where}: {readonly.first_line(exc)}")


def failed(where: str, exc: BaseException) -> StorageError:
    return StorageError(f"{where}: {readonly.first_line(exc)}")
