"""Cross-process wake-up latency and idle CPU of a waiting consumer.

    python bench/wakeup_latency.py [--rate 100] [--n 1000] [--idle 10] [--rabbitmq]

A consumer process waits on an empty queue; this process publishes one message at a time at --rate messages
per second, each carrying its publish time; the consumer records when it receives each. Then the consumer
waits --idle seconds with nothing to do and reports the CPU it used. Same file, same machine, real time.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import litemq  # noqa: E402


def consumer(path: str, n: int, idle: float, ready, results) -> None:
    with litemq.connect(path) as conn:
        conn.declare_queue("latency")
        consumer = conn.consume("latency", prefetch=1)
        ready.set()
        latencies = []
        for _ in range(n):
            delivery = consumer.get(30)
            received = time.time()
            if delivery is None:
                break
            latencies.append(received - float(delivery.body))
            delivery.ack()
        start_cpu = time.process_time()
        start = time.monotonic()
        assert consumer.get(idle) is None
        cpu = (time.process_time() - start_cpu) / (time.monotonic() - start)
        results.put((latencies, cpu))


def rabbitmq_consumer(n: int, idle: float, queue: str, ready, results) -> None:
    import pika

    connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1"))
    channel = connection.channel()
    channel.queue_declare(queue, auto_delete=True)
    channel.basic_qos(prefetch_count=1)
    latencies = []
    idle_start: list[float] = []

    def on_message(ch, method, properties, body) -> None:
        latencies.append(time.time() - float(body))
        ch.basic_ack(method.delivery_tag)
        if len(latencies) == n:  # now wait, as a consumer does, with nothing coming
            idle_start.extend((time.process_time(), time.monotonic()))
            connection.call_later(idle, ch.stop_consuming)

    channel.basic_consume(queue, on_message)
    ready.set()
    channel.start_consuming()
    cpu = (time.process_time() - idle_start[0]) / (time.monotonic() - idle_start[1])
    connection.close()
    results.put((latencies, cpu))


def measure_rabbitmq(args: argparse.Namespace, context) -> tuple[list[float], float]:
    import pika

    queue = f"litemq-bench-latency-{os.getpid()}"
    connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1"))
    channel = connection.channel()
    channel.queue_declare(queue, auto_delete=True)
    ready, results = context.Event(), context.Queue()
    process = context.Process(target=rabbitmq_consumer, args=(args.n, args.idle, queue, ready, results))
    process.start()
    ready.wait(30)
    time.sleep(0.2)
    interval = 1.0 / args.rate
    next_at = time.monotonic()
    for _ in range(args.n):
        next_at += interval
        time.sleep(max(0.0, next_at - time.monotonic()))
        channel.basic_publish("", queue, repr(time.time()))
    latencies, cpu = results.get(timeout=args.idle + 60)
    process.join(30)
    connection.close()
    return latencies, cpu


def report(name: str, latencies: list[float], cpu: float, args: argparse.Namespace) -> None:
    ms = sorted(x * 1000 for x in latencies)
    pct = lambda p: ms[min(len(ms) - 1, int(p / 100 * len(ms)))]  # noqa: E731
    print(f"{name}: {len(ms)} messages at {args.rate:g}/s between two processes")
    print(f"  latency ms: p50 {statistics.median(ms):.3f}  p90 {pct(90):.3f}  p99 {pct(99):.3f}  max {ms[-1]:.3f}")
    print(f"  idle waiting consumer: {cpu * 100:.2f} % of one core over {args.idle:g} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--idle", type=float, default=10.0)
    parser.add_argument("--rabbitmq", action="store_true", help="also measure pika with the RabbitMQ on 127.0.0.1")
    args = parser.parse_args()
    context = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "latency.db")
        with litemq.connect(path) as conn:
            conn.declare_queue("latency")
            ready, results = context.Event(), context.Queue()
            process = context.Process(target=consumer, args=(path, args.n, args.idle, ready, results))
            process.start()
            ready.wait(30)
            time.sleep(0.2)
            interval = 1.0 / args.rate
            next_at = time.monotonic()
            for _ in range(args.n):
                next_at += interval
                time.sleep(max(0.0, next_at - time.monotonic()))
                conn.publish("", "latency", repr(time.time()))
            latencies, cpu = results.get(timeout=args.idle + 60)
            process.join(30)
    report(f"litemq {litemq.__version__}", latencies, cpu, args)
    if args.rabbitmq:
        report("RabbitMQ + pika (127.0.0.1:5672)", *measure_rabbitmq(args, context), args)


if __name__ == "__main__":
    main()
