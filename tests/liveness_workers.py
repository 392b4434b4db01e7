"""What the processes started by test_liveness.py, test_renewal_and_signals.py and test_threads_and_fork.py run.

Spawn (and ``python -c``) imports this module in the child, so the workers live here rather than in the test
modules. Every worker reports through files in a directory the test gives it (its tmp_path): results as text
files written atomically, and any unexpected exception as ``errors/<worker name>.txt`` with its traceback, so an
exception inside a child cannot pass unnoticed. Workers that hold deliveries and wait do so for at most
WAIT_SECONDS; the tests kill them by pid long before.

The last section holds the few helpers the test modules share (waiting for files, reading error reports).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import sys
import threading
import time
from pathlib import Path

import litemq
from engines import sql_rows
from process_workers import reporting_errors, wait_for_file, write_atomically
import litemq.store.doorbells
import litemq.store.hangup
import litemq.store.lockfiles

WAIT_SECONDS = 60.0
"""Longest a worker waits for the test (the tests themselves are bounded much more tightly)."""
LONG_LEASE = 600.0
"""A lease no test outlives: a delivery that comes back within seconds came back because its holder died."""




def describe(delivery: litemq.Delivery) -> str:
    """One line per delivery: ``<body> <redelivered 0/1>``."""
    return f"{delivery.body.decode()} {int(delivery.redelivered)}"


def take(consumer: litemq.Consumer, count: int, timeout: float) -> list[litemq.Delivery]:
    """Up to ``count`` deliveries from the consumer, all within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    deliveries = []
    while len(deliveries) < count:
        delivery = consumer.get(timeout=max(0.0, deadline - time.monotonic()))
        if delivery is None:
            break
        deliveries.append(delivery)
    return deliveries


def take_exactly(conn: litemq.Connection, queue: str, count: int, lease_seconds: float) -> list[litemq.Delivery]:
    """``count`` deliveries from the queue, consumed with prefetch ``count``, within 10 s (or AssertionError)."""
    consumer = conn.consume(queue, prefetch=count, lease_seconds=lease_seconds)
    deliveries = take(consumer, count, timeout=10)
    if len(deliveries) != count:
        raise AssertionError(f"got {len(deliveries)} of {count} deliveries from {queue!r} within 10 s")
    return deliveries


def switch_off_abstract_sockets() -> None:
    """Before connecting: doorbells poll the file, and deaths are found by checking locks on a timer."""
    litemq.store.doorbells.ABSTRACT_SOCKETS = False
    litemq.store.hangup.WATCHABLE = False


# --- processes that hold deliveries and then die (or are killed, stopped, or asked to ack)

def hold(db: str, queue: str, count: int, out_dir: str, name: str, lease_seconds: float = LONG_LEASE,
         ending: str = "wait") -> None:
    """Consume ``count`` deliveries with prefetch ``count`` and the given lease, never ack them, write their
    bodies (one per line) and this process's connection id to ``held-<name>``, then end as ``ending`` says:

    - "wait": sleep until killed (or stopped) by the test;
    - "os._exit": once the test writes ``die-<name>``, os._exit(1): no close, no atexit;
    - "raise": once the test writes ``die-<name>``, crash with an uncaught exception, never calling close;
    - "ack": once the test writes ``ack-<name>``, ack them all, close, and write ``acked-<name>``.
    """
    out = Path(out_dir)
    with reporting_errors(out_dir, name):
        conn = litemq.connect(db)
        deliveries = take_exactly(conn, queue, count, lease_seconds)
        held = [d.body.decode() for d in deliveries]
        write_atomically(out / f"held-{name}", "\n".join(held + [conn._session.connection_id]))
        if ending == "wait":
            time.sleep(WAIT_SECONDS)
            raise AssertionError(f"{name} was not killed within {WAIT_SECONDS}s")
        if ending == "ack":
            wait_for_file(out / f"ack-{name}")
            for delivery in deliveries:
                delivery.ack()
            conn.close()
            write_atomically(out / f"acked-{name}", "")
            return
        wait_for_file(out / f"die-{name}")
    if ending == "os._exit":
        os._exit(1)
    if ending == "raise":
        raise RuntimeError(f"{name} crashes holding {count} deliveries")  # uncaught: the process ends with it
    raise ValueError(f"unknown ending {ending!r}")


def own_exclusive_queue_and_consumers(db: str, shared_queue: str, out_dir: str) -> None:
    """Declare a server-named exclusive queue holding one message, and an auto-delete queue; consume from the
    auto-delete queue and from ``shared_queue`` (declared by the test); write the two names to ``owned``; wait to
    be killed."""
    out = Path(out_dir)
    with reporting_errors(out_dir, "owner"):
        conn = litemq.connect(db)
        exclusive = conn.declare_queue("", exclusive=True).queue
        conn.publish("", exclusive, b"private")
        auto_delete = conn.declare_queue("", auto_delete=True).queue
        conn.consume(auto_delete)
        conn.consume(shared_queue)
        write_atomically(out / "owned", f"{exclusive}\n{auto_delete}")
        time.sleep(WAIT_SECONDS)
        raise AssertionError(f"owner was not killed within {WAIT_SECONDS}s")


def hold_through_a_cleanup(db: str, queue: str, count: int, out_dir: str, name: str = "holder") -> None:
    """Hold ``count`` deliveries (lease 600 s), an exclusive queue and a consumed auto-delete queue; write
    ``held-<name>``: the bodies, then the connection id and the two queues' names, one per line. Once the test
    writes ``ack-<name>``, ack every delivery (a LeaseExpired is reported as an error) and write ``acked-<name>``;
    then wait to be killed."""
    out = Path(out_dir)
    with reporting_errors(out_dir, name):
        conn = litemq.connect(db)
        deliveries = take_exactly(conn, queue, count, LONG_LEASE)
        exclusive = conn.declare_queue("", exclusive=True).queue
        auto_delete = conn.declare_queue("", auto_delete=True).queue
        conn.consume(auto_delete)
        lines = [d.body.decode() for d in deliveries] + [conn._session.connection_id, exclusive, auto_delete]
        write_atomically(out / f"held-{name}", "\n".join(lines))
        wait_for_file(out / f"ack-{name}")
        for delivery in deliveries:
            delivery.ack()
        write_atomically(out / f"acked-{name}", "")
        time.sleep(WAIT_SECONDS)
        raise AssertionError(f"{name} was not killed within {WAIT_SECONDS}s")


# --- consumers in other processes

def collect(db: str, queue: str, count: int, out_dir: str, timeout: float, name: str = "collector",
            fallback: bool = False, start_after: str = "") -> None:
    """Start consuming, write ``waiting-<name>``, then take up to ``count`` deliveries within ``timeout`` seconds,
    ack them, and write ``collected-<name>``: one ``<body> <redelivered 0/1>`` line per delivery.

    With ``fallback``, first switch off abstract sockets (doorbells poll the file, deaths are found on a timer).
    With ``start_after``, connect, write ``ready-<name>``, and start consuming only once that file exists."""
    out = Path(out_dir)
    with reporting_errors(out_dir, name):
        if fallback:
            switch_off_abstract_sockets()
        conn = litemq.connect(db)
        if start_after:
            write_atomically(out / f"ready-{name}", "")
            wait_for_file(out / start_after)
        consumer = conn.consume(queue)
        write_atomically(out / f"waiting-{name}", "")
        deliveries = take(consumer, count, timeout)
        for delivery in deliveries:
            delivery.ack()
        conn.close()
        write_atomically(out / f"collected-{name}", "".join(describe(d) + "\n" for d in deliveries))


def wait_through_a_flood(db: str, queue: str, out_dir: str) -> None:
    """Consume from an empty queue. Once waiting, write ``waiting``: the consumer's doorbell address (hex). When the
    test writes ``flood-done``, write ``commits``: this connection's write transactions since it began waiting, and
    the CPU seconds this process used meanwhile. Write ``delivered``: the next delivery's body and wall time."""
    out = Path(out_dir)
    with reporting_errors(out_dir, "flooded"):
        conn = litemq.connect(db)
        consumer = conn.consume(queue)

        def count_commits() -> None:
            with reporting_errors(out_dir, "flood-counter"):
                while not consumer.waiting:
                    time.sleep(0.001)
                commits, cpu = conn._store.commits, time.process_time()
                write_atomically(out / "waiting", consumer.doorbell.address.hex())
                wait_for_file(out / "flood-done")
                write_atomically(out / "commits", f"{conn._store.commits - commits} {time.process_time() - cpu}")

        counter = threading.Thread(target=count_commits)
        counter.start()
        delivery = consumer.get(timeout=WAIT_SECONDS)
        delivered_at = time.time()
        counter.join()
        if delivery is None:
            raise AssertionError(f"nothing came within {WAIT_SECONDS}s")
        delivery.ack()
        conn.close()
        write_atomically(out / "delivered", f"{delivery.body.decode()} {delivered_at}")


def measure_idle_cpu(db: str, queue: str, seconds: float, out_dir: str, fallback: bool = False) -> None:
    """Wait ``seconds`` on an empty queue and write ``cpu``: the CPU seconds the whole process (all its threads)
    used meanwhile, and the wall seconds, as ``<cpu> <wall>``."""
    out = Path(out_dir)
    with reporting_errors(out_dir, "idle"):
        if fallback:
            switch_off_abstract_sockets()
        conn = litemq.connect(db)
        consumer = conn.consume(queue)
        cpu, wall = time.process_time(), time.monotonic()
        delivery = consumer.get(timeout=seconds)
        cpu, wall = time.process_time() - cpu, time.monotonic() - wall
        if delivery is not None:
            raise AssertionError(f"the queue was meant to stay empty; got {delivery.body!r}")
        conn.close()
        write_atomically(out / "cpu", f"{cpu} {wall}")


def count_ready(db: str, queue: str, out_dir: str, name: str) -> None:
    """Open a connection, write the queue's ready count to ``count-<name>``, and close."""
    with reporting_errors(out_dir, name):
        conn = litemq.connect(db)
        count = conn.declare_queue(queue, passive=True).message_count
        conn.close()
        write_atomically(Path(out_dir) / f"count-{name}", str(count))


# --- other Unix users (test_permissions.py runs these as users it creates)

def hold_shared(db: str, queue: str, out_dir: str, name: str) -> None:
    """Open the file with ``share_with_group``, publish ``<name>-0`` and ``<name>-1`` to the queue, hold the first
    (lease 600 s), write ``held-<name>`` with the connection id, and wait to be killed."""
    with reporting_errors(out_dir, name):
        conn = litemq.connect(db, share_with_group=True)
        conn.declare_queue(queue)
        conn.publish("", queue, f"{name}-0")
        conn.publish("", queue, f"{name}-1")
        delivery = conn.get(queue, lease_seconds=LONG_LEASE)
        if delivery is None or delivery.body != f"{name}-0".encode():
            raise AssertionError(f"expected {name}-0, got {delivery}")
        write_atomically(Path(out_dir) / f"held-{name}", conn._session.connection_id)
        time.sleep(WAIT_SECONDS)
        raise AssertionError(f"{name} was not killed within {WAIT_SECONDS}s")


def work_with_shared_file(db: str, queue: str, holder_id: str, out_dir: str, name: str) -> None:
    """Take one message from the queue and ack it, publish ``<name>-0``, and write ``done-<name>``: the body taken
    and whether the holder's connection is alive, as this process sees it."""
    with reporting_errors(out_dir, name):
        with litemq.connect(db) as conn:
            delivery = conn.get(queue)
            if delivery is None:
                raise AssertionError(f"queue {queue!r} was empty")
            delivery.ack()
            conn.publish("", queue, f"{name}-0")
            alive = not conn._session.liveness.is_dead(holder_id)
        write_atomically(Path(out_dir) / f"done-{name}", f"{delivery.body.decode()} {alive}")


def interfere(db: str, holder_id: str, out_dir: str, name: str) -> None:
    """Try everything a user outside the file's group might to read messages or fake liveness; write
    ``tried-<name>``: one ``<attempt> <outcome>`` line each (the exception's class, or ``done``)."""
    import fcntl
    import shutil

    directory = litemq.store.lockfiles.sidecar_directory(db)
    lock = os.path.join(directory, holder_id + litemq.store.lockfiles.SUFFIX)

    def read_database() -> None:
        with open(db, "rb") as f:
            f.read()

    def read_wal() -> None:
        with open(db + "-wal", "rb") as f:
            f.read()

    def query() -> None:
        sqlite3.connect(f"file:{db}?mode=ro", uri=True).execute("SELECT body FROM litemq_messages").fetchall()

    def lock_holder_file() -> None:
        fd = os.open(lock, os.O_RDONLY)
        fcntl.flock(fd, fcntl.LOCK_SH)

    def connect() -> None:
        litemq.connect(db).close()

    attempts = {
        "read-database": read_database,
        "read-wal": read_wal,
        "query": query,
        "list-lock-directory": lambda: os.listdir(directory),
        "open-lock-file": lock_holder_file,
        "remove-lock-directory": lambda: shutil.rmtree(directory),
        "rename-lock-directory": lambda: os.rename(directory, directory + ".moved"),
        "connect": connect,
    }
    outcomes = []
    with reporting_errors(out_dir, name):
        for attempt, call in attempts.items():
            try:
                call()
                outcome = "done"
            except Exception as exc:
                outcome = type(exc).__name__
            outcomes.append(f"{attempt} {outcome}")
        write_atomically(Path(out_dir) / f"tried-{name}", "\n".join(outcomes))


def connect_and_report(db: str, out_dir: str, name: str) -> None:
    """Open the file and close it; write ``opened-<name>``: ``opened``, or the litemq error's class and message."""
    try:
        litemq.connect(db).close()
        outcome = "opened"
    except litemq.LiteMQError as exc:
        outcome = f"{type(exc).__name__}: {exc}"
    write_atomically(Path(out_dir) / f"opened-{name}", outcome)


# --- processes that receive signals (run with ``python -c`` so the test sees their exit code and stderr)

def consume_unacked_until_signalled(db: str, queue: str, out_dir: str) -> None:
    """Iterate ``conn.consume`` inside ``with litemq.connect(...)``, holding the first delivery unacked (lease
    600 s) and waiting for more; write ``got`` on the first delivery. No signal handling of its own: SIGTERM and
    SIGINT do whatever litemq and Python do by default."""
    with litemq.connect(db) as conn:
        for delivery in conn.consume(queue, prefetch=1, lease_seconds=LONG_LEASE):
            write_atomically(Path(out_dir) / "got", describe(delivery))


def consume_until_ctrl_c(db: str, queue: str, out_dir: str) -> None:
    """As ``consume_unacked_until_signalled``, but catching KeyboardInterrupt outside the ``with`` block, as an
    application does: write ``interrupted`` (and whether the connection was closed by then) and exit 0."""
    conn = None
    try:
        with litemq.connect(db) as conn:
            for delivery in conn.consume(queue, prefetch=1, lease_seconds=LONG_LEASE):
                write_atomically(Path(out_dir) / "got", describe(delivery))
    except KeyboardInterrupt:
        closed = conn is not None and not conn.is_open
        write_atomically(Path(out_dir) / "interrupted", "closed" if closed else "open")


def interrupted_as_a_transaction_begins(db: str, out_dir: str, source: str = "consumer") -> None:
    """Hold a delivery (from a consumer, or from a get: ``source``), then ack it at a moment when Ctrl-C lands just as
    the ack's write begins: another connection holds the write lock, SIGINT arrives while the ack waits for it, and
    the lock is released, so the KeyboardInterrupt is raised as BEGIN (a consumer's ack, which refills in the same
    transaction) or the autocommit DELETE (a get's) returns. Write ``outcome``: how the ack ended, whether the write
    lock was free afterwards, and how closing went, one per line."""
    out = Path(out_dir)
    conn = litemq.connect(db)
    conn.declare_queue("jobs")
    conn.publish("", "jobs", b"job")
    if source == "get":
        delivery = conn.get("jobs", lease_seconds=LONG_LEASE)
    else:
        delivery = next(iter(conn.consume("jobs", prefetch=1, lease_seconds=LONG_LEASE)))
    assert delivery is not None
    blocker = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    blocker.execute("BEGIN IMMEDIATE")

    def interrupt_then_release() -> None:
        time.sleep(0.3)  # the ack is waiting for the write lock by now
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.3)
        blocker.execute("ROLLBACK")

    thread = threading.Thread(target=interrupt_then_release)
    thread.start()
    try:
        delivery.ack()
        ack = "acked"
    except KeyboardInterrupt:
        ack = "interrupted"
    thread.join()
    blocker.close()
    probe = sqlite3.connect(db, timeout=1.0, isolation_level=None)
    try:
        probe.execute("BEGIN IMMEDIATE")
        probe.execute("ROLLBACK")
        lock = "write lock free"
    except sqlite3.OperationalError as exc:
        lock = f"write lock held: {exc}"
    finally:
        probe.close()
    try:
        conn.close()
        closing = "closed"
    except Exception as exc:
        closing = f"close failed: {exc!r}"
    write_atomically(out / "outcome", "\n".join([ack, lock, closing]))


class Stop(Exception):
    """Raised by the application's own SIGTERM handler."""


def consume_with_own_sigterm_handler(db: str, queue: str, out_dir: str) -> None:
    """Install a SIGTERM handler of our own, then iterate a consumer. On the first delivery write ``got`` with
    whether our handler is still the one installed; when our handler runs, it raises Stop, which we catch and
    report in ``stopped`` (again with whether our handler is still installed)."""
    out = Path(out_dir)
    calls: list[int] = []

    def on_sigterm(signum: int, frame: object) -> None:
        calls.append(signum)
        raise Stop()

    with reporting_errors(out_dir, "own-handler"):
        signal.signal(signal.SIGTERM, on_sigterm)
        try:
            with litemq.connect(db) as conn:
                for delivery in conn.consume(queue, prefetch=1, lease_seconds=LONG_LEASE):
                    mine = signal.getsignal(signal.SIGTERM) is on_sigterm
                    write_atomically(out / "got", f"{describe(delivery)} {'ours' if mine else 'replaced'}")
        except Stop:
            mine = signal.getsignal(signal.SIGTERM) is on_sigterm
            write_atomically(out / "stopped", f"{len(calls)} {'ours' if mine else 'replaced'}")


# --- fork

def hold_then_fork(db: str, queue: str, out_dir: str) -> None:
    """Take one delivery (lease 600 s), fork a child that only sleeps, write ``held`` with the child's pid, and
    wait to be killed. The child inherits the connection's descriptors but must not keep it alive."""
    out = Path(out_dir)
    with reporting_errors(out_dir, "forking-holder"):
        conn = litemq.connect(db)
        delivery = conn.get(queue, lease_seconds=LONG_LEASE)
        if delivery is None:
            raise AssertionError(f"queue {queue!r} was empty")
        child = os.fork()
        if child == 0:
            try:
                time.sleep(WAIT_SECONDS)
            finally:
                os._exit(0)
        write_atomically(out / "held", f"{describe(delivery)}\n{child}")
        time.sleep(WAIT_SECONDS)
        raise AssertionError(f"forking-holder was not killed within {WAIT_SECONDS}s")


# --- helpers for the test modules

def worker_errors(out_dir: Path) -> dict[str, str]:
    errors = Path(out_dir) / "errors"
    if not errors.is_dir():
        return {}
    return {f.stem: f.read_text() for f in sorted(errors.iterdir())}


def wait_for_files(paths: list[Path], timeout: float = 30.0) -> None:
    """Wait for every path (the first one's directory holds the workers' error reports)."""
    deadline = time.monotonic() + timeout
    while not all(p.exists() for p in paths):
        missing = [p.name for p in paths if not p.exists()]
        assert time.monotonic() < deadline, f"{missing} never appeared; errors: {worker_errors(paths[0].parent)}"
        time.sleep(0.005)


def sql(db_path: str, statement: str, *params: object) -> list[tuple]:
    """Look at (or change) the broker with plain SQL, as a person would (sqlite3 on a file, psycopg on a server)."""
    return sql_rows(db_path, statement, params)


def python_command(call: str) -> list[str]:
    """A ``python -c`` command line that imports this module and runs ``call`` (e.g. ``w.f('a', 'b')``)."""
    tests = str(Path(__file__).resolve().parent)
    return [sys.executable, "-c", f"import sys; sys.path.insert(0, {tests!r}); import liveness_workers as w; {call}"]


def default_signals() -> None:
    """preexec_fn for subprocesses: SIGINT and SIGTERM at their defaults, even if this process ignores them (as a
    background job in a shell without job control does), so the child's Python sees what a terminal gives it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
