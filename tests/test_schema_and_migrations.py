"""The schema and its migrations: one definition (litemq.store.schema), built only by Alembic revisions, matched by
the hot-path SQL, opened without SQLAlchemy when current, migrated once under concurrent openers, refused when newer,
rolled back when a revision fails, reversible beside an application's own tables, and shipped inside the wheel."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import zipfile
from contextlib import closing
from pathlib import Path
from typing import Any, Iterator

import pytest

import litemq
from engines import sql_rows
from litemq.errors import SchemaError, SchemaTooNew, StorageError
from litemq.store import SCHEMA_REVISION, VERSION_TABLE, migrate
from litemq.store import sqlite_sql
from web_helpers import publish_redeliver_and_ack

REPO = Path(__file__).resolve().parent.parent
SUBPROCESS_TIMEOUT = 60
WHEEL_STEP_TIMEOUT = 300


# ---------------------------------------------------------------------------------------------------------------
# Helpers: plain sqlite3 views of a file
# ---------------------------------------------------------------------------------------------------------------

def _db(path: str) -> "closing[sqlite3.Connection]":
    return closing(sqlite3.connect(path))


def _tables(path: str) -> set[str]:
    with _db(path) as db:
        return {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def _litemq_tables(path: str) -> set[str]:
    return {name for name in _tables(path) if name.startswith("litemq_")}


def _version_rows(path: str) -> list[str]:
    with _db(path) as db:
        return [version for (version,) in db.execute(f"SELECT version_num FROM {VERSION_TABLE}")]


def _dump(path: str) -> list[str]:
    """Every table's definition and rows, as SQL text."""
    with _db(path) as db:
        return list(db.iterdump())


def _schema_tables() -> set[str]:
    from litemq.store.schema import metadata

    return {table.name for table in metadata.sorted_tables}


def _script() -> Any:
    from alembic.script import ScriptDirectory

    return ScriptDirectory(migrate.script_location())


def _revisions_oldest_first() -> list[Any]:
    return list(reversed(list(_script().walk_revisions("base", "heads"))))


@pytest.fixture(scope="module")
def migrated_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A file built by the Alembic revisions only (never by litemq.connect); the tests here only read it."""
    path = str(tmp_path_factory.mktemp("migrated") / "schema.db")
    assert migrate.upgrade(path) is True
    return path


# ---------------------------------------------------------------------------------------------------------------
# One schema: the revisions, the SQLAlchemy definition and the hot-path SQL agree
# ---------------------------------------------------------------------------------------------------------------

def test_schema_revision_is_the_single_alembic_head() -> None:
    assert _script().get_heads() == [SCHEMA_REVISION]


def test_migrated_file_has_no_drift_from_the_schema_definition(migrated_path: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    from litemq.store.schema import metadata

    engine = create_engine(f"sqlite:///{migrated_path}", poolclass=NullPool)
    try:
        with engine.connect() as connection:
            # Types and server defaults are compared too (compare_server_default is off by default). Alembic does
            # not compare the WHERE of partial indexes on SQLite: the next test checks those.
            context = MigrationContext.configure(connection, opts={
                "version_table": VERSION_TABLE, "compare_type": True, "compare_server_default": True})
            diffs = compare_metadata(context, metadata)
    finally:
        engine.dispose()
    # Alembic cannot reflect an index with a DESC column on SQLite and reports it removed and added again; the next
    # test compares that index's full SQL instead.
    ordered = "ix_litemq_messages_ready"
    assert [diff for diff in diffs if not (diff[0] in ("add_index", "remove_index") and diff[1].name == ordered)] == []
    assert sorted(diff[0] for diff in diffs) in ([], ["add_index", "remove_index"])


def test_migrated_indexes_match_the_schema_including_partial_index_conditions(migrated_path: str) -> None:
    from sqlalchemy.dialects import sqlite as sqlite_dialect
    from sqlalchemy.schema import CreateIndex

    from litemq.store.schema import metadata

    def normalized(sql: str) -> str:
        return " ".join(sql.split())

    expected = {normalized(str(CreateIndex(index).compile(dialect=sqlite_dialect.dialect())))
                for table in metadata.sorted_tables for index in table.indexes}
    with _db(migrated_path) as db:
        built = {normalized(sql) for (sql,) in db.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL AND tbl_name LIKE 'litemq!_%' "
            "ESCAPE '!'")}
    assert built == expected
    assert ("CREATE INDEX ix_litemq_messages_ready ON litemq_messages (queue, priority DESC, id) "
            "WHERE lease_token IS NULL AND visible_at IS NULL") in built


@pytest.mark.parametrize("name", sorted(sqlite_sql.STATEMENTS))
def test_hot_path_statement_prepares_against_the_migrated_schema(migrated_path: str, name: str) -> None:
    sql = sqlite_sql.STATEMENTS[name]
    with _db(migrated_path) as db:
        # EXPLAIN compiles the statement (every table and column must exist) without running it.
        numbered = [int(n) for n in re.findall(r"\?(\d+)", sql)]
        parameters = max(numbered, default=0) + len(re.findall(r"\?(?!\d)", sql))
        assert db.execute("EXPLAIN " + sql, [None] * parameters).fetchall()


def test_hot_path_statements_include_the_claim_and_settle_verbs() -> None:
    assert {"INSERT_MESSAGE", "CLAIM", "CLAIM_AND_DELETE", "ACK", "REQUEUE", "RETURN_EXPIRED",
            "RELEASE_OWNER"} <= set(sqlite_sql.STATEMENTS)


@pytest.mark.parametrize("name, index", [
    ("CLAIM", "ix_litemq_messages_ready"),
    ("CLAIM_AND_DELETE", "ix_litemq_messages_ready"),
    ("RETURN_EXPIRED", "ix_litemq_messages_lease_expiry"),
])
def test_hot_path_statement_searches_its_partial_index(migrated_path: str, name: str, index: str) -> None:
    sql = sqlite_sql.STATEMENTS[name]
    with _db(migrated_path) as db:
        plan = [row[3] for row in db.execute("EXPLAIN QUERY PLAN " + sql, [None] * sql.count("?"))]
    assert any(re.search(rf"USING (COVERING )?INDEX {index}\b", step) for step in plan), plan
    assert not any(step.startswith("SCAN litemq_messages") for step in plan), plan


@pytest.mark.parametrize("name", ["RELEASE_OWNER", "RELEASE_CONNECTION"])
def test_releasing_an_owners_leases_walks_only_the_leased_messages(migrated_path: str, name: str) -> None:
    sql = sqlite_sql.STATEMENTS[name]
    with _db(migrated_path) as db:
        plan = [row[3] for row in db.execute("EXPLAIN QUERY PLAN " + sql, [None] * sql.count("?"))]
    # Then each returned message's size, looked up by id where its body is out of row.
    assert plan[0] == "SCAN litemq_messages USING INDEX ix_litemq_messages_lease_expiry", plan
    assert not any(step.startswith("SCAN") for step in plan[1:]), plan


def test_messages_table_answers_a_plain_sql_question_about_a_queue(conn: litemq.Connection, db_path: str) -> None:
    conn.declare_queue("hello")
    conn.declare_queue("other")
    conn.publish("", "hello", b"Hello World!")
    conn.publish("", "hello", b"second")
    conn.publish("", "other", b"not hello")
    bodies = [body for (body,) in sql_rows(db_path, "SELECT body FROM litemq_messages WHERE queue = 'hello'")]
    assert sorted(bodies) == [b"Hello World!", b"second"]


# ---------------------------------------------------------------------------------------------------------------
# Opening a file: current files skip SQLAlchemy; fresh files migrate once, even when opened at once
# ---------------------------------------------------------------------------------------------------------------

OPEN_AND_REPORT_IMPORTS = """
import json, sys
import litemq
connection = litemq.connect(sys.argv[1])
connection.declare_queue("q")
connection.publish("", "q", b"x")
delivery = connection.get("q")
delivery.ack()
connection.close()
print(json.dumps({"body": delivery.body.decode(), "sqlalchemy": "sqlalchemy" in sys.modules,
                  "alembic": "alembic" in sys.modules}))
"""


def _open_in_fresh_interpreter(path: str, env: dict[str, str], cwd: Path) -> dict[str, Any]:
    result = subprocess.run([sys.executable, "-c", OPEN_AND_REPORT_IMPORTS, path], env=env, cwd=cwd,
                            capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT)
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return report


def test_opening_a_current_file_imports_neither_sqlalchemy_nor_alembic(
        tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    path = str(tmp_path / "current.db")
    first = _open_in_fresh_interpreter(path, subprocess_env, tmp_path)
    assert first == {"body": "x", "sqlalchemy": True, "alembic": True}  # a fresh file is migrated by Alembic
    assert _version_rows(path) == [SCHEMA_REVISION]

    second = _open_in_fresh_interpreter(path, subprocess_env, tmp_path)
    assert second == {"body": "x", "sqlalchemy": False, "alembic": False}


def _race(processes: Any, target: Any, path: str, count: int, *, pass_index: bool = False) -> list[tuple[str, Any]]:
    """Start ``count`` workers that wait at one barrier, then act on ``path`` together; return their reports."""
    import migration_workers  # noqa: F401  (spawned processes import it by name, from tests/)

    barrier = processes.context.Barrier(count)
    results = processes.context.Queue()
    for index in range(count):
        processes.start(target, path, barrier, results, *([index] if pass_index else []))
    reports = [results.get(timeout=SUBPROCESS_TIMEOUT) for _ in range(count)]
    processes.join_all(timeout=SUBPROCESS_TIMEOUT)
    assert [p.exitcode for p in processes.started] == [0] * count
    return reports


def test_concurrent_upgrades_of_a_fresh_file_migrate_it_exactly_once(tmp_path: Path, processes: Any) -> None:
    from migration_workers import upgrade_at_once

    path = str(tmp_path / "fresh.db")
    reports = _race(processes, upgrade_at_once, path, 6)
    errors = [value for status, value in reports if status != "ok"]
    assert errors == []
    assert sorted(value for _, value in reports) == [False] * 5 + [True]
    assert _version_rows(path) == [SCHEMA_REVISION]
    assert _litemq_tables(path) == _schema_tables() | {VERSION_TABLE}


def test_concurrent_connects_to_a_fresh_file_all_succeed(tmp_path: Path, processes: Any) -> None:
    from migration_workers import connect_at_once

    path = str(tmp_path / "fresh.db")
    reports = _race(processes, connect_at_once, path, 6, pass_index=True)
    assert reports == [("ok", 1)] * 6
    assert _version_rows(path) == [SCHEMA_REVISION]
    with litemq.connect(path) as connection:
        assert connection.declare_queue("race", passive=True).message_count == 6
    with _db(path) as db:
        assert sorted(body for (body,) in db.execute("SELECT body FROM litemq_messages")) == [
            f"from worker {i}".encode() for i in range(6)]


# ---------------------------------------------------------------------------------------------------------------
# Files litemq must not use as they are: too new, a failing revision, too old an SQLite
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.sqlite_only
def test_file_from_a_newer_litemq_is_refused_and_left_unchanged(db_path: str) -> None:
    litemq.connect(db_path).close()
    with _db(db_path) as db:
        db.execute(f"UPDATE {VERSION_TABLE} SET version_num = 'ffffffffffff'")
        db.commit()
    before = _dump(db_path)

    with pytest.raises(SchemaTooNew) as raised:
        litemq.connect(db_path)

    message = str(raised.value)
    assert db_path in message
    assert "ffffffffffff" in message
    assert SCHEMA_REVISION in message
    assert _dump(db_path) == before
    assert _version_rows(db_path) == ["ffffffffffff"]


def _register_live_connection(path: str, connection_id: str) -> Any:
    """What a connection opened by an older litemq leaves in a file: its row, and its lock held (returned)."""
    from litemq.store.lockfiles import FlockLiveness

    held = FlockLiveness(path, connection_id)
    with _db(path) as db:
        db.execute("INSERT INTO litemq_connections (id, pid, host, started_at) VALUES (?, ?, 'old-host', 0)",
                   (connection_id, os.getpid()))
        db.commit()
    return held


def test_file_open_in_an_older_litemq_is_not_migrated_under_it(tmp_path: Path) -> None:
    path = str(tmp_path / "in-use.db")
    migrate.upgrade(path, "0005")
    held = _register_live_connection(path, "older-connection")
    before = _dump(path)

    with pytest.raises(SchemaError) as raised:
        litemq.connect(path)

    message = str(raised.value)
    assert path in message and "'0005'" in message and f"pid {os.getpid()} on old-host" in message
    assert "close them" in message
    assert _dump(path) == before
    held.close()  # that process ends: its lock goes, and its row is a dead connection's
    with litemq.connect(path) as conn:
        assert _version_rows(path) == [SCHEMA_REVISION]
        assert conn.declare_queue("after").message_count == 0


def test_dead_connections_left_in_a_file_do_not_hold_its_migration_back(tmp_path: Path) -> None:
    path = str(tmp_path / "crashed.db")
    migrate.upgrade(path, "0005")
    _register_live_connection(path, "crashed-connection").close()  # killed: row left, lock gone

    assert migrate.upgrade(path) is True
    assert _version_rows(path) == [SCHEMA_REVISION]


@pytest.mark.sqlite_only
def test_file_is_not_downgraded_under_an_open_connection(db_path: str) -> None:
    with litemq.connect(db_path) as conn:
        conn.declare_queue("kept")
        with pytest.raises(SchemaError, match=rf"cannot migrate .* from schema '{SCHEMA_REVISION}' to '0005' "
                                              r"while 1 litemq connection"):
            migrate.upgrade(db_path, "0005")
        assert _version_rows(db_path) == [SCHEMA_REVISION]
        conn.publish("", "kept", b"still works")
    assert migrate.upgrade(db_path, "0005") is True


BROKEN_REVISION = '''"""A revision that fails halfway: it creates a table, then raises.

Revision ID: 9999
Revises: HEAD
"""
import sqlalchemy as sa
from alembic import op

revision = "9999"
down_revision = "HEAD"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("litemq_extra", sa.Column("id", sa.Integer(), primary_key=True))
    raise RuntimeError("revision 9999 failed halfway")


def downgrade() -> None:
    op.drop_table("litemq_extra")
'''


def test_failed_migration_leaves_the_file_at_its_previous_revision(tmp_path: Path) -> None:
    location = tmp_path / "migrations"
    shutil.copytree(migrate.script_location(), location, ignore=shutil.ignore_patterns("__pycache__"))
    (location / "versions" / "9999_broken.py").write_text(BROKEN_REVISION.replace("HEAD", SCHEMA_REVISION))
    path = str(tmp_path / "mq.db")
    assert migrate.upgrade(path, SCHEMA_REVISION, location=str(location)) is True

    with pytest.raises(RuntimeError, match="revision 9999 failed halfway"):
        migrate.upgrade(path, location=str(location))

    assert _version_rows(path) == [SCHEMA_REVISION]
    assert "litemq_extra" not in _tables(path)
    assert _litemq_tables(path) == _schema_tables() | {VERSION_TABLE}
    with litemq.connect(path) as connection:  # the installed revisions still open it
        assert connection.declare_exchange("amq.direct", passive=True) is None


def test_sqlite_older_than_3_35_is_refused_before_anything_is_created(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 34, 0))
    monkeypatch.setattr(sqlite3, "sqlite_version", "3.34.0")
    path = tmp_path / "mq.db"

    with pytest.raises(StorageError, match=r"3\.35") as raised:
        litemq.connect(str(path))

    assert "3.34.0" in str(raised.value)
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------------------------
# Every revision, with data in the file, and litemq beside an application's own tables
# ---------------------------------------------------------------------------------------------------------------

# What a file at each revision may hold, written with that revision's own SQL (as the litemq of that revision
# stored it). The migration tests write it at a revision and read it back through today's litemq. A new revision
# adds its entry here, describing the same data: queue 'seeded' (2 ready messages 'one' and 'two', the first with
# properties) bound to amq.direct with key 'seeded-key'.
SEED_SQL: dict[str, list[str]] = {
    "0001": [
        "INSERT INTO litemq_queues (name, durable, exclusive, auto_delete, arguments, owner_connection, "
        "ready_count, created_at) VALUES ('seeded', 1, 0, 0, NULL, NULL, 2, 1000.0)",
        "INSERT INTO litemq_bindings (exchange, destination, destination_kind, routing_key, arguments) "
        "VALUES ('amq.direct', 'seeded', 'queue', 'seeded-key', '{}')",
        "INSERT INTO litemq_messages (queue, exchange, routing_key, body, properties, published_at) VALUES "
        "('seeded', 'amq.direct', 'seeded-key', X'6f6e65', "
        "'{\"content_type\":\"text/plain\",\"headers\":{\"n\":1}}', 1000.0), "
        "('seeded', 'amq.direct', 'seeded-key', X'74776f', NULL, 1001.0)",
    ],
}
SEED_SQL["0002"] = SEED_SQL["0001"]  # 0002 added only views: the tables, and so the data, are 0001's
SEED_SQL["0003"] = [SEED_SQL["0001"][0].replace("ready_count, created_at", "ready_count, created_at, ready_bytes")
                    .replace("2, 1000.0)", "2, 1000.0, 6)"), *SEED_SQL["0001"][1:]]
SEED_SQL["0004"] = SEED_SQL["0003"]  # 0004 added only the routing version and its triggers
SEED_SQL["0005"] = SEED_SQL["0003"]  # 0005 dropped an index
SEED_SQL["0006"] = SEED_SQL["0003"]  # 0006 let a body be NULL (kept in litemq_bodies); small bodies stay in their rows
# 0007's triggers count each ready message stored: the queue starts at 0 and its messages count themselves in.
SEED_SQL["0007"] = [SEED_SQL["0003"][0].replace("2, 1000.0, 6)", "0, 1000.0, 0)"), *SEED_SQL["0003"][1:]]
SEED_SQL["0008"] = SEED_SQL["0007"]  # 0008 gave consumer rows a priority and has_room (the seed has no consumers)
SEED_SQL["0009"] = SEED_SQL["0008"]  # 0009 changed PostgreSQL's counter triggers only
SEED_SQL["0010"] = SEED_SQL["0009"]  # 0010 added the queues' totals, which the seeded messages count up from 0
SEED_SQL["0011"] = SEED_SQL["0010"]  # 0011 changed PostgreSQL's delta rows only
SEED_SQL["0012"] = SEED_SQL["0011"]  # 0012 changed PostgreSQL's insert trigger only
SEED_SQL["0013"] = SEED_SQL["0012"]  # 0013 changed PostgreSQL's update and delete triggers only


def _seed(path: str, revision: str) -> None:
    assert revision in SEED_SQL, f"add SEED_SQL[{revision!r}]: the data a file at revision {revision} holds"
    with _db(path) as db:
        for statement in SEED_SQL[revision]:
            db.execute(statement)
        db.commit()


def _assert_seeded_data_reads_through_litemq(path: str) -> None:
    with litemq.connect(path) as connection:
        assert connection.declare_queue("seeded", passive=True).message_count == 2
        assert connection.publish("amq.direct", "seeded-key", b"three") == 1  # the seeded binding still routes
        deliveries = []
        while (delivery := connection.get("seeded", auto_ack=True)) is not None:
            deliveries.append(delivery)
    assert [d.body for d in deliveries] == [b"one", b"two", b"three"]
    assert deliveries[0].properties.content_type == "text/plain"
    assert deliveries[0].properties.headers == {"n": 1}
    assert deliveries[0].redelivered is False


def test_revisions_form_one_chain_from_base_to_schema_revision() -> None:
    revisions = _revisions_oldest_first()
    assert revisions[0].down_revision is None
    assert revisions[-1].revision == SCHEMA_REVISION
    for older, newer in zip(revisions, revisions[1:]):
        assert newer.down_revision == older.revision


def test_each_migration_carries_the_data_of_the_revision_before_it(tmp_path: Path) -> None:
    revisions = _revisions_oldest_first()
    # With only the initial revision there is no step to take yet; the tests below cover 0001 from empty.
    for older, newer in zip(revisions, revisions[1:]):
        path = str(tmp_path / f"from-{older.revision}.db")
        migrate.upgrade(path, older.revision)
        _seed(path, older.revision)
        assert migrate.upgrade(path, newer.revision) is True
        assert _version_rows(path) == [newer.revision]
        _assert_seeded_data_reads_through_litemq(path)  # litemq.connect takes it the rest of the way to head


def test_data_written_at_any_revision_reads_through_litemq_at_head(tmp_path: Path) -> None:
    # A loop, not parametrize: collecting this module must not import Alembic into the test process.
    for revision in [revision.revision for revision in _revisions_oldest_first()]:
        path = str(tmp_path / f"at-{revision}.db")
        assert migrate.upgrade(path, revision) is True
        _seed(path, revision)
        _assert_seeded_data_reads_through_litemq(path)
        assert _version_rows(path) == [SCHEMA_REVISION]


def _create_application_tables(path: str) -> None:
    with _db(path) as db:
        db.execute("CREATE TABLE app_users (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
        db.execute("INSERT INTO app_users (id, name) VALUES (1, 'ann')")
        # The application's own Alembic history, which litemq's private version table must never touch.
        db.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)")
        db.execute("INSERT INTO alembic_version (version_num) VALUES ('app0042')")
        db.commit()


def _application_state(path: str) -> list[Any]:
    with _db(path) as db:
        return [db.execute("SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE '%litemq%' "
                           "ORDER BY name").fetchall(),
                db.execute("SELECT * FROM app_users").fetchall(),
                db.execute("SELECT * FROM alembic_version").fetchall()]


@pytest.fixture
def app_path(tmp_path: Path) -> Iterator[str]:
    path = str(tmp_path / "app.db")
    _create_application_tables(path)
    yield path


def test_initial_migration_upgrades_beside_an_application_s_own_tables(app_path: str) -> None:
    before = _application_state(app_path)
    assert before[1:] == [[(1, "ann")], [("app0042",)]]

    assert migrate.upgrade(app_path) is True

    assert _litemq_tables(app_path) == _schema_tables() | {VERSION_TABLE}
    assert _version_rows(app_path) == [SCHEMA_REVISION]
    assert _application_state(app_path) == before


def test_an_application_table_with_a_litemq_name_is_a_schema_error_and_nothing_changes(app_path: str) -> None:
    with _db(app_path) as db:
        db.execute("CREATE TABLE litemq_queues (name TEXT)")  # the application's own, by accident
        db.commit()
    before = _application_state(app_path)
    with pytest.raises(SchemaError, match=r"cannot migrate .* to '\w+': table litemq_queues already exists; "
                                          r"nothing was changed") as raised:
        litemq.connect(app_path)
    assert "CREATE TABLE" not in str(raised.value)  # the cause, not SQLAlchemy's page of DDL
    assert _application_state(app_path) == before
    assert _litemq_tables(app_path) == {"litemq_queues"}


def test_initial_migration_downgrades_to_base_and_upgrades_again_with_data_between(app_path: str) -> None:
    before = _application_state(app_path)
    with litemq.connect(app_path) as connection:  # migrates from empty
        connection.declare_queue("jobs", durable=True)
        connection.publish("", "jobs", b"kept across connections")
    with litemq.connect(app_path) as connection:  # current: no migration, the data is there
        assert connection.get("jobs", auto_ack=True).body == b"kept across connections"
        connection.publish("", "jobs", b"goes with the schema")

    assert migrate.upgrade(app_path, "base") is True

    # Alembic keeps its (now empty) version table on a downgrade to base; every other litemq_ table is gone.
    assert _litemq_tables(app_path) <= {VERSION_TABLE}
    assert _version_rows(app_path) == []
    assert _application_state(app_path) == before

    with litemq.connect(app_path) as connection:  # migrates again
        with pytest.raises(litemq.QueueNotFound):
            connection.declare_queue("jobs", passive=True)
        connection.declare_exchange("amq.topic", passive=True)  # the predeclared exchanges are back
        connection.declare_queue("jobs", durable=True)
        assert connection.publish("", "jobs", b"after the round trip") == 1
        assert connection.get("jobs", auto_ack=True).body == b"after the round trip"
    assert _version_rows(app_path) == [SCHEMA_REVISION]
    assert _litemq_tables(app_path) == _schema_tables() | {VERSION_TABLE}
    assert _application_state(app_path) == before


# ---------------------------------------------------------------------------------------------------------------
# Migrations from an installed wheel (the slowest test: one build, one clean venv)
# ---------------------------------------------------------------------------------------------------------------

NETWORK_ERRORS = ("NewConnectionError", "Failed to establish a new connection", "Temporary failure in name resolution",
                  "Name or service not known", "Network is unreachable", "ConnectTimeout", "ReadTimeout",
                  "ProxyError", "SSLError", "No matching distribution found",
                  "Could not find a version that satisfies the requirement")

RUN_FROM_WHEEL = """
import json, litemq
from litemq.store import migrate
c = litemq.connect('x.db'); c.declare_queue('q'); c.publish('', 'q', b'x'); print(c.get('q').body)
c.close()
print(json.dumps({"file": litemq.__file__, "migrations": migrate.script_location()}))
"""


def _index_unavailable(reason: str) -> None:
    if os.environ.get("LITEMQ_REQUIRE_SERVICES") == "1":
        pytest.fail(f"LITEMQ_REQUIRE_SERVICES=1 but {reason}", pytrace=False)
    pytest.skip(reason)


def _run_step(what: str, command: list[str], **options: Any) -> subprocess.CompletedProcess[str]:
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=WHEEL_STEP_TIMEOUT, **options)
    except subprocess.TimeoutExpired:
        _index_unavailable(f"{what} took more than {WHEEL_STEP_TIMEOUT}s (is the package index reachable?)")
        raise  # not reached
    if result.returncode != 0:
        output = result.stdout + result.stderr
        if any(marker in output for marker in NETWORK_ERRORS):
            _index_unavailable(f"{what} could not get packages from the index: {output.strip().splitlines()[-1]}")
        pytest.fail(f"{what} failed with exit code {result.returncode}:\n{output[-4000:]}", pytrace=False)
    return result


def test_migrations_run_from_an_installed_wheel(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "LITEMQ_URL")}
    # Build from a copy of the checkout, so setuptools' build/ and egg-info never land in the shared work tree.
    source = tmp_path / "source"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        ".git", "__pycache__", "*.egg-info", "build", "dist", ".pytest_cache", ".hypothesis", ".venv", "*.db",
        "*.db-wal", "*.db-shm"))
    dist = tmp_path / "dist"
    _run_step("building the wheel", [sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(source)],
              env=env, cwd=tmp_path)
    (wheel,) = dist.glob("litemq-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    assert "litemq/migrations/env.py" in names
    assert "litemq/migrations/versions/0001_initial.py" in names
    assert not [name for name in names if name.startswith("migrations/")]

    venv = tmp_path / "venv"
    _run_step("creating a venv", [sys.executable, "-m", "venv", str(venv)], env=env, cwd=tmp_path)
    python = venv / "bin" / "python"
    _run_step("installing the wheel", [str(python), "-m", "pip", "install", str(wheel)], env=env, cwd=tmp_path)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = _run_step("using the installed litemq", [str(python), "-c", RUN_FROM_WHEEL], env=env, cwd=elsewhere)
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "b'x'"
    report = json.loads(lines[-1])
    site_packages = str(venv.resolve())
    assert report["file"].startswith(site_packages), report
    assert not report["file"].startswith(str(REPO)), report
    assert Path(report["migrations"]) == Path(report["file"]).parent / "migrations"
    assert _version_rows(str(elsewhere / "x.db")) == [SCHEMA_REVISION]


def test_migration_0002_adds_the_inspection_views_over_the_data_of_0001(tmp_path: Path) -> None:
    path = str(tmp_path / "views.db")
    assert migrate.upgrade(path, "0001") is True
    _seed(path, "0001")
    assert migrate.upgrade(path, "0002") is True
    with _db(path) as db:
        stats = db.execute("SELECT queue, ready, unacked, total, consumers, bytes FROM litemq_queue_stats "
                           "WHERE queue = 'seeded'").fetchall()
        messages = db.execute("SELECT body_text, state, exchange FROM litemq_message_view ORDER BY id").fetchall()
    assert stats == [("seeded", 2, 0, 2, 0, 6)]
    assert messages == [("one", "ready", "amq.direct"), ("two", "ready", "amq.direct")]
    assert _views(path) == {"litemq_queue_stats", "litemq_message_view", "litemq_connection_view"}
    assert migrate.upgrade(path, "0001") is True  # and back down: the views go, the data stays
    assert _views(path) == set()
    with _db(path) as db:
        assert db.execute("SELECT count(*) FROM litemq_messages").fetchone()[0] == 2


def _views(path: str) -> set[str]:
    with _db(path) as db:
        return {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'view'")}


def test_migration_0003_counts_ready_bytes_and_its_downgrade_makes_delayed_messages_ready(tmp_path: Path) -> None:
    path = str(tmp_path / "extras.db")
    migrate.upgrade(path, "0002")
    _seed(path, "0002")
    migrate.upgrade(path, "0003")
    with _db(path) as db:
        assert db.execute("SELECT ready_count, ready_bytes FROM litemq_queues WHERE name = 'seeded'").fetchone() \
            == (2, 6)
        assert db.execute("SELECT body_text, state, priority, expires_at, delayed_until FROM litemq_message_view "
                          "ORDER BY id").fetchall() == [("one", "ready", 0, None, None), ("two", "ready", 0, None, None)]
    with litemq.connect(path) as connection:
        connection.publish("amq.direct", "seeded-key", b"later", delay=3600)
        assert connection.declare_queue("seeded", passive=True).message_count == 2
    assert migrate.upgrade(path, "0002") is True
    assert _version_rows(path) == ["0002"]
    with _db(path) as db:
        assert db.execute("SELECT ready_count FROM litemq_queues WHERE name = 'seeded'").fetchone() == (3,)
        columns = [row[1] for row in db.execute("PRAGMA table_info(litemq_messages)")]
        assert "visible_at" not in columns and "priority" not in columns
    with litemq.connect(path) as connection:  # upgraded again on open; the delayed message is now an ordinary one
        assert [connection.get("seeded", auto_ack=True).body for _ in range(3)] == [b"one", b"two", b"later"]


def test_migration_0006_moves_large_bodies_out_of_their_rows_and_its_downgrade_brings_them_back(
        tmp_path: Path) -> None:
    path = str(tmp_path / "bodies.db")
    large = bytes(range(256)) * 64
    migrate.upgrade(path, "0005")
    _seed(path, "0005")
    with _db(path) as db:  # a large body as litemq 0005 stored it: in its row
        db.execute("INSERT INTO litemq_messages (queue, exchange, routing_key, body, properties, published_at) "
                   "VALUES ('seeded', '', 'seeded', ?, NULL, 1002.0)", (large,))
        db.execute("UPDATE litemq_queues SET ready_count = 3, ready_bytes = ready_bytes + ? WHERE name = 'seeded'",
                   (len(large),))
        db.commit()
    assert migrate.upgrade(path, "0006") is True
    with _db(path) as db:
        assert db.execute("SELECT m.body, b.body FROM litemq_messages m JOIN litemq_bodies b ON b.id = m.id"
                          ).fetchall() == [(None, large)]
        assert db.execute("SELECT body FROM litemq_messages WHERE body IS NOT NULL ORDER BY id").fetchall() == [
            (b"one",), (b"two",)]
        assert db.execute("SELECT body_bytes FROM litemq_message_view ORDER BY id").fetchall() == [
            (3,), (3,), (len(large),)]
        indexes = {name for (name,) in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'litemq_messages' AND sql IS NOT NULL")}
        assert indexes == {"ix_litemq_messages_ready", "ix_litemq_messages_expiry", "ix_litemq_messages_delayed",
                           "ix_litemq_messages_lease_expiry"}
    with litemq.connect(path) as connection:
        connection.publish("", "seeded", large[::-1])  # stored out of row
        assert connection.get("seeded", auto_ack=True).body == b"one"
    with _db(path) as db:
        assert db.execute("SELECT count(*) FROM litemq_bodies").fetchone() == (2,)

    assert migrate.upgrade(path, "0005") is True
    with _db(path) as db:
        assert "litemq_bodies" not in _tables(path)
        assert db.execute("SELECT body FROM litemq_messages ORDER BY id").fetchall() == [
            (b"two",), (large,), (large[::-1],)]
        assert db.execute("SELECT bytes FROM litemq_queue_stats").fetchone() == (3 + 2 * len(large),)
    with litemq.connect(path) as connection:  # and up again on open
        assert [connection.get("seeded", auto_ack=True).body for _ in range(3)] == [b"two", large, large[::-1]]


def _triggers(path: str) -> set[str]:
    with _db(path) as db:
        return {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}


def _counters(path: str) -> list[tuple[str, int, int]]:
    with _db(path) as db:
        return db.execute("SELECT name, ready_count, ready_bytes FROM litemq_queues ORDER BY name").fetchall()


def test_migration_0007_recounts_counters_already_off_and_its_triggers_count_writes_by_hand(tmp_path: Path) -> None:
    path = str(tmp_path / "counts.db")
    large = bytes(range(256)) * 16
    migrate.upgrade(path, "0006")
    _seed(path, "0006")
    with _db(path) as db:  # as litemq 0006 stored them: a large body out of its row, a delayed and a leased message
        db.execute("INSERT INTO litemq_messages (id, queue, exchange, routing_key, body, published_at) "
                   "VALUES (10, 'seeded', '', 'seeded', NULL, 1002.0)")
        db.execute("INSERT INTO litemq_bodies (id, body) VALUES (10, ?)", (large,))
        db.execute("INSERT INTO litemq_messages (queue, exchange, routing_key, body, published_at, visible_at) "
                   "VALUES ('seeded', '', 'seeded', X'6c61746572', 1003.0, 9999999999.0)")
        db.execute("INSERT INTO litemq_messages (queue, exchange, routing_key, body, published_at, lease_owner, "
                   "lease_token, lease_expires_at) VALUES ('seeded', '', 'seeded', X'68656c64', 1004.0, 'x/1', 1, "
                   "9999999999.0)")
        # ... and counters already off: under 0006 nothing counted a ready message deleted or inserted by hand
        db.execute("DELETE FROM litemq_messages WHERE body = X'6f6e65'")  # 'one'
        db.execute("INSERT INTO litemq_messages (queue, exchange, routing_key, body, published_at) "
                   "VALUES ('seeded', '', 'seeded', X'6e6577', 1005.0)")  # 'new'
        db.execute("INSERT INTO litemq_queues (name, durable, exclusive, auto_delete, ready_count, ready_bytes, "
                   "created_at) VALUES ('empty', 1, 0, 0, 4, 40, 1000.0)")
        db.commit()
    assert _counters(path) == [("empty", 4, 40), ("seeded", 2, 6)]  # as seeded
    assert "litemq_messages_delete_body" in _triggers(path)

    assert migrate.upgrade(path, "0007") is True
    assert _counters(path) == [("empty", 0, 0), ("seeded", 3, 6 + len(large))]  # 'two', the large one, 'new'
    assert _triggers(path) >= {"litemq_messages_insert_count", "litemq_messages_delete_count",
                               "litemq_messages_update_count_out", "litemq_messages_update_count_in",
                               "litemq_bodies_insert_count", "litemq_bodies_delete_count",
                               "litemq_bodies_update_count"}
    assert "litemq_messages_delete_body" not in _triggers(path)
    with _db(path) as db:  # a hand delete of the large message counts, and its body goes with it
        db.execute("DELETE FROM litemq_messages WHERE id = 10")
        db.commit()
        assert db.execute("SELECT count(*) FROM litemq_bodies").fetchone() == (0,)
    assert _counters(path) == [("empty", 0, 0), ("seeded", 2, 6)]
    with litemq.connect(path) as connection:
        connection.publish("", "seeded", large)
        assert connection.declare_queue("seeded", passive=True).message_count == 3

    assert migrate.upgrade(path, "0006") is True
    assert _version_rows(path) == ["0006"]
    assert not {name for name in _triggers(path) if name.endswith(("_count", "_count_in", "_count_out"))}
    with _db(path) as db:  # 0006's own trigger is back: a large body goes with its message
        db.execute("DELETE FROM litemq_messages WHERE body IS NULL")
        db.commit()
        assert db.execute("SELECT count(*) FROM litemq_bodies").fetchone() == (0,)
    assert _counters(path) == [("empty", 0, 0), ("seeded", 3, 6 + len(large))]  # 0006 counts no hand write
    with litemq.connect(path) as connection:  # upgraded again on open, and recounted
        assert connection.declare_queue("seeded", passive=True).message_count == 2
        assert [connection.get("seeded", auto_ack=True).body for _ in range(2)] == [b"two", b"new"]


def test_migration_0008_gives_existing_consumers_priority_0_and_room_and_its_downgrade_keeps_them(
        tmp_path: Path) -> None:
    path = str(tmp_path / "consumers.db")
    previous = next(r.down_revision for r in _revisions_oldest_first() if r.revision == "0008")
    migrate.upgrade(path, previous)
    _seed(path, previous)
    consumer = ("c0ffee", 1, "ctag-kept", "seeded", 10, 0, 0, 1000.0)
    with _db(path) as db:  # a consumer row as the revision before stored it
        db.execute("INSERT INTO litemq_consumers (connection_id, channel, consumer_tag, queue, prefetch_count, "
                   "auto_ack, exclusive, started_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", consumer)
        db.commit()
    assert migrate.upgrade(path, "0008") is True
    with _db(path) as db:
        assert db.execute("SELECT consumer_tag, priority, has_room FROM litemq_consumers").fetchall() == [
            ("ctag-kept", 0, 1)]
    assert migrate.upgrade(path, previous) is True
    with _db(path) as db:
        columns = [row[1] for row in db.execute("PRAGMA table_info(litemq_consumers)")]
        assert "priority" not in columns and "has_room" not in columns
        assert db.execute("SELECT * FROM litemq_consumers").fetchall() == [consumer]
    _assert_seeded_data_reads_through_litemq(path)  # upgraded again on open


def test_migration_0010_counts_totals_from_0_and_its_downgrade_keeps_the_counts_right(tmp_path: Path) -> None:
    path = str(tmp_path / "totals.db")
    migrate.upgrade(path, "0009")
    _seed(path, "0009")
    assert migrate.upgrade(path, "0010") is True
    totals = "SELECT ready_count, published_total, delivered_total, redelivered_total, acked_total FROM litemq_queues"
    with _db(path) as db:
        assert db.execute(totals).fetchall() == [(2, 0, 0, 0, 0)]  # the seeded two, from before: not counted
    with litemq.connect(path) as connection:
        publish_redeliver_and_ack(connection, "seeded")
    with _db(path) as db:
        assert db.execute(totals).fetchall() == [(2, 1, 2, 1, 1)]
    assert migrate.upgrade(path, "0009") is True
    with _db(path) as db:
        columns = [row[1] for row in db.execute("PRAGMA table_info(litemq_queues)")]
        assert not [c for c in columns if c.endswith("_total")]
        assert db.execute("SELECT ready_count FROM litemq_queues").fetchall() == [(2,)]
    with litemq.connect(path) as connection:  # 0007's triggers count again, and the file goes back up on open
        connection.publish("", "seeded", b"four")
        assert connection.declare_queue("seeded", passive=True).message_count == 3


@pytest.mark.parametrize("name", ["CLAIM_AS_DEFAULT_CONSUMER", "CLAIM_AND_DELETE_AS_DEFAULT_CONSUMER"])
def test_a_default_consumers_claim_ranks_itself_by_the_small_index_of_other_priorities(migrated_path: str,
                                                                                      name: str) -> None:
    sql = sqlite_sql.STATEMENTS[name]
    with _db(migrated_path) as db:
        parameters = max(int(n) for n in re.findall(r"\?(\d+)", sql))
        plan = [row[3] for row in db.execute("EXPLAIN QUERY PLAN " + sql, [None] * parameters)]
    assert any("USING INDEX ix_litemq_messages_ready" in step for step in plan), plan
    assert sum("USING COVERING INDEX ix_litemq_consumers_ranked" in step for step in plan) == 2, plan
    assert not any(step.startswith("SCAN") for step in plan), plan
