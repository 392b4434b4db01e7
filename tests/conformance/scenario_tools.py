"""The machinery of the differential conformance suite, and the small helpers its scenarios share.

A scenario is written once, as ``def test_...(pika, connect, names) -> observations`` decorated with
``@conformance``, and runs with the real pika against RabbitMQ and with ``litemq.pika`` on each engine the suite
runs (``[litemq-sqlite]`` on a temp file, ``[litemq-postgresql]`` in a schema of its own; see tests/engines.py).
An ``async def`` scenario is written against aio-pika's API instead: ``aio_pika`` is the real aio-pika or
``litemq.aio_pika``, ``await connect()`` opens an aio-pika connection (closed at the end), on an event loop of its
own.

- ``pika`` is the module (``pika`` or ``litemq.pika``); a scenario uses only what both offer.
- ``connect()`` opens a ``BlockingConnection`` (closed at the end of the test); ``connect.spawn(worker, ...)`` runs
  a function of conformance_workers.py in a child process connected the same way.
- ``names.q("hello")`` / ``names.x("logs")`` give a queue / exchange name unique to this run (deleted from
  RabbitMQ afterwards); the unique prefix is mapped away before observations are compared.

Observations are plain data (dicts, lists, str, int, bool, None; bytes are decoded as UTF-8). RabbitMQ's are kept
in rabbitmq_observations.json: the RabbitMQ run must reproduce them and the litemq run must equal them (or, when
RabbitMQ ran in the same session, equal what it just observed). So the litemq half still runs where no RabbitMQ is
reachable. After changing a scenario, re-record: ``LITEMQ_RECORD_CONFORMANCE=1 pytest tests/conformance`` runs only
the RabbitMQ half and merges what it saw into the file (delete the file first to drop renamed scenarios).

RabbitMQ answers a queue_declare before it has handled earlier publishes, acks and nacks of the same channel (its
stat call jumps the queue process's mailbox), so scenarios publish with confirms before counting, and read counts
after settling with ``eventually``. Observations never include timing (how many idle yields, which of two racing
events came first), nor the wording of a reply text, only its gist (``reply_gist``).

Where litemq deliberately differs, ``@conformance(litemq_differs={...}, because="...")`` names the observations
that differ and litemq's documented values; everything else must still be identical.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import select
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

from engines import as_url, selected_engines

HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "rabbitmq_observations.json"
RECORDING = os.environ.get("LITEMQ_RECORD_CONFORMANCE") == "1"
BACKENDS = ("rabbitmq", "litemq")

WAIT = 5.0
"""Longest a scenario waits for something that must happen (it normally takes milliseconds)."""
QUIET = 0.15
"""How long a scenario listens to show that something does *not* arrive."""

# RabbitMQ's observations: recorded in the golden file, and those seen in this session.
_golden: Optional[dict[str, Any]] = None
session_observations: dict[str, Any] = {}
recorded: dict[str, Any] = {}


def golden() -> dict[str, Any]:
    global _golden
    if _golden is None:
        _golden = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}
    return _golden


def write_recorded() -> None:
    """Merge this session's recorded RabbitMQ observations into the golden file (record mode only)."""
    if not recorded:
        return
    merged = {**golden(), **recorded}
    GOLDEN.write_text(format_observations(merged))


def format_observations(observations: dict[str, Any]) -> str:
    """JSON with one line per scenario observation, so a diff of the file reads scenario by scenario."""
    lines = []
    for key in sorted(observations):
        value = observations[key]
        if isinstance(value, dict) and value:
            inner = ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in value.items())
            lines.append(f" {json.dumps(key)}: {{\n{inner}\n }}")
        else:
            lines.append(f" {json.dumps(key)}: {json.dumps(value)}")
    return "{\n" + ",\n".join(lines) + "\n}\n"


# --- the decorator


def conformance(fn: Optional[Callable[..., Any]] = None, *, litemq_differs: Optional[dict[str, Any]] = None,
                because: str = "") -> Any:
    """Turn ``scenario(pika, connect, names) -> observations`` into a test run once per backend.

    ``litemq_differs``: observation keys whose litemq value deliberately differs, with that value (``because``
    says why)."""
    if litemq_differs and not because:
        raise ValueError("a documented difference needs its reason (because=...)")

    def wrap(scenario: Callable[..., Any]) -> Any:
        def test(backend: "Backend") -> None:
            backend.check(scenario, litemq_differs or {})

        test.__name__ = scenario.__name__
        test.__qualname__ = scenario.__qualname__
        test.__doc__ = scenario.__doc__
        test.__module__ = scenario.__module__
        test.scenario = scenario  # type: ignore[attr-defined]
        params = [pytest.param(("rabbitmq", None), id="rabbitmq")] + [
            pytest.param(("litemq", engine), id=f"litemq-{engine}") for engine in selected_engines()]
        return pytest.mark.parametrize("backend", params, indirect=True)(test)

    return wrap(fn) if fn is not None else wrap


# --- one run of a scenario against one backend


class Names:
    """Queue and exchange names unique to one run; RabbitMQ's are deleted afterwards."""

    def __init__(self) -> None:
        self.prefix = f"lmqc-{uuid.uuid4().hex[:10]}-"
        self.queues: list[str] = []
        self.exchanges: list[str] = []

    def q(self, name: str) -> str:
        full = self.prefix + name
        self.queues.append(full)
        return full

    def x(self, name: str) -> str:
        full = self.prefix + name
        self.exchanges.append(full)
        return full


class Connector:
    """``connect()`` opens a BlockingConnection to this backend; ``spawn`` runs a worker in a child process."""

    def __init__(self, backend: "Backend") -> None:
        self._backend = backend
        self.name = backend.name
        self.connections: list[Any] = []
        self.children: list[Child] = []

    def __call__(self) -> Any:
        connection = self._backend.pika.BlockingConnection(self._backend.parameters())
        self.connections.append(connection)
        return connection

    def spawn(self, worker: str, *args: Any) -> "Child":
        """Run ``conformance_workers.<worker>(backend, target, *args)`` in a new Python process; it prints
        ``ready`` once set up, then waits to be killed."""
        call = f"w.{worker}({self.name!r}, {self._backend.target!r}, *{args!r})"
        code = (f"import sys; sys.path.insert(0, {str(HERE.parent)!r}); "
                f"import conformance.conformance_workers as w; {call}")
        child = Child(subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       env=self._backend.env))
        self.children.append(child)
        return child

    def close_all(self) -> None:
        for child in self.children:
            child.kill()
        for connection in self.connections:
            try:
                if connection.is_open:
                    connection.close()
            except Exception:
                pass


AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"


class AsyncConnector:
    """``await connect()`` opens an aio-pika connection to this backend; all are closed at the end."""

    def __init__(self, aio_pika: Any, url: str) -> None:
        self._aio_pika = aio_pika
        self._url = url
        self.connections: list[Any] = []

    async def __call__(self) -> Any:
        connection = await self._aio_pika.connect(self._url)
        self.connections.append(connection)
        return connection

    async def close_all(self) -> None:
        for connection in self.connections:
            if not connection.is_closed:
                await connection.close()


class Child:
    """A worker process, bounded in time: waited for with a deadline, killed by pid."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.process = process

    def wait_ready(self, timeout: float = 20.0) -> None:
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        line = self.process.stdout.readline().decode().strip() if ready else ""
        if line != "ready":
            self.kill()
            err = self.process.stderr.read().decode() if self.process.stderr else ""
            raise AssertionError(f"worker never became ready (got {line!r}); stderr:\n{err}")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()  # SIGKILL, by pid
        self.process.wait(10)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


class Backend:
    """One backend for one test: the pika module, how to connect, names, and clean-up."""

    def __init__(self, name: str, test_key: str, db_path: Optional[str], env: dict[str, str]) -> None:
        self.name = name
        self.test_key = test_key
        self.env = env
        self.names = Names()
        if name == "rabbitmq":
            import pika
            self.pika = pika
            self.target = "amqp"
        else:
            from litemq import pika as lite
            assert db_path is not None
            self.pika = lite
            self.target = as_url(db_path)
        self.connect = Connector(self)

    def parameters(self) -> Any:
        return parameters(self.pika, self.target)

    def check(self, scenario: Callable[..., Any], litemq_differs: dict[str, Any]) -> None:
        if inspect.iscoroutinefunction(scenario):
            observations = asyncio.run(self._run_async(scenario))
        else:
            observations = scenario(self.pika, self.connect, self.names)
        observed = normalize(observations, self.names.prefix)
        if self.name == "rabbitmq":
            session_observations[self.test_key] = observed
            if RECORDING:
                recorded[self.test_key] = observed
                return
            assert self.test_key in golden(), (
                f"no recorded RabbitMQ observations for {self.test_key}: record them with "
                f"LITEMQ_RECORD_CONFORMANCE=1")
            expected = golden()[self.test_key]
            assert observed == expected, (
                f"RabbitMQ no longer behaves as recorded for {self.test_key} (scenario changed? re-record with "
                f"LITEMQ_RECORD_CONFORMANCE=1)")
            return
        rabbit = session_observations.get(self.test_key, golden().get(self.test_key))
        assert rabbit is not None, (f"no RabbitMQ observations for {self.test_key} to compare with: run the "
                                    f"rabbitmq half with LITEMQ_RECORD_CONFORMANCE=1")
        assert isinstance(rabbit, dict) or not litemq_differs
        expected = {**rabbit, **normalize(litemq_differs, "")} if litemq_differs else rabbit
        if litemq_differs:
            missing = set(litemq_differs) - set(rabbit)
            assert not missing, f"documented differences name unknown observations: {missing}"
            for key, value in litemq_differs.items():
                assert rabbit[key] != normalize(value, ""), f"{key!r} is documented to differ but does not"
        assert observed == expected

    async def _run_async(self, scenario: Callable[..., Any]) -> Any:
        if self.name == "rabbitmq":
            aio_pika = pytest.importorskip("aio_pika")
        else:
            from litemq import aio_pika
        connect = AsyncConnector(aio_pika, AMQP_URL if self.target == "amqp" else self.target)
        try:
            return await asyncio.wait_for(scenario(aio_pika, connect, self.names), 60)
        finally:
            await connect.close_all()

    def clean_up(self) -> None:
        self.connect.close_all()
        if self.name == "rabbitmq" and (self.names.queues or self.names.exchanges):
            delete_from_rabbitmq(self.pika, self.names.queues, self.names.exchanges)


def parameters(pika: Any, target: str) -> Any:
    if target == "amqp":
        return pika.ConnectionParameters(host="127.0.0.1", port=5672,
                                         credentials=pika.PlainCredentials("guest", "guest"),
                                         connection_attempts=1, socket_timeout=5, blocked_connection_timeout=5)
    return pika.URLParameters(target)


def delete_from_rabbitmq(pika: Any, queues: list[str], exchanges: list[str]) -> None:
    connection = pika.BlockingConnection(parameters(pika, "amqp"))
    try:
        channel = connection.channel()
        for kind, name in [("q", q) for q in dict.fromkeys(queues)] + [("x", x) for x in dict.fromkeys(exchanges)]:
            try:
                if kind == "q":
                    channel.queue_delete(name)
                else:
                    channel.exchange_delete(name)
            except pika.exceptions.ChannelClosedByBroker:
                channel = connection.channel()
    finally:
        connection.close()


def normalize(value: Any, prefix: str) -> Any:
    """Plain JSON data, with the run's unique prefix taken out of every string."""
    if isinstance(value, dict):
        return {str(normalize(k, prefix)): normalize(v, prefix) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [normalize(v, prefix) for v in value]
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("utf-8")
    if isinstance(value, str):
        return value.replace(prefix, "") if prefix else value
    if value is None or isinstance(value, (bool, int, float)):
        return value
    raise TypeError(f"observations must be plain data, not {type(value).__name__}: {value!r}")


# --- helpers for scenarios


def outcome(call: Callable[[], Any]) -> str:
    """``"ok"``, or the error a call raised: its pika class name and, for broker closes, the reply code."""
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - the observation is which error it was
        code = getattr(exc, "reply_code", None) if "Closed" in type(exc).__name__ else None
        if type(exc).__name__ in ("UnroutableError", "NackError"):
            return f"{type(exc).__name__} {[m.body.decode() for m in exc.messages]}"
        return f"{type(exc).__name__} {code}" if code is not None else type(exc).__name__
    return "ok"


def reply_gist(text: Optional[str], *names: str) -> Any:
    """The gist of a broker's reply text, comparable between backends whose wording differs: None for no text,
    else ``[reply name, [whether the text mentions each of names]]``, the reply name being what precedes " - "
    (``"PRECONDITION_FAILED"``)."""
    if text is None:
        return None
    return [text.split(" - ", 1)[0], [name in text for name in names]]


def pump(connection: Any, until: Callable[[], bool], timeout: float = WAIT) -> bool:
    """Process the connection's events until ``until()`` holds (or ``timeout`` passes); returns whether it held."""
    deadline = time.monotonic() + timeout
    while not until():
        if time.monotonic() > deadline:
            return False
        connection.process_data_events(time_limit=0.01)
    return True


def linger(connection: Any, seconds: float = QUIET) -> None:
    """Process events for a while, so whatever would arrive arrives."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        connection.process_data_events(time_limit=max(0.0, deadline - time.monotonic()))


def eventually(check: Callable[[], Any], expected: Any, timeout: float = WAIT) -> Any:
    """Call ``check`` until it returns ``expected`` (or ``timeout`` passes); returns its last result."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result == expected or time.monotonic() > deadline:
            return result
        time.sleep(0.01)


def bodies(channel: Any, queue: str) -> list[str]:
    """Take every ready message of the queue with basic_get (auto-ack), in order; their bodies."""
    taken = []
    while True:
        method, _, body = channel.basic_get(queue, auto_ack=True)
        if method is None:
            return taken
        taken.append(body.decode())


class Inbox:
    """A consumer callback that records what it receives, and can ack as it goes."""

    def __init__(self, ack: bool = False) -> None:
        self.ack = ack
        self.received: list[dict[str, Any]] = []
        self.deliveries: list[tuple[Any, Any]] = []

    def __call__(self, channel: Any, method: Any, properties: Any, body: bytes) -> None:
        self.received.append({"body": body.decode(), "redelivered": method.redelivered,
                              "exchange": method.exchange, "routing_key": method.routing_key})
        self.deliveries.append((channel, method))
        if self.ack:
            channel.basic_ack(method.delivery_tag)

    @property
    def bodies(self) -> list[str]:
        return [r["body"] for r in self.received]

    @property
    def flags(self) -> list[list[Any]]:
        return [[r["body"], r["redelivered"]] for r in self.received]

    def __len__(self) -> int:
        return len(self.received)


def queue_state(connection: Any, queue: str) -> Any:
    """``[ready, consumers]`` of the queue, or the passive declare's error (on a throwaway channel)."""
    channel = connection.channel()
    result: Any = None

    def declare() -> None:
        nonlocal result
        frame = channel.queue_declare(queue, passive=True)
        result = [frame.method.message_count, frame.method.consumer_count]

    error = outcome(declare)
    if channel.is_open:
        channel.close()
    return result if error == "ok" else error


async def outcome_async(call: Callable[[], Any]) -> str:
    """``"ok"``, or the class name of the error an awaited call raised (aio-pika's classes, by name)."""
    try:
        await call()
    except Exception as exc:  # noqa: BLE001 - the observation is which error it was
        return type(exc).__name__
    return "ok"


async def eventually_async(check: Callable[[], Any], expected: Any, timeout: float = WAIT) -> Any:
    """``eventually`` for a coroutine function."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result == expected or time.monotonic() > deadline:
            return result
        await asyncio.sleep(0.01)
