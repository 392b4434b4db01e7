"""Broker errors and what is left usable afterwards: 403 (reserved names, the default exchange, exclusive consumers,
internal exchanges), 404, 405, 406 (inequivalent redeclares), 503 and 540, and the channel and connection states
that follow (ChannelWrongStateError, ConnectionWrongStateError)."""

from __future__ import annotations

from .scenario_tools import conformance, outcome, queue_state, reply_gist


def _each_on_a_fresh_channel(connection, attempts):
    observed = {}
    for name, action in attempts.items():
        channel = connection.channel()
        observed[name] = outcome(lambda: action(channel))
    return observed


@conformance
def test_amq_names_and_the_default_exchange_are_reserved_403(pika, connect, names):
    connection = connect()
    queue = names.q("q")
    setup = connection.channel()
    setup.queue_declare(queue)
    server_named = setup.queue_declare("", exclusive=True).method.queue
    observed = _each_on_a_fresh_channel(connection, {
        "declare_amq_exchange": lambda ch: ch.exchange_declare("amq.custom-" + names.prefix, "direct"),
        "declare_amq_queue": lambda ch: ch.queue_declare("amq.custom-" + names.prefix),
        "passive_amq_direct": lambda ch: ch.exchange_declare("amq.direct", passive=True),
        "passive_amq_match": lambda ch: ch.exchange_declare("amq.match", passive=True),
        "delete_amq_direct": lambda ch: ch.exchange_delete("amq.direct"),
        "bind_to_default": lambda ch: ch.queue_bind(queue, "", routing_key="x"),
        "unbind_from_default": lambda ch: ch.queue_unbind(queue, "", routing_key=queue),
        "bind_to_amq_topic": lambda ch: ch.queue_bind(queue, "amq.topic", routing_key="#"),
        "redeclare_amq_direct_as_it_is": lambda ch: ch.exchange_declare("amq.direct", "direct", durable=True),
        "passive_server_named_queue": lambda ch: ch.queue_declare(server_named, passive=True),
    })
    observed["connection_open"] = connection.is_open
    return observed


@conformance
def test_redeclaring_a_server_named_queue_is_refused_403(pika, connect, names):
    connection = connect()
    channel = connection.channel()
    server_named = channel.queue_declare("", exclusive=True).method.queue
    return {"redeclare": outcome(lambda: channel.queue_declare(server_named, exclusive=True)),
            "channel_open": channel.is_open, "still_there": queue_state(connection, server_named)}


@conformance
def test_missing_objects_are_404(pika, connect, names):
    connection = connect()
    queue, exchange = names.q("exists"), names.x("exists")
    missing_q, missing_x = names.q("missing"), names.x("missing")
    setup = connection.channel()
    setup.queue_declare(queue)
    setup.exchange_declare(exchange, "direct")
    observed = _each_on_a_fresh_channel(connection, {
        "passive_queue": lambda ch: ch.queue_declare(missing_q, passive=True),
        "passive_exchange": lambda ch: ch.exchange_declare(missing_x, passive=True),
        "bind_to_missing_exchange": lambda ch: ch.queue_bind(queue, missing_x, "k"),
        "bind_missing_queue": lambda ch: ch.queue_bind(missing_q, exchange, "k"),
        "exchange_bind_missing_source": lambda ch: ch.exchange_bind(exchange, missing_x, "k"),
        "get": lambda ch: ch.basic_get(missing_q),
        "consume": lambda ch: ch.basic_consume(missing_q, lambda *a: None),
        "purge": lambda ch: ch.queue_purge(missing_q),
        "unbind_missing": lambda ch: ch.queue_unbind(missing_q, missing_x, "k"),
    })
    observed["connection_open"] = connection.is_open
    return observed


@conformance
def test_publishing_to_a_missing_exchange_with_confirms_fails_at_the_publish(pika, connect, names):
    connection = connect()
    channel = connection.channel()
    channel.confirm_delivery()
    publish = outcome(lambda: channel.basic_publish(names.x("missing"), "k", b"lost"))
    next_call = outcome(lambda: channel.basic_publish("", "k", b"again"))
    reopened = connection.channel()
    reopened.confirm_delivery()
    return {"publish": publish, "next_call": next_call, "channel_open": channel.is_open,
            "connection_open": connection.is_open,
            "new_channel_publishes": outcome(lambda: reopened.basic_publish("", "nowhere", b"fine"))}


@conformance(litemq_differs={"publish": "ChannelClosedByBroker 404", "next_call": "ChannelWrongStateError"},
             because="without publisher confirms pika does not wait for RabbitMQ, whose 404 arrives with the "
                     "channel's next synchronous call; litemq knows at once and raises at the publish itself")
def test_where_a_missing_exchange_error_surfaces_without_confirms(pika, connect, names):
    connection = connect()
    channel = connection.channel()
    queue = names.q("q")
    publish = outcome(lambda: channel.basic_publish(names.x("missing"), "k", b"lost"))
    next_call = outcome(lambda: channel.queue_declare(queue))
    return {"publish": publish, "next_call": next_call, "channel_open": channel.is_open,
            "connection_open": connection.is_open, "queue_was_declared": queue_state(connection, queue)}


@conformance
def test_inequivalent_redeclares_are_406_and_passive_ones_are_not(pika, connect, names):
    connection = connect()
    queue, exchange = names.q("q"), names.x("x")
    setup = connection.channel()
    setup.queue_declare(queue, durable=True, arguments={"x-max-length": 10})
    setup.exchange_declare(exchange, "topic", durable=True)
    return _each_on_a_fresh_channel(connection, {
        "queue_same": lambda ch: ch.queue_declare(queue, durable=True, arguments={"x-max-length": 10}),
        "queue_durable": lambda ch: ch.queue_declare(queue, durable=False, arguments={"x-max-length": 10}),
        "queue_auto_delete": lambda ch: ch.queue_declare(queue, durable=True, auto_delete=True,
                                                         arguments={"x-max-length": 10}),
        "queue_arguments": lambda ch: ch.queue_declare(queue, durable=True, arguments={"x-max-length": 11}),
        "queue_passive_differently": lambda ch: ch.queue_declare(queue, passive=True, durable=False),
        "exchange_same": lambda ch: ch.exchange_declare(exchange, "topic", durable=True),
        "exchange_type": lambda ch: ch.exchange_declare(exchange, "fanout", durable=True),
        "exchange_durable": lambda ch: ch.exchange_declare(exchange, "topic", durable=False),
        "exchange_auto_delete": lambda ch: ch.exchange_declare(exchange, "topic", durable=True, auto_delete=True),
        "exchange_internal": lambda ch: ch.exchange_declare(exchange, "topic", durable=True, internal=True),
        "exchange_passive_differently": lambda ch: ch.exchange_declare(exchange, "fanout", passive=True),
    })


@conformance
def test_unknown_exchange_type_closes_the_connection_with_503(pika, connect, names):
    connection, bystander = connect(), connect()
    channel, other = connection.channel(), connection.channel()
    exchange = names.x("odd")
    declare = outcome(lambda: channel.exchange_declare(exchange, "x-unknown-type"))
    observed = {
        "declare": declare,
        "connection_open": connection.is_open,
        "channels_open": [channel.is_open, other.is_open],
        "other_channel_call": outcome(lambda: other.queue_declare(names.q("q"))),
        "new_channel": outcome(connection.channel),
        "close": outcome(connection.close),
        "exchange": outcome(lambda: bystander.channel().exchange_declare(exchange, passive=True)),
        "bystander_open": bystander.is_open,
    }
    return observed


@conformance
def test_prefetch_size_is_not_implemented_540(pika, connect, names):
    connection = connect()
    channel = connection.channel()
    return {"qos": outcome(lambda: channel.basic_qos(prefetch_size=1024, prefetch_count=1)),
            "channel_open": channel.is_open, "connection_open": connection.is_open}


@conformance
def test_a_closed_channel_refuses_every_call_and_the_connection_goes_on(pika, connect, names):
    connection = connect()
    queue = names.q("q")
    channel = connection.channel()
    channel.queue_declare(queue)
    channel.basic_consume(queue, lambda *a: None)
    error = outcome(lambda: channel.queue_declare(names.q("missing"), passive=True))
    observed = {"error": error, "is_open": channel.is_open, "is_closed": channel.is_closed,
                "consumer_tags": list(channel.consumer_tags), "connection_open": connection.is_open}
    observed.update({name: outcome(call) for name, call in {
        "queue_declare": lambda: channel.queue_declare(queue),
        "basic_publish": lambda: channel.basic_publish("", queue, b"x"),
        # (not basic_get: pika 1.4 raises ChannelWrongStateError but still sends the Basic.Get, and RabbitMQ then
        # closes the whole connection with 504)
        "basic_consume": lambda: channel.basic_consume(queue, lambda *a: None),
        "basic_qos": lambda: channel.basic_qos(prefetch_count=1),
        "confirm_delivery": lambda: channel.confirm_delivery(),
        "close": lambda: channel.close(),
    }.items()})
    observed["queue_after"] = queue_state(connection, queue)  # the consumer went with the channel
    return observed


@conformance
def test_closing_twice_and_using_a_closed_connection(pika, connect, names):
    connection = connect()
    channel = connection.channel()
    channel.close()
    second_channel_close = outcome(channel.close)
    kept = connection.channel()
    connection.close()
    return {"second_channel_close": second_channel_close, "kept_open": kept.is_open,
            "kept_call": outcome(lambda: kept.queue_declare(names.q("q"))),
            "new_channel": outcome(connection.channel), "second_close": outcome(connection.close),
            "connection": [connection.is_open, connection.is_closed]}


@conformance
def test_exclusive_consumers_refuse_company_403(pika, connect, names):
    connection = connect()
    queue, shared = names.q("exclusive-consumer"), names.q("shared")
    setup = connection.channel()
    setup.queue_declare(queue)
    setup.queue_declare(shared)
    setup.basic_consume(queue, lambda *a: None, exclusive=True)
    setup.basic_consume(shared, lambda *a: None)
    observed = _each_on_a_fresh_channel(connection, {
        "second_consumer": lambda ch: ch.basic_consume(queue, lambda *a: None),
        "exclusive_when_others_consume": lambda ch: ch.basic_consume(shared, lambda *a: None, exclusive=True),
        "get_is_fine": lambda ch: ch.basic_get(queue),
    })
    observed["consumers"] = [queue_state(connection, queue), queue_state(connection, shared)]
    return observed


@conformance
def test_internal_exchanges_refuse_publishers_but_route_from_other_exchanges(pika, connect, names):
    connection = connect()
    channel = connection.channel()
    channel.confirm_delivery()
    internal, front, queue = names.x("internal"), names.x("front"), names.q("q")
    channel.exchange_declare(internal, "fanout", internal=True)
    channel.exchange_declare(front, "fanout")
    channel.exchange_bind(internal, front)
    channel.queue_declare(queue)
    channel.queue_bind(queue, internal)
    channel.basic_publish(front, "", b"through front")
    direct = connection.channel()
    direct.confirm_delivery()
    return {"publish_to_internal": outcome(lambda: direct.basic_publish(internal, "", b"refused")),
            "queue": queue_state(connection, queue)}


@conformance
def test_duplicate_consumer_tag_on_a_channel(pika, connect, names):
    connection = connect()
    queue = names.q("q")
    channel = connection.channel()
    channel.queue_declare(queue)
    channel.basic_consume(queue, lambda *a: None, consumer_tag="worker")
    other = connection.channel()
    return {"same_channel": outcome(lambda: channel.basic_consume(queue, lambda *a: None, consumer_tag="worker")),
            "other_channel": outcome(lambda: other.basic_consume(queue, lambda *a: None, consumer_tag="worker")),
            "tags": [list(channel.consumer_tags), list(other.consumer_tags)], "channel_open": channel.is_open,
            "queue": queue_state(connection, queue)}


@conformance
def test_a_bad_ack_in_a_callback_ends_start_consuming_with_the_channel_error(pika, connect, names):
    connection = connect()
    queue = names.q("q")
    setup = connection.channel()
    setup.confirm_delivery()
    setup.queue_declare(queue)
    for n in range(2):
        setup.basic_publish("", queue, f"m{n}".encode())
    channel = connection.channel()
    channel.basic_qos(prefetch_count=1)
    received = []

    def on_message(ch, method, properties, body):
        received.append(body.decode())
        ch.basic_ack(method.delivery_tag + 1000)

    channel.basic_consume(queue, on_message)
    error = outcome(channel.start_consuming)
    return {"error": error, "received": received, "channel_open": channel.is_open,
            "connection_open": connection.is_open, "queue": queue_state(connection, queue)}


@conformance
def test_the_default_exchange_cannot_be_declared_even_passively_403(pika, connect, names):
    connection = connect()
    observed = _each_on_a_fresh_channel(connection, {
        f"passive_{kind}": (lambda ch, kind=kind: ch.exchange_declare("", kind, passive=True))
        for kind in ("direct", "fanout", "topic", "headers")})
    channel = connection.channel()
    try:
        channel.exchange_declare("", passive=True)
    except pika.exceptions.ChannelClosedByBroker as closed:
        observed["reply"] = reply_gist(closed.reply_text, "default exchange")
    observed["connection_open"] = connection.is_open
    return observed


def _publish_reply(pika, connection, exchange, queue, properties, *mentions):
    """Publish with confirms on a fresh channel: "ok", or the close's code and the gist of its text."""
    channel = connection.channel()
    channel.confirm_delivery()
    try:
        channel.basic_publish(exchange, queue, b"x", pika.BasicProperties(**properties))
    except pika.exceptions.ChannelClosedByBroker as closed:
        return [closed.reply_code, reply_gist(closed.reply_text, *mentions)]
    return "ok"


@conformance
def test_a_message_with_a_foreign_user_id_or_an_unknown_delivery_mode_is_refused_406(pika, connect, names):
    connection = connect()
    queue = names.q("q")
    connection.channel().queue_declare(queue)
    observed = {label: _publish_reply(pika, connection, "", queue, properties, "user_id", "delivery_mode")
                for label, properties in [("user_id_guest", dict(user_id="guest")),
                                          ("user_id_other", dict(user_id="other")),
                                          ("user_id_empty", dict(user_id="")),
                                          ("delivery_mode_0", dict(delivery_mode=0)),
                                          ("delivery_mode_3", dict(delivery_mode=3)),
                                          ("delivery_mode_persistent", dict(delivery_mode=2))]}
    observed["stored"] = queue_state(connection, queue)
    observed["connection_open"] = connection.is_open
    return observed


@conformance
def test_a_publish_is_checked_exchange_first_then_user_id_expiration_and_delivery_mode(pika, connect, names):
    connection = connect()
    queue, internal = names.q("q"), names.x("internal")
    setup = connection.channel()
    setup.queue_declare(queue)
    setup.exchange_declare(internal, "direct", internal=True)
    observed = {label: _publish_reply(pika, connection, exchange, queue, properties, "user_id", "expiration")
                for label, exchange, properties in [
                    ("missing_exchange_and_user_id", names.x("missing"), dict(user_id="other", expiration="soon")),
                    ("internal_exchange_and_user_id", internal, dict(user_id="other")),
                    ("user_id_and_expiration", "", dict(user_id="other", expiration="soon", delivery_mode=3)),
                    ("expiration_and_delivery_mode", "", dict(expiration="soon", delivery_mode=3))]}
    observed["stored"] = queue_state(connection, queue)
    return observed
