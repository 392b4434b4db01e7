"""The ``litemq`` command on a PostgreSQL schema: the read commands and ``db`` give what they give on a file
(the same listings, the same refusals), read-only; ``db check`` adds the server's bloat report; errors name the
server's URL (never its password) and the schema.

Each test has a schema of its own on the local server (``t_<hex>``, dropped afterwards), built by litemq's
migrations and filled by plain SQL. The write commands run through ``litemq.connect``.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from contextlib import closing, contextmanager
from typing import Any, Callable, Iterator, NamedTuple, Optional

import pytest

import litemq
from litemq import cli
from litemq.store import SCHEMA_REVISION, inspect, migrate, postgres_readonly, postgres_sql
from litemq.store.postgres_keys import connection_key
from litemq.store.postgres_url import parse
from services import POSTGRESQL_URL, require_postgresql

NOW = 1_800_000_000.0


class Result(NamedTuple):
    code: int
    out: str
    err: str


class Server(NamedTuple):
    url: str
    schema: str
    sql: Callable[..., list[tuple[Any, ...]]]
    """``sql(statement, params)``: plain SQL in the test's schema, committed at once; the rows it returns."""


def _connect() -> Any:
    import psycopg

    return psycopg.connect(POSTGRESQL_URL, autocommit=True)


@pytest.fixture
def empty() -> Iterator[Server]:
    """A schema name of the test's own, not created; dropped afterwards if something made it."""
    require_postgresql()
    schema = "t_" + secrets.token_hex(6)
    with closing(_connect()) as db:
        def sql(statement: str, params: Any = None) -> list[tuple[Any, ...]]:
            cursor = db.execute(statement, params)
            return cursor.fetchall() if cursor.description else []

        db.execute(f'SET search_path TO "{schema}"')
        try:
            yield Server(f"{POSTGRESQL_URL}?schema={schema}", schema, sql)
        finally:
            db.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def built(empty: Server) -> Server:
    """The schema, built by litemq's migrations, with nothing in it."""
    migrate.upgrade_postgresql(parse(empty.url).conninfo, empty.schema, empty.url)
    return empty


def insert_message(server: Server, queue: str, body: bytes, *, properties: Optional[str] = None,
                   priority: int = 0, leased: bool = False, visible_at: Optional[float] = None,
                   delivery_count: int = 0, routing_key: Optional[str] = None) -> None:
    server.sql("INSERT INTO litemq_messages (queue, exchange, routing_key, body, properties, published_at, "
               "delivery_count, priority, lease_owner, lease_token, lease_expires_at, visible_at) "
               "VALUES (%s, '', %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
               (queue, queue if routing_key is None else routing_key, body, properties, NOW, delivery_count,
                priority, "c1/1" if leased else None, 7 if leased else None, NOW + 60 if leased else None,
                visible_at))


@pytest.fixture
def world(built: Server) -> Server:
    """A topic exchange ``logs`` routing ``app.#`` to the durable queue ``jobs``, and everything to ``audit``;
    ``jobs`` holds two ready messages and one leased to a connection that is gone."""
    sql = built.sql
    sql("INSERT INTO litemq_exchanges (name, type, durable, auto_delete, internal, arguments, created_at) "
        "VALUES ('logs', 'topic', true, false, false, NULL, %s)", (NOW,))
    sql("INSERT INTO litemq_queues (name, durable, exclusive, auto_delete, arguments, created_at) VALUES "
        "('jobs', true, false, false, '{\"x-lease-ms\":60000}', %s), ('audit', false, false, false, NULL, %s)",
        (NOW, NOW))
    sql("INSERT INTO litemq_bindings (exchange, destination, destination_kind, routing_key) VALUES "
        "('logs', 'jobs', 'queue', 'app.#'), ('logs', 'audit', 'queue', '#')")
    insert_message(built, "jobs", b"first", properties='{"content_type":"text/plain"}', routing_key="app.info")
    insert_message(built, "jobs", b"\xff\x00binary", routing_key="app.error")
    insert_message(built, "jobs", b"held", leased=True)
    sql("INSERT INTO litemq_connections (id, pid, host, started_at) VALUES ('c1', 4242, 'gone', %s)", (NOW,))
    return built


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Callable[..., Result]:
    """``run(url, "queues", "--json")`` runs ``litemq --db URL queues --json`` in-process."""
    monkeypatch.delenv("LITEMQ_URL", raising=False)

    def go(url: str, *args: str) -> Result:
        capsys.readouterr()
        try:
            code = cli.main(["--db", url, *args])
        except SystemExit as done:
            code = 0 if done.code is None else int(done.code)
        out, err = capsys.readouterr()
        return Result(code, out, err)
    return go


def state(server: Server) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table of the schema: what a read must leave as it was."""
    tables = [name for (name,) in server.sql("SELECT tablename FROM pg_tables WHERE schemaname = %s",
                                              (server.schema,))]
    return {table: sorted(map(repr, server.sql(f"SELECT * FROM {table}"))) for table in tables}


def one_line_error(result: Result) -> bool:
    return result.err.startswith("litemq: ") and len(result.err.splitlines()) == 1 and "Traceback" not in result.err


# ---------------------------------------------------------------------------------------------------------------
# The URL: libpq's part, litemq's options, and what messages show
# ---------------------------------------------------------------------------------------------------------------

def test_the_url_names_the_schema_and_what_messages_show_has_no_password() -> None:
    found = parse("postgresql+psycopg://app:s%40cret@db.internal:6432/app?sslmode=require&password=x&schema=jobs"
                  "&listen=0")
    assert found.conninfo == "postgresql://app:s%40cret@db.internal:6432/app?sslmode=require&password=x"
    assert (found.schema, found.listen) == ("jobs", False)
    assert found.where == "postgresql://app@db.internal:6432/app?sslmode=require&schema=jobs"
    local = parse("postgres:///app?host=/var/run/postgresql")
    assert local.conninfo == "postgresql:///app?host=/var/run/postgresql"
    assert (local.schema, local.listen, local.where) == (
        "litemq", True, "postgresql:///app?host=/var/run/postgresql&schema=litemq")
    for bad in ("schema=", "schema=" + "x" * 64, "schema=a&schema=b"):
        with pytest.raises(ValueError, match="schema"):
            parse(f"postgresql://db/app?{bad}")


# ---------------------------------------------------------------------------------------------------------------
# Listings: the same as on a file
# ---------------------------------------------------------------------------------------------------------------

def test_queues_counts_ready_messages_as_the_queue_row_plus_its_deltas(world: Server,
                                                                         run: Callable[..., Result]) -> None:
    assert json.loads(run(world.url, "queues", "--json").out) == [
        {"queue": "audit", "ready": 0, "unacked": 0, "total": 0, "consumers": 0, "durable": False,
         "exclusive": False, "auto_delete": False, "arguments": {}},
        {"queue": "jobs", "ready": 2, "unacked": 1, "total": 3, "consumers": 0, "durable": True,
         "exclusive": False, "auto_delete": False, "arguments": {"x-lease-ms": 60000}}]
    header, audit, jobs = run(world.url, "queues").out.splitlines()
    assert header.split() == ["queue", "ready", "unacked", "consumers", "durable", "exclusive", "auto_delete",
                              "arguments"]
    assert jobs.split() == ["jobs", "2", "1", "0", "yes", "no", "no", '{"x-lease-ms":60000}']
    assert header.index("ready") == jobs.index("2")


def test_exchanges_and_bindings_list_what_the_schema_holds(world: Server, run: Callable[..., Result]) -> None:
    names = [row["name"] for row in json.loads(run(world.url, "exchanges", "--json").out)]
    assert names == ["", "amq.direct", "amq.fanout", "amq.headers", "amq.match", "amq.topic", "logs"]
    assert "amq.default" in run(world.url, "exchanges").out
    assert json.loads(run(world.url, "bindings", "--json").out) == [
        {"exchange": "logs", "destination": "audit", "destination_kind": "queue", "routing_key": "#",
         "arguments": {}},
        {"exchange": "logs", "destination": "jobs", "destination_kind": "queue", "routing_key": "app.#",
         "arguments": {}}]


def test_an_empty_schema_lists_nothing(built: Server, run: Callable[..., Result]) -> None:
    assert run(built.url, "queues") == (0, "", "")
    assert run(built.url, "queues", "--json").out.strip() == "[]"


def test_connections_is_alive_while_its_session_holds_its_advisory_lock(world: Server,
                                                                        run: Callable[..., Result]) -> None:
    world.sql("INSERT INTO litemq_consumers (connection_id, channel, consumer_tag, queue, prefetch_count, auto_ack, "
              "exclusive, started_at) VALUES ('c1', 1, 'ctag', 'jobs', 1, false, false, %s)", (NOW,))
    rows = json.loads(run(world.url, "connections", "--json").out)
    assert rows == [{"connection_id": "c1", "pid": 4242, "host": "gone", "started_at": "2027-01-15T08:00:00.000Z",
                     "unacked": 1, "consumers": 1, "alive": False}]
    with closing(_connect()) as session:  # the connection's own session, as the PostgreSQL store holds it
        session.execute("SELECT pg_advisory_lock(%s)", (connection_key(world.schema, "c1"),))
        assert json.loads(run(world.url, "connections", "--json").out)[0]["alive"] is True
        assert run(world.url, "connections").out.splitlines()[1].split()[-1] == "yes"
    assert json.loads(run(world.url, "connections", "--json").out)[0]["alive"] is False


def test_peek_shows_ready_messages_in_delivery_order_without_taking_them(world: Server,
                                                                          run: Callable[..., Result]) -> None:
    insert_message(world, "jobs", b"urgent", priority=5)
    insert_message(world, "jobs", b"later", visible_at=NOW + 3600)
    before = state(world)
    rows = json.loads(run(world.url, "peek", "jobs", "--json").out)
    assert [(row["body"], row["body_encoding"]) for row in rows] == [
        ("urgent", "text"), ("first", "text"), ("/wBiaW5hcnk=", "base64")]
    assert rows[1]["properties"] == {"content_type": "text/plain"} and rows[1]["exchange"] == ""
    assert run(world.url, "peek", "jobs", "-n", "1").out.splitlines()[1].split() == [
        "amq.default", "jobs", "no", "{}", "urgent"]
    assert state(world) == before


def test_route_names_the_queues_a_message_would_reach(world: Server, run: Callable[..., Result]) -> None:
    assert run(world.url, "route", "logs", "app.info").out.splitlines() == ["jobs", "audit"]
    assert json.loads(run(world.url, "route", "logs", "db.info", "--json").out) == ["audit"]
    assert run(world.url, "route", "", "jobs").out == "jobs\n"
    missing = run(world.url, "route", "nope", "x")
    assert missing.code == 1 and missing.err == f"litemq: exchange 'nope' not found in {world.url}\n"


def test_stats_gives_messages_and_bytes_per_queue_and_the_schema_size(world: Server,
                                                                       run: Callable[..., Result]) -> None:
    report = json.loads(run(world.url, "stats", "--json").out)
    assert [(q["queue"], q["messages"], q["ready"], q["unacked"], q["bytes"]) for q in report["queues"]] == [
        ("audit", 0, 0, 0, 0), ("jobs", 3, 2, 1, 17)]
    assert report["totals"]["messages"] == 3 and report["totals"]["bytes"] == 17
    assert report["totals"]["schema_bytes"] > 100_000  # ten tables with their indexes
    last = run(world.url, "stats").out.splitlines()[-1]
    assert re.fullmatch(rf"total: 3 messages, 17 bytes of bodies; schema {world.schema} \d+ bytes "
                        r"\(tables and indexes\)", last), last


# ---------------------------------------------------------------------------------------------------------------
# Reading never writes, and refuses what is not litemq's
# ---------------------------------------------------------------------------------------------------------------

READS = (["queues"], ["exchanges"], ["bindings"], ["connections"], ["peek", "jobs"], ["route", "logs", "a"],
         ["stats"], ["db", "check"])


def test_the_read_commands_change_nothing(world: Server, run: Callable[..., Result]) -> None:
    before = state(world)
    for args in READS:
        assert run(world.url, *args).code == 0, args
    assert state(world) == before


def test_the_reader_s_transactions_cannot_write(world: Server) -> None:
    with pytest.raises(litemq.StorageError, match="read-only transaction"):
        postgres_readonly.read(parse(world.url), lambda store: store.execute("DELETE FROM litemq_messages"))
    assert world.sql("SELECT count(*) FROM litemq_messages") == [(3,)]


def test_a_missing_schema_is_refused_and_not_created(empty: Server, run: Callable[..., Result]) -> None:
    for args in READS[:-1] + (["purge", "jobs"],):
        result = run(empty.url, *args)
        assert result == (1, "", f"litemq: {empty.url} holds no litemq data (nothing was changed)\n"), args
    for args in (["db", "current"], ["db", "check"], ["db", "upgrade"], ["db", "vacuum"]):
        result = run(empty.url, *args)
        assert result == (1, "", f"litemq: {empty.url}: no such schema (nothing was created)\n"), args
    assert empty.sql("SELECT count(*) FROM pg_namespace WHERE nspname = %s", (empty.schema,)) == [(0,)]


def test_a_schema_without_litemq_tables_is_refused_and_left_alone(empty: Server, run: Callable[..., Result]) -> None:
    empty.sql(f'CREATE SCHEMA "{empty.schema}"')
    empty.sql("CREATE TABLE users (name text)")
    for args in READS:
        result = run(empty.url, *args)
        assert result == (1, "", f"litemq: {empty.url} holds no litemq data (nothing was changed)\n"), args
    assert run(empty.url, "db", "current").out == f"base (no litemq tables; this litemq writes {SCHEMA_REVISION})\n"
    assert empty.sql("SELECT tablename FROM pg_tables WHERE schemaname = %s", (empty.schema,)) == [("users",)]


def test_a_schema_from_a_newer_litemq_is_refused_in_one_line(world: Server, run: Callable[..., Result]) -> None:
    world.sql("UPDATE litemq_alembic_version SET version_num = '9999'")
    before = state(world)
    assert run(world.url, "db", "current") == (0, f"9999 (this litemq writes {SCHEMA_REVISION})\n", "")
    for args in READS + (["db", "upgrade"], ["db", "downgrade", "0001"], ["purge", "jobs"]):
        result = run(world.url, *args)
        assert result.code == 1 and one_line_error(result) and "newer litemq" in result.err, args
        assert world.url in result.err
    assert state(world) == before


def test_a_schema_behind_is_read_where_it_can_be_else_refused_in_one_line(built: Server,
                                                                          run: Callable[..., Result]) -> None:
    migrate.upgrade_postgresql(parse(built.url).conninfo, built.schema, built.url, "0001")
    before = state(built)
    result = run(built.url, "queues")
    assert result.code == 1 and one_line_error(result)
    assert result.err.startswith(f"litemq: {built.url} is at schema 0001, older than this litemq's "
                                 f"{SCHEMA_REVISION}, and cannot be read as it is (")
    assert result.err.endswith("`litemq db upgrade` brings it up to date (nothing was changed)\n")
    assert run(built.url, "db", "check").out.splitlines()[0] == "ok"  # 0001 counts its own way; the report reads
    assert state(built) == before


def test_an_unreachable_server_is_one_line_naming_it_without_its_password(run: Callable[..., Result]) -> None:
    pytest.importorskip("psycopg")
    url = "postgresql://app:s3cret@127.0.0.1:1/app?schema=jobs&password=s3cret&connect_timeout=2"
    for args in (["queues"], ["stats"], ["db", "check"], ["db", "upgrade"], ["db", "vacuum"], ["purge", "q"]):
        result = run(url, *args)
        assert result.code == 1 and one_line_error(result), (args, result)
        assert result.err.startswith("litemq: cannot connect to the PostgreSQL server of "
                                     "postgresql://app@127.0.0.1:1/app?connect_timeout=2&schema=jobs: "), result.err
        assert "s3cret" not in result.err


def test_a_schema_name_that_cannot_be_one_is_a_usage_error(run: Callable[..., Result]) -> None:
    for query in ("schema=", "schema=" + "x" * 64, "schema=a&schema=b"):
        result = run(f"{POSTGRESQL_URL}?{query}", "queues")
        assert result.code == 2 and one_line_error(result), query


# ---------------------------------------------------------------------------------------------------------------
# db: revision, counters, bloat, maintenance
# ---------------------------------------------------------------------------------------------------------------

def test_db_current_upgrade_and_downgrade_move_the_schema_and_keep_the_messages(world: Server,
                                                                                 run: Callable[..., Result]) -> None:
    url = world.url
    assert run(url, "db", "current") == (0, f"{SCHEMA_REVISION} (this litemq writes {SCHEMA_REVISION})\n", "")
    assert run(url, "db", "upgrade") == (0, f"{url}: at schema {SCHEMA_REVISION} already\n", "")
    assert run(url, "db", "downgrade", "0001") == (0, f"{url}: at schema 0001\n", "")
    assert run(url, "db", "current").out == f"0001 (this litemq writes {SCHEMA_REVISION})\n"
    assert run(url, "db", "upgrade") == (0, f"{url}: at schema {SCHEMA_REVISION}\n", "")
    assert json.loads(run(url, "queues", "--json").out)[1]["ready"] == 2


def test_db_upgrade_builds_litemq_s_tables_in_an_existing_empty_schema(empty: Server,
                                                                       run: Callable[..., Result]) -> None:
    empty.sql(f'CREATE SCHEMA "{empty.schema}"')
    assert run(empty.url, "db", "upgrade") == (0, f"{empty.url}: at schema {SCHEMA_REVISION}\n", "")
    assert run(empty.url, "queues") == (0, "", "")


def test_db_downgrade_to_base_refuses_without_yes_and_says_what_it_would_delete(world: Server,
                                                                               run: Callable[..., Result]) -> None:
    before = state(world)
    refused = run(world.url, "db", "downgrade", "base")
    assert refused.code == 1 and one_line_error(refused)
    assert "2 queue(s) and 3 message(s)" in refused.err and "--yes" in refused.err and world.url in refused.err
    assert state(world) == before
    done = run(world.url, "db", "downgrade", "base", "--yes")
    assert done == (0, f"{world.url}: at schema base (2 queue(s) and 3 message(s) deleted)\n", "")
    assert world.sql("SELECT tablename FROM pg_tables WHERE schemaname = %s", (world.schema,)) == [
        ("litemq_alembic_version",)]


def test_db_check_prints_ok_then_the_bloat_report(world: Server, run: Callable[..., Result]) -> None:
    result = run(world.url, "db", "check")
    assert result.code == 0 and result.err == ""
    lines = result.out.splitlines()
    assert lines[0] == "ok"
    assert lines[1].split() == ["table", "live_tuples", "dead_tuples", "table_bytes", "index_bytes", "total_bytes",
                                "last_autovacuum", "last_vacuum"]
    tables = [line.split()[0] for line in lines[2:-1]]
    assert tables == sorted(tables) and {"litemq_messages", "litemq_queues", "litemq_queue_deltas"} <= set(tables)
    assert lines[-1].startswith("oldest transaction holding back vacuum: ")


def test_db_check_json_reports_tuples_sizes_and_the_oldest_transaction(world: Server,
                                                                        run: Callable[..., Result]) -> None:
    world.sql("ANALYZE litemq_messages")  # the statistics the report reads, without waiting for autovacuum
    with closing(_connect()) as idle:
        idle.autocommit = False
        idle.execute("SELECT pg_current_xact_id()").fetchall()  # a transaction that writes, left idle
        report = json.loads(run(world.url, "db", "check", "--json").out)
        idle_pid = idle.info.backend_pid
    assert report["counters"] == []
    messages = next(row for row in report["tables"] if row["table"] == "litemq_messages")
    assert messages["live_tuples"] == 3 and messages["dead_tuples"] == 0
    assert messages["total_bytes"] == messages["table_bytes"] + messages["index_bytes"] > 0
    oldest = report["oldest_transaction"]
    assert oldest is not None and set(oldest) == {"pid", "database", "user", "application", "state", "xmin_age",
                                                  "open_seconds", "query"}
    if oldest["pid"] == idle_pid:  # (another session on the shared server may be older still)
        assert oldest["state"] == "idle in transaction" and oldest["open_seconds"] >= 0


def test_db_check_counts_ready_messages_as_the_store_does_and_names_queues_that_are_off(
        world: Server, run: Callable[..., Result]) -> None:
    world.sql("INSERT INTO litemq_queue_deltas (queue, ready_count, ready_bytes, backend_pid) VALUES ('jobs', 5, 0, 0)")
    world.sql("UPDATE litemq_queues SET ready_count = ready_count - 5 WHERE name = 'jobs'")
    assert run(world.url, "db", "check").out.splitlines()[0] == "ok"  # a row and deltas that add up are right
    world.sql("UPDATE litemq_queues SET ready_bytes = 99 WHERE name = 'audit'")
    result = run(world.url, "db", "check")
    assert result.code == 1
    assert result.out.splitlines()[0] == ("queue 'audit': counted 0 ready messages of 99 bytes, the rows hold 0 of "
                                          "0 bytes")
    assert result.err == (f"litemq: {world.url}: ready counters differ from the rows (`litemq db recount` sets "
                          "them)\n")
    report = json.loads(run(world.url, "db", "check", "--json").out)
    assert report["counters"] == [{"queue": "audit", "ready_count": 0, "ready_bytes": 99, "rows_count": 0,
                                   "rows_bytes": 0}]


@pytest.mark.alone
def test_db_vacuum_removes_the_dead_tuples_of_churn(world: Server, run: Callable[..., Result]) -> None:
    for i in range(200):
        insert_message(world, "audit", b"x" * 100)
    world.sql("DELETE FROM litemq_messages WHERE queue = 'audit'")
    deadline = time.monotonic() + 10
    while True:  # a snapshot another session of the database holds meanwhile keeps them: its transaction ends soon
        result = run(world.url, "db", "vacuum")
        match = re.fullmatch(rf"{re.escape(world.url)}: (\d+) -> (\d+) bytes, (\d+) -> (\d+) dead tuples "
                             r"\(VACUUM \(ANALYZE\) of 10 tables\)\n", result.out)
        assert result.code == 0 and match, result
        if int(match[4]) == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert int(match[4]) == 0
    report = json.loads(run(world.url, "db", "check", "--json").out)
    messages = next(row for row in report["tables"] if row["table"] == "litemq_messages")
    assert messages["dead_tuples"] == 0 and messages["live_tuples"] == 3 and messages["last_vacuum"] is not None


def test_db_checkpoint_is_a_file_s_and_says_so(world: Server, run: Callable[..., Result]) -> None:
    result = run(world.url, "db", "checkpoint")
    assert result.code == 1 and one_line_error(result)
    assert "PostgreSQL schema" in result.err and world.url in result.err


def test_json_is_for_db_check_only(world: Server, run: Callable[..., Result]) -> None:
    assert run(world.url, "db", "current", "--json").code == 2


# ---------------------------------------------------------------------------------------------------------------
# The statements that move rows, on PostgreSQL (through a session standing in for the store's)
# ---------------------------------------------------------------------------------------------------------------

class Writer:
    """The PostgreSQL store's ``execute`` (SQLite's placeholders translated; ``$N`` as they are) inside one
    transaction on the schema, as its write transaction runs the command's statements."""

    def __init__(self, db: Any) -> None:
        self._db = db

    def execute(self, sql: str, params: Any = ()) -> Any:
        return self._db.execute(postgres_sql.from_sqlite(sql), params or None)


@contextmanager
def writing(server: Server) -> Iterator[Writer]:
    import psycopg

    with closing(psycopg.connect(parse(server.url).conninfo, autocommit=True, cursor_factory=psycopg.RawCursor)) as db:
        db.execute(f'SET search_path TO "{server.schema}"')
        with db.transaction():
            yield Writer(db)


def test_move_takes_the_head_in_order_to_the_tail_of_another_queue_with_its_counts(
        world: Server, run: Callable[..., Result]) -> None:
    world.sql("INSERT INTO litemq_bodies (id, body) VALUES ((SELECT max(id) + 1 FROM litemq_messages), %s)",
              (b"L" * 5000,))
    world.sql("INSERT INTO litemq_messages (id, queue, exchange, routing_key, body, properties, published_at, "
              "priority) VALUES ((SELECT max(id) + 1 FROM litemq_messages), 'jobs', '', 'jobs', NULL, NULL, %s, 9)",
              (NOW,))
    world.sql("SELECT setval(pg_get_serial_sequence('litemq_messages', 'id'), (SELECT max(id) FROM litemq_messages))")
    insert_message(world, "audit", b"already there")
    with writing(world) as store:
        assert inspect.move(store, "jobs", "audit", 2, max_priority=0) == 2
    assert world.sql("SELECT body, priority FROM litemq_messages WHERE queue = 'audit' ORDER BY id") == [
        (b"already there", 0), (b"L" * 5000, 0), (b"first", 0)]
    assert world.sql("SELECT count(*) FROM litemq_bodies") == [(0,)]  # the moved body's row went with its message
    with writing(world) as store:
        assert inspect.move(store, "jobs", "audit", None) == 1  # the rest; the leased one stays
    assert run(world.url, "db", "check").out.splitlines()[0] == "ok"
    assert [(q["queue"], q["ready"], q["unacked"]) for q in json.loads(run(world.url, "queues", "--json").out)] == [
        ("audit", 4, 0), ("jobs", 0, 1)]


def test_move_skips_what_a_consumer_holds_meanwhile(world: Server) -> None:
    import psycopg

    with closing(psycopg.connect(parse(world.url).conninfo)) as consumer:
        consumer.execute(f'SET search_path TO "{world.schema}"')
        with consumer.transaction():  # a claim in progress holds the head's first row
            consumer.execute("SELECT id FROM litemq_messages WHERE body = 'first' FOR UPDATE")
            moved = []
            mover = threading.Thread(target=lambda: moved.append(_move_all(world)))
            mover.start()
            mover.join(10)
            assert not mover.is_alive(), "move waited for a row another transaction holds"
    assert moved == [1]
    assert world.sql("SELECT body FROM litemq_messages WHERE queue = 'audit'") == [(b"\xff\x00binary",)]


def _move_all(server: Server) -> int:
    with writing(server) as store:
        return inspect.move(store, "jobs", "audit", None)


def test_recount_sets_the_row_and_drops_the_deltas_of_each_queue_that_is_off(world: Server,
                                                                              run: Callable[..., Result]) -> None:
    world.sql("INSERT INTO litemq_queue_deltas (queue, ready_count, ready_bytes, backend_pid) VALUES ('jobs', 4, 40, 0)")
    with writing(world) as store:
        off = inspect.recount(store)
    assert [(m.queue, m.ready_count, m.rows_count) for m in off] == [("jobs", 6, 2)]
    assert world.sql("SELECT ready_count, ready_bytes FROM litemq_queues WHERE name = 'jobs'") == [(2, 13)]
    assert world.sql("SELECT count(*) FROM litemq_queue_deltas WHERE queue = 'jobs'") == [(0,)]
    assert run(world.url, "db", "check").out.splitlines()[0] == "ok"


# ---------------------------------------------------------------------------------------------------------------
# The write commands, through litemq.connect
# ---------------------------------------------------------------------------------------------------------------

@pytest.fixture
def writable(world: Server) -> Server:
    return world


def test_declare_publish_get_purge_and_delete_on_a_schema(writable: Server, run: Callable[..., Result]) -> None:
    url = writable.url
    assert run(url, "declare-queue", "q", "--durable") == (0, "q\n", "")
    assert run(url, "bind", "q", "logs", "app.#").code == 0
    assert run(url, "publish", "logs", "app.x", "hello") == (0, "published to 3 queues\n", "")
    rows = json.loads(run(url, "get", "q", "--ack", "--json").out)
    assert [row["body"] for row in rows] == ["hello"]
    assert run(url, "purge", "audit") == (0, "1\n", "")
    assert run(url, "delete-queue", "q") == (0, "0\n", "")
    missing = run(url, "delete-queue", "q")
    assert missing.code == 1 and missing.err == f"litemq: queue 'q' not found in {url}\n"
    assert run(url, "db", "check").out.splitlines()[0] == "ok"


def test_move_and_recount_commands_on_a_schema(writable: Server, run: Callable[..., Result]) -> None:
    url = writable.url
    # (the connection c1 is dead: the first connection that opened the schema returned the message it held)
    assert run(url, "move", "jobs", "audit") == (0, "3\n", "")
    writable.sql("UPDATE litemq_queues SET ready_count = 7 WHERE name = 'audit'")
    result = run(url, "db", "recount")
    assert result.code == 0 and result.out.splitlines()[-1] == f"{url}: 1 queue(s) recounted"
    assert run(url, "db", "check").out.splitlines()[0] == "ok"
