"""The asyncio targets, side by side in one run: ``python bench/asyncio_targets.py [--messages N] [--url URL]``.

1. Idle: 1,000 ``async for`` consumers on 1,000 queues in one process (one connection) for some seconds: the CPU
   the process used, as a share of one core, and the event loop's lag meanwhile (a callback handed to the loop
   from another thread every millisecond, how long until it ran: p50, p99, max), beside the same measure without
   consumers; at normal priority,
   then at real-time priority where allowed (root on Linux), where other programs no longer delay the loop.
2. Two processes, a publisher and a consumer (prefetch 100, acking each message): throughput of a burst, and the
   latency of paced messages (one every 2 ms), p50 and p99, for litemq's blocking API, litemq.aio, and aio-pika on
   the RabbitMQ at 127.0.0.1:5672; in rounds where the systems take turns (the median rate, latencies pooled).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import multiprocessing
import os
import statistics
import struct
import sys
import tempfile
import threading
import time
from typing import Any, Callable

QUEUE = "bench-async"
AMQP = "amqp://guest:guest@127.0.0.1:5672/"


# --- 1. idle consumers

TICK = 0.001


async def _lag(seconds: float) -> tuple[float, list[float]]:
    """The loop's lag for some seconds: every millisecond another thread hands the loop a callback
    (``call_soon_threadsafe``, as a finished statement or a socket's data is handed to it) and records how long it
    waited until the loop ran it. A timer would measure epoll's millisecond rounding instead. Also the CPU the
    process used meanwhile, a share of one core."""
    loop = asyncio.get_running_loop()
    lateness: list[float] = []
    stop = threading.Event()

    def ran(handed: float) -> None:
        lateness.append(time.perf_counter() - handed)

    def poke() -> None:
        while not stop.wait(TICK):
            loop.call_soon_threadsafe(ran, time.perf_counter())

    cpu = time.process_time()
    poker = threading.Thread(target=poke, daemon=True)
    poker.start()
    await asyncio.sleep(seconds)
    stop.set()
    poker.join()
    return (time.process_time() - cpu) / seconds, lateness


async def _idle(url: str, consumers: int, seconds: float) -> tuple[float, float, list[float]]:
    """``consumers`` idle consumers on as many queues: their CPU alone, then the lag and CPU with the ticker."""
    import litemq.aio

    async with litemq.aio.connect(url) as conn:
        for n in range(consumers):
            await conn.declare_queue(f"idle-{n}")
        fetches = [asyncio.ensure_future(conn.consume(f"idle-{n}").get()) for n in range(consumers)]
        await asyncio.sleep(2.0)  # all of them waiting, their first claims and steps done (on a busy machine, slowly)
        cpu = time.process_time()
        await asyncio.sleep(seconds)
        alone = (time.process_time() - cpu) / seconds
        used, lateness = await _lag(seconds)
        assert not any(fetch.done() for fetch in fetches)
        for fetch in fetches:
            fetch.cancel()
    return alone, used, lateness


def _realtime() -> bool:
    """Run this process at a real-time priority where allowed (root on Linux), so that what other programs on
    the machine run does not delay the loop: what lag remains is this process's own."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))  # type: ignore[attr-defined]
    except (AttributeError, OSError):
        return False
    return True


def _realtime_allowed() -> bool:
    try:
        return os.sched_get_priority_min(os.SCHED_FIFO) >= 0 and (os.geteuid() == 0)  # type: ignore[attr-defined]
    except (AttributeError, OSError):
        return False


def _idle_part(url: str, consumers: int, seconds: float, realtime: bool, out: Any) -> None:
    """In a process of its own: the ticker alone, then with the idle consumers."""
    if realtime:
        realtime = _realtime()
    _, bare = asyncio.run(_lag(seconds))
    alone, used, lateness = asyncio.run(_idle(url, consumers, seconds))
    out.put((realtime, alone, used, lateness, bare))


def _lags(lateness: list[float]) -> str:
    ordered = sorted(lateness)
    return (f"p50 {1000 * ordered[len(ordered) // 2]:.3f} ms, p99 {1000 * ordered[int(len(ordered) * 0.99)]:.3f} "
            f"ms, max {1000 * ordered[-1]:.3f} ms")


def _report_idle(url: str, consumers: int, seconds: float, realtime: bool) -> None:
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    process = context.Process(target=_idle_part, args=(url, consumers, seconds, realtime, out))
    process.start()
    got_realtime, alone, used, lateness, bare = out.get(timeout=120 + 4 * seconds)
    process.join(60)
    priority = "real-time priority (SCHED_FIFO)" if got_realtime else "normal priority"
    print(f"1. {consumers} idle async consumers on {consumers} queues, one process, {seconds:g} s at {priority}: "
          f"{100 * alone:.2f} % of a core (target < 1 %)")
    print(f"   event loop lag while they wait (a callback handed to the loop from another thread every "
          f"{1000 * TICK:g} ms, how long until it ran; {len(lateness):,} of them): {_lags(lateness)} (target < 1 ms); "
          f"{100 * used:.1f} % of a core with the measuring")
    print(f"   the same measure in the same process before, no consumers: {_lags(bare)} (what the machine adds)")


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


def _run(main: Any, loop: str) -> None:
    """``asyncio.run``, or uvloop's loop where asked (as uvicorn runs a FastAPI service when uvloop is installed)."""
    if loop == "uvloop":
        import uvloop

        uvloop.run(main)
    else:
        asyncio.run(main)


def _aio_publisher(url: str, count: int, pace: float, loop: str = "asyncio") -> None:
    async def run() -> None:
        import litemq.aio

        async with litemq.aio.connect(url) as conn:
            for _ in range(count):
                await conn.publish("", QUEUE, _stamp())
                if pace:
                    await asyncio.sleep(pace)

    _run(run(), loop)


def _aio_consumer(url: str, count: int, out: Any, loop: str = "asyncio") -> None:
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

    _run(run(), loop)


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
    if system.startswith("aio-pika/RabbitMQ"):
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


def _at_priority(realtime: bool, target: Callable[..., None], *args: Any) -> None:
    if realtime:
        _realtime()
    target(*args)


def _pair(system: str, url: str, publisher: Callable[..., None], consumer: Callable[..., None], count: int,
          pace: float, realtime: bool = False) -> tuple[float, list[float]]:
    _prepare(system, url)
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    receiving = context.Process(target=_at_priority, args=(realtime, consumer, url, count, out))
    receiving.start()
    assert out.get(timeout=60) == "ready"
    started = time.time()
    sending = context.Process(target=_at_priority, args=(realtime, publisher, url, count, pace))
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
UVLOOP_SYSTEMS = {
    "litemq.aio, uvloop": (functools.partial(_aio_publisher, loop="uvloop"),
                           functools.partial(_aio_consumer, loop="uvloop")),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=5000, help="burst size (default 5000)")
    parser.add_argument("--paced", type=int, default=500, help="paced messages for latency (default 500)")
    parser.add_argument("--consumers", type=int, default=1000)
    parser.add_argument("--idle-seconds", type=float, default=5.0)
    parser.add_argument("--url", help="a litemq store (default: a temp file)")
    parser.add_argument("--no-realtime", dest="realtime", action="store_false",
                        help="part 1 at normal priority only (by default it runs again at real-time priority "
                             "where allowed, so that the machine's other programs do not delay the loop)")
    parser.add_argument("--realtime-pairs", action="store_true",
                        help="part 2 again at real-time priority (the clients; a broker's server keeps its own)")
    parser.add_argument("--uvloop", action="store_true",
                        help="part 2 also runs litemq.aio on uvloop's event loop (the bench extra installs it)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of part 2, the systems taking turns: the median rate, latencies pooled")
    args = parser.parse_args()
    if args.uvloop:
        try:
            import uvloop  # noqa: F401
        except ImportError:
            parser.error("--uvloop needs uvloop (pip install uvloop, or the bench extra)")
    directory = tempfile.mkdtemp(prefix="litemq-bench-async-")
    url = args.url or os.path.join(directory, "bench.db")
    idle_url = args.url or os.path.join(directory, "idle.db")

    for realtime in ([False, True] if args.realtime else [False]):
        _report_idle(idle_url, args.consumers, args.idle_seconds, realtime)
    if not args.rounds:
        return
    for realtime in ([False, True] if args.realtime and args.realtime_pairs else [False]):
        _report_pairs(args, url, realtime)
    sys.stdout.flush()


def _report_pairs(args: Any, url: str, realtime: bool) -> None:
    if realtime and not _realtime_allowed():
        return
    print()
    priority = "real-time priority (SCHED_FIFO; RabbitMQ's server at its own)" if realtime else "normal priority"
    print(f"2. two processes, {args.messages} messages in a burst (prefetch 100, ack each); {args.paced} paced "
          f"one every 2 ms for latency; {args.rounds} rounds; at {priority}")
    print(f"   {'system':<20} {'msg/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
    systems = {**SYSTEMS, **(UVLOOP_SYSTEMS if args.uvloop else {})}
    rates: dict[str, list[float]] = {system: [] for system in systems}
    latencies: dict[str, list[float]] = {system: [] for system in systems}
    failed: dict[str, str] = {}
    for _ in range(args.rounds):  # the systems take turns, so a spell of load elsewhere hits them alike
        for system, (publisher, consumer) in systems.items():
            if system in failed:
                continue
            try:
                rates[system].append(_pair(system, url, publisher, consumer, args.messages, 0.0, realtime)[0])
                latencies[system].extend(_pair(system, url, publisher, consumer, args.paced, 0.002, realtime)[1])
            except Exception as exc:  # RabbitMQ unreachable: say so, go on
                failed[system] = f"{type(exc).__name__}: {exc}"
    for system in systems:
        if system in failed:
            print(f"   {system:<20} not measured: {failed[system]}")
            continue
        measured = sorted(latencies[system])
        print(f"   {system:<20} {statistics.median(rates[system]):>9,.0f} "
              f"{1000 * statistics.median(measured):>8.3f} {1000 * measured[int(len(measured) * 0.99)]:>8.3f}"
              f"   (msg/s of each round: {', '.join(f'{rate:,.0f}' for rate in rates[system])})")


if __name__ == "__main__":
    main()
