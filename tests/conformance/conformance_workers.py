"""What the child processes of the conformance suite run (spawned with ``python -c``, so they live in a module of
their own). Each worker connects the way its parent does, with the real pika to RabbitMQ or with litemq.pika to
the parent's file, sets something up, prints ``ready`` and then waits, at most WAIT_SECONDS, to be killed."""

from __future__ import annotations

import sys
import time
from typing import Any

WAIT_SECONDS = 60.0


def _connect(backend: str, target: str) -> tuple[Any, Any]:
    if backend == "rabbitmq":
        import pika
    else:
        from litemq import pika
    from .scenario_tools import parameters

    return pika, pika.BlockingConnection(parameters(pika, target))


def _ready_then_wait(connection: Any) -> None:
    print("ready", flush=True)
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        connection.process_data_events(time_limit=0.5)
    sys.exit(1)


def own_exclusive_queue(backend: str, target: str, queue: str, messages: int) -> None:
    """Declare an exclusive queue, publish ``messages`` to it, consume nothing; wait to be killed."""
    pika, connection = _connect(backend, target)
    channel = connection.channel()
    channel.queue_declare(queue, exclusive=True)
    for n in range(messages):
        channel.basic_publish("", queue, f"m{n}".encode())
    channel.queue_declare(queue, passive=True)  # a round trip: the messages are in
    _ready_then_wait(connection)


def hold_unacked(backend: str, target: str, queue: str, count: int) -> None:
    """Consume ``count`` messages from a shared queue without acking them; wait to be killed."""
    pika, connection = _connect(backend, target)
    channel = connection.channel()
    channel.basic_qos(prefetch_count=count)
    got: list[Any] = []
    channel.basic_consume(queue, lambda ch, method, props, body: got.append(body))
    deadline = time.monotonic() + 10
    while len(got) < count and time.monotonic() < deadline:
        connection.process_data_events(time_limit=0.05)
    if len(got) < count:
        sys.exit(f"got only {len(got)} of {count}")
    _ready_then_wait(connection)
