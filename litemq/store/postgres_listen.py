"""Wake-ups on PostgreSQL: LISTEN/NOTIFY, one listening session per process.

``wake(queues)`` notifies the schema's channel with each queue's name (each once per transaction) right after the
waking transaction commits, in a transaction of its own that does not wait for its WAL flush. A NOTIFY inside the
publishing transaction would hold a database-wide lock from its commit until its flush, so notifying publishers
would commit one at a time: 8 processes of raw psycopg committing one-row INSERTs made 2,072 commits/s without
NOTIFY, 407 with one in the transaction and 1,535 with one after it (``python bench/postgres_counts.py
--notify-floor``). A process that dies between its commit and its notification costs a waiter one TICK_SECONDS,
never a message.

Each process keeps one extra session per server and schema that LISTENs (a ``Relay``, shared by every store of the
process on that schema) on a thread of its own: it raises its counter (what ``data_version`` reports) and rings the
doorbells of this process's consumers of the notified queue; an empty payload rings them all (a new connection to
watch). The thread sleeps in ``select`` on the session's socket and a pipe of its own: an idle process costs no
CPU (a consumer waiting 10 s used 0.010 s of CPU, and its two server sessions 0.010 s: 0.2 % of a core).

Where notifications cannot arrive (PgBouncer in transaction mode hands LISTEN to a server session that others
then use), the relay finds out on start with a notification to itself, warns, and the store polls instead:
doorbells have no socket, and ``data_version`` reads the server's snapshot (which changes at every commit on the
server) no more often than every POLL_SECONDS, backing off to the longest while nothing changes. ``?listen=0``
in the URL asks for polling from the start.
"""

from __future__ import annotations

import os
import select
import socket
import threading
import time
from typing import Optional

import psycopg

from ..log import logger
from .postgres_keys import quoted

PROBE_SECONDS = 2.0
"""How long a new relay waits for its own notification before it decides notifications cannot arrive."""
RECONNECT_SECONDS = (0.1, 5.0)
TICK_SECONDS = 1.0
"""``data_version`` also moves this often, so a waiter looks now and then for what no notification announced
(rows written by hand with plain SQL, or notifications lost while the relay reconnected)."""
POLL_SECONDS = (0.01, 0.25)
"""Polling without LISTEN: the first wait between reads of the server's snapshot, and the longest, reached by
doubling while nothing changes."""


class Doorbell:
    """One consumer's doorbell: ``socket`` is one end of a socket pair, rung from the other end. Without LISTEN it
    has no socket, and a ring moves the poller's version, which the waiting consumer polls."""

    def __init__(self, relay: Optional["Relay"], queue: str, poller: "Poller") -> None:
        self.queue = queue
        self._relay = relay
        self._poller = poller
        self.socket: Optional[socket.socket] = None
        self._ringer: Optional[socket.socket] = None
        if relay is not None and relay.listening:
            self.socket, self._ringer = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
            self.socket.setblocking(False)
            self._ringer.setblocking(False)
            relay.add(self)

    def ring(self) -> None:
        if self._ringer is None:
            self._poller.version += 1
        else:
            try:
                self._ringer.send(b"!")
            except OSError:  # full (the consumer is awake anyway) or closed
                pass

    def close(self) -> None:
        if self._relay is not None:
            self._relay.remove(self)
        for sock in (self.socket, self._ringer):
            if sock is not None:
                sock.close()
        self.socket = self._ringer = None


class Relay:
    """The process's LISTEN session on one schema's channel, relaying notifications to local doorbells."""

    def __init__(self, conninfo: str, channel: str, where: str) -> None:
        self.conninfo = conninfo
        self.channel = channel
        self.where = where
        self.version = 0
        self.listening = False
        self.users = 0
        self._lock = threading.Lock()
        self._by_queue: dict[str, set[Doorbell]] = {}
        self._stop = False
        self._wake_r, self._wake_w = os.pipe()
        self._pipe_lock = threading.Lock()  # stop() writes to the pipe while the thread may be closing it
        self._pipe_open = True
        self._conn: Optional[psycopg.Connection] = None
        try:
            self._conn = self._listen()
            self.listening = self._probe()
        except psycopg.Error as exc:
            logger().warning("litemq: cannot LISTEN on %s (%s); waiting consumers poll the server instead",
                             where, exc)
        if not self.listening:
            self._close_connection()
            return
        threading.Thread(target=self._run, name="litemq-listen", daemon=True).start()

    def _listen(self) -> psycopg.Connection:
        conn = psycopg.connect(self.conninfo, autocommit=True)
        conn.execute(f"LISTEN {quoted(self.channel)}")
        return conn

    def _probe(self) -> bool:
        """Whether a notification reaches this session (not under PgBouncer's transaction pooling)."""
        conn = self._conn
        assert conn is not None
        heard: list[object] = []
        conn.add_notify_handler(heard.append)  # psycopg takes in what arrives while it runs a statement
        try:
            conn.execute("SELECT pg_notify(%s, '')", (self.channel,))
        finally:
            conn.remove_notify_handler(heard.append)
        deadline = time.monotonic() + PROBE_SECONDS
        while not heard and time.monotonic() < deadline:
            select.select([conn.pgconn.socket], [], [], max(0.0, deadline - time.monotonic()))
            conn.pgconn.consume_input()
            while (notice := conn.pgconn.notifies()) is not None:
                heard.append(notice)
        if heard:
            return True
        logger().warning("litemq: a notification sent on %s did not come back within %.0f s (a pooler in "
                         "transaction mode?); waiting consumers poll the server instead (add listen=0 to the URL "
                         "to skip this check)", self.where, PROBE_SECONDS)
        return False

    def add(self, bell: Doorbell) -> None:
        with self._lock:
            self._by_queue.setdefault(bell.queue, set()).add(bell)

    def remove(self, bell: Doorbell) -> None:
        with self._lock:
            bells = self._by_queue.get(bell.queue)
            if bells is not None:
                bells.discard(bell)
                if not bells:
                    del self._by_queue[bell.queue]

    def deliver(self, queue: str) -> None:
        """A notification for ``queue`` ("": every queue) arrived."""
        with self._lock:
            self.version += 1
            if queue:
                bells = list(self._by_queue.get(queue, ()))
            else:
                bells = [bell for bells in self._by_queue.values() for bell in bells]
        for bell in bells:
            bell.ring()

    def _run(self) -> None:
        pause = RECONNECT_SECONDS[0]
        while not self._stop:
            conn = self._conn
            try:
                if conn is None:
                    conn = self._conn = self._listen()
                    pause = RECONNECT_SECONDS[0]
                    logger().info("litemq: listening on %s again", self.where)
                    self.deliver("")  # what was notified meanwhile is lost: every waiter looks
                readable, _, _ = select.select([conn.pgconn.socket, self._wake_r], [], [])
                if self._stop:
                    break
                conn.pgconn.consume_input()
                if conn.pgconn.status != psycopg.pq.ConnStatus.OK:
                    raise psycopg.OperationalError("the listening session was closed")
                while (notice := conn.pgconn.notifies()) is not None:
                    self.deliver(notice.extra.decode("utf-8", "replace"))
            except (psycopg.Error, OSError, ValueError) as exc:
                if self._stop:
                    break
                if self._conn is not None:
                    logger().warning("litemq: lost the listening session on %s (%s); reconnecting", self.where, exc)
                self._close_connection()
                self.version += 1  # polling ``data_version`` meanwhile would not see the difference
                time.sleep(pause)
                pause = min(2 * pause, RECONNECT_SECONDS[1])
        self._close_connection()
        self._close_pipe()

    def _close_pipe(self) -> None:
        with self._pipe_lock:
            if self._pipe_open:
                self._pipe_open = False
                for fd in (self._wake_r, self._wake_w):
                    os.close(fd)

    def _close_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except psycopg.Error:
                pass

    def stop(self) -> None:
        with self._pipe_lock:
            self._stop = True
            if self.listening and self._pipe_open:
                os.write(self._wake_w, b"!")  # the thread closes the session and the pipe
                return
        self._close_pipe()

    def drop_in_child(self) -> None:
        """In a forked child: the parent's session is the parent's; let go of this copy's descriptor without a
        word to the server (a Terminate message would end the parent's session)."""
        conn, self._conn = self._conn, None
        if conn is not None and not conn.closed:
            _disown(conn)
        self._pipe_lock = threading.Lock()  # another thread of the parent may have held it at fork()
        self._close_pipe()


def _disown(conn: psycopg.Connection) -> None:
    """Put /dev/null in place of the connection's socket in this process: the server session stays the other
    process's, and anything this copy sends goes nowhere."""
    null = os.open(os.devnull, os.O_RDWR)
    try:
        os.dup2(null, conn.pgconn.socket)
    finally:
        os.close(null)


_relays: dict[tuple[str, str], Relay] = {}
_relays_lock = threading.Lock()


def relay_for(conninfo: str, channel: str, where: str) -> Relay:
    """The process's relay for this server and channel, started on first use; ``release`` when done."""
    with _relays_lock:
        relay = _relays.get((conninfo, channel))
        if relay is None:
            relay = _relays[(conninfo, channel)] = Relay(conninfo, channel, where)
        relay.users += 1
        return relay


def release(relay: Relay) -> None:
    with _relays_lock:
        relay.users -= 1
        if relay.users == 0:
            _relays.pop((relay.conninfo, relay.channel), None)
            relay.stop()


class Poller:
    """``data_version`` without LISTEN: the server's current snapshot (it changes at every commit on the server),
    read no more often than every POLL_SECONDS, backing off while it stays the same."""

    def __init__(self) -> None:
        self.version = 0
        self._seen: Optional[str] = None
        self._next = 0.0
        self._pause = POLL_SECONDS[0]

    def due(self) -> bool:
        return time.monotonic() >= self._next

    def saw(self, snapshot: str) -> int:
        if snapshot != self._seen:
            self._seen = snapshot
            self.version += 1
            self._pause = POLL_SECONDS[0]
        else:
            self._pause = min(2 * self._pause, POLL_SECONDS[1])
        self._next = time.monotonic() + self._pause
        return self.version


def _after_fork_in_child() -> None:
    global _relays_lock
    _relays_lock = threading.Lock()
    for relay in _relays.values():
        relay.drop_in_child()
    _relays.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
