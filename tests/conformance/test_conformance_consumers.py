"""Consumers and publishers: broker cancel notifications, basic_cancel, start/stop_consuming, the consume()
generator with an inactivity timeout, mandatory publishes returned (by callback, or as UnroutableError with
confirms), consumer tags, and message properties on the way through."""

from __future__ import annotations

from decimal import Decimal

from .scenario_tools import Inbox, conformance, linger, outcome, pump, queue_state, reply_gist


def _queue_with(connection, names, count, name="q"):
    queue = names.q(name)
    channel = connection.channel()
    channel.confirm_delivery()
    channel.queue_declare(queue)
    for n in range(count):
        channel.basic_publish("", queue, f"m{n}".encode())
    return queue, channel


@conformance
def test_deleting_a_queue_cancels_its_consumers_with_a_notification(pika, connect, names):
    connection, admin = connect(), connect()
    queue, _ = _queue_with(connection, names, 1)
    channel = connection.channel()
    cancels = []
    channel.add_on_cancel_callback(lambda frame: cancels.append(frame))
    inbox = Inbox()
    tag = channel.basic_consume(queue, inbox)
    pump(connection, lambda: len(inbox) == 1)
    deleted = admin.channel().queue_delete(queue)
    pump(connection, lambda: len(cancels) == 1)
    linger(connection)
    frame = cancels[0] if cancels else None
    return {"deleted_count": deleted.method.message_count, "cancels": len(cancels),
            "method": frame.method.NAME if frame else None,
            "tag_matches": frame.method.consumer_tag == tag if frame else None,
            "channel_open": channel.is_open, "consumer_tags": list(channel.consumer_tags),
            "connection_open": connection.is_open}


@conformance
def test_acking_a_delivery_whose_queue_was_deleted_is_harmless(pika, connect, names):
    connection, admin = connect(), connect()
    queue, _ = _queue_with(connection, names, 2)
    channel = connection.channel()
    first = channel.basic_get(queue)
    second = channel.basic_get(queue)
    admin.channel().queue_delete(queue)
    return {"ack": outcome(lambda: (channel.basic_ack(first[0].delivery_tag),
                                    channel.basic_qos(prefetch_count=1))),
            "nack": outcome(lambda: (channel.basic_nack(second[0].delivery_tag, requeue=True),
                                     channel.basic_qos(prefetch_count=1))),
            "channel_open": channel.is_open, "queue": queue_state(connection, queue)}


@conformance
def test_deleting_a_queue_ends_start_consuming(pika, connect, names):
    connection, admin = connect(), connect()
    queue, _ = _queue_with(connection, names, 0)
    channel = connection.channel()
    cancels = []
    channel.add_on_cancel_callback(lambda frame: cancels.append(frame.method.NAME))
    channel.basic_consume(queue, lambda *a: None)
    connection.call_later(0.05, lambda: admin.channel().queue_delete(queue))
    channel.start_consuming()  # returns once its only consumer is cancelled
    return {"cancels": cancels, "consumer_tags": list(channel.consumer_tags), "channel_open": channel.is_open}


@conformance
def test_basic_cancel_stops_deliveries_and_leaves_unacked_ones_to_settle(pika, connect, names):
    connection = connect()
    queue, publisher = _queue_with(connection, names, 2)
    channel = connection.channel()
    channel.basic_qos(prefetch_count=1)
    inbox = Inbox()
    tag = channel.basic_consume(queue, inbox, consumer_tag="my-consumer")
    pump(connection, lambda: len(inbox) == 1)
    returned = channel.basic_cancel(tag)
    publisher.basic_publish("", queue, b"after cancel")
    linger(connection)
    state = queue_state(connection, queue)
    channel.basic_ack(inbox.deliveries[0][1].delivery_tag)
    return {"tag": tag, "returned": list(returned), "received": inbox.bodies, "consumer_tags": channel.consumer_tags,
            "after_cancel": state, "after_ack": queue_state(connection, queue),
            "cancel_unknown": outcome(lambda: channel.basic_cancel("no-such-consumer")),
            "channel_open": channel.is_open}


@conformance
def test_stop_consuming_from_a_callback_ends_start_consuming(pika, connect, names):
    connection = connect()
    queue, publisher = _queue_with(connection, names, 5)
    channel = connection.channel()
    channel.basic_qos(prefetch_count=1)
    received = []

    def on_message(ch, method, properties, body):
        received.append(body.decode())
        if len(received) == 2:
            ch.stop_consuming()
        ch.basic_ack(method.delivery_tag)

    channel.basic_consume(queue, on_message)
    channel.start_consuming()
    return {"received": received, "left": queue_state(connection, queue),
            "then": [[m.redelivered, b.decode()] for m, _, b in
                     (publisher.basic_get(queue, auto_ack=True) for _ in range(3))]}


@conformance
def test_consume_generator_yields_messages_then_none_after_inactivity(pika, connect, names):
    connection = connect()
    queue, publisher = _queue_with(connection, names, 2)
    channel = connection.channel()
    seen = []
    for method, properties, body in channel.consume(queue, inactivity_timeout=0.2):
        if method is None:
            seen.append(None)
            break
        seen.append([body.decode(), method.redelivered, method.routing_key])
        channel.basic_ack(method.delivery_tag)
    during = queue_state(connection, queue)
    publisher.basic_publish("", queue, b"later")
    resumed = next(channel.consume(queue, inactivity_timeout=1.0))  # the same parameters resume it
    channel.basic_ack(resumed[0].delivery_tag)
    different = outcome(lambda: next(channel.consume(queue, auto_ack=True)))
    cancelled = channel.cancel()
    return {"seen": seen, "during": during, "resumed": resumed[2], "different_params": different,
            "cancel": cancelled, "after": queue_state(connection, queue), "second_cancel": channel.cancel()}


@conformance
def test_consume_generator_unacked_messages_return_when_the_channel_closes(pika, connect, names):
    connection = connect()
    queue, publisher = _queue_with(connection, names, 3)
    channel = connection.channel()
    channel.basic_qos(prefetch_count=1)
    generator = channel.consume(queue, inactivity_timeout=1.0)
    first = next(generator)
    channel.cancel()  # the yielded message stays unacked until the channel closes
    held = queue_state(connection, queue)
    channel.close()
    return {"first": [first[2], first[0].redelivered], "held": held,
            "then": [[m.redelivered, b.decode()] for m, _, b in
                     (publisher.basic_get(queue, auto_ack=True) for _ in range(3))]}


@conformance
def test_consume_generator_ends_when_the_broker_cancels(pika, connect, names):
    connection, admin = connect(), connect()
    queue, _ = _queue_with(connection, names, 1)
    channel = connection.channel()
    seen = []
    for n, (method, properties, body) in enumerate(channel.consume(queue, auto_ack=True, inactivity_timeout=0.05)):
        if method is not None:
            seen.append(body.decode())
            admin.channel().queue_delete(queue)
        if n > 100:
            seen.append("the generator did not end")
            break
    return {"seen": seen, "channel_open": channel.is_open, "cancel": channel.cancel(),
            "connection_open": connection.is_open}


@conformance
def test_mandatory_unroutable_messages_come_back_through_the_return_callback(pika, connect, names):
    connection = connect()
    channel = connection.channel()
    exchange, queue = names.x("x"), names.q("q")
    channel.exchange_declare(exchange, "direct")
    channel.queue_declare(queue)
    channel.queue_bind(queue, exchange, "bound")
    returns = []
    channel.add_on_return_callback(lambda ch, method, properties, body: returns.append(
        [method.reply_code, method.reply_text, method.exchange, method.routing_key, body.decode(),
         properties.correlation_id, ch is channel]))
    channel.basic_publish(exchange, "unbound", b"returned", properties=pika.BasicProperties(correlation_id="c1"),
                          mandatory=True)
    channel.basic_publish(exchange, "unbound", b"dropped silently")
    channel.basic_publish(exchange, "bound", b"routed", mandatory=True)
    channel.basic_publish("", names.q("no-such-queue"), b"returned too", mandatory=True)
    pump(connection, lambda: len(returns) == 2)
    linger(connection)
    return {"returns": returns, "queue": queue_state(connection, queue), "channel_open": channel.is_open}


@conformance
def test_mandatory_unroutable_message_with_confirms_raises_unroutable_error(pika, connect, names):
    connection = connect()
    channel = connection.channel()
    channel.confirm_delivery()
    exchange, queue = names.x("x"), names.q("q")
    channel.exchange_declare(exchange, "topic")
    channel.queue_declare(queue)
    channel.queue_bind(queue, exchange, "a.*")
    caught = {}

    def publish_unroutable():
        try:
            channel.basic_publish(exchange, "b.c", b"nobody", properties=pika.BasicProperties(message_id="m-1"),
                                  mandatory=True)
        except pika.exceptions.UnroutableError as exc:
            message = exc.messages[0]
            caught["returned"] = [len(exc.messages), message.method.reply_code, message.method.exchange,
                                  message.method.routing_key, message.body, message.properties.message_id]
            raise

    return {
        "unroutable": outcome(publish_unroutable),
        "returned": caught.get("returned"),
        "routable": outcome(lambda: channel.basic_publish(exchange, "a.b", b"somebody", mandatory=True)),
        "not_mandatory": outcome(lambda: channel.basic_publish(exchange, "b.c", b"dropped")),
        "channel_open": channel.is_open,
        "queue": queue_state(connection, queue),
    }


@conformance
def test_consumer_tags_and_deliver_fields(pika, connect, names):
    connection = connect()
    queue, _ = _queue_with(connection, names, 0)
    exchange = names.x("x")
    setup = connection.channel()
    setup.confirm_delivery()
    setup.exchange_declare(exchange, "fanout")
    setup.queue_bind(queue, exchange)
    channel = connection.channel()
    delivered = []
    generated = channel.basic_consume(queue, lambda ch, m, p, b: delivered.append(
        [m.consumer_tag, m.delivery_tag, m.redelivered, m.exchange, m.routing_key, b.decode()]))
    setup.basic_publish(exchange, "any.key", b"one")
    setup.basic_publish("", queue, b"two")
    pump(connection, lambda: len(delivered) == 2)
    return {"generated_tag": generated.startswith("ctag"), "tag_used": [d[0] == generated for d in delivered],
            "deliveries": [d[1:] for d in delivered], "consumer_tags": channel.consumer_tags == [generated]}


@conformance
def test_message_properties_survive_the_trip(pika, connect, names):
    connection = connect()
    queue, channel = _queue_with(connection, names, 0)
    properties = pika.BasicProperties(
        content_type="application/json", content_encoding="utf-8", delivery_mode=2, priority=3,
        correlation_id="corr", reply_to="replies", expiration="60000", message_id="id-1", timestamp=1700000000,
        type="order.created", app_id="conformance",
        headers={"str": "text", "int": 42, "big": 2 ** 40, "neg": -7, "bool": True, "none": None,
                 "list": [1, "two", False], "table": {"nested": "yes", "n": 1}, "decimal": Decimal("3.14")})
    channel.basic_publish("", queue, b'{"order": 1}', properties=properties)
    received = []
    consumer = connection.channel()
    consumer.basic_consume(queue, lambda ch, m, p, b: received.append((p, b)), auto_ack=True)
    pump(connection, lambda: len(received) == 1)
    consumer.close()
    got, body = received[0]
    fields = ["content_type", "content_encoding", "delivery_mode", "priority", "correlation_id", "reply_to",
              "expiration", "message_id", "timestamp", "type", "app_id", "user_id", "cluster_id"]
    headers = got.headers or {}
    return {"body": body, "fields": {name: getattr(got, name) for name in fields},
            "headers": {key: _typed(value) for key, value in sorted(headers.items())},
            "empty_properties": _empty_properties(pika, connection, channel, queue)}


def _empty_properties(pika, connection, channel, queue):
    channel.basic_publish("", queue, b"bare")
    method, properties, body = channel.basic_get(queue, auto_ack=True)
    return {"body": body, "headers": properties.headers, "delivery_mode": properties.delivery_mode,
            "content_type": properties.content_type}


def _typed(value):
    """A header value as plain data with its kind (pika's own ``long`` subclass of int counts as int)."""
    for kind in (bool, int, str, bytes, Decimal):
        if isinstance(value, kind):
            return [kind.__name__, str(value) if kind in (Decimal, bytes) else value]
    if isinstance(value, dict):
        return ["dict", {k: _typed(v) for k, v in sorted(value.items())}]
    if isinstance(value, list):
        return ["list", [_typed(v) for v in value]]
    return [type(value).__name__, repr(value)]


@conformance
def test_callbacks_never_nest(pika, connect, names):
    connection = connect()
    queue, _ = _queue_with(connection, names, 2)
    channel = connection.channel()
    trace = []

    def on_message(ch, method, properties, body):
        trace.append(f"enter {body.decode()}")
        connection.process_data_events(time_limit=0.05)  # does not dispatch the next delivery from in here
        connection.sleep(0.01)
        trace.append(outcome(ch.start_consuming))
        trace.append(f"exit {body.decode()}")
        ch.basic_ack(method.delivery_tag)

    channel.basic_consume(queue, on_message)
    pump(connection, lambda: len(trace) == 6)
    return {"trace": trace, "after": queue_state(connection, queue)}



@conformance
def test_a_delivery_whose_queue_was_deleted_stays_the_channels_until_settled(pika, connect, names):
    """The queue is deleted (and declared again under its name) on the channel that holds the deliveries: every way
    of settling them is accepted once, and a tag already settled is unknown again."""
    connection = connect()
    observed = {}
    settles = {
        "reject_requeue": lambda ch, tag: ch.basic_reject(tag, requeue=True),
        "reject_drop": lambda ch, tag: ch.basic_reject(tag, requeue=False),
        "ack": lambda ch, tag: ch.basic_ack(tag),
        "ack_multiple": lambda ch, tag: ch.basic_ack(tag, multiple=True),
        "nack_multiple": lambda ch, tag: ch.basic_nack(tag, multiple=True, requeue=True),
        "ack_all": lambda ch, tag: ch.basic_ack(0, multiple=True),
    }
    for name, settle in settles.items():
        for redeclare in (False, True):
            queue, channel = _queue_with(connection, names, 2, f"{name}-{redeclare}")
            channel.basic_get(queue)
            second, _, _ = channel.basic_get(queue)
            channel.queue_delete(queue)
            if redeclare:
                channel.queue_declare(queue)
                channel.basic_publish("", queue, b"new")
            key = f"{name}{'_redeclared' if redeclare else ''}"
            observed[key] = outcome(lambda: (settle(channel, second.delivery_tag), channel.basic_qos(prefetch_count=1)))
            observed[key + "_again"] = outcome(lambda: (channel.basic_reject(second.delivery_tag),
                                                         channel.basic_qos(prefetch_count=1)))
            observed[key + "_queue"] = queue_state(connection, queue)
    return observed


def _consumers_with_priorities(connection, names, name, priorities):
    """One channel with prefetch 1 and a consumer per priority (None: no x-priority), registered in this order on an
    empty queue; then four messages published with confirms. Returns the queue, the channel and the inboxes."""
    queue = names.q(name)
    channel = connection.channel()
    channel.queue_declare(queue)
    channel.basic_qos(prefetch_count=1)
    inboxes = []
    for priority in priorities:
        inbox = Inbox()
        channel.basic_consume(queue, inbox, arguments=None if priority is None else {"x-priority": priority})
        inboxes.append(inbox)
    publisher = connection.channel()
    publisher.confirm_delivery()
    for n in range(4):
        publisher.basic_publish("", queue, f"m{n}".encode())
    return queue, channel, inboxes


@conformance
def test_consumer_priorities_deliver_to_the_highest_with_room_and_to_lower_ones_when_it_is_full(pika, connect, names):
    connection = connect()
    queue, channel, (low, high) = _consumers_with_priorities(connection, names, "q", [1, 10])
    pump(connection, lambda: len(low) + len(high) == 2)
    linger(connection)
    observed = {"first": {"high": high.bodies, "low": low.bodies}}
    channel.basic_ack(high.deliveries[0][1].delivery_tag)  # the high one has room again: it takes the next
    pump(connection, lambda: len(low) + len(high) == 3)
    linger(connection)
    observed["after_high_acks"] = {"high": high.bodies, "low": low.bodies}
    channel.basic_ack(low.deliveries[0][1].delivery_tag)  # the high one is full: the low one takes the last
    pump(connection, lambda: len(low) + len(high) == 4)
    linger(connection)
    observed["after_low_acks"] = {"high": high.bodies, "low": low.bodies}
    observed["queue"] = queue_state(connection, queue)
    return observed


@conformance
def test_equal_priorities_take_turns_and_negative_ranks_below_the_default(pika, connect, names):
    connection = connect()
    queue, _, inboxes = _consumers_with_priorities(connection, names, "q", [-5, None, 3, 3])
    pump(connection, lambda: sum(map(len, inboxes)) == 4)
    linger(connection)
    return {"negative": inboxes[0].bodies, "default": inboxes[1].bodies, "first_3": inboxes[2].bodies,
            "second_3": inboxes[3].bodies}


@conformance
def test_a_consumer_priority_must_be_an_integer_406(pika, connect, names):
    connection = connect()
    queue = names.q("q")
    connection.channel().queue_declare(queue)
    observed = {}
    for label, value in [("string", "5"), ("bool", True), ("void", None), ("negative", -3), ("large", 2 ** 40)]:
        channel = connection.channel()
        try:
            channel.basic_consume(queue, Inbox(), arguments={"x-priority": value})
            observed[label] = "ok"
        except pika.exceptions.ChannelClosedByBroker as closed:
            observed[label] = [closed.reply_code, reply_gist(closed.reply_text, "x-priority", "integer")]
    observed["float"] = outcome(lambda: connection.channel().basic_consume(queue, Inbox(),
                                                                           arguments={"x-priority": 1.5}))
    observed["connection_open"] = connection.is_open
    return observed
