"""Routing as RabbitMQ does it: topic edge cases (``#``, ``*``, empty words, the empty key) and the headers
exchange (all, any, the -with-x variants, presence, value types), exchange-to-exchange bindings."""

from __future__ import annotations

from decimal import Decimal

from .scenario_tools import bodies, conformance, outcome


def _topic_table(pika, connect, names, patterns, keys):
    """Bind one queue per pattern, publish every key, and report which keys each pattern's queue received."""
    connection = connect()
    channel = connection.channel()
    channel.confirm_delivery()
    exchange = names.x("topic")
    channel.exchange_declare(exchange, "topic")
    queues = {}
    for n, pattern in enumerate(patterns):
        queues[pattern] = names.q(f"p{n}")
        channel.queue_declare(queues[pattern])
        channel.queue_bind(queues[pattern], exchange, routing_key=pattern)
    for key in keys:
        channel.basic_publish(exchange, key, f"<{key}>".encode())
    return {pattern: bodies(channel, queue) for pattern, queue in queues.items()}


@conformance
def test_topic_hash_matches_zero_or_more_words(pika, connect, names):
    return _topic_table(pika, connect, names, ["#", "a.#", "#.b", "a.#.b", "#.#", "#.a.#"],
                        ["", "a", "b", "a.b", "a.x.b", "b.a", "a.b.c", "x.a.y"])


@conformance
def test_topic_star_matches_exactly_one_word_even_an_empty_one(pika, connect, names):
    return _topic_table(pika, connect, names, ["*", "*.*", "a.*", "*.b", "a.*.b", "*.#", "#.*"],
                        ["", "a", "a.b", "a..b", "a.", ".", ".b", "a.b.c"])


@conformance
def test_topic_empty_words_and_the_empty_key(pika, connect, names):
    return _topic_table(pika, connect, names, ["", "a..b", "a.", ".", "..", "a"],
                        ["", "a", "a..b", "a.", ".", "..", "a.b", ".a"])


@conformance
def test_topic_a_hash_matches_a_but_a_does_not_match_a_dot_anything(pika, connect, names):
    return _topic_table(pika, connect, names, ["a.#", "a", "a.*", "a.*.#", "a*", "a#", "#a", "*a.b"],
                        ["a", "a.b", "a.b.c", "ab", "a*", "a#", "#a", "*a.b", "xa.b"])


@conformance
def test_topic_queue_bound_twice_gets_one_copy_and_unbind_stops_routing(pika, connect, names):
    connection = connect()
    channel = connection.channel()
    channel.confirm_delivery()
    exchange, queue = names.x("topic"), names.q("both")
    channel.exchange_declare(exchange, "topic")
    channel.queue_declare(queue)
    channel.queue_bind(queue, exchange, "stock.#")
    channel.queue_bind(queue, exchange, "*.usd")
    channel.queue_bind(queue, exchange, "stock.#")  # idempotent
    channel.basic_publish(exchange, "stock.usd", b"both match")
    channel.basic_publish(exchange, "stock.eur", b"one matches")
    before = bodies(channel, queue)
    channel.queue_unbind(queue, exchange, "stock.#")
    channel.basic_publish(exchange, "stock.usd", b"still usd")
    channel.basic_publish(exchange, "stock.eur", b"no longer")
    unbind_missing = outcome(lambda: channel.queue_unbind(queue, exchange, "never.bound"))
    return {"before_unbind": before, "after_unbind": bodies(channel, queue), "unbind_missing": unbind_missing}


def _headers_table(pika, connect, names, bindings, messages):
    """One queue per binding (its arguments), every message published once; which messages each queue got."""
    connection = connect()
    channel = connection.channel()
    channel.confirm_delivery()
    exchange = names.x("headers")
    channel.exchange_declare(exchange, "headers")
    queues = []
    for n, arguments in enumerate(bindings):
        queue = names.q(f"b{n}")
        channel.queue_declare(queue)
        channel.queue_bind(queue, exchange, routing_key="ignored", arguments=arguments)
        queues.append(queue)
    for n, headers in enumerate(messages):
        channel.basic_publish(exchange, f"key{n}", f"m{n}".encode(), properties=pika.BasicProperties(headers=headers))
    return {"messages": [repr(h) for h in messages],
            "received": {repr(arguments): bodies(channel, queue) for arguments, queue in zip(bindings, queues)}}


HEADER_MESSAGES = [
    {"format": "pdf", "type": "report"},
    {"format": "pdf"},
    {"format": "pdf", "type": "report", "extra": "x"},
    {"format": "zip", "type": "report"},
    {},
    None,
    {"type": "report"},
]


@conformance
def test_headers_all_and_any(pika, connect, names):
    return _headers_table(pika, connect, names, [
        {"x-match": "all", "format": "pdf", "type": "report"},
        {"x-match": "any", "format": "pdf", "type": "report"},
        {"format": "pdf", "type": "report"},  # x-match defaults to all
        {"x-match": "all"},  # nothing to match: everything matches
        {"x-match": "any"},  # nothing to match: nothing matches
    ], HEADER_MESSAGES)


@conformance
def test_headers_x_prefixed_fields_count_only_with_x(pika, connect, names):
    return _headers_table(pika, connect, names, [
        {"x-match": "all", "x-tenant": "t1", "kind": "a"},
        {"x-match": "all-with-x", "x-tenant": "t1", "kind": "a"},
        {"x-match": "any", "x-tenant": "t1", "kind": "nope"},
        {"x-match": "any-with-x", "x-tenant": "t1", "kind": "nope"},
    ], [{"kind": "a"}, {"kind": "a", "x-tenant": "t1"}, {"x-tenant": "t1"}, {"kind": "a", "x-tenant": "t2"}])


@conformance
def test_headers_void_binding_value_matches_on_presence(pika, connect, names):
    return _headers_table(pika, connect, names, [
        {"x-match": "all", "flag": None},
        {"x-match": "any", "flag": None, "other": "v"},
    ], [{"flag": "anything"}, {"flag": None}, {"flag": 0}, {"other": "v"}, {"flags": "x"}, {}])


@conformance
def test_headers_values_compare_by_type_and_value(pika, connect, names):
    return _headers_table(pika, connect, names, [
        {"n": 1},
        {"s": "1"},
        {"b": True},
        {"d": Decimal("1.5")},
        {"big": 2 ** 40},
    ], [{"n": 1}, {"n": Decimal("1")}, {"n": "1"}, {"n": True}, {"n": 2}, {"n": 2 ** 40 + 1 - 2 ** 40},
        {"s": "1"}, {"s": 1}, {"b": True}, {"b": 1}, {"d": Decimal("1.5")}, {"d": "1.5"}, {"big": 2 ** 40},
        {"big": 2 ** 40 + 1}])


@conformance
def test_headers_binding_with_an_invalid_x_match_is_406(pika, connect, names):
    connection = connect()
    channel = connection.channel()
    exchange, queue = names.x("headers"), names.q("q")
    channel.exchange_declare(exchange, "headers")
    channel.queue_declare(queue)
    bad = outcome(lambda: channel.queue_bind(queue, exchange, arguments={"x-match": "some", "a": "1"}))
    return {"bind": bad, "channel_open": channel.is_open, "connection_open": connection.is_open}


@conformance
def test_exchange_to_exchange_bindings_route_through(pika, connect, names):
    connection = connect()
    channel = connection.channel()
    channel.confirm_delivery()
    front, back, queue, direct_queue = names.x("front"), names.x("back"), names.q("q"), names.q("direct")
    channel.exchange_declare(front, "topic")
    channel.exchange_declare(back, "fanout")
    channel.exchange_bind(destination=back, source=front, routing_key="orders.*")
    channel.queue_declare(queue)
    channel.queue_declare(direct_queue)
    channel.queue_bind(queue, back)
    channel.queue_bind(direct_queue, front, "orders.#")  # reached both ways: one copy per queue
    channel.basic_publish(front, "orders.new", b"via both")
    channel.basic_publish(front, "orders.new.eu", b"direct only")
    channel.basic_publish(front, "refunds.new", b"nowhere")
    routed = {"q": bodies(channel, queue), "direct": bodies(channel, direct_queue)}
    channel.exchange_unbind(destination=back, source=front, routing_key="orders.*")
    channel.basic_publish(front, "orders.new", b"after unbind")
    return {"routed": routed, "after_unbind": {"q": bodies(channel, queue), "direct": bodies(channel, direct_queue)}}
