"""The ``litemq`` command, as an operator uses it: every subcommand run in-process through ``litemq.cli.main``
(exact output, exit codes, and the effect on the broker seen through litemq's API or plain SQL: sqlite3 on a file,
psycopg on a server), and the command run as a real process.

Exit codes: 0 ok (an empty listing prints nothing, or ``[]`` with --json), 1 not found or refused, 2 usage.
Bad input gets one line on stderr, never a traceback.
"""

from __future__ import annotations

import base64
import functools
import io
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import closing
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, NamedTuple, Optional

import pytest

import litemq
from conftest import PYTHON, REPO
from engines import as_url, engine_of, litemq_objects, make_broker, ready_counters, sql_rows
from liveness_workers import default_signals
from litemq import Properties, cli
from litemq.store import SCHEMA_REVISION, migrate

LISTINGS = ("queues", "exchanges", "bindings", "connections", "get", "peek", "tail", "route", "stats")
HIDDEN = ("demo-producer", "demo-consumer")  # the demo's own two processes, not for people
PROCESS_TIMEOUT = 60
LONG_NAME = "q" * 256  # one byte over the 255-byte limit on names and keys
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


# ---------------------------------------------------------------------------------------------------------------
# Helpers: running the command in-process, and looking at the broker with plain SQL
# ---------------------------------------------------------------------------------------------------------------

class Result(NamedTuple):
    code: int
    out: str
    err: str


@pytest.fixture(autouse=True)
def clean_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No $LITEMQ_URL from the caller's shell, and a working directory of the test's own (for ./litemq.db)."""
    monkeypatch.delenv("LITEMQ_URL", raising=False)
    monkeypatch.chdir(tmp_path)


def invoke(argv: list[str]) -> int:
    """``main(argv)``; argparse's own exits (usage errors, --help) become their exit code."""
    try:
        return cli.main(argv)
    except SystemExit as done:
        return 0 if done.code is None else int(done.code)


@pytest.fixture
def run(request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> Callable[..., Result]:
    """``run("queues", "--json")`` runs ``litemq --db <db_path> queues --json``; ``stdin=`` gives its input.

    The test's broker is looked up only when ``db`` is left out, so a test that names its own file (or none) runs
    once, and one that asks for ``db_path`` (or ``world``, ``conn``) runs on each engine."""
    def go(*args: str, stdin: Optional[bytes] = None, db: Optional[str] = "db_path") -> Result:
        if db == "db_path":
            db = request.getfixturevalue("db_path")
        if stdin is not None:
            monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
        capsys.readouterr()
        code = invoke((["--db", db] if db is not None else []) + list(args))
        out, err = capsys.readouterr()
        return Result(code, out, err)
    return go


def plain(path: str) -> "closing[sqlite3.Connection]":
    return closing(sqlite3.connect(path))


def rows(path: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    return sql_rows(path, sql, params)


def state(path: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every litemq table: what a refused command must leave as it was."""
    return {table: sorted(rows(path, f"SELECT * FROM {table}"), key=repr)
            for table in litemq_objects(path, "table")}


# A message's body and size, wherever it is kept (large ones in litemq_bodies).
BODY = "coalesce(m.body, (SELECT b.body FROM litemq_bodies b WHERE b.id = m.id))"
BODY_BYTES = "coalesce(length(m.body), (SELECT length(b.body) FROM litemq_bodies b WHERE b.id = m.id))"


def counter_mismatches(path: str) -> list[tuple[str, int, int]]:
    """Queues whose ready counter differs from their ready rows (move and purge must keep them equal)."""
    queues = ready_counters(path)
    return rows(path, "SELECT name, ready_count, actual FROM (SELECT q.name, q.ready_count, (SELECT count(*) "
                      "FROM litemq_messages m WHERE m.queue = q.name AND m.lease_token IS NULL "
                      f"AND m.visible_at IS NULL) AS actual FROM {queues} q) AS c WHERE ready_count != actual "
                      "UNION ALL SELECT name, ready_bytes, actual FROM (SELECT q.name, q.ready_bytes, "
                      f"(SELECT coalesce(sum({BODY_BYTES}), 0) FROM litemq_messages m WHERE m.queue = q.name "
                      f"AND m.lease_token IS NULL AND m.visible_at IS NULL) AS actual FROM {queues} q) AS b "
                      "WHERE ready_bytes != actual")


def bodies(path: str, queue: str) -> list[bytes]:
    """The queue's messages in order, ready or not, straight from the table."""
    return [bytes(body) for (body,) in rows(path, f"SELECT {BODY} FROM litemq_messages m WHERE queue = ? "
                                                  "ORDER BY id", (queue,))]


def starts(line: str) -> list[int]:
    """Where each cell of a table line begins."""
    return [match.start() for match in re.finditer(r"\S+", line)]


def one_line_error(result: Result) -> bool:
    return (result.err.startswith("litemq: ") and len(result.err.splitlines()) == 1
            and "Traceback" not in result.err)


@pytest.fixture
def world(db_path: str) -> str:
    """A topic exchange ``logs`` routing ``app.#`` to the durable queue ``jobs`` and everything to ``audit``."""
    make_broker(db_path)
    with litemq.connect(db_path) as conn:
        conn.declare_exchange("logs", "topic", durable=True)
        conn.declare_queue("jobs", durable=True, arguments={"x-lease-ms": 60000})
        conn.declare_queue("audit")
        conn.bind_queue("jobs", "logs", "app.#")
        conn.bind_queue("audit", "logs", "#")
        conn.publish("logs", "app.info", b"first", Properties(content_type="text/plain"))
        conn.publish("logs", "app.error", b"\xff\x00binary")
        conn.publish("logs", "db.info", "naïve")
    return db_path


def wait_until(condition: Callable[[], bool], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


# ---------------------------------------------------------------------------------------------------------------
# Choosing the file: --db before the subcommand, else $LITEMQ_URL, else ./litemq.db
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.sqlite_only
def test_db_option_names_the_file_as_a_path_or_an_sqlite_url(world: str, run: Callable[..., Result]) -> None:
    by_path = run("queues", "--json")
    by_url = run("queues", "--json", db="sqlite:///" + world)
    assert by_path.code == by_url.code == 0
    assert by_path.out == by_url.out
    assert [q["queue"] for q in json.loads(by_url.out)] == ["audit", "jobs"]


def test_without_db_the_file_comes_from_litemq_url(world: str, run: Callable[..., Result],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LITEMQ_URL", as_url(world))
    result = run("queues", "--json", db=None)
    assert result.code == 0
    assert [q["queue"] for q in json.loads(result.out)] == ["audit", "jobs"]


def test_without_db_or_litemq_url_the_file_is_litemq_db_in_the_working_directory(
        tmp_path: Path, run: Callable[..., Result]) -> None:
    assert run("declare-queue", "here", db=None) == (0, "here\n", "")
    assert (tmp_path / "litemq.db").is_file()
    with litemq.connect(str(tmp_path / "litemq.db")) as conn:
        assert conn.route("", "here") == ["here"]


def test_db_is_a_global_option_that_comes_before_the_subcommand(world: str, run: Callable[..., Result]) -> None:
    result = run("queues", "--db", world, db=None)
    assert result.code == 2
    assert "unrecognized arguments: --db" in result.err


# ---------------------------------------------------------------------------------------------------------------
# Help, --json, the README and the console script
# ---------------------------------------------------------------------------------------------------------------

def subparsers() -> dict[str, Any]:
    parser = cli.build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return {name: sub for name, sub in action.choices.items() if name not in HIDDEN}


def test_the_subcommands_are_the_ones_the_issue_lists() -> None:
    assert sorted(subparsers()) == sorted([
        "queues", "exchanges", "bindings", "connections", "declare-queue", "declare-exchange", "bind", "unbind",
        "delete-queue", "delete-exchange", "purge", "publish", "get", "peek", "tail", "route", "move", "stats",
        "db", "demo", "web"])  # web: issue 21's management page (test_web.py)


def test_every_subcommand_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    for name, sub in subparsers().items():
        assert sub.description, f"`litemq {name}` has no description"
        assert invoke([name, "--help"]) == 0, name
        out = capsys.readouterr().out
        assert out.startswith(f"usage: litemq {name}"), out
        assert sub.description in " ".join(out.split()), name


def test_the_top_level_help_lists_every_subcommand_but_the_hidden_ones(capsys: pytest.CaptureFixture[str]) -> None:
    assert invoke(["--help"]) == 0
    out = capsys.readouterr().out
    assert "--db PATH_OR_URL" in out
    for name in subparsers():
        assert re.search(rf"^\s+{re.escape(name)}\s", out, re.MULTILINE), name
    for name in HIDDEN:
        assert name not in out


def test_every_listing_and_the_db_report_take_json_after_it_and_nothing_else_does() -> None:
    for name, sub in subparsers().items():
        assert ("--json" in sub._option_string_actions) == (name in LISTINGS + ("db",)), name


def test_every_subcommand_has_a_line_in_the_readme() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    missing = [name for name in subparsers() if f"litemq {name}" not in readme]
    assert not missing, f"README.md does not mention: {', '.join('litemq ' + name for name in missing)}"


def test_the_console_script_is_declared_and_is_main() -> None:
    text = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    try:
        import tomllib
    except ImportError:  # Python 3.10: read the one line
        assert re.search(r'^litemq = "litemq\.cli:main"$', text, re.MULTILINE)
    else:
        assert tomllib.loads(text)["project"]["scripts"] == {"litemq": "litemq.cli:main"}
    assert callable(cli.main)


def test_main_returns_the_exit_code(world: str) -> None:
    assert cli.main(["--db", world, "queues"]) == 0
    assert cli.main(["--db", world, "get", "nope"]) == 1
    assert cli.main(["--db", world, "get", "jobs", "-n", "0"]) == 2


def test_version_prints_litemq_and_its_version(run: Callable[..., Result], subprocess_env: dict[str, str]) -> None:
    assert run("--version", db=None) == (0, f"litemq {litemq.__version__}\n", "")
    result = command(["--version"], subprocess_env)
    assert (result.returncode, result.stdout) == (0, f"litemq {litemq.__version__}\n".encode())


# ---------------------------------------------------------------------------------------------------------------
# Listings: queues, exchanges, bindings, connections
# ---------------------------------------------------------------------------------------------------------------

def test_queues_lists_counts_flags_and_the_arguments_that_are_set(world: str, conn: litemq.Connection,
                                                                   run: Callable[..., Result]) -> None:
    conn.declare_queue("mine", exclusive=True)
    conn.declare_queue("tmp", auto_delete=True)
    consumer = conn.consume("jobs", prefetch=1)
    assert consumer.get(10).body == b"first"
    result = run("queues", "--json")
    assert result.code == 0 and result.err == ""
    assert json.loads(result.out) == [
        {"queue": "audit", "ready": 3, "unacked": 0, "total": 3, "consumers": 0, "durable": False,
         "exclusive": False, "auto_delete": False, "arguments": {}},
        {"queue": "jobs", "ready": 1, "unacked": 1, "total": 2, "consumers": 1, "durable": True,
         "exclusive": False, "auto_delete": False, "arguments": {"x-lease-ms": 60000}},
        {"queue": "mine", "ready": 0, "unacked": 0, "total": 0, "consumers": 0, "durable": False,
         "exclusive": True, "auto_delete": False, "arguments": {}},
        {"queue": "tmp", "ready": 0, "unacked": 0, "total": 0, "consumers": 0, "durable": False,
         "exclusive": False, "auto_delete": True, "arguments": {}},
    ]
    assert run("queues").out == (
        "queue  ready  unacked  consumers  durable  exclusive  auto_delete  arguments\n"
        "audit  3      0        0          no       no         no           {}\n"
        "jobs   1      1        1          yes      no         no           {\"x-lease-ms\":60000}\n"
        "mine   0      0        0          no       yes        no           {}\n"
        "tmp    0      0        0          no       no         yes          {}\n")


def test_an_empty_listing_prints_nothing_or_an_empty_json_list(db_path: str, run: Callable[..., Result]) -> None:
    litemq.connect(db_path).close()
    for name in ("queues", "bindings", "connections"):
        assert run(name) == (0, "", ""), name
        result = run(name, "--json")
        assert result.code == 0 and json.loads(result.out) == [], name


def test_exchanges_lists_the_default_exchange_as_amq_default_and_in_json_as_empty(
        world: str, run: Callable[..., Result]) -> None:
    with litemq.connect(world) as conn:
        conn.declare_exchange("events", "headers", auto_delete=True, internal=True,
                              arguments={"alternate-exchange": "logs"})
    result = run("exchanges", "--json")
    assert result.code == 0
    builtin = {"durable": True, "auto_delete": False, "internal": False, "arguments": {}}
    assert json.loads(result.out) == [
        {"name": "", "type": "direct", **builtin},
        {"name": "amq.direct", "type": "direct", **builtin},
        {"name": "amq.fanout", "type": "fanout", **builtin},
        {"name": "amq.headers", "type": "headers", **builtin},
        {"name": "amq.match", "type": "headers", **builtin},
        {"name": "amq.topic", "type": "topic", **builtin},
        {"name": "events", "type": "headers", "durable": False, "auto_delete": True, "internal": True,
         "arguments": {"alternate-exchange": "logs"}},
        {"name": "logs", "type": "topic", **builtin},
    ]
    assert run("exchanges").out == (
        "name         type     durable  auto_delete  internal  arguments\n"
        "amq.default  direct   yes      no           no        {}\n"
        "amq.direct   direct   yes      no           no        {}\n"
        "amq.fanout   fanout   yes      no           no        {}\n"
        "amq.headers  headers  yes      no           no        {}\n"
        "amq.match    headers  yes      no           no        {}\n"
        "amq.topic    topic    yes      no           no        {}\n"
        "events       headers  no       yes          yes       {\"alternate-exchange\":\"logs\"}\n"
        "logs         topic    yes      no           no        {}\n")


def test_bindings_lists_queue_and_exchange_bindings_with_their_arguments(world: str,
                                                                         run: Callable[..., Result]) -> None:
    with litemq.connect(world) as conn:
        conn.declare_exchange("events", "headers")
        conn.bind_queue("audit", "events", "", {"x-match": "any", "kind": "pdf"})
        conn.bind_exchange("logs", "amq.fanout")
    result = run("bindings", "--json")
    assert result.code == 0
    assert json.loads(result.out) == [
        {"exchange": "amq.fanout", "destination": "logs", "destination_kind": "exchange", "routing_key": "",
         "arguments": {}},
        {"exchange": "events", "destination": "audit", "destination_kind": "queue", "routing_key": "",
         "arguments": {"kind": "pdf", "x-match": "any"}},
        {"exchange": "logs", "destination": "audit", "destination_kind": "queue", "routing_key": "#",
         "arguments": {}},
        {"exchange": "logs", "destination": "jobs", "destination_kind": "queue", "routing_key": "app.#",
         "arguments": {}},
    ]
    assert run("bindings").out == (
        "exchange    destination  destination_kind  routing_key  arguments\n"
        "amq.fanout  logs         exchange                       {}\n"
        "events      audit        queue                          {\"kind\":\"pdf\",\"x-match\":\"any\"}\n"
        "logs        audit        queue             #            {}\n"
        "logs        jobs         queue             app.#        {}\n")


def test_connections_lists_each_other_connection_with_its_consumers_and_unacked(
        world: str, conn: litemq.Connection, run: Callable[..., Result]) -> None:
    assert conn.consume("jobs", prefetch=1).get(10) is not None
    second = conn.channel()
    audit = second.consume("audit", prefetch=2)
    assert audit.get(10) is not None and audit.get(10) is not None
    result = run("connections", "--json")
    assert result.code == 0
    (row,) = json.loads(result.out)  # the command's own connection is not listed
    started = rows(world, "SELECT started_at FROM litemq_connections WHERE id = ?", (row["connection_id"],))
    assert row == {"connection_id": conn._session.connection_id, "pid": os.getpid(), "host": socket.gethostname(),
                   "started_at": row["started_at"], "unacked": 3, "consumers": 2, "alive": True}
    assert ISO.match(row["started_at"])
    assert abs(datetime.fromisoformat(row["started_at"].replace("Z", "+00:00")).timestamp()
               - started[0][0]) < 0.002

    table = run("connections").out.splitlines()
    assert len(table) == 2
    header, line = table
    assert header.split() == ["connection_id", "pid", "host", "started_at", "consumers", "unacked", "alive"]
    assert line.split() == [conn._session.connection_id, str(os.getpid()), socket.gethostname(),
                            row["started_at"], "2", "3", "yes"]
    assert starts(header) == starts(line), "columns are aligned"


def test_connections_never_reports_a_dead_process_alive_and_its_messages_come_back(
        world: str, run: Callable[..., Result], subprocess_env: dict[str, str]) -> None:
    holder = subprocess.Popen(
        [PYTHON, "-c", "import litemq, sys, time\n"
                       f"c = litemq.connect({world!r})\n"
                       "assert c.get('jobs').body == b'first'\n"
                       "print('holding', flush=True)\n"
                       "time.sleep(120)\n"],
        env=subprocess_env, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "holding\n"
        alive = json.loads(run("connections", "--json").out)
        assert [(r["pid"], r["unacked"], r["alive"]) for r in alive] == [(holder.pid, 1, True)]
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(PROCESS_TIMEOUT)
        after = json.loads(run("connections", "--json").out)
        assert not [r for r in after if r["pid"] == holder.pid and r["alive"]]
    finally:
        if holder.poll() is None:
            os.kill(holder.pid, signal.SIGKILL)
            holder.wait(PROCESS_TIMEOUT)
    # peek only reads; the next command that opens the file for writing returns what the dead process held
    assert [(m["body"], m["redelivered"]) for m in json.loads(run("peek", "jobs", "--json").out)] == [
        ("/wBiaW5hcnk=", False)]
    got = json.loads(run("get", "jobs", "-n", "2", "--json").out)
    assert [(m["body"], m["redelivered"]) for m in got] == [("first", True), ("/wBiaW5hcnk=", False)]


# ---------------------------------------------------------------------------------------------------------------
# Changing the model: declare, bind, unbind, delete, purge
# ---------------------------------------------------------------------------------------------------------------

def test_declare_queue_prints_its_name_and_is_idempotent(db_path: str, run: Callable[..., Result]) -> None:
    assert run("declare-queue", "jobs", "--durable", "--argument", "x-lease-ms=5000",
               "--argument", "note=nightly") == (0, "jobs\n", "")
    assert run("declare-queue", "jobs", "--durable", "--argument", "x-lease-ms=5000",
               "--argument", "note=nightly") == (0, "jobs\n", "")
    refused = run("declare-queue", "jobs")
    assert refused.code == 1 and one_line_error(refused) and "inequivalent arg 'durable'" in refused.err
    assert rows(db_path, "SELECT name, durable, exclusive, auto_delete, arguments FROM litemq_queues") == [
        ("jobs", 1, 0, 0, '{"note":"nightly","x-lease-ms":5000}')]


def test_declare_queue_with_an_empty_name_gets_a_server_named_queue_that_stays(
        db_path: str, run: Callable[..., Result]) -> None:
    result = run("declare-queue", "", "--auto-delete")
    assert result.code == 0 and re.fullmatch(r"amq\.gen-[A-Za-z0-9_-]{22}\n", result.out)
    assert rows(db_path, "SELECT name, exclusive, auto_delete FROM litemq_queues") == [
        (result.out.strip(), 0, 1)]


def test_declare_exchange_creates_it_quietly_and_refuses_another_type(db_path: str,
                                                                      run: Callable[..., Result]) -> None:
    assert run("declare-exchange", "logs", "topic", "--durable") == (0, "", "")
    assert run("declare-exchange", "logs", "topic", "--durable") == (0, "", "")
    refused = run("declare-exchange", "logs", "fanout", "--durable")
    assert refused.code == 1 and one_line_error(refused) and "inequivalent arg 'type'" in refused.err
    assert run("declare-exchange", "ae", "fanout", "--internal", "--auto-delete",
               "--argument", "alternate-exchange=logs") == (0, "", "")
    assert run("declare-exchange", "bad", "nonsense").code == 2
    assert rows(db_path, "SELECT name, type, durable, auto_delete, internal, arguments FROM litemq_exchanges "
                         "WHERE name NOT LIKE 'amq.%' ORDER BY name") == [
        ("ae", "fanout", 0, 1, 1, '{"alternate-exchange":"logs"}'), ("logs", "topic", 1, 0, 0, None)]


def test_bind_and_unbind_change_where_messages_go(world: str, run: Callable[..., Result]) -> None:
    assert run("declare-queue", "errors") == (0, "errors\n", "")
    assert run("bind", "errors", "logs", "*.error") == (0, "", "")
    assert run("route", "logs", "app.error").out == "jobs\naudit\nerrors\n"
    assert run("unbind", "errors", "logs", "*.error") == (0, "", "")
    assert run("route", "logs", "app.error").out == "jobs\naudit\n"
    assert run("unbind", "errors", "logs", "*.error") == (0, "", "")  # as in RabbitMQ, unbinding twice is fine


def test_bind_takes_binding_arguments_for_a_headers_exchange(world: str, run: Callable[..., Result]) -> None:
    assert run("bind", "jobs", "amq.headers", "--argument", "x-match=any", "--argument", "format=pdf",
               "--argument", "size=10") == (0, "", "")
    assert run("route", "amq.headers", "", "--header", "size=10").out == "jobs\n"
    assert run("route", "amq.headers", "", "--header", "size=\"10\"").out == ""  # the string "10" is not 10
    assert run("unbind", "jobs", "amq.headers", "--argument", "x-match=any", "--argument", "format=pdf",
               "--argument", "size=10") == (0, "", "")
    assert run("route", "amq.headers", "", "--header", "size=10").out == ""


def test_the_default_exchange_cannot_be_bound(world: str, run: Callable[..., Result]) -> None:
    for name in ("", "amq.default"):
        refused = run("bind", "jobs", name, "jobs")
        assert refused.code == 1 and one_line_error(refused) and "default exchange" in refused.err


def test_delete_queue_prints_how_many_messages_went_with_it(world: str, run: Callable[..., Result]) -> None:
    refused = run("delete-queue", "jobs", "--if-empty")
    assert refused.code == 1 and one_line_error(refused) and "not empty" in refused.err
    assert run("delete-queue", "jobs") == (0, "2\n", "")
    assert rows(world, "SELECT count(*) FROM litemq_messages WHERE queue = 'jobs'") == [(0,)]
    assert rows(world, "SELECT destination FROM litemq_bindings") == [("audit",)]
    gone = run("delete-queue", "jobs")
    assert gone.code == 1 and gone.err == f"litemq: queue 'jobs' not found in {world}\n"


def test_delete_queue_if_unused_refuses_a_queue_with_consumers(world: str, conn: litemq.Connection,
                                                               run: Callable[..., Result]) -> None:
    conn.consume("jobs")
    refused = run("delete-queue", "jobs", "--if-unused")
    assert refused.code == 1 and one_line_error(refused) and "in use" in refused.err
    assert conn.declare_queue("jobs", passive=True).message_count == 2


def test_delete_exchange_removes_it_and_its_bindings(world: str, run: Callable[..., Result]) -> None:
    refused = run("delete-exchange", "logs", "--if-unused")
    assert refused.code == 1 and one_line_error(refused) and "in use" in refused.err
    assert run("delete-exchange", "logs") == (0, "", "")
    assert rows(world, "SELECT count(*) FROM litemq_bindings") == [(0,)]
    gone = run("delete-exchange", "logs")
    assert gone.code == 1 and gone.err == f"litemq: exchange 'logs' not found in {world}\n"
    builtin = run("delete-exchange", "amq.topic")
    assert builtin.code == 1 and one_line_error(builtin)


def test_purge_deletes_the_ready_messages_and_prints_how_many(world: str, conn: litemq.Connection,
                                                              run: Callable[..., Result]) -> None:
    held = conn.get("audit")
    assert held is not None and held.body == b"first"
    assert run("purge", "audit") == (0, "2\n", "")
    assert bodies(world, "audit") == [b"first"]  # the unacked one stays with its consumer
    assert counter_mismatches(world) == []
    assert run("purge", "audit") == (0, "0\n", "")
    held.ack()


def test_an_exclusive_queue_of_another_connection_is_refused_but_readable(world: str, conn: litemq.Connection,
                                                                          run: Callable[..., Result]) -> None:
    conn.declare_queue("private", exclusive=True)
    conn.publish("", "private", b"secret")
    for args in (("get", "private"), ("purge", "private"), ("delete-queue", "private"),
                 ("bind", "private", "logs", "x"), ("move", "private", "jobs")):
        refused = run(*args)
        assert refused.code == 1 and one_line_error(refused) and "exclusive" in refused.err, args
    assert json.loads(run("peek", "private", "--json").out)[0]["body"] == "secret"
    assert conn.get("private", auto_ack=True).body == b"secret"


# ---------------------------------------------------------------------------------------------------------------
# publish
# ---------------------------------------------------------------------------------------------------------------

def test_publish_takes_the_body_from_the_argument(world: str, run: Callable[..., Result]) -> None:
    assert run("publish", "logs", "app.new", "hello world") == (0, "published to 2 queues\n", "")
    assert bodies(world, "jobs")[-1] == b"hello world"
    assert bodies(world, "audit")[-1] == b"hello world"
    assert rows(world, "SELECT exchange, routing_key, properties FROM litemq_messages ORDER BY id DESC LIMIT 1") == [
        ("logs", "app.new", None)]


@pytest.mark.parametrize("body_args", [["-"], []], ids=["dash", "no-body"])
def test_publish_reads_the_whole_of_standard_input_as_one_body(db_path: str, run: Callable[..., Result],
                                                               body_args: list[str]) -> None:
    run("declare-queue", "q")
    data = b"line one\nline two\r\n\x00\xff binary too\n"
    assert run("publish", "", "q", *body_args, stdin=data) == (0, "published to 1 queue\n", "")
    assert bodies(db_path, "q") == [data]


def test_publish_lines_makes_each_line_of_standard_input_a_message(db_path: str, run: Callable[..., Result]) -> None:
    run("declare-queue", "q")
    assert run("publish", "", "q", "--lines", stdin=b"one\ntwo\r\nthree") == (
        0, "published 3 messages, each to 1 queue\n", "")
    assert run("publish", "", "q", "-", "--lines", stdin=b"four\n") == (0, "published to 1 queue\n", "")
    assert bodies(db_path, "q") == [b"one", b"two", b"three", b"four"]


def test_publish_lines_with_empty_input_publishes_nothing_and_says_so(db_path: str,
                                                                       run: Callable[..., Result]) -> None:
    run("declare-queue", "q")
    assert run("publish", "", "q", "--lines", stdin=b"") == (
        0, "published nothing: standard input had no lines\n", "")
    assert bodies(db_path, "q") == []


def test_publish_lines_with_a_body_argument_is_a_usage_error(db_path: str, run: Callable[..., Result]) -> None:
    # --lines reads standard input; a BODY given as well would be silently ignored.
    run("declare-queue", "q")
    result = run("publish", "", "q", "hello", "--lines", stdin=b"one\n")
    assert result.code == 2 and "--lines" in result.err
    assert bodies(db_path, "q") == []


def test_publish_sets_properties_and_headers_with_their_types(db_path: str, run: Callable[..., Result]) -> None:
    run("declare-queue", "q")
    assert run("publish", "amq.default", "q", "body",
               "--property", "content_type=application/json", "--property", "delivery_mode=2",
               "--property", "priority=5", "--property", "timestamp=1700000000",
               "--property", "correlation_id=42", "--property", "expiration=60000",
               "--header", "n=1", "--header", "ratio=0.5", "--header", "flag=true", "--header", 's="1"',
               "--header", "word=hello", "--header", "list=[1,\"a\"]", "--header", "none=null",
               "--header", "empty=") == (0, "published to 1 queue\n", "")
    with litemq.connect(db_path) as conn:
        delivery = conn.get("q", auto_ack=True)
    assert delivery is not None and delivery.exchange == ""
    assert delivery.properties == Properties(
        content_type="application/json", delivery_mode=2, priority=5, timestamp=1700000000, correlation_id="42",
        expiration="60000",
        headers={"n": 1, "ratio": 0.5, "flag": True, "s": "1", "word": "hello", "list": [1, "a"], "none": None,
                 "empty": ""})


def test_publish_of_an_unroutable_message_warns_and_stores_nothing(world: str, run: Callable[..., Result]) -> None:
    before = state(world)
    result = run("publish", "amq.direct", "nobody", "lost")
    assert result.code == 0 and result.out == "published to 0 queues\n"
    assert one_line_error(result) and "unroutable" in result.err
    assert f"in {world}" in result.err and "exchange 'amq.direct' with routing key 'nobody'" in result.err
    assert run("publish", "", "no-such-queue", "lost").err.startswith("litemq: unroutable")
    assert state(world) == before


def test_declare_exchange_makes_a_delayed_message_exchange(world: str, run: Callable[..., Result]) -> None:
    assert run("declare-exchange", "later", "x-delayed-message", "--argument", "x-delayed-type=direct").code == 0
    assert rows(world, "SELECT type, arguments FROM litemq_exchanges WHERE name = 'later'") == [
        ("x-delayed-message", '{"x-delayed-type":"direct"}')]


class Terminal(io.BytesIO):
    def isatty(self) -> bool:
        return True


def test_publish_without_a_body_refuses_a_terminal_with_a_hint_and_reads_nothing(
        db_path: str, run: Callable[..., Result], monkeypatch: pytest.MonkeyPatch) -> None:
    run("declare-queue", "q")
    for args in ([], ["--lines"]):
        typed = Terminal(b"would wait for this")
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(typed))
        result = run("publish", "", "q", *args)
        assert result.code == 2 and one_line_error(result), result.err
        assert "standard input is a terminal" in result.err and "give BODY" in result.err
        assert typed.tell() == 0  # nothing was read
    assert bodies(db_path, "q") == []


def test_publish_as_a_process_on_a_terminal_refuses_at_once_but_dash_reads_what_is_typed(
        db_path: str, subprocess_env: dict[str, str]) -> None:
    import pty

    command(["--db", db_path, "declare-queue", "q"], subprocess_env)
    for args, typed, code in (([], None, 2), (["-"], b"typed here\n\x04", 0)):
        controller, terminal = pty.openpty()
        try:
            process = subprocess.Popen([PYTHON, "-m", "litemq", "--db", db_path, "publish", "", "q", *args],
                                       env=subprocess_env, stdin=terminal, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE)
            os.close(terminal)
            if typed is not None:
                os.write(controller, typed)
            try:
                out, err = process.communicate(timeout=PROCESS_TIMEOUT)
            finally:
                if process.poll() is None:
                    os.kill(process.pid, signal.SIGKILL)
                    process.wait(PROCESS_TIMEOUT)
        finally:
            os.close(controller)
        assert process.returncode == code, err
        assert b"Traceback" not in err and len(err.splitlines()) == (1 if code else 0)
    assert bodies(db_path, "q") == [b"typed here\n"]


def test_an_empty_body_is_published_only_when_body_option_says_so(db_path: str, run: Callable[..., Result]) -> None:
    run("declare-queue", "q")
    for args, stdin in ((["", "--property", "priority=1"], None), ([], b""), (["-"], b"")):
        refused = run("publish", "", "q", *args, stdin=stdin)
        assert refused.code == 2 and one_line_error(refused) and "--body ''" in refused.err, args
    assert bodies(db_path, "q") == []
    assert run("publish", "", "q", "--body", "") == (0, "published to 1 queue\n", "")
    assert run("publish", "", "q", "--body", "-starts with a dash") == (0, "published to 1 queue\n", "")
    assert bodies(db_path, "q") == [b"", b"-starts with a dash"]
    for args in (["x", "--body", "y"], ["--lines", "--body", "y"]):
        refused = run("publish", "", "q", *args, stdin=b"z\n")
        assert refused.code == 2 and one_line_error(refused), args
    assert bodies(db_path, "q") == [b"", b"-starts with a dash"]


def test_publish_quiet_prints_nothing_but_still_warns_of_an_unroutable_message(world: str,
                                                                               run: Callable[..., Result]) -> None:
    assert run("publish", "logs", "app.q", "hi", "--quiet") == (0, "", "")
    assert run("publish", "-q", "logs", "db.q", "hi") == (0, "", "")
    assert bodies(world, "audit")[-2:] == [b"hi", b"hi"]
    lost = run("publish", "amq.direct", "nobody", "lost", "--quiet")
    assert lost.out == "" and lost.err.startswith("litemq: unroutable")


def test_publish_lines_counts_messages_that_reach_different_numbers_of_queues(
        world: str, run: Callable[..., Result]) -> None:
    # queue length limits aside, one command's messages share their route: the count is per message
    assert run("publish", "logs", "app.x", "--lines", stdin=b"a\nb\n\nc\n") == (
        0, "published 4 messages, each to 2 queues\n", "")
    assert bodies(world, "jobs")[-4:] == [b"a", b"b", b"", b"c"]  # a blank line is a message, as every line is
    # bindings changed by another process while the lines go out: each message counts the queues it reached
    from litemq.cli.messages import _published
    assert _published([2, 1, 2]) == "published 3 messages, each to 1 to 2 queues (5 copies)"


# ---------------------------------------------------------------------------------------------------------------
# get and peek
# ---------------------------------------------------------------------------------------------------------------

def test_get_requeues_with_the_redelivered_mark_unless_ack(world: str, run: Callable[..., Result]) -> None:
    first = run("get", "jobs", "--json")
    assert first.code == 0
    assert json.loads(first.out) == [{"exchange": "logs", "routing_key": "app.info", "redelivered": False,
                                      "properties": {"content_type": "text/plain"}, "body": "first",
                                      "body_encoding": "text"}]
    assert rows(world, "SELECT body, delivery_count, lease_token FROM litemq_messages WHERE queue = 'jobs' "
                       "ORDER BY id") == [(b"first", 1, None), (b"\xff\x00binary", 0, None)]
    again = run("get", "jobs", "-n", "5", "--requeue", "--json")
    assert [(m["body"], m["redelivered"]) for m in json.loads(again.out)] == [
        ("first", True), ("/wBiaW5hcnk=", False)]
    assert bodies(world, "jobs") == [b"first", b"\xff\x00binary"]  # requeued in their places
    taken = run("get", "jobs", "-n", "1", "--ack", "--json")
    assert [m["body"] for m in json.loads(taken.out)] == ["first"]
    assert bodies(world, "jobs") == [b"\xff\x00binary"]
    assert counter_mismatches(world) == []


def test_get_prints_a_table(world: str, run: Callable[..., Result]) -> None:
    assert run("get", "jobs", "-n", "2").out == (
        "exchange  routing_key  redelivered  properties                     body\n"
        "logs      app.info     no           {\"content_type\":\"text/plain\"}  first\n"
        "logs      app.error    no           {}                             \\xff\\x00binary\n")


def test_get_from_an_empty_queue_prints_nothing_and_succeeds(world: str, run: Callable[..., Result]) -> None:
    run("purge", "jobs")
    assert run("get", "jobs") == (0, "", "")
    assert run("get", "jobs", "--json").out == "[]\n"
    assert run("get", "jobs", "--ack", "--requeue").code == 2


def test_peek_shows_the_first_ready_messages_without_taking_them(world: str, conn: litemq.Connection,
                                                                 run: Callable[..., Result]) -> None:
    held = conn.get("audit")  # "first" is unacked: peek shows only ready messages
    assert held is not None
    before = state(world)
    result = run("peek", "audit", "--json")
    assert result.code == 0
    assert json.loads(result.out) == [
        {"exchange": "logs", "routing_key": "app.error", "redelivered": False, "properties": {},
         "body": "/wBiaW5hcnk=", "body_encoding": "base64"},
        {"exchange": "logs", "routing_key": "db.info", "redelivered": False, "properties": {}, "body": "naïve",
         "body_encoding": "text"}]
    assert [m["body"] for m in json.loads(run("peek", "audit", "-n", "1", "--json").out)] == ["/wBiaW5hcnk="]
    assert state(world) == before  # no lease, no delivery count, nothing written
    held.nack()
    assert json.loads(run("peek", "audit", "-n", "1", "--json").out)[0]["redelivered"] is True
    assert conn.get("audit", auto_ack=True).delivery_count == 2  # peeking did not count as a delivery


def test_peek_shows_messages_in_delivery_order_by_priority_and_not_delayed_ones(db_path: str, conn: litemq.Connection,
                                                                            run: Callable[..., Result]) -> None:
    conn.declare_queue("urgent", arguments={"x-max-priority": 9})
    conn.publish("", "urgent", b"low", Properties(priority=1))
    conn.publish("", "urgent", b"not yet", Properties(priority=9), delay=3600)
    conn.publish("", "urgent", b"high", Properties(priority=9))
    assert [m["body"] for m in json.loads(run("peek", "urgent", "--json").out)] == ["high", "low"]
    assert [conn.get("urgent", auto_ack=True).body for _ in range(2)] == [b"high", b"low"]


def test_peek_prints_a_table_with_utf8_bodies_as_text_and_others_escaped(world: str,
                                                                         run: Callable[..., Result]) -> None:
    assert run("peek", "audit").out == (
        "exchange  routing_key  redelivered  properties                     body\n"
        "logs      app.info     no           {\"content_type\":\"text/plain\"}  first\n"
        "logs      app.error    no           {}                             \\xff\\x00binary\n"
        "logs      db.info      no           {}                             naïve\n")


def test_peek_of_an_empty_queue_prints_nothing_and_of_a_missing_one_is_refused(world: str,
                                                                               run: Callable[..., Result]) -> None:
    run("purge", "jobs")
    assert run("peek", "jobs") == (0, "", "")
    assert run("peek", "jobs", "--json").out == "[]\n"
    assert run("peek", "nope") == (1, "", f"litemq: queue 'nope' not found in {world}\n")


def test_a_table_keeps_one_message_per_line_and_utf8_text_readable(db_path: str, run: Callable[..., Result]) -> None:
    # Control characters are escaped so that each row stays on one line; UTF-8 text stays text (é is not \xe9,
    # which would read as the Latin-1 byte).
    run("declare-queue", "q")
    run("publish", "", "q", "café\nbar")
    assert run("peek", "q").out.splitlines()[1].endswith("  café\\nbar")
    assert json.loads(run("peek", "q", "--json").out)[0]["body"] == "café\nbar"


def test_the_default_exchange_reads_amq_default_in_message_tables(db_path: str, run: Callable[..., Result]) -> None:
    # As in `litemq exchanges`: a blank first column reads as a missing value (JSON keeps "").
    run("declare-queue", "q")
    run("publish", "", "q", "x")
    assert run("peek", "q").out.splitlines()[1].split()[0] == "amq.default"
    assert json.loads(run("peek", "q", "--json").out)[0]["exchange"] == ""


def test_base64_and_raw_give_bodies_exactly(world: str, run: Callable[..., Result]) -> None:
    encoded = json.loads(run("peek", "jobs", "--base64", "--json").out)
    assert [m["body"] for m in encoded] == ["Zmlyc3Q=", "/wBiaW5hcnk="]
    table = run("get", "jobs", "-n", "2", "--base64").out.splitlines()
    assert [line.split()[-1] for line in table[1:]] == ["Zmlyc3Q=", "/wBiaW5hcnk="]
    assert run("peek", "jobs", "--raw", "--base64").code == 2
    for command_line in (["peek", "jobs"], ["get", "jobs"], ["tail", "logs"]):
        both = run(*command_line, "--raw", "--json")
        assert both.code == 2 and one_line_error(both) and "give one of them" in both.err, command_line


def test_raw_writes_exactly_the_bodies_bytes_with_nothing_added(world: str,
                                                                  capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    assert cli.main(["--db", world, "get", "jobs", "-n", "1", "--raw", "--ack"]) == 0
    assert capsysbinary.readouterr().out == b"first"  # no newline: `litemq get q --raw > file` is the body
    assert cli.main(["--db", world, "get", "jobs", "--raw"]) == 0
    assert capsysbinary.readouterr().out == b"\xff\x00binary"
    assert cli.main(["--db", world, "peek", "audit", "--raw"]) == 0  # several: one after another
    assert capsysbinary.readouterr().out == b"first\xff\x00binaryna\xc3\xafve"


def test_json_says_how_each_body_is_encoded_so_bytes_never_read_as_text(db_path: str,
                                                                        run: Callable[..., Result]) -> None:
    run("declare-queue", "q")
    run("publish", "", "q", "--body", "\\xff")  # text: a backslash, x, f, f
    with litemq.connect(db_path) as conn:
        conn.publish("", "q", b"\xff")  # one byte that is not UTF-8
    expected = [("\\xff", "text"), ("/w==", "base64")]
    peeked = json.loads(run("peek", "q", "--json").out)
    assert [(m["body"], m["body_encoding"]) for m in peeked] == expected
    assert [(m["body"], m["body_encoding"]) for m in json.loads(run("get", "q", "-n", "2", "--json").out)] == expected
    encoded = json.loads(run("peek", "q", "--json", "--base64").out)
    assert [(m["body"], m["body_encoding"]) for m in encoded] == [("XHhmZg==", "base64"), ("/w==", "base64")]
    decoded = [m["body"].encode() if m["body_encoding"] == "text" else base64.b64decode(m["body"]) for m in peeked]
    assert decoded == bodies(db_path, "q")


def test_names_and_keys_print_with_control_characters_escaped(db_path: str, run: Callable[..., Result]) -> None:
    evil = "evil\x1b[2J\x07"
    assert run("declare-queue", evil) == (0, "evil\\x1b[2J\\x07\n", "")
    run("bind", evil, "amq.direct", evil)
    assert run("route", "amq.direct", evil) == (0, "evil\\x1b[2J\\x07\n", "")
    assert run("route", "amq.direct", evil, "--json").out == json.dumps([evil]) + "\n"
    assert "\x1b" not in run("queues").out and "\x1b" not in run("bindings").out


# ---------------------------------------------------------------------------------------------------------------
# tail
# ---------------------------------------------------------------------------------------------------------------

def tail_queues(path: str) -> list[str]:
    """The temporary queues tails have bound (server-named)."""
    return [name for (name,) in rows(path, "SELECT name FROM litemq_queues WHERE name LIKE 'amq.gen-%'")]


def publish_once_tailing(path: str, messages: list[tuple[str, str, bytes]], errors: list[BaseException]) -> None:
    """In a thread: once a tail's queue is bound, publish the messages."""
    try:
        assert wait_until(lambda: len(tail_queues(path)) == 1 and rows(
            path, "SELECT count(*) FROM litemq_bindings WHERE destination LIKE 'amq.gen-%'")[0][0] == 1)
        with litemq.connect(path) as conn:
            for exchange, key, body in messages:
                conn.publish(exchange, key, body)
    except BaseException as exc:  # reported by the test
        errors.append(exc)


def test_tail_prints_what_is_routed_after_it_started_and_takes_nothing_from_others(
        world: str, conn: litemq.Connection, run: Callable[..., Result]) -> None:
    audit = conn.consume("audit", prefetch=10)
    errors: list[BaseException] = []
    thread = threading.Thread(target=publish_once_tailing, args=(world, [
        ("logs", "app.one", b"one"), ("logs", "db.two", b"\xfe two"), ("logs", "", b"three")], errors))
    thread.start()
    result = run("tail", "logs", "--count", "3")
    thread.join(PROCESS_TIMEOUT)
    assert not errors
    assert result == (0, "app.one  one\ndb.two  \\xfe two\n-  three\n", "")
    # the messages that were already there, and the other queues' copies, are untouched
    assert [audit.get(10).body for _ in range(6)] == [b"first", b"\xff\x00binary", "naïve".encode(), b"one",
                                                     b"\xfe two", b"three"]
    assert bodies(world, "jobs") == [b"first", b"\xff\x00binary", b"one"]
    assert tail_queues(world) == []  # the temporary queue went with the command
    assert rows(world, "SELECT count(*) FROM litemq_bindings") == [(2,)]


def test_tail_json_prints_one_object_per_message(world: str, run: Callable[..., Result]) -> None:
    errors: list[BaseException] = []
    thread = threading.Thread(target=publish_once_tailing, args=(world, [("logs", "app.x", b"hi")], errors))
    thread.start()
    result = run("tail", "logs", "app.*", "--count", "1", "--json")
    thread.join(PROCESS_TIMEOUT)
    assert not errors and result.code == 0
    assert [json.loads(line) for line in result.out.splitlines()] == [
        {"exchange": "logs", "routing_key": "app.x", "redelivered": False, "properties": {}, "body": "hi",
         "body_encoding": "text"}]


def test_tail_binds_with_the_given_key_or_header_arguments(world: str, run: Callable[..., Result]) -> None:
    errors: list[BaseException] = []
    messages = [("logs", "db.info", b"not this one"), ("logs", "app.info", b"this one")]
    thread = threading.Thread(target=publish_once_tailing, args=(world, messages, errors))
    thread.start()
    assert run("tail", "logs", "app.#", "--count", "1") == (0, "app.info  this one\n", "")
    thread.join(PROCESS_TIMEOUT)
    assert not errors

    with litemq.connect(world) as conn:
        conn.declare_exchange("events", "headers")
        assert wait_until(lambda: tail_queues(world) == [])

    def publish_with_headers() -> None:
        try:
            assert wait_until(lambda: len(tail_queues(world)) == 1 and rows(
                world, "SELECT count(*) FROM litemq_bindings WHERE destination LIKE 'amq.gen-%'")[0][0] == 1)
            with litemq.connect(world) as conn:
                conn.publish("events", "", b"plain", Properties(headers={"format": "txt"}))
                conn.publish("events", "", b"a pdf", Properties(headers={"format": "pdf"}))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=publish_with_headers)
    thread.start()
    assert run("tail", "events", "--header", "format=pdf", "--count", "1") == (0, "-  a pdf\n", "")
    thread.join(PROCESS_TIMEOUT)
    assert not errors


def test_tail_escapes_keys_and_bodies_and_its_json_says_the_encoding(world: str, run: Callable[..., Result]) -> None:
    errors: list[BaseException] = []
    messages = [("logs", "app.\x1b[31m", b"red\x1b[0m\n"), ("logs", "app.bin", b"\xff")]
    thread = threading.Thread(target=publish_once_tailing, args=(world, messages, errors))
    thread.start()
    assert run("tail", "logs", "--count", "2") == (0, "app.\\x1b[31m  red\\x1b[0m\\n\napp.bin  \\xff\n", "")
    thread.join(PROCESS_TIMEOUT)
    assert not errors
    assert wait_until(lambda: tail_queues(world) == [])
    thread = threading.Thread(target=publish_once_tailing, args=(world, messages, errors))
    thread.start()
    result = run("tail", "logs", "--count", "2", "--json")
    thread.join(PROCESS_TIMEOUT)
    assert not errors
    assert [(m["routing_key"], m["body"], m["body_encoding"]) for m in map(json.loads, result.out.splitlines())] == [
        ("app.\x1b[31m", "red\x1b[0m\n", "text"), ("app.bin", "/w==", "base64")]


def test_tail_refuses_the_default_exchange_and_a_missing_one(world: str, run: Callable[..., Result]) -> None:
    for name in ("", "amq.default"):
        refused = run("tail", name)
        assert refused.code == 2 and one_line_error(refused)
    missing = run("tail", "nope")
    assert missing == (1, "", f"litemq: exchange 'nope' not found in {world}\n")
    assert tail_queues(world) == []


def test_tail_count_must_be_at_least_one(world: str, subprocess_env: dict[str, str]) -> None:
    # Run as a process: a tail that took --count 0 as "no limit" would wait for messages forever.
    tail = subprocess.Popen([PYTHON, "-m", "litemq", "--db", world, "tail", "logs", "--count", "0"],
                            env=subprocess_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = tail.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        os.kill(tail.pid, signal.SIGKILL)
        tail.communicate()
        pytest.fail("litemq tail --count 0 did not return")
    assert tail.returncode == 2 and "Traceback" not in err


def test_tail_as_a_process_stops_cleanly_on_ctrl_c(world: str, conn: litemq.Connection,
                                                   subprocess_env: dict[str, str]) -> None:
    audit = conn.consume("audit", prefetch=10)
    # Ctrl-C as a terminal gives it, even when this suite runs as a background job (SIGINT ignored, inherited)
    tail = subprocess.Popen([PYTHON, "-m", "litemq", "--db", world, "tail", "logs"], env=subprocess_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=default_signals)
    try:
        assert wait_until(lambda: len(tail_queues(world)) == 1 and conn.route("logs", "x.y") != ["audit"])
        conn.publish("logs", "app.live", b"as it arrives")
        assert tail.stdout is not None and tail.stdout.readline() == "app.live  as it arrives\n"
        tail.send_signal(signal.SIGINT)
        out, err = tail.communicate(timeout=PROCESS_TIMEOUT)
    finally:
        if tail.poll() is None:
            os.kill(tail.pid, signal.SIGKILL)
            tail.wait(PROCESS_TIMEOUT)
    assert tail.returncode == 0
    assert out == "" and err == ""  # no traceback, no "KeyboardInterrupt"
    assert tail_queues(world) == []
    assert [audit.get(10).body for _ in range(4)] == [b"first", b"\xff\x00binary", "naïve".encode(),
                                                     b"as it arrives"]
    assert bodies(world, "jobs") == [b"first", b"\xff\x00binary", b"as it arrives"]


def ignoring_sigint() -> None:
    """preexec_fn: the child starts as a background job of a shell without job control does, SIGINT ignored."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def test_tail_as_a_background_job_keeps_ctrl_c_ignored_and_stops_cleanly_on_sigterm(
        world: str, conn: litemq.Connection, subprocess_env: dict[str, str]) -> None:
    # A job started with `&` (or under nohup from a script) is not the terminal's to interrupt: litemq leaves the
    # SIGINT it inherited ignored, as any program does, and stops on SIGTERM, removing its queue.
    tail = subprocess.Popen([PYTHON, "-m", "litemq", "--db", world, "tail", "logs"], env=subprocess_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=ignoring_sigint)
    try:
        assert wait_until(lambda: len(tail_queues(world)) == 1 and conn.route("logs", "x.y") != ["audit"])
        tail.send_signal(signal.SIGINT)
        conn.publish("logs", "app.after", b"still tailing")
        assert tail.stdout is not None and tail.stdout.readline() == "app.after  still tailing\n"
        assert tail.poll() is None
        tail.send_signal(signal.SIGTERM)
        out, err = tail.communicate(timeout=PROCESS_TIMEOUT)
    finally:
        if tail.poll() is None:
            os.kill(tail.pid, signal.SIGKILL)
            tail.wait(PROCESS_TIMEOUT)
    assert "Traceback" not in err and out == ""
    assert wait_until(lambda: tail_queues(world) == [])


# ---------------------------------------------------------------------------------------------------------------
# route: a dry run
# ---------------------------------------------------------------------------------------------------------------

def test_route_names_the_queues_a_message_would_reach_and_publishes_nothing(world: str,
                                                                            run: Callable[..., Result]) -> None:
    before = state(world)
    assert run("route", "logs", "app.info") == (0, "jobs\naudit\n", "")
    assert run("route", "logs", "db.info", "--json") == (0, '["audit"]\n', "")
    assert run("route", "amq.topic", "app.info") == (0, "", "")
    assert run("route", "amq.topic", "app.info", "--json") == (0, "[]\n", "")
    assert state(world) == before


def test_route_follows_exchange_to_exchange_bindings_and_headers(world: str, run: Callable[..., Result]) -> None:
    with litemq.connect(world) as conn:
        conn.bind_exchange("logs", "amq.fanout")
        conn.bind_queue("jobs", "amq.headers", "", {"x-match": "all", "format": "pdf", "pages": 2})
    assert run("route", "amq.fanout", "app.x", "--json").out == '["jobs", "audit"]\n'
    assert run("route", "amq.headers", "", "--header", "format=pdf", "--header", "pages=2").out == "jobs\n"
    assert run("route", "amq.headers", "", "--header", "format=pdf").out == ""


def test_route_through_the_default_exchange_names_the_queue_if_it_exists(world: str,
                                                                         run: Callable[..., Result]) -> None:
    assert run("route", "", "jobs").out == "jobs\n"
    assert run("route", "amq.default", "jobs", "--json").out == '["jobs"]\n'
    assert run("route", "", "nope", "--json") == (0, "[]\n", "")


# ---------------------------------------------------------------------------------------------------------------
# move: redriving a dead-letter queue
# ---------------------------------------------------------------------------------------------------------------

def test_move_redrives_a_dead_letter_queue_in_order_to_the_end_of_another(db_path: str, conn: litemq.Connection,
                                                                         run: Callable[..., Result]) -> None:
    conn.declare_queue("work")
    conn.declare_queue("dead")
    conn.publish("", "work", b"already waiting")
    for i in range(1, 6):
        conn.publish("", "dead", f"m{i}", Properties(message_id=str(i), headers={"x-death": [{"count": i}]}))
    held = conn.get("dead")  # m1 is being looked at by someone: it stays
    assert held is not None and held.body == b"m1"

    assert run("move", "dead", "work", "--limit", "2") == (0, "2\n", "")
    assert bodies(db_path, "work") == [b"already waiting", b"m2", b"m3"]
    assert run("move", "dead", "work") == (0, "2\n", "")
    assert run("move", "dead", "work") == (0, "0\n", "")
    assert bodies(db_path, "work") == [b"already waiting", b"m2", b"m3", b"m4", b"m5"]
    assert bodies(db_path, "dead") == [b"m1"]
    assert counter_mismatches(db_path) == []
    assert conn.declare_queue("work", passive=True).message_count == 5
    assert conn.declare_queue("dead", passive=True).message_count == 0

    moved = [conn.get("work", auto_ack=True) for _ in range(5)][1:]
    assert [(d.properties.message_id, d.properties.headers) for d in moved] == [
        (str(i), {"x-death": [{"count": i}]}) for i in range(2, 6)]
    held.ack()  # the one that stayed is still held by its consumer
    assert bodies(db_path, "dead") == []


def test_move_carries_large_bodies_in_order_and_leaves_none_behind(db_path: str, conn: litemq.Connection,
                                                                   run: Callable[..., Result]) -> None:
    large = bytes(range(256)) * 100
    conn.declare_queue("from")
    conn.declare_queue("to")
    conn.publish_many("", "from", [b"small", large, b"after", large[::-1]])
    peeked = json.loads(run("peek", "from", "--json", "--base64").out)
    assert [base64.b64decode(m["body"]) for m in peeked] == [b"small", large, b"after", large[::-1]]

    assert run("move", "from", "to") == (0, "4\n", "")
    assert bodies(db_path, "to") == [b"small", large, b"after", large[::-1]]
    assert counter_mismatches(db_path) == []
    on_sqlite = engine_of(db_path) == "sqlite"  # where large bodies are kept in litemq_bodies
    if on_sqlite:
        assert rows(db_path, "SELECT count(*) FROM litemq_bodies b JOIN litemq_messages m ON m.id = b.id "
                             "WHERE m.queue = 'to'") == [(2,)]
        assert rows(db_path, "SELECT count(*) FROM litemq_bodies") == [(2,)]
    assert [conn.get("to", auto_ack=True).body for _ in range(4)] == [b"small", large, b"after", large[::-1]]
    assert rows(db_path, "SELECT count(*) FROM litemq_bodies") == [(0,)]


def test_move_takes_ready_messages_in_delivery_order_and_leaves_delayed_ones(db_path: str, conn: litemq.Connection,
                                                                             run: Callable[..., Result]) -> None:
    conn.declare_queue("urgent", arguments={"x-max-priority": 9, "x-message-ttl": 3_600_000})
    conn.declare_queue("plain")
    conn.publish("", "urgent", b"low", Properties(priority=1))
    conn.publish("", "urgent", b"high", Properties(priority=9))
    conn.publish("", "urgent", b"not yet", delay=3600)

    assert run("move", "urgent", "plain") == (0, "2\n", "")
    assert counter_mismatches(db_path) == []
    assert rows(db_path, "SELECT body, priority, expires_at IS NOT NULL FROM litemq_messages WHERE queue = 'plain' "
                         "ORDER BY id") == [(b"high", 0, 1), (b"low", 0, 1)]
    assert rows(db_path, "SELECT body, visible_at IS NOT NULL FROM litemq_messages WHERE queue = 'urgent'") == [
        (b"not yet", 1)]
    assert [conn.get("plain", auto_ack=True).body for _ in range(2)] == [b"high", b"low"]


def test_move_refuses_a_missing_queue_and_the_same_queue_twice(world: str, run: Callable[..., Result]) -> None:
    before = state(world)
    for args, code in ((("nope", "jobs"), 1), (("jobs", "nope"), 1), (("jobs", "jobs"), 2),
                       (("jobs", "audit", "--limit", "0"), 2)):
        refused = run("move", *args)
        assert refused.code == code and one_line_error(refused), args
    assert state(world) == before


def test_move_delivers_to_a_consumer_waiting_on_the_destination(world: str, conn: litemq.Connection,
                                                          run: Callable[..., Result]) -> None:
    run("declare-queue", "work")
    got: list[bytes] = []
    consumer = conn.consume("work", auto_ack=True)

    def receive() -> None:
        for _ in range(2):
            delivery = consumer.get(PROCESS_TIMEOUT)
            if delivery is not None:
                got.append(delivery.body)

    thread = threading.Thread(target=receive)
    thread.start()
    assert run("move", "jobs", "work") == (0, "2\n", "")
    thread.join(PROCESS_TIMEOUT)
    assert got == [b"first", b"\xff\x00binary"]


# ---------------------------------------------------------------------------------------------------------------
# stats
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.sqlite_only
def test_stats_gives_messages_and_bytes_per_queue_totals_and_file_sizes(world: str, conn: litemq.Connection,
                                                                        run: Callable[..., Result]) -> None:
    conn.declare_queue("empty")
    held = conn.get("jobs")  # unacked messages count, and their bytes
    assert held is not None
    with plain(world) as db, db:
        db.execute("UPDATE litemq_messages SET published_at = published_at - 100 WHERE queue = 'audit'")
    result = run("stats", "--json")
    assert result.code == 0
    stats = json.loads(result.out)
    ages = {q["queue"]: q.pop("oldest_ready_seconds") for q in stats["queues"]}
    sizes = {name: stats["totals"].pop(name) for name in ("file_bytes", "wal_bytes")}
    assert stats == {
        "queues": [
            {"queue": "audit", "messages": 3, "ready": 3, "unacked": 0, "bytes": 5 + 8 + 6},
            {"queue": "empty", "messages": 0, "ready": 0, "unacked": 0, "bytes": 0},
            {"queue": "jobs", "messages": 2, "ready": 1, "unacked": 1, "bytes": 5 + 8},
        ],
        "totals": {"messages": 5, "bytes": 32},
    }
    assert 99 <= ages["audit"] < 160 and 0 <= ages["jobs"] < 60 and ages["empty"] is None
    page_size = rows(world, "PRAGMA page_size")[0][0]
    assert sizes["file_bytes"] > 0 and sizes["file_bytes"] % page_size == 0
    assert sizes["wal_bytes"] == 0 or (sizes["wal_bytes"] - 32) % (24 + page_size) == 0  # header + whole frames


def test_stats_counts_the_bytes_of_every_message_and_ages_the_oldest_ready_one_by_arrival(
        db_path: str, conn: litemq.Connection, run: Callable[..., Result]) -> None:
    conn.declare_queue("ranked", arguments={"x-max-priority": 5})
    conn.declare_queue("plain")
    conn.publish("", "ranked", b"low, first", Properties(priority=0))
    conn.publish("", "plain", b"first")
    time.sleep(0.5)  # the later ones are younger by this much at least
    conn.publish("", "ranked", b"high, later", Properties(priority=5))  # the head: delivered first, not the oldest
    conn.publish("", "plain", b"later")
    conn.publish("", "plain", b"delayed", delay=3600)  # not ready, and its bytes count
    held = conn.get("plain")  # unacked: its bytes count too
    assert held is not None and held.body == b"first"
    stats = json.loads(run("stats", "--json").out)
    by_queue = {q["queue"]: q for q in stats["queues"]}
    assert by_queue["ranked"]["bytes"] == len(b"low, first") + len(b"high, later")
    assert by_queue["plain"]["bytes"] == len(b"first") + len(b"later") + len(b"delayed")
    assert (by_queue["plain"]["messages"], by_queue["plain"]["ready"], by_queue["plain"]["unacked"]) == (2, 1, 1)
    assert by_queue["ranked"]["oldest_ready_seconds"] >= 0.5  # "low, first", though "high, later" is the head
    assert by_queue["plain"]["oldest_ready_seconds"] < 0.5  # "first" is held: "later" is the oldest ready
    held.ack()


@pytest.mark.sqlite_only
def test_stats_prints_a_table_and_a_total_line(world: str, run: Callable[..., Result]) -> None:
    lines = run("stats").out.splitlines()
    assert lines[0] == "queue  messages  ready  unacked  bytes  oldest_ready_seconds"
    assert [line.split()[:5] for line in lines[1:3]] == [["audit", "3", "3", "0", "19"],
                                                         ["jobs", "2", "2", "0", "13"]]
    assert re.fullmatch(r"total: 5 messages, 32 bytes of bodies; file \d+ bytes, WAL \d+ bytes", lines[3])
    assert len(lines) == 4


# ---------------------------------------------------------------------------------------------------------------
# db: the file itself
# ---------------------------------------------------------------------------------------------------------------

def views(path: str) -> list[str]:
    return litemq_objects(path, "view")


def test_db_current_downgrade_and_upgrade_move_the_schema_and_keep_the_messages(
        world: str, run: Callable[..., Result]) -> None:
    assert run("db", "current") == (0, f"{SCHEMA_REVISION} (this litemq writes {SCHEMA_REVISION})\n", "")
    assert run("db", "upgrade") == (0, f"{world}: at schema {SCHEMA_REVISION} already\n", "")
    assert run("db", "downgrade", "0001") == (0, f"{world}: at schema 0001\n", "")
    assert views(world) == []
    assert run("db", "current") == (0, f"0001 (this litemq writes {SCHEMA_REVISION})\n", "")
    assert run("db", "upgrade") == (0, f"{world}: at schema {SCHEMA_REVISION}\n", "")
    assert views(world) == ["litemq_connection_view", "litemq_message_view", "litemq_queue_stats"]
    assert bodies(world, "jobs") == [b"first", b"\xff\x00binary"]


@pytest.mark.sqlite_only
def test_db_check_reports_integrity(world: str, run: Callable[..., Result]) -> None:
    assert run("db", "check") == (0, "ok\n", "")
    with plain(world) as db:  # an index that no longer matches its table
        db.execute("PRAGMA writable_schema = ON")
        db.execute("UPDATE sqlite_master SET sql = replace(sql, 'lease_token IS NULL', 'lease_token IS NOT NULL') "
                   "WHERE name = 'ix_litemq_messages_ready'")
        db.commit()
    result = run("db", "check")
    assert result.code == 1
    assert "ix_litemq_messages_ready" in result.out
    assert result.err == f"litemq: {world} failed PRAGMA integrity_check\n"
    as_json = run("db", "check", "--json")
    assert as_json.code == 1 and as_json.err == result.err
    assert json.loads(as_json.out) == {"integrity": result.out.splitlines()}


@pytest.mark.sqlite_only
def test_db_vacuum_shrinks_the_file_and_reports_the_sizes_it_has(db_path: str, run: Callable[..., Result]) -> None:
    with litemq.connect(db_path) as conn:
        conn.declare_queue("big")
        for _ in range(200):
            conn.publish("", "big", b"x" * 4000)
    assert run("purge", "big") == (0, "200\n", "")
    result = run("db", "vacuum")
    assert result.code == 0
    match = re.fullmatch(rf"{re.escape(db_path)}: (\d+) -> (\d+) bytes\n", result.out)
    assert match, result.out
    before, after = int(match[1]), int(match[2])
    assert before > 800_000
    assert after < before / 4, "the size printed after VACUUM is the file's new size"
    assert after == os.path.getsize(db_path)


@pytest.mark.sqlite_only
def test_db_checkpoint_copies_the_wal_into_the_file(world: str, run: Callable[..., Result]) -> None:
    result = run("db", "checkpoint")
    assert result.code == 0
    match = re.fullmatch(rf"{re.escape(world)}: (\d+) of (\d+) WAL frames checkpointed\n", result.out)
    assert match and match[1] == match[2], result.out


@pytest.mark.sqlite_only
def test_db_checkpoint_never_stalls_publishers_behind_a_reader(world: str, run: Callable[..., Result]) -> None:
    # A person holds a read transaction open in sqlite3 (an old snapshot). A full checkpoint cannot finish until
    # that reader is done; while it waits for it, it must not lock out litemq's writers.
    with plain(world) as reader:
        reader.isolation_level = None
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM litemq_messages").fetchall()
        with litemq.connect(world) as conn:
            conn.publish("logs", "app.after", b"newer than the reader's snapshot")
        outcome: list[Result] = []
        checkpoint = threading.Thread(target=lambda: outcome.append(run("db", "checkpoint")))
        checkpoint.start()
        time.sleep(0.5)  # let the checkpoint start waiting for the reader (if it has not, the test cannot fail)
        publish_error: Optional[BaseException] = None
        try:
            with litemq.connect(world, busy_timeout=3) as publisher:
                publisher.publish("logs", "app.during", b"published while the checkpoint waits")
        except litemq.StorageError as exc:
            publish_error = exc
        finally:
            reader.execute("COMMIT")
        checkpoint.join(PROCESS_TIMEOUT)
    assert publish_error is None, f"a publisher was locked out while `litemq db checkpoint` ran: {publish_error}"
    assert outcome and outcome[0].code in (0, 1) and "Traceback" not in outcome[0].err  # "busy" is no crash


def test_db_commands_refuse_a_missing_file_and_create_nothing(tmp_path: Path, run: Callable[..., Result]) -> None:
    missing = str(tmp_path / "missing.db")
    for args in (["current"], ["upgrade"], ["downgrade", "0001"], ["check"], ["vacuum"], ["checkpoint"]):
        result = run("db", *args, db=missing)
        assert result == (1, "", f"litemq: no litemq file at {missing} (nothing was created)\n"), args
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_db_usage_errors(world: str, run: Callable[..., Result]) -> None:
    assert run("db", "downgrade").code == 2
    assert run("db", "upgrade", "0001").code == 2
    assert run("db", "current", "0001").code == 2
    assert run("db", "shrink").code == 2


def test_db_downgrade_to_an_unknown_revision_is_one_line(world: str, run: Callable[..., Result]) -> None:
    result = run("db", "downgrade", "zzzz")
    assert result.code in (1, 2) and one_line_error(result)
    assert run("db", "current").out.startswith(SCHEMA_REVISION)


@pytest.mark.parametrize("action", [["current"], ["upgrade"], ["downgrade", "0001"], ["check"], ["vacuum"],
                                    ["checkpoint"]], ids=lambda a: a[0])
def test_db_commands_refuse_a_file_that_is_not_sqlite_in_one_line(tmp_path: Path, run: Callable[..., Result],
                                                                  action: list[str]) -> None:
    notes = tmp_path / "notes.db"
    notes.write_bytes(b"these are my notes, not a database\n" * 10)
    result = run("db", *action, db=str(notes))
    assert result.code == 1 and one_line_error(result) and "not an SQLite database" in result.err
    assert notes.read_bytes() == b"these are my notes, not a database\n" * 10


@pytest.mark.parametrize("action", ["check", "vacuum", "checkpoint"])
def test_db_maintenance_refuses_an_application_s_file_without_litemq_data_and_leaves_it_alone(
        tmp_path: Path, run: Callable[..., Result], action: str) -> None:
    app = str(tmp_path / "app.db")
    with plain(app) as db, db:
        db.execute("CREATE TABLE users (name TEXT)")
    result = run("db", action, db=app)
    assert result.code == 1 and one_line_error(result) and "holds no litemq data" in result.err
    with plain(app) as db:
        assert db.execute("SELECT name FROM sqlite_master").fetchall() == [("users",)]
        assert db.execute("PRAGMA journal_mode").fetchone() == ("delete",)


@pytest.mark.parametrize("command", [["queues"], ["stats"], ["db", "check"]], ids=lambda c: c[-1])
def test_a_directory_given_as_the_file_is_refused_in_one_line(tmp_path: Path, run: Callable[..., Result],
                                                              command: list[str]) -> None:
    result = run(*command, db=str(tmp_path))
    assert result == (1, "", f"litemq: cannot open {tmp_path}: not a regular file\n")


def test_a_locked_file_is_reported_as_locked_not_as_not_sqlite(tmp_path: Path, run: Callable[..., Result]) -> None:
    app = str(tmp_path / "app.db")
    with plain(app) as db:
        db.isolation_level = None
        db.execute("CREATE TABLE users (name TEXT)")
        db.execute("BEGIN EXCLUSIVE")  # the application is writing, in its rollback-journal mode
        result = run("purge", "q", db=app)
        read = run("queues", db=app)  # a read looks at what was last committed, without waiting
        db.execute("ROLLBACK")
    assert result.code == 1 and one_line_error(result) and "database is locked" in result.err
    assert read == (1, "", f"litemq: {app} holds no litemq data (nothing was changed)\n")


def test_a_file_from_a_newer_litemq_is_refused_in_one_line_and_left_alone(world: str,
                                                                           run: Callable[..., Result]) -> None:
    rows(world, "UPDATE litemq_alembic_version SET version_num = '9999'")
    before = state(world)
    assert run("db", "current") == (0, f"9999 (this litemq writes {SCHEMA_REVISION})\n", "")
    for args in (["db", "upgrade"], ["db", "downgrade", "0001"], ["db", "check"], ["queues"], ["get", "jobs"]):
        result = run(*args)
        assert result.code == 1 and one_line_error(result) and "newer litemq" in result.err, args
    assert state(world) == before


@pytest.mark.sqlite_only
def test_db_upgrade_brings_an_old_file_to_the_current_schema(db_path: str, run: Callable[..., Result]) -> None:
    migrate.upgrade(db_path, "0001")
    assert run("db", "current").out == f"0001 (this litemq writes {SCHEMA_REVISION})\n"
    assert run("db", "upgrade") == (0, f"{db_path}: at schema {SCHEMA_REVISION}\n", "")
    assert "litemq_queue_stats" in views(db_path)


def test_db_downgrade_to_base_refuses_without_yes_and_says_what_it_would_delete(world: str,
                                                                               run: Callable[..., Result]) -> None:
    before = state(world)
    refused = run("db", "downgrade", "base")
    assert refused.code == 1 and one_line_error(refused)
    assert "2 queue(s) and 5 message(s)" in refused.err and "--yes" in refused.err
    assert state(world) == before
    assert run("db", "downgrade", "0001") == (0, f"{world}: at schema 0001\n", "")  # keeps every message
    done = run("db", "downgrade", "base", "--yes")
    assert done == (0, f"{world}: at schema base (2 queue(s) and 5 message(s) deleted)\n", "")
    assert [name for name in litemq_objects(world) if name != "litemq_alembic_version"] == []
    assert run("db", "current").out == f"base (no litemq tables; this litemq writes {SCHEMA_REVISION})\n"
    assert run("db", "check", "--yes").code == 2


def test_db_downgrade_to_base_of_a_file_without_queues_needs_no_yes(db_path: str,
                                                                     run: Callable[..., Result]) -> None:
    litemq.connect(db_path).close()
    assert run("db", "downgrade", "base") == (0, f"{db_path}: at schema base (0 queue(s) and 0 message(s) "
                                                 "deleted)\n", "")


def damaged(path: str, how: str) -> None:
    """Garbage over the pages of litemq_messages' table, or the file cut to a third: no litemq connection open."""
    ((page_size,),) = rows(path, "PRAGMA page_size")
    ((root,),) = rows(path, "SELECT rootpage FROM sqlite_master WHERE name = 'litemq_messages'")
    with plain(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert not os.path.exists(path + "-wal") or os.path.getsize(path + "-wal") == 0
    with open(path, "r+b") as file:  # no SQLite connection in this process has the file open
        if how == "garbage":
            file.seek((root - 1) * page_size)
            file.write(bytes((i * 37 + 11) % 256 for i in range(page_size)))
        else:
            file.truncate(os.path.getsize(path) // 3)


@pytest.mark.sqlite_only
@pytest.mark.parametrize("how", ["garbage", "truncated"])
def test_db_check_on_a_damaged_file_prints_sqlite_s_verdict_and_exits_1(world: str, run: Callable[..., Result],
                                                                          subprocess_env: dict[str, str],
                                                                          how: str) -> None:
    with litemq.connect(world) as conn:
        for i in range(300):
            conn.publish("logs", "app.x", f"message {i} " * 20)
    damaged(world, how)
    damaged_bytes = Path(world).read_bytes()
    result = run("db", "check")
    assert result.code == 1 and result.out and result.out != "ok\n"
    assert result.err == f"litemq: {world} failed PRAGMA integrity_check\n"
    as_process = command(["--db", world, "db", "check"], subprocess_env)
    assert as_process.returncode == 1 and as_process.stdout.decode() == result.out
    assert b"Traceback" not in as_process.stderr
    assert Path(world).read_bytes() == damaged_bytes  # the check wrote nothing


# ---------------------------------------------------------------------------------------------------------------
# demo
# ---------------------------------------------------------------------------------------------------------------

def test_demo_runs_a_producer_and_a_consumer_process(db_path: str, capfd: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    assert cli.main(["--db", db_path, "demo", "-n", "2"]) == 0
    lines = capfd.readouterr().out.splitlines()
    assert lines[0] == f"litemq demo on {db_path}: a consumer process and a producer process, queue 'litemq-demo'"
    sent = [line.split("Sent ")[1] for line in lines if " Sent " in line]
    received = [line.split("Received ")[1] for line in lines if " Received " in line]
    assert sent == received == ["'Hello World! #1'", "'Hello World! #2'"]
    assert rows(db_path, "SELECT count(*) FROM litemq_messages") == [(0,)]


# ---------------------------------------------------------------------------------------------------------------
# Read commands never write: no schema made, upgraded or rebuilt, no connection registered, a read-only file read
# ---------------------------------------------------------------------------------------------------------------

READ_ONLY = [["queues"], ["exchanges"], ["bindings"], ["connections"], ["peek", "jobs"], ["stats"],
             ["route", "logs", "app.x"], ["db", "check"], ["db", "current"]]


class Snapshot(NamedTuple):
    files: dict[str, tuple[bytes, int, int]]  # name: content, mode, mtime_ns


def snapshot(directory: Path) -> Snapshot:
    return Snapshot({p.name: (p.read_bytes(), p.stat().st_mode, p.stat().st_mtime_ns)
                     for p in sorted(directory.iterdir()) if p.is_file()})


def idle(path: str) -> None:
    """No connection open, the WAL checkpointed and gone: the file is all there is."""
    with plain(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert not os.path.exists(path + "-wal")


@pytest.mark.sqlite_only
@pytest.mark.parametrize("args", READ_ONLY, ids=lambda a: " ".join(a))
def test_a_read_command_changes_nothing_on_disk_and_registers_no_connection(world: str, tmp_path: Path,
                                                                            run: Callable[..., Result],
                                                                            args: list[str]) -> None:
    idle(world)
    sidecar = litemq.store.lockfiles.sidecar_directory(world)
    locks_before = sorted(os.listdir(sidecar)) if os.path.isdir(sidecar) else None
    before = snapshot(tmp_path)
    result = run(*args)
    assert result.code == 0 and result.err == "", result.err
    assert snapshot(tmp_path) == before  # no -wal, no -shm, not a byte or an mtime changed
    assert (sorted(os.listdir(sidecar)) if os.path.isdir(sidecar) else None) == locks_before


def test_read_commands_see_what_live_connections_commit(world: str, conn: litemq.Connection,
                                                        run: Callable[..., Result]) -> None:
    conn.publish("logs", "app.live", b"just now")  # in the WAL, not yet in the file
    connections = rows(world, "SELECT count(*) FROM litemq_connections")
    assert [m["body"] for m in json.loads(run("peek", "jobs", "--json").out)][-1] == "just now"
    assert rows(world, "SELECT count(*) FROM litemq_connections") == connections


@pytest.fixture
def shared_dir() -> Any:
    """A directory any local user can reach (pytest's tmp_path is private to its user), removed afterwards."""
    import shutil
    import tempfile

    directory = Path(tempfile.mkdtemp(prefix="litemq-ro-"))
    directory.chmod(0o755)
    yield directory
    for path in [directory, *directory.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    shutil.rmtree(directory)


@functools.lru_cache(maxsize=None)
def another_user_python(env_key: str) -> Optional[tuple[str, ...]]:
    """A command line that runs this checkout's Python as nobody, when this process is root and can."""
    import shutil

    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or setpriv is None:
        return None
    for python in dict.fromkeys([PYTHON, "/usr/bin/python3"]):
        prefix = (setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", python)
        probe = subprocess.run([*prefix, "-c", "import litemq"], env=json.loads(env_key), capture_output=True,
                               timeout=PROCESS_TIMEOUT)
        if probe.returncode == 0:
            return prefix
    return None


def as_another_user(args: list[str], env: dict[str, str]) -> Optional[subprocess.CompletedProcess]:
    """Run ``python -m litemq ARGS`` as nobody, when this process is root and can (None otherwise)."""
    prefix = another_user_python(json.dumps(env, sort_keys=True))
    if prefix is None:
        return None
    return subprocess.run([*prefix, "-m", "litemq", *args], env=env, capture_output=True, timeout=PROCESS_TIMEOUT)


@pytest.mark.sqlite_only
@pytest.mark.parametrize("live", [False, True], ids=["idle", "with-a-live-connection"])
def test_read_commands_work_on_a_read_only_file_in_a_read_only_directory(
        shared_dir: Path, run: Callable[..., Result], subprocess_env: dict[str, str], live: bool,
        checkout_searchable_by_others: None) -> None:
    path = str(shared_dir / "mq.db")
    with litemq.connect(path) as conn:
        conn.declare_queue("jobs")
        conn.declare_exchange("logs", "topic")
        conn.bind_queue("jobs", "logs", "app.#")
        conn.publish("", "jobs", b"readable")
    holder = litemq.connect(path) if live else None
    try:
        if holder is None:
            idle(path)
        for file in shared_dir.rglob("*"):
            file.chmod(0o555 if file.is_dir() else 0o444)
        shared_dir.chmod(0o555)
        before = snapshot(shared_dir)
        assert sorted(before.files) == (["mq.db", "mq.db-shm", "mq.db-wal"] if live else ["mq.db"])
        expected = {"peek": "readable", "route": "jobs", "db check": "ok", "db current": SCHEMA_REVISION}
        for args in READ_ONLY:
            result = run(*args, db=path)
            assert result.code == 0 and expected.get(" ".join(args[:2]), "") in result.out, (args, result)
            other = as_another_user(["--db", path, *args], subprocess_env)
            if other is not None:  # nobody may write here: the kernel, not root's goodwill, keeps it read-only
                assert other.returncode == 0, (args, other.stderr)
                assert other.stdout.decode() == result.out or args[0] in ("connections", "stats"), args
        if holder is None:
            assert snapshot(shared_dir) == before
        else:  # the live connection may checkpoint meanwhile: look at what the tables hold instead
            assert rows(path, "SELECT count(*) FROM litemq_connections") == [(1,)]
            assert [r["alive"] for r in json.loads(run("connections", "--json", db=path).out)] == [True]
        if os.geteuid() == 0 and as_another_user(["--version"], subprocess_env) is None:
            pytest.skip("root cannot run a Python as another user here; checked only that nothing changed")
        if live:  # another user who may read its lock file (0444 here) tests it read-only, with a shared lock
            other = as_another_user(["--db", path, "connections", "--json"], subprocess_env)
            assert other is None or [r["alive"] for r in json.loads(other.stdout)] == [True]
        refused = as_another_user(["--db", path, "purge", "jobs"], subprocess_env)  # a command that writes
        if refused is None and os.geteuid() != 0:
            refused = command(["--db", path, "purge", "jobs"], subprocess_env)
        if refused is not None:
            err = refused.stderr.decode()
            assert refused.returncode == 1 and "read-only" in err and len(err.splitlines()) == 1, err
    finally:
        if holder is not None:
            shared_dir.chmod(0o755)
            holder.close()


def test_read_commands_open_exactly_the_file_named_whatever_its_path_holds(tmp_path: Path,
                                                                         run: Callable[..., Result]) -> None:
    # ?, # and % in a path must not become a URI's query, fragment or escapes: "odd" would be opened instead
    directory = tmp_path / "a dir %41"
    directory.mkdir()
    odd = directory / "odd?mode=rwc#x%41.db"
    decoy = directory / "odd"
    for path, name in ((odd, "right"), (decoy, "wrong")):
        built = str(tmp_path / f"{name}.db")
        with litemq.connect(built) as conn:
            conn.declare_queue(name)
            conn.publish("", name, name.encode())
        idle(built)
        os.rename(built, path)
    before = snapshot(directory)
    assert run("queues", db=str(odd)).out.splitlines()[1].split()[0] == "right"
    assert [m["body"] for m in json.loads(run("peek", "right", "--json", db=str(odd)).out)] == ["right"]
    assert run("db", "check", db=str(odd)) == (0, "ok\n", "")
    assert run("db", "current", db=str(odd)).out.startswith(SCHEMA_REVISION)
    assert snapshot(directory) == before


@pytest.mark.sqlite_only
def test_a_file_behind_is_read_when_it_can_be_and_never_upgraded(db_path: str, run: Callable[..., Result]) -> None:
    with litemq.connect(db_path) as conn:
        conn.declare_queue("jobs")
        conn.publish("", "jobs", b"old")
    migrate.upgrade(db_path, "0005")  # one revision behind: bodies still in their rows
    idle(db_path)
    before = Path(db_path).read_bytes()
    assert json.loads(run("queues", "--json").out)[0]["queue"] == "jobs"
    assert run("db", "current").out == f"0005 (this litemq writes {SCHEMA_REVISION})\n"
    assert run("db", "check") == (0, "ok\n", "")
    peek = run("peek", "jobs")  # reads litemq_bodies, which 0005 has not: says what to do
    assert peek.code == 1 and one_line_error(peek) and "litemq db upgrade" in peek.err and "0005" in peek.err
    migrate.upgrade(db_path, "0001")
    idle(db_path)
    before = Path(db_path).read_bytes()
    stats = run("stats")
    assert stats.code == 1 and one_line_error(stats) and "litemq db upgrade" in stats.err
    assert Path(db_path).read_bytes() == before
    assert run("db", "current").out.startswith("0001 ")


# ---------------------------------------------------------------------------------------------------------------
# Bad input: one line on stderr, exit 1 or 2, never a traceback, nothing changed
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("args, code", [
    # not found or refused: 1
    (["get", "nope"], 1),
    (["peek", "nope"], 1),
    (["purge", "nope"], 1),
    (["delete-queue", "nope"], 1),
    (["delete-exchange", "nope"], 1),
    (["delete-exchange", "amq.direct"], 1),
    (["bind", "nope", "logs", "k"], 1),
    (["bind", "jobs", "nope", "k"], 1),
    (["route", "nope", "k"], 1),
    (["publish", "nope", "k", "body"], 1),
    (["move", "nope", "jobs"], 1),
    (["tail", "nope"], 1),
    (["declare-queue", "jobs"], 1),
    (["declare-queue", "amq.mine"], 1),
    (["declare-exchange", "logs", "fanout", "--durable"], 1),
    (["declare-exchange", "amq.mine", "fanout"], 1),
    (["delete-queue", "jobs", "--if-empty"], 1),
    (["bind", "audit", "amq.headers", "--argument", "x-match=most"], 1),
    # usage: 2
    (["publish", "", "jobs", "x", "--header", "novalue"], 2),
    (["publish", "", "jobs", "x", "--header", "=value"], 2),
    (["publish", "", "jobs", "x", "--property", "priority=high"], 2),
    (["publish", "", "jobs", "x", "--property", "colour=red"], 2),
    (["publish", "", "jobs", "x", "--property", "headers=x"], 2),
    (["publish", "", "jobs", "x", "--property", "delivery_mode=3"], 2),
    (["publish", "", "jobs", "x", "--property", "expiration=soon"], 2),
    (["declare-queue", "q", "--argument", "=1"], 2),
    (["bind", "jobs", "logs", "k", "--argument", "noequals"], 2),
    (["route", "logs", "k", "--header", "bad"], 2),
    (["get", "jobs", "-n", "0"], 2),
    (["peek", "jobs", "-n", "0"], 2),
    (["move", "jobs", "jobs"], 2),
    (["move", "jobs", "audit", "--limit", "0"], 2),
    (["tail", ""], 2),
    (["db", "downgrade"], 2),
    # values the API refuses with ValueError: usage too, in one line
    (["declare-queue", LONG_NAME], 2),
    (["get", LONG_NAME], 2),
    (["peek", LONG_NAME], 2),
    (["publish", "", LONG_NAME, "body"], 2),
    (["route", "logs", LONG_NAME], 2),
    # an argument the broker refuses (406): refused, in one line
    (["declare-queue", "q", "--argument", "x-lease-ms=soon"], 1),
], ids=lambda value: value if isinstance(value, int) else " ".join(value)[:60])
def test_bad_input_gets_one_line_and_an_exit_code_and_changes_nothing(world: str, run: Callable[..., Result],
                                                                      args: list[str], code: int) -> None:
    before = state(world)
    result = run(*args)
    assert result.code == code
    assert one_line_error(result), result.err
    assert result.out == ""
    assert state(world) == before


@pytest.mark.parametrize("args", [["no-such-command"], ["get"], ["get", "jobs", "-n", "many"],
                                  ["declare-exchange", "x", "nonsense"], []], ids=repr)
def test_argparse_usage_errors_exit_2_with_usage(world: str, run: Callable[..., Result], args: list[str]) -> None:
    result = run(*args)
    assert result.code == 2 and result.out == ""
    assert result.err.startswith("usage: litemq") and "error:" in result.err.splitlines()[-1]


READS = [["queues"], ["exchanges"], ["bindings"], ["connections"], ["stats"], ["get", "q"], ["peek", "q"],
         ["route", "amq.direct", "k"], ["tail", "amq.topic"], ["purge", "q"], ["delete-queue", "q"],
         ["delete-exchange", "x"], ["bind", "q", "amq.direct"], ["unbind", "q", "amq.direct"], ["move", "a", "b"]]


@pytest.mark.parametrize("args", READS, ids=lambda a: a[0])
def test_a_command_on_a_missing_file_says_so_and_creates_nothing(tmp_path: Path, run: Callable[..., Result],
                                                                 args: list[str]) -> None:
    missing = tmp_path / "missing.db"
    result = run(*args, db=str(missing))
    assert result == (1, "", f"litemq: no litemq file at {missing} (nothing was created)\n")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args", [["queues"], ["peek", "q"], ["stats"], ["publish", "", "q", "x"],
                                  ["declare-queue", "q"]], ids=lambda a: a[0])
def test_a_file_that_is_not_sqlite_is_refused_and_left_alone(tmp_path: Path, run: Callable[..., Result],
                                                             args: list[str]) -> None:
    notes = tmp_path / "notes.db"
    notes.write_bytes(b"these are my notes, not a database\n" * 10)
    result = run(*args, db=str(notes))
    assert result == (1, "", f"litemq: {notes} is not an SQLite database\n")
    assert notes.read_bytes() == b"these are my notes, not a database\n" * 10


@pytest.mark.parametrize("url", ["amqp://guest:guest@localhost:5672/", "mysql://db/litemq", "sqlite://", ":memory:"])
def test_a_db_url_that_is_neither_a_file_nor_a_postgresql_server_is_a_usage_error(url: str, run: Callable[..., Result],
                                                              tmp_path: Path) -> None:
    result = run("queues", db=url)
    assert result.code == 2 and one_line_error(result)
    assert list(tmp_path.iterdir()) == []


def test_a_bad_litemq_url_is_a_usage_error(run: Callable[..., Result], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LITEMQ_URL", "amqp://localhost")
    result = run("queues", db=None)
    assert result.code == 2 and one_line_error(result) and "amqp://localhost" in result.err


def test_a_directory_or_a_missing_directory_is_refused(tmp_path: Path, run: Callable[..., Result]) -> None:
    result = run("declare-queue", "q", db=str(tmp_path))
    assert result.code == 1 and one_line_error(result)
    result = run("declare-queue", "q", db=str(tmp_path / "no" / "such" / "dir.db"))
    assert result.code == 1 and one_line_error(result) and "does not exist" in result.err


# ---------------------------------------------------------------------------------------------------------------
# As a real process (the console script's entry point, through `python -m litemq`)
# ---------------------------------------------------------------------------------------------------------------

def command(args: list[str], env: dict[str, str], stdin: Optional[bytes] = None) -> subprocess.CompletedProcess:
    # `python -m litemq` runs litemq.cli:main, the entry point pyproject.toml declares for the `litemq` console
    # script (test_the_console_script_is_declared_and_is_main). The script itself is not run: the venv running
    # the tests may hold an older installed copy, or none, while this checkout is what is under test.
    return subprocess.run([PYTHON, "-m", "litemq", *args], env=env, input=stdin, capture_output=True,
                          timeout=PROCESS_TIMEOUT)


def test_the_command_works_as_a_process(db_path: str, subprocess_env: dict[str, str]) -> None:
    db = ["--db", db_path]
    assert command([*db, "declare-queue", "jobs"], subprocess_env).stdout == b"jobs\n"
    published = command([*db, "publish", "", "jobs", "--lines"], subprocess_env, stdin=b"one\ntwo\n")
    assert (published.returncode, published.stdout, published.stderr) == (
        0, b"published 2 messages, each to 1 queue\n", b"")
    listed = command([*db, "queues", "--json"], subprocess_env)
    assert listed.returncode == 0
    assert json.loads(listed.stdout) == [{"queue": "jobs", "ready": 2, "unacked": 0, "total": 2, "consumers": 0,
                                          "durable": False, "exclusive": False, "auto_delete": False,
                                          "arguments": {}}]
    got = command([*db, "get", "jobs", "-n", "2", "--ack", "--raw"], subprocess_env)
    assert (got.returncode, got.stdout) == (0, b"onetwo")
    empty = command([*db, "get", "jobs", "--json"], subprocess_env)
    assert (empty.returncode, json.loads(empty.stdout)) == (0, [])
    env = dict(subprocess_env, LITEMQ_URL=as_url(db_path))
    assert command(["route", "", "jobs"], env).stdout == b"jobs\n"


@pytest.mark.parametrize("args, code", [
    (["get", "nope"], 1),
    (["publish", "", "jobs", "x", "--header", "novalue"], 2),
    (["--db", "amqp://localhost", "queues"], 2),
    (["declare-queue", LONG_NAME], 2),
    (["--db", "NOTES", "db", "current"], 1),
], ids=["unknown queue", "malformed k=v", "amqp url", "long name", "db current on notes"])
def test_bad_input_in_a_process_is_one_line_and_never_a_traceback(db_path: str, tmp_path: Path,
                                                                  subprocess_env: dict[str, str],
                                                                  args: list[str], code: int) -> None:
    litemq.connect(db_path).close()
    notes = tmp_path / "notes.db"
    notes.write_text("not a database\n")
    args = [str(notes) if arg == "NOTES" else arg for arg in args]
    if "--db" not in args:
        args = ["--db", db_path, *args]
    result = command(args, subprocess_env)
    err = result.stderr.decode()
    assert result.returncode == code
    assert "Traceback" not in err and len(err.splitlines()) == 1 and err.startswith("litemq: "), err


def test_a_missing_file_in_a_process_says_so_and_creates_nothing(tmp_path: Path,
                                                                 subprocess_env: dict[str, str]) -> None:
    result = subprocess.run([PYTHON, "-m", "litemq", "queues"], env=subprocess_env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=PROCESS_TIMEOUT)
    assert result.returncode == 1
    assert result.stderr == f"litemq: no litemq file at {tmp_path / 'litemq.db'} (nothing was created)\n"
    assert list(tmp_path.iterdir()) == []
