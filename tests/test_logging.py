"""Logging: opening a file prints nothing from Alembic unless the user asked for it; litemq logs at DEBUG what a
person debugging follows (connections, schema, dead connections, expired leases) and at WARNING what needs
attention; the hot path neither logs nor imports logging."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Callable

import pytest

import litemq

BOUND = 30.0
"""Seconds allowed for a fresh Python process to start and do what takes it milliseconds."""


def run_program(source: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(source)], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=BOUND)


# ---------------------------------------------------------------------------------------------------------------
# Alembic stays quiet
# ---------------------------------------------------------------------------------------------------------------

def test_creating_a_file_under_info_logging_prints_no_alembic_line(tmp_path: Path,
                                                                   subprocess_env: dict[str, str]) -> None:
    result = run_program('''
        import logging
        logging.basicConfig(level=logging.INFO)
        import litemq
        with litemq.connect("fresh.db") as conn:
            conn.declare_queue("q")
        logging.getLogger("app").info("the program's own line")
    ''', subprocess_env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "fresh.db").exists()
    assert "alembic" not in result.stderr
    assert result.stderr == "INFO:app:the program's own line\n"  # and litemq said nothing at INFO either


def test_a_user_who_configured_the_alembic_logger_still_gets_its_lines(tmp_path: Path,
                                                                        subprocess_env: dict[str, str]) -> None:
    result = run_program('''
        import logging
        logging.basicConfig(level=logging.WARNING)
        logging.getLogger("alembic").setLevel(logging.INFO)
        import litemq
        litemq.connect("fresh.db").close()
    ''', subprocess_env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "INFO:alembic.runtime.migration:Running upgrade  -> 0001" in result.stderr


def test_after_migrating_the_alembic_logger_is_as_the_user_left_it(db_path: str,
                                                                   another_broker: Callable[[], str]) -> None:
    alembic = logging.getLogger("alembic")
    assert alembic.level == logging.NOTSET
    litemq.connect(db_path).close()
    assert alembic.level == logging.NOTSET  # quieted only while litemq migrated
    alembic.setLevel(logging.DEBUG)
    try:
        litemq.connect(another_broker()).close()
        assert alembic.level == logging.DEBUG
    finally:
        alembic.setLevel(logging.NOTSET)


def test_no_alembic_record_reaches_the_root_logger_while_a_file_is_created(
        db_path: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    litemq.connect(db_path).close()
    assert [r.name for r in caplog.records if r.name.startswith("alembic")] == []


# ---------------------------------------------------------------------------------------------------------------
# What litemq logs
# ---------------------------------------------------------------------------------------------------------------

def messages(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "litemq" and r.levelno == level]


def test_connect_close_and_schema_creation_are_logged_at_debug(db_path: str,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="litemq")
    conn = litemq.connect(db_path, synchronous="FULL", lease_seconds=12)
    conn.close()
    debug = messages(caplog, logging.DEBUG)
    connection_id = conn._session.connection_id
    assert f"litemq: created the schema of {db_path} at revision {litemq.store.SCHEMA_REVISION}" in debug
    assert (f"litemq: connection {connection_id} opened {db_path} (pid {os.getpid()}, synchronous FULL, "
            f"lease 12 s)") in debug
    assert f"litemq: connection {connection_id} to {db_path} closed" in debug
    assert messages(caplog, logging.INFO) == messages(caplog, logging.WARNING) == []


def test_nothing_is_logged_at_info_by_opening_a_current_file(db_path: str, caplog: pytest.LogCaptureFixture) -> None:
    litemq.connect(db_path).close()
    caplog.set_level(logging.INFO, logger="litemq")
    litemq.connect(db_path).close()
    assert caplog.records == []


@pytest.mark.no_lease_renewal
def test_expired_leases_going_back_are_logged_at_debug(conn: litemq.Connection, frozen: Any,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="litemq")
    conn.declare_queue("jobs")
    conn.publish_many("", "jobs", [b"1", b"2"])
    first = conn.get("jobs", lease_seconds=5)
    second = conn.get("jobs", lease_seconds=5)
    assert first is not None and second is not None
    frozen.tick(6)
    again = conn.get("jobs")
    assert again is not None and again.redelivered
    assert (f"litemq: 2 expired lease(s) in queue 'jobs' of {conn.path} returned to the queue "
            f"(message ids [1, 2])") in messages(caplog, logging.DEBUG)


def test_a_connection_that_died_holding_deliveries_is_logged_at_info_naming_them(
        db_path: str, conn: litemq.Connection, subprocess_env: dict[str, str], popen: list[subprocess.Popen[str]],
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    conn.declare_queue("jobs")
    conn.publish_many("", "jobs", [b"1", b"2", b"3"])
    ready = tmp_path / "ready"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f'''
        import time, litemq
        conn = litemq.connect({db_path!r})
        held = [conn.get("jobs"), conn.get("jobs")]
        open({str(ready)!r}, "w").write(conn._session.connection_id)
        time.sleep(60)
    ''')], env=subprocess_env, text=True)
    popen.append(holder)
    deadline = time.monotonic() + BOUND
    while not ready.exists() or not ready.read_text():
        assert holder.poll() is None and time.monotonic() < deadline, "the holder never got its deliveries"
        time.sleep(0.01)
    connection_id = ready.read_text()
    # Listening before the kill: the background thread of conn may clean up after the holder (and log it) before
    # the sweep below does.
    caplog.set_level(logging.DEBUG, logger="litemq")
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(BOUND)
    # On PostgreSQL the holder is dead once the server has ended its session, a moment after the process: sweep
    # until then (bounded).
    deadline = time.monotonic() + BOUND
    while True:
        conn._session.sweep(force=True)
        if messages(caplog, logging.INFO) or time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    assert messages(caplog, logging.INFO) == [
        f"litemq: connection {connection_id} on {db_path} died holding 2 unacked deliveries; they were returned "
        f"to their queues (jobs)"]
    assert messages(caplog, logging.WARNING) == []  # printed on stderr by any process without logging set up
    assert conn.declare_queue("jobs", passive=True).message_count == 3


def test_publishing_and_consuming_neither_log_nor_import_logging(tmp_path: Path,
                                                                 subprocess_env: dict[str, str]) -> None:
    result = run_program('''
        import sys
        import litemq
        litemq.connect("hot.db").close()  # created here: the migration imports logging
        for name in [m for m in sys.modules if m == "logging" or m.startswith(("logging.", "alembic", "sqlalchemy"))]:
            del sys.modules[name]
        with litemq.connect("hot.db") as conn:
            conn.declare_queue("q")
            conn.publish("", "q", b"x")
            conn.publish_many("", "q", [b"y", b"z"])
            for delivery in conn.consume("q", prefetch=2, inactivity_timeout=0.05):
                delivery.ack()
        print("logging" in sys.modules)
    ''', subprocess_env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "False\n"
