"""Consuming several queues in one thread: ``channel.consume_many(queues)`` gives a ``ConsumerSet`` whose
iteration yields every queue's deliveries, taking turns, waits on all of them at once without polling, and keeps
each queue's prefetch, the inactivity timeout, cancel and warm shutdown."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from conftest import counting_vm_steps
import litemq

BOUND = 5.0
"""Seconds allowed for what normally takes milliseconds (a loaded 2-core machine must never flake)."""


@pytest.fixture
def queues(conn: litemq.Connection) -> list[str]:
    names = ["a", "b", "c"]
    for name in names:
        conn.declare_queue(name)
    return names


def bodies(deliveries: list[litemq.Delivery]) -> list[bytes]:
    return [delivery.body for delivery in deliveries]


def test_deliveries_from_every_queue_take_turns(conn: litemq.Connection, queues: list[str]) -> None:
    conn.publish_many("", "a", [b"a1", b"a2", b"a3", b"a4"])
    conn.publish_many("", "b", [b"b1", b"b2"])
    conn.publish("", "c", b"c1")
    got = []
    for delivery in conn.consume_many(queues, prefetch=10, inactivity_timeout=0.05):
        got.append(delivery)
        delivery.ack()
    assert bodies(got) == [b"a1", b"b1", b"c1", b"a2", b"b2", b"a3", b"a4"]
    assert [d.queue for d in got[:3]] == ["a", "b", "c"]
    assert conn.declare_queue("a", passive=True).message_count == 0


def test_a_busy_queue_does_not_starve_a_quiet_one(conn: litemq.Connection, queues: list[str]) -> None:
    conn.publish_many("", "a", [b"busy"] * 300)
    consumers = conn.consume_many(["a", "b"], prefetch=100)
    first = consumers.get(BOUND)
    assert first is not None and first.queue == "a"
    first.ack()
    conn.publish("", "b", b"quiet")
    following = [consumers.get(BOUND) for _ in range(2)]
    assert [d.queue for d in following if d is not None] in (["b", "a"], ["a", "b"])
    assert b"quiet" in bodies([d for d in following if d is not None])


def test_each_queue_keeps_its_prefetch(conn: litemq.Connection, queues: list[str]) -> None:
    for name in ("a", "b"):
        conn.publish_many("", name, [name.encode()] * 5)
    consumers = conn.consume_many(["a", "b"], prefetch=2)
    held = []
    while (delivery := consumers.get(0.05)) is not None:
        held.append(delivery)
    assert sorted(bodies(held)) == [b"a", b"a", b"b", b"b"]  # two unacked per queue, then nothing
    held[0].ack()
    delivery = consumers.get(BOUND)  # the ack made room in its queue only
    assert delivery is not None and delivery.queue == held[0].queue
    assert consumers.get(0.05) is None


@pytest.mark.sqlite_only
def test_waiting_wakes_on_a_publish_to_any_queue_without_polling_the_file(
        conn: litemq.Connection, other: litemq.Connection, queues: list[str]) -> None:
    consumers = conn.consume_many(queues)
    assert consumers.get(0) is None
    with counting_vm_steps(conn) as steps:
        assert consumers.get(0.3) is None  # 0.3 s of waiting on three empty queues
    assert steps[0] < 1000  # a poller would run statements all along; the waiter reads the file once or twice
    timer = threading.Timer(0.1, lambda: other.publish("", "c", b"late"))
    timer.start()
    started = time.monotonic()
    delivery = consumers.get(BOUND)
    timer.join()
    assert delivery is not None and (delivery.queue, delivery.body) == ("c", b"late")
    assert time.monotonic() - started < BOUND


def test_the_inactivity_timeout_ends_iteration_when_every_queue_is_idle(
        conn: litemq.Connection, queues: list[str]) -> None:
    conn.publish("", "b", b"one")
    started = time.monotonic()
    got = [d.body for d in conn.consume_many(queues, auto_ack=True, inactivity_timeout=0.1)]
    assert got == [b"one"]
    assert 0.1 <= time.monotonic() - started < BOUND


def test_cancel_returns_what_was_claimed_but_not_handed_out_unmarked(
        conn: litemq.Connection, queues: list[str]) -> None:
    conn.publish_many("", "a", [b"a1", b"a2", b"a3"])
    conn.publish_many("", "b", [b"b1", b"b2"])
    consumers = conn.consume_many(["a", "b"], prefetch=10)
    first = consumers.get(BOUND)
    assert first is not None and first.body == b"a1"
    assert consumers.cancel() == []
    assert not consumers.active and [c.active for c in consumers.consumers] == [False, False]
    assert list(consumers) == []
    for name, expected in (("a", [b"a2", b"a3"]), ("b", [b"b1", b"b2"])):
        info = conn.declare_queue(name, passive=True)
        assert (info.message_count, info.consumer_count) == (len(expected), 0)
        left = [conn.get(name, auto_ack=True) for _ in expected]
        assert [(d.body, d.redelivered) for d in left if d is not None] == [(b, False) for b in expected]
    first.ack()  # handed out before the cancel: still the channel's to settle (RabbitMQ's rule)


def test_finish_ends_iteration_after_the_delivery_in_hand(conn: litemq.Connection, queues: list[str]) -> None:
    conn.publish_many("", "a", [b"a1", b"a2"])
    conn.publish_many("", "b", [b"b1", b"b2"])
    consumers = conn.consume_many(["a", "b"], prefetch=10)
    seen = []
    for delivery in consumers:
        seen.append(delivery.body)
        consumers.finish()
        delivery.ack()
    assert seen == [b"a1"]
    assert conn.declare_queue("a", passive=True).message_count == 1
    assert conn.declare_queue("b", passive=True).message_count == 2


def test_a_deleted_queue_cancels_its_consumer_with_a_warning_and_the_others_go_on(
        conn: litemq.Connection, other: litemq.Connection, queues: list[str],
        caplog: pytest.LogCaptureFixture) -> None:
    consumers = conn.consume_many(["a", "b"], auto_ack=True)
    other.delete_queue("a")
    other.publish("", "b", b"still here")
    caplog.set_level(logging.WARNING, logger="litemq")
    delivery = consumers.get(BOUND)
    assert delivery is not None and delivery.body == b"still here"
    assert [c.active for c in consumers.consumers] == [False, True]
    assert any("queue 'a'" in r.getMessage() and "deleted" in r.getMessage() for r in caplog.records)
    other.delete_queue("b")
    with pytest.raises(litemq.QueueNotFound, match="queue 'b'"):  # the last one: nothing is left to consume
        consumers.get(BOUND)
    assert not consumers.active


def test_a_missing_queue_is_refused_and_leaves_no_consumer_behind(conn: litemq.Connection,
                                                                  queues: list[str]) -> None:
    with pytest.raises(litemq.QueueNotFound, match="nope"):
        conn.consume_many(["a", "nope"])
    assert conn.declare_queue("a", passive=True).consumer_count == 0


@pytest.mark.parametrize("wrong, error", [("a", TypeError), ([], ValueError)])
def test_queues_must_be_a_list_of_names(conn: litemq.Connection, queues: list[str], wrong: object,
                                        error: type[Exception]) -> None:
    with pytest.raises(error, match="queue"):
        conn.consume_many(wrong)  # type: ignore[arg-type]


def test_consume_many_works_on_any_channel_and_as_a_context_manager(conn: litemq.Connection,
                                                                    queues: list[str]) -> None:
    channel = conn.channel()
    with channel.consume_many(["a", "b"]) as consumers:
        conn.publish("", "b", b"x")
        delivery = consumers.get(BOUND)
        assert delivery is not None and delivery.body == b"x"
        delivery.ack()
    assert conn.declare_queue("b", passive=True).consumer_count == 0
