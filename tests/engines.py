"""The engines the suite runs litemq on, a broker of its own for each test on each, and plain SQL on it.

Every test that opens the broker through the ``db_path`` fixture (itself, or through ``conn``, ``other``, ``sql``
...) runs once per engine: ``[sqlite]`` on a temp file, ``[postgresql]`` in a schema of its own on the local server
(``services.POSTGRESQL_URL``), dropped after the test. ``LITEMQ_TEST_ENGINES`` chooses (``sqlite``,
``postgresql`` or both, comma-separated; both by default). A test marked ``sqlite_only`` (it is about the file:
paths, permissions, WAL, lock files, SQLite's own statements and costs) runs once, on sqlite, and is deselected
when sqlite is not chosen.
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

# Worker processes import this module for as_url(): it imports neither pytest nor psycopg at the top.

ENGINES = ("sqlite", "postgresql")
POSTGRESQL_SCHEMES = ("postgresql://", "postgresql+psycopg://")
DROP_LOCK_TIMEOUT = "5s"


def selected_engines() -> tuple[str, ...]:
    """The engines ``LITEMQ_TEST_ENGINES`` names, in ENGINES' order; all of them when it is unset or empty."""
    import pytest

    setting = os.environ.get("LITEMQ_TEST_ENGINES", "")
    names = [name.strip().lower() for name in setting.split(",") if name.strip()] or list(ENGINES)
    unknown = sorted(set(names) - set(ENGINES))
    if unknown:
        raise pytest.UsageError(f"LITEMQ_TEST_ENGINES={setting!r} names no engine {', '.join(unknown)}: choose "
                                f"from {', '.join(ENGINES)} (comma-separated)")
    return tuple(engine for engine in ENGINES if engine in names)


_postgresql_problem: list[str] = []  # why the local server cannot be used ("" when it can), found once


def postgresql_problem() -> str:
    """Why the local PostgreSQL cannot be used ("" when it can): looked at once per session, at collection, so
    that a server that is down skips its variants as marked skips (see conftest)."""
    import pytest

    from services import require_postgresql

    if not _postgresql_problem:
        try:
            require_postgresql()  # returns, or skips (fails, when required) with the reason
            _postgresql_problem.append("")
        except (pytest.skip.Exception, pytest.fail.Exception) as unusable:
            _postgresql_problem.append(str(unusable.msg))
    return _postgresql_problem[0]


def services_required() -> bool:
    """LITEMQ_REQUIRE_SERVICES=1 (CI): a service that is missing fails the run instead of skipping."""
    return os.environ.get("LITEMQ_REQUIRE_SERVICES") == "1"


def engine_of(url: str) -> str:
    return "postgresql" if url.startswith(POSTGRESQL_SCHEMES) else "sqlite"


def as_url(address: str) -> str:
    """A broker's address as a URL (for ``URLParameters`` and ``$LITEMQ_URL``): ``sqlite:///`` and a file's path,
    a server's URL as it is."""
    return address if engine_of(address) == "postgresql" else "sqlite:///" + address


@contextmanager
def new_broker(engine: str, directory: Path) -> Iterator[str]:
    """The address of an empty broker for one test: a file in ``directory``, or a new schema on the local server
    (skipped, or failed under LITEMQ_REQUIRE_SERVICES=1, when it is unreachable), dropped at the end."""
    from services import POSTGRESQL_URL, require_postgresql

    if engine == "sqlite":
        yield str(directory / "mq.db")
        return
    require_postgresql()
    schema = f"t_{uuid.uuid4().hex[:16]}"
    try:
        yield f"{POSTGRESQL_URL}?schema={schema}"
    finally:
        drop_schema(schema)


def drop_schema(schema: str) -> None:
    """``DROP SCHEMA ... CASCADE``. A session that still holds a lock in the schema (a child process the test
    killed, whose server backend has not noticed yet, or one still running) is terminated first."""
    import psycopg
    from psycopg import sql

    from services import POSTGRESQL_URL

    drop = sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
    with psycopg.connect(POSTGRESQL_URL, autocommit=True) as db:
        db.execute(f"SET lock_timeout = '{DROP_LOCK_TIMEOUT}'")
        for _ in range(3):
            try:
                db.execute(drop)
                return
            except psycopg.errors.LockNotAvailable:
                db.execute("SELECT pg_terminate_backend(l.pid) FROM pg_locks l "
                           "JOIN pg_class c ON c.oid = l.relation JOIN pg_namespace n ON n.oid = c.relnamespace "
                           "WHERE n.nspname = %s AND l.pid <> pg_backend_pid()", (schema,))
        db.execute(drop)


_template: list[tuple[str, str]] = []  # (its schema, pg_dump's script of it), or nothing when it cannot be made


def make_broker(url: str) -> None:
    """Give a broker that does not exist yet litemq's tables at the current revision, as a first ``litemq.connect``
    makes them, without running the migrations each time: a new file is a copy of one that litemq itself made and
    closed in this session (private to its owner, as litemq makes it); a schema replays pg_dump's script of one that
    litemq made, in a third of the time (left to ``connect`` when pg_dump cannot help). A broker that exists already
    is left as it is. For fixtures that connect at once (``conn``, ``world``), never for tests of how a broker is
    created."""
    if engine_of(url) == "sqlite":
        _copy_template_file(url)
        return
    if not _made_by_litemq():
        return
    import psycopg

    made, script = _template[0]
    server, schema = split_postgresql_url(url)
    with psycopg.connect(server, autocommit=True) as db:
        try:  # one query string: one transaction, all of it or none
            db.execute(script.replace(made, schema))
        except psycopg.errors.DuplicateSchema:
            pass  # made already (another fixture of the test, or litemq itself)


def _made_by_litemq() -> bool:
    if _template == []:
        import shutil
        import subprocess

        import litemq
        from services import POSTGRESQL_URL

        with new_broker("postgresql", Path(".")) as url:
            litemq.connect(url).close()
            made = split_postgresql_url(url)[1]
            pg_dump = shutil.which("pg_dump")
            dumped = pg_dump and subprocess.run(
                [pg_dump, "--no-owner", "--no-privileges", "--inserts", "--schema", made, "--dbname", POSTGRESQL_URL],
                capture_output=True, text=True, timeout=60)
        if dumped and dumped.returncode == 0 and made in dumped.stdout:
            # psql's own commands (\restrict ...) are not SQL; the rest runs as one script.
            script = "\n".join(line for line in dumped.stdout.splitlines() if not line.startswith("\\"))
            _template.append((made, script))
        else:
            _template.append(("", ""))
    return bool(_template[0][0])


_template_file: list[Any] = []  # the folder holding a file that litemq made, and the file's bytes


def _copy_template_file(path: str) -> None:
    if not _template_file:
        import tempfile

        import litemq

        folder = tempfile.TemporaryDirectory(prefix="litemq-template-")  # removed when the session ends
        made = os.path.join(folder.name, "template.db")
        litemq.connect(made, renew_leases=False).close()
        if os.path.exists(made + "-wal"):  # not all in the one file: leave new files to connect
            _template_file.extend((folder, b""))
        else:
            _template_file.extend((folder, Path(made).read_bytes()))
    content = _template_file[1]
    if not content:
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        return
    try:
        os.fchmod(fd, 0o600)  # as litemq makes a file, whatever the umask
        written = 0
        while written < len(content):
            written += os.write(fd, content[written:])
    finally:
        os.close(fd)


def split_postgresql_url(url: str) -> tuple[str, str]:
    """(the URL psycopg takes, the schema): litemq's ``schema`` query parameter is litemq's, not libpq's."""
    parts = urlsplit(url.replace("postgresql+psycopg://", "postgresql://", 1))
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = dict(query).get("schema", "litemq")
    rest = urlencode([(key, value) for key, value in query if key != "schema"])
    return urlunsplit(parts._replace(query=rest)), schema


class BrokerSQL:
    """Plain SQL on a broker, as a person at a prompt runs it: ``sqlite3`` on the file or psycopg in the schema,
    on a connection of its own, each statement committed. ``?`` marks a parameter on both engines.

    ``sql("SELECT count(*) FROM litemq_messages")`` returns the rows as tuples (none for a statement that returns
    none). Values are the engines': a boolean column reads 0/1 on SQLite and False/True on PostgreSQL (equal in
    Python), a sum of integers is a Decimal on PostgreSQL."""

    def __init__(self, url: str, busy_timeout: float = 60.0) -> None:
        self.url = url
        self.engine = engine_of(url)
        self.busy_timeout = busy_timeout  # how long a statement waits for a lock before it fails
        self._db: Any = None

    def __call__(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        db = self._connection()
        if self.engine == "sqlite":
            cursor = db.execute(statement, params)
        else:
            cursor = db.execute(statement.replace("%", "%%").replace("?", "%s"), params) if params \
                else db.execute(statement)
        return [tuple(row) for row in cursor.fetchall()] if cursor.description else []

    def value(self, statement: str, params: Sequence[Any] = ()) -> Any:
        """The one value a statement returns (``SELECT count(*) ...``)."""
        ((value,),) = self(statement, params)
        return value

    def column_names(self, statement: str) -> list[str]:
        cursor = self._connection().execute(statement)
        cursor.fetchall()
        return [column[0] for column in cursor.description]

    @property
    def in_transaction(self) -> bool:
        """Inside a transaction this session began (``sql("BEGIN")``) and has not ended."""
        if self._db is None:
            return False
        if self.engine == "sqlite":
            return bool(self._db.in_transaction)
        from psycopg.pq import TransactionStatus

        return self._db.info.transaction_status != TransactionStatus.IDLE

    def _connection(self) -> Any:
        if self._db is None:
            if self.engine == "sqlite":
                # mode=rw: a look at a broker that does not exist must not create its file.
                self._db = sqlite3.connect(f"file:{quote(self.url)}?mode=rw", uri=True, isolation_level=None,
                                           timeout=self.busy_timeout)
            else:
                import psycopg

                url, schema = split_postgresql_url(self.url)
                options = f"-c search_path={schema} -c lock_timeout={int(self.busy_timeout * 1000)}"
                self._db = psycopg.connect(url, autocommit=True, options=options)
        return self._db

    def close(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            db.close()


def ready_counters(url: str) -> str:
    """SQL for a table of each queue's ready counters as its engine keeps them, ``(name, ready_count,
    ready_bytes)``: litemq_queues' own columns on a file; on PostgreSQL those plus the deltas its counting triggers
    insert, which the store folds into them now and then (migration 0007 says why)."""
    if engine_of(url) == "sqlite":
        return "(SELECT name, ready_count, ready_bytes FROM litemq_queues)"
    return ("(SELECT q.name, (q.ready_count + coalesce(sum(d.ready_count), 0))::bigint AS ready_count, "
            "(q.ready_bytes + coalesce(sum(d.ready_bytes), 0))::bigint AS ready_bytes FROM litemq_queues q "
            "LEFT JOIN litemq_queue_deltas d ON d.queue = q.name GROUP BY q.name, q.ready_count, q.ready_bytes)")


def broker_exists(url: str) -> bool:
    """Whether the broker was created: its file, or its schema on the server."""
    if engine_of(url) == "sqlite":
        return os.path.exists(url)
    import psycopg

    server, schema = split_postgresql_url(url)
    with psycopg.connect(server, autocommit=True) as db:
        return db.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone() is not None


def litemq_objects(url: str, kind: str = "") -> list[str]:
    """The names of litemq's tables (``kind`` "table"), views ("view") or every object named litemq_... (tables,
    views, and on SQLite triggers and indexes too) in the broker, sorted."""
    if engine_of(url) == "sqlite":
        rows = sql_rows(url, "SELECT name FROM sqlite_master WHERE (type = ? OR ? = '') AND name LIKE 'litemq_%'",
                        (kind, kind))
    else:
        types = {"table": ["BASE TABLE"], "view": ["VIEW"], "": ["BASE TABLE", "VIEW"]}[kind]
        rows = [row for row in sql_rows(url, "SELECT table_name, table_type FROM information_schema.tables "
                                             "WHERE table_schema = ? AND table_name LIKE 'litemq_%'",
                                        (split_postgresql_url(url)[1],)) if row[1] in types]
    return sorted(row[0] for row in rows)


def sql_rows(url: str, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """One statement on a connection opened and closed for it (``BrokerSQL`` keeps one for a test)."""
    runner = BrokerSQL(url)
    try:
        return runner(statement, params)
    finally:
        runner.close()
