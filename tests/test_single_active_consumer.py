"""Single active consumer (x-single-active-consumer): of a queue's consumers only the longest-standing receives;
when it is cancelled, its channel or connection closes, or its process dies, the next one takes over, and the
messages the first had not acked come back to it first, marked redelivered. Inactive consumers count as consumers,
and wait without polling.

RabbitMQ parity is in tests/conformance; these are litemq's own promises, across connections and processes. The
holder killed by SIGKILL runs in a spawned process (liveness_workers.hold) with a 600 s lease, so what comes back
within the bounds here came back because its death was noticed.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any, Iterator, Optional

import pytest

import litemq
import litemq.timing
import liveness_workers
from conftest import Processes
from engines import BrokerSQL
from liveness_workers import wait_for_files, worker_errors
from litemq import PreconditionFailed, QueueNotFound

BOUND = 5.0
"""Seconds allowed for what normally takes milliseconds (a loaded 2-core machine must never flake)."""
QUIET = 0.2
"""How long an inactive consumer is given to (wrongly) receive something."""


@pytest.fixture
def third(db_path: str, conn: litemq.Connection) -> Iterator[litemq.Connection]:
    with litemq.connect(db_path) as connection:
        yield connection


@pytest.fixture
def sac(conn: litemq.Connection) -> str:
    conn.declare_queue("sac", arguments={"x-single-active-consumer": True})
    return "sac"


def publish(conn: litemq.Connection, queue: str, *bodies: str) -> None:
    for body in bodies:
        conn.publish("", queue, body)


def take(consumer: litemq.Consumer, count: int, timeout: float = BOUND, ack: bool = True) -> list[tuple[str, bool]]:
    """(body, redelivered) of up to ``count`` deliveries within ``timeout`` seconds, acked unless told not to."""
    deadline = time.monotonic() + timeout
    got = []
    while len(got) < count:
        delivery = consumer.get(timeout=max(0.0, deadline - time.monotonic()))
        if delivery is None:
            break
        if ack:
            delivery.ack()  # before the next: a consumer with a prefetch of 1 has room for it only then
        got.append((delivery.body.decode(), delivery.redelivered))
    return got


def nothing_for(consumer: litemq.Consumer, seconds: float = QUIET) -> bool:
    return consumer.get(timeout=seconds) is None


# ---------------------------------------------------------------------------------------------------------------
# Only the longest-standing consumer receives
# ---------------------------------------------------------------------------------------------------------------

def test_only_the_first_consumer_receives_even_while_messages_wait_that_it_has_no_room_for(
        conn: litemq.Connection, other: litemq.Connection, sac: str) -> None:
    first = conn.consume(sac, prefetch=1)
    second = other.consume(sac, prefetch=1)
    publish(conn, sac, "m0", "m1", "m2", "m3")
    held = first.get(timeout=0)
    assert held.body == b"m0"
    assert nothing_for(second)
    assert conn.declare_queue(sac, passive=True).message_count == 3
    held.ack()
    assert take(first, 3) == [("m1", False), ("m2", False), ("m3", False)]
    assert nothing_for(second, 0)


def test_an_inactive_consumer_gets_nothing_even_on_the_same_connection(conn: litemq.Connection, sac: str) -> None:
    first = conn.consume(sac)
    second = conn.channel().consume(sac)
    publish(conn, sac, "m0", "m1")
    assert nothing_for(second, 0)
    assert take(first, 2) == [("m0", False), ("m1", False)]


def test_both_active_and_waiting_consumers_count_as_consumers(conn: litemq.Connection, other: litemq.Connection,
                                                              sac: str, sql: BrokerSQL) -> None:
    first = conn.consume(sac)
    other.consume(sac)
    assert conn.declare_queue(sac, passive=True).consumer_count == 2
    assert sql("SELECT consumers FROM litemq_queue_stats WHERE queue = 'sac'") == [(2,)]
    first.cancel()
    assert other.declare_queue(sac, passive=True).consumer_count == 1


def test_without_single_active_consumer_two_consumers_share_the_queue(conn: litemq.Connection,
                                                                      other: litemq.Connection) -> None:
    conn.declare_queue("shared", arguments={"x-single-active-consumer": False})
    first, second = conn.consume("shared", prefetch=1), other.consume("shared", prefetch=1)
    publish(conn, "shared", "m0", "m1")
    assert first.get(timeout=0).body == b"m0"
    assert second.get(timeout=0).body == b"m1"


# ---------------------------------------------------------------------------------------------------------------
# The next consumer takes over
# ---------------------------------------------------------------------------------------------------------------

def test_when_the_first_is_cancelled_the_second_receives_the_rest(conn: litemq.Connection,
                                                                  other: litemq.Connection, sac: str) -> None:
    first = conn.consume(sac, prefetch=1)
    second = other.consume(sac, prefetch=1)
    publish(conn, sac, "m0", "m1", "m2")
    assert take(first, 1) == [("m0", False)]
    first.cancel()
    assert take(second, 2) == [("m1", False), ("m2", False)]


def test_messages_the_cancelled_consumer_had_claimed_but_not_handed_out_go_to_the_next_unmarked(
        conn: litemq.Connection, other: litemq.Connection, sac: str) -> None:
    publish(conn, sac, "m0", "m1", "m2", "m3")
    first = conn.consume(sac, prefetch=3)
    assert take(first, 1) == [("m0", False)]  # m1 and m2 were claimed with it, never seen
    second = other.consume(sac, prefetch=3)
    first.cancel()
    assert take(second, 3) == [("m1", False), ("m2", False), ("m3", False)]


def test_deliveries_the_cancelled_consumer_still_holds_stay_its_own_to_ack(conn: litemq.Connection,
                                                                          other: litemq.Connection,
                                                                          sac: str, sql: BrokerSQL) -> None:
    first = conn.consume(sac, prefetch=1)
    second = other.consume(sac, prefetch=1)
    publish(conn, sac, "m0", "m1")
    held = first.get(timeout=0)
    first.cancel()  # RabbitMQ's rule: a cancel leaves handed-out deliveries unacked, with their consumer's channel
    assert take(second, 1) == [("m1", False)]
    assert nothing_for(second, 0)
    held.ack()
    assert sql("SELECT count(*) FROM litemq_messages") == [(0,)]


def test_the_longest_standing_of_the_remaining_consumers_takes_over(conn: litemq.Connection,
                                                                    other: litemq.Connection,
                                                                    third: litemq.Connection, sac: str) -> None:
    first = conn.consume(sac)
    second = other.consume(sac)
    last = third.consume(sac)
    first.cancel()
    publish(conn, sac, "m0", "m1")
    assert nothing_for(last, 0)
    assert take(second, 2) == [("m0", False), ("m1", False)]
    assert nothing_for(last, 0)


def test_a_consumer_that_comes_back_queues_up_behind_the_others(conn: litemq.Connection, other: litemq.Connection,
                                                                sac: str) -> None:
    first = conn.consume(sac)
    second = other.consume(sac)
    first.cancel()
    again = conn.consume(sac)
    publish(conn, sac, "m0")
    assert nothing_for(again, 0)
    assert take(second, 1) == [("m0", False)]


def test_a_waiting_second_consumer_is_woken_when_the_first_is_cancelled(conn: litemq.Connection,
                                                                        other: litemq.Connection, sac: str,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # Waiters also look at the file every RECHECK_SECONDS; made longer than the test, only a wake-up can do it.
    monkeypatch.setattr(litemq.timing, "RECHECK_SECONDS", 60.0)
    first = conn.consume(sac, prefetch=1)
    second = other.consume(sac, prefetch=1)
    publish(conn, sac, "m0", "m1")
    assert take(first, 1) == [("m0", False)]
    got: list[Optional[litemq.Delivery]] = []
    waiting = threading.Thread(target=lambda: got.append(second.get(timeout=BOUND)))
    waiting.start()  # m1 is ready, but not for it
    time.sleep(QUIET)
    assert not got
    cancelled = time.monotonic()
    first.cancel()
    waiting.join(BOUND + 1)
    taken_over = time.monotonic() - cancelled
    assert got and got[0] is not None and got[0].body == b"m1", f"after {taken_over:.2f}s"
    got[0].ack()


@pytest.mark.parametrize("closing", ["channel", "connection"])
def test_when_the_first_consumer_s_channel_closes_its_unacked_messages_go_to_the_next_first_marked_redelivered(
        db_path: str, other: litemq.Connection, sac: str, closing: str) -> None:
    first_connection = litemq.connect(db_path)
    try:
        channel = first_connection.channel()
        first = channel.consume(sac, prefetch=2)
        second = other.consume(sac, prefetch=10)
        publish(other, sac, "m0", "m1", "m2", "m3")
        assert take(first, 2, ack=False) == [("m0", False), ("m1", False)]
        assert nothing_for(second)
        (channel if closing == "channel" else first_connection).close()
        assert take(second, 4) == [("m0", True), ("m1", True), ("m2", False), ("m3", False)]
    finally:
        first_connection.close()


def test_when_the_first_consumer_s_process_is_killed_the_second_takes_over_with_its_unacked_messages(
        db_path: str, conn: litemq.Connection, sac: str, processes: Processes, tmp_path: Path) -> None:
    publish(conn, sac, "m0", "m1", "m2", "m3", "m4")
    holder = processes.start(liveness_workers.hold, db_path, sac, 3, str(tmp_path), "holder")
    wait_for_files([tmp_path / "held-holder"], timeout=30)
    assert (tmp_path / "held-holder").read_text().splitlines()[:3] == ["m0", "m1", "m2"]
    second = conn.consume(sac, prefetch=10)
    assert nothing_for(second)  # m3 and m4 are ready, but the holder is the active consumer
    os.kill(holder.pid, signal.SIGKILL)
    killed = time.monotonic()
    got = take(second, 5)
    waited = time.monotonic() - killed
    holder.join(BOUND)
    assert got == [("m0", True), ("m1", True), ("m2", True), ("m3", False), ("m4", False)], f"after {waited:.2f}s"
    assert holder.exitcode == -signal.SIGKILL
    assert worker_errors(tmp_path) == {}
    assert conn.declare_queue(sac, passive=True).consumer_count == 1


# ---------------------------------------------------------------------------------------------------------------
# The argument
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [1, 0, "true", "yes", [True]])
def test_x_single_active_consumer_must_be_a_boolean_and_nothing_is_created_otherwise(conn: litemq.Connection,
                                                                                    value: Any) -> None:
    with pytest.raises(PreconditionFailed, match=r"x-single-active-consumer.*'sac'") as info:
        conn.declare_queue("sac", arguments={"x-single-active-consumer": value})
    assert info.value.reply_code == 406
    with pytest.raises(QueueNotFound):
        conn.declare_queue("sac", passive=True)


def test_a_single_active_consumer_queue_redeclared_without_it_is_refused(conn: litemq.Connection, sac: str) -> None:
    for arguments in (None, {"x-single-active-consumer": False}):
        with pytest.raises(PreconditionFailed):
            conn.declare_queue(sac, arguments=arguments)
    assert conn.declare_queue(sac, arguments={"x-single-active-consumer": True}).queue == sac


# ---------------------------------------------------------------------------------------------------------------
# Waiting without polling
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.alone
def test_an_inactive_consumer_waits_without_busy_polling_while_messages_are_ready(
        db_path: str, conn: litemq.Connection, sac: str, processes: Processes, tmp_path: Path) -> None:
    active = conn.consume(sac, prefetch=1)
    publish(conn, sac, "m0", "m1", "m2")
    assert active.get(timeout=0).body == b"m0"  # held: m1 and m2 stay ready, for the active consumer only
    idle = processes.start(liveness_workers.measure_idle_cpu, db_path, sac, 0.5, str(tmp_path))
    idle.join(30)
    assert worker_errors(tmp_path) == {}  # among them: the inactive consumer received nothing
    cpu, wall = map(float, (tmp_path / "cpu").read_text().split())
    assert wall >= 0.5
    assert cpu < 0.2 * wall, f"{cpu:.3f} CPU seconds in {wall:.3f} s of waiting"
    assert conn.declare_queue(sac, passive=True).message_count == 2
