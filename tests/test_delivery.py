"""Delivery: get, consume (iterator and callback), prefetch, ack/nack/reject, requeue order, redelivery."""

import time

import pytest

from litemq import DeliveryError, ExchangeNotFound, QueueNotFound


@pytest.fixture
def jobs(conn):
    conn.declare_queue("jobs")
    return "jobs"


def publish(conn, queue, *bodies):
    for body in bodies:
        conn.publish("", queue, body)


def test_get_on_an_empty_queue_returns_none(conn, jobs):
    assert conn.get(jobs) is None


def test_get_reports_how_many_ready_messages_are_left(conn, jobs):
    publish(conn, jobs, b"1", b"2", b"3")
    assert [conn.get(jobs).message_count for _ in range(3)] == [2, 1, 0]


def test_first_delivery_is_not_redelivered(conn, jobs):
    publish(conn, jobs, b"1")
    delivery = conn.get(jobs)
    assert (delivery.redelivered, delivery.delivery_count) == (False, 1)


def test_ack_deletes_the_message(conn, jobs, sql):
    publish(conn, jobs, b"1")
    conn.get(jobs).ack()
    assert conn.declare_queue(jobs).message_count == 0
    assert sql.value("SELECT count(*) FROM litemq_messages") == 0


def test_second_ack_of_the_same_delivery_raises(conn, jobs):
    publish(conn, jobs, b"1")
    delivery = conn.get(jobs)
    delivery.ack()
    with pytest.raises(DeliveryError, match="unknown delivery tag") as info:
        delivery.ack()
    assert info.value.reply_code == 406


def test_ack_with_an_unknown_tag_raises(conn, jobs):
    with pytest.raises(DeliveryError):
        conn.ack(99)


def test_nack_requeues_at_the_original_position_with_redelivered(conn, jobs):
    publish(conn, jobs, b"1", b"2", b"3")
    conn.get(jobs).nack(requeue=True)
    got = [conn.get(jobs) for _ in range(3)]
    assert [(d.body, d.redelivered, d.delivery_count) for d in got] == [
        (b"1", True, 2), (b"2", False, 1), (b"3", False, 1)]


def test_several_requeued_messages_keep_their_order(conn, jobs):
    publish(conn, jobs, b"1", b"2", b"3")
    first, second = conn.get(jobs), conn.get(jobs)
    second.nack()
    first.nack()
    assert [conn.get(jobs, auto_ack=True).body for _ in range(3)] == [b"1", b"2", b"3"]


def test_reject_without_requeue_drops_the_message(conn, jobs):
    publish(conn, jobs, b"1", b"2")
    conn.get(jobs).reject(requeue=False)
    assert conn.get(jobs, auto_ack=True).body == b"2"
    assert conn.get(jobs) is None


def test_nack_multiple_settles_every_earlier_delivery(conn, jobs):
    publish(conn, jobs, b"1", b"2", b"3")
    tags = [conn.get(jobs).delivery_tag for _ in range(3)]
    conn.nack(tags[1], multiple=True, requeue=True)
    assert conn.declare_queue(jobs).message_count == 2
    conn.ack(tags[2])
    assert [conn.get(jobs, auto_ack=True).body for _ in range(2)] == [b"1", b"2"]


def test_ack_multiple_acks_every_earlier_delivery(conn, jobs, sql):
    publish(conn, jobs, b"1", b"2", b"3")
    tags = [conn.get(jobs).delivery_tag for _ in range(3)]
    conn.ack(tags[1], multiple=True)
    with pytest.raises(DeliveryError):
        conn.ack(tags[0])
    conn.ack(tags[2])
    assert sql.value("SELECT count(*) FROM litemq_messages") == 0


def test_ack_multiple_with_tag_zero_acks_everything_outstanding(conn, jobs, sql):
    publish(conn, jobs, b"1", b"2")
    conn.get(jobs)
    conn.get(jobs)
    conn.ack(0, multiple=True)
    assert sql.value("SELECT count(*) FROM litemq_messages") == 0


def test_multiple_up_to_a_tag_not_outstanding_settles_nothing(conn, jobs):
    # RabbitMQ answers "unknown delivery tag" and settles none of the earlier ones: a mistaken tag must not drop
    # messages the caller never meant to.
    publish(conn, jobs, b"1", b"2", b"3")
    tags = [conn.get(jobs).delivery_tag for _ in range(3)]
    conn.ack(tags[1])
    for settle in (lambda: conn.nack(10, multiple=True, requeue=False), lambda: conn.ack(tags[1], multiple=True)):
        with pytest.raises(DeliveryError, match="unknown delivery tag"):
            settle()
    conn.nack(0, multiple=True)  # the two still outstanding go back, both whole
    assert [conn.get(jobs, auto_ack=True).body for _ in range(2)] == [b"1", b"3"]
    assert conn.get(jobs) is None


def test_multiple_with_tag_zero_and_nothing_outstanding_does_nothing(conn, jobs):
    conn.ack(0, multiple=True)
    conn.nack(0, multiple=True, requeue=False)
    assert conn.declare_queue(jobs).message_count == 0


def test_delivery_tags_increase_per_channel(conn, jobs):
    publish(conn, jobs, b"1", b"2")
    channel = conn.channel()
    assert [conn.get(jobs).delivery_tag, channel.get(jobs).delivery_tag] == [1, 1]


def test_a_delivery_cannot_be_acked_on_another_channel(conn, jobs):
    publish(conn, jobs, b"1")
    delivery = conn.get(jobs)
    with pytest.raises(DeliveryError):
        conn.channel().ack(delivery.delivery_tag)


def test_auto_ack_get_removes_the_message_at_once(conn, jobs, sql):
    publish(conn, jobs, b"1")
    delivery = conn.get(jobs, auto_ack=True)
    assert delivery.body == b"1"
    with pytest.raises(ValueError, match="auto-acked"):
        delivery.ack()
    assert sql.value("SELECT count(*) FROM litemq_messages") == 0


def test_consume_iterates_in_order_and_stops_after_inactivity(conn, jobs):
    publish(conn, jobs, b"1", b"2", b"3")
    received = []
    for delivery in conn.consume(jobs, inactivity_timeout=0.05):
        received.append(delivery.body)
        delivery.ack()
    assert received == [b"1", b"2", b"3"]


def test_consume_with_a_callback(conn, jobs):
    publish(conn, jobs, b"1", b"2")
    received = []
    consumer = conn.consume(jobs, auto_ack=True, inactivity_timeout=0.05)
    consumer.run(lambda delivery: received.append((delivery.body, delivery.consumer_tag)))
    assert received == [(b"1", consumer.consumer_tag), (b"2", consumer.consumer_tag)]


def test_callback_may_cancel_its_consumer(conn, jobs):
    publish(conn, jobs, b"1", b"2", b"3")
    received = []
    consumer = conn.consume(jobs, prefetch=10)

    def handle(delivery):
        received.append(delivery.body)
        delivery.ack()
        if len(received) == 2:
            consumer.cancel()

    consumer.run(handle)
    assert received == [b"1", b"2"]
    assert conn.get(jobs).body == b"3"


def test_prefetch_bounds_unacked_deliveries_per_consumer(conn, jobs):
    publish(conn, jobs, *[str(i) for i in range(5)])
    consumer = conn.consume(jobs, prefetch=2)
    first, second = consumer.get(0), consumer.get(0)
    assert first is not None and second is not None
    assert consumer.get(0.01) is None
    first.ack()
    assert consumer.get(0).body == b"2"


def test_fair_dispatch_with_prefetch_one(conn, other, jobs):
    publish(conn, jobs, b"1", b"2", b"3")
    busy = conn.consume(jobs, prefetch=1)
    idle = other.consume(jobs, prefetch=1)
    assert busy.get(0).body == b"1"
    assert idle.get(0).body == b"2"
    assert busy.get(0.01) is None  # still working on 1
    assert other.declare_queue(jobs).message_count == 1


def test_unlimited_prefetch_takes_what_is_there(conn, jobs):
    publish(conn, jobs, *[str(i) for i in range(300)])
    consumer = conn.consume(jobs, prefetch=0)
    got = [consumer.get(0) for _ in range(300)]
    assert [d.body for d in got] == [str(i).encode() for i in range(300)]


def test_cancel_keeps_handed_out_deliveries_unacked_and_returns_unseen_ones(conn, jobs):
    publish(conn, jobs, b"1", b"2", b"3")
    consumer = conn.consume(jobs, prefetch=3)
    delivery = consumer.get(0)
    consumer.cancel()
    # 2 and 3 were claimed but never handed out: back, and not counted as delivered
    nxt = conn.get(jobs)
    assert (nxt.body, nxt.redelivered) == (b"2", False)
    delivery.ack()  # still ackable after the cancel
    assert conn.declare_queue(jobs).message_count == 1


def test_consumer_learns_its_queue_was_deleted(conn, other, jobs):
    consumer = conn.consume(jobs)
    other.delete_queue(jobs)
    with pytest.raises(QueueNotFound, match="deleted"):
        consumer.get(0)
    assert not consumer.active


def test_consume_from_a_missing_queue_is_not_found(conn):
    with pytest.raises(QueueNotFound):
        conn.consume("missing")


def test_exclusive_consumer_excludes_others(conn, other, jobs):
    from litemq import AccessRefused

    conn.consume(jobs, exclusive=True)
    with pytest.raises(AccessRefused):
        other.consume(jobs)


def test_consumer_receives_a_message_published_while_it_waits(conn, other, jobs):
    import threading

    consumer = conn.consume(jobs)
    timer = threading.Timer(0.05, lambda: other.publish("", jobs, b"late"))
    timer.start()
    delivery = consumer.get(5)
    timer.join()
    assert delivery is not None and delivery.body == b"late"


def test_ack_and_publish_is_one_transaction(conn, jobs):
    conn.declare_queue("replies")
    publish(conn, jobs, b"request")
    request = conn.get(jobs)
    assert conn.ack_and_publish(request.delivery_tag, "", "replies", b"answer") == 1
    assert conn.get(jobs) is None
    assert conn.get("replies", auto_ack=True).body == b"answer"


def test_ack_and_publish_whose_publish_fails_leaves_the_delivery_held_and_settleable(conn, jobs, sql):
    publish(conn, jobs, b"request")
    request = conn.get(jobs)
    with pytest.raises(ExchangeNotFound):
        conn.ack_and_publish(request.delivery_tag, "no-such-exchange", "replies", b"answer")
    assert sql("SELECT lease_token IS NOT NULL FROM litemq_messages") == [(1,)]
    assert len(conn._session.held()) == 1  # still held: renewed in the background, settled by the ack below
    request.ack()
    assert conn.declare_queue(jobs).message_count == 0 and conn.get(jobs) is None


def test_ack_and_publish_with_an_expired_lease_publishes_nothing(db_path):
    from freezegun import freeze_time

    import litemq

    with freeze_time("2026-01-01") as frozen, litemq.connect(db_path, renew_leases=False) as conn:
        conn.declare_queue("jobs")
        conn.declare_queue("replies")
        conn.publish("", "jobs", b"request")
        stale = conn.get("jobs", lease_seconds=5)
        frozen.tick(6)
        again = conn.get("jobs")
        with pytest.raises(litemq.LeaseExpired):
            conn.ack_and_publish(stale.delivery_tag, "", "replies", b"answer")
        assert conn.declare_queue("replies").message_count == 0
        again.ack()


def test_an_ack_claims_the_consumers_next_message_in_its_own_transaction(conn, jobs):
    publish(conn, jobs, *[str(i) for i in range(10)])
    consumer = conn.consume(jobs, prefetch=1)
    commits = conn._store.commits
    received = []
    for _ in range(10):
        delivery = consumer.get(0)
        received.append(delivery.body)
        delivery.ack()
    assert received == [str(i).encode() for i in range(10)]
    assert conn._store.commits - commits <= 11  # one claim, then one ack (claiming the next) per message


def test_a_message_claimed_by_an_ack_but_never_handed_out_goes_back_unmarked_on_cancel(conn, other, jobs):
    publish(conn, jobs, b"1", b"2")
    consumer = conn.consume(jobs, prefetch=1)
    consumer.get(0).ack()  # claims 2 for this consumer
    assert other.get(jobs) is None
    consumer.cancel()
    returned = other.get(jobs)
    assert (returned.body, returned.redelivered, returned.delivery_count) == (b"2", False, 1)


def test_an_ack_claims_no_more_than_the_channels_prefetch_allows(conn, jobs):
    publish(conn, jobs, b"1", b"2", b"3")
    conn.qos(1, global_qos=True)
    first, second = conn.consume(jobs, prefetch=1), conn.consume(jobs, prefetch=1)
    delivery = first.get(0)
    assert second.get(0) is None  # the channel holds its one
    delivery.ack()  # frees the channel's one place: the next message goes to one consumer, not both
    assert [c.get(0) is None for c in (first, second)].count(True) == 1
    assert conn.declare_queue(jobs).message_count == 1


@pytest.mark.parametrize("settle", ["ack", "ack_multiple", "nack_requeue", "nack_drop", "reject_requeue", "ack_all"])
@pytest.mark.parametrize("deletion", ["by_another_connection", "by_this_connection_and_declared_again",
                                      "by_another_connection_and_declared_again"])
def test_a_delivery_whose_queue_was_deleted_is_settled_quietly_once(conn, other, jobs, settle, deletion):
    publish(conn, jobs, b"old-1", b"old-2")
    conn.get(jobs)
    delivery = conn.get(jobs)
    redeclared = deletion != "by_another_connection"
    if redeclared:
        (conn if deletion == "by_this_connection_and_declared_again" else other).delete_queue(jobs)
        time.sleep(0.01)  # declared again at another time: another queue of the same name
        other.declare_queue(jobs)
        publish(other, jobs, b"new")
    else:
        other.delete_queue(jobs)
    tag = delivery.delivery_tag
    {"ack": lambda: conn.ack(tag), "ack_multiple": lambda: conn.ack(tag, multiple=True),
     "nack_requeue": lambda: conn.nack(tag), "nack_drop": lambda: conn.nack(tag, requeue=False),
     "reject_requeue": lambda: conn.reject(tag), "ack_all": lambda: conn.ack(0, multiple=True)}[settle]()
    with pytest.raises(DeliveryError, match="unknown delivery tag"):
        conn.ack(tag)  # settled now: the tag is no longer the channel's
    if redeclared:  # the new queue of that name kept its own message and got none of the old ones
        assert [d.body for d in iter(lambda: other.get(jobs, auto_ack=True), None)] == [b"new"]
    else:
        with pytest.raises(QueueNotFound):
            other.get(jobs)


@pytest.mark.sqlite_only
def test_a_consumer_claims_one_message_without_begin_or_commit_once_its_waiter_has_looked_at_the_leases(conn, other):
    conn.declare_queue("q")
    consumer = conn.consume("q", prefetch=1)
    other.publish("", "q", b"m")
    consumer.expiry_horizon = float("inf")  # as its waiter leaves it after a look: no lease expired before then
    statements: list[str] = []
    conn._store._db.set_trace_callback(statements.append)
    try:
        delivery = consumer.get(timeout=5)
    finally:
        conn._store._db.set_trace_callback(None)
    assert delivery is not None and delivery.body == b"m" and delivery.delivery_count == 1
    assert not [sql for sql in statements if sql.startswith(("BEGIN", "COMMIT"))], statements
    delivery.ack()
    assert other.declare_queue("q", passive=True).message_count == 0
