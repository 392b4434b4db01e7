"""The asyncio targets, side by side in one run: ``python bench/asyncio_targets.py [--messages N] [--url URL]``.

1. Idle: 1,000 ``async for`` consumers on 1,000 queues in one process (one connection) for some seconds: the CPU
   the process used, as a share of one core, and the event loop's lag (how late a 1 ms timer fires) meanwhile.
2. Two processes, a publisher and a consumer (prefetch 100, acking each message): throughput of a burst, and the
   latency of paced messages (one every 2 ms), p50 and p99, for litemq's blocking API, litemq.aio, and aio-pika on
   the RabbitMQ at 127.0.0.1:5672; in rounds where the systems take turns (the median rate, latencies pooled).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import statistics
import struct
import sys
import tempfile
import time
from typing import Any, Callable

QUEUE = "bench-async"
AMQP = "amqp://guest:guest@127.0.0.1:5672/"


# --- 1. idle consumers

async def _ticking(seconds: float) -> tuple[float, float, float]:
    """A 1 ms timer for some seconds: the CPU used meanwhile, the timer's lateness p50 and p99."""
    lags = []
    cpu = time.process_time()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        before = time.monotonic()
        await asyncio.sleep(0.001)
        lags.append(time.monotonic() - before - 0.001)
    used = (time.process_time() - cpu) / seconds
    lags.sort()
    return used, lags[len(lags) // 2], lags[int(len(lags) * 0.99)]


async def _idle(url: str, consumers: int, seconds: float) -> tuple[float, float, float]:
    import litemq.aio

    async with litemq.aio.connect(url) as conn:
        for n in range(consumers):
            await conn.declare_queue(f"idle-{n}")
        fetches = [asyncio.ensure_future(conn.consume(f"idle-{n}").get()) for n in range(consumers)]
        await asyncio.sleep(1.0)  # all of them waiting
        measured = await _ticking(seconds)
        assert not any(fetch.done() for fetch in fetches)
        for fetch in fetches:
            fetch.cancel()
    return measured


def _idle_cpu_without_timer(url: str, consumers: int, seconds: float) -> float:
    """The same consumers, no ticker: what they cost by themselves."""
    async def run() -> float:
        import litemq.aio

        async with litemq.aio.connect(url) as conn:
            for n in range(consumers):
                await conn.declare_queue(f"idle-{n}")
            fetches = [asyncio.ensure_future(conn.consume(f"idle-{n}").get()) for n in range(consumers)]
            await asyncio.sleep(1.0)
            cpu = time.process_time()
            await asyncio.sleep(seconds)
            used = (time.process_time() - cpu) / seconds
            for fetch in fetches:
                fetch.cancel()
            return used

    return asyncio.run(run())


# --- 2. two processes

def _stamp() -> bytes:
    return struct.pack("d", time.time())


def _blocking_publisher(url: str, count: int, pace: float) -> None:
    import litemq

    with litemq.connect(url) as conn:
        for _ in range(count):
            conn.publish("", QUEUE, _stamp())
            if pace:
                time.sleep(pace)


def _blocking_consumer(url: str, count: int, out: Any) -> None:
    import litemq

    with litemq.connect(url) as conn:
        latencies = []
        out.put("ready")
        for delivery in conn.consume(QUEUE, prefetch=100):
            latencies.append(time.time() - struct.unpack("d", delivery.body)[0])
            delivery.ack()
            if len(latencies) == count:
                break
        out.put((time.time(), latencies))


def _aio_publisher(url: str, count: int, pace: float) -> None:
    async def run() -> None:
        import litemq.aio

        async with litemq.aio.connect(url) as conn:
            for _ in range(count):
                await conn.publish("", QUEUE, _stamp())
                if pace:
                    await asyncio.sleep(pace)

    asyncio.run(run())


def _aio_consumer(url: str, count: int, out: Any) -> None:
    async def run() -> None:
        import litemq.aio

        async with litemq.aio.connect(url) as conn:
            latencies = []
            out.put("ready")
            async for delivery in conn.consume(QUEUE, prefetch=100):
                latencies.append(time.time() - struct.unpack("d", delivery.body)[0])
                await delivery.ack()
                if len(latencies) == count:
                    break
            out.put((time.time(), latencies))

    asyncio.run(run())


def _aio_pika_publisher(url: str, count: int, pace: float) -> None:
    async def run() -> None:
        import aio_pika

        connection = await aio_pika.connect(AMQP)
        async with connection:
            channel = await connection.channel()
            for _ in range(count):
                await channel.default_exchange.publish(aio_pika.Message(_stamp()), routing_key=QUEUE)
                if pace:
                    await asyncio.sleep(pace)

    asyncio.run(run())


def _aio_pika_consumer(url: str, count: int, out: Any) -> None:
    async def run() -> None:
        import aio_pika

        connection = await aio_pika.connect(AMQP)
        async with connection:
            channel = await connection.channel()
            await channel.set_qos(prefetch_count=100)
            queue = await channel.declare_queue(QUEUE)
            latencies = []
            out.put("ready")
            async with queue.iterator() as messages:
                async for message in messages:
                    latencies.append(time.time() - struct.unpack("d", message.body)[0])
                    await message.ack()
                    if len(latencies) == count:
                        break
            out.put((time.time(), latencies))

    asyncio.run(run())


def _prepare(system: str, url: str) -> None:
    if system == "aio-pika/RabbitMQ":
        import pika

        connection = pika.BlockingConnection(pika.URLParameters(AMQP))
        channel = connection.channel()
        channel.queue_declare(QUEUE)
        channel.queue_purge(QUEUE)
        connection.close()
        return
    import litemq

    with litemq.connect(url) as conn:
        conn.declare_queue(QUEUE)
        conn.purge_queue(QUEUE)


def _pair(system: str, url: str, publisher: Callable[..., None], consumer: Callable[..., None], count: int,
          pace: float) -> tuple[float, list[float]]:
    _prepare(system, url)
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    receiving = context.Process(target=consumer, args=(url, count, out))
    receiving.start()
    assert out.get(timeout=60) == "ready"
    started = time.time()
    sending = context.Process(target=publisher, args=(url, count, pace))
    sending.start()
    finished, latencies = out.get(timeout=300)
    sending.join(60)
    receiving.join(60)
    return count / (finished - started), latencies


SYSTEMS = {
    "litemq blocking": (_blocking_publisher, _blocking_consumer),
    "litemq.aio": (_aio_publisher, _aio_consumer),
    "aio-pika/RabbitMQ": (_aio_pika_publisher, _aio_pika_consumer),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=5000, help="burst size (default 5000)")
    parser.add_argument("--paced", type=int, default=500, help="paced messages for latency (default 500)")
    parser.add_argument("--consumers", type=int, default=1000)
    parser.add_argument("--idle-seconds", type=float, default=5.0)
    parser.add_argument("--url", help="a litemq store (default: a temp file)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of part 2, the systems taking turns: the median rate, latencies pooled")
    args = parser.parse_args()
    directory = tempfile.mkdtemp(prefix="litemq-bench-async-")
    url = args.url or os.path.join(directory, "bench.db")
    idle_url = args.url or os.path.join(directory, "idle.db")

    own = _idle_cpu_without_timer(idle_url, args.consumers, args.idle_seconds)
    used, lag50, lag99 = asyncio.run(_idle(idle_url, args.consumers, args.idle_seconds))
    _, bare50, bare99 = asyncio.run(_ticking(args.idle_seconds))
    print(f"1. {args.consumers} idle async consumers, {args.idle_seconds:g} s: {100 * own:.2f} % of a core "
          f"(target < 1 %); with a 1 ms ticker measuring the loop: lag p50 {1000 * lag50:.3f} ms, "
          f"p99 {1000 * lag99:.3f} ms (target < 1 ms), {100 * used:.1f} % of a core with the ticker; the same "
          f"ticker on a loop of its own, no consumers: lag p50 {1000 * bare50:.3f} ms, p99 {1000 * bare99:.3f} ms "
          f"(what the machine itself adds)")
    print()
    print(f"2. two processes, {args.messages} messages in a burst (prefetch 100, ack each); {args.paced} paced "
          f"one every 2 ms for latency; {args.rounds} rounds")
    print(f"   {'system':<20} {'msg/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
    rates: dict[str, list[float]] = {system: [] for system in SYSTEMS}
    latencies: dict[str, list[float]] = {system: [] for system in SYSTEMS}
    failed: dict[str, str] = {}
    for _ in range(args.rounds):  # the systems take turns, so a spell of load elsewhere hits them alike
        for system, (publisher, consumer) in SYSTEMS.items():
            if system in failed:
                continue
            try:
                rates[system].append(_pair(system, url, publisher, consumer, args.messages, 0.0)[0])
                latencies[system].extend(_pair(system, url, publisher, consumer, args.paced, 0.002)[1])
            except Exception as exc:  # RabbitMQ unreachable: say so, go on
                failed[system] = f"{type(exc).__name__}: {exc}"
    for system in SYSTEMS:
        if system in failed:
            print(f"   {system:<20} not measured: {failed[system]}")
            continue
        measured = sorted(latencies[system])
        print(f"   {system:<20} {statistics.median(rates[system]):>9,.0f} "
              f"{1000 * statistics.median(measured):>8.3f} {1000 * measured[int(len(measured) * 0.99)]:>8.3f}"
              f"   (msg/s of each round: {', '.join(f'{rate:,.0f}' for rate in rates[system])})")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
