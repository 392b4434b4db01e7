"""What the processes started by test_pika_facade.py and test_rpc.py run.

The tests start these as ``python -c`` subprocesses (see ``python_command``), so they see each child's exit code
and stderr. Every worker reports through files in a directory the test gives it (its tmp_path), written
atomically; an unexpected exception is written to ``errors/<worker name>.txt`` with its traceback, so an exception
inside a child cannot pass unnoticed. Workers that wait do so for at most WAIT_SECONDS; the tests kill them by pid
long before.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

import litemq
import functools

from engines import as_url
from process_workers import reporting_errors as _reporting_errors
from process_workers import write_atomically
from litemq import pika

WAIT_SECONDS = 60.0
"""Longest a worker waits or sleeps (the tests themselves are bounded much more tightly)."""
LONG_LEASE = 600.0
"""A lease no test outlives: a request that comes back within seconds came back because its holder died."""

# A Ctrl-C these workers get is the test's doing, not an error.
reporting_errors = functools.partial(_reporting_errors, expect_interrupt=True)




# --- litemq.pika: Ctrl-C during start_consuming

def pika_consume(db: str, queue: str, out_dir: str, catch: bool) -> None:
    """Consume ``queue`` with ``basic_consume`` + ``start_consuming`` through litemq.pika, without acking; write
    ``got`` with the first body. With ``catch``, catch KeyboardInterrupt around start_consuming as a pika program
    does, write ``interrupted``, close the connection and return (exit 0); without, let it end the program."""
    out = Path(out_dir)
    with reporting_errors(out_dir, "pika-consumer"):
        connection = pika.BlockingConnection(pika.URLParameters(as_url(db)))
        channel = connection.channel()

        def on_message(ch: Any, method: Any, properties: Any, body: bytes) -> None:
            write_atomically(out / "got", body.decode())

        channel.basic_consume(queue, on_message)
        if not catch:
            channel.start_consuming()
            return
        try:
            channel.start_consuming()
        except KeyboardInterrupt:
            write_atomically(out / "interrupted", "")
            connection.close()


# --- RPC servers that die

def serve_until_killed(db: str, queue: str, out_dir: str) -> None:
    """An RpcServer whose handler writes ``started`` (the request's body) and then sleeps: the test SIGKILLs it
    while its handler runs, so it never replies nor acks."""
    out = Path(out_dir)
    with reporting_errors(out_dir, "server-killed-in-handler"):
        conn = litemq.connect(db, lease_seconds=LONG_LEASE)

        def handler(request: litemq.Delivery) -> bytes:
            write_atomically(out / "started", request.body.decode())
            time.sleep(WAIT_SECONDS)
            return b"reply from the killed server"

        litemq.RpcServer(conn, queue, handler, declare=False).serve(inactivity_timeout=WAIT_SECONDS)


VERBS = {"ack": ["ack"], "insert_message": ["insert_message", "insert_copies", "insert_messages", "publish_plain"]}


def die_inside_the_reply_transaction(db: str, queue: str, out_dir: str, verb: str, when: str) -> None:
    """An RpcServer that SIGKILLs its own process while answering its first request: ``before`` or ``after`` the
    store runs ``verb``, the request's ack (``ack``) or the reply's insert (``insert_message``). Whatever order and
    transactions the answer uses, the process dies between the reply's publish and the request's ack, or inside
    one of them. Writes ``dying`` (the verb, and whether a transaction was open) just before."""
    out = Path(out_dir)
    with reporting_errors(out_dir, "server-dying-in-transaction"):
        conn = litemq.connect(db, lease_seconds=LONG_LEASE)
        engine = type(conn._store)

        def die() -> None:
            write_atomically(out / "dying", f"{when} {verb} in_transaction={in_transaction(conn._store)}")
            os.kill(os.getpid(), signal.SIGKILL)

        def dying(original: Any) -> Any:
            def dying_verb(store: Any, *args: Any, **kwargs: Any) -> Any:
                if when == "before":
                    die()
                result = original(store, *args, **kwargs)
                die()
                return result
            return dying_verb

        # The reply's insert is whichever insert verb the engine is asked for (one queue's message, copies, or the
        # single step of a plain queue's).
        for name in VERBS[verb]:
            setattr(engine, name, dying(getattr(engine, name)))
        server = litemq.RpcServer(conn, queue, lambda request: b"reply never committed", declare=False)
        server.serve(inactivity_timeout=WAIT_SECONDS, limit=1)
        raise AssertionError("the server answered without dying")


def in_transaction(store: Any) -> Optional[bool]:
    """Whether the store's database connection is inside a transaction: sqlite3's, or a psycopg one's (None when
    the store holds neither where this looks)."""
    if isinstance(getattr(store, "_db", None), sqlite3.Connection):
        return bool(store._db.in_transaction)
    if isinstance(getattr(store, "_in_transaction", None), bool):
        # PostgreSQL: a write() block's BEGIN goes to the server with its first statement
        return bool(store._in_transaction)
    for value in vars(store).values():
        status = getattr(getattr(value, "info", None), "transaction_status", None)
        if status is not None:  # psycopg's TransactionStatus: IDLE (0) outside a transaction
            return int(status) != 0
    return None


# --- for the tests

def python_command(call: str) -> list[str]:
    """A ``python -c`` command line that imports this module and runs ``call`` (e.g. ``w.f('a', 'b')``)."""
    tests = str(Path(__file__).resolve().parent)
    return [sys.executable, "-c", f"import sys; sys.path.insert(0, {tests!r}); import facade_workers as w; {call}"]


def default_signals() -> None:
    """preexec_fn for subprocesses: SIGINT and SIGTERM at their defaults, even if this process ignores them (as a
    background job in a shell without job control does), so the child's Python sees what a terminal gives it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def worker_errors(out_dir: Path) -> dict[str, str]:
    errors = out_dir / "errors"
    return {p.name: p.read_text() for p in sorted(errors.glob("*.txt"))} if errors.is_dir() else {}


# --- for the tests that start these workers

def start_python(call: str, env: dict[str, str], started: list[subprocess.Popen]) -> subprocess.Popen:
    process = subprocess.Popen(python_command(call), env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, preexec_fn=default_signals)
    started.append(process)
    return process


def wait_for_file_from(process: subprocess.Popen, path: Path, timeout: float = 30.0) -> str:
    """The file's text once the subprocess writes it; fails early (with its stderr) if the process ends first."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None:
            raise AssertionError(f"process ended with {process.returncode} before writing {path.name}: "
                                 f"{process.communicate()[1]}")
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.005)
    return path.read_text()
