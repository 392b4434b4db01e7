"""Deferred acks (``ack(deferred=True)``, and litemq.pika's basic_ack): sent without waiting, as RabbitMQ's acks are,
and committed by the connection's next write transaction, by its background thread within milliseconds, or at close;
a process killed before that gets its messages back redelivered.

Most tests hold the background thread off (a long ACK_DELAY_SECONDS), so that only what they do commits the acks."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Iterator, Optional

import pytest

import litemq
from litemq import DeliveryError, pika, session
from engines import BrokerSQL

BOUND = 10.0
"""Longest a test waits for what another thread or process does."""


@pytest.fixture
def jobs(conn: litemq.Connection) -> str:
    conn.declare_queue("jobs")
    conn.publish_many("", "jobs", [b"job-1", b"job-2", b"job-3"])
    return "jobs"


@pytest.fixture
def thread_held_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """The background thread leaves deferred acks alone for a minute: only the test's own calls commit them."""
    monkeypatch.setattr(session, "ACK_DELAY_SECONDS", 60.0)


def stored(sql: BrokerSQL, queue: str = "jobs") -> list[bytes]:
    """The bodies of the queue's message rows, ready or leased, as another connection sees them."""
    return [bytes(body) for (body,) in sql("SELECT body FROM litemq_messages WHERE queue = ? ORDER BY id", (queue,))]


def wait_until(condition: Any, what: str, timeout: float = BOUND) -> float:
    """Poll ``condition`` until true; how long that took."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.001)
    return time.monotonic() - start


# --- when a deferred ack commits

def test_a_deferred_ack_commits_with_the_next_write_of_the_connection_not_before(
        conn: litemq.Connection, jobs: str, sql: BrokerSQL, thread_held_off: None) -> None:
    delivery = conn.get(jobs)
    delivery.ack(deferred=True)
    assert stored(sql) == [b"job-1", b"job-2", b"job-3"]  # not yet
    conn.publish("", "other-queue-that-does-not-exist", b"x")  # any write: this one stores nothing
    assert stored(sql) == [b"job-2", b"job-3"]


def test_an_ack_made_before_a_publish_commits_with_it_never_after(
        conn: litemq.Connection, jobs: str, sql: BrokerSQL, thread_held_off: None) -> None:
    conn.get(jobs).ack(deferred=True)
    conn.publish("", jobs, b"job-4")
    assert stored(sql) == [b"job-2", b"job-3", b"job-4"]


def test_the_next_get_commits_the_ack_in_its_own_transaction(
        conn: litemq.Connection, jobs: str, sql: BrokerSQL, thread_held_off: None) -> None:
    first = conn.get(jobs)
    first.ack(deferred=True)
    commits = conn._store.commits
    second = conn.get(jobs)
    assert conn._store.commits == commits + 1  # one commit for the ack and the get
    assert second.body == b"job-2"
    assert stored(sql) == [b"job-2", b"job-3"]


def test_the_background_thread_commits_a_deferred_ack_when_nothing_else_writes(
        conn: litemq.Connection, jobs: str, sql: BrokerSQL) -> None:
    conn.get(jobs).ack(deferred=True)
    took = wait_until(lambda: stored(sql) == [b"job-2", b"job-3"], "the background thread committed the ack")
    # ACK_DELAY_SECONDS (5 ms) plus a commit: no bound asserted on a shared machine, but well under the wait's.
    assert took < BOUND


def test_a_stream_of_deferred_acks_does_not_wake_the_background_thread_once_each(
        conn: litemq.Connection, sql: BrokerSQL) -> None:
    conn.declare_queue("jobs")
    conn.publish_many("", "jobs", [b"job"] * 200)
    pokes = []
    original = conn._session._poke.set
    conn._session._poke.set = lambda: (pokes.append(1), original())[1]  # type: ignore[method-assign]
    for _ in range(200):
        conn.get("jobs").ack(deferred=True)
    wait_until(lambda: not stored(sql), "every ack committed")
    assert len(pokes) < 20  # the thread looks every few ms while acks come, and is poked again only after a rest


def test_close_commits_deferred_acks_first_and_returns_only_the_unacked(
        db_path: str, jobs: str, sql: BrokerSQL, thread_held_off: None) -> None:
    consumer_side = litemq.connect(db_path)
    acked, unacked = consumer_side.get(jobs), consumer_side.get(jobs)
    acked.ack(deferred=True)
    consumer_side.close()
    assert stored(sql) == [b"job-2", b"job-3"]
    with litemq.connect(db_path) as again:
        back = again.get(jobs)
        assert (back.body, back.redelivered) == (unacked.body, True)


def test_closing_a_channel_commits_its_deferred_acks_before_returning_what_it_holds(
        conn: litemq.Connection, jobs: str, sql: BrokerSQL, thread_held_off: None) -> None:
    channel = conn.channel()
    first, second = channel.get(jobs), channel.get(jobs)
    first.ack(deferred=True)
    channel.close()
    assert stored(sql) == [b"job-2", b"job-3"]
    assert [(d.body, d.redelivered) for d in (conn.get(jobs), conn.get(jobs))] == [
        (b"job-2", True), (b"job-3", False)]


def test_a_nack_after_deferred_acks_settles_them_first(
        conn: litemq.Connection, jobs: str, sql: BrokerSQL, thread_held_off: None) -> None:
    first, second = conn.get(jobs), conn.get(jobs)
    first.ack(deferred=True)
    conn.nack(0, multiple=True)  # everything outstanding: the deferred ack is no longer outstanding
    assert stored(sql) == [b"job-2", b"job-3"]
    back = conn.get(jobs)
    assert (back.body, back.redelivered) == (b"job-2", True)


def test_cancelling_a_consumer_commits_the_deferred_acks_first(
        conn: litemq.Connection, jobs: str, sql: BrokerSQL, thread_held_off: None) -> None:
    consumer = conn.consume(jobs, prefetch=2)
    consumer.get(timeout=0).ack(deferred=True)
    consumer.cancel()  # the unseen job-2 goes back unmarked
    assert stored(sql) == [b"job-2", b"job-3"]
    back = conn.get(jobs)
    assert (back.body, back.redelivered) == (b"job-2", False)


def test_a_deferred_ack_with_multiple_settles_every_earlier_delivery(
        conn: litemq.Connection, jobs: str, sql: BrokerSQL, thread_held_off: None) -> None:
    deliveries = [conn.get(jobs) for _ in range(3)]
    conn.ack(deliveries[1].delivery_tag, multiple=True, deferred=True)
    with pytest.raises(DeliveryError):
        deliveries[0].ack()  # settled by the multiple ack already
    conn.publish("", jobs, b"job-4")
    assert stored(sql) == [b"job-3", b"job-4"]


# --- what is refused at once

def test_a_second_ack_of_a_deferred_delivery_raises_at_once(
        conn: litemq.Connection, jobs: str, thread_held_off: None) -> None:
    delivery = conn.get(jobs)
    delivery.ack(deferred=True)
    with pytest.raises(DeliveryError, match=f"unknown delivery tag {delivery.delivery_tag}"):
        delivery.ack(deferred=True)
    with pytest.raises(DeliveryError):
        delivery.ack()
    with pytest.raises(DeliveryError):
        delivery.nack()
    with pytest.raises(DeliveryError, match="unknown delivery tag 99"):
        conn.ack(99, deferred=True)
    with pytest.raises(TypeError):
        conn.ack("1", deferred=True)  # type: ignore[arg-type]


def test_pika_basic_ack_of_an_unknown_tag_closes_the_channel_at_once(db_path: str, jobs: str) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(db_path if "://" in db_path else "sqlite:///" + db_path))
    try:
        channel = connection.channel()
        method, _, _ = channel.basic_get(jobs)
        channel.basic_ack(method.delivery_tag)
        with pytest.raises(pika.exceptions.ChannelClosedByBroker, match="unknown delivery tag"):
            channel.basic_ack(method.delivery_tag)
    finally:
        connection.close()


# --- a lease that expired before the ack was committed

@pytest.mark.no_lease_renewal
def test_a_deferred_ack_whose_lease_expired_meanwhile_is_logged_with_its_queue_and_tag(
        conn: litemq.Connection, other: litemq.Connection, jobs: str, sql: BrokerSQL, thread_held_off: None,
        caplog: pytest.LogCaptureFixture) -> None:
    late = conn.get(jobs, lease_seconds=0.05)
    late.ack(deferred=True)
    time.sleep(0.1)
    again = other.get(jobs)  # the expired lease returns the message, and another consumer holds it now
    assert (again.body, again.redelivered) == (b"job-1", True)
    with caplog.at_level(logging.WARNING, logger="litemq"):
        conn.publish("", jobs, b"job-4")  # commits the late ack: it cannot raise any more
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert f"delivery tag {late.delivery_tag} " in warnings[0] and "'jobs'" in warnings[0]
    assert "lease expired" in warnings[0]
    again.ack()  # the new holder's message was never touched
    assert stored(sql) == [b"job-2", b"job-3", b"job-4"]


# --- counts and prefetch room

def test_counts_are_right_once_deferred_acks_are_committed(
        conn: litemq.Connection, jobs: str, sql: BrokerSQL, thread_held_off: None) -> None:
    consumer = conn.consume(jobs, prefetch=2)
    first, second = consumer.get(timeout=0), consumer.get(timeout=0)
    first.ack(deferred=True)
    second.ack(deferred=True)
    assert consumer.unacked == 0  # its room is free at once
    conn._session.settle_acks()
    assert conn.declare_queue(jobs, passive=True).message_count == 1
    assert sql("SELECT ready, unacked, total FROM litemq_queue_stats WHERE queue = 'jobs'") == [(1, 0, 1)]


def test_a_deferred_ack_frees_prefetch_room_for_the_next_claim_in_the_same_transaction(
        conn: litemq.Connection, jobs: str, sql: BrokerSQL, thread_held_off: None) -> None:
    consumer = conn.consume(jobs, prefetch=1)
    first = consumer.get(timeout=0)
    first.ack(deferred=True)
    commits = conn._store.commits
    second = consumer.get(timeout=0)  # no wait: the claim commits the ack and takes the next
    assert second is not None and second.body == b"job-2"
    assert conn._store.commits == commits + 1
    assert stored(sql) == [b"job-2", b"job-3"]
    assert sql.value("SELECT count(*) FROM litemq_messages WHERE queue = 'jobs' AND lease_owner IS NOT NULL") == 1


def test_a_consumer_waiting_in_another_thread_claims_once_a_deferred_ack_frees_its_room(
        conn: litemq.Connection, jobs: str) -> None:
    consumer = conn.consume(jobs, prefetch=1)
    first = consumer.get(timeout=0)
    got: list[Optional[litemq.Delivery]] = []
    waiter = threading.Thread(target=lambda: got.append(consumer.get(timeout=BOUND)))
    waiter.start()
    wait_until(lambda: consumer.waiting, "the other thread waits")
    first.ack(deferred=True)  # committed by the background thread, which rings the waiting consumer
    waiter.join(BOUND + 1)
    assert [d.body for d in got if d is not None] == [b"job-2"]


# --- processes that end

CHILD = """
import os, signal, sys
import litemq
from litemq import session
session.ACK_DELAY_SECONDS = 60.0  # only the connection's own transactions, close or exit commit the ack
conn = litemq.connect(sys.argv[1])
delivery = conn.get("jobs", lease_seconds=600)
delivery.ack(deferred=True)
print(delivery.body.decode(), flush=True)
if sys.argv[2] == "kill":
    os.kill(os.getpid(), signal.SIGKILL)
# "exit": the interpreter ends with the connection open and the ack pending
"""


@pytest.fixture
def child(db_path: str, jobs: str, subprocess_env: dict[str, str], popen: list[subprocess.Popen]) -> Any:
    def run(how: str) -> tuple[int, str]:
        process = subprocess.Popen([sys.executable, "-c", CHILD, db_path, how], env=subprocess_env,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        popen.append(process)
        out, err = process.communicate(timeout=BOUND * 3)
        return process.returncode, out + err
    return run


def test_a_process_killed_with_deferred_acks_pending_gets_them_back_redelivered(
        child: Any, other: litemq.Connection, sql: BrokerSQL) -> None:
    code, output = child("kill")
    assert (code, output.strip()) == (-signal.SIGKILL, "job-1")
    deadline = time.monotonic() + BOUND
    delivery = None
    while delivery is None or delivery.body != b"job-1":  # once its death is seen (on PostgreSQL, once the server
        assert time.monotonic() < deadline, "the dead process's message never came back"  # ended its session)
        if delivery is not None:
            delivery.nack()
        time.sleep(0.01)
        other._session.sweep(force=True)  # a get sweeps only when its queue is empty
        delivery = other.get("jobs")
    assert (delivery.redelivered, delivery.delivery_count) == (True, 2)


def test_interpreter_exit_commits_deferred_acks(child: Any, sql: BrokerSQL) -> None:
    code, output = child("exit")
    assert (code, output.strip()) == (0, "job-1")
    assert stored(sql) == [b"job-2", b"job-3"]
