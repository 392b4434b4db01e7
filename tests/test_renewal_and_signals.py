"""Lease renewal and signals: a live, working process keeps its deliveries however long its handler runs (up to
consumer_timeout); a process that stops renewing loses them at lease expiry; and a consumer stopped by SIGTERM or
Ctrl-C closes its connection on the way out, so what it held is back at once.

Real time with short leases here (renewal runs in a background thread; freezegun is for the broker's rules).
Processes that receive signals run as ``python -c`` subprocesses, so the test sees their exit code and stderr.
"""

from __future__ import annotations

import os
import queue as queue_module
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Iterator

import pytest

import litemq
import liveness_workers as workers
from litemq.store.postgres_keys import lock_key
from conftest import REPO, Processes
from engines import engine_of, split_postgresql_url, sql_rows
from liveness_workers import sql, wait_for_files, worker_errors

BOUND = 5.0
"""Seconds allowed for what normally takes milliseconds (a loaded 2-core machine must never flake)."""
START_SECONDS = 30.0
"""Seconds allowed for a fresh Python process to start and reach its first delivery."""


# ---------------------------------------------------------------------------------------------------------------
# Renewal keeps a working handler's message, up to consumer_timeout
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("lease_from", ["connect", "consume"])
def test_a_handler_that_runs_ten_times_the_lease_keeps_its_message(
        lease_from: str, db_path: str, processes: Processes, tmp_path: Path) -> None:
    # The handler's connection is the only one in this process (several are test_threads_and_fork.py's concern).
    if lease_from == "connect":  # the connection's default lease, just after connecting
        handler_conn = litemq.connect(db_path, lease_seconds=0.2)
        options = {}
    else:  # a consumer's own lease, on a connection that has been open a while with the default one
        handler_conn = litemq.connect(db_path)
        time.sleep(1.0)
        options = {"lease_seconds": 0.2}
    try:
        handler_conn.declare_queue("jobs")
        handler_conn.publish("", "jobs", b"slow")
        rival = processes.start(workers.collect, db_path, "jobs", 1, str(tmp_path), 2.0, "rival", False, "go")
        wait_for_files([tmp_path / "ready-rival"], START_SECONDS)
        delivery = handler_conn.consume("jobs", prefetch=1, **options).get(timeout=BOUND)
        assert delivery is not None
        started = time.monotonic()
        # The handler works for at least 2 s (ten leases) while another process tries to take the message.
        (tmp_path / "go").write_text("")
        rival.join(START_SECONDS)
        time.sleep(max(0.0, 2.0 - (time.monotonic() - started)))
        assert time.monotonic() - started >= 2.0
        assert worker_errors(tmp_path) == {}
        assert (tmp_path / "collected-rival").read_text() == ""  # the rival got nothing meanwhile
        delivery.ack()  # raises LeaseExpired if the lease ever lapsed and the message was taken
        assert handler_conn.get("jobs") is None  # and no duplicate is left behind
    finally:
        handler_conn.close()
    assert sql(db_path, "SELECT count(*) FROM litemq_messages") == [(0,)]


def test_consumer_timeout_caps_renewal_so_a_held_message_goes_to_another_consumer_and_the_late_ack_fails(
        db_path: str, conn: litemq.Connection) -> None:
    conn.declare_queue("jobs")
    conn.publish("", "jobs", b"stuck")
    holder = litemq.connect(db_path, lease_seconds=0.2, consumer_timeout=0.6)
    try:
        started = time.monotonic()
        held = holder.get("jobs")
        assert held is not None and not held.redelivered
        again = conn.consume("jobs").get(timeout=BOUND)  # the holder keeps renewing, but only for 0.6 s
        kept = time.monotonic() - started
        assert again is not None and (again.body, again.redelivered) == (b"stuck", True)
        # Renewed past its 0.2 s lease (a lower bound: load can only make it later).
        assert kept >= 0.4, f"the message came back after {kept:.2f} s, as if its 0.2 s lease was never renewed"
        with pytest.raises(litemq.LeaseExpired):
            held.ack()
        again.ack()
    finally:
        holder.close()
    assert sql(db_path, "SELECT count(*) FROM litemq_messages") == [(0,)]


# ---------------------------------------------------------------------------------------------------------------
# A process that is alive but not renewing loses its leases at expiry
# ---------------------------------------------------------------------------------------------------------------

def nobody_writes(db_path: str) -> bool:
    """No connection holds a write transaction: SQLite's write lock is free; on PostgreSQL, no other session holds a
    lock on a table of the broker's schema."""
    if engine_of(db_path) == "postgresql":
        _, schema = split_postgresql_url(db_path)
        # The store's write lock is an advisory lock (no relation); a stopped client may also have sent statements
        # the server runs after it stopped, so the locks are looked at twice, apart.
        write_key = lock_key(schema, "write") & 0xFFFFFFFFFFFFFFFF
        held = ("SELECT count(*) FROM pg_locks l LEFT JOIN pg_class c ON c.oid = l.relation "
                "LEFT JOIN pg_namespace n ON n.oid = c.relnamespace WHERE l.pid <> pg_backend_pid() "
                "AND (n.nspname = ? OR (l.locktype = 'advisory' AND l.classid::bigint = ? AND l.objid::bigint = ?))")
        parameters = (schema, write_key >> 32, write_key & 0xFFFFFFFF)
        if sql_rows(db_path, held, parameters) != [(0,)]:
            return False
        time.sleep(0.05)
        return sql_rows(db_path, held, parameters) == [(0,)]
    db = sqlite3.connect(db_path, timeout=0.1, isolation_level=None)
    try:
        db.execute("BEGIN IMMEDIATE")
        db.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        db.close()


def stop_outside_a_transaction(pid: int, db_path: str) -> None:
    """SIGSTOP the process at a moment when it holds no write transaction (a process stopped inside one would
    block every writer of what it locked, which is the database's rule, not what this test is about)."""
    deadline = time.monotonic() + BOUND
    while True:
        os.kill(pid, signal.SIGSTOP)
        while Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in "Tt":
            assert time.monotonic() < deadline, f"process {pid} did not stop"
            time.sleep(0.001)
        if nobody_writes(db_path):
            return
        os.kill(pid, signal.SIGCONT)
        assert time.monotonic() < deadline, f"process {pid} never stopped outside a write transaction"
        time.sleep(0.01)


def test_a_stopped_process_loses_its_delivery_when_the_lease_expires(
        db_path: str, conn: litemq.Connection, processes: Processes, tmp_path: Path) -> None:
    conn.declare_queue("jobs")
    conn.publish("", "jobs", b"frozen")
    holder = processes.start(workers.hold, db_path, "jobs", 1, str(tmp_path), "holder", 0.3)
    wait_for_files([tmp_path / "held-holder"], START_SECONDS)
    stop_outside_a_transaction(holder.pid, db_path)
    try:
        delivery = conn.consume("jobs").get(timeout=BOUND)
        assert delivery is not None and (delivery.body, delivery.redelivered) == (b"frozen", True)
        assert holder.is_alive()  # the lease ran out; its owner did not die
        delivery.ack()
    finally:
        os.kill(holder.pid, signal.SIGCONT)
        os.kill(holder.pid, signal.SIGKILL)
        holder.join(BOUND)
    assert worker_errors(tmp_path) == {}


def test_a_connection_that_does_not_renew_loses_its_delivery_when_the_lease_expires(
        db_path: str, conn: litemq.Connection) -> None:
    conn.declare_queue("jobs")
    conn.publish("", "jobs", b"idle")
    holder = litemq.connect(db_path, lease_seconds=0.3, renew_leases=False)
    try:
        held = holder.get("jobs")
        assert held is not None
        again = conn.consume("jobs").get(timeout=BOUND)
        assert again is not None and (again.body, again.redelivered) == (b"idle", True)
        with pytest.raises(litemq.LeaseExpired):
            held.ack()
        again.ack()
    finally:
        holder.close()


# ---------------------------------------------------------------------------------------------------------------
# SIGTERM and Ctrl-C unwind a consumer, which closes its connection on the way out
# ---------------------------------------------------------------------------------------------------------------

def start_python(call: str, env: dict[str, str], **options: object) -> subprocess.Popen:
    return subprocess.Popen(workers.python_command(call), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=workers.default_signals, **options)  # type: ignore[call-overload]


def wait_for_file_from(process: subprocess.Popen, path: Path, timeout: float = START_SECONDS) -> str:
    """The file's text once the subprocess writes it; fails early (with its stderr) if the process ends first."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None:
            raise AssertionError(f"process ended with {process.returncode} before writing {path.name}: "
                                 f"{process.communicate()[1]}")
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.005)
    return path.read_text()


def finish(process: subprocess.Popen, timeout: float = BOUND) -> tuple[int, str]:
    """Exit code and stderr of a subprocess that should end within ``timeout`` (killed if it does not)."""
    try:
        _, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise AssertionError(f"process {process.pid} did not end within {timeout}s") from None
    return process.returncode, stderr


@pytest.fixture
def popen() -> Iterator[list[subprocess.Popen]]:
    """Subprocesses started by a test; any still running at the end are killed by pid."""
    started: list[subprocess.Popen] = []
    yield started
    for process in started:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            process.communicate()


def connections(db_path: str) -> int:
    return sql(db_path, "SELECT count(*) FROM litemq_connections")[0][0]


def test_sigterm_ends_a_consuming_process_with_143_and_no_traceback_and_its_delivery_is_back_at_once(
        db_path: str, conn: litemq.Connection, tmp_path: Path, subprocess_env: dict[str, str],
        popen: list[subprocess.Popen]) -> None:
    conn.declare_queue("jobs")
    conn.publish("", "jobs", b"job")
    consumer = start_python(f"w.consume_unacked_until_signalled({db_path!r}, 'jobs', {str(tmp_path)!r})",
                            subprocess_env)
    popen.append(consumer)
    assert wait_for_file_from(consumer, tmp_path / "got") == "job 0"
    os.kill(consumer.pid, signal.SIGTERM)
    code, stderr = finish(consumer)
    assert code == 143, stderr
    assert "Traceback" not in stderr
    assert connections(db_path) == 1  # it closed its connection (nobody had to reap it)
    delivery = conn.get("jobs")  # no waiting: the delivery is ready now
    assert delivery is not None and (delivery.body, delivery.redelivered) == (b"job", True)


def test_ctrl_c_unwinds_a_consumer_through_its_with_block_and_its_delivery_is_back_at_once(
        db_path: str, conn: litemq.Connection, tmp_path: Path, subprocess_env: dict[str, str],
        popen: list[subprocess.Popen]) -> None:
    conn.declare_queue("jobs")
    conn.publish("", "jobs", b"job")
    consumer = start_python(f"w.consume_until_ctrl_c({db_path!r}, 'jobs', {str(tmp_path)!r})", subprocess_env)
    popen.append(consumer)
    assert wait_for_file_from(consumer, tmp_path / "got") == "job 0"
    os.kill(consumer.pid, signal.SIGINT)
    code, stderr = finish(consumer)
    assert (code, stderr) == (0, "")
    assert (tmp_path / "interrupted").read_text() == "closed"  # KeyboardInterrupt came out of the with block
    assert connections(db_path) == 1
    delivery = conn.get("jobs")
    assert delivery is not None and (delivery.body, delivery.redelivered) == (b"job", True)


def lines_of(stream: IO[str]) -> "queue_module.Queue[str]":
    """The stream's lines, read by a daemon thread, so a test can wait for one with a bound."""
    lines: "queue_module.Queue[str]" = queue_module.Queue()

    def read() -> None:
        for line in stream:
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    return lines


def ack_interrupted_as_its_write_begins(db_path: str, tmp_path: Path, subprocess_env: dict[str, str],
                                        popen: list[subprocess.Popen], source: str) -> None:
    """The worker's ack of a delivery from ``source`` met by Ctrl-C as its write begins: interrupted, the file's
    write lock free afterwards, and the connection closed cleanly."""
    worker = start_python(f"w.interrupted_as_a_transaction_begins({db_path!r}, {str(tmp_path)!r}, {source!r})",
                          subprocess_env)
    popen.append(worker)
    outcome = wait_for_file_from(worker, tmp_path / "outcome").splitlines()
    code, stderr = finish(worker)
    assert outcome == ["interrupted", "write lock free", "closed"], stderr
    assert code == 0, stderr


@pytest.mark.sqlite_only
def test_ctrl_c_that_lands_as_a_transaction_begins_leaves_no_transaction_open(
        db_path: str, tmp_path: Path, subprocess_env: dict[str, str], popen: list[subprocess.Popen]) -> None:
    # KeyboardInterrupt (and the SystemExit litemq makes of SIGTERM) can be raised at any bytecode, including the
    # one right after BEGIN IMMEDIATE returns: the transaction must still be rolled back, or the connection keeps
    # the file's write lock (every other process waits) and its close fails.
    ack_interrupted_as_its_write_begins(db_path, tmp_path, subprocess_env, popen, "consumer")
    with litemq.connect(db_path) as conn:
        delivery = conn.get("jobs")  # the interrupted ack did not happen; the close gave the message back
        assert delivery is not None and delivery.redelivered


@pytest.mark.sqlite_only
def test_ctrl_c_while_a_gets_ack_waits_for_the_lock_finds_it_done_whole_and_no_transaction_open(
        db_path: str, tmp_path: Path, subprocess_env: dict[str, str], popen: list[subprocess.Popen]) -> None:
    # A get's ack is one DELETE in autocommit mode: the signal lands while SQLite waits for the lock, and Python
    # raises it once the statement has returned, committed. Whole, then: acked, nothing held, the file free.
    ack_interrupted_as_its_write_begins(db_path, tmp_path, subprocess_env, popen, "get")
    with litemq.connect(db_path) as conn:
        assert conn.get("jobs") is None and conn.declare_queue("jobs", passive=True).message_count == 0


def test_the_receive_example_exits_0_without_a_traceback_on_ctrl_c(
        db_path: str, conn: litemq.Connection, tmp_path: Path, subprocess_env: dict[str, str],
        popen: list[subprocess.Popen]) -> None:
    conn.declare_queue("hello", durable=True)
    conn.publish("", "hello", b"hi")
    env = dict(subprocess_env, LITEMQ_URL=db_path)
    receiver = subprocess.Popen([sys.executable, str(REPO / "examples" / "receive.py")], env=env,
                                cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                preexec_fn=workers.default_signals)
    popen.append(receiver)
    assert receiver.stdout is not None
    lines = lines_of(receiver.stdout)
    seen = []
    while " [x] Received 'hi'\n" not in seen:  # inside its consuming loop now
        try:
            seen.append(lines.get(timeout=START_SECONDS))
        except queue_module.Empty:
            raise AssertionError(f"receive.py printed only {seen}") from None
    deadline = time.monotonic() + BOUND
    while sql(db_path, "SELECT count(*) FROM litemq_messages") != [(0,)]:  # acked: waiting for the next one
        assert time.monotonic() < deadline, "receive.py never acked its message"
        time.sleep(0.01)
    time.sleep(0.1)
    os.kill(receiver.pid, signal.SIGINT)  # (Ctrl-C in the middle of a call is the test above)
    code, stderr = finish(receiver)
    assert (code, stderr) == (0, "")
    assert connections(db_path) == 1  # its with block closed the connection


def test_a_sigterm_handler_the_application_installed_is_left_alone(
        db_path: str, conn: litemq.Connection, tmp_path: Path, subprocess_env: dict[str, str],
        popen: list[subprocess.Popen]) -> None:
    conn.declare_queue("jobs")
    conn.publish("", "jobs", b"job")
    consumer = start_python(f"w.consume_with_own_sigterm_handler({db_path!r}, 'jobs', {str(tmp_path)!r})",
                            subprocess_env)
    popen.append(consumer)
    assert wait_for_file_from(consumer, tmp_path / "got") == "job 0 ours"  # still ours while consuming
    os.kill(consumer.pid, signal.SIGTERM)
    code, stderr = finish(consumer)
    assert (code, stderr) == (0, "")
    assert worker_errors(tmp_path) == {}
    assert (tmp_path / "stopped").read_text() == "1 ours"  # our handler ran, once, and is still installed
    delivery = conn.get("jobs")
    assert delivery is not None and delivery.redelivered
