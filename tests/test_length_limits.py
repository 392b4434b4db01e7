"""Length limits: x-max-length and x-max-length-bytes with x-overflow drop-head (the oldest ready messages go, or
are dead-lettered), reject-publish (the new message is refused, PublishRejected after the commit, NackError under
pika confirms) and reject-publish-dlx; and the counters behind them (ready count and bytes in litemq_queues), which
must stay equal to what the table holds through every operation."""

from __future__ import annotations

import contextlib
import itertools

import pytest
from freezegun import freeze_time
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engines import as_url, ready_counters
from litemq import Properties, PublishRejected

pytestmark = pytest.mark.no_lease_renewal


def publish(conn, queue, *bodies):
    for body in bodies:
        conn.publish("", queue, body)


def drain(conn, queue) -> list[bytes]:
    return [d.body for d in iter(lambda: conn.get(queue, auto_ack=True), None)]


def stored(sql, queue) -> list[bytes]:
    """Bodies of every message row of the queue (ready or unacked), oldest first."""
    return [r[0] for r in sql("SELECT body FROM litemq_messages WHERE queue = ? ORDER BY id", (queue,))]


def counters(sql, queue) -> tuple[int, int]:
    """(ready_count, ready_bytes) as the broker keeps them (on PostgreSQL, with the deltas not yet folded in)."""
    ((count, size),) = sql(f"SELECT ready_count, ready_bytes FROM {ready_counters(sql.url)} AS c WHERE name = ?",
                           (queue,))
    return count, size


def actual(sql, queue) -> tuple[int, int]:
    """(count, body bytes) of the queue's ready messages, counted in the table."""
    ((count, size),) = sql("SELECT count(*), coalesce(sum(length(body)), 0) FROM litemq_messages "
                           "WHERE queue = ? AND lease_token IS NULL AND visible_at IS NULL", (queue,))
    return count, size


# ---------------------------------------------------------------------------------------------------------------
# x-max-length, drop-head
# ---------------------------------------------------------------------------------------------------------------

def test_x_max_length_drops_the_oldest_ready_messages(conn, sql):
    conn.declare_queue("q", arguments={"x-max-length": 2})
    publish(conn, "q", b"1", b"2", b"3", b"4")
    assert conn.declare_queue("q", arguments={"x-max-length": 2}).message_count == 2
    assert stored(sql, "q") == [b"3", b"4"]


def test_messages_dropped_from_the_head_are_dead_lettered_in_order_as_maxlen(conn, dlx):
    conn.declare_queue("q", arguments={"x-max-length": 2, "x-dead-letter-exchange": dlx})
    publish(conn, "q", b"1", b"2", b"3", b"4")
    dropped = [conn.get("dead", auto_ack=True) for _ in range(2)]
    assert [d.body for d in dropped] == [b"1", b"2"]
    assert [d.properties.headers["x-death"][0]["reason"] for d in dropped] == ["maxlen", "maxlen"]
    assert drain(conn, "q") == [b"3", b"4"]


def test_unacked_messages_do_not_count_toward_the_limit(conn, sql):
    conn.declare_queue("q", arguments={"x-max-length": 2})
    publish(conn, "q", b"1", b"2")
    held = conn.get("q")
    publish(conn, "q", b"3")
    assert stored(sql, "q") == [b"1", b"2", b"3"]  # 2 and 3 ready, 1 unacked: nothing dropped
    publish(conn, "q", b"4")
    assert stored(sql, "q") == [b"1", b"3", b"4"]
    held.ack()
    assert drain(conn, "q") == [b"3", b"4"]


def test_a_requeue_that_takes_the_queue_over_its_limit_drops_the_head(conn, dlx, sql):
    conn.declare_queue("q", arguments={"x-max-length": 2, "x-dead-letter-exchange": dlx})
    publish(conn, "q", b"1", b"2")
    held = conn.get("q")
    publish(conn, "q", b"3")
    held.nack(requeue=True)  # 1 goes back to the head: three ready, one too many
    assert counters(sql, "q") == (2, 2)
    assert drain(conn, "q") == [b"2", b"3"]
    dead = conn.get("dead", auto_ack=True)
    assert (dead.body, dead.properties.headers["x-death"][0]["reason"]) == (b"1", "maxlen")


def test_a_message_coming_back_from_a_closed_channel_over_the_limit_drops_the_head(conn):
    conn.declare_queue("q", arguments={"x-max-length": 1})
    publish(conn, "q", b"1")
    channel = conn.channel()
    channel.get("q")
    publish(conn, "q", b"2")
    channel.close()
    assert drain(conn, "q") == [b"2"]


@pytest.mark.parametrize("arguments", [{"x-max-length": 0}, {"x-max-length-bytes": 0}],
                         ids=["x-max-length 0", "x-max-length-bytes 0"])
def test_a_limit_of_zero_keeps_nothing_and_dead_letters_everything(conn, dlx, arguments, sql):
    conn.declare_queue("q", arguments={**arguments, "x-dead-letter-exchange": dlx})
    assert conn.publish("", "q", b"m") == 1
    assert stored(sql, "q") == [] and counters(sql, "q") == (0, 0)
    dead = conn.get("dead", auto_ack=True)
    assert (dead.body, dead.properties.headers["x-death"][0]["reason"]) == (b"m", "maxlen")


# ---------------------------------------------------------------------------------------------------------------
# x-max-length-bytes: bodies only, and with x-max-length whichever is reached first
# ---------------------------------------------------------------------------------------------------------------

def test_x_max_length_bytes_counts_the_bodies_of_ready_messages_only(conn, sql):
    conn.declare_queue("q", arguments={"x-max-length-bytes": 10})
    big_properties = Properties(headers={"padding": "x" * 1000}, content_type="application/octet-stream")
    for body in (b"12345", b"67890"):
        conn.publish("", "q", body, big_properties)
    assert counters(sql, "q") == (2, 10)  # 10 bytes of bodies: at the limit, not over it
    publish(conn, "q", b"!")
    assert stored(sql, "q") == [b"67890", b"!"]
    assert counters(sql, "q") == (2, 6)


def test_a_single_message_larger_than_the_byte_limit_is_dropped(conn, sql):
    conn.declare_queue("q", arguments={"x-max-length-bytes": 4})
    publish(conn, "q", b"small", b"1234")
    assert stored(sql, "q") == [b"1234"]


@pytest.mark.parametrize("bodies, kept", [
    ([b"aaaa", b"bbbb", b"cccc"], [b"bbbb", b"cccc"]),   # 12 bytes > 10 before 3 > 3: the byte limit acts
    ([b"a", b"b", b"c", b"d"], [b"b", b"c", b"d"]),      # 4 > 3 before 4 bytes > 10: the count limit acts
], ids=["bytes first", "count first"])
def test_with_both_limits_whichever_is_reached_first_applies(conn, bodies, kept, sql):
    conn.declare_queue("q", arguments={"x-max-length": 3, "x-max-length-bytes": 10})
    publish(conn, "q", *bodies)
    assert stored(sql, "q") == kept


# ---------------------------------------------------------------------------------------------------------------
# reject-publish and reject-publish-dlx
# ---------------------------------------------------------------------------------------------------------------

@pytest.fixture
def fanout(conn):
    """Exchange "fan" to "full" (x-max-length 1, reject-publish, already holding "first") and "open"."""
    conn.declare_exchange("fan", "fanout")
    conn.declare_queue("full", arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    conn.declare_queue("open")
    for queue in ("full", "open"):
        conn.bind_queue(queue, "fan")
    conn.publish("", "full", b"first")
    return "fan"


def test_a_full_reject_publish_queue_refuses_after_the_commit_while_the_others_keep_their_copy(
        conn, other, fanout, sql):
    with pytest.raises(PublishRejected, match="'full'") as refused:
        conn.publish(fanout, "", b"second")
    assert (refused.value.rejected, refused.value.stored) == (["full"], ["open"])
    assert other.get("open", auto_ack=True).body == b"second"  # committed: another connection sees it
    assert stored(sql, "full") == [b"first"]
    assert counters(sql, "full") == (1, 5)


def test_reject_publish_through_the_default_exchange_stores_nothing(conn, sql):
    conn.declare_queue("full", arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    conn.publish("", "full", b"first")
    with pytest.raises(PublishRejected) as refused:
        conn.publish("", "full", b"second")
    assert (refused.value.rejected, refused.value.stored) == (["full"], [])
    assert stored(sql, "full") == [b"first"]


def test_reject_publish_counts_only_ready_messages(conn):
    conn.declare_queue("q", arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    publish(conn, "q", b"1")
    held = conn.get("q")
    assert conn.publish("", "q", b"2") == 1  # 1 is unacked: there is room
    with pytest.raises(PublishRejected):
        conn.publish("", "q", b"3")
    held.ack()
    assert drain(conn, "q") == [b"2"]


def test_a_requeue_may_take_a_reject_publish_queue_over_its_limit_and_publishing_waits_until_under(conn, sql):
    conn.declare_queue("q", arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    publish(conn, "q", b"1")
    held = conn.get("q")
    publish(conn, "q", b"2")
    held.nack(requeue=True)  # nothing is dropped for a requeue: two ready, over the limit of one
    assert stored(sql, "q") == [b"1", b"2"]
    with pytest.raises(PublishRejected):
        conn.publish("", "q", b"3")
    conn.get("q", auto_ack=True)
    with pytest.raises(PublishRejected):
        conn.publish("", "q", b"3")  # one ready: at the limit, still no room
    conn.get("q", auto_ack=True)
    assert conn.publish("", "q", b"3") == 1


def test_reject_publish_by_bytes_refuses_the_message_that_would_go_over(conn, sql):
    conn.declare_queue("q", arguments={"x-max-length-bytes": 5, "x-overflow": "reject-publish"})
    publish(conn, "q", b"123")
    with pytest.raises(PublishRejected):
        conn.publish("", "q", b"456")
    publish(conn, "q", b"45")
    assert stored(sql, "q") == [b"123", b"45"]


def test_reject_publish_does_not_dead_letter_the_refused_message(conn, dlx, sql):
    conn.declare_queue("q", arguments={"x-max-length": 1, "x-overflow": "reject-publish",
                                       "x-dead-letter-exchange": dlx})
    publish(conn, "q", b"1")
    with pytest.raises(PublishRejected):
        conn.publish("", "q", b"2")
    assert stored(sql, "dead") == []


def test_reject_publish_dlx_refuses_and_dead_letters_the_new_message_keeping_the_old(conn, dlx, sql):
    conn.declare_queue("q", arguments={"x-max-length": 1, "x-overflow": "reject-publish-dlx",
                                       "x-dead-letter-exchange": dlx})
    publish(conn, "q", b"old")
    with pytest.raises(PublishRejected) as refused:
        conn.publish("", "q", b"new")
    assert (refused.value.rejected, refused.value.stored) == (["q"], [])
    assert stored(sql, "q") == [b"old"]
    dead = conn.get("dead", auto_ack=True)
    assert dead.body == b"new"
    assert [(d["queue"], d["reason"]) for d in dead.properties.headers["x-death"]] == [("q", "maxlen")]


def test_mandatory_with_only_a_refusing_queue_raises_publish_rejected(conn):
    conn.declare_queue("full", arguments={"x-max-length": 0, "x-overflow": "reject-publish"})
    with pytest.raises(PublishRejected):
        conn.publish("", "full", b"m", mandatory=True)


# ---------------------------------------------------------------------------------------------------------------
# Through litemq.pika: NackError under confirms, silence without
# ---------------------------------------------------------------------------------------------------------------

@pytest.fixture
def pika_channel(db_path):
    from litemq import pika

    connection = pika.BlockingConnection(pika.URLParameters(as_url(db_path)))
    channel = connection.channel()
    channel.queue_declare("full", arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    channel.basic_publish("", "full", b"first")
    yield channel
    if connection.is_open:
        connection.close()


def test_through_pika_a_refused_publish_raises_nack_error_with_no_messages_under_confirms(conn, pika_channel, sql):
    from litemq import pika

    pika_channel.confirm_delivery()
    with pytest.raises(pika.exceptions.NackError) as refused:
        pika_channel.basic_publish("", "full", b"second")
    assert refused.value.messages == []
    assert pika_channel.is_open
    assert stored(sql, "full") == [b"first"]


def test_through_pika_a_refused_publish_is_silent_without_confirms(conn, pika_channel, sql):
    pika_channel.basic_publish("", "full", b"second")
    assert pika_channel.is_open
    assert stored(sql, "full") == [b"first"]


# ---------------------------------------------------------------------------------------------------------------
# Counters: message_count and ready_bytes stay equal to what the table holds
# ---------------------------------------------------------------------------------------------------------------

def test_message_count_and_ready_bytes_follow_publish_get_ack_nack_and_purge(conn, sql):
    conn.declare_queue("q")
    publish(conn, "q", b"a", b"bb", b"ccc")
    assert counters(sql, "q") == (3, 6)
    first = conn.get("q")
    assert (first.message_count, counters(sql, "q")) == (2, (2, 5))
    first.nack(requeue=True)
    assert counters(sql, "q") == (3, 6)
    conn.get("q").ack()
    assert counters(sql, "q") == (2, 5)
    second = conn.get("q")
    second.reject(requeue=False)
    assert counters(sql, "q") == (1, 3)
    held = conn.get("q")
    publish(conn, "q", b"dddd")
    assert conn.purge_queue("q") == 1
    assert counters(sql, "q") == (0, 0)
    assert conn.declare_queue("q").message_count == 0
    held.nack(requeue=True)
    assert counters(sql, "q") == actual(sql, "q") == (1, 3)
    assert sql("SELECT ready_bytes FROM litemq_queue_stats WHERE queue = 'q'") == [(3,)]


OPERATIONS = st.lists(st.one_of(
    st.tuples(st.just("publish"), st.binary(max_size=12), st.sampled_from([None, "1000", "5000"])),
    st.tuples(st.just("publish later"), st.binary(max_size=12)),
    st.tuples(st.sampled_from(["get-ack", "get-nack", "get-reject", "get-hold", "auto-ack", "consume one",
                               "release", "purge", "tick", "close-channel"]))), max_size=30)


@pytest.mark.slow
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations=OPERATIONS, limits=st.sampled_from([{}, {"x-max-length": 3}, {"x-max-length-bytes": 16},
                                                       {"x-max-length": 4, "x-overflow": "reject-publish"}]))
def test_ready_counters_equal_the_ready_rows_after_any_sequence(conn, operations, limits, sql):
    names = next(QUEUE_NAMES)
    queue, dead = f"q{names}", f"dead{names}"
    conn.declare_queue(dead, arguments={"x-max-length": 2})
    conn.declare_queue(queue, arguments={**limits, "x-dead-letter-exchange": "", "x-dead-letter-routing-key": dead})
    held = []
    channel = conn.channel()
    with freeze_time("2026-01-01") as frozen:
        for operation in operations:
            kind = operation[0]
            if kind == "publish":
                with contextlib.suppress(PublishRejected):
                    channel.publish("", queue, operation[1], Properties(expiration=operation[2]))
            elif kind == "publish later":
                channel.publish("", queue, operation[1], delay=1.0)
            elif kind == "consume one":  # claims up to 3, is handed 1, cancels: the 2 unseen go back
                consumer = channel.consume(queue, prefetch=3, lease_seconds=3600)
                delivery = consumer.get(0)
                consumer.cancel()
                if delivery is not None:
                    held.append(delivery)
            elif kind.startswith("get"):
                delivery = channel.get(queue, lease_seconds=3600)
                if delivery is not None:
                    {"get-ack": delivery.ack, "get-nack": delivery.nack, "get-hold": lambda: held.append(delivery),
                     "get-reject": lambda: delivery.reject(requeue=False)}[kind]()
            elif kind == "auto-ack":
                channel.get(queue, auto_ack=True)
            elif kind == "release" and held:
                held.pop(0).nack(requeue=True)
            elif kind == "purge":
                channel.purge_queue(queue)
            elif kind == "tick":
                frozen.tick(2)
            elif kind == "close-channel":
                channel.close()
                channel, held = conn.channel(), []
            for name in (queue, dead):
                assert counters(sql, name) == actual(sql, name), (name, operation)
        for name in (queue, dead):
            count = conn.declare_queue(name, passive=True).message_count  # expiry done: counts leave it out
            assert counters(sql, name) == actual(sql, name)
            assert count == actual(sql, name)[0]
    channel.close()


QUEUE_NAMES = itertools.count()
