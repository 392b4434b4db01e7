"""How fast a SIGKILLed process is noticed: litemq beside RabbitMQ, on this machine.

    python bench/crash_detection.py [--trials 20] [--settle 0.2] [--no-rabbitmq] [--url postgresql://...]

Each trial starts a fresh process, lets it take what it holds, waits --settle seconds so everyone else is
asleep or polling, reads the clock right before ``os.kill(pid, SIGKILL)``, and measures until:

(a) redelivery: the process is a consumer (prefetch 1) holding one unacked delivery (a 600 s lease, so only the
    crash can return it); a consumer already waiting on that queue in another process receives it (it reads the
    clock on receipt).
(b) exclusive queue, polled: the process owns an exclusive queue; another process calls
    ``declare_queue(name, passive=True)`` in a tight loop (405 while the owner lives) until it gets 404.
    Afterwards the bench also looks in the file (plain sqlite3) to see whether the queue row is really gone.
(c) exclusive queue, nobody polling: the same queue, but the only other litemq process is a consumer waiting on
    some other queue; this process watches the litemq_queues row with plain read-only sqlite3 every 0.5 ms.

The floor row is the kernel's share of every figure: from SIGKILL until a socket connected to the dead process
turns readable (the process's memory is torn down before its files and sockets are closed).

With ``--url postgresql://user@host/db`` litemq runs on that PostgreSQL server (a fresh schema, dropped after)
instead of a temporary SQLite file, and (b) and (c) look for the queue's row with psycopg.

RabbitMQ (127.0.0.1:5672, guest/guest, through pika) runs (a) and (b) the same way when it is reachable; (c) is
RabbitMQ's own job (the broker sees the TCP connection drop), so (b) is its figure there. All clocks are
time.monotonic(), which is system-wide on Linux, so times taken in different processes compare.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import platform
import select
import signal
import socket
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from typing import Any, Callable, Iterator, Optional

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if os.path.isfile(os.path.join(REPO, "litemq", "__init__.py")) and REPO not in sys.path:
    sys.path.insert(0, REPO)  # run from a checkout: measure this checkout's litemq

import litemq  # noqa: E402

RABBITMQ = ("127.0.0.1", 5672)
REFERENCE = {"a": 4.0, "b": 13.0}
"""RabbitMQ's figures on this machine as the issue gives them (ms): redelivery after the kill, exclusive queue gone."""
POLL_SECONDS = 0.0005
TIMEOUT = 30.0


# =============================================================================================================
# Processes (spawned: each imports this module afresh)
# =============================================================================================================

def litemq_holder(path: str, queue: str, pipe: Any) -> None:
    """A consumer (prefetch 1, 600 s lease) that takes one delivery, never acks, and waits to be killed."""
    conn = litemq.connect(path)
    delivery = conn.consume(queue, prefetch=1, lease_seconds=600).get(timeout=TIMEOUT)
    pipe.send(None if delivery is None else delivery.body)
    pipe.recv()  # until killed


def litemq_waiter(path: str, queue: str, pipe: Any) -> None:
    """On each "consume": start a consumer, say "waiting", report (receipt time, body, redelivered), ack, cancel."""
    with litemq.connect(path) as conn:
        conn.declare_queue(queue)
        pipe.send("ready")
        while pipe.recv() == "consume":
            consumer = conn.consume(queue, prefetch=1)
            pipe.send("waiting")
            delivery = consumer.get(timeout=TIMEOUT)
            received = time.monotonic()
            pipe.send(None if delivery is None else (received, delivery.body, delivery.redelivered))
            if delivery is not None:
                delivery.ack()
            consumer.cancel()


def litemq_owner(path: str, pipe: Any) -> None:
    conn = litemq.connect(path)
    pipe.send(conn.declare_queue("", exclusive=True).queue)
    pipe.recv()  # until killed


def litemq_poller(path: str, pipe: Any) -> None:
    """For each queue name: connect, say "polling", passive-declare until 404, report the time, wait for "next"."""
    while (name := pipe.recv()) is not None:
        conn = litemq.connect(path)
        pipe.send("polling")
        deadline = time.monotonic() + TIMEOUT
        gone: Optional[float] = None
        while time.monotonic() < deadline:
            try:
                conn.declare_queue(name, passive=True)
            except litemq.ResourceLocked:
                continue
            except litemq.QueueNotFound:
                gone = time.monotonic()
                break
        pipe.send(gone)
        pipe.recv()  # the bench looks at the file before this connection closes
        conn.close()


def litemq_idle_waiter(path: str, pipe: Any) -> None:
    """A consumer waiting on a queue nobody publishes to, until told to quit."""
    with litemq.connect(path) as conn:
        conn.declare_queue("idle")
        consumer = conn.consume("idle")
        pipe.send("ready")
        while not pipe.poll():
            consumer.get(timeout=0.5)


def socket_owner(pipe: Any) -> None:
    """For the floor: listen on an abstract unix socket (after importing litemq, so as big a process as the
    others), and wait to be killed."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(b"\0litemq-bench-floor-%d" % os.getpid())
    listener.listen(8)
    pipe.send("listening")
    pipe.recv()


def _rabbit() -> Any:
    import pika

    return pika.BlockingConnection(pika.ConnectionParameters(
        host=RABBITMQ[0], port=RABBITMQ[1], credentials=pika.PlainCredentials("guest", "guest"),
        connection_attempts=1, socket_timeout=5, blocked_connection_timeout=5))


def rabbit_holder(queue: str, pipe: Any) -> None:
    conn = _rabbit()
    channel = conn.channel()
    channel.basic_qos(prefetch_count=1)
    for _, _, body in channel.consume(queue, inactivity_timeout=TIMEOUT):
        pipe.send(body)
        break
    pipe.recv()


def rabbit_waiter(queue: str, pipe: Any) -> None:
    conn = _rabbit()
    channel = conn.channel()
    channel.basic_qos(prefetch_count=1)
    pipe.send("ready")
    while pipe.recv() == "consume":
        got: list[tuple[float, bytes, bool]] = []

        def on_message(ch: Any, method: Any, properties: Any, body: bytes) -> None:
            got.append((time.monotonic(), body, method.redelivered))
            ch.basic_ack(method.delivery_tag)

        tag = channel.basic_consume(queue, on_message)
        pipe.send("waiting")
        deadline = time.monotonic() + TIMEOUT
        while not got and time.monotonic() < deadline:
            conn.process_data_events(time_limit=1)
        channel.basic_cancel(tag)
        pipe.send(got[0] if got else None)
    conn.close()


def rabbit_owner(pipe: Any) -> None:
    conn = _rabbit()
    pipe.send(conn.channel().queue_declare("", exclusive=True).method.queue)
    pipe.recv()


def rabbit_poller(pipe: Any) -> None:
    import pika.exceptions

    conn = _rabbit()
    while (name := pipe.recv()) is not None:
        pipe.send("polling")
        deadline = time.monotonic() + TIMEOUT
        gone: Optional[float] = None
        while time.monotonic() < deadline:
            channel = conn.channel()
            try:
                channel.queue_declare(name, passive=True)
                channel.close()
            except pika.exceptions.ChannelClosedByBroker as exc:
                if exc.reply_code == 404:
                    gone = time.monotonic()
                    break
                # 405 RESOURCE_LOCKED: the owner lives; the broker closed this channel, open another
        pipe.send(gone)
        pipe.recv()
    conn.close()


# =============================================================================================================
# The bench
# =============================================================================================================

class Bench:
    def __init__(self, trials: int, settle: float) -> None:
        self.trials = trials
        self.settle = settle
        self.ctx = multiprocessing.get_context("spawn")
        self.started: list[Any] = []

    def spawn(self, target: Callable[..., None], *args: Any) -> tuple[Any, Any]:
        here, there = self.ctx.Pipe()
        process = self.ctx.Process(target=target, args=(*args, there), daemon=True)
        process.start()
        there.close()
        self.started.append(process)
        return process, here

    @staticmethod
    def recv(pipe: Any, timeout: float = TIMEOUT) -> Any:
        if not pipe.poll(timeout):
            raise TimeoutError(f"no answer from a bench process within {timeout} s")
        return pipe.recv()

    def kill(self, process: Any) -> float:
        time.sleep(self.settle)  # everyone else is now asleep in its wait, or in its polling loop
        killed = time.monotonic()
        os.kill(process.pid, signal.SIGKILL)
        return killed

    def cleanup(self) -> None:
        for process in self.started:
            if process.is_alive():
                os.kill(process.pid, signal.SIGKILL)
            process.join(5)

    # --- (a)
    def redelivery(self, holder: Callable[..., None], waiter: Callable[..., None], publish: Callable[[bytes], None],
                   *where: str) -> list[float]:
        waiter_process, waiting = self.spawn(waiter, *where)
        assert self.recv(waiting) == "ready"
        delays = []
        for trial in range(self.trials):
            body = f"trial-{trial}-{uuid.uuid4().hex[:8]}".encode()
            publish(body)
            process, held = self.spawn(holder, *where)
            assert self.recv(held) == body, "the holder did not get the message"
            waiting.send("consume")
            assert self.recv(waiting) == "waiting"
            killed = self.kill(process)
            got = self.recv(waiting)
            process.join(5)
            assert got is not None, "the waiting consumer never got the killed process's message"
            received, got_body, redelivered = got
            assert (got_body, redelivered) == (body, True), (got_body, redelivered)
            delays.append((received - killed) * 1000)
        waiting.send("quit")
        waiter_process.join(10)  # gone before its store is
        return delays

    # --- (b)
    def polled(self, owner: Callable[..., None], poller: Callable[..., None], *where: str,
               row_exists: Optional[Callable[[str], bool]] = None) -> tuple[list[float], int]:
        poller_process, polling = self.spawn(poller, *where)
        delays, phantom = [], 0
        for _ in range(self.trials):
            process, owning = self.spawn(owner, *where)
            name = self.recv(owning)
            polling.send(name)
            assert self.recv(polling) == "polling"
            killed = self.kill(process)
            gone = self.recv(polling)
            process.join(5)
            assert gone is not None, f"queue {name} still there {TIMEOUT} s after its owner was killed"
            delays.append((gone - killed) * 1000)
            if row_exists is not None and row_exists(name):
                phantom += 1
            polling.send("next")
        polling.send(None)
        poller_process.join(10)
        return delays, phantom

    # --- the floor
    def floor(self) -> list[float]:
        """The kernel's share: from SIGKILL until a socket connected to the dead process turns readable."""
        delays = []
        for _ in range(self.trials):
            process, owning = self.spawn(socket_owner)
            assert self.recv(owning) == "listening"
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as watch:
                watch.connect(b"\0litemq-bench-floor-%d" % process.pid)
                killed = self.kill(process)
                assert select.select([watch], [], [], TIMEOUT)[0], "the dead process's socket never turned readable"
                delays.append((time.monotonic() - killed) * 1000)
            process.join(5)
        return delays

    # --- (c)
    def unpolled(self, path: str, queue_exists: Callable[[str], bool]) -> list[float]:
        idle_process, idle = self.spawn(litemq_idle_waiter, path)
        assert self.recv(idle) == "ready"
        delays = []
        for _ in range(self.trials):
            process, owning = self.spawn(litemq_owner, path)
            name = self.recv(owning)
            killed = self.kill(process)
            deadline = killed + TIMEOUT
            while queue_exists(name):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"queue {name} still in the store {TIMEOUT} s after its owner was killed")
                time.sleep(POLL_SECONDS)
            delays.append((time.monotonic() - killed) * 1000)
            process.join(5)
        idle.send("quit")
        idle_process.join(10)
        return delays


@contextlib.contextmanager
def litemq_store(url: Optional[str]) -> Iterator[tuple[str, Callable[[str], bool]]]:
    """Where litemq runs (a temporary file, or a fresh schema on the server ``url`` names) and a test of whether a
    queue's row is still in it, read without litemq (plain sqlite3 read-only, or psycopg)."""
    if url is None:
        with tempfile.TemporaryDirectory() as directory:
            path = os.path.join(directory, "crash.db")
            litemq.connect(path).close()
            with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None,
                                                    timeout=30)) as db:
                yield path, lambda name: db.execute("SELECT 1 FROM litemq_queues WHERE name = ?",
                                                    (name,)).fetchone() is not None
        return
    import psycopg

    from bench.systems_postgres import schema_url

    schema = f"litemq_crash_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True) as db:
        try:
            litemq.connect(schema_url(url, schema)).close()  # creates the schema and its tables
            yield schema_url(url, schema), lambda name: db.execute(
                f'SELECT 1 FROM "{schema}".litemq_queues WHERE name = %s', (name,)).fetchone() is not None
        finally:
            db.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def rabbitmq_reachable() -> bool:
    try:
        with socket.create_connection(RABBITMQ, timeout=1):
            return True
    except OSError:
        return False


def percentiles(values: list[float]) -> tuple[float, float, float]:
    ordered = sorted(values)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))], ordered[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--settle", type=float, default=0.2, help="seconds between setting up and the kill")
    parser.add_argument("--no-rabbitmq", action="store_true", help="skip measuring RabbitMQ itself")
    parser.add_argument("--url", help="a postgresql:// URL: litemq on that server (a fresh schema, dropped after), "
                                      "not on a temporary SQLite file")
    args = parser.parse_args()
    bench = Bench(args.trials, args.settle)
    rows: list[tuple[str, str, Optional[list[float]], str]] = []
    try:
        rows.append(("(floor) kernel: dead process's socket readable", "", bench.floor(), ""))
        with litemq_store(args.url) as (path, queue_exists):
            with litemq.connect(path) as conn:
                conn.declare_queue("crash")
            publisher = litemq.connect(path)
            rows.append(("(a) redelivery to a waiting consumer", "litemq",
                         bench.redelivery(litemq_holder, litemq_waiter, lambda body: publisher.publish(
                             "", "crash", body), path, "crash"), ""))
            publisher.close()
            delays, phantom = bench.polled(litemq_owner, litemq_poller, path, row_exists=queue_exists)
            note = (f"queue row still in the store after the 404 in {phantom}/{args.trials} trials"
                    if phantom else "")
            rows.append(("(b) exclusive queue gone, polled", "litemq", delays, note))
            rows.append(("(c) exclusive queue gone, nobody polling", "litemq", bench.unpolled(path, queue_exists),
                         ""))

        if args.no_rabbitmq:
            pass
        elif not rabbitmq_reachable():
            print(f"RabbitMQ not reachable at {RABBITMQ[0]}:{RABBITMQ[1]}: measured litemq only")
        else:
            conn = _rabbit()
            channel = conn.channel()
            queue = f"litemq-bench-crash-{uuid.uuid4().hex[:12]}"
            channel.queue_declare(queue)
            try:
                rows.insert(2, ("(a) redelivery to a waiting consumer", "RabbitMQ",
                                bench.redelivery(rabbit_holder, rabbit_waiter, lambda body: channel.basic_publish(
                                    "", queue, body), queue), ""))
                delays, _ = bench.polled(rabbit_owner, rabbit_poller)
                rows.insert(4, ("(b) exclusive queue gone, polled", "RabbitMQ", delays, ""))
            finally:
                channel.queue_delete(queue)
                conn.close()
    finally:
        bench.cleanup()

    engine = f"PostgreSQL at {args.url.split('@')[-1]}" if args.url else f"SQLite {sqlite3.sqlite_version}"
    print(f"crash detection: {args.trials} trials, SIGKILL after {args.settle:g} s settled; litemq "
          f"{litemq.__version__} on {engine}, Python {platform.python_version()}, "
          f"{os.cpu_count()} CPUs")
    print(f"{'':47} {'':9} {'p50 ms':>8} {'p90 ms':>8} {'max ms':>8}")
    for what, broker, values, note in rows:
        p50, p90, top = percentiles(values) if values else (float("nan"),) * 3
        print(f"{what:47} {broker:9} {p50:8.2f} {p90:8.2f} {top:8.2f}  {note}".rstrip())
    print(f"reference (the issue, RabbitMQ on this machine): redelivery {REFERENCE['a']:g} ms after the kill, "
          f"exclusive queue removed within {REFERENCE['b']:g} ms")


if __name__ == "__main__":
    main()
