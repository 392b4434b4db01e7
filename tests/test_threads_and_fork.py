"""Threads and fork: several connections in one process, one connection shared by threads, and what a forked
child may (not) do with its parent's connection.

Every thread and child here is bounded in time: threads are joined with a timeout and asserted finished, and
forked children are waited for with a bound and SIGKILLed by pid if they overstay.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable

import pytest

import litemq
import liveness_workers as workers
from conftest import Processes
from liveness_workers import sql, wait_for_files, worker_errors

BOUND = 5.0
"""Seconds allowed for what normally takes milliseconds (a loaded 2-core machine must never flake)."""
JOIN_SECONDS = 60.0
"""Seconds allowed for threads doing a few hundred operations each."""


class Threads:
    """Threads that record any exception instead of dying silently."""

    def __init__(self) -> None:
        self.threads: list[threading.Thread] = []
        self.errors: list[str] = []

    def start(self, target: Callable[..., Any], *args: Any) -> threading.Thread:
        def run() -> None:
            try:
                target(*args)
            except BaseException as exc:  # reported to the test, which fails on any
                self.errors.append(f"{threading.current_thread().name}: {exc!r}")

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        self.threads.append(thread)
        return thread

    def join(self, timeout: float = JOIN_SECONDS) -> None:
        deadline = time.monotonic() + timeout
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        assert not [t.name for t in self.threads if t.is_alive()], f"threads still running after {timeout}s"
        assert self.errors == []


# ---------------------------------------------------------------------------------------------------------------
# Several connections in one process
# ---------------------------------------------------------------------------------------------------------------

PER_PUBLISHER = 100


def test_connections_in_threads_of_one_process_publish_and_consume_through_one_file(
        db_path: str, conn: litemq.Connection) -> None:
    conn.declare_queue("jobs")
    received: list[bytes] = []

    def publish(n: int) -> None:
        with litemq.connect(db_path) as publisher:
            for i in range(PER_PUBLISHER):
                publisher.publish("", "jobs", f"p{n}-{i}")

    def consume() -> None:
        with litemq.connect(db_path) as consumer_conn:
            consumer = consumer_conn.consume("jobs", prefetch=10)
            deadline = time.monotonic() + JOIN_SECONDS
            while len(received) < 2 * PER_PUBLISHER:
                delivery = consumer.get(timeout=max(0.0, deadline - time.monotonic()))
                if delivery is None:
                    return
                received.append(delivery.body)
                delivery.ack()

    threads = Threads()
    threads.start(consume)
    threads.start(publish, 0)
    threads.start(publish, 1)
    threads.join(JOIN_SECONDS + 10)
    assert sorted(received) == sorted(f"p{n}-{i}".encode() for n in range(2) for i in range(PER_PUBLISHER))
    assert conn.declare_queue("jobs", passive=True).message_count == 0


@pytest.mark.sqlite_only
def test_a_second_connection_in_a_process_does_not_let_another_process_delete_the_write_ahead_log(
        db_path: str, conn: litemq.Connection, other: litemq.Connection, processes: Processes,
        tmp_path: Path) -> None:
    # SQLite's locks on the database file are POSIX locks, which a process loses when it closes any descriptor
    # of that file. If opening a second connection did that, the next process to close would think itself the
    # last one, and delete the -wal and -shm files under this process's open connections: their later commits
    # would go to a deleted file, invisible to everyone else.
    conn.declare_queue("jobs")
    conn.publish("", "jobs", b"before")
    processes.start(workers.count_ready, db_path, "jobs", str(tmp_path), "visitor")
    wait_for_files([tmp_path / "count-visitor"], JOIN_SECONDS)
    processes.join_all(BOUND)  # it has closed its connection
    assert (tmp_path / "count-visitor").read_text() == "1"
    log_files = [os.path.exists(db_path + suffix) for suffix in ("-wal", "-shm")]
    conn.publish("", "jobs", b"after")
    processes.start(workers.count_ready, db_path, "jobs", str(tmp_path), "witness")
    wait_for_files([tmp_path / "count-witness"], JOIN_SECONDS)
    assert worker_errors(tmp_path) == {}
    # What this process wrote after the visitor left is there for others.
    assert (tmp_path / "count-witness").read_text() == "2", f"-wal and -shm still there: {log_files}"
    assert log_files == [True, True]


# ---------------------------------------------------------------------------------------------------------------
# One connection shared by threads
# ---------------------------------------------------------------------------------------------------------------

THREADS = 4
PER_THREAD = 100


def test_one_connection_shared_by_four_threads_publishing_getting_and_acking_acks_every_message_once(
        db_path: str, conn: litemq.Connection) -> None:
    conn.declare_queue("jobs")
    acked: list[list[bytes]] = [[] for _ in range(THREADS)]

    def work(n: int) -> None:
        def get_and_ack() -> bool:
            delivery = conn.get("jobs")
            if delivery is None:
                return False
            delivery.ack()
            acked[n].append(delivery.body)
            return True

        for i in range(PER_THREAD):
            conn.publish("", "jobs", f"t{n}-{i}")
            get_and_ack()
        while get_and_ack():  # after its last publish, drain what is ready (others ack what they hold)
            pass

    threads = Threads()
    for n in range(THREADS):
        threads.start(work, n)
    threads.join()
    every = [body for bodies in acked for body in bodies]
    assert sorted(every) == sorted(f"t{n}-{i}".encode() for n in range(THREADS) for i in range(PER_THREAD))
    assert conn.declare_queue("jobs", passive=True).message_count == 0
    assert sql(db_path, "SELECT count(*) FROM litemq_messages") == [(0,)]


def test_a_consumer_waiting_in_one_thread_receives_what_another_thread_publishes_on_the_same_connection(
        conn: litemq.Connection) -> None:
    conn.declare_queue("jobs")
    waiting = threading.Event()
    received: list[litemq.Delivery] = []

    def consume() -> None:
        consumer = conn.consume("jobs")
        waiting.set()
        delivery = consumer.get(timeout=BOUND)
        if delivery is not None:
            delivery.ack()
            received.append(delivery)

    threads = Threads()
    threads.start(consume)
    assert waiting.wait(BOUND)
    time.sleep(0.1)  # let it settle into its wait
    conn.publish("", "jobs", b"ping")
    threads.join(BOUND + 5)
    assert [d.body for d in received] == [b"ping"]


@pytest.mark.alone
def test_a_consumer_waiting_in_one_thread_gets_its_next_message_at_once_when_another_thread_acks(
        conn: litemq.Connection) -> None:
    # The ack frees the consumer's one place and claims the next message for it: the waiting thread must wake for
    # it now, not at its next look at the file (a second later).
    conn.declare_queue("jobs")
    for n in range(4):
        conn.publish("", "jobs", b"%d" % n)
    handed: "queue.Queue[litemq.Delivery]" = queue.Queue()
    consumer = conn.consume("jobs", prefetch=1)

    def consume() -> None:
        for _ in range(4):
            delivery = consumer.get(timeout=BOUND)
            if delivery is None:
                return
            handed.put(delivery)

    threads = Threads()
    threads.start(consume)
    started = time.monotonic()
    bodies = []
    for _ in range(4):
        delivery = handed.get(timeout=BOUND)
        bodies.append(delivery.body)
        time.sleep(0.05)  # the consumer's thread is asleep by now, its one place taken
        delivery.ack()
    threads.join(BOUND + 5)
    assert bodies == [b"0", b"1", b"2", b"3"]
    assert time.monotonic() - started < 2.5  # three waits of a second each without the wake-up


# ---------------------------------------------------------------------------------------------------------------
# fork()
# ---------------------------------------------------------------------------------------------------------------

REFUSED, OTHER_ERROR, ACCEPTED = 0, 10, 20
"""A forked child's exit code: every call refused with StorageError mentioning fork; or OTHER_ERROR + i when
call i raised something else; or ACCEPTED + i when call i worked."""


def try_in_forked_child(conn: litemq.Connection, held: litemq.Delivery) -> None:
    """In the child: try the parent's connection, exit with a code saying what happened. Never returns."""
    code = 99
    try:
        calls: list[Callable[[], object]] = [
            lambda: conn.publish("", "jobs", b"from the child"),
            lambda: conn.get("jobs"),
            lambda: conn.declare_queue("jobs", passive=True),
            lambda: held.ack(),
        ]
        code = REFUSED
        for i, call in enumerate(calls):
            try:
                call()
            except litemq.StorageError as exc:
                if "fork" not in str(exc):
                    code = OTHER_ERROR + i
                    break
            except BaseException:
                code = OTHER_ERROR + i
                break
            else:
                code = ACCEPTED + i
                break
    finally:
        os._exit(code)


def wait_for_child(pid: int, timeout: float = BOUND) -> int:
    """The forked child's exit code; SIGKILLs it (and fails) if it is still running after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise AssertionError(f"forked child {pid} hung: still running after {timeout}s")
        time.sleep(0.01)


def test_a_connection_opened_before_fork_is_refused_in_the_child_and_keeps_working_in_the_parent(
        db_path: str, conn: litemq.Connection) -> None:
    held = held_job(conn)
    time.sleep(0.2)  # past the first background renewal, so the fork does not land in the middle of it
    pid = os.fork()
    if pid == 0:
        try_in_forked_child(conn, held)
    assert wait_for_child(pid) == REFUSED
    # The child's exit took nothing from the parent: its lease holds (a new connection does not reap it) ...
    newcomer = litemq.connect(db_path)
    try:
        assert newcomer.get("jobs") is None
    finally:
        newcomer.close()
    # ... and its connection works.
    conn.publish("", "jobs", b"after")
    after = conn.get("jobs")
    assert after is not None and after.body == b"after"
    after.ack()
    held.ack()
    assert sql(db_path, "SELECT count(*) FROM litemq_messages") == [(0,)]


def held_job(conn: litemq.Connection) -> litemq.Delivery:
    conn.declare_queue("jobs")
    conn.publish("", "jobs", b"held")
    held = conn.get("jobs", lease_seconds=workers.LONG_LEASE)
    assert held is not None
    return held


def fork_with_locks_held(conn: litemq.Connection, in_child: Callable[[], None]) -> int:
    """Fork while another thread holds every lock of the connection (inside a transaction, and checkpointing), as
    the application's threads or litemq's own background thread may; run ``in_child`` in the child (it must
    ``os._exit``) and return the child's exit code. fork() waits for the thread to let go (a fifth of a second)."""
    inside = threading.Event()

    def busy() -> None:
        with conn._store.write(), getattr(conn._store, "_checkpoint_lock", contextlib.nullcontext()):
            inside.set()
            time.sleep(0.2)

    threads = Threads()
    threads.start(busy)
    assert inside.wait(BOUND)
    try:
        pid = os.fork()
        if pid == 0:
            in_child()
    finally:
        threads.join(BOUND)
    return wait_for_child(pid)


def test_a_connection_busy_in_another_thread_at_fork_is_still_refused_in_the_child(
        db_path: str, conn: litemq.Connection) -> None:
    # The child must get StorageError, not wait forever for a lock no thread of its own will free.
    held = held_job(conn)
    assert fork_with_locks_held(conn, lambda: try_in_forked_child(conn, held)) == REFUSED
    held.ack()


def test_a_forked_child_lets_go_of_an_inherited_connection_quietly_even_with_its_lock_held_at_fork(
        db_path: str, conn: litemq.Connection) -> None:
    held = held_job(conn)

    def in_child() -> None:
        code = 99
        try:
            logged: list[logging.LogRecord] = []
            handler = logging.Handler()
            handler.emit = logged.append  # type: ignore[method-assign]
            logging.getLogger("litemq").addHandler(handler)
            code = 1
            try:
                conn.channel()
            except litemq.StorageError as exc:
                code = 2 if "fork" in str(exc) else 1
            if code == 2:
                conn.close()  # returns at once: the locks belong to a thread of the parent
                litemq.connection._close_open_connections()  # what exit runs: nothing left to close or log
                code = 0 if not conn.is_open and not logged else 3
        finally:
            os._exit(code)

    assert fork_with_locks_held(conn, in_child) == 0
    held.ack()  # the parent's connection, its delivery and its registration are untouched
    assert sql(db_path, "SELECT count(*) FROM litemq_messages") == [(0,)]
    assert sql(db_path, "SELECT count(*) FROM litemq_connections") == [(1,)]


def test_a_forked_child_does_not_keep_its_dead_parents_deliveries_leased(
        db_path: str, conn: litemq.Connection, processes: Processes, tmp_path: Path) -> None:
    conn.declare_queue("jobs")
    conn.publish("", "jobs", b"job")
    parent = processes.start(workers.hold_then_fork, db_path, "jobs", str(tmp_path))
    wait_for_files([tmp_path / "held"], JOIN_SECONDS)
    held, child = (tmp_path / "held").read_text().splitlines()
    child_pid = int(child)
    try:
        assert held == "job 0"
        os.kill(parent.pid, signal.SIGKILL)
        delivery = conn.consume("jobs").get(timeout=BOUND)
        os.kill(child_pid, 0)  # the child is still alive (this raises if it is not) ...
        assert delivery is not None and (delivery.body, delivery.redelivered) == (b"job", True)  # ... yet
        delivery.ack()
    finally:
        try:
            os.kill(child_pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert worker_errors(tmp_path) == {}


CHILDREN = 20


def publish_in_a_new_connection_and_exit(db_path: str, body: bytes) -> None:
    """In a forked child: open a connection of its own, publish, close; exit 0, or 1 on any error."""
    code = 1
    try:
        with litemq.connect(db_path, busy_timeout=BOUND) as child:
            child.publish("", "from-children", body)
        code = 0
    finally:
        os._exit(code)


def writing_in_a_thread(conn: litemq.Connection) -> tuple[threading.Event, Threads]:
    """A thread of the parent publishing and getting without pause until the event is set."""
    conn.declare_queue("busy")
    stop = threading.Event()

    def write_without_pause() -> None:
        while not stop.is_set():
            conn.publish("", "busy", b"x")
            conn.get("busy", auto_ack=True)

    threads = Threads()
    threads.start(write_without_pause)
    return stop, threads


@pytest.mark.slow
def test_a_new_connection_in_a_child_forked_while_a_parent_thread_writes_works(
        db_path: str, conn: litemq.Connection) -> None:
    conn.declare_queue("from-children")
    stop, threads = writing_in_a_thread(conn)
    try:
        codes = []
        for i in range(CHILDREN):
            pid = os.fork()
            if pid == 0:
                publish_in_a_new_connection_and_exit(db_path, str(i).encode())
            codes.append(wait_for_child(pid, timeout=2 * BOUND))
    finally:
        stop.set()
        threads.join(BOUND)
    assert codes == [0] * CHILDREN
    bodies = sorted(int(conn.get("from-children", auto_ack=True).body) for _ in range(CHILDREN))
    assert bodies == list(range(CHILDREN))


def test_multiprocessing_fork_children_open_connections_while_a_parent_thread_writes(
        db_path: str, conn: litemq.Connection) -> None:
    import multiprocessing

    conn.declare_queue("from-children")
    stop, threads = writing_in_a_thread(conn)
    context = multiprocessing.get_context("fork")
    started = []
    try:
        for i in range(CHILDREN // 2):
            child = context.Process(target=publish_in_a_new_connection_and_exit, args=(db_path, str(i).encode()),
                                    daemon=True)
            child.start()
            started.append(child)
        for child in started:
            child.join(2 * BOUND)
    finally:
        stop.set()
        threads.join(BOUND)
        hung = [child.pid for child in started if child.is_alive()]
        for child in started:
            if child.is_alive():
                child.kill()
    assert hung == []
    assert [child.exitcode for child in started] == [0] * (CHILDREN // 2)
    assert conn.declare_queue("from-children", passive=True).message_count == CHILDREN // 2
