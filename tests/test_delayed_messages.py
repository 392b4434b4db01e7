"""Delayed delivery: a message published with ``delay=`` (or through a x-delayed-message exchange with an
``x-delay`` header) is invisible until it falls due, then joins the tail of its queue, where the queue's TTL and
length limit apply to it from then on. Waiting consumers, here or in another process, are woken by their timer
when it falls due, with no other activity. It shows in SQL as 'delayed', and a claim never walks delayed rows.

Time rules are tested under freezegun, calling the broker directly, with connections that do not renew leases;
consumers that wait run in real time with short delays and bounded waits.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Optional

import pytest

import extras_workers as workers
import litemq
import litemq.timing
from conftest import Processes, vm_steps
from engines import BrokerSQL, as_url, ready_counters
from liveness_workers import wait_for_files, worker_errors
from litemq import DELAYED_EXCHANGE, ExchangeNotFound, PreconditionFailed, Properties
from litemq import pika

pytestmark = pytest.mark.no_lease_renewal

DELAY = 0.3
"""Seconds of delay in the real-time tests."""
SLACK = 2.0
"""A delayed message must arrive within this many seconds of its publish (on a loaded 2-core machine)."""
START_SECONDS = 30.0
"""Seconds allowed for a spawned process to start and begin waiting."""


@pytest.fixture
def q(conn: litemq.Connection) -> str:
    conn.declare_queue("q")
    return "q"


def drain(conn: litemq.Connection, queue: str) -> list[str]:
    bodies = []
    while (delivery := conn.get(queue, auto_ack=True)) is not None:
        bodies.append(delivery.body.decode())
    return bodies


# ---------------------------------------------------------------------------------------------------------------
# delay=: invisible until due, then at the tail
# ---------------------------------------------------------------------------------------------------------------

def test_a_delayed_message_is_invisible_to_get_counts_and_consumers_until_it_falls_due(
        conn: litemq.Connection, other: litemq.Connection, q: str, frozen: Any) -> None:
    assert conn.publish("", q, b"later", delay=10) == 1
    consumer = other.consume(q)
    for step in (0, 9.9):
        frozen.tick(step)
        assert conn.get(q) is None
        assert conn.declare_queue(q, passive=True).message_count == 0
        assert consumer.get(timeout=0) is None
    frozen.tick(0.2)
    delivery = consumer.get(timeout=0)
    assert (delivery.body, delivery.redelivered, delivery.delivery_count) == (b"later", False, 1)


def test_a_due_delayed_message_is_counted_and_got_like_any_other(conn: litemq.Connection, q: str,
                                                                 frozen: Any, sql: BrokerSQL) -> None:
    conn.publish("", q, b"later", delay=5)
    frozen.tick(5)
    assert conn.declare_queue(q, passive=True).message_count == 1
    delivery = conn.get(q)
    assert (delivery.body, delivery.message_count, delivery.exchange, delivery.routing_key) == (b"later", 0, "", q)
    delivery.ack()
    assert sql("SELECT count(*) FROM litemq_messages") == [(0,)]


def test_a_large_delayed_message_joins_its_queue_whole_and_leaves_no_body_behind(conn: litemq.Connection, q: str,
                                                                              frozen: Any, sql: BrokerSQL) -> None:
    large = bytes(range(256)) * 40  # over 3 KB: kept in litemq_bodies
    conn.publish("", q, large, delay=5)
    frozen.tick(5)
    delivery = conn.get(q)
    assert delivery is not None and delivery.body == large
    delivery.ack()
    assert sql("SELECT (SELECT count(*) FROM litemq_messages), (SELECT count(*) FROM litemq_bodies)") == [
        (0, 0)]


def test_a_due_delayed_message_joins_behind_messages_that_were_ready_before_it(conn: litemq.Connection, q: str,
                                                                               frozen: Any) -> None:
    conn.publish("", q, b"delayed", delay=5)
    conn.publish("", q, b"ready-1")
    frozen.tick(1)
    conn.publish("", q, b"ready-2")
    frozen.tick(5)
    assert drain(conn, q) == ["ready-1", "ready-2", "delayed"]


def test_a_message_published_after_a_delayed_one_fell_due_comes_after_it(conn: litemq.Connection, q: str,
                                                                         frozen: Any) -> None:
    conn.publish("", q, b"delayed", delay=5)
    frozen.tick(6)
    conn.publish("", q, b"published-after-it-was-due")
    assert drain(conn, q) == ["delayed", "published-after-it-was-due"]


def test_delayed_messages_join_in_the_order_they_fall_due(conn: litemq.Connection, q: str, frozen: Any) -> None:
    conn.publish("", q, b"third", delay=3)
    conn.publish("", q, b"first", delay=1)
    conn.publish("", q, b"second", delay=2)
    frozen.tick(4)
    assert drain(conn, q) == ["first", "second", "third"]


def test_a_due_delayed_message_takes_its_place_by_priority(conn: litemq.Connection, frozen: Any) -> None:
    conn.declare_queue("pq", arguments={"x-max-priority": 5})
    conn.publish("", "pq", b"urgent-but-delayed", Properties(priority=5), delay=5)
    conn.publish("", "pq", b"low", Properties(priority=1))
    frozen.tick(5)
    assert drain(conn, "pq") == ["urgent-but-delayed", "low"]


def test_a_delay_of_zero_is_immediate(conn: litemq.Connection, q: str, frozen: Any) -> None:
    conn.publish("", q, b"now", delay=0)
    assert conn.get(q, auto_ack=True).body == b"now"


@pytest.mark.parametrize("delay", [-1, float("nan"), "5", True])
def test_a_delay_must_be_a_number_of_seconds_of_0_or_more(
        conn: litemq.Connection, q: str, delay: Any, sql: BrokerSQL) -> None:
    with pytest.raises(ValueError, match="delay"):
        conn.publish("", q, b"m", delay=delay)
    assert sql("SELECT count(*) FROM litemq_messages") == [(0,)]


def test_a_delayed_message_for_a_missing_queue_reaches_nothing(
        conn: litemq.Connection, frozen: Any, sql: BrokerSQL) -> None:
    assert conn.publish("", "nowhere", b"m", delay=5) == 0
    with pytest.raises(litemq.Unroutable):
        conn.publish("", "nowhere", b"m", delay=5, mandatory=True)
    assert sql("SELECT count(*) FROM litemq_messages") == [(0,)]


def test_a_delayed_message_goes_with_its_deleted_queue(
        conn: litemq.Connection, q: str, frozen: Any, sql: BrokerSQL) -> None:
    conn.publish("", q, b"later", delay=5)
    conn.delete_queue(q)
    conn.declare_queue(q)
    frozen.tick(6)
    assert conn.get(q) is None
    assert sql("SELECT count(*) FROM litemq_messages") == [(0,)]


# ---------------------------------------------------------------------------------------------------------------
# x-delayed-message exchanges and the x-delay header
# ---------------------------------------------------------------------------------------------------------------

ROUTES_AS = {
    "direct": ("job", "job", None),
    "topic": ("jobs.*", "jobs.nightly", None),
    "fanout": ("", "any-key", None),
    "headers": ("", "", {"x-match": "all", "kind": "report"}),
}


@pytest.mark.parametrize("routes_as", list(ROUTES_AS))
def test_a_delayed_exchange_routes_as_its_type_and_holds_the_message_for_x_delay_ms(
        conn: litemq.Connection, q: str, frozen: Any, routes_as: str) -> None:
    binding_key, routing_key, binding_arguments = ROUTES_AS[routes_as]
    conn.declare_exchange("later", DELAYED_EXCHANGE, arguments={"x-delayed-type": routes_as})
    conn.bind_queue(q, "later", binding_key, binding_arguments)
    conn.declare_queue("unbound")
    properties = Properties(headers={"x-delay": 2000, "kind": "report"})
    assert conn.publish("later", routing_key, b"report", properties) == 1
    frozen.tick(1.9)
    assert conn.get(q) is None
    frozen.tick(0.2)
    delivery = conn.get(q, auto_ack=True)
    assert (delivery.body, delivery.exchange, delivery.routing_key) == (b"report", "later", routing_key)
    assert conn.get("unbound") is None


def test_a_delayed_exchange_drops_a_message_its_type_does_not_route(conn: litemq.Connection, q: str,
                                                                    frozen: Any, sql: BrokerSQL) -> None:
    conn.declare_exchange("later", DELAYED_EXCHANGE, arguments={"x-delayed-type": "direct"})
    conn.bind_queue(q, "later", "job")
    assert conn.publish("later", "other-key", b"m", Properties(headers={"x-delay": 1000})) == 0
    frozen.tick(2)
    assert conn.get(q) is None
    assert sql("SELECT count(*) FROM litemq_messages") == [(0,)]


@pytest.mark.parametrize("headers", [None, {"other": 1}, {"x-delay": 0}, {"x-delay": -500}],
                         ids=["no headers", "no x-delay", "x-delay 0", "x-delay negative"])
def test_a_delayed_exchange_delivers_at_once_without_a_positive_x_delay(
        conn: litemq.Connection, q: str, frozen: Any, headers: Optional[dict]) -> None:
    conn.declare_exchange("later", DELAYED_EXCHANGE, arguments={"x-delayed-type": "direct"})
    conn.bind_queue(q, "later", "job")
    conn.publish("later", "job", b"now", Properties(headers=headers))
    assert conn.get(q, auto_ack=True).body == b"now"


def test_x_delay_means_nothing_to_an_ordinary_exchange(conn: litemq.Connection, q: str, frozen: Any) -> None:
    conn.declare_exchange("plain", "direct")
    conn.bind_queue(q, "plain", "job")
    conn.publish("plain", "job", b"now", Properties(headers={"x-delay": 60_000}))
    assert conn.get(q, auto_ack=True).body == b"now"


@pytest.mark.parametrize("arguments", [None, {}, {"x-delayed-type": "bogus"},
                                       {"x-delayed-type": DELAYED_EXCHANGE}, {"x-delayed-type": 1}])
def test_a_delayed_exchange_needs_a_known_x_delayed_type_and_nothing_is_created_without_one(
        conn: litemq.Connection, arguments: Optional[dict]) -> None:
    with pytest.raises(PreconditionFailed, match="x-delayed-type") as info:
        conn.declare_exchange("later", DELAYED_EXCHANGE, arguments=arguments)
    assert info.value.reply_code == 406
    with pytest.raises(ExchangeNotFound):
        conn.declare_exchange("later", passive=True)


def test_a_delayed_exchange_redeclared_with_another_x_delayed_type_is_refused(conn: litemq.Connection) -> None:
    conn.declare_exchange("later", DELAYED_EXCHANGE, arguments={"x-delayed-type": "direct"})
    with pytest.raises(PreconditionFailed):
        conn.declare_exchange("later", DELAYED_EXCHANGE, arguments={"x-delayed-type": "topic"})
    conn.declare_exchange("later", DELAYED_EXCHANGE, arguments={"x-delayed-type": "direct"})


# ---------------------------------------------------------------------------------------------------------------
# In SQL
# ---------------------------------------------------------------------------------------------------------------

def test_a_delayed_message_shows_as_delayed_until_its_due_time_in_the_views(conn: litemq.Connection, q: str,
                                                                            frozen: Any, sql: BrokerSQL) -> None:
    conn.publish("", q, b"later", delay=10)
    conn.publish("", q, b"now")
    assert sql("SELECT body_text, state, delayed_until FROM litemq_message_view ORDER BY id") == [
        ("later", "delayed", "2026-01-01T00:00:10.000Z"), ("now", "ready", None)]
    assert sql("SELECT ready, delayed, unacked, total FROM litemq_queue_stats WHERE queue = 'q'") == [
        (1, 1, 0, 1)]
    assert sql("SELECT count(*) FROM litemq_messages WHERE visible_at IS NOT NULL") == [(1,)]
    frozen.tick(10)
    assert conn.get(q, auto_ack=True).body == b"now"
    assert sql("SELECT body_text, state, delayed_until FROM litemq_message_view") == [
        ("later", "ready", None)]
    assert sql("SELECT ready, delayed FROM litemq_queue_stats WHERE queue = 'q'") == [(1, 0)]


def test_a_delayed_message_is_left_out_of_ready_bytes_until_it_joins(conn: litemq.Connection, q: str,
                                                                     frozen: Any, sql: BrokerSQL) -> None:
    conn.publish("", q, b"12345", delay=10)
    counters = f"SELECT ready_count, ready_bytes FROM {ready_counters(sql.url)} AS c WHERE name = 'q'"
    assert sql(counters) == [(0, 0)]
    frozen.tick(10)
    conn.declare_queue(q, passive=True)
    assert sql(counters) == [(1, 5)]


# ---------------------------------------------------------------------------------------------------------------
# TTL and length limits apply from when it joins
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("ttl", ["queue", "message"])
def test_the_ttl_of_a_delayed_message_runs_from_when_it_joins_its_queue(conn: litemq.Connection, frozen: Any,
                                                                        ttl: str) -> None:
    conn.declare_queue("q", arguments={"x-message-ttl": 5000} if ttl == "queue" else None)
    properties = Properties(expiration="5000") if ttl == "message" else None
    conn.publish("", "q", b"first", properties, delay=10)
    conn.publish("", "q", b"second", properties, delay=10)
    frozen.tick(10)
    conn.declare_queue("q", passive=True)  # they join now
    frozen.tick(4.9)  # 14.9 s after the publish, 4.9 s in the queue
    assert conn.get("q", auto_ack=True).body == b"first"
    frozen.tick(0.2)
    assert conn.get("q") is None


def test_a_delayed_message_s_ttl_runs_from_its_due_time_even_when_nobody_looks_then(conn: litemq.Connection,
                                                                                    frozen: Any) -> None:
    conn.declare_queue("q", arguments={"x-message-ttl": 5000})
    conn.publish("", "q", b"later", delay=10)
    frozen.tick(16)  # due at 10, expired at 15: nothing touched the file in between
    assert conn.get("q") is None


def test_a_length_limit_drops_the_head_when_a_delayed_message_joins(conn: litemq.Connection, frozen: Any) -> None:
    conn.declare_queue("q", arguments={"x-max-length": 1})
    conn.publish("", "q", b"later", delay=5)
    conn.publish("", "q", b"now")  # the delayed one does not count against the limit yet
    assert conn.declare_queue("q", passive=True).message_count == 1
    frozen.tick(5)
    assert drain(conn, "q") == ["later"]


def test_a_reject_publish_limit_refuses_a_delayed_message_when_it_joins_not_when_published(
        conn: litemq.Connection, frozen: Any, sql: BrokerSQL) -> None:
    conn.declare_queue("q", arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    assert conn.publish("", "q", b"later", delay=5) == 1
    assert conn.publish("", "q", b"now") == 1  # not refused: the delayed one is not in the queue yet
    frozen.tick(5)
    assert drain(conn, "q") == ["now"]
    assert sql("SELECT count(*) FROM litemq_messages") == [(0,)]


def test_a_delayed_message_refused_by_reject_publish_dlx_when_it_joins_is_dead_lettered_as_maxlen(
        conn: litemq.Connection, frozen: Any) -> None:
    conn.declare_queue("dead")
    conn.declare_queue("q", arguments={"x-max-length": 1, "x-overflow": "reject-publish-dlx",
                                       "x-dead-letter-exchange": "", "x-dead-letter-routing-key": "dead"})
    conn.publish("", "q", b"later", delay=5)
    conn.publish("", "q", b"now")
    frozen.tick(5)
    dead = conn.get("dead", auto_ack=True)
    assert dead.body == b"later"
    assert dead.properties.headers["x-first-death-reason"] == "maxlen"
    assert drain(conn, "q") == ["now"]


# ---------------------------------------------------------------------------------------------------------------
# Waiting consumers are woken when a delayed message falls due (real time)
# ---------------------------------------------------------------------------------------------------------------

def first_delivery(consumer: litemq.Consumer) -> Optional[litemq.Delivery]:
    for delivery in consumer:  # blocking iteration; ends after the consumer's inactivity_timeout
        return delivery
    return None


def test_a_consumer_waiting_here_is_woken_when_a_delayed_message_falls_due(
        conn: litemq.Connection, other: litemq.Connection, q: str) -> None:
    consumer = conn.consume(q, inactivity_timeout=SLACK + 3)
    other.publish("", q, b"later", delay=DELAY)
    published = time.monotonic()
    delivery = first_delivery(consumer)
    waited = time.monotonic() - published
    assert delivery is not None and delivery.body == b"later"
    assert DELAY <= waited < SLACK, waited


def test_a_consumer_already_waiting_is_woken_for_a_message_delayed_while_it_waits(
        conn: litemq.Connection, other: litemq.Connection, q: str) -> None:
    consumer = conn.consume(q, inactivity_timeout=SLACK + 3)
    published: list[float] = []

    def publish() -> None:
        published.append(time.monotonic())  # before: the delay runs from the publish's own clock reading
        other.publish("", q, b"later", delay=DELAY)

    timer = threading.Timer(0.2, publish)  # while the consumer below is waiting, with nothing else going on
    timer.start()
    try:
        delivery = first_delivery(consumer)
        arrived = time.monotonic()
    finally:
        timer.join()
    assert delivery is not None and delivery.body == b"later"
    assert DELAY <= arrived - published[0] < SLACK, arrived - published[0]


def test_a_consumer_already_waiting_learns_of_a_new_delayed_message_without_its_periodic_look_at_the_file(
        conn: litemq.Connection, other: litemq.Connection, q: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Waiters also look at the file every RECHECK_SECONDS (1 s), which alone would deliver the message up to a
    # second late; made longer than the test, only being told of the new deadline can deliver it in time.
    monkeypatch.setattr(litemq.timing, "RECHECK_SECONDS", 60.0)
    # A consumer's claim at the end of its inactivity timeout would find the message too: that end is well past
    # the bound.
    consumer = conn.consume(q, inactivity_timeout=SLACK + 1.5)
    published: list[float] = []

    def publish() -> None:
        published.append(time.monotonic())  # before: the delay runs from the publish's own clock reading
        other.publish("", q, b"later", delay=DELAY)

    timer = threading.Timer(0.2, publish)
    timer.start()
    try:
        delivery = first_delivery(consumer)
        arrived = time.monotonic()
    finally:
        timer.join()
    assert delivery is not None and delivery.body == b"later", f"nothing {arrived - published[0]:.2f}s after"
    assert DELAY <= arrived - published[0] < SLACK, arrived - published[0]


def test_a_consumer_waiting_in_another_process_gets_a_message_delayed_here_once_it_is_due(
        db_path: str, conn: litemq.Connection, q: str, processes: Processes, tmp_path: Path) -> None:
    child = processes.start(workers.time_one_delivery, db_path, q, str(tmp_path), START_SECONDS)
    wait_for_files([tmp_path / "waiting"], timeout=START_SECONDS)
    time.sleep(0.1)  # the child is asleep in its wait by now
    published = time.time()
    conn.publish("", q, b"later", delay=DELAY)
    wait_for_files([tmp_path / "received"], timeout=SLACK + 5)
    body, arrived = (tmp_path / "received").read_text().split()
    child.join(5)
    assert worker_errors(tmp_path) == {}
    assert body == "later"
    assert DELAY <= float(arrived) - published < SLACK, float(arrived) - published
    assert child.exitcode == 0


def test_a_pika_program_declares_a_delayed_exchange_and_its_consumer_gets_the_message_after_x_delay(
        db_path: str) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(as_url(db_path)))
    try:
        channel = connection.channel()
        channel.exchange_declare("later", exchange_type="x-delayed-message", arguments={"x-delayed-type": "direct"})
        channel.queue_declare("jobs")
        channel.queue_bind("jobs", "later", "job")
        channel.basic_publish("later", "job", b"report", pika.BasicProperties(headers={"x-delay": int(DELAY * 1000)}))
        published = time.monotonic()
        assert channel.basic_get("jobs") == (None, None, None)
        assert channel.queue_declare("jobs", passive=True).method.message_count == 0
        method, properties, body = next(channel.consume("jobs", inactivity_timeout=SLACK + 3))
        waited = time.monotonic() - published
        assert body == b"report" and (method.exchange, method.routing_key) == ("later", "job")
        assert DELAY <= waited < SLACK, waited
        channel.basic_ack(method.delivery_tag)
    finally:
        connection.close()


def test_a_pika_program_declaring_a_delayed_exchange_without_its_type_gets_406(db_path: str) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(as_url(db_path)))
    try:
        channel = connection.channel()
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
            channel.exchange_declare("later", exchange_type="x-delayed-message")
        assert info.value.reply_code == 406
        assert connection.is_open
    finally:
        connection.close()


# ---------------------------------------------------------------------------------------------------------------
# Cost: a claim never walks delayed messages (counted in SQLite VM steps: sqlite only)
# ---------------------------------------------------------------------------------------------------------------

FAR_FUTURE = 4_000_000_000.0  # year 2096


def add_delayed(conn: litemq.Connection, queue: str, count: int) -> None:
    """Add delayed messages (not due for decades) straight into the table (fast)."""
    store = conn._store
    with store.write():
        store._db.executemany(
            "INSERT INTO litemq_messages (queue, exchange, routing_key, body, published_at, visible_at) "
            "VALUES (?, '', ?, ?, 0.0, ?)", ((queue, queue, b"m", FAR_FUTURE + i) for i in range(count)))


@pytest.mark.sqlite_only
def test_a_claim_costs_the_same_with_10000_delayed_messages_in_the_queue_as_with_none(
        conn: litemq.Connection, q: str) -> None:
    for n in range(7):
        conn.publish("", q, b"ready-%d" % n)
    conn.get(q, auto_ack=True)  # statements cached
    consumer = conn.consume(q, prefetch=1)

    def costs() -> tuple[int, int]:
        get, delivery = vm_steps(conn, lambda: conn.get(q))
        assert delivery is not None and delivery.body.startswith(b"ready")
        delivery.ack()
        delivery = consumer.get(timeout=0)
        assert delivery is not None and delivery.body.startswith(b"ready")
        claim, _ = vm_steps(conn, delivery.ack)  # the ack claims the consumer's next message
        return get, claim

    baseline = costs()
    add_delayed(conn, q, 10_000)
    crowded = costs()
    assert conn.declare_queue(q, passive=True).message_count == 1
    for what, with_delayed, without in zip(("get", "consumer claim"), crowded, baseline):
        assert without > 0
        assert abs(with_delayed - without) <= 0.2 * without, (
            f"{what}: {with_delayed} VM steps with 10,000 delayed messages against {without} with none")
