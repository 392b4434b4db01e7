"""Settling deliveries: ack, nack, reject, requeue order and redelivered flags, basic_get counts, prefetch limits,
and the 406 that an unknown or already settled delivery tag earns."""

from __future__ import annotations

from .scenario_tools import Inbox, conformance, eventually, linger, outcome, pump, queue_state


def _queue_with(connection, names, count, name="q"):
    queue = names.q(name)
    channel = connection.channel()
    channel.confirm_delivery()
    channel.queue_declare(queue)
    for n in range(count):
        channel.basic_publish("", queue, f"m{n}".encode())
    return queue, channel


def _drain(channel, queue):
    """Every ready message, taken with basic_get and acked: ``[body, redelivered, message_count]``."""
    taken = []
    while True:
        method, _, body = channel.basic_get(queue)
        if method is None:
            return taken
        taken.append([body.decode(), method.redelivered, method.message_count])
        channel.basic_ack(method.delivery_tag)


@conformance
def test_requeued_messages_go_back_to_their_place_marked_redelivered(pika, connect, names):
    connection = connect()
    queue, channel = _queue_with(connection, names, 4)
    tags = [channel.basic_get(queue)[0].delivery_tag for _ in range(3)]
    channel.basic_nack(tags[1], requeue=True)
    channel.basic_reject(tags[0], requeue=True)
    channel.basic_ack(tags[2])
    return {"tags": tags, "then": _drain(channel, queue)}


@conformance
def test_reject_and_nack_without_requeue_drop_the_message(pika, connect, names):
    connection = connect()
    queue, channel = _queue_with(connection, names, 4)
    tags = [channel.basic_get(queue)[0].delivery_tag for _ in range(3)]
    channel.basic_reject(tags[0], requeue=False)
    channel.basic_nack(tags[2], multiple=True, requeue=False)  # tag 2 and the still unsettled tag 1
    return {"then": _drain(channel, queue), "after": queue_state(connection, queue)}


@conformance
def test_multiple_settles_every_earlier_unsettled_delivery_of_the_channel(pika, connect, names):
    connection = connect()
    queue, channel = _queue_with(connection, names, 6)
    tags = [channel.basic_get(queue)[0].delivery_tag for _ in range(5)]
    channel.basic_ack(tags[1])
    channel.basic_nack(tags[2], multiple=True, requeue=True)  # m0 and m2 back; m1 already acked
    channel.basic_ack(tags[4], multiple=True)  # m3 and m4
    return {"then": _drain(channel, queue)}


@conformance
def test_a_consumer_gets_its_nacked_message_again_first(pika, connect, names):
    connection = connect()
    queue, _ = _queue_with(connection, names, 3)
    channel = connection.channel()
    channel.basic_qos(prefetch_count=1)
    received = []

    def on_message(ch, method, properties, body):
        received.append([body.decode(), method.redelivered])
        if body == b"m0" and not method.redelivered:
            ch.basic_nack(method.delivery_tag, requeue=True)
        else:
            ch.basic_ack(method.delivery_tag)

    channel.basic_consume(queue, on_message)
    pump(connection, lambda: len(received) == 4)
    linger(connection)
    return {"received": received}


@conformance
def test_closing_a_channel_requeues_what_it_held_in_original_order(pika, connect, names):
    connection = connect()
    queue, publisher = _queue_with(connection, names, 5)
    holder = connection.channel()
    got = holder.basic_get(queue)  # m0, by basic_get
    inbox = Inbox()  # m1..m4, by a consumer (prefetch 3), never acked but for m2
    holder.basic_qos(prefetch_count=3)
    holder.basic_consume(queue, inbox)
    pump(connection, lambda: len(inbox) == 3)
    holder.basic_ack(inbox.deliveries[1][1].delivery_tag)  # m2 is done, which makes room for m4
    pump(connection, lambda: len(inbox) == 4)
    held_state = queue_state(connection, queue)
    holder.close()
    return {"got": got[2], "consumed": inbox.flags, "while_held": held_state,
            "after_close": _drain(publisher, queue)}


@conformance
def test_basic_get_reports_how_many_messages_are_left(pika, connect, names):
    connection = connect()
    queue, channel = _queue_with(connection, names, 3)
    first = channel.basic_get(queue, auto_ack=True)
    second = channel.basic_get(queue)
    channel.basic_reject(second[0].delivery_tag)
    again = channel.basic_get(queue)
    third = channel.basic_get(queue)
    empty = channel.basic_get(queue)
    return {"gets": [[body, method.message_count, method.redelivered, method.exchange, method.routing_key]
                     for method, _, body in (first, second, again, third)],
            "empty": list(empty), "tags": [second[0].delivery_tag, again[0].delivery_tag, third[0].delivery_tag]}


@conformance
def test_prefetch_bounds_unacked_deliveries_per_consumer(pika, connect, names):
    connection = connect()
    queue, _ = _queue_with(connection, names, 6)
    channel = connection.channel()
    channel.basic_qos(prefetch_count=2)
    inbox = Inbox()
    channel.basic_consume(queue, inbox)
    pump(connection, lambda: len(inbox) == 2)
    linger(connection)
    at_first = inbox.bodies[:]
    channel.basic_ack(inbox.deliveries[0][1].delivery_tag)
    pump(connection, lambda: len(inbox) == 3)
    linger(connection)
    after_one_ack = inbox.bodies[:]
    channel.basic_ack(inbox.deliveries[2][1].delivery_tag, multiple=True)
    pump(connection, lambda: len(inbox) == 5)
    linger(connection)
    return {"at_first": at_first, "after_one_ack": after_one_ack, "after_multiple_ack": inbox.bodies,
            "ready": queue_state(connection, queue)}


@conformance
def test_prefetch_zero_means_unlimited_and_auto_ack_ignores_prefetch(pika, connect, names):
    connection = connect()
    unlimited, _ = _queue_with(connection, names, 5, "unlimited")
    auto, _ = _queue_with(connection, names, 5, "auto")
    channel = connection.channel()
    everything = Inbox()
    channel.basic_consume(unlimited, everything)
    limited = connection.channel()
    limited.basic_qos(prefetch_count=1)
    auto_inbox = Inbox()
    limited.basic_consume(auto, auto_inbox, auto_ack=True)
    pump(connection, lambda: len(everything) == 5 and len(auto_inbox) == 5)
    linger(connection)
    return {"unlimited": everything.bodies, "auto_ack_with_prefetch_1": auto_inbox.bodies,
            "states": [queue_state(connection, unlimited), queue_state(connection, auto)]}


@conformance
def test_global_qos_caps_the_whole_channel(pika, connect, names):
    connection = connect()
    first, _ = _queue_with(connection, names, 2, "first")
    second, _ = _queue_with(connection, names, 2, "second")
    channel = connection.channel()
    channel.basic_qos(prefetch_count=3, global_qos=True)
    a, b = Inbox(), Inbox()
    channel.basic_consume(first, a)
    channel.basic_consume(second, b)
    pump(connection, lambda: len(a) + len(b) == 3)
    linger(connection)
    held = [a.bodies[:], b.bodies[:]]
    channel.basic_ack(0, multiple=True)
    pump(connection, lambda: len(a) + len(b) == 4)
    linger(connection)
    return {"held": held, "after_ack_all": [a.bodies, b.bodies]}


def _settle_on_fresh_channels(connection, queue, count, cases):
    """Each case on a channel of its own: take ``count`` messages, settle them as the case says, then make a
    synchronous call (pika without confirms learns of a close only then: see the scenario on where an unknown
    delivery tag's error surfaces). What each raised, and whether its channel stayed open."""
    observed = {}
    for name, settle in cases.items():
        channel = connection.channel()
        tags = [channel.basic_get(queue)[0].delivery_tag for _ in range(count)]
        observed[name] = outcome(lambda: (settle(channel, tags), channel.queue_declare(queue, passive=True)))
        observed[name + "_channel_open"] = channel.is_open
    return observed


@conformance
def test_settling_twice_or_an_unknown_tag_closes_the_channel_with_406(pika, connect, names):
    connection = connect()
    queue, _ = _queue_with(connection, names, 3)
    observed = _settle_on_fresh_channels(connection, queue, 1, {
        "second_ack": lambda ch, tags: (ch.basic_ack(tags[0]), ch.basic_ack(tags[0])),
        "ack_after_reject": lambda ch, tags: (ch.basic_reject(tags[0]), ch.basic_ack(tags[0])),
        "unknown_tag": lambda ch, tags: ch.basic_nack(tags[0] + 100),
    })
    observed["connection_open"] = connection.is_open
    observed["after"] = eventually(lambda: queue_state(connection, queue), [2, 0])
    return observed


@conformance(litemq_differs={"ack": "ChannelClosedByBroker 406", "next_call": "ChannelWrongStateError"},
             because="pika sends an ack without waiting, so RabbitMQ's 406 surfaces at the channel's next "
                     "synchronous call; litemq knows at once and raises at the ack itself")
def test_where_an_unknown_delivery_tag_error_surfaces(pika, connect, names):
    connection = connect()
    queue, _ = _queue_with(connection, names, 1)
    channel = connection.channel()
    ack = outcome(lambda: channel.basic_ack(42))
    next_call = outcome(lambda: channel.queue_declare(queue, passive=True))
    return {"ack": ack, "next_call": next_call, "channel_open": channel.is_open, "connection_open": connection.is_open,
            "after": queue_state(connection, queue)}


@conformance
def test_multiple_up_to_a_tag_not_outstanding_settles_nothing(pika, connect, names):
    connection = connect()
    queue, _ = _queue_with(connection, names, 3)
    observed = _settle_on_fresh_channels(connection, queue, 3, {
        "ack_beyond": lambda ch, tags: ch.basic_ack(tags[-1] + 10, multiple=True),
        "nack_beyond_dropping": lambda ch, tags: ch.basic_nack(tags[-1] + 10, multiple=True, requeue=False),
        "ack_settled_tag": lambda ch, tags: (ch.basic_ack(tags[1]), ch.basic_ack(tags[1], multiple=True)),
    })
    # Only the one plain ack settled anything; the closed channels gave the rest back.
    observed["after"] = eventually(lambda: queue_state(connection, queue), [2, 0])
    return observed


@conformance
def test_a_delivery_tag_belongs_to_its_channel(pika, connect, names):
    connection = connect()
    queue, _ = _queue_with(connection, names, 1)
    taker, other = connection.channel(), connection.channel()
    tag = taker.basic_get(queue)[0].delivery_tag
    wrong_channel = outcome(lambda: (other.basic_ack(tag), other.queue_declare(queue, passive=True)))
    right_channel = outcome(lambda: (taker.basic_ack(tag), taker.queue_declare(queue, passive=True)))
    return {"wrong_channel": wrong_channel, "right_channel": right_channel,
            "after": eventually(lambda: queue_state(connection, queue), [0, 0])}


@conformance
def test_basic_recover_requeues_unacked_deliveries(pika, connect, names):
    connection = connect()
    queue, publisher = _queue_with(connection, names, 3)
    channel = connection.channel()
    got = [channel.basic_get(queue)[2] for _ in range(2)]
    channel.basic_recover(requeue=True)
    return {"got": got, "then": _drain(publisher, queue),
            "stale_ack": outcome(lambda: (channel.basic_ack(1), channel.queue_declare(queue, passive=True)))}


@conformance
def test_basic_recover_without_requeue_closes_the_connection(pika, connect, names):
    connection, watcher = connect(), connect()
    queue, _ = _queue_with(watcher, names, 2)
    channel = connection.channel()
    channel.basic_get(queue)
    recover = outcome(lambda: channel.basic_recover())  # pika's default: requeue=False
    return {"recover": recover, "connection_open": connection.is_open,
            "after": eventually(lambda: queue_state(watcher, queue), [2, 0])}


@conformance(litemq_differs={"ready_before_processing_events": [3, 1], "after_close": [["m0", False], ["m1", False],
                                                                                     ["m2", False]]},
             because="RabbitMQ pushes deliveries to a consumer up to its prefetch as soon as it is registered, "
                     "whether or not the client processes events, and a message so sent counts as delivered "
                     "(redelivered afterwards); litemq.pika claims a consumer's messages only when its connection "
                     "processes events (process_data_events, start_consuming, consume()), so until then they stay "
                     "ready for other consumers and come back unmarked")
def test_messages_are_delivered_to_a_consumer_before_it_processes_events(pika, connect, names):
    connection, watcher = connect(), connect()
    queue, publisher = _queue_with(connection, names, 3)
    channel = connection.channel()
    channel.basic_qos(prefetch_count=5)
    inbox = Inbox()
    channel.basic_consume(queue, inbox)
    ready = eventually(lambda: queue_state(watcher, queue), [0, 1], timeout=1.0)
    channel.close()
    return {"ready_before_processing_events": ready, "dispatched": inbox.bodies,
            "after_close": [row[:2] for row in _drain(publisher, queue)]}


@conformance
def test_qos_applies_to_consumers_started_after_it(pika, connect, names):
    connection = connect()
    before, _ = _queue_with(connection, names, 4, "before")
    after, _ = _queue_with(connection, names, 4, "after")
    channel = connection.channel()
    early, late = Inbox(), Inbox()
    channel.basic_consume(before, early)
    channel.basic_qos(prefetch_count=1)
    channel.basic_consume(after, late)
    pump(connection, lambda: len(early) == 4 and len(late) == 1)
    linger(connection)
    return {"started_before_qos": early.bodies, "started_after_qos": late.bodies}
