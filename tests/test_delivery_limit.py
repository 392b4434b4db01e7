"""Delivery limit (x-delivery-limit) and quorum queues (x-queue-type): every way a delivery comes back counts
toward the limit, and a message returned more often than it allows is dead-lettered (reason delivery_limit) or
dropped; the x-delivery-count header, Delivery.delivery_count and litemq_messages.delivery_count show the count;
quorum queues are validated as RabbitMQ validates them and their type is stored and reported.

Lease expiry runs under freezegun on connections that renew no leases; the killed consumer is a real process
(tests/liveness_workers.py) in real time, with bounded waits."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

import litemq
import liveness_workers as workers
from engines import as_url
from liveness_workers import wait_for_files, worker_errors
from litemq import PreconditionFailed

pytestmark = pytest.mark.no_lease_renewal

BOUND = 5.0
"""Seconds allowed for what normally takes milliseconds (a loaded 2-core machine must never flake)."""


@pytest.fixture
def dead(conn):
    """The queue "dead", where "jobs" queues dead-letter (through the default exchange)."""
    conn.declare_queue("dead")
    return "dead"


def limited(conn, limit, **arguments):
    conn.declare_queue("jobs", arguments={"x-delivery-limit": limit, "x-dead-letter-exchange": "",
                                          "x-dead-letter-routing-key": "dead", **arguments})
    conn.publish("", "jobs", b"job")


def sql_delivery_count(sql) -> list[int]:
    return [r[0] for r in sql("SELECT delivery_count FROM litemq_messages WHERE queue = 'jobs'")]


def delivery_count_header(delivery):
    return (delivery.properties.headers or {}).get("x-delivery-count")


# ---------------------------------------------------------------------------------------------------------------
# The limit: L returns allowed, the next one dead-letters or drops
# ---------------------------------------------------------------------------------------------------------------

def test_a_limit_of_2_allows_three_deliveries_then_dead_letters_as_delivery_limit(conn, dead):
    limited(conn, 2)
    counts = []
    for _ in range(3):
        delivery = conn.get("jobs")
        counts.append(delivery.delivery_count)
        delivery.nack(requeue=True)
    assert counts == [1, 2, 3]
    assert conn.get("jobs") is None
    dead_lettered = conn.get("dead", auto_ack=True)
    assert dead_lettered.body == b"job"
    entry, = dead_lettered.properties.headers["x-death"]
    assert (entry["queue"], entry["reason"], entry["count"]) == ("jobs", "delivery_limit", 1)
    assert "x-delivery-count" not in dead_lettered.properties.headers
    assert dead_lettered.delivery_count == 1  # a new message where it lands


def test_over_the_limit_without_a_dead_letter_exchange_the_message_is_dropped(conn, sql):
    conn.declare_queue("jobs", arguments={"x-delivery-limit": 1})
    conn.publish("", "jobs", b"job")
    conn.get("jobs").nack(requeue=True)
    conn.get("jobs").reject(requeue=True)
    assert conn.get("jobs") is None
    assert sql("SELECT count(*) FROM litemq_messages") == [(0,)]


def test_a_limit_of_0_allows_one_delivery(conn, dead):
    limited(conn, 0)
    conn.get("jobs").nack(requeue=True)
    assert conn.get("jobs") is None
    assert conn.get("dead", auto_ack=True).body == b"job"


def test_only_the_message_over_the_limit_goes_the_others_stay_in_order(conn, dead):
    limited(conn, 1)
    conn.publish("", "jobs", b"other")
    first = conn.get("jobs")
    first.nack(requeue=True)                 # job: 1 return
    conn.get("jobs").nack(requeue=True)      # job again: 2 returns, over the limit
    assert [d.body for d in iter(lambda: conn.get("jobs", auto_ack=True), None)] == [b"other"]
    assert conn.get("dead", auto_ack=True).body == b"job"


def test_an_ack_after_any_number_of_deliveries_within_the_limit_settles_normally(conn, dead, sql):
    limited(conn, 3)
    for _ in range(3):
        conn.get("jobs").nack(requeue=True)
    conn.get("jobs").ack()
    assert sql("SELECT count(*) FROM litemq_messages") == [(0,)]


def test_a_rejection_without_requeue_is_dead_lettered_as_rejected_not_delivery_limit(conn, dead):
    limited(conn, 0)
    conn.get("jobs").reject(requeue=False)
    reasons = [d["reason"] for d in conn.get("dead", auto_ack=True).properties.headers["x-death"]]
    assert reasons == ["rejected"]


@pytest.mark.parametrize("arguments", [{"x-delivery-limit": -1},
                                       {"x-queue-type": "quorum"},
                                       {"x-queue-type": "quorum", "x-delivery-limit": -1}],
                         ids=["classic, -1", "quorum, no limit", "quorum, -1"])
def test_without_a_limit_a_message_may_come_back_any_number_of_times(conn, dead, arguments):
    conn.declare_queue("jobs", durable=True, arguments={"x-dead-letter-exchange": "",
                                                        "x-dead-letter-routing-key": "dead", **arguments})
    conn.publish("", "jobs", b"job")
    for _ in range(20):
        conn.get("jobs").nack(requeue=True)
    assert conn.get("jobs").delivery_count == 21
    assert conn.declare_queue("dead").message_count == 0


# ---------------------------------------------------------------------------------------------------------------
# Every way a delivery comes back counts
# ---------------------------------------------------------------------------------------------------------------

def by_nack(conn, db_path, frozen):
    delivery = conn.get("jobs")
    delivery.nack(requeue=True)
    return delivery


def by_reject(conn, db_path, frozen):
    delivery = conn.get("jobs")
    delivery.reject(requeue=True)
    return delivery


def by_nack_multiple(conn, db_path, frozen):
    delivery = conn.get("jobs")
    conn.nack(delivery.delivery_tag, multiple=True, requeue=True)
    return delivery


def by_channel_close(conn, db_path, frozen):
    channel = conn.channel()
    delivery = channel.get("jobs")
    channel.close()
    return delivery


def by_connection_close(conn, db_path, frozen):
    with litemq.connect(db_path, renew_leases=False) as holder:
        return holder.get("jobs")


def by_consumer_channel_close(conn, db_path, frozen):
    channel = conn.channel()
    delivery = channel.consume("jobs").get(0)
    channel.close()
    return delivery


def by_lease_expiry(conn, db_path, frozen):
    delivery = conn.get("jobs", lease_seconds=5)
    frozen.tick(6)  # it goes back when someone next looks at the queue
    return delivery


RETURNS = {
    "nack requeue": by_nack,
    "reject requeue": by_reject,
    "nack multiple requeue": by_nack_multiple,
    "channel close": by_channel_close,
    "connection close": by_connection_close,
    "a consumer's channel close": by_consumer_channel_close,
    "lease expiry": by_lease_expiry,
}


@pytest.mark.parametrize("way", list(RETURNS))
def test_each_way_a_delivery_comes_back_counts_toward_the_limit(conn, dead, db_path, frozen, way):
    limited(conn, 1)
    give_back = RETURNS[way]
    first = give_back(conn, db_path, frozen)   # 1 return: within the limit
    second = give_back(conn, db_path, frozen)  # 2 returns: over it
    assert (first.delivery_count, delivery_count_header(first)) == (1, None)
    assert (second.delivery_count, delivery_count_header(second), second.redelivered) == (2, 1, True)
    assert conn.get("jobs") is None
    entry, = conn.get("dead", auto_ack=True).properties.headers["x-death"]
    assert (entry["queue"], entry["reason"]) == ("jobs", "delivery_limit")


def test_a_message_a_consumer_claimed_but_never_handed_out_does_not_count(conn, dead):
    limited(conn, 0)
    conn.publish("", "jobs", b"second")
    consumer = conn.consume("jobs", prefetch=2)
    assert consumer.get(0).body == b"job"  # "second" was claimed too, but never seen
    consumer.cancel()
    second = conn.get("jobs")
    assert (second.body, second.delivery_count, second.redelivered) == (b"second", 1, False)
    assert conn.declare_queue("dead").message_count == 0


def test_a_delivery_held_by_a_killed_process_counts_as_a_return(conn, dead, db_path, processes, tmp_path: Path):
    limited(conn, 1)
    holder = processes.start(workers.hold, db_path, "jobs", 1, str(tmp_path), "holder", workers.LONG_LEASE, "wait")
    wait_for_files([tmp_path / "held-holder"])
    consumer = conn.consume("jobs")
    os.kill(holder.pid, signal.SIGKILL)
    again = consumer.get(timeout=BOUND)  # long before the holder's lease: its death was noticed
    assert again is not None, "the killed holder's delivery never came back"
    assert (again.body, again.delivery_count, delivery_count_header(again)) == (b"job", 2, 1)
    again.nack(requeue=True)  # the second return: over the limit
    consumer.cancel()
    dead_lettered = conn.consume("dead").get(timeout=BOUND)
    assert dead_lettered is not None
    assert dead_lettered.properties.headers["x-death"][0]["reason"] == "delivery_limit"
    holder.join(BOUND)
    assert worker_errors(tmp_path) == {}


# ---------------------------------------------------------------------------------------------------------------
# Showing the count: the x-delivery-count header, Delivery.delivery_count, SQL
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("arguments", [{"x-queue-type": "quorum"}, {"x-delivery-limit": 10}],
                         ids=["quorum queue", "classic queue with a limit"])
def test_x_delivery_count_is_absent_on_the_first_delivery_then_counts_the_returns(conn, arguments, sql):
    conn.declare_queue("jobs", durable=True, arguments=arguments)
    conn.publish("", "jobs", b"job", litemq.Properties(headers={"app": 1}))
    seen = []
    for _ in range(3):
        delivery = conn.get("jobs")
        seen.append((delivery.delivery_count, delivery_count_header(delivery), delivery.properties.headers["app"]))
        assert sql_delivery_count(sql) == [delivery.delivery_count]
        delivery.nack(requeue=True)
    assert seen == [(1, None, 1), (2, 1, 1), (3, 2, 1)]


def test_the_first_delivery_of_a_quorum_queue_has_no_headers_added(conn):
    conn.declare_queue("jobs", durable=True, arguments={"x-queue-type": "quorum"})
    conn.publish("", "jobs", b"job")
    assert conn.get("jobs").properties.headers is None


def test_x_delivery_count_is_never_added_on_a_plain_classic_queue(conn):
    conn.declare_queue("jobs")
    conn.publish("", "jobs", b"job")
    seen = []
    for _ in range(3):
        delivery = conn.get("jobs")
        seen.append((delivery.delivery_count, delivery.redelivered, delivery.properties.headers))
        delivery.nack(requeue=True)
    assert seen == [(1, False, None), (2, True, None), (3, True, None)]


def test_the_count_is_visible_in_sql_for_messages_ready_and_unacked(conn, sql):
    conn.declare_queue("jobs", arguments={"x-delivery-limit": 5})
    conn.publish("", "jobs", b"job")
    assert sql_delivery_count(sql) == [0]  # never delivered
    conn.get("jobs").nack(requeue=True)
    assert sql_delivery_count(sql) == [1]  # ready, delivered once
    held = conn.get("jobs")
    assert sql_delivery_count(sql) == [2]  # unacked, second delivery
    held.ack()
    assert sql_delivery_count(sql) == []


def test_through_pika_a_redelivery_from_a_quorum_queue_shows_x_delivery_count(db_path):
    from litemq import pika

    connection = pika.BlockingConnection(pika.URLParameters(as_url(db_path)))
    try:
        channel = connection.channel()
        channel.queue_declare("jobs", durable=True, arguments={"x-queue-type": "quorum"})
        channel.basic_publish("", "jobs", b"job")
        method, first, _ = channel.basic_get("jobs")
        channel.basic_nack(method.delivery_tag, requeue=True)
        method, second, _ = channel.basic_get("jobs")
        channel.basic_ack(method.delivery_tag)
    finally:
        connection.close()
    assert first.headers is None
    assert (method.redelivered, second.headers) == (True, {"x-delivery-count": 1})


# ---------------------------------------------------------------------------------------------------------------
# x-queue-type: validation, storage, reporting
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, options, arguments, problem", [
    ("qq", {"durable": False}, {}, "non-durable"),
    ("qq", {"durable": True, "exclusive": True}, {}, "exclusive"),
    ("qq", {"durable": True, "auto_delete": True}, {}, "auto-delete"),
    ("", {"durable": True}, {}, "server-named"),
    ("qq", {"durable": True}, {"x-max-priority": 5}, "x-max-priority"),
], ids=["non-durable", "exclusive", "auto-delete", "server-named", "x-max-priority"])
def test_a_quorum_queue_that_rabbitmq_would_refuse_is_precondition_failed_and_not_created(
        conn, name, options, arguments, problem, sql):
    with pytest.raises(PreconditionFailed, match=problem) as refused:
        conn.declare_queue(name, **options, arguments={"x-queue-type": "quorum", **arguments})
    assert refused.value.reply_code == 406
    assert sql("SELECT count(*) FROM litemq_queues") == [(0,)]


@pytest.mark.parametrize("arguments", [
    {"x-queue-type": "stream"}, {"x-queue-type": 1},
    {"x-delivery-limit": -2}, {"x-delivery-limit": "3"}, {"x-delivery-limit": True},
], ids=["stream", "type not a string", "limit -2", "limit a string", "limit a bool"])
def test_invalid_queue_type_and_delivery_limit_arguments_are_refused(conn, arguments, sql):
    argument = next(iter(arguments))
    with pytest.raises(PreconditionFailed, match=f"'{argument}'.*'jobs'") as refused:
        conn.declare_queue("jobs", durable=True, arguments=arguments)
    assert refused.value.reply_code == 406
    assert sql("SELECT count(*) FROM litemq_queues") == [(0,)]


def test_the_queue_type_is_stored_with_the_arguments_and_reported(conn, sql):
    conn.declare_queue("jobs", durable=True, arguments={"x-queue-type": "quorum", "x-delivery-limit": 3})
    stored = sql.value("SELECT arguments FROM litemq_queues WHERE name = 'jobs'")
    assert json.loads(stored) == {"x-queue-type": "quorum", "x-delivery-limit": 3}
    reported = sql.value("SELECT arguments FROM litemq_queue_stats WHERE queue = 'jobs'")
    assert json.loads(reported)["x-queue-type"] == "quorum"


def test_a_quorum_queue_is_redeclared_only_as_a_quorum_queue(conn):
    conn.declare_queue("jobs", durable=True, arguments={"x-queue-type": "quorum"})
    assert conn.declare_queue("jobs", durable=True, arguments={"x-queue-type": "quorum"}).queue == "jobs"
    with pytest.raises(PreconditionFailed, match="inequivalent arg"):
        conn.declare_queue("jobs", durable=True)
    with pytest.raises(PreconditionFailed, match="inequivalent arg"):
        conn.declare_queue("jobs", durable=True, arguments={"x-queue-type": "classic"})


def test_a_classic_queue_may_be_declared_with_its_type_named(conn):
    conn.declare_queue("jobs", arguments={"x-queue-type": "classic", "x-max-priority": 5})
    conn.publish("", "jobs", b"job")
    assert conn.get("jobs", auto_ack=True).body == b"job"
