"""Message TTL (x-message-ttl, the expiration property), queue TTL (x-expires), dead-lettering (reject, nack,
expiry and overflow; x-death headers; cycles; a missing dead-letter exchange), length limits (x-max-length,
x-max-length-bytes, x-overflow) and the errors that invalid values of these arguments earn.

TTLs are 100-300 ms; a scenario waits for expiry with a bounded sleep (``AFTER_TTL``) and for dead-lettered
messages with ``eventually``. The moment in an x-death entry (``time``) is observed as its type's name."""

from __future__ import annotations

import time

from .scenario_tools import Inbox, bodies, conformance, eventually, linger, outcome, pump, queue_state, reply_gist

TTL = 100
"""Milliseconds: the short TTL of these scenarios."""
AFTER_TTL = 0.25
"""Seconds to wait so that a message (or queue) with a ``TTL`` lifetime has expired."""
LONG = 60000
"""Milliseconds: a TTL no scenario outlives."""


def _confirming(connection):
    channel = connection.channel()
    channel.confirm_delivery()
    return channel


def _queue(channel, name, arguments=None):
    channel.queue_declare(name, arguments=arguments)
    return name


def _plain(value):
    """Header values as plain data: an x-death ``time`` becomes the name of its type (the moment varies)."""
    if isinstance(value, dict):
        return {key: type(item).__name__ if key == "time" else _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def _headers(headers):
    """Headers as ``_plain`` data, less x-last-death-*: RabbitMQ adds those from 3.13 (current documentation),
    3.10 does not, litemq does (its own tests cover them)."""
    if headers is None:
        return None
    return _plain({key: value for key, value in headers.items() if not key.startswith("x-last-death-")})


def _take(channel, queue):
    """One message taken with basic_get (auto-ack), as ``_view`` shows it, or None when there is none."""
    method, properties, body = channel.basic_get(queue, auto_ack=True)
    return None if method is None else _view(method, properties, body)


def _view(method, properties, body):
    """What a dead-lettered delivery shows: where it came from, its expiration and its headers."""
    return {"body": body.decode(), "exchange": method.exchange, "routing_key": method.routing_key,
            "redelivered": method.redelivered, "expiration": properties.expiration,
            "headers": _headers(properties.headers)}


def _arrived(connection, queue, count=1):
    """Wait until the queue holds ``count`` ready messages (and no consumer); its state then."""
    return eventually(lambda: queue_state(connection, queue), [count, 0])


def _dead_letter_setup(channel, names):
    """A fanout dead-letter exchange and the queue ``dead`` bound to it."""
    dlx = names.x("dlx")
    channel.exchange_declare(dlx, "fanout")
    dead = _queue(channel, names.q("dead"))
    channel.queue_bind(dead, dlx)
    return dlx, dead


# --- message TTL


@conformance
def test_messages_past_the_queue_message_ttl_are_never_delivered(pika, connect, names):
    connection = connect()
    channel = _confirming(connection)
    got_from = _queue(channel, names.q("got"), {"x-message-ttl": TTL})
    consumed_from = _queue(channel, names.q("consumed"), {"x-message-ttl": TTL})
    for queue in (got_from, consumed_from):
        channel.basic_publish("", queue, b"stale")
    time.sleep(AFTER_TTL)
    channel.basic_publish("", got_from, b"fresh")
    got = bodies(channel, got_from)
    consumer = connection.channel()
    inbox = Inbox(ack=True)
    consumer.basic_consume(consumed_from, inbox)
    linger(connection)
    return {"basic_get": got, "consumed": inbox.bodies,
            "states": [queue_state(connection, got_from), queue_state(connection, consumed_from)]}


@conformance
def test_a_message_waiting_behind_an_unacked_one_expires_before_the_consumer_can_take_it(pika, connect, names):
    connection = connect()
    channel = _confirming(connection)
    queue = _queue(channel, names.q("q"), {"x-message-ttl": TTL})
    consumer = connection.channel()
    consumer.basic_qos(prefetch_count=1)
    inbox = Inbox()
    consumer.basic_consume(queue, inbox)
    channel.basic_publish("", queue, b"m0")
    channel.basic_publish("", queue, b"m1")
    pump(connection, lambda: len(inbox) == 1)
    linger(connection, AFTER_TTL)
    held = inbox.bodies[:]
    consumer.basic_ack(inbox.deliveries[0][1].delivery_tag)  # the held message outlived its TTL: still ackable
    linger(connection)
    return {"held": held, "after_ack": inbox.bodies, "state": queue_state(connection, queue),
            "channel_open": consumer.is_open}


@conformance
def test_message_ttl_zero_drops_a_message_nobody_can_take_at_once(pika, connect, names):
    connection = connect()
    channel = _confirming(connection)
    queue = _queue(channel, names.q("q"), {"x-message-ttl": 0})
    publish = outcome(lambda: channel.basic_publish("", queue, b"now-or-never"))
    return {"publish": publish, "basic_get": list(channel.basic_get(queue)), "state": queue_state(connection, queue)}


@conformance
def test_message_ttl_zero_still_reaches_a_waiting_consumer(pika, connect, names):
    connection = connect()
    channel = _confirming(connection)
    queue = _queue(channel, names.q("q"), {"x-message-ttl": 0})
    consumer = connection.channel()
    inbox = Inbox(ack=True)
    consumer.basic_consume(queue, inbox)
    channel.basic_publish("", queue, b"now")
    pump(connection, lambda: len(inbox) == 1)
    linger(connection)
    return {"consumed": inbox.bodies}


@conformance
def test_the_expiration_property_is_a_per_message_ttl_in_milliseconds(pika, connect, names):
    connection = connect()
    channel = _confirming(connection)
    queue = _queue(channel, names.q("q"))
    for body, expiration in (("short", str(TTL)), ("zero", "0"), ("long", str(LONG)), ("none", None)):
        channel.basic_publish("", queue, body.encode(), pika.BasicProperties(expiration=expiration))
    time.sleep(AFTER_TTL)
    left = []
    while (taken := _take(channel, queue)) is not None:
        left.append([taken["body"], taken["expiration"]])
    return {"left": left}


@conformance
def test_the_lower_of_queue_and_message_ttl_wins(pika, connect, names):
    connection = connect()
    channel = _confirming(connection)
    queue_lower = _queue(channel, names.q("queue-lower"), {"x-message-ttl": TTL})
    message_lower = _queue(channel, names.q("message-lower"), {"x-message-ttl": LONG})
    channel.basic_publish("", queue_lower, b"long-expiration", pika.BasicProperties(expiration=str(LONG)))
    channel.basic_publish("", message_lower, b"short-expiration", pika.BasicProperties(expiration=str(TTL)))
    channel.basic_publish("", message_lower, b"no-expiration")
    time.sleep(AFTER_TTL)
    return {"queue_ttl_lower": bodies(channel, queue_lower), "message_ttl_lower": bodies(channel, message_lower)}


@conformance
def test_a_requeued_message_keeps_its_original_expiry(pika, connect, names):
    connection = connect()
    channel = _confirming(connection)
    # 300 ms of slack each way: a loaded machine can stall a step for a tenth of a second or more.
    queue = _queue(channel, names.q("q"), {"x-message-ttl": 900})
    channel.basic_publish("", queue, b"m")
    published = time.monotonic()
    first = channel.basic_get(queue)
    time.sleep(max(0.0, published + 0.6 - time.monotonic()))
    channel.basic_nack(first[0].delivery_tag, requeue=True)
    again = channel.basic_get(queue)  # 600 ms after publishing: still within its 900 ms
    channel.basic_nack(again[0].delivery_tag, requeue=True)
    time.sleep(max(0.0, published + 1.2 - time.monotonic()))
    # 1200 ms after publishing but only 600 ms after the requeue: gone, so the clock was not restarted
    return {"again": [again[2], again[0].redelivered], "after_original_ttl": list(channel.basic_get(queue))}


@conformance
def test_a_message_held_past_its_ttl_is_dropped_when_requeued(pika, connect, names):
    connection = connect()
    channel = _confirming(connection)
    queue = _queue(channel, names.q("q"), {"x-message-ttl": TTL})
    channel.basic_publish("", queue, b"m")
    method = channel.basic_get(queue)[0]
    time.sleep(AFTER_TTL)
    channel.basic_nack(method.delivery_tag, requeue=True)
    return {"then": list(channel.basic_get(queue)), "state": queue_state(connection, queue)}


# --- queue TTL


@conformance
def test_an_unused_queue_is_deleted_after_x_expires_even_with_messages(pika, connect, names):
    connection = connect()
    channel = _confirming(connection)
    empty = _queue(channel, names.q("empty"), {"x-expires": 150})
    loaded = _queue(channel, names.q("loaded"), {"x-expires": 150})
    channel.basic_publish("", loaded, b"m")
    time.sleep(0.35)  # untouched: a passive declare would count as a use
    return {"empty": queue_state(connection, empty), "loaded": queue_state(connection, loaded),
            "channel_open": channel.is_open}


@conformance
def test_a_consumer_keeps_an_expiring_queue_alive_until_it_cancels(pika, connect, names):
    connection = connect()
    channel = connection.channel()
    queue = _queue(channel, names.q("q"), {"x-expires": 150})
    tag = channel.basic_consume(queue, Inbox())
    linger(connection, 0.35)
    while_consumed = queue_state(connection, queue)
    channel.basic_cancel(tag)
    time.sleep(0.35)
    return {"while_consumed": while_consumed, "after_cancel": queue_state(connection, queue)}


@conformance
def test_basic_get_and_passive_declare_count_as_uses_of_an_expiring_queue(pika, connect, names):
    connection = connect()
    channel = connection.channel()
    got = _queue(channel, names.q("got"), {"x-expires": 600})
    polled = _queue(channel, names.q("polled"), {"x-expires": 600})
    for _ in range(8):  # 1.2 s in all, never 600 ms without a use (the slack is for a loaded machine)
        channel.basic_get(got)
        queue_state(connection, polled)
        time.sleep(0.15)
    return {"got": queue_state(connection, got), "polled": queue_state(connection, polled)}


# --- dead-lettering


@conformance
def test_rejected_and_nacked_messages_are_dead_lettered_with_their_original_routing_key(pika, connect, names):
    connection = connect()
    channel = _confirming(connection)
    dlx = names.x("dlx")
    channel.exchange_declare(dlx, "direct")
    entry = names.x("in")
    channel.exchange_declare(entry, "direct")
    source = _queue(channel, names.q("source"), {"x-dead-letter-exchange": dlx})
    channel.queue_bind(source, entry, routing_key="orig")
    dead = _queue(channel, names.q("dead"))
    channel.queue_bind(dead, dlx, routing_key="orig")
    channel.basic_publish(entry, "orig", b"rejected", pika.BasicProperties(
        headers={"app": "kept"}, content_type="text/plain", correlation_id="c1", delivery_mode=2))
    channel.basic_publish(entry, "orig", b"nacked", pika.BasicProperties(expiration=str(LONG)))
    channel.basic_reject(channel.basic_get(source)[0].delivery_tag, requeue=False)
    channel.basic_nack(channel.basic_get(source)[0].delivery_tag, requeue=False)
    _arrived(connection, dead, 2)
    method, properties, body = channel.basic_get(dead, auto_ack=True)
    rejected = {**_view(method, properties, body), "content_type": properties.content_type,
                "correlation_id": properties.correlation_id, "delivery_mode": properties.delivery_mode}
    return {"rejected": rejected, "nacked": _take(channel, dead), "source": queue_state(connection, source)}


@conformance
def test_x_dead_letter_routing_key_replaces_the_routing_key(pika, connect, names):
    connection = connect()
    channel = _confirming(connection)
    dlx = names.x("dlx")
    channel.exchange_declare(dlx, "direct")
    source = _queue(channel, names.q("source"), {"x-dead-letter-exchange": dlx,
                                                 "x-dead-letter-routing-key": "dead-key"})
    by_new_key = _queue(channel, names.q("by-new-key"))
    channel.queue_bind(by_new_key, dlx, routing_key="dead-key")
    by_old_key = _queue(channel, names.q("by-old-key"))
    channel.queue_bind(by_old_key, dlx, routing_key=source)
    channel.basic_publish("", source, b"m")
    channel.basic_reject(channel.basic_get(source)[0].delivery_tag, requeue=False)
    _arrived(connection, by_new_key)
    return {"by_new_key": _take(channel, by_new_key), "by_old_key": queue_state(connection, by_old_key)}


@conformance
def test_the_default_exchange_can_be_the_dead_letter_exchange(pika, connect, names):
    connection = connect()
    channel = _confirming(connection)
    target = _queue(channel, names.q("target"))
    source = _queue(channel, names.q("source"), {"x-dead-letter-exchange": "",
                                                 "x-dead-letter-routing-key": target})
    channel.basic_publish("", source, b"m")
    channel.basic_nack(channel.basic_get(source)[0].delivery_tag, requeue=False)
    _arrived(connection, target)
    return {"target": _take(channel, target)}


@conformance
def test_a_consumer_rejection_dead_letters_like_basic_get(pika, connect, names):
    connection = connect()
    channel = _confirming(connection)
    dlx, dead = _dead_letter_setup(channel, names)
    source = _queue(channel, names.q("source"), {"x-dead-letter-exchange": dlx})
    consumer = connection.channel()
    seen = []

    def reject(ch, method, properties, body):
        seen.append(body.decode())
        ch.basic_reject(method.delivery_tag, requeue=False)

    consumer.basic_consume(source, reject)
    channel.basic_publish("", source, b"m")
    pump(connection, lambda: len(seen) == 1)
    _arrived(connection, dead)
    return {"seen": seen, "dead": _take(channel, dead)}


@conformance
def test_expired_messages_are_dead_lettered_and_lose_their_expiration(pika, connect, names):
    connection = connect()
    channel = _confirming(connection)
    dlx, dead = _dead_letter_setup(channel, names)
    by_queue_ttl = _queue(channel, names.q("queue-ttl"), {"x-message-ttl": TTL, "x-dead-letter-exchange": dlx})
    by_expiration = _queue(channel, names.q("expiration"), {"x-dead-letter-exchange": dlx})
    channel.basic_publish("", by_queue_ttl, b"queue-ttl", pika.BasicProperties(headers={"app": 1}))
    _arrived(connection, dead)
    first = _take(channel, dead)
    channel.basic_publish("", by_expiration, b"expiration", pika.BasicProperties(expiration=str(TTL)))
    _arrived(connection, dead)
    second = _take(channel, dead)
    channel.basic_publish("", by_queue_ttl, b"both", pika.BasicProperties(expiration=str(LONG)))
    _arrived(connection, dead)
    third = _take(channel, dead)
    return {"queue_ttl": first, "expiration": second, "queue_ttl_with_longer_expiration": third,
            "sources": [queue_state(connection, by_queue_ttl), queue_state(connection, by_expiration)]}


@conformance
def test_a_wait_queue_with_ttl_and_dead_letter_exchange_retries_into_the_work_queue(pika, connect, names):
    connection = connect()
    channel = _confirming(connection)
    work, wait = names.q("work"), names.q("wait")
    _queue(channel, work, {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": wait})
    _queue(channel, wait, {"x-message-ttl": TTL, "x-dead-letter-exchange": "",
                           "x-dead-letter-routing-key": work})
    consumer = connection.channel()
    inbox = Inbox()

    def fail_once(ch, method, properties, body):
        inbox(ch, method, properties, body)
        inbox.received[-1]["headers"] = _headers(properties.headers)
        if len(inbox) == 1:
            ch.basic_reject(method.delivery_tag, requeue=False)
        else:
            ch.basic_ack(method.delivery_tag)

    consumer.basic_consume(work, fail_once)
    channel.basic_publish("", work, b"job")
    pump(connection, lambda: len(inbox) == 2)
    linger(connection)
    return {"received": inbox.received, "states": [queue_state(connection, work), queue_state(connection, wait)]}


@conformance
def test_dead_lettering_twice_from_one_queue_for_one_reason_counts_in_one_x_death_entry(pika, connect, names):
    connection = connect()
    channel = _confirming(connection)
    dlx, dead = _dead_letter_setup(channel, names)
    source = _queue(channel, names.q("source"), {"x-dead-letter-exchange": dlx})
    entry = names.x("in")
    channel.exchange_declare(entry, "direct")
    channel.queue_bind(source, entry, routing_key="second-key")
    channel.basic_publish("", source, b"m", pika.BasicProperties(headers={"app": 1}))
    channel.basic_reject(channel.basic_get(source)[0].delivery_tag, requeue=False)
    _arrived(connection, dead)
    method, properties, body = channel.basic_get(dead, auto_ack=True)
    once = _headers(properties.headers)
    # the client publishes it again, headers and all, by another exchange and key; it is rejected again
    channel.basic_publish(entry, "second-key", body, properties)
    channel.basic_reject(channel.basic_get(source)[0].delivery_tag, requeue=False)
    _arrived(connection, dead)
    return {"once": once, "twice": _take(channel, dead)}


@conformance
def test_dead_lettering_from_a_second_queue_puts_its_x_death_entry_first(pika, connect, names):
    connection = connect()
    channel = _confirming(connection)
    dlx, dead = _dead_letter_setup(channel, names)
    second = _queue(channel, names.q("second"), {"x-dead-letter-exchange": dlx})
    first = _queue(channel, names.q("first"), {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": second})
    channel.basic_publish("", first, b"m")
    channel.basic_reject(channel.basic_get(first)[0].delivery_tag, requeue=False)
    _arrived(connection, second)
    channel.basic_nack(channel.basic_get(second)[0].delivery_tag, requeue=False)
    _arrived(connection, dead)
    return {"dead": _take(channel, dead)}


@conformance
def test_the_retry_loop_counts_each_queue_and_reason_and_moves_the_latest_first(pika, connect, names):
    connection = connect()
    channel = _confirming(connection)
    work, wait = names.q("work"), names.q("wait")
    entry = names.x("in")
    channel.exchange_declare(entry, "direct")
    _queue(channel, work, {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": wait})
    channel.queue_bind(work, entry, routing_key="job-key")
    _queue(channel, wait, {"x-message-ttl": TTL, "x-dead-letter-exchange": "",
                           "x-dead-letter-routing-key": work})
    channel.basic_publish(entry, "job-key", b"job")
    deliveries = []
    for attempt in range(3):
        _arrived(connection, work)
        method, properties, body = channel.basic_get(work)
        deliveries.append({"exchange": method.exchange, "routing_key": method.routing_key,
                           "headers": _headers(properties.headers)})
        if attempt < 2:
            channel.basic_reject(method.delivery_tag, requeue=False)
        else:
            channel.basic_ack(method.delivery_tag)
    return {"deliveries": deliveries}


def _expiring_loop_with_witness(connection, names):
    """A queue whose messages expire into a fanout dead-letter exchange bound back to it, and a witness queue on
    that exchange that sees each expiry: (channel, loop, witness)."""
    channel = _confirming(connection)
    dlx = names.x("dlx")
    channel.exchange_declare(dlx, "fanout")
    loop = _queue(channel, names.q("loop"), {"x-message-ttl": TTL, "x-dead-letter-exchange": dlx})
    witness = _queue(channel, names.q("witness"))
    for queue in (loop, witness):
        channel.queue_bind(queue, dlx)
    return channel, loop, witness


@conformance
def test_a_message_expiring_back_into_its_own_queue_is_dropped_as_a_cycle(pika, connect, names):
    connection = connect()
    channel, loop, witness = _expiring_loop_with_witness(connection, names)
    channel.basic_publish("", loop, b"m")
    _arrived(connection, witness)
    time.sleep(AFTER_TTL)  # had it gone back into the loop, it would have expired into the witness again
    return {"witness": queue_state(connection, witness), "loop": queue_state(connection, loop),
            "seen": _take(channel, witness)}


@conformance
def test_an_expiry_cycle_through_two_queues_is_dropped_on_its_way_back(pika, connect, names):
    connection = connect()
    channel = _confirming(connection)
    first, second = names.q("first"), names.q("second")
    to_second, to_first = names.x("to-second"), names.x("to-first")
    witness = _queue(channel, names.q("witness"))
    for exchange in (to_second, to_first):
        channel.exchange_declare(exchange, "fanout")
        channel.queue_bind(witness, exchange)
    _queue(channel, first, {"x-message-ttl": TTL, "x-dead-letter-exchange": to_second})
    _queue(channel, second, {"x-message-ttl": TTL, "x-dead-letter-exchange": to_first})
    channel.queue_bind(second, to_second)
    channel.queue_bind(first, to_first)
    channel.basic_publish("", first, b"m")
    _arrived(connection, witness, 2)
    time.sleep(AFTER_TTL)
    seen = [_take(channel, witness), _take(channel, witness)]
    return {"seen": seen, "witness_after": queue_state(connection, witness),
            "states": [queue_state(connection, first), queue_state(connection, second)]}


@conformance
def test_a_cycle_with_a_rejection_in_it_is_not_dropped(pika, connect, names):
    connection = connect()
    channel = _confirming(connection)
    loop = names.q("loop")
    _queue(channel, loop, {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": loop})
    channel.basic_publish("", loop, b"m")
    seen = []
    for _ in range(3):
        _arrived(connection, loop)
        method, properties, body = channel.basic_get(loop)
        seen.append(_headers(properties.headers))
        channel.basic_reject(method.delivery_tag, requeue=False)
    _arrived(connection, loop)
    return {"seen": seen, "finally": _take(channel, loop)}


@conformance
def test_an_expiry_back_into_the_same_queue_is_a_cycle_even_after_a_rejection_there(pika, connect, names):
    connection = connect()
    channel, loop, witness = _expiring_loop_with_witness(connection, names)
    channel.basic_publish("", loop, b"m")
    channel.basic_reject(channel.basic_get(loop)[0].delivery_tag, requeue=False)  # back into loop: allowed
    _arrived(connection, witness, 2)  # then it expires: the latest lap (loop -> loop) is an expiry only
    time.sleep(AFTER_TTL)
    return {"witness": queue_state(connection, witness), "loop": queue_state(connection, loop),
            "seen": [_take(channel, witness), _take(channel, witness)]}


@conformance(litemq_differs={"queue_order_after_each_hop": [["hop1"], ["hop2", "hop1"], ["hop3", "hop2", "hop1"],
                                                             ["hop4", "hop3", "hop2", "hop1"]]},
             because="the current documentation orders x-death most recent first, as litemq does; RabbitMQ 3.10 "
                     "puts the new entry first but reverses the older ones each time")
def test_x_death_entries_are_ordered_newest_first(pika, connect, names):
    connection = connect()
    channel = _confirming(connection)
    dlx, dead = _dead_letter_setup(channel, names)
    hops = [names.q(f"hop{n}") for n in range(1, 5)]
    for hop, next_hop in zip(hops, hops[1:] + [None]):
        _queue(channel, hop, {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": next_hop}
               if next_hop else {"x-dead-letter-exchange": dlx})
    channel.basic_publish("", hops[0], b"m")
    orders = []
    for hop, next_hop in zip(hops, hops[1:] + [dead]):  # rejected from each hop in turn
        channel.basic_reject(channel.basic_get(hop)[0].delivery_tag, requeue=False)
        _arrived(connection, next_hop)
        if next_hop != dead:
            method, properties, body = channel.basic_get(next_hop)
            orders.append([entry["queue"] for entry in properties.headers["x-death"]])
            channel.basic_nack(method.delivery_tag, requeue=True)
    last = _take(channel, dead)
    orders.append([entry["queue"] for entry in last["headers"]["x-death"]])
    last["headers"]["x-death"].sort(key=lambda entry: entry["queue"])  # the order is observed above
    return {"queue_order_after_each_hop": orders, "last": last}


def _lap(view):
    """A witnessed dead-lettering, briefly: the exchange it came by and its x-death ``[queue, reason, count]``s."""
    if view is None:
        return None
    deaths = view["headers"]["x-death"]
    return [view["exchange"], [[entry["queue"], entry["reason"], entry["count"]] for entry in deaths]]


@conformance(litemq_differs={
    "left_first": [["to-second", [["first", "rejected", 1]]],
                   ["to-second", [["first", "expired", 1], ["second", "expired", 1], ["first", "rejected", 1]]]],
    "left_second": [["to-first", [["second", "expired", 1], ["first", "rejected", 1]]], None]},
    because="the current documentation drops a message that comes back to a queue with no rejection on the way, "
            "and orders x-death most recent first, as litemq does; RabbitMQ 3.10 reverses the older x-death entries "
            "each time, which puts the earlier rejection back inside the lap, so the message goes round and round")
def test_a_lap_of_only_expiries_is_a_cycle_even_after_an_earlier_rejection(pika, connect, names):
    connection = connect()
    channel = _confirming(connection)
    first, second = names.q("first"), names.q("second")
    to_second, to_first = names.x("to-second"), names.x("to-first")
    left_first, left_second = names.q("left-first"), names.q("left-second")  # witnesses of each dead-lettering
    for exchange, witness in ((to_second, left_first), (to_first, left_second)):
        channel.exchange_declare(exchange, "fanout")
        _queue(channel, witness)
        channel.queue_bind(witness, exchange)
    _queue(channel, first, {"x-message-ttl": 150, "x-dead-letter-exchange": to_second})
    _queue(channel, second, {"x-message-ttl": TTL, "x-dead-letter-exchange": to_first})
    channel.queue_bind(second, to_second)
    channel.queue_bind(first, to_first)
    channel.basic_publish("", first, b"m")
    channel.basic_reject(channel.basic_get(first)[0].delivery_tag, requeue=False)
    # rejected into second, expired back into first, expired from first again: second -> first -> second is a
    # lap of expiries only, so the message does not enter second again (the witness left_first still sees it)
    eventually(lambda: queue_state(connection, left_first)[0] >= 2, True)
    time.sleep(AFTER_TTL)  # had it entered second, it would have expired into left_second by now
    return {"left_first": [_lap(_take(channel, left_first)), _lap(_take(channel, left_first))],
            "left_second": [_lap(_take(channel, left_second)), _lap(_take(channel, left_second))]}


@conformance
def test_a_missing_dead_letter_exchange_drops_the_message_quietly(pika, connect, names):
    connection = connect()
    channel = _confirming(connection)
    rejected = _queue(channel, names.q("rejected"), {"x-dead-letter-exchange": names.x("missing")})
    expired = _queue(channel, names.q("expired"), {"x-dead-letter-exchange": names.x("missing"),
                                                   "x-message-ttl": TTL})
    channel.basic_publish("", rejected, b"m")
    channel.basic_publish("", expired, b"m")
    channel.basic_reject(channel.basic_get(rejected)[0].delivery_tag, requeue=False)
    time.sleep(AFTER_TTL)
    return {"rejected": queue_state(connection, rejected), "expired": queue_state(connection, expired),
            "channel_open": channel.is_open, "connection_open": connection.is_open,
            "publish_after": outcome(lambda: channel.basic_publish("", rejected, b"n"))}


# --- length limits


@conformance
def test_x_max_length_drops_the_oldest_ready_messages(pika, connect, names):
    connection = connect()
    channel = _confirming(connection)
    queue = _queue(channel, names.q("q"), {"x-max-length": 2})
    publishes = [outcome(lambda n=n: channel.basic_publish("", queue, f"m{n}".encode())) for n in range(4)]
    return {"publishes": publishes, "left": bodies(channel, queue)}


@conformance
def test_x_max_length_zero_keeps_nothing(pika, connect, names):
    connection = connect()
    channel = _confirming(connection)
    queue = _queue(channel, names.q("q"), {"x-max-length": 0})
    publish = outcome(lambda: channel.basic_publish("", queue, b"m"))
    return {"publish": publish, "state": queue_state(connection, queue)}


@conformance
def test_x_max_length_dead_letters_the_dropped_messages_as_maxlen(pika, connect, names):
    connection = connect()
    channel = _confirming(connection)
    dlx, dead = _dead_letter_setup(channel, names)
    queue = _queue(channel, names.q("q"), {"x-max-length": 1, "x-dead-letter-exchange": dlx})
    for n in range(3):
        channel.basic_publish("", queue, f"m{n}".encode())
    _arrived(connection, dead, 2)
    return {"left": bodies(channel, queue), "dead": [_take(channel, dead), _take(channel, dead)]}


@conformance
def test_unacked_messages_do_not_count_toward_x_max_length(pika, connect, names):
    connection = connect()
    channel = _confirming(connection)
    queue = _queue(channel, names.q("q"), {"x-max-length": 2})
    channel.basic_publish("", queue, b"m0")
    held = channel.basic_get(queue)[0]
    for n in range(1, 4):
        channel.basic_publish("", queue, f"m{n}".encode())
    while_held = queue_state(connection, queue)
    channel.basic_nack(held.delivery_tag, requeue=True)  # back at the head, one over the limit: dropped
    return {"while_held": while_held, "left": bodies(channel, queue), "after": queue_state(connection, queue)}


@conformance
def test_x_max_length_bytes_counts_the_bodies_of_ready_messages(pika, connect, names):
    connection = connect()
    channel = _confirming(connection)
    queue = _queue(channel, names.q("q"), {"x-max-length-bytes": 10})
    big_headers = pika.BasicProperties(headers={"padding": "x" * 200}, content_type="application/octet-stream")
    for body in (b"aaaa", b"bbbb", b"cc"):  # 10 bytes: full but not over, whatever the headers
        channel.basic_publish("", queue, body, big_headers)
    full = queue_state(connection, queue)
    channel.basic_publish("", queue, b"d")  # 11 bytes: the oldest goes
    after_one_more = queue_state(connection, queue)
    held = channel.basic_get(queue)[0]  # bbbb is unacked: 3 ready bytes
    channel.basic_publish("", queue, b"eeeeeee")  # 10 ready bytes
    left = bodies(channel, queue)
    channel.basic_ack(held.delivery_tag)
    channel.basic_publish("", queue, b"too-long-alone")  # 14 bytes into an empty queue
    return {"full": full, "after_one_more": after_one_more, "left": left,
            "oversized_alone": queue_state(connection, queue)}


@conformance
def test_reject_publish_nacks_or_drops_the_newest_and_leaves_other_queues_alone(pika, connect, names):
    connection = connect()
    channel = _confirming(connection)
    limited = _queue(channel, names.q("limited"), {"x-max-length": 2, "x-overflow": "reject-publish"})
    other = _queue(channel, names.q("other"))
    fanout = names.x("fanout")
    channel.exchange_declare(fanout, "fanout")
    for queue in (limited, other):
        channel.queue_bind(queue, fanout)
    observed = {"publishes": [outcome(lambda n=n: channel.basic_publish("", limited, f"m{n}".encode()))
                              for n in range(3)]}
    unconfirmed = connection.channel()
    unconfirmed.basic_publish("", limited, b"unconfirmed")
    observed["unconfirmed_channel_open"] = outcome(lambda: unconfirmed.queue_declare(limited, passive=True))
    observed["fanout"] = outcome(lambda: channel.basic_publish(fanout, "", b"fanned"))
    observed["other"] = bodies(channel, other)
    held = channel.basic_get(limited)[0]  # m0 is unacked: room for one more
    observed["while_held"] = outcome(lambda: channel.basic_publish("", limited, b"m3"))
    observed["one_too_many"] = outcome(lambda: channel.basic_publish("", limited, b"m4"))
    channel.basic_nack(held.delivery_tag, requeue=True)  # back, over the limit
    observed["after_requeue"] = eventually(lambda: queue_state(connection, limited), [3, 0])
    observed["left"] = bodies(channel, limited)
    return observed


@conformance
def test_reject_publish_dlx_dead_letters_the_refused_message_and_nacks_it(pika, connect, names):
    connection = connect()
    channel = _confirming(connection)
    dlx, dead = _dead_letter_setup(channel, names)
    queue = _queue(channel, names.q("q"), {"x-max-length": 1, "x-overflow": "reject-publish-dlx",
                                           "x-dead-letter-exchange": dlx})
    publishes = [outcome(lambda n=n: channel.basic_publish("", queue, f"m{n}".encode())) for n in range(2)]
    _arrived(connection, dead)
    return {"publishes": publishes, "left": bodies(channel, queue), "dead": _take(channel, dead)}


@conformance
def test_reject_publish_without_a_dead_letter_exchange_only_nacks(pika, connect, names):
    connection = connect()
    channel = _confirming(connection)
    queue = _queue(channel, names.q("q"), {"x-max-length": 1, "x-overflow": "reject-publish-dlx"})
    publishes = [outcome(lambda n=n: channel.basic_publish("", queue, f"m{n}".encode())) for n in range(2)]
    return {"publishes": publishes, "left": bodies(channel, queue)}


# --- invalid values


def _refusal(connection, action, *mentions):
    """``[outcome, gist of the reply text]`` of an action on a fresh channel (None when it was not refused); the
    gist says whether the text mentions each of ``mentions``."""
    channel = connection.channel()
    text = None

    def call():
        nonlocal text
        try:
            action(channel)
        except Exception as exc:
            text = getattr(exc, "reply_text", None)
            raise

    result = outcome(call)
    return [result, reply_gist(text, *mentions)]


INVALID_QUEUE_ARGUMENTS = {
    "message_ttl_negative": {"x-message-ttl": -1},
    "message_ttl_string": {"x-message-ttl": "abc"},
    "expires_zero": {"x-expires": 0},
    "expires_negative": {"x-expires": -5},
    "max_length_negative": {"x-max-length": -1},
    "max_length_bytes_negative": {"x-max-length-bytes": -1},
    "max_length_string": {"x-max-length": "10"},
    "overflow_bogus": {"x-overflow": "bogus"},
    "routing_key_without_exchange": {"x-dead-letter-routing-key": "k"},
    "dead_letter_exchange_number": {"x-dead-letter-exchange": 5},
}


@conformance
def test_invalid_ttl_dead_letter_and_length_arguments_are_refused_406(pika, connect, names):
    connection = connect()
    observed = {}
    for case, arguments in INVALID_QUEUE_ARGUMENTS.items():
        queue = names.q(case.replace("_", "-"))
        code, gist = _refusal(connection, lambda ch: ch.queue_declare(queue, arguments=arguments),
                              *arguments, queue)  # the text names the argument and the queue
        observed[case] = [code, queue_state(connection, queue)]
        observed[case + "_text"] = gist
    observed["connection_open"] = connection.is_open
    return observed


@conformance
def test_valid_edge_values_of_these_arguments_are_accepted(pika, connect, names):
    connection = connect()
    observed = {}
    for case, arguments in {"message_ttl_zero": {"x-message-ttl": 0}, "expires_positive": {"x-expires": 1000},
                            "max_length_zero": {"x-max-length": 0}, "max_length_bytes_zero": {"x-max-length-bytes": 0},
                            "dead_letter_exchange_empty": {"x-dead-letter-exchange": ""},
                            "drop_head": {"x-overflow": "drop-head"},
                            "reject_publish": {"x-overflow": "reject-publish"},
                            "reject_publish_dlx": {"x-overflow": "reject-publish-dlx"}}.items():
        queue = names.q(case.replace("_", "-"))
        observed[case] = _refusal(connection, lambda ch: ch.queue_declare(queue, arguments=arguments))[0]
    return observed


@conformance
def test_an_invalid_expiration_property_closes_the_channel(pika, connect, names):
    connection = connect()
    queue = _queue(connection.channel(), names.q("q"))
    observed = {}
    for case, expiration in {"letters": "abc", "negative": "-1", "empty": "", "fraction": "1.5"}.items():
        def publish(channel, expiration=expiration):
            channel.confirm_delivery()
            channel.basic_publish("", queue, b"m", pika.BasicProperties(expiration=expiration))
        code, gist = _refusal(connection, publish, "expiration", expiration)
        observed[case] = code
        observed[case + "_text"] = gist
    observed["connection_open"] = connection.is_open
    observed["state"] = queue_state(connection, queue)
    return observed
