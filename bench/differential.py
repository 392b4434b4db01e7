"""A random-sequence differential test: the same seeded operations through real pika against RabbitMQ and through
``litemq.pika`` on a temp file, every reply compared.

    python -m bench.differential --seeds 500 [--first 0] [--steps 40]

One connection, one channel in confirm mode (reopened after a channel error), ``basic_get`` only, so RabbitMQ's
answers are deterministic: declares with every flag and argument mismatch, passive declares, ``amq.*`` and ``""``
names, binds and unbinds with every ``x-match``, publishes with properties and empty keys, get/ack/nack/reject with
outstanding, settled, unknown and 0 tags and ``multiple``, purge, delete. A reply is its result (counts, bodies,
properties, redelivered) or its error (class and reply code). Names are unique per run and deleted afterwards.
``tests/conformance/test_differential.py`` runs a handful of seeds in the normal suite.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Optional

PROPERTY_NAMES = ("content_type", "content_encoding", "headers", "delivery_mode", "priority", "correlation_id",
                  "reply_to", "expiration", "message_id", "timestamp", "type", "user_id", "app_id")
EXCHANGE_TYPES = ("direct", "fanout", "topic", "headers")
QUEUE_ARGUMENTS = (None, None, {"x-max-length": 2}, {"x-max-priority": 3}, {"x-message-ttl": 600000},
                   {"x-max-length": 1, "x-overflow": "reject-publish"})
KEYS = ("", "a", "a.b", "b.#", "*.b", "#")
X_MATCH = ("all", "any", "all-with-x", "any-with-x")
SETTLE_PAUSE = 0.01
"""After an ack, nack or reject (which RabbitMQ answers not at all), time for its queue process to handle it before
the next call reads a count (a queue's stat call jumps its mailbox)."""


class Script:
    """The operations of one seed, drawn once so both brokers run exactly the same ones: a prelude that declares
    and binds the usual names, then ``steps`` random operations, weighted towards ones that find something."""

    PRELUDE = [("queue_declare", "q0", False, False, False, False, None),
               ("queue_declare", "q1", False, True, False, False, None),
               ("queue_declare", "q2", False, False, False, False, {"x-max-priority": 3}),
               ("exchange_declare", "x0", "direct", False, False, False, False),
               ("exchange_declare", "x1", "topic", False, False, False, False),
               ("exchange_declare", "x2", "headers", False, False, True, False),
               ("bind", "q0", "x0", "a", None), ("bind", "q1", "x1", "a.#", None),
               ("bind", "q2", "x2", "", {"x-match": "any", "h": 1})]

    def __init__(self, seed: int, steps: int) -> None:
        rng = random.Random(seed)
        self.operations = self.PRELUDE + [self._draw(rng) for _ in range(steps)]

    def _draw(self, rng: random.Random) -> tuple[Any, ...]:
        queue = _pick(rng, {"q0": 30, "q1": 30, "q2": 30, "": 4, "amq.q": 3, "amq.gen-none": 3})
        exchange = _pick(rng, {"x0": 20, "x1": 20, "x2": 20, "": 20, "amq.direct": 5, "amq.topic": 5,
                               "amq.headers": 4, "amq.fanout": 4, "amq.x": 2})
        passive, durable, auto_delete = (rng.random() < p for p in (0.15, 0.2, 0.15))
        kind = _pick(rng, {"publish": 30, "get": 25, "settle": 12, "queue_declare": 10, "exchange_declare": 7,
                           "bind": 8, "unbind": 4, "exchange_bind": 3, "purge": 3, "queue_delete": 3,
                           "exchange_delete": 2, "recover": 2})
        if kind == "queue_declare":
            return (kind, queue, passive, durable, rng.random() < 0.1, auto_delete, rng.choice(QUEUE_ARGUMENTS))
        if kind == "exchange_declare":
            return (kind, exchange, rng.choice(EXCHANGE_TYPES), passive, durable, auto_delete, rng.random() < 0.1)
        if kind in ("bind", "unbind"):
            arguments = {"x-match": rng.choice(X_MATCH), "h": rng.choice((1, "v"))} if rng.random() < 0.4 else None
            return (kind, queue, exchange, rng.choice(KEYS), arguments)
        if kind == "exchange_bind":
            return (kind, rng.choice(("x0", "x1", "x2", "")), exchange, rng.choice(KEYS))
        if kind == "publish":
            key = rng.choice(("@" + queue,) * 8 + KEYS)
            return (kind, rng.choice((exchange, "", "")), key, f"body-{rng.randrange(1000)}", _properties(rng),
                    rng.random() < 0.2)
        if kind == "get":
            return (kind, queue, rng.random() < 0.2)
        if kind == "settle":
            which = _pick(rng, {"oldest": 35, "newest": 35, "settled": 10, "unknown": 10, "zero": 10})
            return (kind, rng.choice(("ack", "nack", "reject")), which, rng.random() < 0.4, rng.random() < 0.6)
        if kind == "purge":
            return (kind, queue)
        if kind == "recover":
            return (kind,)
        if kind == "queue_delete":
            return (kind, queue, rng.random() < 0.2, rng.random() < 0.2)
        return (kind, exchange, rng.random() < 0.3)


def _pick(rng: random.Random, weights: dict[str, int]) -> str:
    return rng.choices(list(weights), list(weights.values()))[0]


def _properties(rng: random.Random) -> Optional[dict[str, Any]]:
    if rng.random() < 0.4:
        return None
    choices = {"content_type": "text/plain", "content_encoding": "utf-8", "headers": {"h": rng.choice((1, "v"))},
               "delivery_mode": rng.choice((1, 2, 2, 3)), "priority": rng.randrange(6), "correlation_id": "c-1",
               "reply_to": "r", "expiration": "600000", "message_id": "m-1", "timestamp": 1700000000, "type": "t",
               "user_id": rng.choice(("guest", "guest", "other")), "app_id": "app"}
    return {name: value for name, value in choices.items() if rng.random() < 0.35}


class Driver:
    """Runs a script against one broker through its pika module; every reply becomes plain, comparable data."""

    def __init__(self, pika: Any, parameters: Any, rabbitmq: bool) -> None:
        self.pika = pika
        self.rabbitmq = rabbitmq
        self.prefix = f"lmqd-{uuid.uuid4().hex[:10]}-"
        self.connection = pika.BlockingConnection(parameters)
        self.channel = self._open()
        self.outstanding: list[int] = []  # delivery tags of this channel not yet settled, oldest first
        self.settled: list[int] = []
        self.last_tag = 0
        self.server_named: list[str] = []

    def _open(self) -> Any:
        channel = self.connection.channel()
        channel.confirm_delivery()
        return channel

    def name(self, name: str) -> str:
        """The broker's name for a script's: this run's own, except ``""`` and the predefined ``amq.*``
        exchanges; ``amq.q``, ``amq.x`` and ``amq.gen-none`` are reserved names nobody declared. A routing key
        ``@q0`` is queue q0's name."""
        name = name[1:] if name.startswith("@") else name
        if name in ("amq.q", "amq.x", "amq.gen-none"):
            return name.replace(".", "." + self.prefix, 1)
        return name if name == "" or name.startswith("amq.") else self.prefix + name

    def run(self, script: Script) -> list[Any]:
        trace = []
        try:
            for operation in script.operations:
                trace.append([operation[0], self._reply(operation)])
        finally:
            self.clean_up()
        return trace

    def _reply(self, operation: tuple[Any, ...]) -> Any:
        try:
            result = getattr(self, "_" + operation[0])(*operation[1:])
        except Exception as exc:  # noqa: BLE001 - the error is the observation
            if "ConnectionClosed" in type(exc).__name__:
                raise
            code = getattr(exc, "reply_code", None) if "Closed" in type(exc).__name__ else None
            if not self.channel.is_open:
                self.channel = self._open()
                self.outstanding, self.settled, self.last_tag = [], [], 0
            return ["error", type(exc).__name__, code]
        return ["ok", result]

    # --- the operations
    def _queue_declare(self, queue: str, passive: bool, durable: bool, exclusive: bool, auto_delete: bool,
                       arguments: Optional[dict[str, Any]]) -> Any:
        frame = self.channel.queue_declare(self.name(queue), passive=passive, durable=durable, exclusive=exclusive,
                                           auto_delete=auto_delete, arguments=arguments)
        method = frame.method
        named = method.queue
        if queue == "" and named.startswith("amq.gen-"):
            self.server_named.append(named)
            named = "server-named"
        return [named.replace(self.prefix, ""), method.message_count, method.consumer_count]

    def _exchange_declare(self, exchange: str, kind: str, passive: bool, durable: bool, auto_delete: bool,
                          internal: bool) -> None:
        self.channel.exchange_declare(self.name(exchange), kind, passive=passive, durable=durable,
                                      auto_delete=auto_delete, internal=internal)

    def _bind(self, queue: str, exchange: str, key: str, arguments: Optional[dict[str, Any]]) -> None:
        self.channel.queue_bind(self.name(queue), self.name(exchange), routing_key=key, arguments=arguments)

    def _unbind(self, queue: str, exchange: str, key: str, arguments: Optional[dict[str, Any]]) -> None:
        self.channel.queue_unbind(self.name(queue), self.name(exchange), routing_key=key, arguments=arguments)

    def _exchange_bind(self, destination: str, source: str, key: str) -> None:
        self.channel.exchange_bind(self.name(destination), self.name(source), routing_key=key)

    def _publish(self, exchange: str, key: str, body: str, properties: Optional[dict[str, Any]],
                 mandatory: bool) -> None:
        props = None if properties is None else self.pika.BasicProperties(**properties)
        self.channel.basic_publish(self.name(exchange), self.name(key) if key.startswith("@") else key,
                                   body.encode(), props, mandatory=mandatory)

    def _get(self, queue: str, auto_ack: bool) -> Any:
        method, properties, body = self.channel.basic_get(self.name(queue), auto_ack=auto_ack)
        if method is None:
            return None
        assert method.delivery_tag == self.last_tag + 1, "delivery tags count up on a channel"
        self.last_tag = method.delivery_tag
        if not auto_ack:
            self.outstanding.append(method.delivery_tag)
        shown = {name: getattr(properties, name) for name in PROPERTY_NAMES if getattr(properties, name) is not None}
        return [body.decode(), method.redelivered, method.exchange.replace(self.prefix, ""),
                method.routing_key.replace(self.prefix, ""), method.message_count, shown]

    def _settle(self, how: str, which: str, multiple: bool, requeue: bool) -> Any:
        tag = {"oldest": self.outstanding[:1], "newest": self.outstanding[-1:], "settled": self.settled[-1:],
               "unknown": [self.last_tag + 7], "zero": [0]}[which]
        tag = tag[0] if tag else self.last_tag + 7
        if how == "reject":
            multiple = False
        done = [t for t in self.outstanding if t == tag or (multiple and (t <= tag or tag == 0))]
        if how == "ack":
            self.channel.basic_ack(tag, multiple=multiple)
        elif how == "nack":
            self.channel.basic_nack(tag, multiple=multiple, requeue=requeue)
        else:
            self.channel.basic_reject(tag, requeue=requeue)
        self.channel.basic_qos(prefetch_count=0)  # a round trip: an unknown tag's error surfaces here
        if self.rabbitmq:
            time.sleep(SETTLE_PAUSE)
        self.outstanding = [t for t in self.outstanding if t not in done]
        self.settled.extend(done)
        return [which, len(done)]

    def _recover(self) -> int:
        self.channel.basic_recover(requeue=True)  # every unacked delivery back, redelivered; their tags unknown
        if self.rabbitmq:
            time.sleep(SETTLE_PAUSE)
        recovered, self.outstanding = len(self.outstanding), []
        return recovered

    def _purge(self, queue: str) -> int:
        return self.channel.queue_purge(self.name(queue)).method.message_count

    def _queue_delete(self, queue: str, if_unused: bool, if_empty: bool) -> int:
        return self.channel.queue_delete(self.name(queue), if_unused=if_unused, if_empty=if_empty
                                         ).method.message_count

    def _exchange_delete(self, exchange: str, if_unused: bool) -> None:
        self.channel.exchange_delete(self.name(exchange), if_unused=if_unused)

    def clean_up(self) -> None:
        """Delete every queue and exchange of this run (on RabbitMQ; litemq's temp file goes with its directory)."""
        if not self.connection.is_open:
            return
        queues = [self.name(q) for q in ("q0", "q1", "q2")] + self.server_named
        for kind, name in [("q", q) for q in queues] + [("x", self.name(x)) for x in ("x0", "x1", "x2")]:
            channel = self.connection.channel()
            try:
                if kind == "q":
                    channel.queue_delete(name)
                else:
                    channel.exchange_delete(name)
                channel.close()
            except self.pika.exceptions.ChannelClosedByBroker:
                pass
        self.connection.close()


def rabbitmq_trace(script: Script, host: str = "127.0.0.1", port: int = 5672) -> list[Any]:
    import pika

    parameters = pika.ConnectionParameters(host=host, port=port, credentials=pika.PlainCredentials("guest", "guest"),
                                           connection_attempts=1, socket_timeout=5)
    return Driver(pika, parameters, rabbitmq=True).run(script)


def litemq_trace(script: Script, directory: str, url: Optional[str] = None) -> list[Any]:
    """The script's replies from litemq.pika: on ``url`` (a broker of its own), else on a new file in ``directory``."""
    from litemq import pika

    if url is None:
        url = f"sqlite:///{Path(directory) / f'differential-{uuid.uuid4().hex[:8]}.db'}"
    return Driver(pika, pika.URLParameters(url), rabbitmq=False).run(script)


def first_difference(script: Script, rabbit: list[Any], lite: list[Any]) -> Optional[str]:
    """None when the traces are equal; else the operations up to the first differing reply, with both replies."""
    for step, (expected, got) in enumerate(zip(rabbit, lite)):
        if expected != got:
            lines = [f"  {n:3} {script.operations[n]!r} -> {rabbit[n][1]!r}" for n in range(step)]
            return "\n".join([*lines, f"  {step:3} {script.operations[step]!r}",
                              f"      RabbitMQ: {expected[1]!r}", f"      litemq:   {got[1]!r}"])
    return None if len(rabbit) == len(lite) else "traces differ in length"


def check(seed: int, steps: int, directory: str) -> Optional[str]:
    script = Script(seed, steps)
    return first_difference(script, rabbitmq_trace(script), litemq_trace(script, directory))


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=100, help="how many seeds to run (default 100)")
    parser.add_argument("--first", type=int, default=0, help="the first seed (default 0)")
    parser.add_argument("--steps", type=int, default=40, help="operations per seed (default 40)")
    args = parser.parse_args(argv)
    failed = 0
    with tempfile.TemporaryDirectory() as directory:
        for seed in range(args.first, args.first + args.seeds):
            difference = check(seed, args.steps, directory)
            if difference:
                failed += 1
                print(f"seed {seed}: litemq differs from RabbitMQ\n{difference}\n", flush=True)
    print(f"{args.seeds} seeds of {args.steps} operations: {failed} differ")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
