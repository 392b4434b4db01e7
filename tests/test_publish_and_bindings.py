"""Bindings and publishing: each exchange type, one copy per queue, unroutable messages, exclusive queues."""

import pytest

import litemq
from engines import ready_counters
from litemq import AccessRefused, ExchangeNotFound, PreconditionFailed, Properties, QueueNotFound


def bodies(conn, queue):
    out = []
    while (delivery := conn.get(queue, auto_ack=True)) is not None:
        out.append(delivery.body)
    return out


def test_direct_exchange_delivers_on_equal_keys_to_every_matching_queue(conn):
    conn.declare_exchange("direct_logs", "direct")
    for queue, key in (("errors", "error"), ("all", "error"), ("all", "info")):
        conn.declare_queue(queue)
        conn.bind_queue(queue, "direct_logs", key)
    conn.publish("direct_logs", "error", b"e")
    conn.publish("direct_logs", "info", b"i")
    conn.publish("direct_logs", "Error", b"case matters")
    assert bodies(conn, "errors") == [b"e"]
    assert bodies(conn, "all") == [b"e", b"i"]


def test_fanout_exchange_ignores_the_routing_key(conn):
    conn.declare_exchange("logs", "fanout")
    for queue in ("a", "b"):
        conn.declare_queue(queue)
        conn.bind_queue(queue, "logs", "ignored")
    assert conn.publish("logs", "anything", b"x") == 2
    assert bodies(conn, "a") == bodies(conn, "b") == [b"x"]


def test_topic_exchange_matches_words(conn):
    conn.declare_exchange("topic_logs", "topic")
    conn.declare_queue("q1")
    conn.declare_queue("q2")
    conn.bind_queue("q1", "topic_logs", "*.orange.*")
    conn.bind_queue("q2", "topic_logs", "*.*.rabbit")
    conn.bind_queue("q2", "topic_logs", "lazy.#")
    for key in ("quick.orange.rabbit", "lazy.orange.elephant", "quick.orange.fox", "lazy.brown.fox",
                "lazy.pink.rabbit", "quick.brown.fox", "orange", "quick.orange.male.rabbit",
                "lazy.orange.male.rabbit", "lazy"):
        conn.publish("topic_logs", key, key)
    assert bodies(conn, "q1") == [b"quick.orange.rabbit", b"lazy.orange.elephant", b"quick.orange.fox"]
    assert bodies(conn, "q2") == [b"quick.orange.rabbit", b"lazy.orange.elephant", b"lazy.brown.fox",
                                  b"lazy.pink.rabbit", b"lazy.orange.male.rabbit", b"lazy"]


def test_queue_reached_through_several_bindings_gets_one_copy(conn):
    conn.declare_exchange("t", "topic")
    conn.declare_queue("q")
    conn.bind_queue("q", "t", "lazy.#")
    conn.bind_queue("q", "t", "*.*.rabbit")
    assert conn.publish("t", "lazy.pink.rabbit", b"once") == 1
    assert bodies(conn, "q") == [b"once"]


@pytest.mark.parametrize("arguments, headers, routed", [
    ({"x-match": "all", "format": "pdf", "type": "report"}, {"format": "pdf", "type": "report"}, True),
    ({"x-match": "all", "format": "pdf", "type": "report"}, {"format": "pdf"}, False),
    ({"x-match": "any", "format": "pdf", "type": "report"}, {"format": "pdf"}, True),
    ({"x-match": "any", "format": "pdf"}, {"format": "zip"}, False),
    ({"format": "pdf"}, {"format": "pdf", "extra": 1}, True),  # x-match defaults to all
    ({"x-match": "all", "flag": None}, {"flag": "any value"}, True),  # no value: presence only
    ({"x-match": "all-with-x", "x-k": "v"}, {"x-k": "v"}, True),
    ({"x-match": "all", "x-k": "v"}, {}, True),  # x- keys ignored without -with-x
    ({"x-match": "any-with-x", "x-k": "v"}, {"x-k": "w"}, False),
])
def test_headers_exchange_matches_binding_arguments(conn, arguments, headers, routed):
    conn.declare_exchange("h", "headers")
    conn.declare_queue("q")
    conn.bind_queue("q", "h", "", arguments)
    assert conn.publish("h", "ignored", b"m", Properties(headers=headers)) == int(routed)


def test_amq_match_is_a_headers_exchange(conn):
    conn.declare_queue("q")
    conn.bind_queue("q", "amq.match", "", {"x-match": "any", "a": 1})
    assert conn.publish("amq.match", "", b"m", Properties(headers={"a": 1})) == 1


def test_invalid_x_match_is_precondition_failed_and_binds_nothing(conn):
    conn.declare_exchange("h", "headers")
    conn.declare_queue("q")
    with pytest.raises(PreconditionFailed, match="x-match"):
        conn.bind_queue("q", "h", "", {"x-match": "bogus"})
    assert conn.publish("h", "", b"m", Properties(headers={})) == 0


def test_bind_is_idempotent_and_unbind_removes_it(conn):
    conn.declare_exchange("d", "direct")
    conn.declare_queue("q")
    conn.bind_queue("q", "d", "k")
    conn.bind_queue("q", "d", "k")
    assert conn.publish("d", "k", b"1") == 1
    conn.unbind_queue("q", "d", "k")
    conn.unbind_queue("q", "d", "k")
    assert conn.publish("d", "k", b"2") == 0
    assert bodies(conn, "q") == [b"1"]


def test_bindings_with_other_arguments_are_distinct(conn):
    conn.declare_exchange("h", "headers")
    conn.declare_queue("q")
    conn.bind_queue("q", "h", "", {"a": 1})
    conn.bind_queue("q", "h", "", {"b": 2})
    conn.unbind_queue("q", "h", "", {"a": 1})
    assert conn.publish("h", "", b"m", Properties(headers={"a": 1})) == 0
    assert conn.publish("h", "", b"m", Properties(headers={"b": 2})) == 1


def test_binding_to_the_default_exchange_is_refused(conn):
    conn.declare_queue("q")
    with pytest.raises(AccessRefused) as info:
        conn.bind_queue("q", "", "q")
    assert info.value.reply_code == 403
    with pytest.raises(AccessRefused):
        conn.unbind_queue("q", "", "q")


def test_binding_a_missing_queue_or_exchange_is_not_found(conn):
    conn.declare_exchange("d", "direct")
    conn.declare_queue("q")
    with pytest.raises(QueueNotFound):
        conn.bind_queue("missing", "d")
    with pytest.raises(ExchangeNotFound):
        conn.bind_queue("q", "missing")


def test_unbinding_what_does_not_exist_is_not_an_error(conn):
    conn.declare_exchange("d", "direct")
    conn.unbind_queue("missing", "d")
    conn.unbind_queue("missing", "missing-too")


def test_publish_to_a_missing_exchange_is_not_found(conn, db_path):
    with pytest.raises(ExchangeNotFound) as info:
        conn.publish("nope", "k", b"x")
    assert info.value.reply_code == 404 and db_path in str(info.value)


def test_unroutable_message_is_dropped(conn, sql):
    assert conn.publish("", "no-such-queue", b"x") == 0
    conn.declare_exchange("d", "direct")
    assert conn.publish("d", "unbound", b"x") == 0
    assert sql.value("SELECT count(*) FROM litemq_messages") == 0


def test_each_queue_gets_an_independent_copy(conn):
    conn.declare_exchange("f", "fanout")
    for queue in ("a", "b"):
        conn.declare_queue(queue)
        conn.bind_queue(queue, "f")
    conn.publish("f", "", b"copy")
    conn.get("a", auto_ack=True)
    assert conn.get("b", auto_ack=True).body == b"copy"


def test_messages_keep_publish_order(conn):
    conn.declare_queue("q")
    for i in range(50):
        conn.publish("", "q", str(i))
    assert bodies(conn, "q") == [str(i).encode() for i in range(50)]


def test_str_body_is_encoded_as_utf8(conn):
    conn.declare_queue("q")
    conn.publish("", "q", "héllo")
    assert conn.get("q", auto_ack=True).body == "héllo".encode()


def test_delivery_reports_exchange_and_routing_key(conn):
    conn.declare_exchange("t", "topic")
    conn.declare_queue("q")
    conn.bind_queue("q", "t", "a.#")
    conn.publish("t", "a.b", b"m")
    delivery = conn.get("q", auto_ack=True)
    assert (delivery.exchange, delivery.routing_key, delivery.queue) == ("t", "a.b", "q")


def test_anyone_may_publish_to_an_exclusive_queue(conn, other):
    reply_queue = conn.declare_queue("", exclusive=True).queue
    assert other.publish("", reply_queue, b"reply") == 1
    assert conn.get(reply_queue, auto_ack=True).body == b"reply"


def test_bodies_are_readable_with_plain_sql(conn, sql):
    conn.declare_queue("hello")
    conn.publish("", "hello", b"Hello World!")
    assert sql("SELECT body FROM litemq_messages WHERE queue = 'hello'") == [(b"Hello World!",)]


def test_a_fanout_through_plain_and_limited_queues_keeps_each_queues_rules_and_counts(conn, sql):
    conn.declare_exchange("mixed", "fanout")
    conn.declare_queue("plain")
    conn.declare_queue("one-only", arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    conn.declare_queue("newest", arguments={"x-max-length": 1})
    for queue in ("plain", "one-only", "newest"):
        conn.bind_queue(queue, "mixed")
    assert conn.publish("mixed", "", b"1") == 3
    with pytest.raises(litemq.PublishRejected) as refused:
        conn.publish("mixed", "", b"2")
    assert refused.value.rejected == ["one-only"] and sorted(refused.value.stored) == ["newest", "plain"]
    assert bodies(conn, "plain") == [b"1", b"2"]
    assert bodies(conn, "one-only") == [b"1"]
    assert bodies(conn, "newest") == [b"2"]
    kept = sql.value(f"SELECT count(*) FROM {ready_counters(sql.url)} AS c WHERE ready_count != 0 OR ready_bytes != 0")
    assert kept == 0  # every counter came back to zero with the queues emptied


def ready_counts(sql):
    """Each queue's ready counter beside its ready rows, to compare."""
    counters = dict(sql(f"SELECT name, ready_count FROM {ready_counters(sql.url)} AS c"))
    rows = dict(sql("SELECT queue, count(*) FROM litemq_messages WHERE lease_token IS NULL AND visible_at IS NULL "
                    "GROUP BY queue"))
    return counters, {queue: rows.get(queue, 0) for queue in counters}


def test_a_fanout_to_more_queues_than_one_statement_takes_gives_each_queue_one_copy_and_count(conn, sql):
    conn.declare_exchange("wide", "fanout")
    queues = [f"q{i:02}" for i in range(37)]  # copies are stored 16 queues at a time
    for queue in queues:
        conn.declare_queue(queue)
        conn.bind_queue(queue, "wide")
    large = b"L" * 5000  # kept in litemq_bodies, one per copy
    assert [conn.publish("wide", "", body) for body in (b"1", large, b"3")] == [37, 37, 37]
    for queue in queues:
        assert conn.declare_queue(queue, passive=True).message_count == 3
        assert bodies(conn, queue) == [b"1", large, b"3"]
    assert sql.value("SELECT count(*) FROM litemq_bodies") == 0  # all acked


def test_a_message_dead_lettered_into_a_queue_of_the_same_fanout_meets_that_queues_limit(conn, sql):
    # "head" drops its oldest message to "dlx", which routes it to "capped": a queue the fanout reaches too.
    conn.declare_exchange("dlx", "fanout")
    conn.declare_exchange("fan", "fanout")
    conn.declare_queue("head", arguments={"x-max-length": 1, "x-dead-letter-exchange": "dlx"})
    conn.declare_queue("capped", arguments={"x-max-length": 2, "x-overflow": "reject-publish"})
    conn.declare_queue("plain")
    conn.bind_queue("capped", "dlx")
    for queue in ("head", "plain", "capped"):
        conn.bind_queue(queue, "fan")
    assert conn.publish("fan", "", b"1") == 3
    with pytest.raises(litemq.PublishRejected) as refused:
        conn.publish("fan", "", b"2")  # "1" leaves "head" for "capped" first, which then has no room for "2"
    assert refused.value.rejected == ["capped"]
    assert bodies(conn, "capped") == [b"1", b"1"]
    assert bodies(conn, "head") == [b"2"] and bodies(conn, "plain") == [b"1", b"2"]
    counters, rows = ready_counts(sql)
    assert counters == rows
