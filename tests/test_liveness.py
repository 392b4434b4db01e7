"""Liveness: when a process dies holding deliveries, exclusive queues or consumers, the others find out within
moments from its lock (never from its pid), and clean up only what was its own, without waiting for leases.

Holders run in spawned processes (liveness_workers.py) with 600 s leases, so a delivery that comes back within
the 5 s bounds here came back because its holder's death was noticed, not because its lease ran out.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import socket
import stat
import subprocess
import threading
import time
from pathlib import Path

import pytest

import litemq
import litemq.store.lockfiles as liveness
import liveness_workers as workers
from conftest import Processes
from litemq.store.lockfiles import sidecar_directory
from liveness_workers import sql, wait_for_files, worker_errors

BOUND = 5.0
"""Seconds allowed for what normally takes milliseconds (a loaded 2-core machine must never flake)."""


def publish_jobs(conn: litemq.Connection, count: int) -> None:
    """Declare the queue "jobs" and publish m0, m1, ... to it."""
    conn.declare_queue("jobs")
    for n in range(count):
        conn.publish("", "jobs", f"m{n}")


def held_by(tmp_path: Path, name: str) -> tuple[list[str], str]:
    """The bodies a ``hold`` worker holds, and its connection id."""
    *bodies, connection_id = (tmp_path / f"held-{name}").read_text().splitlines()
    return bodies, connection_id


def start_holder(processes: Processes, db_path: str, queue: str, count: int, tmp_path: Path, name: str,
                 ending: str = "wait", lease_seconds: float = workers.LONG_LEASE):
    process = processes.start(workers.hold, db_path, queue, count, str(tmp_path), name, lease_seconds, ending)
    wait_for_files([tmp_path / f"held-{name}"])
    return process


def leases(db_path: str, queue: str) -> list[tuple]:
    """(message id, lease owner, lease token) of the queue's leased messages (expiries move with renewal)."""
    return sql(db_path, "SELECT id, lease_owner, lease_token FROM litemq_messages "
                        "WHERE queue = ? AND lease_token IS NOT NULL ORDER BY id", queue)


def survivors(db_path: str, connection_id: str) -> list[tuple]:
    """(message id, lease owner, lease token) of the leases a connection holds."""
    return sql(db_path, "SELECT id, lease_owner, lease_token FROM litemq_messages WHERE lease_owner LIKE ? "
                        "AND lease_token IS NOT NULL ORDER BY id", connection_id + "/%")


def lock_files(db_path: str) -> set[str]:
    return set(os.listdir(sidecar_directory(db_path)))


# ---------------------------------------------------------------------------------------------------------------
# A dead holder's deliveries come back at once
# ---------------------------------------------------------------------------------------------------------------

ENDINGS = {
    "SIGKILL": "wait",            # the test kills it
    "os._exit(1)": "os._exit",    # no close, no atexit
    "uncaught exception": "raise",  # crashes without calling close
}


@pytest.mark.parametrize("death", list(ENDINGS))
def test_unacked_deliveries_of_a_dead_process_go_to_a_consumer_waiting_here_long_before_their_lease(
        death: str, db_path: str, conn: litemq.Connection, processes: Processes, tmp_path: Path) -> None:
    publish_jobs(conn, 3)
    holder = start_holder(processes, db_path, "jobs", 3, tmp_path, "holder", ENDINGS[death])
    assert held_by(tmp_path, "holder")[0] == ["m0", "m1", "m2"]
    consumer = conn.consume("jobs")
    if death == "SIGKILL":
        kill = threading.Timer(0.2, os.kill, (holder.pid, signal.SIGKILL))
    else:
        kill = threading.Timer(0.2, (tmp_path / "die-holder").write_text, ("",))
    kill.start()  # the holder dies while this consumer waits
    try:
        started = time.monotonic()
        deliveries = workers.take(consumer, 3, timeout=BOUND)
        waited = time.monotonic() - started
    finally:
        kill.join()
    holder.join(BOUND)
    assert [(d.body, d.redelivered) for d in deliveries] == [(b"m0", True), (b"m1", True), (b"m2", True)], \
        f"after {waited:.2f}s"
    assert holder.exitcode == {"SIGKILL": -signal.SIGKILL}.get(death, 1)
    assert worker_errors(tmp_path) == {}


def test_unacked_deliveries_of_a_killed_process_go_to_a_consumer_waiting_in_another_process(
        db_path: str, conn: litemq.Connection, processes: Processes, tmp_path: Path) -> None:
    publish_jobs(conn, 3)
    holder = start_holder(processes, db_path, "jobs", 3, tmp_path, "holder")
    collector = processes.start(workers.collect, db_path, "jobs", 3, str(tmp_path), BOUND)
    wait_for_files([tmp_path / "waiting-collector"])
    os.kill(holder.pid, signal.SIGKILL)
    collector.join(BOUND + 10)
    assert worker_errors(tmp_path) == {}
    assert (tmp_path / "collected-collector").read_text().splitlines() == ["m0 1", "m1 1", "m2 1"]
    assert collector.exitcode == 0


def test_a_killed_process_is_cleaned_up_by_a_connection_that_never_waits(
        db_path: str, conn: litemq.Connection, processes: Processes, tmp_path: Path) -> None:
    publish_jobs(conn, 3)
    holder = start_holder(processes, db_path, "jobs", 3, tmp_path, "holder")
    os.kill(holder.pid, signal.SIGKILL)
    # No consumer waits anywhere and no connection opens: this connection's background thread notices.
    deadline = time.monotonic() + BOUND
    while leases(db_path, "jobs"):
        assert time.monotonic() < deadline, f"the killed holder's leases were still held after {BOUND}s"
        time.sleep(0.01)
    assert sql(db_path, "SELECT count(*) FROM litemq_connections") == [(1,)]
    assert [conn.get("jobs").body for _ in range(3)] == [b"m0", b"m1", b"m2"]


def test_a_killed_process_returns_only_its_own_deliveries_and_a_live_one_keeps_its_leases(
        db_path: str, conn: litemq.Connection, processes: Processes, tmp_path: Path) -> None:
    publish_jobs(conn, 6)
    doomed = start_holder(processes, db_path, "jobs", 3, tmp_path, "doomed")
    survivor = start_holder(processes, db_path, "jobs", 3, tmp_path, "survivor", ending="ack")
    survivor_bodies, survivor_id = held_by(tmp_path, "survivor")
    assert survivor_bodies == ["m3", "m4", "m5"]
    survivor_leases = survivors(db_path, survivor_id)
    assert len(survivor_leases) == 3
    os.kill(doomed.pid, signal.SIGKILL)
    consumer = conn.consume("jobs")
    returned = workers.take(consumer, 3, timeout=BOUND)
    assert [(d.body, d.redelivered) for d in returned] == [(b"m0", True), (b"m1", True), (b"m2", True)]
    assert consumer.get(timeout=0.5) is None  # nothing of the survivor's comes this way
    assert survivors(db_path, survivor_id) == survivor_leases  # same messages, same owner, same tokens
    for delivery in returned:
        delivery.ack()
    (tmp_path / "ack-survivor").write_text("")
    survivor.join(BOUND + 10)
    assert worker_errors(tmp_path) == {}
    assert (tmp_path / "acked-survivor").exists() and survivor.exitcode == 0
    assert sql(db_path, "SELECT count(*) FROM litemq_messages") == [(0,)]


# ---------------------------------------------------------------------------------------------------------------
# A dead process's exclusive queues, consumers and auto-delete queues
# ---------------------------------------------------------------------------------------------------------------

def test_a_killed_process_loses_its_exclusive_queue_with_its_messages_its_consumers_and_auto_delete_queue(
        db_path: str, conn: litemq.Connection, processes: Processes, tmp_path: Path) -> None:
    conn.declare_queue("shared")
    owner = processes.start(workers.own_exclusive_queue_and_consumers, db_path, "shared", str(tmp_path))
    wait_for_files([tmp_path / "owned"])
    exclusive, auto_delete = (tmp_path / "owned").read_text().splitlines()
    with pytest.raises(litemq.ResourceLocked):
        conn.declare_queue(exclusive, passive=True)
    assert conn.declare_queue("shared", passive=True).consumer_count == 1
    assert conn.declare_queue(auto_delete, passive=True).consumer_count == 1
    assert sql(db_path, "SELECT body FROM litemq_messages WHERE queue = ?", exclusive) == [(b"private",)]

    os.kill(owner.pid, signal.SIGKILL)
    deadline = time.monotonic() + BOUND
    while True:
        try:
            conn.declare_queue(exclusive, passive=True)
        except litemq.QueueNotFound:
            break
        except litemq.ResourceLocked:
            pass
        assert time.monotonic() < deadline, f"exclusive queue {exclusive} outlived its owner by {BOUND}s"
        time.sleep(0.01)
    assert conn.publish("", exclusive, b"late") == 0  # gone for good: nothing routes there any more
    assert sql(db_path, "SELECT count(*) FROM litemq_messages WHERE queue = ?", exclusive) == [(0,)]
    assert conn.declare_queue("shared", passive=True).consumer_count == 0
    with pytest.raises(litemq.QueueNotFound):
        conn.declare_queue(auto_delete, passive=True)
    assert sql(db_path, "SELECT count(*) FROM litemq_connections") == [(1,)]  # only ours is left


def test_a_killed_process_stops_counting_as_a_consumer(
        db_path: str, conn: litemq.Connection, processes: Processes, tmp_path: Path) -> None:
    # Without an exclusive queue to trip over: someone who only looks at the queue sees the consumer go.
    conn.declare_queue("shared")
    holder = start_holder(processes, db_path, "shared", 0, tmp_path, "consumer")
    assert conn.declare_queue("shared", passive=True).consumer_count == 1
    os.kill(holder.pid, signal.SIGKILL)
    holder.join(BOUND)
    deadline = time.monotonic() + BOUND
    while conn.declare_queue("shared", passive=True).consumer_count != 0:
        assert time.monotonic() < deadline, f"the killed process still counts as a consumer after {BOUND}s"
        time.sleep(0.01)


# ---------------------------------------------------------------------------------------------------------------
# The lock is the truth, not the pid
# ---------------------------------------------------------------------------------------------------------------

FAKE_ID = "f" * 32


def register_fake_connection_holding_a_message(db_path: str, queue: str, pid: int) -> None:
    """A row in litemq_connections for a connection id that has no lock file, holding one leased message."""
    now = time.time()
    sql(db_path, "INSERT INTO litemq_connections (id, pid, host, started_at) VALUES (?, ?, ?, ?)",
        FAKE_ID, pid, socket.gethostname(), now)
    sql(db_path, "INSERT INTO litemq_messages (queue, exchange, routing_key, body, properties, published_at, "
                 "delivery_count, lease_owner, lease_token, lease_expires_at) "
                 "VALUES (?, '', ?, ?, NULL, ?, 1, ?, 12345, ?)",
        queue, queue, b"orphan", now, FAKE_ID + "/1", now + workers.LONG_LEASE)


def finished_pid() -> int:
    """The pid of a process that has ended and been waited for."""
    finished = subprocess.Popen(["true"])
    finished.wait()
    return finished.pid


def held_by_other(conn: litemq.Connection, other: litemq.Connection) -> litemq.Delivery:
    """A message "kept" in the queue "jobs", delivered to ``other`` with a lease no test outlives."""
    conn.declare_queue("jobs")
    conn.publish("", "jobs", b"kept")
    delivery = other.get("jobs", lease_seconds=workers.LONG_LEASE)
    assert delivery is not None
    return delivery


@pytest.mark.sqlite_only
def test_a_registered_connection_whose_lock_file_is_missing_keeps_its_leases_while_its_process_runs(
        db_path: str, conn: litemq.Connection, monkeypatch: pytest.MonkeyPatch) -> None:
    # A missing lock file proves nothing (a cleanup may have removed it): only a lock that can be taken does.
    monkeypatch.setattr(liveness, "MISSING_GRACE_SECONDS", 0.2)
    conn.declare_queue("jobs")
    register_fake_connection_holding_a_message(db_path, "jobs", pid=os.getpid())
    newcomer = litemq.connect(db_path)
    try:
        assert newcomer.consume("jobs").get(timeout=1.0) is None  # well past the grace: its pid still runs
        assert newcomer.get("jobs") is None
    finally:
        newcomer.close()
    assert sql(db_path, "SELECT count(*) FROM litemq_connections WHERE id = ?", FAKE_ID) == [(1,)]
    assert sql(db_path, "SELECT lease_owner FROM litemq_messages WHERE queue = 'jobs'") == [(FAKE_ID + "/1",)]


@pytest.mark.sqlite_only
def test_a_registered_connection_with_neither_lock_file_nor_process_is_reaped_once_the_grace_has_passed(
        db_path: str, conn: litemq.Connection, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(liveness, "MISSING_GRACE_SECONDS", 0.5)
    conn.declare_queue("jobs")
    consumer = conn.consume("jobs")
    register_fake_connection_holding_a_message(db_path, "jobs", pid=finished_pid())
    delivery = consumer.get(timeout=BOUND)
    assert delivery is not None and (delivery.body, delivery.redelivered) == (b"orphan", True)
    delivery.ack()
    assert sql(db_path, "SELECT count(*) FROM litemq_connections WHERE id = ?", FAKE_ID) == [(0,)]


@pytest.mark.parametrize("process", ["running", "gone"])
def test_a_migration_waits_for_a_connection_without_a_lock_file_only_while_its_process_runs(
        process: str, tmp_path: Path) -> None:
    from litemq.store import SCHEMA_REVISION, migrate

    path = str(tmp_path / "older.db")
    migrate.upgrade(path, "0005")
    pid = os.getpid() if process == "running" else finished_pid()
    sql(path, "INSERT INTO litemq_connections (id, pid, host, started_at) VALUES (?, ?, ?, ?)",
        FAKE_ID, pid, socket.gethostname(), time.time())
    if process == "running":
        with pytest.raises(litemq.SchemaError, match=f"pid {pid} on"):
            migrate.upgrade(path)
    else:
        assert migrate.upgrade(path) is True
        assert sql(path, "SELECT version_num FROM litemq_alembic_version") == [(SCHEMA_REVISION,)]


def test_the_kernel_tells_whether_a_registered_pid_still_runs_the_process_that_registered() -> None:
    here = socket.gethostname()
    started = time.time()
    assert liveness.process_may_live(liveness.Registration(os.getpid(), here, started))
    assert not liveness.process_may_live(liveness.Registration(finished_pid(), here, started))
    # The pid now names a process that started after the connection registered: reused, so not its process.
    assert not liveness.process_may_live(liveness.Registration(os.getpid(), here, started - 3600))
    assert liveness.process_may_live(liveness.Registration(finished_pid(), "another-host", started))
    zombie = subprocess.Popen(["true"])
    deadline = time.monotonic() + BOUND
    while Path(f"/proc/{zombie.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    try:
        assert not liveness.process_may_live(liveness.Registration(zombie.pid, here, started))
    finally:
        zombie.wait()


def test_a_live_connection_is_never_reaped_even_when_its_pid_column_names_a_dead_process(
        db_path: str, conn: litemq.Connection, other: litemq.Connection) -> None:
    delivery = held_by_other(conn, other)
    sql(db_path, "UPDATE litemq_connections SET pid = ? WHERE id = ?", finished_pid(), other._session.connection_id)
    before = leases(db_path, "jobs")
    newcomer = litemq.connect(db_path)
    try:
        assert newcomer.consume("jobs").get(timeout=1.0) is None
        assert newcomer.get("jobs") is None
    finally:
        newcomer.close()
    assert leases(db_path, "jobs") == before
    assert sql(db_path, "SELECT count(*) FROM litemq_connections WHERE id = ?",
               other._session.connection_id) == [(1,)]
    delivery.ack()  # its lease was never taken away


# ---------------------------------------------------------------------------------------------------------------
# Lock files
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.sqlite_only
def test_a_stray_lock_file_with_no_connection_and_no_holder_is_removed_when_a_connection_opens(
        db_path: str, conn: litemq.Connection) -> None:
    mine = lock_files(db_path)
    assert len(mine) == 1
    stray = Path(sidecar_directory(db_path)) / ("0" * 32 + ".lock")
    stray.write_text("")
    newcomer = litemq.connect(db_path)
    try:
        assert not stray.exists()
        assert mine < lock_files(db_path)  # the live connection's lock file stays (beside the newcomer's)
    finally:
        newcomer.close()
    assert lock_files(db_path) == mine


@pytest.mark.sqlite_only
def test_an_unregistered_lock_file_that_is_held_is_left_alone(db_path: str, conn: litemq.Connection) -> None:
    # A process between taking its lock and registering its connection: alive, so not a stray.
    registering = Path(sidecar_directory(db_path)) / ("1" * 32 + ".lock")
    fd = os.open(registering, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        litemq.connect(db_path).close()
        assert registering.exists()
    finally:
        os.close(fd)


@pytest.mark.sqlite_only
def test_a_connection_removes_its_lock_file_when_it_closes(db_path: str, conn: litemq.Connection) -> None:
    before = lock_files(db_path)
    second = litemq.connect(db_path)
    added = lock_files(db_path) - before
    assert len(added) == 1 and added.pop().endswith(".lock")
    second.close()
    assert lock_files(db_path) == before


# ---------------------------------------------------------------------------------------------------------------
# Without abstract sockets: polling the file and checking locks on a timer still work
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.sqlite_only
def test_a_consumer_without_abstract_sockets_receives_a_message_published_later_by_another_process(
        db_path: str, conn: litemq.Connection, processes: Processes, tmp_path: Path) -> None:
    conn.declare_queue("jobs")
    waiter = processes.start(workers.collect, db_path, "jobs", 1, str(tmp_path), BOUND, "fallback", True)
    wait_for_files([tmp_path / "waiting-fallback"])
    conn.publish("", "jobs", b"later")
    waiter.join(BOUND + 10)
    assert worker_errors(tmp_path) == {}
    assert (tmp_path / "collected-fallback").read_text() == "later 0\n"


@pytest.mark.sqlite_only
def test_a_consumer_without_abstract_sockets_gets_back_the_deliveries_of_a_killed_holder(
        db_path: str, conn: litemq.Connection, processes: Processes, tmp_path: Path) -> None:
    conn.declare_queue("jobs")
    conn.publish("", "jobs", b"held")
    holder = start_holder(processes, db_path, "jobs", 1, tmp_path, "holder")
    waiter = processes.start(workers.collect, db_path, "jobs", 1, str(tmp_path), BOUND, "fallback", True)
    wait_for_files([tmp_path / "waiting-fallback"])
    os.kill(holder.pid, signal.SIGKILL)
    waiter.join(BOUND + 10)
    assert worker_errors(tmp_path) == {}
    assert (tmp_path / "collected-fallback").read_text() == "held 1\n"


# ---------------------------------------------------------------------------------------------------------------
# Waiting costs (almost) nothing
# ---------------------------------------------------------------------------------------------------------------

IDLE_SECONDS = 2.0
MAX_IDLE_CPU = 0.20  # only busy polling comes near this; bench/ reports the real figure


@pytest.mark.alone
@pytest.mark.slow
@pytest.mark.parametrize("fallback", [False, pytest.param(True, marks=pytest.mark.sqlite_only)],
                         ids=["doorbell", "without-abstract-sockets"])
def test_a_consumer_waiting_on_an_empty_queue_uses_little_cpu(
        fallback: bool, db_path: str, conn: litemq.Connection, processes: Processes, tmp_path: Path) -> None:
    conn.declare_queue("idle")
    idle = processes.start(workers.measure_idle_cpu, db_path, "idle", IDLE_SECONDS, str(tmp_path), fallback)
    idle.join(IDLE_SECONDS + 30)
    assert worker_errors(tmp_path) == {}
    cpu, wall = map(float, (tmp_path / "cpu").read_text().split())
    assert wall >= IDLE_SECONDS * 0.9
    assert cpu / wall < MAX_IDLE_CPU, f"{cpu:.3f} s of CPU in {wall:.2f} s of waiting"


def test_an_exclusive_queue_left_by_a_dead_connection_without_its_row_is_still_cleaned_up(db_path: str) -> None:
    """Reaping is idempotent: a dead owner's queue goes even when its connection row is already gone."""
    with litemq.connect(db_path) as conn:
        sql(db_path, "INSERT INTO litemq_queues (name, durable, exclusive, auto_delete, arguments, owner_connection, "
                     "ready_count, created_at) VALUES ('orphan', FALSE, TRUE, FALSE, NULL, "
                     "'0123456789abcdef0123456789abcdef', 0, 0.0)")
        with pytest.raises(litemq.QueueNotFound):
            conn.declare_queue("orphan", passive=True)
        conn.declare_queue("orphan", exclusive=True)  # the name is free again, and now this connection's


# ---------------------------------------------------------------------------------------------------------------
# A missing lock file is not a dead connection (a cleanup script removing the directory)
# ---------------------------------------------------------------------------------------------------------------

def wait_until(condition, what: str, timeout: float = BOUND) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} within {timeout}s"
        time.sleep(0.01)


def exclusive_queue_gone(conn: litemq.Connection, queue: str) -> bool:
    try:
        conn.declare_queue(queue, passive=True)
    except litemq.QueueNotFound:
        return True
    except litemq.ResourceLocked:
        return False
    raise AssertionError(f"{queue} is exclusive to another connection, yet this one may declare it")


@pytest.mark.sqlite_only
def test_removing_the_lock_directory_makes_no_live_connection_look_dead(
        db_path: str, conn: litemq.Connection, processes: Processes, tmp_path: Path) -> None:
    publish_jobs(conn, 5)
    holder = processes.start(workers.hold_through_a_cleanup, db_path, "jobs", 5, str(tmp_path))
    wait_for_files([tmp_path / "held-holder"])
    *bodies, holder_id, exclusive, auto_delete = (tmp_path / "held-holder").read_text().splitlines()
    assert bodies == [f"m{n}" for n in range(5)]
    held = leases(db_path, "jobs")
    # Stopped, it cannot make a new lock file: the others see none for as long as they look.
    os.kill(holder.pid, signal.SIGSTOP)
    try:
        shutil.rmtree(sidecar_directory(db_path))
        collector = processes.start(workers.collect, db_path, "jobs", 5, str(tmp_path), 2.0)
        collector.join(BOUND + 10)
        assert worker_errors(tmp_path) == {}
        assert (tmp_path / "collected-collector").read_text() == ""  # none of its 5 jobs was taken
        assert not exclusive_queue_gone(conn, exclusive)
        assert conn.declare_queue(auto_delete, passive=True).consumer_count == 1
        assert leases(db_path, "jobs") == held
    finally:
        os.kill(holder.pid, signal.SIGCONT)
    own_lock = Path(sidecar_directory(db_path)) / f"{holder_id}.lock"
    wait_until(own_lock.exists, "the holder made a new lock file")
    (tmp_path / "ack-holder").write_text("")
    wait_for_files([tmp_path / "acked-holder"])
    assert worker_errors(tmp_path) == {}  # every ack succeeded: no LeaseExpired
    assert sql(db_path, "SELECT count(*) FROM litemq_messages WHERE queue = 'jobs'") == [(0,)]
    # With its new lock, its death is noticed as promptly as ever.
    os.kill(holder.pid, signal.SIGKILL)
    wait_until(lambda: exclusive_queue_gone(conn, exclusive), "its exclusive queue went with it")
    with pytest.raises(litemq.QueueNotFound):
        conn.declare_queue(auto_delete, passive=True)


@pytest.mark.sqlite_only
def test_a_connection_whose_lock_file_was_removed_makes_a_new_one_and_keeps_its_lease(
        db_path: str, conn: litemq.Connection, other: litemq.Connection) -> None:
    delivery = held_by_other(conn, other)
    own_lock = Path(sidecar_directory(db_path)) / f"{other._session.connection_id}.lock"
    shutil.rmtree(sidecar_directory(db_path))
    wait_until(own_lock.exists, "a new lock file")
    assert other._session.liveness.is_dead(conn._session.connection_id) is False
    assert conn._session.liveness.is_dead(other._session.connection_id) is False
    delivery.ack()


@pytest.mark.sqlite_only
def test_a_connection_killed_after_its_lock_directory_was_removed_is_reaped_once_the_grace_has_passed(
        db_path: str, conn: litemq.Connection, processes: Processes, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(liveness, "MISSING_GRACE_SECONDS", 1.0)
    publish_jobs(conn, 3)
    holder = start_holder(processes, db_path, "jobs", 3, tmp_path, "holder")
    os.kill(holder.pid, signal.SIGSTOP)  # so it never makes a new lock file
    shutil.rmtree(sidecar_directory(db_path))
    removed = time.monotonic()
    os.kill(holder.pid, signal.SIGKILL)
    holder.join(BOUND)
    deliveries = workers.take(conn.consume("jobs"), 3, timeout=BOUND)
    assert time.monotonic() - removed >= 1.0  # not before the grace
    assert [(d.body, d.redelivered) for d in deliveries] == [(b"m0", True), (b"m1", True), (b"m2", True)]
    assert sql(db_path, "SELECT count(*) FROM litemq_connections") == [(1,)]


# ---------------------------------------------------------------------------------------------------------------
# What another user's locks and files can and cannot fake
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.sqlite_only
def test_a_shared_lock_held_by_a_reader_cannot_keep_a_killed_connection_alive(
        db_path: str, conn: litemq.Connection, processes: Processes, tmp_path: Path) -> None:
    publish_jobs(conn, 3)
    holder = start_holder(processes, db_path, "jobs", 3, tmp_path, "holder")
    _, holder_id = held_by(tmp_path, "holder")
    reader = os.open(Path(sidecar_directory(db_path)) / f"{holder_id}.lock", os.O_RDONLY)
    try:
        # A reader waiting for a shared lock gets it the moment the holder dies, and keeps it.
        waiting = threading.Thread(target=fcntl.flock, args=(reader, fcntl.LOCK_SH))
        waiting.start()
        os.kill(holder.pid, signal.SIGKILL)
        waiting.join(BOUND)
        assert not waiting.is_alive()
        deliveries = workers.take(conn.consume("jobs"), 3, timeout=BOUND)
        assert [(d.body, d.redelivered) for d in deliveries] == [(b"m0", True), (b"m1", True), (b"m2", True)]
    finally:
        os.close(reader)


@pytest.mark.sqlite_only
def test_lock_directory_and_files_are_private_to_the_owner_of_a_private_database(
        db_path: str, conn: litemq.Connection) -> None:
    directory = Path(sidecar_directory(db_path))
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    (lock,) = directory.iterdir()
    assert stat.S_IMODE(lock.stat().st_mode) == 0o600


@pytest.mark.sqlite_only
def test_an_older_world_readable_lock_directory_is_made_private_when_its_owner_connects(
        db_path: str, conn: litemq.Connection) -> None:
    directory = Path(sidecar_directory(db_path))
    directory.chmod(0o755)  # as litemq before 16 made it
    litemq.connect(db_path).close()
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700


@pytest.mark.sqlite_only
def test_a_lock_directory_that_is_a_symlink_is_refused(db_path: str, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    os.symlink(elsewhere, sidecar_directory(db_path))
    with pytest.raises(litemq.StorageError, match="is not a directory") as raised:
        litemq.connect(db_path)
    assert sidecar_directory(db_path) in str(raised.value)
    assert list(elsewhere.iterdir()) == []


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
NOBODY = 65534


@pytest.mark.sqlite_only
@needs_root
def test_a_lock_file_owned_by_an_unexpected_user_is_refused(db_path: str, conn: litemq.Connection) -> None:
    planted = Path(sidecar_directory(db_path)) / ("2" * 32 + ".lock")
    planted.write_text("")
    os.chown(planted, NOBODY, NOBODY)
    with pytest.raises(litemq.StorageError, match=f"belongs to uid {NOBODY}") as raised:
        litemq.connect(db_path)
    assert str(planted) in str(raised.value)


@pytest.mark.sqlite_only
@needs_root
def test_a_lock_directory_owned_by_an_unexpected_user_is_refused(db_path: str) -> None:
    litemq.connect(db_path).close()
    directory = sidecar_directory(db_path)
    os.chown(directory, NOBODY, NOBODY)
    with pytest.raises(litemq.StorageError, match=f"belongs to uid {NOBODY}") as raised:
        litemq.connect(db_path)
    assert directory in str(raised.value)
    assert os.listdir(directory) == []  # no lock of ours went there


# ---------------------------------------------------------------------------------------------------------------
# Closing
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.sqlite_only
def test_close_never_raises_once_the_connection_is_released(
        db_path: str, conn: litemq.Connection, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    closing = litemq.connect(db_path)
    closing_id = closing._session.connection_id

    def refuse(path: object, *args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied", str(path))

    def fail() -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(closing._store, "close", fail)
    monkeypatch.setattr(liveness.os, "unlink", refuse)
    closing.close()
    monkeypatch.undo()
    closing._store.close()
    assert not closing.is_open
    assert sql(db_path, "SELECT count(*) FROM litemq_connections WHERE id = ?", closing_id) == [(0,)]
    assert "cannot remove the lock file" in caplog.text and "failed after the connection was released" in caplog.text
    # Its lock file was left behind, unlocked: the next opener removes it.
    litemq.connect(db_path).close()
    assert f"{closing_id}.lock" not in lock_files(db_path)
