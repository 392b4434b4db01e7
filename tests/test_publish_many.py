"""publish_many: several messages with one routing key and one set of properties, stored in one short
transaction (an error stores none), each meeting its queues' rules as a single publish would."""

from __future__ import annotations

import threading

import pytest

import litemq
from conftest import vm_steps
from engines import BrokerSQL
from litemq import ExchangeNotFound, MessageTooLarge, Properties, PublishRejected, Unroutable

pytestmark = pytest.mark.no_lease_renewal


def bodies(conn: litemq.Connection, queue: str) -> list[bytes]:
    got = []
    while (delivery := conn.get(queue, auto_ack=True)) is not None:
        got.append(delivery.body)
    return got


def stored(sql: BrokerSQL) -> int:
    return sql.value("SELECT count(*) FROM litemq_messages")


def test_every_message_reaches_every_queue_in_publish_order(conn):
    conn.declare_exchange("news", "fanout")
    for queue in ("a", "b"):
        conn.declare_queue(queue)
        conn.bind_queue(queue, "news")
    assert conn.publish_many("news", "", [b"1", "2", b"3"]) == 2
    assert bodies(conn, "a") == bodies(conn, "b") == [b"1", b"2", b"3"]


def test_messages_follow_what_the_queue_already_holds_and_count_as_ready(conn, sql):
    conn.declare_queue("jobs")
    conn.publish("", "jobs", b"first")
    conn.publish_many("", "jobs", (b"%d" % n for n in range(5)))  # any iterable
    assert conn.declare_queue("jobs", passive=True).message_count == 6
    delivery = conn.get("jobs")
    assert delivery is not None and delivery.body == b"first" and delivery.message_count == 5
    delivery.ack()
    assert bodies(conn, "jobs") == [b"0", b"1", b"2", b"3", b"4"]
    assert sql("SELECT ready, ready_bytes FROM litemq_queue_stats WHERE queue = 'jobs'") == [(0, 0)]


def test_every_message_carries_the_properties(conn):
    conn.declare_queue("jobs")
    conn.publish_many("", "jobs", [b"a", b"b"], Properties(content_type="text/plain", headers={"n": 1}))
    for _ in range(2):
        delivery = conn.get("jobs", auto_ack=True)
        assert delivery is not None
        assert delivery.properties.content_type == "text/plain" and delivery.properties.headers == {"n": 1}


def test_one_body_too_large_stores_none_of_them(db_path, sql):
    with litemq.connect(db_path, max_message_bytes=10) as conn:
        conn.declare_queue("jobs")
        with pytest.raises(MessageTooLarge, match="11 bytes"):
            conn.publish_many("", "jobs", [b"small", b"x" * 11])
        assert stored(sql) == 0


def test_a_missing_exchange_stores_none_and_names_it(conn, db_path, sql):
    conn.declare_queue("jobs")
    with pytest.raises(ExchangeNotFound, match="nowhere"):
        conn.publish_many("nowhere", "jobs", [b"1", b"2"])
    assert stored(sql) == 0


def test_a_body_that_is_not_bytes_or_str_stores_none(conn, sql):
    conn.declare_queue("jobs")
    with pytest.raises(TypeError):
        conn.publish_many("", "jobs", [b"1", 2])  # type: ignore[list-item]
    assert stored(sql) == 0


@pytest.mark.parametrize("single", ["hello", b"hello"])
def test_one_body_in_place_of_a_list_is_refused_not_split_into_characters(conn, single, sql):
    conn.declare_queue("jobs")
    with pytest.raises(TypeError, match="iterable of message bodies"):
        conn.publish_many("", "jobs", single)
    assert stored(sql) == 0


@pytest.mark.parametrize("bodies", [None, 42])
def test_bodies_that_are_not_iterable_are_refused_by_name(conn, bodies, sql):
    conn.declare_queue("jobs")
    with pytest.raises(TypeError, match=f"bodies must be an iterable of message bodies .a list., not "
                                        f"{type(bodies).__name__}"):
        conn.publish_many("", "jobs", bodies)
    assert stored(sql) == 0


def test_an_empty_batch_stores_nothing_and_returns_zero(conn, sql):
    conn.declare_queue("jobs")
    assert conn.publish_many("", "jobs", []) == 0
    assert stored(sql) == 0


def test_mandatory_with_no_queue_is_unroutable_and_stores_nothing(conn, sql):
    conn.declare_exchange("logs", "direct")
    with pytest.raises(Unroutable):
        conn.publish_many("logs", "nobody", [b"1", b"2"], mandatory=True)
    assert stored(sql) == 0


def test_each_message_meets_the_length_limit_as_it_arrives(conn):
    conn.declare_queue("bounded", arguments={"x-max-length": 3, "x-overflow": "reject-publish"})
    conn.declare_queue("rolling", arguments={"x-max-length": 3})
    with pytest.raises(PublishRejected) as refused:
        conn.publish_many("", "bounded", [b"1", b"2", b"3", b"4", b"5"])
    assert refused.value.rejected == ["bounded"] and refused.value.stored == ["bounded"]
    assert bodies(conn, "bounded") == [b"1", b"2", b"3"]
    assert conn.publish_many("", "rolling", [b"1", b"2", b"3", b"4", b"5"]) == 1
    assert bodies(conn, "rolling") == [b"3", b"4", b"5"]  # drop-head kept the newest


def test_priorities_and_ttl_apply_to_each_message(conn, frozen):
    conn.declare_queue("urgent", arguments={"x-max-priority": 5, "x-message-ttl": 1000})
    conn.publish("", "urgent", b"plain")
    conn.publish_many("", "urgent", [b"p1", b"p2"], Properties(priority=3))
    assert bodies(conn, "urgent") == [b"p1", b"p2", b"plain"]
    conn.publish_many("", "urgent", [b"old1", b"old2"])
    frozen.tick(2)
    assert bodies(conn, "urgent") == []


def test_a_delayed_batch_joins_the_queue_when_due_in_order(conn, frozen):
    conn.declare_queue("later")
    conn.publish_many("", "later", [b"1", b"2", b"3"], delay=5)
    assert conn.get("later") is None
    frozen.tick(6)
    assert bodies(conn, "later") == [b"1", b"2", b"3"]


def test_a_waiting_consumer_on_another_connection_receives_the_batch(conn, other):
    conn.declare_queue("jobs")
    consumer = other.consume("jobs", prefetch=10)
    got: list[bytes] = []

    def receive() -> None:
        for _ in range(3):
            delivery = consumer.get(10)
            if delivery is None:
                return
            got.append(delivery.body)
            delivery.ack()

    thread = threading.Thread(target=receive)
    thread.start()
    conn.publish_many("", "jobs", [b"1", b"2", b"3"])
    thread.join(15)
    assert got == [b"1", b"2", b"3"]


@pytest.mark.sqlite_only
def test_a_batch_costs_far_less_than_publishing_its_messages_one_by_one(conn):
    conn.declare_queue("jobs")
    batch = [b"x" * 100] * 100
    conn.publish_many("", "jobs", batch)  # statements cached
    conn.publish("", "jobs", batch[0])
    one, _ = vm_steps(conn, lambda: conn.publish("", "jobs", batch[0]))
    many, _ = vm_steps(conn, lambda: conn.publish_many("", "jobs", batch))
    # Each row pays its own count in the file's insert trigger (about 45 steps), in a batch or not.
    assert many < 100 * one * 0.65, f"publish_many of 100 took {many} VM steps; 100 publishes take {100 * one}"
