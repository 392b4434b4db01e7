"""Consumer priorities (RabbitMQ's ``x-priority``): a queue delivers to its highest-priority consumers that have
room, in turn among equals, and to lower ones only while every higher one holds its prefetch; in one process, across
processes sharing the file, and through litemq.pika."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

import consumer_priority_workers
import litemq
from engines import as_url
from litemq import pika

WAIT = 20.0


@pytest.fixture
def jobs(conn):
    conn.declare_queue("jobs")
    return "jobs"


def publish(conn, queue, count, start=0):
    for n in range(start, start + count):
        conn.publish("", queue, f"m{n}")


def bodies(consumer, timeout=0.0):
    taken = []
    while (delivery := consumer.get(timeout)) is not None:
        taken.append(delivery.body.decode())
    return taken


# --- in one process


def test_a_higher_priority_consumer_with_room_takes_every_message(conn, jobs):
    low = conn.channel().consume(jobs, priority=0)
    high = conn.channel().consume(jobs, priority=5, prefetch=10)
    publish(conn, jobs, 3)
    assert bodies(low) == []
    assert bodies(high) == ["m0", "m1", "m2"]


def test_a_lower_priority_consumer_takes_what_a_full_higher_one_cannot(conn, jobs):
    high = conn.channel().consume(jobs, priority=10, prefetch=1)
    low = conn.channel().consume(jobs, priority=1, prefetch=1)
    publish(conn, jobs, 4)
    assert bodies(low) == []  # the high one has room: nothing for the low one yet
    first = high.get(0)
    assert first.body == b"m0"
    assert low.get(0).body == b"m1"  # the high one holds its prefetch now
    assert high.get(0) is None and low.get(0) is None  # both full: m2 and m3 wait
    first.ack()  # room again: the high one takes the next, in the ack's transaction
    assert high.get(0).body == b"m2"


def test_a_higher_priority_consumer_that_nacks_has_room_again(conn, jobs):
    high = conn.channel().consume(jobs, priority=10, prefetch=1)
    low = conn.channel().consume(jobs, priority=1)
    publish(conn, jobs, 1)
    held = high.get(0)
    held.nack(requeue=False)  # dropped; the high one has room again
    publish(conn, jobs, 1, start=1)
    assert low.get(0) is None
    assert high.get(0).body == b"m1"


def test_equal_priorities_share_and_lower_ones_wait(conn, jobs):
    first = conn.channel().consume(jobs, priority=3)
    second = conn.channel().consume(jobs, priority=3)
    default = conn.channel().consume(jobs)
    publish(conn, jobs, 4)
    assert [first.get(0).body, second.get(0).body, first.get(0).body, second.get(0).body] == [
        b"m0", b"m1", b"m2", b"m3"]
    assert default.get(0) is None


def test_a_negative_priority_ranks_below_the_default(conn, jobs):
    negative = conn.channel().consume(jobs, priority=-5, prefetch=1)
    default = conn.channel().consume(jobs, prefetch=1)
    publish(conn, jobs, 2)
    assert negative.get(0) is None
    assert default.get(0).body == b"m0"
    assert negative.get(0).body == b"m1"


def test_cancelling_the_higher_priority_consumer_lets_lower_ones_claim(conn, jobs):
    high = conn.channel().consume(jobs, priority=10)
    low = conn.channel().consume(jobs)
    publish(conn, jobs, 1)
    assert low.get(0) is None
    high.cancel()
    assert low.get(0).body == b"m0"


def test_an_auto_ack_higher_priority_consumer_never_fills(conn, jobs):
    high = conn.channel().consume(jobs, priority=10, auto_ack=True, prefetch=1)
    low = conn.channel().consume(jobs)
    publish(conn, jobs, 3)
    assert bodies(low) == []
    assert bodies(high) == ["m0", "m1", "m2"]


def test_a_waiting_lower_priority_consumer_is_woken_when_the_higher_one_fills(conn, jobs):
    high = conn.channel().consume(jobs, priority=10, prefetch=1)
    low = conn.channel().consume(jobs)
    got = []
    waiter = threading.Thread(target=lambda: got.append(low.get(timeout=WAIT)))
    waiter.start()
    publish(conn, jobs, 2)
    held = high.get(timeout=WAIT)
    waiter.join(WAIT)
    assert not waiter.is_alive()
    assert held.body == b"m0" and got[0] is not None and got[0].body == b"m1"


def test_basic_get_ignores_consumer_priorities(conn, jobs):
    conn.channel().consume(jobs, priority=10)
    publish(conn, jobs, 1)
    assert conn.get(jobs).body == b"m0"


@pytest.mark.parametrize("priority, error", [("5", TypeError), (True, TypeError), (1.5, TypeError),
                                             (1 << 63, ValueError), (-(1 << 63) - 1, ValueError)])
def test_a_priority_must_be_a_64_bit_int(conn, jobs, priority, error):
    with pytest.raises(error, match="priority"):
        conn.consume(jobs, priority=priority)
    assert conn.declare_queue(jobs).consumer_count == 0


def test_a_consumer_row_records_its_priority(conn, jobs, sql):
    conn.consume(jobs, priority=-7)
    assert sql("SELECT priority, has_room FROM litemq_consumers") == [(-7, 1)]


# --- across processes sharing the file


def _start(processes, db_path, tmp_path, name, priority, prefetch, ack):
    processes.start(consumer_priority_workers.consume_with_priority, db_path, "jobs", priority, prefetch, ack,
                    str(tmp_path), name)
    _wait_for(lambda: (tmp_path / f"ready-{name}").exists(), tmp_path)


def _wait_for(condition, tmp_path: Path) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        errors = list((tmp_path / "errors").glob("*.txt")) if (tmp_path / "errors").exists() else []
        assert not errors, errors[0].read_text()
        assert time.monotonic() < deadline, "a worker did not get there in time"
        time.sleep(0.02)


def _received(tmp_path: Path, name: str) -> list[str]:
    path = tmp_path / f"{name}.txt"
    return path.read_text().split("\n") if path.exists() else []


def test_a_higher_priority_consumer_in_another_process_takes_every_message(conn, jobs, db_path, tmp_path,
                                                                          processes):
    _start(processes, db_path, tmp_path, "high", 10, 0, True)
    low = conn.consume(jobs, priority=0)
    publish(conn, jobs, 20)
    assert low.get(0.5) is None  # it looks while messages are there, and is outranked
    _wait_for(lambda: len(_received(tmp_path, "high")) == 20, tmp_path)
    assert _received(tmp_path, "high") == [f"m{n}" for n in range(20)]
    (tmp_path / "stop").write_text("")
    processes.join_all(WAIT)


def test_a_lower_priority_consumer_takes_what_a_full_one_in_another_process_cannot(conn, jobs, db_path,
                                                                                  tmp_path, processes):
    _start(processes, db_path, tmp_path, "high", 10, 2, False)  # holds two and never acks
    low = conn.consume(jobs, priority=0)
    publish(conn, jobs, 5)
    _wait_for(lambda: len(_received(tmp_path, "high")) == 2, tmp_path)
    assert bodies(low, 0.5) == ["m2", "m3", "m4"]
    assert _received(tmp_path, "high") == ["m0", "m1"]
    (tmp_path / "stop").write_text("")
    processes.join_all(WAIT)


def test_a_lower_priority_process_claims_nothing_while_a_higher_one_here_has_room(conn, jobs, db_path, tmp_path,
                                                                                 processes):
    high = conn.consume(jobs, priority=10, prefetch=3)
    _start(processes, db_path, tmp_path, "low", 0, 0, True)
    publish(conn, jobs, 5)
    time.sleep(0.5)  # the other process is rung by the publishes, and is outranked
    assert _received(tmp_path, "low") == []
    assert bodies(high)[:3] == ["m0", "m1", "m2"]  # full now: the other process takes the rest
    _wait_for(lambda: len(_received(tmp_path, "low")) == 2, tmp_path)
    assert _received(tmp_path, "low") == ["m3", "m4"]
    (tmp_path / "stop").write_text("")
    processes.join_all(WAIT)


# --- through litemq.pika


def test_pika_x_priority_orders_consumers_of_one_channel(db_path):
    with pika.BlockingConnection(pika.URLParameters(as_url(db_path))) as connection:
        channel = connection.channel()
        channel.queue_declare("jobs")
        channel.basic_qos(prefetch_count=1)
        received = []
        for name, priority in (("low", -1), ("high", 7)):
            channel.basic_consume("jobs", lambda ch, method, props, body, name=name: received.append((name, body)),
                                  arguments={"x-priority": priority})
        for n in range(3):
            channel.basic_publish("", "jobs", f"m{n}".encode())
        connection.process_data_events(time_limit=0.3)
        assert sorted(received) == [("high", b"m0"), ("low", b"m1")]


def test_pika_refuses_a_non_integer_x_priority_with_406(db_path):
    with pika.BlockingConnection(pika.URLParameters(as_url(db_path))) as connection:
        channel = connection.channel()
        channel.queue_declare("jobs")
        with pytest.raises(pika.exceptions.ChannelClosedByBroker, match="x-priority") as closed:
            channel.basic_consume("jobs", lambda *a: None, arguments={"x-priority": "high"})
        assert closed.value.reply_code == 406 and not channel.is_open
        with pytest.raises(pika.exceptions.UnsupportedAMQPFieldException):
            connection.channel().basic_consume("jobs", lambda *a: None, arguments={"x-priority": 2.5})
