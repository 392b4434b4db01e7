"""Creating and upgrading a file's schema (or a PostgreSQL schema) with Alembic. Imported only when a store is not at
the current revision, so opening a current one never pays for importing SQLAlchemy or Alembic."""

from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from ..errors import SchemaError, SchemaTooNew
from . import SCHEMA_REVISION, VERSION_TABLE
from .contract import Registration
from .lockfiles import is_alive

log = logging.getLogger("litemq")
ALEMBIC_LOGGER = logging.getLogger("alembic")
_quiet_lock = threading.Lock()
_quieting = 0  # migrations running with Alembic's logger quieted by us


@contextmanager
def _alembic_quiet() -> Iterator[None]:
    """Alembic logs each step at INFO ("Context impl SQLiteImpl.", "Running upgrade ..."): noise for a user who
    turned on INFO for their own program and opened a file. Quieted to WARNING while litemq migrates, unless the
    user configured the ``alembic`` logger themselves (a level or a handler of its own; Alembic adds a NullHandler
    when imported)."""
    global _quieting
    with _quiet_lock:
        if _quieting == 0 and (ALEMBIC_LOGGER.level != logging.NOTSET or any(
                not isinstance(handler, logging.NullHandler) for handler in ALEMBIC_LOGGER.handlers)):
            yield  # the user's setting: left alone
            return
        _quieting += 1
        ALEMBIC_LOGGER.setLevel(logging.WARNING)
    try:
        yield
    finally:
        with _quiet_lock:
            _quieting -= 1
            if _quieting == 0:
                ALEMBIC_LOGGER.setLevel(logging.NOTSET)


def script_location() -> str:
    """Where the Alembic scripts are: ``litemq/migrations`` in an installed wheel, ``migrations/`` in a checkout."""
    package = Path(__file__).resolve().parent.parent
    for candidate in (package / "migrations", package.parent / "migrations"):
        if (candidate / "env.py").is_file():
            return str(candidate)
    raise SchemaError(f"litemq's migration scripts are missing (looked in {package / 'migrations'})")


def sqlite_engine(path: str, busy_timeout: float = 60.0) -> Any:
    """An SQLAlchemy engine on exactly the file at ``path``."""
    import sqlite3

    from sqlalchemy import create_engine, event
    from sqlalchemy.pool import NullPool

    # A path is a path: an sqlite:/// URL built from it would be parsed (``?`` starts a query, ``%41`` decodes to
    # ``A``) and SQLAlchemy would open another file. The stdlib driver, given no URI flag, opens the name as it is.
    engine = create_engine("sqlite://", poolclass=NullPool,
                           creator=lambda: sqlite3.connect(path, timeout=busy_timeout, check_same_thread=False))

    # Python's sqlite3 legacy mode would autocommit DDL and leave a half-built schema when a revision fails;
    # take transaction control and hold the write lock for the whole upgrade instead.
    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _config(location: Optional[str]) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", location or script_location())
    return config


@_alembic_quiet()
def upgrade(path: str, revision: str = "head", *, busy_timeout: float = 60.0,
            location: Optional[str] = None) -> bool:
    """Bring the file to ``revision`` under the write lock; True when this call changed it.

    Concurrent callers serialize on BEGIN IMMEDIATE: the first migrates, the rest find it done.
    """
    engine = sqlite_engine(path, busy_timeout)
    try:
        with engine.begin() as connection:
            return _migrate(connection, path, revision, location, {},
                            lambda current, target: _check_unused(path, connection, current, target))
    finally:
        engine.dispose()


def postgresql_engine(conninfo: str) -> Any:
    """An SQLAlchemy engine on psycopg connections made from a libpq URL."""
    import psycopg
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    return create_engine("postgresql+psycopg://", poolclass=NullPool, creator=lambda: psycopg.connect(conninfo))


@_alembic_quiet()
def upgrade_postgresql(conninfo: str, schema: str, where: str, revision: str = "head", *,
                       location: Optional[str] = None) -> bool:
    """Bring the PostgreSQL schema to ``revision`` (creating it), in one transaction; True when this call changed it.

    Concurrent callers serialize on an advisory lock for the schema: the first migrates, the rest find it done."""
    from .postgres_keys import lock_key, quoted

    engine = postgresql_engine(conninfo)
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({lock_key(schema, 'migrate')})")
            connection.exec_driver_sql(f"CREATE SCHEMA IF NOT EXISTS {quoted(schema)}")
            connection.exec_driver_sql(f"SET LOCAL search_path TO {quoted(schema)}")
            return _migrate(connection, where, revision, location, {"version_table_schema": schema},
                            lambda current, target: _check_unused_postgresql(where, schema, connection, current,
                                                                             target))
    finally:
        engine.dispose()


def _migrate(connection: Any, where: str, revision: str, location: Optional[str], options: dict[str, str],
             check_unused: Callable[[str, Optional[str]], None]) -> bool:
    from alembic import command
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from sqlalchemy.exc import DBAPIError

    config = _config(location)
    script = ScriptDirectory.from_config(config)
    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE, **options})
    current = context.get_current_revision()
    _check_known(where, current, script)
    target = script.get_current_head() if revision == "head" else revision
    if target not in (None, "base"):
        try:
            script.get_revision(target)
        except Exception as exc:  # alembic raises several resolution errors
            raise SchemaError(f"unknown schema revision {revision!r} for {where}") from exc
    if current == target:
        return False
    if current is not None:
        check_unused(current, target)
    config.attributes["connection"] = connection
    config.attributes["options"] = options
    try:
        if current is None or _is_ancestor(script, current, target):
            command.upgrade(config, revision)
        else:
            command.downgrade(config, revision)
    except DBAPIError as exc:  # the SQL failed: say what, without SQLAlchemy's page of DDL
        raise SchemaError(f"cannot migrate {where} from schema {current or 'base'!r} to "
                          f"{target or 'base'!r}: {exc.orig}; nothing was changed") from exc
    if current is None:
        log.debug("litemq: created the schema of %s at revision %s", where, target)
    else:  # an existing store changed: worth a line at INFO
        log.info("litemq: migrated %s from schema %s to %s", where, current, target)
    return True


@_alembic_quiet()
def current_revision(path: str) -> Optional[str]:
    """The file's schema revision (None: no schema yet)."""
    from alembic.runtime.migration import MigrationContext

    engine = sqlite_engine(path, 60.0)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE}).get_current_revision()
    finally:
        engine.dispose()


def _check_known(path: str, current: Optional[str], script: Any) -> None:
    if current is None:
        return
    try:
        found = script.get_revision(current)
    except Exception:  # alembic raises several resolution errors for an unknown id
        found = None
    if found is None:
        raise SchemaTooNew(
            f"{path} has schema revision {current!r}, which this litemq does not know (it writes "
            f"{SCHEMA_REVISION!r}): the file was written by a newer litemq; upgrade litemq to open it")


def _check_unused(path: str, connection: Any, current: str, target: Optional[str]) -> None:
    """Refuse to migrate a file that live connections have open: they run the statements of the schema they opened
    (in an older litemq, or one told to downgrade), and would misread what a migration moves under them (0006 takes
    large bodies out of their rows). Read under the migration's write lock: no connection registers meanwhile."""
    rows = connection.exec_driver_sql("SELECT id, pid, host, started_at FROM litemq_connections "
                                      "ORDER BY started_at").fetchall()
    live = [f"pid {pid} on {host}" for connection_id, pid, host, started_at in rows
            if is_alive(path, connection_id, Registration(pid, host, started_at))]
    if live:
        raise SchemaError(
            f"cannot migrate {path} from schema {current!r} to {target or 'base'!r} while {len(live)} litemq "
            f"connection(s) have it open ({', '.join(live)}): they run the statements of schema {current!r}; "
            "close them, then open the file again")


def _check_unused_postgresql(where: str, schema: str, connection: Any, current: str, target: Optional[str]) -> None:
    """``_check_unused`` for a PostgreSQL schema: a connection is live while its advisory lock is held."""
    from .postgres_keys import connection_key

    rows = connection.exec_driver_sql("SELECT id, pid, host FROM litemq_connections ORDER BY started_at").fetchall()
    live = []
    for connection_id, pid, host in rows:
        key = connection_key(schema, connection_id)
        if connection.exec_driver_sql(f"SELECT pg_try_advisory_lock_shared({key})").scalar():
            connection.exec_driver_sql(f"SELECT pg_advisory_unlock_shared({key})")
        else:
            live.append(f"pid {pid} on {host}")
    if live:
        raise SchemaError(
            f"cannot migrate {where} from schema {current!r} to {target or 'base'!r} while {len(live)} litemq "
            f"connection(s) have it open ({', '.join(live)}): they run the statements of schema {current!r}; "
            "close them, then open it again")


def _is_ancestor(script: Any, older: str, newer: str) -> bool:
    return any(rev.revision == older for rev in script.iterate_revisions(newer, "base"))

