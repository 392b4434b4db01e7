"""Queue lifecycles: exclusive queues (locked to their connection, gone when it closes or its process is killed),
auto-delete queues and exchanges, server-named queues, declare counts, purge and delete."""

from __future__ import annotations

from .scenario_tools import Inbox, conformance, eventually, outcome, pump, queue_state


def _on_fresh_channel(connection, action):
    channel = connection.channel()
    return outcome(lambda: action(channel))


@conformance
def test_exclusive_queue_is_locked_to_other_connections_but_open_to_publishers(pika, connect, names):
    owner, other = connect(), connect()
    queue = names.q("private")
    mine = owner.channel()
    mine.confirm_delivery()
    mine.queue_declare(queue, exclusive=True)
    mine.basic_publish("", queue, b"from owner")
    attempts = {
        "declare_exclusive": lambda ch: ch.queue_declare(queue, exclusive=True),
        "declare_shared": lambda ch: ch.queue_declare(queue),
        "declare_passive": lambda ch: ch.queue_declare(queue, passive=True),
        "consume": lambda ch: ch.basic_consume(queue, lambda *a: None),
        "get": lambda ch: ch.basic_get(queue),
        "bind": lambda ch: ch.queue_bind(queue, "amq.fanout"),
        "purge": lambda ch: ch.queue_purge(queue),
        "delete": lambda ch: ch.queue_delete(queue),
    }
    observed = {name: _on_fresh_channel(other, action) for name, action in attempts.items()}
    publisher = other.channel()
    publisher.confirm_delivery()
    observed["publish"] = outcome(lambda: publisher.basic_publish("", queue, b"from other"))
    observed["owner_sees"] = queue_state(owner, queue)
    observed["other_connection_open"] = other.is_open
    return observed


@conformance
def test_exclusive_queue_survives_its_channel_and_goes_with_its_connection(pika, connect, names):
    owner, other = connect(), connect()
    queue = names.q("private")
    channel = owner.channel()
    declared = channel.queue_declare(queue, exclusive=True)
    redeclare_elsewhere = _on_fresh_channel(owner, lambda ch: ch.queue_declare(queue, exclusive=True))
    channel.close()
    after_channel_close = queue_state(owner, queue)
    while_owned = queue_state(other, queue)
    owner.close()
    after_connection_close = eventually(lambda: queue_state(other, queue), "ChannelClosedByBroker 404")
    return {"declared": declared.method.queue, "redeclare_on_other_channel": redeclare_elsewhere,
            "after_channel_close": after_channel_close, "while_owned": while_owned,
            "after_connection_close": after_connection_close}


@conformance
def test_exclusive_queue_goes_when_its_owner_process_is_killed(pika, connect, names):
    other = connect()
    queue = names.q("owned-by-child")
    child = connect.spawn("own_exclusive_queue", queue, 2)
    child.wait_ready()
    while_alive = queue_state(other, queue)
    child.kill()  # SIGKILL: no close, no goodbye
    after_kill = eventually(lambda: queue_state(other, queue), "ChannelClosedByBroker 404")
    redeclared = other.channel().queue_declare(queue, exclusive=True)
    return {"while_alive": while_alive, "after_kill": after_kill,
            "redeclared_empty": [redeclared.method.message_count, redeclared.method.consumer_count]}


@conformance
def test_unacked_messages_of_a_killed_consumer_process_are_redelivered(pika, connect, names):
    connection = connect()
    queue = names.q("jobs")
    channel = connection.channel()
    channel.confirm_delivery()
    channel.queue_declare(queue)
    for n in range(3):
        channel.basic_publish("", queue, f"job {n}".encode())
    child = connect.spawn("hold_unacked", queue, 2)
    child.wait_ready()
    while_held = queue_state(connection, queue)
    child.kill()
    after_kill = eventually(lambda: queue_state(connection, queue), [3, 0], timeout=2.0)
    got = [channel.basic_get(queue, auto_ack=True) for _ in range(3)]
    return {"while_held": while_held, "after_kill": after_kill,
            "redelivered": [[body.decode(), method.redelivered] for method, _, body in got]}


@conformance
def test_a_waiting_consumer_receives_what_a_killed_process_held(pika, connect, names):
    connection = connect()
    queue = names.q("jobs")
    channel = connection.channel()
    channel.confirm_delivery()
    channel.queue_declare(queue)
    for n in range(3):
        channel.basic_publish("", queue, f"job {n}".encode())
    child = connect.spawn("hold_unacked", queue, 2)
    child.wait_ready()
    inbox = Inbox(ack=True)
    channel.basic_consume(queue, inbox)
    pump(connection, lambda: len(inbox) == 1)
    child.kill()
    pump(connection, lambda: len(inbox) == 3)
    return {"received": inbox.flags, "after": queue_state(connection, queue)}


@conformance
def test_exclusive_flag_mismatch_on_redeclare_by_the_owner(pika, connect, names):
    connection = connect()
    exclusive, shared = names.q("exclusive"), names.q("shared")
    channel = connection.channel()
    channel.queue_declare(exclusive, exclusive=True)
    channel.queue_declare(shared)
    return {"exclusive_as_shared": _on_fresh_channel(connection, lambda ch: ch.queue_declare(exclusive)),
            "shared_as_exclusive": _on_fresh_channel(connection, lambda ch: ch.queue_declare(shared, exclusive=True))}


@conformance
def test_auto_delete_queue_lives_until_its_last_consumer_is_cancelled(pika, connect, names):
    connection, watcher = connect(), connect()
    queue = names.q("auto")
    channel = connection.channel()
    channel.confirm_delivery()
    channel.queue_declare(queue, auto_delete=True)
    channel.basic_publish("", queue, b"one")
    channel.basic_publish("", queue, b"two")
    got = channel.basic_get(queue, auto_ack=True)  # a get is not a consumer
    before_any_consumer = queue_state(watcher, queue)
    first = channel.basic_consume(queue, lambda *a: None, auto_ack=True)
    second = connection.channel()
    second_tag = second.basic_consume(queue, lambda *a: None, auto_ack=True)
    with_two = queue_state(watcher, queue)
    channel.basic_cancel(first)
    with_one = queue_state(watcher, queue)
    second.basic_cancel(second_tag)
    after_last = eventually(lambda: queue_state(watcher, queue), "ChannelClosedByBroker 404")
    return {"got": got[2], "before_any_consumer": before_any_consumer, "with_two": with_two[1:],
            "with_one": with_one[1:], "after_last_cancel": after_last}


@conformance
def test_auto_delete_queue_goes_when_its_consumers_channel_or_connection_closes(pika, connect, names):
    consumer_connection, watcher = connect(), connect()
    by_channel, by_connection = names.q("by-channel"), names.q("by-connection")
    channel = consumer_connection.channel()
    channel.queue_declare(by_channel, auto_delete=True)
    channel.basic_consume(by_channel, lambda *a: None)
    other_channel = consumer_connection.channel()
    other_channel.queue_declare(by_connection, auto_delete=True)
    other_channel.basic_consume(by_connection, lambda *a: None)
    channel.close()
    channel_closed = eventually(lambda: queue_state(watcher, by_channel), "ChannelClosedByBroker 404")
    still_there = queue_state(watcher, by_connection)
    consumer_connection.close()
    connection_closed = eventually(lambda: queue_state(watcher, by_connection), "ChannelClosedByBroker 404")
    return {"channel_closed": channel_closed, "other_still_there": still_there,
            "connection_closed": connection_closed}


@conformance
def test_auto_delete_exchange_goes_with_its_last_binding_never_before_the_first(pika, connect, names):
    connection = connect()
    channel = connection.channel()
    exchange, q1, q2 = names.x("auto-x"), names.q("q1"), names.q("q2")
    channel.exchange_declare(exchange, "fanout", auto_delete=True)
    check = connection.channel()
    unbound_yet = outcome(lambda: check.exchange_declare(exchange, passive=True))
    channel.queue_declare(q1)
    channel.queue_declare(q2)
    channel.queue_bind(q1, exchange)
    channel.queue_bind(q2, exchange)
    channel.queue_unbind(q1, exchange)
    with_one_binding = outcome(lambda: check.exchange_declare(exchange, passive=True))
    channel.queue_delete(q2)  # deleting the queue removes the last binding
    after_last = eventually(lambda: _on_fresh_channel(connection, lambda ch: ch.exchange_declare(exchange, passive=True)),
                            "ChannelClosedByBroker 404")
    return {"before_first_binding": unbound_yet, "with_one_binding": with_one_binding, "after_last": after_last}


@conformance
def test_server_named_queue_and_the_empty_name_meaning_the_last_one(pika, connect, names):
    connection = connect()
    channel = connection.channel()
    channel.confirm_delivery()
    exchange = names.x("fan")
    channel.exchange_declare(exchange, "fanout")
    declared = channel.queue_declare("", exclusive=True)
    name = declared.method.queue
    channel.queue_bind("", exchange)
    channel.basic_publish(exchange, "", b"to the last declared")
    channel.basic_publish(exchange, "", b"second")
    method, _, body = channel.basic_get(name, auto_ack=True)
    passive = channel.queue_declare(name, passive=True)
    inbox = Inbox()
    channel.basic_consume("", inbox, auto_ack=True)
    pump(connection, lambda: len(inbox) == 1)
    return {"generated": [name.startswith("amq.gen-"), len(name) > len("amq.gen-"),
                          declared.method.message_count, declared.method.consumer_count],
            "got": [body, method.routing_key, method.exchange], "passive_name_matches": passive.method.queue == name,
            "consumed_from_empty_name": inbox.bodies, "state": queue_state(connection, name)}


@conformance
def test_declare_reports_ready_messages_and_consumers_not_unacked_ones(pika, connect, names):
    connection = connect()
    queue = names.q("counts")
    channel = connection.channel()
    channel.confirm_delivery()
    empty = channel.queue_declare(queue)
    for n in range(5):
        channel.basic_publish("", queue, f"m{n}".encode())
    five = channel.queue_declare(queue, passive=True)
    held = [channel.basic_get(queue) for _ in range(2)]
    three = channel.queue_declare(queue)
    consumer = connection.channel()
    consumer.basic_qos(prefetch_count=1)
    consumer.basic_consume(queue, lambda *a: None)
    connection.process_data_events(time_limit=0.05)
    with_consumer = channel.queue_declare(queue, passive=True)
    channel.basic_nack(held[1][0].delivery_tag, requeue=True)
    # RabbitMQ answers a declare before it has handled earlier acks and nacks (its stat call jumps the queue
    # process's mailbox), so counts after settling are read until they settle.
    after_nack = eventually(lambda: queue_state(connection, queue), [3, 1])
    return {"empty": [empty.method.message_count, empty.method.consumer_count],
            "five": [five.method.message_count, five.method.consumer_count],
            "after_two_gets": [three.method.message_count, three.method.consumer_count],
            "with_prefetch_one_consumer": [with_consumer.method.message_count, with_consumer.method.consumer_count],
            "after_nack": after_nack}


@conformance
def test_purge_and_delete_count_ready_messages(pika, connect, names):
    connection = connect()
    queue, gone = names.q("work"), names.q("never-declared")
    channel = connection.channel()
    channel.confirm_delivery()
    channel.queue_declare(queue)
    for n in range(5):
        channel.basic_publish("", queue, f"m{n}".encode())
    unacked = [channel.basic_get(queue)[0].delivery_tag for _ in range(2)]
    purged = channel.queue_purge(queue).method.message_count
    after_purge = channel.queue_declare(queue, passive=True).method.message_count
    channel.basic_nack(unacked[-1], multiple=True, requeue=True)
    requeued = eventually(lambda: queue_state(connection, queue), [2, 0])  # see the declare-counts scenario
    empty_purge = _on_fresh_channel(connection, lambda ch: ch.queue_purge(gone))
    deleted = channel.queue_delete(queue).method.message_count
    delete_missing = channel.queue_delete(gone).method.message_count
    return {"purged": purged, "after_purge": after_purge, "requeued": requeued, "purge_missing": empty_purge,
            "deleted": deleted, "delete_missing": delete_missing, "after_delete": queue_state(connection, queue)}


@conformance
def test_conditional_deletes_refuse_with_406(pika, connect, names):
    connection = connect()
    busy, full, unacked_only, exchange = names.q("busy"), names.q("full"), names.q("unacked-only"), names.x("bound")
    channel = connection.channel()
    channel.confirm_delivery()
    for queue in (busy, full, unacked_only):
        channel.queue_declare(queue)
    channel.exchange_declare(exchange, "direct")
    channel.queue_bind(full, exchange, "k")
    channel.basic_publish("", full, b"keeps it non-empty")
    channel.basic_publish("", unacked_only, b"held")
    held = channel.basic_get(unacked_only)
    channel.basic_consume(busy, lambda *a: None)
    return {
        "if_unused_with_a_consumer": _on_fresh_channel(connection, lambda ch: ch.queue_delete(busy, if_unused=True)),
        "if_empty_with_a_ready_message": _on_fresh_channel(connection,
                                                           lambda ch: ch.queue_delete(full, if_empty=True)),
        "exchange_if_unused_with_a_binding": _on_fresh_channel(
            connection, lambda ch: ch.exchange_delete(exchange, if_unused=True)),
        "states": [queue_state(connection, q) for q in (busy, full)],
        "if_empty_with_only_unacked": _on_fresh_channel(connection,
                                                        lambda ch: ch.queue_delete(unacked_only, if_empty=True)),
        "unacked_only_after": queue_state(connection, unacked_only),
        "held": held[2],
        "exchange_delete": _on_fresh_channel(connection, lambda ch: ch.exchange_delete(exchange)),
        "exchange_delete_missing": _on_fresh_channel(connection, lambda ch: ch.exchange_delete(exchange)),
        "full_after_exchange_delete": queue_state(connection, full),
    }


@conformance
def test_with_blocks_close_channels_and_connections(pika, connect, names):
    watcher = connect()
    exclusive, auto = names.q("exclusive"), names.q("auto")
    with connect() as connection:
        connection.channel().queue_declare(exclusive, exclusive=True)
        with connection.channel() as channel:
            channel.queue_declare(auto, auto_delete=True)
            channel.basic_consume(auto, lambda *a: None)
            inside = [queue_state(watcher, auto), queue_state(connection, exclusive)]
        channel_after = channel.is_open
        auto_after = eventually(lambda: queue_state(watcher, auto), "ChannelClosedByBroker 404")
    return {"inside": inside, "channel_after": channel_after, "auto_after_channel": auto_after,
            "connection_after": connection.is_open,
            "exclusive_after_connection": eventually(lambda: queue_state(watcher, exclusive),
                                                     "ChannelClosedByBroker 404")}


@conformance
def test_a_redeclaration_must_repeat_only_the_arguments_the_broker_acts_on(pika, connect, names):
    connection = connect()
    queue, exchange = names.q("q"), names.x("x")
    channel = connection.channel()
    channel.queue_declare(queue, arguments={"x-message-ttl": 60000, "x-custom": 1})
    channel.exchange_declare(exchange, "direct", arguments={"x-custom": 1})
    observed = {}
    for name, again in {"unknown_changed": {"x-message-ttl": 60000, "x-custom": 2},
                        "unknown_dropped": {"x-message-ttl": 60000},
                        "classic_named": {"x-message-ttl": 60000, "x-queue-type": "classic"},
                        "ttl_changed": {"x-message-ttl": 1000},
                        "ttl_dropped": {}}.items():
        observed[name] = _on_fresh_channel(connection, lambda ch: ch.queue_declare(queue, arguments=again))
    observed["exchange_unknown_changed"] = _on_fresh_channel(
        connection, lambda ch: ch.exchange_declare(exchange, "direct", arguments={"x-custom": 2}))
    observed["exchange_alternate_added"] = _on_fresh_channel(
        connection, lambda ch: ch.exchange_declare(exchange, "direct", arguments={"alternate-exchange": "ae"}))
    return observed


@conformance
def test_an_exclusive_queue_is_never_durable_so_either_durable_flag_redeclares_it(pika, connect, names):
    connection = connect()
    declared_durable, declared_transient = names.q("durable"), names.q("transient")
    channel = connection.channel()
    channel.confirm_delivery()
    channel.queue_declare(declared_durable, durable=True, exclusive=True)
    channel.queue_declare(declared_transient, durable=False, exclusive=True)
    channel.basic_publish("", declared_durable, b"m")

    def counts(frame):
        return [frame.method.message_count, frame.method.consumer_count]

    return {"durable_as_transient": counts(channel.queue_declare(declared_durable, durable=False, exclusive=True)),
            "durable_again": counts(channel.queue_declare(declared_durable, durable=True, exclusive=True)),
            "transient_as_durable": counts(channel.queue_declare(declared_transient, durable=True, exclusive=True)),
            "channel_open": channel.is_open}


@conformance
def test_the_empty_queue_name_is_the_channels_last_declared_queue_named_or_passive(pika, connect, names):
    connection = connect()
    first, second = names.q("first"), names.q("second")
    observed = {f"before_any_{op}": _on_fresh_channel(connection, action) for op, action in {
        "get": lambda ch: ch.basic_get(""), "purge": lambda ch: ch.queue_purge(""),
        "delete": lambda ch: ch.queue_delete(""), "bind": lambda ch: ch.queue_bind("", "amq.direct"),
        "unbind": lambda ch: ch.queue_unbind("", "amq.direct"), "passive": lambda ch: ch.queue_declare("", passive=True),
    }.items()}
    channel = connection.channel()
    channel.confirm_delivery()
    channel.queue_declare(first)
    channel.queue_bind("", "amq.direct", routing_key="")  # the empty key with the empty name: the queue's name
    channel.basic_publish("amq.direct", first, b"by-name")
    channel.basic_publish("amq.direct", "", b"by-empty-key")
    channel.queue_declare(second)
    channel.queue_declare(first, passive=True)  # a passive declare makes it the last one too
    method, _, body = channel.basic_get("")
    observed["got"] = [body, method.message_count]
    observed["unbind"] = outcome(lambda: channel.queue_unbind("", "amq.direct", routing_key=""))
    channel.basic_publish("amq.direct", first, b"unbound")
    observed["after_unbind"] = queue_state(connection, first)
    observed["delete"] = channel.queue_delete("").method.message_count
    observed["get_after_delete"] = outcome(lambda: channel.basic_get(""))
    observed["second"] = queue_state(connection, second)
    return observed
