"""The systems compared, each behind the same small client interface, so every workload runs the same code on all.

A ``System`` makes fresh stores (a file in a temp directory, or uniquely named queues on RabbitMQ) and opens
``Client``s on them. A client publishes, gets and acks, and hands out a ``Receiver`` (a consumer with a prefetch)
whose ``next(timeout)`` returns ``(body, handle)`` or None. Libraries are imported inside the methods, so a
measured process imports only the system it measures."""

from __future__ import annotations

import os
import socket
import time
import uuid
from typing import Any, Optional

QUEUE = "bench"
FANOUT_QUEUES = [f"{QUEUE}.f{i}" for i in range(10)]
TOPIC_QUEUES = [f"{QUEUE}.t{i}" for i in range(10)]
FANOUT_EXCHANGE = "bench.fanout"
TOPIC_EXCHANGE = "bench.topic"
PEER_POLL_SECONDS = 0.001
"""How often a consumer of a library with no cross-process wake-up looks again at an empty queue."""

Message = tuple[Any, Any]  # (body, handle)


class Receiver:
    def next(self, timeout: float) -> Optional[Message]:
        raise NotImplementedError

    def ack(self, handle: Any) -> None:
        raise NotImplementedError

    def idle(self, seconds: float) -> Optional[Message]:
        """Wait ``seconds`` on an empty queue as the system's users wait (l): what came, or None."""
        return self.next(seconds)

    def stop(self) -> list[Message]:
        """Take no more messages: those that came while stopping (a job queue's worker finishes the jobs it holds
        and calls their function; see bench/peers_postgres.py)."""
        return []

    def close(self) -> None:
        pass


class Client:
    """One connection to a store."""

    batch_note: Optional[str] = None
    """How ``publish_batch`` was done, when the client decides it at run time."""

    def declare_queue(self, name: str) -> None:
        pass

    def declare_exchange(self, exchange: str, kind: str, bindings: list[tuple[str, str]]) -> None:
        """Declare ``exchange`` (fanout or topic) and its queues, bound with (queue, binding key) pairs."""
        raise NotImplementedError

    def publish(self, body: bytes, exchange: str = "", key: str = QUEUE) -> None:
        raise NotImplementedError

    def publish_batch(self, bodies: list[bytes], exchange: str = "", keys: Optional[list[str]] = None) -> None:
        """Publish ``bodies`` in one transaction where the system has one; else one by one."""
        for i, data in enumerate(bodies):
            self.publish(data, exchange, QUEUE if keys is None else keys[i])

    def fill(self, bodies: list[bytes], queue: str = QUEUE) -> None:
        """Put ``bodies`` in ``queue`` the fastest way the system has (not timed)."""
        for data in bodies:
            self.publish(data, "", queue)
        self.settle([queue], None)

    def settle(self, queues: list[str], expected: Optional[int]) -> None:
        """Return once every publish made so far is in its queues (RabbitMQ without confirms: they are in flight)."""

    def get(self, queue: str = QUEUE) -> Optional[Message]:
        raise NotImplementedError

    def ack(self, handle: Any) -> None:
        raise NotImplementedError

    def receiver(self, prefetch: int, queue: str = QUEUE) -> Receiver:
        return PollingReceiver(self, queue)

    def depth(self, queue: str = QUEUE) -> int:
        raise NotImplementedError

    def close(self) -> None:
        pass


class PollingReceiver(Receiver):
    """For libraries with no consumer or wake-up: get, and when the queue is empty look again every 1 ms."""

    def __init__(self, client: Client, queue: str, poll: float = PEER_POLL_SECONDS) -> None:
        self.client, self.queue, self.poll = client, queue, poll

    def next(self, timeout: float) -> Optional[Message]:
        deadline = None
        while True:
            message = self.client.get(self.queue)
            if message is not None:
                return message
            now = time.monotonic()
            if deadline is None:
                deadline = now + timeout
            elif now >= deadline:
                return None
            time.sleep(self.poll)

    def ack(self, handle: Any) -> None:
        self.client.ack(handle)


class System:
    key = ""
    label = ""
    family = ""
    """Systems of one family share store files: a blank one each row copies, and h's filled ones."""
    files = True
    """Whether a store is files that can be copied (RabbitMQ's is not)."""
    notes: dict[str, str] = {}
    """Per workload: how this system does it, when that differs from the plain reading."""
    not_applicable: dict[str, str] = {}
    """Per workload: why this system has no row there."""

    def available(self, options: dict[str, Any]) -> Optional[str]:
        """None when the system can run here, else why not (checked in the parent, without importing it)."""
        return None

    def new_store(self, directory: str, options: dict[str, Any]) -> dict[str, Any]:
        """A fresh, empty store, with the bench queue declared; returns the config clients open."""
        raise NotImplementedError

    def filled(self, cfg: dict[str, Any]) -> None:
        """After a store was filled for a row, before the row's timed part."""

    def drop_store(self, cfg: dict[str, Any]) -> None:
        pass

    def client(self, cfg: dict[str, Any]) -> Client:
        raise NotImplementedError

    def versions(self) -> dict[str, str]:
        return {}

    def server_sessions(self, cfg: dict[str, Any]) -> list[int]:
        """The pids of the server processes (of this machine) serving this process's connections to the store,
        whose CPU an idle consumer's row counts with its own: none but on PostgreSQL."""
        return []

    def oneshot_script(self) -> str:
        """Python source that, given the config as JSON in argv[1], opens the store, publishes argv[2], exits."""
        raise NotImplementedError

    def note(self, workload: str) -> str:
        return self.notes.get(workload, "")


def _module_present(name: str) -> Optional[str]:
    import importlib.util

    return None if importlib.util.find_spec(name) is not None else f"{name} not installed"


def _version(distribution: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "?"


# =============================================================================================================
# The floor: raw sqlite3
# =============================================================================================================

class FloorClient(Client):
    def __init__(self, cfg: dict[str, Any], batch: int) -> None:
        from . import floor

        self.floor = floor.Floor(cfg["path"], batch, split=cfg.get("split", False))
        self.receiver_class = floor.FloorReceiver

    def declare_exchange(self, exchange: str, kind: str, bindings: list[tuple[str, str]]) -> None:
        self.floor.bind_many(exchange, kind, bindings)

    def publish(self, body: bytes, exchange: str = "", key: str = QUEUE) -> None:
        if exchange:
            self.floor.publish_to(exchange, key, body)
        else:
            self.floor.publish(key, body)

    def publish_batch(self, bodies: list[bytes], exchange: str = "", keys: Optional[list[str]] = None) -> None:
        if exchange:
            self.floor.publish_to_many(exchange, keys or [""] * len(bodies), bodies)
        else:
            self.floor.publish_many(QUEUE, bodies)

    def fill(self, bodies: list[bytes], queue: str = QUEUE) -> None:
        self.floor.fill(queue, bodies)

    def get(self, queue: str = QUEUE) -> Optional[Message]:
        rows = self.floor.claim(queue)
        return (rows[0][1], rows[0][0]) if rows else None

    def ack(self, handle: Any) -> None:
        self.floor.ack(handle)

    def receiver(self, prefetch: int, queue: str = QUEUE) -> Receiver:
        return self.receiver_class(self.floor, queue, prefetch)

    def depth(self, queue: str = QUEUE) -> int:
        return self.floor.depth(queue)

    def close(self) -> None:
        self.floor.close()


class Floor(System):
    family = "floor"

    def __init__(self, batch: int) -> None:
        self.batch = batch
        self.key = f"floor-{batch}"
        self.label = "sqlite3 floor, 1/txn" if batch == 1 else "sqlite3 floor, 100/txn"
        if batch == 1:
            self.not_applicable = {"b": "one per transaction is row a"}
            self.notes = {"d": "claims 100 per statement, 1 delete per txn", "e": "polls data_version",
                          "e-lat": "polls data_version every 0.25 ms", "k-10KB": "bodies in their own table",
                          "k-1MB": "bodies in their own table", "l": "polls data_version every 0.25 ms"}
        else:
            one = "one at a time: see the 1/txn floor"
            self.not_applicable = {"a": "100 per transaction is row b", "c": one, "e-lat": "a batch holds messages",
                                   "h-shallow": one, "h-deep": one, "i-1": one, "i-4": one, "j": one,
                                   "k-10KB": one, "k-1MB": one, "l": one}
            self.notes = {"d": "claims 100, deletes 100 per txn", "e": "commits per 100 both sides",
                          "f": "100 messages per txn", "g": "100 messages per txn"}

    def new_store(self, directory: str, options: dict[str, Any]) -> dict[str, Any]:
        from . import floor

        path = os.path.join(directory, "floor.db")
        floor.create(path)
        return {"path": path}

    def client(self, cfg: dict[str, Any]) -> Client:
        return FloorClient(cfg, self.batch)

    def versions(self) -> dict[str, str]:
        import sqlite3

        return {"sqlite": sqlite3.sqlite_version}

    def oneshot_script(self) -> str:
        return ("import json, sqlite3, sys\n"
                "cfg = json.loads(sys.argv[1])\n"
                "db = sqlite3.connect(cfg['path'], timeout=60, isolation_level=None)\n"
                "db.execute('PRAGMA synchronous=NORMAL')\n"
                "db.execute('INSERT INTO messages (queue, body) VALUES (?, ?)', ('bench', sys.argv[2].encode()))\n"
                "db.close()\n")


# =============================================================================================================
# litemq, native API
# =============================================================================================================

class LitemqReceiver(Receiver):
    def __init__(self, conn: Any, queue: str, prefetch: int, deferred: bool) -> None:
        self.consumer = conn.consume(queue, prefetch=prefetch)
        self.deferred = deferred

    def next(self, timeout: float) -> Optional[Message]:
        delivery = self.consumer.get(timeout)
        return None if delivery is None else (delivery.body, delivery)

    def ack(self, handle: Any) -> None:
        handle.ack(deferred=self.deferred)

    def close(self) -> None:
        self.consumer.cancel()


class LitemqClient(Client):
    def __init__(self, cfg: dict[str, Any], synchronous: Optional[str] = "NORMAL", deferred: bool = False) -> None:
        import litemq

        self.deferred = deferred

        if synchronous is None:  # a PostgreSQL store: durability is the server's
            self.conn = litemq.connect(cfg["url"])
        else:
            self.conn = litemq.connect(cfg["path"], synchronous=synchronous)
        self.publish_many = getattr(self.conn, "publish_many", None)
        if self.publish_many is not None:
            self.batch_note = "publish_many"

    def declare_queue(self, name: str) -> None:
        self.conn.declare_queue(name, durable=True)

    def declare_exchange(self, exchange: str, kind: str, bindings: list[tuple[str, str]]) -> None:
        self.conn.declare_exchange(exchange, kind, durable=True)
        for queue in dict.fromkeys(queue for queue, _ in bindings):
            self.conn.declare_queue(queue, durable=True)
        for queue, key in bindings:
            self.conn.bind_queue(queue, exchange, key)

    def publish(self, body: bytes, exchange: str = "", key: str = QUEUE) -> None:
        self.conn.publish(exchange, key, body)

    def publish_batch(self, bodies: list[bytes], exchange: str = "", keys: Optional[list[str]] = None) -> None:
        if self.publish_many is not None and keys is None:
            self.publish_many(exchange, QUEUE, bodies)
            return
        publish = self.conn.publish
        for i, data in enumerate(bodies):
            publish(exchange, QUEUE if keys is None else keys[i], data)

    def fill(self, bodies: list[bytes], queue: str = QUEUE) -> None:
        if self.publish_many is not None:
            for start in range(0, len(bodies), 1000):
                self.publish_many("", queue, bodies[start:start + 1000])
            return
        publish = self.conn.publish
        for data in bodies:
            publish("", queue, data)

    def get(self, queue: str = QUEUE) -> Optional[Message]:
        delivery = self.conn.get(queue)
        return None if delivery is None else (delivery.body, delivery)

    def ack(self, handle: Any) -> None:
        handle.ack(deferred=self.deferred)

    def receiver(self, prefetch: int, queue: str = QUEUE) -> Receiver:
        return LitemqReceiver(self.conn, queue, prefetch, self.deferred)

    def depth(self, queue: str = QUEUE) -> int:
        return self.conn.declare_queue(queue, passive=True).message_count

    def close(self) -> None:
        self.conn.close()


class Litemq(System):
    family = "litemq"

    notes = {"b": "publish_many"}

    def __init__(self, synchronous: str = "NORMAL", deferred: bool = False) -> None:
        self.synchronous = synchronous
        self.deferred = deferred
        if deferred:
            # ack(deferred=True): committed by the next claim, as RabbitMQ's acks are sent without waiting; only the
            # rows that ack differ from the native row's.
            self.key = "litemq-deferred"
            self.label = "litemq, deferred acks"
            self.not_applicable = {workload: "no acks: as the native row" for workload in ("a", "b", "f", "g", "j")}
        elif synchronous == "FULL":
            self.key = "litemq-full"
            self.label = "litemq, FULL"  # an fsync per commit: the durability of RabbitMQ's confirms
        else:
            self.key = "litemq-native"
            self.label = "litemq"

    def new_store(self, directory: str, options: dict[str, Any]) -> dict[str, Any]:
        import litemq

        cfg = {"path": os.path.join(directory, "litemq.db")}
        with litemq.connect(cfg["path"]) as conn:  # the first open creates the schema
            conn.declare_queue(QUEUE, durable=True)
        return cfg

    def client(self, cfg: dict[str, Any]) -> Client:
        return LitemqClient(cfg, self.synchronous, self.deferred)  # the store may be another variant's copy

    def versions(self) -> dict[str, str]:
        import litemq

        return {"litemq": litemq.__version__}

    def oneshot_script(self) -> str:
        return ("import json, sys\n"
                "import litemq\n"
                "cfg = json.loads(sys.argv[1])\n"
                f"conn = litemq.connect(cfg['path'], synchronous={self.synchronous!r})\n"
                "conn.publish('', 'bench', sys.argv[2].encode())\n"
                "conn.close()\n")


# =============================================================================================================
# pika: litemq.pika on a file, or the real pika with RabbitMQ
# =============================================================================================================

class PikaReceiver(Receiver):
    def __init__(self, channel: Any, queue: str, prefetch: int) -> None:
        self.channel = channel
        channel.basic_qos(prefetch_count=prefetch)
        self.messages = channel.consume(queue, inactivity_timeout=0.05)

    def idle(self, seconds: float) -> Optional[Message]:
        # As start_consuming waits: the consume generator's 50 ms inactivity steps are the bench's, not a user's.
        self.channel.connection.process_data_events(time_limit=seconds)
        return self.next(0)

    def next(self, timeout: float) -> Optional[Message]:
        deadline = time.monotonic() + timeout
        while True:
            method, _, body = next(self.messages)
            if method is not None:
                return body, method.delivery_tag
            if time.monotonic() >= deadline:
                return None

    def ack(self, handle: Any) -> None:
        self.channel.basic_ack(handle)

    def close(self) -> None:
        self.channel.cancel()


class PikaClient(Client):
    """The same pika calls on both: durable queues, persistent messages (delivery_mode 2), manual acks."""

    def __init__(self, module: Any, parameters: Any, confirms: bool, prefix: str, in_flight: bool) -> None:
        self.pika = module
        self.connection = module.BlockingConnection(parameters)
        self.channel = self.connection.channel()
        if confirms:
            self.channel.confirm_delivery()
        self.tx_channel: Any = None
        self.properties = module.BasicProperties(delivery_mode=2)
        self.prefix = prefix
        self.in_flight = in_flight  # RabbitMQ without confirms: a publish returns before the broker has it
        self.published: dict[str, int] = {}

    def name(self, name: str) -> str:
        return self.prefix + name if name else name

    def declare_queue(self, name: str) -> None:
        self.channel.queue_declare(self.name(name), durable=True)

    def declare_exchange(self, exchange: str, kind: str, bindings: list[tuple[str, str]]) -> None:
        self.channel.exchange_declare(self.name(exchange), kind, durable=True)
        for queue in dict.fromkeys(queue for queue, _ in bindings):
            self.channel.queue_declare(self.name(queue), durable=True)
        for queue, key in bindings:
            self.channel.queue_bind(self.name(queue), self.name(exchange), key)

    def publish(self, body: bytes, exchange: str = "", key: str = QUEUE) -> None:
        if exchange:
            self.channel.basic_publish(self.prefix + exchange, key, body, self.properties)
        else:
            self.channel.basic_publish("", self.prefix + key, body, self.properties)

    def publish_batch(self, bodies: list[bytes], exchange: str = "", keys: Optional[list[str]] = None) -> None:
        if not self.in_flight:  # litemq.pika: no AMQP transactions, one publish after another
            super().publish_batch(bodies, exchange, keys)
            return
        if self.tx_channel is None:
            self.tx_channel = self.connection.channel()
            self.tx_channel.tx_select()
        publish, properties = self.tx_channel.basic_publish, self.properties
        target = self.name(exchange) if exchange else ""
        for i, data in enumerate(bodies):
            key = self.name(QUEUE) if not exchange else (keys[i] if keys else "")
            publish(target, key, data, properties)
        self.tx_channel.tx_commit()

    def fill(self, bodies: list[bytes], queue: str = QUEUE) -> None:
        before = self.depth(queue) if self.in_flight else 0
        publish, properties, target = self.channel.basic_publish, self.properties, self.name(queue)
        for data in bodies:
            publish("", target, data, properties)
        self.settle([queue], before + len(bodies))

    def settle(self, queues: list[str], expected: Optional[int]) -> None:
        if not self.in_flight or expected is None:
            return
        deadline = time.monotonic() + 600
        while sum(self.depth(queue) for queue in queues) < expected:
            if time.monotonic() > deadline:
                raise RuntimeError(f"RabbitMQ: {queues} never reached {expected} messages")
            time.sleep(0.002)

    def get(self, queue: str = QUEUE) -> Optional[Message]:
        method, _, body = self.channel.basic_get(self.name(queue))
        return None if method is None else (body, method.delivery_tag)

    def ack(self, handle: Any) -> None:
        self.channel.basic_ack(handle)

    def receiver(self, prefetch: int, queue: str = QUEUE) -> Receiver:
        return PikaReceiver(self.connection.channel(), self.name(queue), prefetch)

    def depth(self, queue: str = QUEUE) -> int:
        return self.channel.queue_declare(self.name(queue), passive=True).method.message_count

    def close(self) -> None:
        if self.connection.is_open:
            self.connection.close()


class LitemqPika(System):
    key = "litemq-pika"
    label = "litemq.pika"
    family = "litemq"
    notes = {"b": "100 x basic_publish (no tx)"}

    def new_store(self, directory: str, options: dict[str, Any]) -> dict[str, Any]:
        return Litemq().new_store(directory, options)

    def client(self, cfg: dict[str, Any]) -> Client:
        from litemq import pika

        return PikaClient(pika, pika.URLParameters("sqlite:///" + cfg["path"]), False, "", in_flight=False)

    def versions(self) -> dict[str, str]:
        return Litemq().versions()

    def oneshot_script(self) -> str:
        return ("import json, sys\n"
                "from litemq import pika\n"
                "cfg = json.loads(sys.argv[1])\n"
                "connection = pika.BlockingConnection(pika.URLParameters('sqlite:///' + cfg['path']))\n"
                "channel = connection.channel()\n"
                "channel.basic_publish('', 'bench', sys.argv[2].encode(), pika.BasicProperties(delivery_mode=2))\n"
                "connection.close()\n")


class RabbitMQ(System):
    family = "rabbitmq"
    files = False

    def __init__(self, confirms: bool) -> None:
        self.confirms = confirms
        if confirms:
            self.key = "rabbitmq-confirms"
            self.label = "RabbitMQ, confirms"
            same = "consumer side: as without confirms"
            self.not_applicable = {"b": "confirms and tx exclude each other", "c": same, "d": same,
                                   "h-shallow": same, "h-deep": same, "i-1": same, "i-4": same, "l": same}
            self.notes = {}
        else:
            self.key = "rabbitmq-plain"
            self.label = "RabbitMQ"
            self.notes = {"b": "AMQP tx, commit per 100", "l": "the broker's own CPU not counted"}

    def available(self, options: dict[str, Any]) -> Optional[str]:
        missing = _module_present("pika")
        if missing:
            return missing
        host, port = options["rabbitmq"]
        try:
            socket.create_connection((host, port), timeout=1).close()
        except OSError as exc:
            return f"unreachable at {host}:{port} ({exc.strerror or exc})"
        return None

    def parameters(self, cfg: dict[str, Any]) -> Any:
        import pika

        return pika.ConnectionParameters(cfg["host"], cfg["port"], credentials=pika.PlainCredentials("guest", "guest"))

    def new_store(self, directory: str, options: dict[str, Any]) -> dict[str, Any]:
        host, port = options["rabbitmq"]
        cfg = {"host": host, "port": port, "prefix": f"litemq-bench-{uuid.uuid4().hex[:12]}."}
        client = self.client(cfg)
        try:
            client.declare_queue(QUEUE)
        finally:
            client.close()
        return cfg

    def drop_store(self, cfg: dict[str, Any]) -> None:
        import pika

        connection = pika.BlockingConnection(self.parameters(cfg))
        try:
            self.server = _server_version(connection)
            channel = connection.channel()
            for queue in [QUEUE] + FANOUT_QUEUES + TOPIC_QUEUES:
                channel.queue_delete(cfg["prefix"] + queue)
            for exchange in (FANOUT_EXCHANGE, TOPIC_EXCHANGE):
                channel.exchange_delete(cfg["prefix"] + exchange)
        finally:
            connection.close()

    def client(self, cfg: dict[str, Any]) -> Client:
        import pika

        return PikaClient(pika, self.parameters(cfg), self.confirms, cfg["prefix"], in_flight=not self.confirms)

    def versions(self) -> dict[str, str]:
        return {"pika": _version("pika")}

    def server_version(self, cfg: dict[str, Any]) -> str:
        """RabbitMQ's version, as the last store dropped heard it (else from a connection of its own)."""
        if getattr(self, "server", None):
            return self.server
        import pika

        connection = pika.BlockingConnection(self.parameters(cfg))
        try:
            return _server_version(connection)
        finally:
            connection.close()

    def oneshot_script(self) -> str:
        return ("import json, sys\n"
                "import pika\n"
                "cfg = json.loads(sys.argv[1])\n"
                "connection = pika.BlockingConnection(pika.ConnectionParameters(cfg['host'], cfg['port'], "
                "credentials=pika.PlainCredentials('guest', 'guest')))\n"
                "channel = connection.channel()\n"
                + ("channel.confirm_delivery()\n" if self.confirms else "")
                + "channel.basic_publish('', cfg['prefix'] + 'bench', sys.argv[2].encode(), "
                  "pika.BasicProperties(delivery_mode=2))\n"
                  "connection.close()\n")


def _server_version(connection: Any) -> str:
    properties = getattr(connection._impl, "server_properties", None) or {}
    version = properties.get("version", b"?")
    return version.decode() if isinstance(version, bytes) else str(version)


# =============================================================================================================
# persist-queue's SQLiteAckQueue
# =============================================================================================================

POLLING_NOTES = {"e": "polls every 1 ms", "e-lat": "polls every 1 ms", "i-1": "polls", "i-4": "polls",
                 "l": "polls every 1 ms"}
"""The peers without a way to wait for a message poll for one, as their users do."""


class PersistQueueClient(Client):
    def __init__(self, cfg: dict[str, Any], synchronous: Optional[str]) -> None:
        import persistqueue

        self.empty = persistqueue.Empty
        self.queue = persistqueue.SQLiteAckQueue(cfg["dir"], timeout=60)
        self.synchronous = synchronous
        if synchronous:  # the library has no setting for it: set it on its connection (one, single-threaded)
            self.queue._putter.execute(f"PRAGMA synchronous={synchronous}")

    def publish(self, body: bytes, exchange: str = "", key: str = QUEUE) -> None:
        self.queue.put(body)

    def fill(self, bodies: list[bytes], queue: str = QUEUE) -> None:
        connection = self.queue._putter
        connection.execute("PRAGMA synchronous=OFF")  # only to fill faster; the file is the same
        put = self.queue.put
        for data in bodies:
            put(data)
        connection.execute(f"PRAGMA synchronous={self.synchronous or 'FULL'}")

    def get(self, queue: str = QUEUE) -> Optional[Message]:
        try:
            item = self.queue.get(block=False, raw=True)
        except self.empty:
            return None
        return item["data"], item["pqid"]

    def ack(self, handle: Any) -> None:
        self.queue.ack(id=handle)

    def depth(self, queue: str = QUEUE) -> int:
        return self.queue._count()  # ready + not yet read (its ready_count() counts only requeued ones)

    def close(self) -> None:
        self.queue.close()


class PersistQueue(System):
    family = "persist-queue"
    not_applicable = {"f": "no exchanges", "g": "no exchanges"}

    def __init__(self, synchronous: Optional[str]) -> None:
        self.synchronous = synchronous
        if synchronous:
            self.key = "persist-queue-normal"
            self.label = "persist-queue, NORMAL"
        else:
            self.key = "persist-queue-default"
            self.label = "persist-queue, default"
        self.notes = {"b": "no batch API: 100 x put", "d": "no prefetch: get + ack", **POLLING_NOTES}

    def available(self, options: dict[str, Any]) -> Optional[str]:
        return _module_present("persistqueue")

    def new_store(self, directory: str, options: dict[str, Any]) -> dict[str, Any]:
        cfg = {"dir": os.path.join(directory, "persist-queue")}
        self.client(cfg).close()
        return cfg

    def client(self, cfg: dict[str, Any]) -> Client:
        return PersistQueueClient(cfg, self.synchronous)

    def versions(self) -> dict[str, str]:
        return {"persist-queue": _version("persist-queue")}

    def oneshot_script(self) -> str:
        return ("import json, sys\n"
                "import persistqueue\n"
                "cfg = json.loads(sys.argv[1])\n"
                "queue = persistqueue.SQLiteAckQueue(cfg['dir'], timeout=60)\n"
                + (f"queue._putter.execute('PRAGMA synchronous={self.synchronous}')\n" if self.synchronous else "")
                + "queue.put(sys.argv[2].encode())\n"
                  "queue.close()\n")


# =============================================================================================================
# litequeue
# =============================================================================================================

class LiteQueueClient(Client):
    def __init__(self, cfg: dict[str, Any]) -> None:
        import litequeue

        self.queue = litequeue.LiteQueue(cfg["path"], timeout=60)

    def publish(self, body: bytes, exchange: str = "", key: str = QUEUE) -> None:
        self.queue.put(body.decode("latin-1"))  # its messages are text

    def publish_batch(self, bodies: list[bytes], exchange: str = "", keys: Optional[list[str]] = None) -> None:
        queue = self.queue
        with queue.transaction("IMMEDIATE"):
            for data in bodies:
                queue.put(data.decode("latin-1"))

    def fill(self, bodies: list[bytes], queue: str = QUEUE) -> None:
        for start in range(0, len(bodies), 10000):
            self.publish_batch(bodies[start:start + 10000])

    def get(self, queue: str = QUEUE) -> Optional[Message]:
        message = self.queue.pop()
        return None if message is None else (message.data, message.message_id)

    def ack(self, handle: Any) -> None:
        self.queue.done(handle)

    def depth(self, queue: str = QUEUE) -> int:
        return self.queue.qsize()

    def close(self) -> None:
        self.queue.close()


class LiteQueue(System):
    key = "litequeue"
    label = "litequeue"
    family = "litequeue"
    not_applicable = {"f": "no exchanges", "g": "no exchanges"}
    notes = {"b": "100 x put in one transaction()", "d": "no prefetch: pop + done", **POLLING_NOTES}

    def available(self, options: dict[str, Any]) -> Optional[str]:
        return _module_present("litequeue")

    def new_store(self, directory: str, options: dict[str, Any]) -> dict[str, Any]:
        cfg = {"path": os.path.join(directory, "litequeue.db")}
        self.client(cfg).close()
        return cfg

    def client(self, cfg: dict[str, Any]) -> Client:
        return LiteQueueClient(cfg)

    def versions(self) -> dict[str, str]:
        return {"litequeue": _version("litequeue")}

    def oneshot_script(self) -> str:
        return ("import json, sys\n"
                "import litequeue\n"
                "cfg = json.loads(sys.argv[1])\n"
                "queue = litequeue.LiteQueue(cfg['path'], timeout=60)\n"
                "queue.put(sys.argv[2])\n"
                "queue.close()\n")


# =============================================================================================================

ENGINES = ("sqlite", "postgresql")


def all_systems(engine: str = "sqlite") -> list[System]:
    """In the table's order."""
    if engine == "postgresql":
        from .systems_postgres import postgres_systems

        return postgres_systems()
    return [Floor(1), Floor(100), Litemq(), Litemq(deferred=True), Litemq("FULL"), LitemqPika(), PersistQueue(None), PersistQueue("NORMAL"),
            LiteQueue(), RabbitMQ(False), RabbitMQ(True)]


def make(key: str, engine: str = "sqlite") -> System:
    for system in all_systems(engine):
        if system.key == key:
            return system
    raise KeyError(key)


def select(names: Optional[str], engine: str = "sqlite") -> list[System]:
    """``--systems``: a comma list of keys or families (``floor``, ``litemq``, ``persist-queue``, ``litequeue``,
    ``rabbitmq``; on PostgreSQL ``floor``, ``litemq``, ``pgqueuer``, ``procrastinate``); a family takes all its
    variants."""
    systems = all_systems(engine)
    if not names:
        return systems
    wanted = [name.strip() for name in names.split(",") if name.strip()]
    chosen = []
    for system in systems:
        if any(system.key == name or system.key.startswith(name + "-") for name in wanted):
            chosen.append(system)
    unknown = [name for name in wanted
               if not any(s.key == name or s.key.startswith(name + "-") for s in systems)]
    if unknown:
        families = ", ".join(dict.fromkeys(s.family for s in systems))
        raise ValueError(f"unknown system {', '.join(unknown)} on {engine}; choose from "
                         f"{', '.join(s.key for s in systems)} or {families}")
    return chosen
