"""Conformance of ``litemq.aio_pika`` to aio-pika on RabbitMQ: each scenario is written once against aio-pika's API
and runs with the real aio-pika on RabbitMQ and with ``litemq.aio_pika`` on each engine (see scenario_tools.py).

Publishes go through a channel with publisher confirms (aio-pika's default), so RabbitMQ has taken a message when
``publish`` returns; settles and gets on one channel reach the queue in order, so what a ``get`` after a settle
sees is settled."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from typing import Any

from .scenario_tools import QUIET, conformance, outcome_async


async def _take(queue: Any) -> list[Any]:
    """Every ready message of the queue, acked as taken: ``[body, redelivered]`` of each."""
    taken = []
    while True:
        message = await queue.get(fail=False)
        if message is None:
            return taken
        taken.append([message.body.decode(), message.redelivered])
        await message.ack()


@conformance
async def test_declare_bind_publish_get_and_settle(aio_pika: Any, connect: Any, names: Any) -> Any:
    """A direct exchange routes by key; get, ack, nack with and without requeue, reject; the redelivered flag."""
    connection = await connect()
    channel = await connection.channel()
    exchange = await channel.declare_exchange(names.x("direct"), aio_pika.ExchangeType.DIRECT)
    queue = await channel.declare_queue(names.q("jobs"))
    await queue.bind(exchange, routing_key="job")
    for body in ("a", "b", "c"):
        await exchange.publish(aio_pika.Message(body.encode()), routing_key="job")
    await exchange.publish(aio_pika.Message(b"unbound"), routing_key="other", mandatory=False)
    first = await queue.get()
    seen = [first.body.decode(), first.redelivered, first.routing_key, first.exchange == exchange.name]
    await first.nack(requeue=True)
    again = await queue.get()
    seen.append([again.body.decode(), again.redelivered])
    await again.ack()
    second = await queue.get()
    await second.reject(requeue=False)
    third = await queue.get()
    await third.nack(requeue=False)
    empty = await outcome_async(lambda: queue.get(timeout=5))
    return {"first": seen, "left": await _take(queue), "get on an empty queue": empty,
            "second and third": [second.body.decode(), third.body.decode()]}


@conformance
async def test_prefetch_holds_back_deliveries_until_an_ack(aio_pika: Any, connect: Any, names: Any) -> Any:
    connection = await connect()
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=2)
    queue = await channel.declare_queue(names.q("work"))
    for n in range(4):
        await channel.default_exchange.publish(aio_pika.Message(str(n).encode()), routing_key=queue.name)
    received: list[Any] = []
    arrived = asyncio.Event()

    async def on_message(message: Any) -> None:
        received.append(message)
        arrived.set()

    tag = await queue.consume(on_message)
    while len(received) < 2:
        arrived.clear()
        await asyncio.wait_for(arrived.wait(), 5)
    await asyncio.sleep(QUIET)
    held = [m.body.decode() for m in received]
    await received[0].ack()
    while len(received) < 3:
        arrived.clear()
        await asyncio.wait_for(arrived.wait(), 5)
    await asyncio.sleep(QUIET)
    after_one_ack = [m.body.decode() for m in received]
    for message in received[1:]:
        await message.ack()
    await queue.cancel(tag)
    return {"held": held, "after one ack": after_one_ack}


@conformance
async def test_an_exclusive_queue_is_locked_to_other_connections(aio_pika: Any, connect: Any, names: Any) -> Any:
    owner = await connect()
    mine = await (await owner.channel()).declare_queue(names.q("mine"), exclusive=True)
    other = await connect()
    channel = await other.channel()
    declared = await outcome_async(lambda: channel.declare_queue(mine.name, passive=True))
    consumed = await outcome_async(lambda: _consume_once(other, mine.name))
    return {"passive declare from another connection": declared, "consume from another connection": consumed,
            "channel closed after": channel.is_closed}


async def _consume_once(connection: Any, name: str) -> None:
    channel = await connection.channel()
    queue = await channel.get_queue(name, ensure=False)
    await queue.consume(_ignore)


async def _ignore(message: Any) -> None:
    pass


@conformance
async def test_a_passive_declare_of_a_missing_queue_raises_and_closes_the_channel(aio_pika: Any, connect: Any,
                                                                                   names: Any) -> Any:
    connection = await connect()
    channel = await connection.channel()
    missing = await outcome_async(lambda: channel.declare_queue(names.q("missing"), passive=True))
    closed = channel.is_closed
    later = await outcome_async(lambda: channel.declare_queue(names.q("later")))
    fresh = await connection.channel()
    queue = await fresh.declare_queue(names.q("later"))
    exchange = await outcome_async(lambda: fresh.get_exchange(names.x("missing")))
    return {"missing": missing, "channel closed": closed, "next call on it": later,
            "a new channel works": queue.name.endswith("later"), "missing exchange": exchange,
            "is a subclass of ChannelClosed": issubclass(aio_pika.exceptions.ChannelNotFoundEntity,
                                                         aio_pika.exceptions.ChannelClosed)}


@conformance
async def test_the_default_exchange_routes_to_the_queue_named_by_the_key(aio_pika: Any, connect: Any,
                                                                         names: Any) -> Any:
    connection = await connect()
    channel = await connection.channel()
    queue = await channel.declare_queue(names.q("hello"))
    await channel.default_exchange.publish(aio_pika.Message(b"hi"), routing_key=queue.name)
    message = await queue.get()
    await message.ack()
    return {"body": message.body.decode(), "exchange": message.exchange, "routing key": message.routing_key,
            "default exchange name": channel.default_exchange.name}


@conformance
async def test_topic_and_fanout_routing(aio_pika: Any, connect: Any, names: Any) -> Any:
    connection = await connect()
    channel = await connection.channel()
    topic = await channel.declare_exchange(names.x("topic"), aio_pika.ExchangeType.TOPIC)
    fanout = await channel.declare_exchange(names.x("fanout"), aio_pika.ExchangeType.FANOUT)
    orange = await channel.declare_queue(names.q("orange"))
    lazy = await channel.declare_queue(names.q("lazy"))
    await orange.bind(topic, routing_key="*.orange.*")
    await lazy.bind(topic, routing_key="*.*.rabbit")
    await lazy.bind(topic, routing_key="lazy.#")
    for key in ("quick.orange.rabbit", "lazy.orange.elephant", "quick.orange.fox", "lazy.brown.fox",
                "quick.brown.fox", "lazy", "orange", "lazy.orange.male.rabbit"):
        await topic.publish(aio_pika.Message(key.encode()), routing_key=key, mandatory=False)
    left = await channel.declare_queue(names.q("left"))
    right = await channel.declare_queue(names.q("right"))
    await left.bind(fanout)
    await right.bind(fanout, routing_key="ignored")
    await fanout.publish(aio_pika.Message(b"to all"), routing_key="whatever")
    return {"orange": await _take(orange), "lazy": await _take(lazy), "fanout left": await _take(left),
            "fanout right": await _take(right)}


@conformance
async def test_message_properties_round_trip(aio_pika: Any, connect: Any, names: Any) -> Any:
    connection = await connect()
    channel = await connection.channel()
    queue = await channel.declare_queue(names.q("props"))
    sent = aio_pika.Message(
        b"{}", headers={"text": "x", "number": 7, "flag": True, "nested": {"a": 1}, "list": [1, "two"]},
        content_type="application/json", content_encoding="utf-8", delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        priority=3, correlation_id="c-1", reply_to="replies", expiration=60, message_id="m-1",
        timestamp=datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc), type="kind", app_id="app")
    await channel.default_exchange.publish(sent, routing_key=queue.name)
    got = await queue.get()
    await got.ack()
    plain = await channel.default_exchange.publish(aio_pika.Message(b"plain"), routing_key=queue.name)
    bare = await queue.get()
    await bare.ack()
    headers = {key: (value.decode() if isinstance(value, bytes) else value) for key, value in got.headers.items()}
    return {"headers": headers, "content_type": got.content_type, "content_encoding": got.content_encoding,
            "delivery_mode": int(got.delivery_mode), "priority": got.priority, "correlation_id": got.correlation_id,
            "reply_to": got.reply_to, "expiration": got.expiration, "message_id": got.message_id,
            "timestamp": got.timestamp.replace(tzinfo=None).isoformat() if got.timestamp else None,
            "type": got.type, "app_id": got.app_id, "published": getattr(plain, "name", None) == "Basic.Ack",
            "plain": [bare.headers, bare.content_type, int(bare.delivery_mode), bare.priority, bare.expiration,
                      bare.timestamp],
            "plain message_id": [type(bare.message_id).__name__, len(bare.message_id or "")]}


@conformance
async def test_process_acks_or_rejects_by_how_its_block_ends(aio_pika: Any, connect: Any, names: Any) -> Any:
    """``message.process()``: what each way of leaving the block does to the message (what is left in the queue
    after each)."""
    connection = await connect()
    channel = await connection.channel()
    queue = await channel.declare_queue(names.q("process"))

    async def next_message(body: str) -> Any:
        await channel.default_exchange.publish(aio_pika.Message(body.encode()), routing_key=queue.name)
        return await queue.get()

    async def fail(message: Any, **options: Any) -> str:
        try:
            async with message.process(**options):
                raise ValueError("handler failed")
        except ValueError:
            return "raised"
        return "swallowed"

    seen: dict[str, Any] = {}
    message = await next_message("ok")
    async with message.process():
        pass
    seen["success"] = [message.processed, await _take(queue)]
    seen["failure, requeue=True"] = [await fail(await next_message("requeued"), requeue=True), await _take(queue)]
    seen["failure, default"] = [await fail(await next_message("dropped")), await _take(queue)]
    first = await next_message("redelivered")
    await first.nack(requeue=True)
    again = await queue.get()
    seen["failure, reject_on_redelivered"] = [
        again.redelivered, await fail(again, requeue=True, reject_on_redelivered=True), await _take(queue)]
    settled = await next_message("settled")
    async with settled.process(ignore_processed=True):
        await settled.ack()
    seen["settled inside, ignore_processed"] = await _take(queue)
    twice = await next_message("twice")

    async def ack_inside_process() -> None:
        async with twice.process():
            await twice.ack()

    seen["settled inside, without ignore_processed"] = [await outcome_async(ack_inside_process), await _take(queue)]
    return seen
