"""Producers and consumers SIGKILLed at random on one broker (on a file, its lock directory removed now and then by
a "cleanup script"): nothing published is lost, nothing is delivered twice as new, no lease is left stuck, no live
connection is taken for dead, no error reaches a worker, and the broker is intact (tests/torture.py, the harness;
``python tests/torture.py --minutes 10`` is the long soak, ``--url postgresql://...`` on a server).
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import pytest

import litemq
import torture
from conftest import Processes
from engines import sql_rows

RUN = {
    "sqlite": torture.Config(
        producers=3, consumers=3, seconds=30.0, kill_every=(0.5, 1.0), rate=150.0,
        drain_seconds=15.0, stop_seconds=8.0, cleanup_every=(10.0, 25.0),
    ),
    # Issue 17: four producers and four consumers on a server (which has no lock directory to remove).
    "postgresql": torture.Config(
        producers=4, consumers=4, seconds=30.0, kill_every=(0.5, 1.0), rate=150.0,
        drain_seconds=15.0, stop_seconds=8.0, cleanup_every=None,
    ),
}
"""About 35 s each when all goes well; at most about 65 s when every stop and drain runs to its limit."""


@pytest.mark.alone  # 30-odd processes of its own, each to stop within 8 s: two at once on a loaded machine missed it
@pytest.mark.slow
def test_nothing_is_lost_or_wrongly_flagged_new_when_producers_and_consumers_are_sigkilled_at_random(
        engine: str, db_path: str, tmp_path: Path) -> None:
    result = torture.run(dataclasses.replace(RUN[engine], workdir=str(tmp_path / "run"), url=db_path))
    print("\n" + result.summary())
    assert result.failures == [], result.summary()
    assert result.passed
    # The run really tortured something: both kinds were killed, and messages flowed throughout.
    assert result.kills["producer"] > 0 and result.kills["consumer"] > 0
    assert result.cleanups >= (1 if RUN[engine].cleanup_every else 0)
    assert result.published > 0
    # Every message whose publish returned (and each killed producer's in-flight one) was acked.
    assert result.acked + result.acked_unlogged == result.published + result.unlogged_publishes
    assert result.left_over == 0


# ---------------------------------------------------------------------------------------------------------------
# The harness's checks can fail
# ---------------------------------------------------------------------------------------------------------------

def _finished_process() -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", ""])
    process.wait()
    return process


def test_harness_reports_a_lost_message_and_a_second_delivery_flagged_new(tmp_path: Path) -> None:
    import litemq

    harness = torture.Harness(torture.Config(workdir=str(tmp_path)), tmp_path)
    for sub in ("logs", "errors", "stderr"):
        (tmp_path / sub).mkdir()
    with litemq.connect(harness.db) as conn:
        conn.declare_queue(torture.QUEUE, durable=True)
    producer = torture._Proc("producer", "producer-0001", "p", _finished_process(), 0.0)
    consumer = torture._Proc("consumer", "consumer-0002", "c", _finished_process(), 0.0)
    harness.procs = [producer, consumer]
    (tmp_path / "logs" / "producer-0001.log").write_text("p:0\np:1\np:2\n")
    (tmp_path / "logs" / "consumer-0002.log").write_text(
        "delivered p:0 0\nacked p:0\ndelivered p:1 0\ndelivered p:1 0\nacked p:1\n")

    harness._analyse()

    failures = "\n".join(harness.result.failures)
    assert "1 published messages were never delivered and are gone: ['p:2']" in failures
    assert "1 messages were delivered more than once with redelivered=False: {'p:1': 2}" in failures
    assert len(harness.result.failures) == 2


# ---------------------------------------------------------------------------------------------------------------
# Cleaning up after a SIGKILLed owner (what bench/crash_detection.py's case (b) does, once)
# ---------------------------------------------------------------------------------------------------------------

def _wait_for(path: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.01)


def _sql(db_path: str, statement: str, *params: object) -> list[tuple]:
    return sql_rows(db_path, statement, params)


def test_exclusive_queue_of_a_sigkilled_owner_is_really_gone_once_a_passive_declare_reports_it_missing(
        db_path: str, conn: litemq.Connection, other: litemq.Connection, processes: Processes,
        tmp_path: Path) -> None:
    owner = processes.start(torture.own_exclusive_queue, db_path, str(tmp_path))
    _wait_for(tmp_path / "queue")
    queue = (tmp_path / "queue").read_text()
    with pytest.raises(litemq.ResourceLocked):  # the owner lives
        conn.declare_queue(queue, passive=True)
    os.kill(owner.pid, signal.SIGKILL)
    owner.join(10)

    with pytest.raises(litemq.QueueNotFound):
        conn.declare_queue(queue, passive=True)

    # The 404 must mean what it says: the dead owner was cleaned up and its queue is gone from the file, for
    # every connection. (Up to commit 68388cb the cleanup ran inside the passive declare's transaction, which the
    # QueueNotFound then rolled back, while this connection kept the dead owner's liveness lock: the row and the
    # dead connection stayed, and every other connection found the dead owner alive and got 405.)
    assert _sql(db_path, "SELECT name FROM litemq_queues WHERE name = ?", queue) == []
    assert _sql(db_path, "SELECT count(*) FROM litemq_connections") == [(2,)]  # conn and other
    with pytest.raises(litemq.QueueNotFound):
        other.declare_queue(queue, passive=True)


# ---------------------------------------------------------------------------------------------------------------
# Connections opening at the same moment (the torture's first workers all start at once)
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.sqlite_only  # the flock on a file's lock file
def test_a_connection_that_opens_while_another_is_opening_is_never_taken_for_dead(
        db_path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Found by the torture: a consumer's row outlived its connection, because the connection had been cleaned up
    # while it was alive. Replayed here in one process (flock locks belong to open files, so two connections in
    # one process lock each other as two processes do): B opens exactly while A has created its liveness lock
    # file and not yet locked it, the moment a process can be preempted at when many start together.
    import fcntl

    import litemq.store.lockfiles as liveness

    real_flock = fcntl.flock
    others: dict[str, Optional[litemq.Connection]] = {}

    def flock(fd: int, operation: int) -> None:
        if operation == fcntl.LOCK_EX and "b" not in others:  # A is about to lock its own file
            others["b"] = None  # B's own lock goes straight through
            others["b"] = litemq.connect(db_path)  # B opens now (and looks for stray lock files as it does)
        real_flock(fd, operation)

    litemq.connect(db_path).close()  # the file exists, as it does when workers start
    monkeypatch.setattr(liveness.fcntl, "flock", flock)
    a = litemq.connect(db_path)
    monkeypatch.setattr(liveness.fcntl, "flock", real_flock)
    b = others["b"]
    assert b is not None
    try:
        a.declare_queue("jobs")
        a.publish("", "jobs", b"job")
        held = a.get("jobs", lease_seconds=600)
        assert held is not None
        c = litemq.connect(db_path)  # any later connection checks for dead ones as it opens
        try:
            assert c.get("jobs") is None, "A is alive and holds the message, yet it was given out again"
            held.ack()  # litemq 0.1.0: LeaseExpired, A was taken for dead and its lease released
            assert _sql(db_path, "SELECT count(*) FROM litemq_connections") == [(3,)]
        finally:
            c.close()
    finally:
        a.close()
        b.close()
