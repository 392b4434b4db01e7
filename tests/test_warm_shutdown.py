"""Warm shutdown: on a stop signal (``run(callback, stop_on=(signal.SIGTERM,))``, ``consumer.stop_on(...)``) or
``finish()``, the delivery in hand is finished and acked, then consuming ends without taking another; what was
claimed but not handed out goes back to the queue unmarked.

The signal tests run a real worker process (spawned with default signal handlers, time-bounded, killed by pid at
the end) whose handler waits until the SIGTERM has arrived before it acks, so the signal lands mid-handler."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from engines import sql_rows
from facade_workers import default_signals
import litemq

BOUND = 30.0
"""Seconds allowed for a fresh Python process to start, or to end once told (milliseconds normally)."""

WORKER = '''
import os, signal, sys, time
import litemq

db_path, out, mode = sys.argv[1:4]


def note(name, text=""):
    # Appended, and atomically: the test reads a note as soon as it exists.
    path = os.path.join(out, name)
    kept = open(path).read() if os.path.exists(path) else ""
    with open(path + ".partial", "w") as f:
        f.write(kept + text)
    os.replace(path + ".partial", path)


def handle(delivery, consumer):
    note("in-handler", delivery.body.decode())
    deadline = time.monotonic() + {bound}
    while not consumer.finishing and time.monotonic() < deadline:  # until the signal has come, mid-handler
        time.sleep(0.005)
    if mode.endswith("-twice"):
        note("second-signal-wanted")
        while time.monotonic() < deadline:
            time.sleep(0.005)  # the second SIGTERM stops the process in here
    delivery.ack()
    note("acked", delivery.body.decode() + "\\n")


async def handle_async(delivery, consumer):
    import asyncio

    note("in-handler", delivery.body.decode())
    deadline = time.monotonic() + {bound}
    while not consumer.finishing and time.monotonic() < deadline:  # until the signal has come, mid-handler
        await asyncio.sleep(0.005)
    await delivery.ack()
    note("acked", delivery.body.decode() + "\\n")


async def consume_async():
    import litemq.aio

    async with litemq.aio.connect(db_path) as conn:
        if mode == "aio-iterate":
            consumer = conn.consume("jobs", prefetch=5)
        else:
            consumer = conn.consume_many(["other", "jobs"], prefetch=5)
        note("ready")
        async for delivery in consumer.stop_on(signal.SIGTERM):
            await handle_async(delivery, consumer)


if mode.startswith("aio"):
    import asyncio

    asyncio.run(consume_async())
    note("returned", str(signal.getsignal(signal.SIGTERM) is signal.SIG_DFL))
    sys.exit(0)

with litemq.connect(db_path) as conn:
    if mode.startswith("run"):
        consumer = conn.consume("jobs", prefetch=5)
        note("ready")
        consumer.run(lambda delivery: handle(delivery, consumer), stop_on=(signal.SIGTERM,))
    elif mode == "iterate":
        consumer = conn.consume("jobs", prefetch=5)
        note("ready")
        for delivery in consumer.stop_on(signal.SIGTERM):
            handle(delivery, consumer)
    elif mode == "consume-many":
        consumer = conn.consume_many(["other", "jobs"], prefetch=5)
        note("ready")
        consumer.run(lambda delivery: handle(delivery, consumer), stop_on=(signal.SIGTERM,))
    note("returned", str(signal.getsignal(signal.SIGTERM) is signal.SIG_DFL))
'''.replace("{bound}", str(BOUND))


def start_worker(db_path: str, tmp_path: Path, mode: str, env: dict[str, str],
                 popen: list[subprocess.Popen[str]]) -> subprocess.Popen[str]:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    out = tmp_path / "out"
    out.mkdir()
    process = subprocess.Popen([sys.executable, str(script), db_path, str(out), mode], env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=default_signals)
    popen.append(process)
    return process


def wait_for(process: subprocess.Popen[str], path: Path) -> str:
    deadline = time.monotonic() + BOUND
    while not path.exists():
        if process.poll() is not None:
            raise AssertionError(f"worker ended with {process.returncode} before {path.name}: "
                                 f"{process.communicate()[1]}")
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.005)
    return path.read_text()


def messages(db_path: str) -> list[tuple[bytes, int, bool]]:
    """Every message of 'jobs': (body, delivery_count, leased)."""
    return sql_rows(db_path, "SELECT coalesce(m.body, b.body), delivery_count, lease_token IS NOT NULL "
                             "FROM litemq_messages m LEFT JOIN litemq_bodies b ON b.id = m.id "
                             "WHERE queue = 'jobs' ORDER BY m.id")


@pytest.fixture
def jobs(conn: litemq.Connection) -> list[bytes]:
    conn.declare_queue("jobs")
    conn.declare_queue("other")
    bodies = [b"job-%d" % i for i in range(5)]
    conn.publish_many("", "jobs", bodies)
    return bodies


@pytest.mark.parametrize("mode", ["run", "iterate", "consume-many", "aio-iterate", "aio-consume-many"])
def test_sigterm_mid_handler_finishes_and_acks_that_message_once_and_takes_no_other(
        db_path: str, tmp_path: Path, jobs: list[bytes], subprocess_env: dict[str, str],
        popen: list[subprocess.Popen[str]], mode: str) -> None:
    worker = start_worker(db_path, tmp_path, mode, subprocess_env, popen)
    out = tmp_path / "out"
    in_hand = wait_for(worker, out / "in-handler")
    assert in_hand == "job-0"
    # The worker claimed up to its prefetch (5): all five are leased now, one of them handed out.
    os.kill(worker.pid, signal.SIGTERM)
    _, stderr = worker.communicate(timeout=BOUND)
    assert worker.returncode == 0, stderr
    assert (out / "acked").read_text() == "job-0\n"  # its handler ran to its end and acked it, once
    assert (out / "in-handler").read_text() == "job-0"  # no other delivery was handed out
    assert (out / "returned").read_text() == "True"  # run returned, the SIGTERM handler before it restored
    # The other four went back unmarked: not redelivered, never counted as delivered.
    assert messages(db_path) == [(body, 0, False) for body in jobs[1:]]


def test_a_second_sigterm_stops_at_once_and_the_message_in_hand_comes_back(
        db_path: str, tmp_path: Path, jobs: list[bytes], conn: litemq.Connection,
        subprocess_env: dict[str, str], popen: list[subprocess.Popen[str]]) -> None:
    worker = start_worker(db_path, tmp_path, "run-twice", subprocess_env, popen)
    out = tmp_path / "out"
    wait_for(worker, out / "in-handler")
    os.kill(worker.pid, signal.SIGTERM)
    wait_for(worker, out / "second-signal-wanted")
    os.kill(worker.pid, signal.SIGTERM)
    worker.communicate(timeout=BOUND)
    assert worker.returncode == 128 + signal.SIGTERM
    assert not (out / "acked").exists()
    # Closed as the process unwound: the message in hand comes back marked redelivered, the rest unmarked.
    assert messages(db_path) == [(jobs[0], 1, False)] + [(body, 0, False) for body in jobs[1:]]
    delivery = conn.get("jobs")
    assert delivery is not None and delivery.body == jobs[0] and delivery.redelivered


def test_sigterm_while_waiting_for_a_message_returns_at_once_and_takes_nothing(
        db_path: str, tmp_path: Path, conn: litemq.Connection, subprocess_env: dict[str, str],
        popen: list[subprocess.Popen[str]]) -> None:
    conn.declare_queue("jobs")
    conn.declare_queue("other")
    worker = start_worker(db_path, tmp_path, "run", subprocess_env, popen)
    out = tmp_path / "out"
    wait_for(worker, out / "ready")
    time.sleep(0.1)  # into its wait (either way it must end promptly)
    os.kill(worker.pid, signal.SIGTERM)
    _, stderr = worker.communicate(timeout=BOUND)
    assert worker.returncode == 0, stderr
    assert (out / "returned").read_text() == "True"
    conn.publish("", "jobs", b"after")
    assert messages(db_path) == [(b"after", 0, False)]


# ---------------------------------------------------------------------------------------------------------------
# finish() and stop_on in one process
# ---------------------------------------------------------------------------------------------------------------

def test_finish_from_the_loop_body_ends_iteration_after_that_delivery_and_returns_the_unseen(
        conn: litemq.Connection) -> None:
    conn.declare_queue("jobs")
    conn.publish_many("", "jobs", [b"1", b"2", b"3"])
    consumer = conn.consume("jobs", prefetch=3)
    seen = []
    for delivery in consumer:
        seen.append(delivery.body)
        consumer.finish()
        delivery.ack()  # its ack claims nothing more for a finishing consumer
    assert seen == [b"1"]
    assert not consumer.active
    assert [(d.body, d.redelivered) for d in iter(lambda: conn.get("jobs", auto_ack=True), None)] == [
        (b"2", False), (b"3", False)]


def test_finish_from_another_thread_wakes_a_waiting_iteration(conn: litemq.Connection) -> None:
    conn.declare_queue("jobs")
    consumer = conn.consume("jobs")
    timer = threading.Timer(0.1, consumer.finish)
    timer.start()
    started = time.monotonic()
    assert list(consumer) == []
    assert time.monotonic() - started < BOUND
    timer.join()


def test_a_finishing_auto_ack_consumer_hands_out_what_it_already_took(conn: litemq.Connection) -> None:
    conn.declare_queue("jobs")
    conn.publish_many("", "jobs", [b"1", b"2", b"3"])
    consumer = conn.consume("jobs", auto_ack=True, prefetch=3)
    seen = []
    for delivery in consumer:
        seen.append(delivery.body)
        consumer.finish()
    assert seen == [b"1", b"2", b"3"]  # taken from the queue by the first claim: handing them out loses none
    assert conn.declare_queue("jobs", passive=True).message_count == 0


def test_stop_on_restores_the_signal_handlers_it_replaced(conn: litemq.Connection) -> None:
    def mine(signum: int, frame: object) -> None:
        raise AssertionError("not to be called")

    conn.declare_queue("jobs")
    previous = signal.signal(signal.SIGUSR1, mine)
    try:
        consumer = conn.consume("jobs", inactivity_timeout=0.01).stop_on(signal.SIGUSR1, signal.SIGTERM)
        during = []
        consumer.run(lambda delivery: None)
        conn.publish("", "jobs", b"x")
        consumer = conn.consume("jobs", inactivity_timeout=0.01).stop_on(signal.SIGUSR1)
        for delivery in consumer:
            during.append(signal.getsignal(signal.SIGUSR1))
            os.kill(os.getpid(), signal.SIGUSR1)  # finishes it, does not call mine
            delivery.ack()
        assert len(during) == 1 and during[0] is not mine
        assert signal.getsignal(signal.SIGUSR1) is mine
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    finally:
        signal.signal(signal.SIGUSR1, previous)


def test_stop_on_outside_the_main_thread_is_refused_with_what_to_do_instead(conn: litemq.Connection) -> None:
    conn.declare_queue("jobs")
    consumer = conn.consume("jobs", inactivity_timeout=0.01)
    raised: list[BaseException] = []

    def run() -> None:
        try:
            consumer.run(lambda delivery: None, stop_on=(signal.SIGTERM,))
        except BaseException as exc:
            raised.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(BOUND)
    assert len(raised) == 1 and isinstance(raised[0], RuntimeError)
    assert "main thread" in str(raised[0]) and "finish()" in str(raised[0])


def test_stop_on_refuses_what_is_not_a_signal(conn: litemq.Connection) -> None:
    conn.declare_queue("jobs")
    with pytest.raises(ValueError):
        conn.consume("jobs").stop_on(9999)
