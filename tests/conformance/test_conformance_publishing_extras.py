"""Publishing and queue extras: priority queues (x-max-priority), alternate exchanges, mandatory returns under
publisher confirms, NackError from a queue that refuses a message, single active consumer, and quorum queues
(x-queue-type, x-delivery-limit, the x-delivery-count header, dead-lettering with reason delivery_limit).

Where litemq follows the current RabbitMQ documentation rather than the 3.10 broker these were recorded against,
``litemq_differs`` names the observation and the documented value."""

from __future__ import annotations

import time

from .scenario_tools import QUIET, WAIT, conformance, eventually, linger, outcome, pump, queue_state, reply_gist

QUORUM = {"x-queue-type": "quorum"}


# --- helpers


def _attempt(call, mentions=()):
    """``(outcome, gist)`` of a call: the gist of the reply text of the broker's close (``reply_gist``: its reply
    name and whether it mentions each of ``mentions``), or None."""
    caught = []

    def run():
        try:
            call()
        except Exception as exc:  # noqa: BLE001 - the observation is which error it was
            caught.append(exc)
            raise

    result = outcome(run)
    return result, reply_gist(getattr(caught[0], "reply_text", None) if caught else None, *mentions)


def _each_refusal(connection, attempts):
    """Each attempt on a fresh channel: ``{name: outcome, name + "_text": gist of the reply text}``. An attempt is
    ``action(channel)``, or ``(action, *mentions)``: the names its reply text should mention."""
    observed = {}
    for name, attempt in attempts.items():
        action, *mentions = attempt if isinstance(attempt, tuple) else (attempt,)
        channel = connection.channel()
        observed[name], observed[name + "_text"] = _attempt(lambda: action(channel), mentions)
    return observed


def _confirming(connection):
    channel = connection.channel()
    channel.confirm_delivery()
    return channel


def _publish(pika, channel, queue, items):
    """Publish ``(body, priority)`` pairs to the default exchange (priority None: no priority property)."""
    for body, priority in items:
        channel.basic_publish("", queue, body.encode(), properties=pika.BasicProperties(priority=priority))


def _take_all(channel, queue):
    """Every ready message by basic_get with auto-ack: ``[body, priority, redelivered]``."""
    taken = []
    while True:
        method, properties, body = channel.basic_get(queue, auto_ack=True)
        if method is None:
            return taken
        taken.append([body.decode(), properties.priority, method.redelivered])


def _routed(channel, queue):
    """Every ready message by basic_get with auto-ack: ``[body, exchange, routing_key]``."""
    taken = []
    while True:
        method, _, body = channel.basic_get(queue, auto_ack=True)
        if method is None:
            return taken
        taken.append([body.decode(), method.exchange, method.routing_key])


def _get(channel, queue, timeout=WAIT):
    """basic_get until a message comes (a quorum queue takes a moment to make a returned message ready again),
    or ``timeout`` passes: ``(method, properties, body)`` or ``(None, None, None)``."""
    deadline = time.monotonic() + timeout
    while True:
        got = channel.basic_get(queue)
        if got[0] is not None or time.monotonic() > deadline:
            return got
        time.sleep(0.01)


def _delivery_count(properties):
    """The x-delivery-count header, or "absent"."""
    return (properties.headers or {}).get("x-delivery-count", "absent")


def _pump_all(connections, until, timeout=WAIT):
    deadline = time.monotonic() + timeout
    while not until() and time.monotonic() < deadline:
        for connection in connections:
            if connection.is_open:
                connection.process_data_events(time_limit=0.01)
    return until()


def _linger_all(connections, seconds=QUIET):
    _pump_all(connections, lambda: False, timeout=seconds)


# --- priority queues


_MIXED_PRIORITIES = [("none-1", None), ("p3-a", 3), ("p9", 9), ("p0", 0), ("p5", 5), ("p3-b", 3), ("none-2", None),
                     ("p255", 255), ("p1", 1)]


@conformance
def test_priority_queue_delivers_highest_priority_first_and_fifo_within_a_priority(pika, connect, names):
    """Max 5: 9 and 255 count as 5, a missing priority as 0; the property itself is delivered unchanged."""
    connection = connect()
    channel = _confirming(connection)
    queue, plain = names.q("prio"), names.q("plain")
    channel.queue_declare(queue, arguments={"x-max-priority": 5})
    channel.queue_declare(plain)
    _publish(pika, channel, queue, _MIXED_PRIORITIES)
    by_get = []
    while True:
        method, properties, body = channel.basic_get(queue, auto_ack=True)
        if method is None:
            break
        by_get.append([body.decode(), properties.priority, method.message_count])

    _publish(pika, channel, queue, _MIXED_PRIORITIES)
    consumer = connection.channel()
    consumer.basic_qos(prefetch_count=1)
    consumed = []

    def on_message(ch, method, properties, body):
        consumed.append([body.decode(), properties.priority])
        ch.basic_ack(method.delivery_tag)

    consumer.basic_consume(queue, on_message)
    pump(connection, lambda: len(consumed) == len(_MIXED_PRIORITIES))
    linger(connection)

    _publish(pika, channel, plain, _MIXED_PRIORITIES)
    return {"basic_get": by_get, "consumer_prefetch_1": consumed,
            "queue_without_max_priority": [row[0] for row in _take_all(channel, plain)]}


@conformance
def test_a_requeued_message_in_a_priority_queue_returns_to_its_place_by_priority_then_age(pika, connect, names):
    connection = connect()
    channel = _confirming(connection)
    queue = names.q("prio")
    channel.queue_declare(queue, arguments={"x-max-priority": 3})
    _publish(pika, channel, queue, [("a1", 1), ("b2", 2), ("c1", 1), ("d2", 2), ("e3", 3)])
    taken = {}
    for _ in range(3):
        method, _, body = channel.basic_get(queue)
        taken[body.decode()] = method.delivery_tag
    _publish(pika, channel, queue, [("f2", 2), ("g", None), ("h3", 3)])
    channel.basic_nack(taken["d2"], requeue=True)
    channel.basic_reject(taken["b2"], requeue=True)
    channel.basic_ack(taken["e3"])
    return {"taken": list(taken), "then": _take_all(channel, queue)}


@conformance
def test_x_max_priority_must_be_an_integer_from_0_to_255(pika, connect, names):
    connection = connect()
    observed = _each_refusal(connection, {
        f"max_{label}": (lambda ch, value=value, label=label: ch.queue_declare(
            names.q(f"max-{label}"), arguments={"x-max-priority": value}), "x-max-priority", names.q(f"max-{label}"))
        for label, value in [("0", 0), ("1", 1), ("255", 255), ("256", 256), ("minus_1", -1), ("text", "x"),
                             ("digits", "5"), ("true", True)]
    })
    # 0 is accepted and makes an ordinary queue: priorities do not reorder it
    channel = _confirming(connection)
    _publish(pika, channel, names.q("max-0"), [("low", None), ("high", 3), ("zero", 0)])
    observed["max_0_order"] = [row[0] for row in _take_all(channel, names.q("max-0"))]
    return observed


@conformance
def test_a_priority_queue_redeclared_with_another_maximum_is_406(pika, connect, names):
    connection = connect()
    queue = names.q("prio")
    connection.channel().queue_declare(queue, arguments={"x-max-priority": 5})
    observed = _each_refusal(connection, {
        "same": lambda ch: ch.queue_declare(queue, arguments={"x-max-priority": 5}),
        "other_maximum": (lambda ch: ch.queue_declare(queue, arguments={"x-max-priority": 6}), "x-max-priority",
                          queue),
        "without_maximum": (lambda ch: ch.queue_declare(queue), "x-max-priority", queue),
        "passive": lambda ch: ch.queue_declare(queue, passive=True),
    })
    plain = names.q("plain")
    connection.channel().queue_declare(plain)
    observed.update(_each_refusal(connection, {
        "plain_with_maximum": (lambda ch: ch.queue_declare(plain, arguments={"x-max-priority": 5}), "x-max-priority",
                               plain),
    }))
    return observed


# --- alternate exchanges


@conformance
def test_unroutable_messages_go_to_the_alternate_exchange_under_their_original_exchange_and_key(pika, connect,
                                                                                              names):
    connection = connect()
    channel = _confirming(connection)
    main, alternate = names.x("main"), names.x("ae")
    bound, caught = names.q("bound"), names.q("caught")
    channel.exchange_declare(alternate, "fanout")
    channel.exchange_declare(main, "direct", arguments={"alternate-exchange": alternate})
    channel.queue_declare(bound)
    channel.queue_declare(caught)
    channel.queue_bind(bound, main, "known")
    channel.queue_bind(caught, alternate)
    for key in ("known", "unknown", "other"):
        channel.basic_publish(main, key, key.encode())
    return {"bound": _routed(channel, bound), "alternate": _routed(channel, caught)}


@conformance
def test_alternate_exchanges_chain_until_some_exchange_routes_the_message(pika, connect, names):
    connection = connect()
    channel = _confirming(connection)
    main, first, second = names.x("main"), names.x("ae1"), names.x("ae2")
    channel.exchange_declare(second, "fanout")
    channel.exchange_declare(first, "direct", arguments={"alternate-exchange": second})
    channel.exchange_declare(main, "direct", arguments={"alternate-exchange": first})
    queues = {name: names.q(name) for name in ("main", "ae1", "ae2")}
    for queue in queues.values():
        channel.queue_declare(queue)
    channel.queue_bind(queues["main"], main, "m")
    channel.queue_bind(queues["ae1"], first, "a1")
    channel.queue_bind(queues["ae2"], second)
    published = {key: outcome(lambda key=key: channel.basic_publish(main, key, key.encode(), mandatory=True))
                 for key in ("m", "a1", "zz")}
    return {"published": published, **{name: _routed(channel, queue) for name, queue in queues.items()}}


@conformance
def test_an_alternate_exchange_cycle_ends_and_the_message_is_unroutable(pika, connect, names):
    connection = connect()
    channel = _confirming(connection)
    one, two = names.x("one"), names.x("two")
    channel.exchange_declare(one, "direct", arguments={"alternate-exchange": two})
    channel.exchange_declare(two, "direct", arguments={"alternate-exchange": one})
    queue = names.q("on-two")
    channel.queue_declare(queue)
    channel.queue_bind(queue, two, "for-two")
    returns = []
    channel.add_on_return_callback(lambda ch, method, properties, body: returns.append(
        [method.reply_code, method.reply_text, method.exchange, method.routing_key, body.decode()]))
    observed = {
        "mandatory": outcome(lambda: channel.basic_publish(one, "nowhere", b"cycled", mandatory=True)),
        "not_mandatory": outcome(lambda: channel.basic_publish(one, "nowhere", b"dropped")),
        "caught_by_the_second": outcome(lambda: channel.basic_publish(one, "for-two", b"via two", mandatory=True)),
    }
    pump(connection, lambda: len(returns) == 1)
    linger(connection)
    return {**observed, "returns": returns, "queue": _routed(channel, queue), "channel_open": channel.is_open}


@conformance
def test_a_missing_alternate_exchange_drops_the_message_without_an_error(pika, connect, names):
    connection = connect()
    channel = _confirming(connection)
    main = names.x("main")
    channel.exchange_declare(main, "direct", arguments={"alternate-exchange": names.x("missing")})
    returns = []
    channel.add_on_return_callback(lambda ch, method, properties, body: returns.append(
        [method.reply_code, method.exchange, method.routing_key, body.decode()]))
    observed = {
        "not_mandatory": outcome(lambda: channel.basic_publish(main, "k", b"dropped")),
        "mandatory": outcome(lambda: channel.basic_publish(main, "k", b"returned", mandatory=True)),
    }
    pump(connection, lambda: len(returns) == 1)
    linger(connection)
    return {**observed, "returns": returns, "channel_open": channel.is_open, "connection_open": connection.is_open}


@conformance
def test_a_message_taken_by_the_alternate_exchange_counts_as_routed_for_mandatory(pika, connect, names):
    connection = connect()
    main, alternate, empty_alternate = names.x("main"), names.x("ae"), names.x("empty-ae")
    caught = names.q("caught")
    setup = connection.channel()
    setup.exchange_declare(alternate, "fanout")
    setup.exchange_declare(empty_alternate, "fanout")
    setup.exchange_declare(main, "direct", arguments={"alternate-exchange": alternate})
    lonely = names.x("lonely")
    setup.exchange_declare(lonely, "direct", arguments={"alternate-exchange": empty_alternate})
    setup.queue_declare(caught)
    setup.queue_bind(caught, alternate)

    plain = connection.channel()
    returns = []
    plain.add_on_return_callback(lambda ch, method, properties, body: returns.append(
        [method.reply_code, method.reply_text, method.exchange, method.routing_key, body.decode()]))
    plain.basic_publish(main, "k", b"caught without confirms", mandatory=True)
    plain.basic_publish(lonely, "k", b"alternate routes nowhere", mandatory=True)
    pump(connection, lambda: len(returns) == 1)
    linger(connection)

    confirming = _confirming(connection)
    return {
        "returns_without_confirms": returns,
        "with_confirms": outcome(lambda: confirming.basic_publish(main, "k", b"caught with confirms",
                                                                  mandatory=True)),
        "with_confirms_alternate_routes_nowhere": outcome(
            lambda: confirming.basic_publish(lonely, "k", b"unroutable", mandatory=True)),
        "caught": _routed(confirming, caught),
    }


@conformance
def test_an_exchange_that_routes_only_to_another_exchange_does_not_use_its_alternate(pika, connect, names):
    """The alternate is used when the exchange itself finds no destination; an exchange-to-exchange binding is
    one, even when the destination exchange routes nowhere."""
    connection = connect()
    channel = _confirming(connection)
    source, destination, alternate = names.x("source"), names.x("destination"), names.x("ae")
    caught = names.q("caught")
    channel.exchange_declare(alternate, "fanout")
    channel.exchange_declare(destination, "direct")
    channel.exchange_declare(source, "direct", arguments={"alternate-exchange": alternate})
    channel.exchange_bind(destination, source, "to-destination")
    channel.queue_declare(caught)
    channel.queue_bind(caught, alternate)
    return {
        "bound_to_an_empty_exchange": outcome(
            lambda: channel.basic_publish(source, "to-destination", b"lost in destination", mandatory=True)),
        "bound_nowhere": outcome(lambda: channel.basic_publish(source, "elsewhere", b"to the alternate",
                                                               mandatory=True)),
        "caught": _routed(channel, caught),
    }


@conformance
def test_the_alternate_exchange_argument_is_a_string_and_is_checked_on_redeclare(pika, connect, names):
    connection = connect()
    main, alternate = names.x("main"), names.x("ae")
    connection.channel().exchange_declare(main, "direct", arguments={"alternate-exchange": alternate})
    return _each_refusal(connection, {
        "same": lambda ch: ch.exchange_declare(main, "direct", arguments={"alternate-exchange": alternate}),
        "other_alternate": (lambda ch: ch.exchange_declare(main, "direct",
                                                           arguments={"alternate-exchange": names.x("other")}),
                            "alternate-exchange", main),
        "without_alternate": (lambda ch: ch.exchange_declare(main, "direct"), "alternate-exchange", main),
        "passive": lambda ch: ch.exchange_declare(main, passive=True),
        "integer_alternate": (lambda ch: ch.exchange_declare(names.x("bad"), "direct",
                                                             arguments={"alternate-exchange": 5}),
                              "alternate-exchange", names.x("bad")),
    })


# --- mandatory returns and publisher confirms


@conformance
def test_with_confirms_an_unroutable_mandatory_message_raises_and_also_reaches_the_return_callback(pika, connect,
                                                                                                  names):
    connection = connect()
    channel = _confirming(connection)
    exchange = names.x("x")
    channel.exchange_declare(exchange, "direct")
    returns = []
    channel.add_on_return_callback(lambda ch, method, properties, body: returns.append(
        [method.reply_code, method.reply_text, method.exchange, method.routing_key, body.decode(),
         properties.message_id]))
    caught = {}

    def publish():
        try:
            channel.basic_publish(exchange, "nobody", b"returned", properties=pika.BasicProperties(message_id="m1"),
                                  mandatory=True)
        except pika.exceptions.UnroutableError as exc:
            message = exc.messages[0]
            caught["messages"] = [[m.method.reply_code, m.method.reply_text, m.method.exchange,
                                   m.method.routing_key, m.body, m.properties.message_id] for m in exc.messages]
            caught["str"] = str(exc)
            caught["types"] = [type(message).__name__, isinstance(exc, pika.exceptions.AMQPError)]
            raise

    observed = {"publish": outcome(publish)}
    pump(connection, lambda: len(returns) == 1)
    linger(connection)
    return {**observed, **caught, "returns": returns, "channel_open": channel.is_open}


@conformance
def test_a_queue_refusing_a_message_makes_the_confirmed_publish_raise_nack_error(pika, connect, names):
    """x-overflow reject-publish: the publish is nacked (NackError without messages) even when mandatory, and
    even though another queue of the same fanout took its copy; nothing is returned."""
    connection = connect()
    channel = _confirming(connection)
    exchange, full, roomy = names.x("fan"), names.q("full"), names.q("roomy")
    channel.exchange_declare(exchange, "fanout")
    channel.queue_declare(full, arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    channel.queue_declare(roomy)
    channel.queue_bind(full, exchange)
    channel.queue_bind(roomy, exchange)
    returns = []
    channel.add_on_return_callback(lambda ch, method, properties, body: returns.append(body.decode()))
    caught = {}

    def publish(body, **kwargs):
        def run():
            try:
                channel.basic_publish(exchange, "", body, **kwargs)
            except pika.exceptions.NackError as exc:
                caught[body.decode()] = [len(exc.messages), str(exc)]
                raise
        return run

    observed = {
        "first": outcome(publish(b"one")),
        "second": outcome(publish(b"two")),
        "second_mandatory": outcome(publish(b"three", mandatory=True)),
        "direct_to_the_full_queue": outcome(lambda: channel.basic_publish("", full, b"four", mandatory=True)),
    }
    linger(connection)
    return {**observed, "nack_errors": caught, "returns": returns, "channel_open": channel.is_open,
            "full": _routed(channel, full), "roomy": _routed(channel, roomy)}


# --- single active consumer


def _sac_queue(connection, names, count):
    queue = names.q("sac")
    channel = _confirming(connection)
    channel.queue_declare(queue, arguments={"x-single-active-consumer": True})
    for n in range(count):
        channel.basic_publish("", queue, f"m{n}".encode())
    return queue, channel


class _Holder:
    """A consumer that records ``[body, redelivered]`` and acks only when told to."""

    def __init__(self, ack=False):
        self.ack = ack
        self.received = []
        self.tags = []

    def __call__(self, channel, method, properties, body):
        self.received.append([body.decode(), method.redelivered])
        self.tags.append(method.delivery_tag)
        if self.ack:
            channel.basic_ack(method.delivery_tag)


@conformance
def test_single_active_consumer_gets_everything_until_cancelled_then_the_next_takes_over(pika, connect, names):
    first_connection, second_connection, watcher = connect(), connect(), connect()
    queue, publisher = _sac_queue(watcher, names, 0)
    first, second = first_connection.channel(), second_connection.channel()
    first.basic_qos(prefetch_count=1)
    second.basic_qos(prefetch_count=1)
    a, b = _Holder(), _Holder(ack=True)
    tag = first.basic_consume(queue, a)
    second.basic_consume(queue, b)
    both = [first_connection, second_connection]
    for n in range(4):
        publisher.basic_publish("", queue, f"m{n}".encode())
    _pump_all(both, lambda: len(a.received) == 1)
    _linger_all(both)
    held = {"first": a.received[:], "second": b.received[:], "state": queue_state(watcher, queue)}
    a.ack = True
    first.basic_ack(a.tags[0])
    _pump_all(both, lambda: len(a.received) == 4)
    _linger_all(both)
    all_acked = {"first": a.received[:], "second": b.received[:]}
    first.basic_cancel(tag)
    after_cancel_state = queue_state(watcher, queue)
    for n in range(4, 7):
        publisher.basic_publish("", queue, f"m{n}".encode())
    _pump_all(both, lambda: len(b.received) == 3)
    _linger_all(both)
    return {"while_first_holds_one": held, "after_acking": all_acked, "state_after_cancel": after_cancel_state,
            "after_cancel": {"first": a.received, "second": b.received},
            "end": eventually(lambda: queue_state(watcher, queue), [0, 1])}


@conformance
def test_single_active_consumer_hands_unacked_messages_to_the_next_when_its_channel_closes(pika, connect, names):
    first_connection, second_connection, watcher = connect(), connect(), connect()
    queue, _ = _sac_queue(watcher, names, 4)
    first, second = first_connection.channel(), second_connection.channel()
    first.basic_qos(prefetch_count=2)
    a, b = _Holder(), _Holder(ack=True)
    first.basic_consume(queue, a)
    second.basic_consume(queue, b)
    both = [first_connection, second_connection]
    _pump_all(both, lambda: len(a.received) == 2)
    _linger_all(both)
    first.basic_ack(a.tags[0])  # m0 done; m1 still held, m2 comes
    _pump_all(both, lambda: len(a.received) == 3)
    _linger_all(both)
    held = {"first": a.received[:], "second": b.received[:], "state": queue_state(watcher, queue)}
    first.close()
    _pump_all(both, lambda: len(b.received) == 3)
    _linger_all(both)
    return {"while_first_consumes": held, "second_after_close": b.received,
            "end": eventually(lambda: queue_state(watcher, queue), [0, 1])}


@conformance
def test_x_single_active_consumer_must_be_a_boolean_and_is_checked_on_redeclare(pika, connect, names):
    connection = connect()
    queue = names.q("sac")
    connection.channel().queue_declare(queue, arguments={"x-single-active-consumer": True})
    sac = "x-single-active-consumer"
    return _each_refusal(connection, {
        "text": (lambda ch: ch.queue_declare(names.q("text"), arguments={sac: "yes"}), sac, names.q("text")),
        "integer": (lambda ch: ch.queue_declare(names.q("integer"), arguments={sac: 1}), sac, names.q("integer")),
        "false": lambda ch: ch.queue_declare(names.q("false"), arguments={sac: False}),
        "same": lambda ch: ch.queue_declare(queue, arguments={sac: True}),
        "without": (lambda ch: ch.queue_declare(queue), sac, queue),
        "false_on_redeclare": (lambda ch: ch.queue_declare(queue, arguments={sac: False}), sac, queue),
        "exclusive_consumer_beside_one": (lambda ch: (
            connection.channel().basic_consume(queue, lambda *args: None),
            ch.basic_consume(queue, lambda *args: None, exclusive=True)), "exclusive", queue),
    })


# --- quorum queues


def _dead_letter_target(channel, names):
    dlx, dead = names.x("dlx"), names.q("dead")
    channel.exchange_declare(dlx, "fanout")
    channel.queue_declare(dead)
    channel.queue_bind(dead, dlx)
    return dlx, dead


def _timeless(headers):
    """Headers with each x-death entry's ``time`` (a datetime) replaced by its type name."""
    plain = dict(headers or {})
    if "x-death" in plain:
        plain["x-death"] = [{k: (type(v).__name__ if k == "time" else v) for k, v in entry.items()}
                            for entry in plain["x-death"]]
    return plain


@conformance
def test_quorum_queue_dead_letters_a_message_rejected_past_its_delivery_limit(pika, connect, names):
    """Limit 2: delivered 3 times (x-delivery-count absent, then 1, 2 for a consumer), then dead-lettered with
    reason delivery_limit; the dead-lettered copy carries no x-delivery-count. (Whether x-last-death-* headers
    come too is test_conformance_ttl_and_dead_letters' business: RabbitMQ 3.10 adds none.)"""
    connection = connect()
    channel = _confirming(connection)
    dlx, dead = _dead_letter_target(channel, names)
    queue = names.q("quorum")
    channel.queue_declare(queue, durable=True, arguments={**QUORUM, "x-delivery-limit": 2,
                                                          "x-dead-letter-exchange": dlx})
    channel.basic_publish("", queue, b"poison", properties=pika.BasicProperties(headers={"app": "kept"},
                                                                               message_id="p1"))
    consumer = connection.channel()
    consumer.basic_qos(prefetch_count=1)
    deliveries = []

    def on_message(ch, method, properties, body):
        deliveries.append([body.decode(), method.redelivered, _delivery_count(properties),
                           (properties.headers or {}).get("app")])
        ch.basic_reject(method.delivery_tag, requeue=True)

    consumer.basic_consume(queue, on_message)
    pump(connection, lambda: len(deliveries) == 3)
    linger(connection)
    method, properties, body = _get(channel, dead)
    channel.basic_ack(method.delivery_tag)
    headers = _timeless(properties.headers)
    return {
        "deliveries": [row[:2] + row[3:] for row in deliveries],
        "x_delivery_count": [row[2] for row in deliveries],
        "dead_lettered": [body.decode(), method.exchange, method.routing_key, method.redelivered,
                          properties.message_id],
        "x_death": headers.get("x-death"),
        "x_first_death": {k: v for k, v in headers.items() if k.startswith("x-first-death")},
        "header_names": sorted(name for name in headers if not name.startswith("x-last-death")),
        "source_after": eventually(lambda: queue_state(connection, queue), [0, 1]),
    }


@conformance(litemq_differs={"x_delivery_count": ["absent", 1, 2]},
             because="RabbitMQ 3.10 puts x-delivery-count 0 on a quorum queue message's first basic_get; the "
                     "current documentation (and litemq) includes the header only on redeliveries")
def test_quorum_queue_counts_every_return_and_drops_past_the_limit_without_a_dead_letter_exchange(pika, connect,
                                                                                                 names):
    """Limit 2, read by basic_get: returned by reject, then nack, then by closing the channel; the third return
    exceeds the limit and the message is gone."""
    connection = connect()
    queue = names.q("quorum")
    _confirming(connection).queue_declare(queue, durable=True, arguments={**QUORUM, "x-delivery-limit": 2})
    _confirming(connection).basic_publish("", queue, b"poison")
    deliveries = []
    returns = [lambda ch, tag: ch.basic_reject(tag, requeue=True),
               lambda ch, tag: ch.basic_nack(tag, requeue=True),
               lambda ch, tag: ch.close()]
    for give_back in returns:
        channel = connection.channel()
        method, properties, body = _get(channel, queue)
        if method is None:
            deliveries.append(None)
            continue
        deliveries.append([body.decode(), method.redelivered, _delivery_count(properties)])
        give_back(channel, method.delivery_tag)
    after = _get(connection.channel(), queue, timeout=QUIET)
    return {"deliveries": [row[:2] if row else row for row in deliveries],
            "x_delivery_count": [row[2] if row else row for row in deliveries],
            "after_third_return": after[2], "state": eventually(lambda: queue_state(connection, queue), [0, 0])}


@conformance(litemq_differs={"minus_1": ["ok", [["m", False], ["m", True], ["m", True]]],
                             "text": ["ChannelClosedByBroker 406", []]},
             because="RabbitMQ 3.10 treats x-delivery-limit -1 like 0 (dropped at the first return); the current "
                     "documentation (and litemq) reads -1 as no limit. RabbitMQ 3.10 ignores a limit that is not a "
                     "number; litemq refuses it with 406 PRECONDITION_FAILED, so that bad input gets a clear error")
def test_quorum_queue_delivery_limit_zero_drops_at_the_first_return(pika, connect, names):
    """Per limit: ``[declare outcome, [body, redelivered] of each delivery]``, nacking each with requeue."""
    connection = connect()
    observed = {}
    for label, limit in [("zero", 0), ("minus_1", -1), ("text", "x")]:
        queue = names.q(f"limit-{label}")
        channel = _confirming(connection)
        declared = outcome(lambda: channel.queue_declare(queue, durable=True,
                                                         arguments={**QUORUM, "x-delivery-limit": limit}))
        seen = []
        if declared == "ok":
            channel.basic_publish("", queue, b"m")
            for _ in range(3):
                method, _, body = _get(channel, queue, timeout=QUIET if seen else WAIT)
                if method is None:
                    break
                seen.append([body.decode(), method.redelivered])
                channel.basic_nack(method.delivery_tag, requeue=True)
        observed[label] = [declared, seen]
    return observed


@conformance(litemq_differs={"without_limit": [["a", True], ["b", False], ["c", False]]},
             because="litemq returns a message to its original place in every queue type; RabbitMQ 3.10 puts it at "
                     "the back of a quorum queue that has no delivery limit")
def test_quorum_queue_returns_a_rejected_message_to_its_place_at_the_head(pika, connect, names):
    connection = connect()
    observed = {}
    for label, extra in [("with_limit", {"x-delivery-limit": 5}), ("without_limit", {})]:
        queue = names.q(label)
        channel = _confirming(connection)
        channel.queue_declare(queue, durable=True, arguments={**QUORUM, **extra})
        for body in ("a", "b", "c"):
            channel.basic_publish("", queue, body.encode())
        method, _, _ = _get(channel, queue)
        channel.basic_reject(method.delivery_tag, requeue=True)
        order = []
        for _ in range(3):
            method, _, body = _get(channel, queue)
            order.append([body.decode() if body else None, method.redelivered if method else None])
            if method:
                channel.basic_ack(method.delivery_tag)
        observed[label] = order
    return observed


@conformance(litemq_differs={"classic_by_default": "ok", "classic_by_default_text": None,
                             "classic_by_name": "ok", "classic_by_name_text": None},
             because="the issue asks litemq to apply x-delivery-limit to any queue (3.10 allows it on quorum queues "
                     "only)")
def test_x_delivery_limit_is_accepted_on_any_queue(pika, connect, names):
    connection = connect()
    return _each_refusal(connection, {
        "classic_by_default": (lambda ch: ch.queue_declare(names.q("default"), arguments={"x-delivery-limit": 2}),
                               "x-delivery-limit", names.q("default")),
        "classic_by_name": (lambda ch: ch.queue_declare(names.q("classic"), arguments={"x-queue-type": "classic",
                                                                                       "x-delivery-limit": 2}),
                            "x-delivery-limit", names.q("classic")),
        "quorum": lambda ch: ch.queue_declare(names.q("quorum"), durable=True,
                                              arguments={**QUORUM, "x-delivery-limit": 2}),
    })


@conformance
def test_queue_type_must_be_known_and_a_quorum_queue_durable_shared_and_named(pika, connect, names):
    connection = connect()
    observed = _each_refusal(connection, {
        "bogus": (lambda ch: ch.queue_declare(names.q("bogus"), durable=True, arguments={"x-queue-type": "bogus"}),
                  "x-queue-type", names.q("bogus")),
        "integer": (lambda ch: ch.queue_declare(names.q("integer"), durable=True, arguments={"x-queue-type": 5}),
                    "x-queue-type", names.q("integer")),
        "classic": lambda ch: ch.queue_declare(names.q("classic"), arguments={"x-queue-type": "classic"}),
        "quorum_not_durable": (lambda ch: ch.queue_declare(names.q("transient"), arguments=QUORUM),
                               "non-durable", names.q("transient")),
        "quorum_exclusive": (lambda ch: ch.queue_declare(names.q("exclusive"), durable=True, exclusive=True,
                                                         arguments=QUORUM), "exclusive", names.q("exclusive")),
        "quorum_auto_delete": (lambda ch: ch.queue_declare(names.q("auto-delete"), durable=True, auto_delete=True,
                                                           arguments=QUORUM), "auto-delete", names.q("auto-delete")),
        "quorum_server_named": (lambda ch: ch.queue_declare("", durable=True, arguments=QUORUM),
                                "server-named", "quorum"),
        "quorum_with_max_priority": (lambda ch: ch.queue_declare(names.q("prio"), durable=True,
                                                                 arguments={**QUORUM, "x-max-priority": 5}),
                                     "x-max-priority", names.q("prio")),
        "quorum_single_active_consumer": lambda ch: ch.queue_declare(
            names.q("sac"), durable=True, arguments={**QUORUM, "x-single-active-consumer": True}),
    })
    quorum, classic = names.q("quorum"), names.q("durable-classic")
    setup = connection.channel()
    setup.queue_declare(quorum, durable=True, arguments=QUORUM)
    setup.queue_declare(classic, durable=True)
    observed.update(_each_refusal(connection, {
        "quorum_again": lambda ch: ch.queue_declare(quorum, durable=True, arguments=QUORUM),
        "quorum_as_classic": (lambda ch: ch.queue_declare(quorum, durable=True,
                                                          arguments={"x-queue-type": "classic"}),
                              "x-queue-type", quorum),
        "quorum_without_type": (lambda ch: ch.queue_declare(quorum, durable=True), "x-queue-type", quorum),
        "quorum_passive": lambda ch: ch.queue_declare(quorum, passive=True),
        "classic_as_quorum": (lambda ch: ch.queue_declare(classic, durable=True, arguments=QUORUM),
                              "x-queue-type", classic),
    }))
    return observed
