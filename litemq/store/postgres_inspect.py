"""What the ``litemq`` command tells of a PostgreSQL schema beyond the listings, and does to it: whether a connection
lives (its advisory lock, read from pg_locks: nothing is taken), the bloat report of ``db check`` (live and dead
tuples, sizes and last vacuums per table; the oldest transaction holding back vacuum), the schema's size, VACUUM
(ANALYZE), and the migrations of ``db upgrade`` and ``db downgrade``.

A queue is a table of churn: every message is a row inserted and then deleted, and a claim updates it in between,
so each leaves dead row versions that only VACUUM reclaims, and only once no transaction still may see them. One
session left idle in a transaction (or a long report) holds back vacuum for every table of the database: that
session is what ``oldest_transaction`` names.
"""

from __future__ import annotations

import datetime
from typing import Any, Optional

from . import postgres_sql
from .postgres_keys import connection_key, quoted
from .postgres_readonly import ReadOnlyPostgres, _psycopg, failed, unreachable
from .postgres_url import ServerURL

SELECT_HOLDS_LOCK = ("SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_locks WHERE locktype = 'advisory' AND granted "
                     "AND database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database()) "
                     "AND classid = $1::bigint::oid AND objid = $2::bigint::oid AND objsubid = 1)")
SELECT_SCHEMA_BYTES = ("SELECT coalesce(sum(pg_total_relation_size(relid)), 0)::bigint "
                       "FROM pg_catalog.pg_stat_user_tables WHERE schemaname = $1")
SELECT_TABLES = "SELECT tablename FROM pg_catalog.pg_tables WHERE schemaname = $1 ORDER BY tablename"
SELECT_DEAD_TUPLES = ("SELECT coalesce(sum(n_dead_tup), 0)::bigint FROM pg_catalog.pg_stat_user_tables "
                      "WHERE schemaname = $1")


def is_alive(store: ReadOnlyPostgres, connection_id: str) -> bool:
    """Whether the connection's session still holds its proof of life (a session-level advisory lock, shown in
    pg_locks with the key's high half as classid and its low half as objid)."""
    key = connection_key(store.schema, connection_id) & 0xFFFF_FFFF_FFFF_FFFF
    return bool(store.value(SELECT_HOLDS_LOCK, (key >> 32, key & 0xFFFF_FFFF)))


def schema_bytes(store: ReadOnlyPostgres) -> int:
    """Bytes of the schema's tables with their indexes and TOAST."""
    return int(store.value(SELECT_SCHEMA_BYTES, (store.schema,)))


def dead_tuples(store: ReadOnlyPostgres) -> int:
    return int(store.value(SELECT_DEAD_TUPLES, (store.schema,)))


def tables(store: ReadOnlyPostgres) -> list[dict[str, Any]]:
    """Per table of the schema: live and dead tuples, table bytes (with TOAST), index bytes, total bytes, and when
    it was last vacuumed by autovacuum and by hand (ISO 8601 UTC, or None)."""
    return [{"table": name, "live_tuples": live, "dead_tuples": dead, "table_bytes": table, "index_bytes": index,
             "total_bytes": table + index, "last_autovacuum": _iso(autovacuum), "last_vacuum": _iso(vacuum)}
            for name, live, dead, table, index, autovacuum, vacuum
            in store.execute(postgres_sql.REPORT_TABLES, (store.schema,)).fetchall()]


def oldest_transaction(store: ReadOnlyPostgres) -> Optional[dict[str, Any]]:
    """The session (this one aside) whose snapshot is the oldest, which holds back what VACUUM may remove: its
    pid, database, user, application, state, age of its xmin in transactions, seconds its transaction has been
    open, and the start of its query. None when no other session holds a snapshot."""
    row = store.execute(postgres_sql.REPORT_OLDEST_XMIN).fetchone()
    if row is None:
        return None
    names = ("pid", "database", "user", "application", "state", "xmin_age", "open_seconds", "query")
    return dict(zip(names, row))


def table_names(store: ReadOnlyPostgres) -> list[str]:
    return [name for (name,) in store.execute(SELECT_TABLES, (store.schema,)).fetchall()]


def vacuum(server: ServerURL, names: list[str]) -> None:
    """VACUUM (ANALYZE) these tables of the schema, on a session of its own, outside any transaction (and after
    the caller's read has ended: its snapshot would hold back what VACUUM may remove)."""
    driver = _psycopg()
    try:
        db = driver.connect(server.conninfo, autocommit=True)
    except driver.Error as exc:
        raise unreachable(server.where, exc) from None
    try:
        with db:
            for name in names:
                db.execute(f"VACUUM (ANALYZE) {quoted(server.schema)}.{quoted(name)}")
    except driver.Error as exc:
        raise failed(server.where, exc) from exc


def migrate_to(server: ServerURL, revision: str = "head") -> bool:
    """Bring the schema to ``revision`` (``migrate.upgrade_postgresql``); a server that cannot be reached or
    refuses is a StorageError naming it. True when this call changed the schema."""
    from sqlalchemy.exc import DBAPIError

    from . import migrate

    try:
        return migrate.upgrade_postgresql(server.conninfo, server.schema, server.where, revision)
    except DBAPIError as exc:
        raise failed(server.where, exc.orig if exc.orig is not None else exc) from exc


def _iso(epoch: Optional[float]) -> Optional[str]:
    if epoch is None:
        return None
    moment = datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
