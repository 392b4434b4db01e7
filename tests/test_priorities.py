"""Priority queues (x-max-priority): the highest priority is delivered first and FIFO within a priority; a message
without one counts as 0 and one above the queue's maximum as the maximum; requeued messages go back to their place
by priority, then age. The claim stays one statement on the ready index, so its cost does not grow with the
low-priority messages waiting behind.

RabbitMQ parity is in tests/conformance; these are litemq's own promises, its SQL and its costs.
"""

from __future__ import annotations

import re
import sqlite3
from contextlib import closing
from typing import Any, Optional

import pytest

import litemq
from conftest import vm_steps
from engines import BrokerSQL
from litemq import PreconditionFailed, Properties, QueueNotFound
from litemq.store import sqlite_sql


def publish(conn: litemq.Connection, queue: str, *messages: tuple[str, Optional[int]]) -> None:
    for body, priority in messages:
        conn.publish("", queue, body, Properties(priority=priority))


def drain(conn: litemq.Connection, queue: str) -> list[str]:
    bodies = []
    while (delivery := conn.get(queue, auto_ack=True)) is not None:
        bodies.append(delivery.body.decode())
    return bodies


@pytest.fixture
def pq(conn: litemq.Connection) -> str:
    conn.declare_queue("pq", arguments={"x-max-priority": 5})
    return "pq"


# ---------------------------------------------------------------------------------------------------------------
# Delivery order
# ---------------------------------------------------------------------------------------------------------------

def test_highest_priority_is_delivered_first_and_fifo_within_a_priority(conn: litemq.Connection, pq: str) -> None:
    publish(conn, pq, ("low-1", 1), ("high-1", 4), ("mid-1", 2), ("high-2", 4), ("low-2", 1), ("mid-2", 2))
    assert drain(conn, pq) == ["high-1", "high-2", "mid-1", "mid-2", "low-1", "low-2"]


def test_a_message_without_a_priority_counts_as_priority_0(conn: litemq.Connection, pq: str) -> None:
    # Were "none" below 0 the zero would come first; were it above 0 it would pass the zero, or the one.
    publish(conn, pq, ("none", None), ("zero", 0), ("one", 1))
    assert drain(conn, pq) == ["one", "none", "zero"]


def test_a_priority_above_the_maximum_counts_as_the_maximum(conn: litemq.Connection, pq: str) -> None:
    publish(conn, pq, ("five", 5), ("nine", 9), ("four", 4))
    assert drain(conn, pq) == ["five", "nine", "four"]  # nine ranks as five: behind the earlier five


def test_a_priority_above_the_maximum_is_stored_as_the_maximum_and_delivered_with_its_own(
        conn: litemq.Connection, pq: str, sql: BrokerSQL) -> None:
    publish(conn, pq, ("nine", 9))
    assert sql("SELECT priority FROM litemq_messages") == [(5,)]
    assert conn.get(pq, auto_ack=True).properties.priority == 9  # the property itself is the publisher's


@pytest.mark.parametrize("arguments", [{"x-max-priority": 0}, {}], ids=["x-max-priority 0", "no x-max-priority"])
def test_a_queue_without_a_maximum_priority_is_plain_fifo(conn: litemq.Connection, arguments: dict,
                                                         sql: BrokerSQL) -> None:
    conn.declare_queue("plain", arguments=arguments)
    publish(conn, "plain", ("a", 1), ("b", 9), ("c", None), ("d", 255))
    assert drain(conn, "plain") == ["a", "b", "c", "d"]
    assert sql("SELECT count(*) FROM litemq_messages") == [(0,)]


def test_a_consumer_with_a_prefetch_gets_its_batch_in_priority_order(conn: litemq.Connection, pq: str) -> None:
    publish(conn, pq, ("l1", 1), ("l2", 1), ("h1", 5), ("m1", 3), ("h2", 5), ("m2", 3))
    consumer = conn.consume(pq, prefetch=10)
    got = [consumer.get(timeout=0) for _ in range(6)]
    assert [d.body.decode() for d in got if d is not None] == ["h1", "h2", "m1", "m2", "l1", "l2"]
    assert consumer.get(timeout=0) is None


def test_a_later_higher_priority_message_overtakes_what_a_prefetch_has_not_claimed(conn: litemq.Connection,
                                                                                   pq: str) -> None:
    publish(conn, pq, ("l1", 1), ("l2", 1), ("l3", 1))
    consumer = conn.consume(pq, prefetch=1)
    first = consumer.get(timeout=0)
    publish(conn, pq, ("urgent", 5))
    first.ack()
    assert consumer.get(timeout=0).body == b"urgent"


def test_a_requeued_message_returns_to_its_place_by_priority_then_age(conn: litemq.Connection, pq: str) -> None:
    publish(conn, pq, ("old-low", 1), ("old-high", 4), ("new-high", 4), ("new-low", 1))
    old_high, new_high, old_low = conn.get(pq), conn.get(pq), conn.get(pq)
    assert [d.body for d in (old_high, new_high, old_low)] == [b"old-high", b"new-high", b"old-low"]
    old_low.nack(requeue=True)
    new_high.nack(requeue=True)
    old_high.nack(requeue=True)
    got = [conn.get(pq, auto_ack=True) for _ in range(4)]
    assert [(d.body.decode(), d.redelivered) for d in got] == [
        ("old-high", True), ("new-high", True), ("old-low", True), ("new-low", False)]


def test_a_message_returned_by_a_closed_channel_goes_before_younger_messages_of_its_priority(
        conn: litemq.Connection, other: litemq.Connection, pq: str) -> None:
    publish(conn, pq, ("a", 2), ("b", 2))
    channel = other.channel()
    assert channel.get(pq).body == b"a"
    publish(conn, pq, ("c", 2), ("low", 0))
    channel.close()
    assert drain(conn, pq) == ["a", "b", "c", "low"]


# ---------------------------------------------------------------------------------------------------------------
# The x-max-priority argument
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("maximum", [1, 10, 255])
def test_x_max_priority_from_1_to_255_is_accepted(conn: litemq.Connection, maximum: int) -> None:
    conn.declare_queue("pq", arguments={"x-max-priority": maximum})
    publish(conn, "pq", ("low", 0), ("top", maximum), ("over", 255))
    assert drain(conn, "pq") == ["top", "over", "low"]


@pytest.mark.parametrize("value", [256, -1, "x", True, 2.5])
def test_an_invalid_x_max_priority_is_refused_naming_the_argument_and_creates_nothing(
        conn: litemq.Connection, value: Any) -> None:
    with pytest.raises(PreconditionFailed, match=r"x-max-priority.*'pq'") as info:
        conn.declare_queue("pq", arguments={"x-max-priority": value})
    assert info.value.reply_code == 406
    with pytest.raises(QueueNotFound):
        conn.declare_queue("pq", passive=True)


def test_a_priority_queue_redeclared_with_another_maximum_is_refused(conn: litemq.Connection, pq: str) -> None:
    with pytest.raises(PreconditionFailed):
        conn.declare_queue(pq, arguments={"x-max-priority": 6})
    assert conn.declare_queue(pq, arguments={"x-max-priority": 5}).queue == pq


# ---------------------------------------------------------------------------------------------------------------
# The claim: one indexed statement, whatever waits behind (SQLite's plan and VM steps: sqlite only)
# ---------------------------------------------------------------------------------------------------------------

def plan(db_path: str, statement: str) -> list[str]:
    with closing(sqlite3.connect(db_path)) as db:
        return [row[3] for row in db.execute("EXPLAIN QUERY PLAN " + statement, [None] * statement.count("?"))]


@pytest.mark.sqlite_only
def test_the_claim_searches_the_ready_index_in_priority_order_without_sorting(
        conn: litemq.Connection, db_path: str) -> None:
    steps = plan(db_path, sqlite_sql.CLAIM)
    assert any(re.search(r"SEARCH litemq_messages USING (COVERING )?INDEX ix_litemq_messages_ready\b", step)
               for step in steps), steps
    assert not any("TEMP B-TREE" in step for step in steps), steps  # no sort: the index is the delivery order
    assert not any(step.startswith("SCAN litemq_messages") for step in steps), steps


@pytest.mark.sqlite_only
def test_the_claim_orders_by_priority_then_id_as_the_ready_index_does(conn: litemq.Connection) -> None:
    assert re.search(r"ORDER BY priority DESC, id\b", sqlite_sql.CLAIM)
    (index,) = conn._store.execute(
        "SELECT sql FROM sqlite_master WHERE name = 'ix_litemq_messages_ready'").fetchone()
    assert "(queue, priority DESC, id)" in index


def add_ready(conn: litemq.Connection, queue: str, count: int, priority: int) -> None:
    """Add ready messages straight into the table (fast); the file's triggers count them."""
    store = conn._store
    with store.write():
        store._db.executemany(
            "INSERT INTO litemq_messages (queue, exchange, routing_key, body, published_at, priority) "
            "VALUES (?, '', ?, ?, 0.0, ?)", ((queue, queue, b"m", priority) for _ in range(count)))


def claim_costs(conn: litemq.Connection, queue: str) -> tuple[int, int]:
    """VM steps of two gets: the high-priority message just published, then the oldest low one after it."""
    publish(conn, queue, ("urgent", 5))
    high, delivery = vm_steps(conn, lambda: conn.get(queue))
    assert delivery is not None and delivery.body == b"urgent"
    low, delivery = vm_steps(conn, lambda: conn.get(queue))
    assert delivery is not None and delivery.body == b"m"
    return high, low


@pytest.mark.sqlite_only
def test_a_claim_costs_the_same_with_20000_low_priority_messages_behind_as_with_200(conn: litemq.Connection) -> None:
    conn.declare_queue("few", arguments={"x-max-priority": 5})
    conn.declare_queue("many", arguments={"x-max-priority": 5})
    publish(conn, "few", ("warm", 5))
    conn.get("few", auto_ack=True)  # statements cached
    add_ready(conn, "few", 200, priority=1)
    add_ready(conn, "many", 20_000, priority=1)
    few = claim_costs(conn, "few")
    many = claim_costs(conn, "many")
    for what, crowded, baseline in zip(("high-priority claim", "low-priority claim"), many, few):
        assert baseline > 0
        assert abs(crowded - baseline) <= 0.2 * baseline, (
            f"{what}: {crowded} VM steps with 20,000 messages behind against {baseline} with 200")
