"""What the processes started by test_kombu.py run (spawn imports this module in the child). They talk to the test
through the broker itself: each says it is ready, or what it received, on a queue the test reads."""

from __future__ import annotations

import time

from kombu import Connection, Consumer, Exchange, Producer, Queue

import litemq.kombu  # noqa: F401  (registers the litemq:// scheme with kombu)

WAIT_SECONDS = 30.0


def tell(connection: Connection, queue: str, body: object) -> None:
    Producer(connection.default_channel).publish(body, routing_key=queue, declare=[Queue(queue)])


def echo_fanout(url: str, exchange: str, queue: str) -> None:
    """Consume one message from ``queue`` bound to the fanout ``exchange`` and tell "echo" what came, and how."""
    with Connection(url) as connection:
        fanout = Exchange(exchange, "fanout")
        got: list[dict[str, object]] = []

        def on_message(body: object, message: object) -> None:
            got.append({"body": body, "exchange": message.delivery_info["exchange"]})  # type: ignore[attr-defined]
            message.ack()  # type: ignore[attr-defined]

        with Consumer(connection, [Queue(queue, fanout)], callbacks=[on_message]):
            tell(connection, "ready", queue)
            connection.drain_events(timeout=WAIT_SECONDS)
        tell(connection, "echo", got[0])


def hold_unacked(url: str, queue: str) -> None:
    """Take one message from ``queue`` and never ack it; say "holding" and wait to be killed."""
    with Connection(url) as connection:
        with Consumer(connection, [Queue(queue)], callbacks=[lambda body, message: None]):
            connection.drain_events(timeout=WAIT_SECONDS)
            tell(connection, "holding", queue)
            time.sleep(WAIT_SECONDS)


def publish_later(url: str, queue: str, delay: float, count: int) -> None:
    """``count`` times, after ``delay`` seconds, publish to ``queue`` the time it was published."""
    with Connection(url) as connection:
        producer = Producer(connection.default_channel)
        for _ in range(count):
            time.sleep(delay)
            producer.publish({"sent": time.time()}, routing_key=queue)
