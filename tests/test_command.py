"""The ``litemq`` command: every subcommand in-process, its exit codes and errors, and once as a real process."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import litemq
from conftest import PYTHON, REPO
from engines import BrokerSQL, make_broker
from liveness_workers import default_signals
from litemq import cli

LISTINGS = ("queues", "exchanges", "bindings", "connections", "get", "peek", "tail", "route", "stats")


def run(capsys: pytest.CaptureFixture[str], db: str, *args: str, stdin: bytes | None = None,
        monkeypatch: pytest.MonkeyPatch | None = None) -> tuple[int, str, str]:
    if stdin is not None:
        assert monkeypatch is not None
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
    code = cli.main(["--db", db, *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def world(db_path: str) -> str:
    make_broker(db_path)
    with litemq.connect(db_path) as conn:
        conn.declare_queue("jobs", durable=True, arguments={"x-lease-ms": 60000})
        conn.declare_exchange("logs", "topic")
        conn.bind_queue("jobs", "logs", "a.#")
        conn.publish("", "jobs", b"first", litemq.Properties(content_type="text/plain"))
        conn.publish("logs", "a.b", b"\xff\x00binary")
    return db_path


def subcommands() -> dict[str, object]:
    parser = cli.build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    internal = {"demo-producer", "demo-consumer"}  # the demo's own two processes, hidden from --help
    return {name: sub for name, sub in action.choices.items() if name not in internal}


# --- help and documentation

def test_every_subcommand_has_help_and_a_line_in_the_readme(capsys: pytest.CaptureFixture[str]) -> None:
    readme = (REPO / "README.md").read_text()
    for name in subcommands():
        with pytest.raises(SystemExit) as done:
            cli.main([name, "--help"])
        assert done.value.code == 0
        assert name in capsys.readouterr().out
        assert f"litemq {name}" in readme, f"README.md does not mention `litemq {name}`"


def test_every_listing_takes_json() -> None:
    for name in LISTINGS:
        options = subcommands()[name]._option_string_actions  # type: ignore[attr-defined]
        assert "--json" in options, name


def test_the_console_script_is_declared() -> None:
    assert 'litemq = "litemq.cli:main"' in (REPO / "pyproject.toml").read_text()


def test_the_command_runs_as_a_real_process(world: str, subprocess_env: dict[str, str]) -> None:
    # The installed console script where the test environment has one (README's install puts it beside the
    # interpreter); otherwise the same entry point through -m.
    script = Path(PYTHON).parent / "litemq"
    command = [str(script)] if script.exists() else [PYTHON, "-m", "litemq"]
    result = subprocess.run([*command, "--db", world, "queues", "--json"], env=subprocess_env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert [q["queue"] for q in json.loads(result.stdout)] == ["jobs"]


# --- listings

def test_queues_lists_counts_flags_and_arguments(world: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, world, "queues", "--json")
    assert code == 0
    assert json.loads(out) == [{"queue": "jobs", "ready": 2, "unacked": 0, "total": 2, "consumers": 0,
                                "durable": True, "exclusive": False, "auto_delete": False,
                                "arguments": {"x-lease-ms": 60000}}]
    code, out, _ = run(capsys, world, "queues")
    header, row = out.splitlines()
    assert header.split() == ["queue", "ready", "unacked", "consumers", "durable", "exclusive", "auto_delete",
                              "arguments"]
    assert row.split()[:4] == ["jobs", "2", "0", "0"]
    assert header.index("ready") == row.index("2")  # aligned columns


def test_an_empty_listing_prints_nothing_or_an_empty_list(db_path: str, capsys: pytest.CaptureFixture[str]) -> None:
    litemq.connect(db_path).close()
    assert run(capsys, db_path, "queues") == (0, "", "")
    assert run(capsys, db_path, "queues", "--json")[1].strip() == "[]"


def test_exchanges_include_the_default_one(world: str, capsys: pytest.CaptureFixture[str]) -> None:
    names = [e["name"] for e in json.loads(run(capsys, world, "exchanges", "--json")[1])]
    assert names == ["", "amq.direct", "amq.fanout", "amq.headers", "amq.match", "amq.topic", "logs"]
    assert "amq.default" in run(capsys, world, "exchanges")[1]


def test_bindings_lists_each_binding(world: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert json.loads(run(capsys, world, "bindings", "--json")[1]) == [
        {"exchange": "logs", "destination": "jobs", "destination_kind": "queue", "routing_key": "a.#",
         "arguments": {}}]


def test_connections_lists_other_connections_and_whether_they_live(world: str,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    with litemq.connect(world) as conn:
        conn.consume("jobs", prefetch=1).get(0)
        rows = json.loads(run(capsys, world, "connections", "--json")[1])
    assert len(rows) == 1
    assert rows[0]["pid"] == os.getpid() and rows[0]["consumers"] == 1 and rows[0]["unacked"] == 1
    assert rows[0]["alive"] is True


# --- changes

def test_declare_bind_unbind_purge_and_delete(db_path: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, db_path, "declare-queue", "q", "--durable", "--argument", "x-lease-ms=5000")[:2] == (0, "q\n")
    assert run(capsys, db_path, "declare-exchange", "x", "fanout", "--durable")[0] == 0
    assert run(capsys, db_path, "bind", "q", "x")[0] == 0
    assert run(capsys, db_path, "publish", "x", "any", "hello")[0] == 0
    assert run(capsys, db_path, "unbind", "q", "x")[0] == 0
    assert run(capsys, db_path, "publish", "x", "any", "lost")[2].startswith("litemq: unroutable")
    assert run(capsys, db_path, "purge", "q")[:2] == (0, "1\n")
    assert run(capsys, db_path, "delete-exchange", "x")[0] == 0
    assert run(capsys, db_path, "delete-queue", "q")[:2] == (0, "0\n")
    with litemq.connect(db_path) as conn:
        assert conn.route("", "q") == []


def test_publish_reads_standard_input_with_properties_and_headers(db_path: str, capsys: pytest.CaptureFixture[str],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    run(capsys, db_path, "declare-queue", "q")
    code, _, _ = run(capsys, db_path, "publish", "amq.default", "q", "--property", "content_type=text/plain",
                     "--property", "delivery_mode=2", "--header", "n=1", "--header", "s=x", stdin=b"whole\nbody",
                     monkeypatch=monkeypatch)
    assert code == 0
    run(capsys, db_path, "publish", "", "q", "--lines", stdin=b"one\ntwo\n", monkeypatch=monkeypatch)
    with litemq.connect(db_path) as conn:
        first = conn.get("q", auto_ack=True)
        assert first.body == b"whole\nbody"
        assert first.properties == litemq.Properties(content_type="text/plain", delivery_mode=2,
                                                      headers={"n": 1, "s": "x"})
        assert [conn.get("q", auto_ack=True).body for _ in range(2)] == [b"one", b"two"]


def test_get_requeues_with_the_redelivered_mark_unless_ack(world: str, capsys: pytest.CaptureFixture[str]) -> None:
    got = json.loads(run(capsys, world, "get", "jobs", "--json")[1])
    assert [(m["body"], m["redelivered"]) for m in got] == [("first", False)]
    again = json.loads(run(capsys, world, "get", "jobs", "-n", "2", "--ack", "--json")[1])
    assert [(m["body"], m["redelivered"]) for m in again] == [("first", True), ("/wBiaW5hcnk=", False)]
    assert run(capsys, world, "get", "jobs", "--json")[1].strip() == "[]"


def test_peek_takes_no_lease(world: str, capsys: pytest.CaptureFixture[str]) -> None:
    rows = json.loads(run(capsys, world, "peek", "jobs", "--json")[1])
    assert [(m["body"], m["body_encoding"]) for m in rows] == [("first", "text"), ("/wBiaW5hcnk=", "base64")]
    assert rows[0]["properties"] == {"content_type": "text/plain"}
    assert json.loads(run(capsys, world, "peek", "jobs", "-n", "1", "--base64", "--json")[1])[0]["body"] == "Zmlyc3Q="
    with litemq.connect(world) as conn:
        assert conn.get("jobs").redelivered is False  # peeking delivered nothing


def test_raw_bodies_are_written_as_bytes(world: str, capfdbinary: pytest.CaptureFixture[bytes]) -> None:
    assert cli.main(["--db", world, "peek", "jobs", "-n", "1", "--raw"]) == 0
    assert capfdbinary.readouterr().out == b"first"


def test_tail_prints_what_the_exchange_routes_as_it_arrives(world: str, capsys: pytest.CaptureFixture[str]) -> None:
    def publish_later() -> None:
        time.sleep(0.3)
        with litemq.connect(world) as conn:
            conn.publish("logs", "a.tail", b"seen")
            conn.publish("logs", "b.other", b"also seen: tail binds '#' on a topic exchange")

    thread = threading.Thread(target=publish_later)
    thread.start()
    code, out, _ = run(capsys, world, "tail", "logs", "--count", "2")
    thread.join()
    assert code == 0
    assert out.splitlines() == ["a.tail  seen", "b.other  also seen: tail binds '#' on a topic exchange"]
    with litemq.connect(world) as conn:
        assert conn.declare_queue("jobs", passive=True).message_count == 3  # jobs still got its copy of a.tail
        assert [q for q in conn.route("logs", "a.x")] == ["jobs"]  # the temporary queue is gone


def test_tail_stops_cleanly_on_ctrl_c(world: str, subprocess_env: dict[str, str]) -> None:
    import signal

    # preexec_fn: Ctrl-C as a terminal gives it, even when this suite runs as a background job (`nohup ... &`
    # leaves SIGINT ignored, and the child would inherit that)
    tail = subprocess.Popen([PYTHON, "-m", "litemq", "--db", world, "tail", "logs"], env=subprocess_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=default_signals)
    try:
        deadline = time.monotonic() + 20
        bound = False
        while not bound and time.monotonic() < deadline:
            with litemq.connect(world) as conn:
                bound = conn.route("logs", "a.b") != ["jobs"]  # its temporary queue is bound
            time.sleep(0.05)
        assert bound
        tail.send_signal(signal.SIGINT)
        out, err = tail.communicate(timeout=20)
    finally:
        tail.kill()
    assert tail.returncode == 0 and "Traceback" not in err


def test_route_is_a_dry_run(world: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, world, "route", "logs", "a.b")[1] == "jobs\n"
    assert json.loads(run(capsys, world, "route", "logs", "z", "--json")[1]) == []
    with litemq.connect(world) as conn:
        assert conn.declare_queue("jobs", passive=True).message_count == 2


def test_move_redrives_messages_in_order_to_the_end_of_another_queue(world: str,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, world, "declare-queue", "retry")
    with litemq.connect(world) as conn:
        conn.publish("", "retry", b"already there")
    assert run(capsys, world, "move", "jobs", "retry", "--limit", "1")[1] == "1\n"
    assert run(capsys, world, "move", "jobs", "retry")[1] == "1\n"
    with litemq.connect(world) as conn:
        assert conn.declare_queue("jobs", passive=True).message_count == 0
        assert conn.declare_queue("retry").message_count == 3
        assert [conn.get("retry", auto_ack=True).body for _ in range(3)] == [
            b"already there", b"first", b"\xff\x00binary"]


@pytest.mark.sqlite_only
def test_stats_gives_totals_and_file_sizes(world: str, capsys: pytest.CaptureFixture[str]) -> None:
    stats = json.loads(run(capsys, world, "stats", "--json")[1])
    assert stats["queues"][0]["queue"] == "jobs" and stats["queues"][0]["messages"] == 2
    assert stats["totals"]["messages"] == 2 and stats["totals"]["bytes"] == len(b"first") + len(b"\xff\x00binary")
    assert stats["totals"]["file_bytes"] > 0
    assert "total: 2 messages" in run(capsys, world, "stats")[1]


@pytest.mark.sqlite_only
def test_db_maintenance(world: str, capsys: pytest.CaptureFixture[str]) -> None:
    from litemq.store import SCHEMA_REVISION

    assert run(capsys, world, "db", "current")[1].startswith(SCHEMA_REVISION)
    assert run(capsys, world, "db", "check")[:2] == (0, "ok\n")
    assert run(capsys, world, "db", "checkpoint")[0] == 0
    assert run(capsys, world, "db", "vacuum")[0] == 0
    assert run(capsys, world, "db", "downgrade", "0001")[0] == 0
    assert run(capsys, world, "db", "current")[1].startswith("0001")
    assert run(capsys, world, "db", "upgrade")[0] == 0
    assert run(capsys, world, "db", "current")[1].startswith(SCHEMA_REVISION)
    with litemq.connect(world) as conn:
        assert conn.declare_queue("jobs", passive=True).message_count == 2


# --- bad input: one line on stderr, exit 1 or 2, never a traceback

@pytest.mark.parametrize("args, code", [
    (["get", "nope"], 1),
    (["purge", "nope"], 1),
    (["peek", "nope"], 1),
    (["delete-queue", "nope"], 1),
    (["route", "nope", "k"], 1),
    (["publish", "nope", "k", "x"], 1),
    (["publish", "", "jobs", "x", "--header", "novalue"], 2),
    (["publish", "", "jobs", "x", "--property", "priority=high"], 2),
    (["declare-queue", "q", "--argument", "=1"], 2),
    (["db", "downgrade"], 2),
    (["move", "jobs", "jobs"], 2),
])
def test_bad_input_gets_one_line_and_an_exit_code(world: str, capsys: pytest.CaptureFixture[str], args: list[str],
                                                  code: int) -> None:
    result, out, err = run(capsys, world, *args)
    assert result == code
    assert len(err.strip().splitlines()) == 1 and err.startswith("litemq: ") and "Traceback" not in err


def test_a_read_on_a_missing_file_creates_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = str(tmp_path / "missing.db")
    for args in (["queues"], ["peek", "q"], ["stats"], ["db", "check"]):
        code, _, err = run(capsys, missing, *args)
        assert code == 1 and "no litemq file" in err
    assert list(tmp_path.iterdir()) == []


def test_a_file_that_is_not_sqlite_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "notes.db"
    path.write_text("not a database")
    code, _, err = run(capsys, str(path), "queues")
    assert code == 1 and "not an SQLite database" in err
    assert path.read_text() == "not a database"


def test_a_server_url_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--db", "amqp://localhost", "queues"]) == 2
    assert "litemq opens SQLite files" in capsys.readouterr().err


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main(["no-such-command"])
    assert done.value.code == 2


# --- the inspection views, as a person at sqlite3 (or psql) sees them

def test_views_answer_the_common_questions(world: str, sql: BrokerSQL) -> None:
    with litemq.connect(world) as conn:
        conn.consume("jobs", prefetch=1).get(0)
        stats = sql("SELECT queue, ready, unacked, total, consumers, bytes, oldest_ready_seconds "
                    "FROM litemq_queue_stats")
        messages = sql("SELECT queue, state, body_text, body_bytes, published_at FROM litemq_message_view ORDER BY id")
        connections = sql("SELECT pid, unacked, queue FROM litemq_connection_view WHERE queue IS NOT NULL")
    assert stats[0][:6] == ("jobs", 1, 1, 2, 1, 13)
    assert 0 <= stats[0][6] < 60
    assert [m[:4] for m in messages] == [("jobs", "unacked", "first", 5), ("jobs", "ready", None, 8)]
    assert messages[0][4].endswith("Z") and messages[0][4][:4].isdigit()
    assert connections == [(os.getpid(), 1, "jobs")]


def test_reading_a_view_blocks_no_publisher_or_consumer(world: str, sql: BrokerSQL) -> None:
    with litemq.connect(world) as conn:
        sql("BEGIN")
        sql("SELECT * FROM litemq_queue_stats")
        started = time.monotonic()
        for i in range(100):
            conn.publish("", "jobs", str(i))
        consumer = conn.consume("jobs", prefetch=10)
        for _ in range(102):
            consumer.get(5).ack()
        assert time.monotonic() - started < 30  # a blocked writer would wait out the 60 s busy timeout
        sql("COMMIT")
