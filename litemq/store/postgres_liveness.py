"""Liveness on PostgreSQL: each connection's session holds a session-level advisory lock, keyed by its connection
id, for its whole life. The server releases it the moment the session ends, however it ends (the client closed,
was killed, or its machine dropped off the network and the server noticed), so a lock another session can take is
a certain death, exactly as a flock is on one machine. Others test with ``pg_try_advisory_lock_shared``, all ids
in one statement; a dead connection's lock stays taken (shared) by the tester until it is cleaned up.

Same-host connections also keep a hang-up watch (store.hangup), so a SIGKILLed process is noticed within a
millisecond; its backend then needs a moment to see the socket close and release the lock, so a hang-up that finds
the lock still held tests again for up to HANGUP_GRACE_SECONDS. Connections on other hosts are tested every
REMOTE_SECONDS, and their deaths show when the server drops their sessions. How soon the server notices a machine
that vanished is its own settings' business (postgresql.conf, or per role with ALTER ROLE ... SET):

- ``tcp_keepalives_idle``, ``tcp_keepalives_interval``, ``tcp_keepalives_count``: an idle session whose peer stops
  answering is dropped after idle + interval x count seconds (e.g. 10 + 5 x 3 = 25 s; the kernel default is two
  hours and more). ``tcp_user_timeout`` (milliseconds) bounds how long sent data may stay unacknowledged.
- ``idle_session_timeout``: a session idle that long is ended. litemq's connections speak at least every
  PING_SECONDS from their background thread, so any value well above it (say 60 s) ends only sessions whose client
  is gone.

Lease expiry stays the backstop for a process that hangs while its session lives.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from typing import Any, Callable, Iterable, Optional, Protocol, Sequence

from ..log import logger
from .contract import Registration
from .hangup import HangupWatch
from .lockfiles import process_may_live
from .postgres_keys import connection_key

HANGUP_GRACE_SECONDS = 0.1
"""How long a hang-up that finds the dead connection's lock still held keeps testing it (its backend has not yet
seen the socket close)."""
GONE_GRACE_SECONDS = 1.0
"""How long a lock may outlive its process of this machine before that process is taken for alive after all."""
UNWATCHED_SECONDS = 0.025
"""How long a waiter may sleep before testing by hand while a same-host connection cannot be watched."""
REMOTE_SECONDS = 0.5
"""... while connections on other hosts are open (their death shows when the server drops their session)."""
WATCHED_SECONDS = 1.0
"""... while every other connection is watched."""
PING_SECONDS = 10.0
"""How often ``keep`` makes sure the session still answers (and keeps it from looking idle to the server)."""
HOST = socket.gethostname()

_TRY_LOCKS = "SELECT k FROM unnest($1::bigint[]) AS k WHERE pg_try_advisory_lock_shared(k)"


class Session(Protocol):
    """What liveness needs of the store whose server session holds the lock."""

    path: str
    schema: str
    lock: threading.RLock
    closed: bool

    def run(self, statement: str, params: Sequence[Any] = ()) -> Any:
        ...


class PostgresLiveness:
    """This connection's advisory lock, and the tests of the others'."""

    supported = True

    def __init__(self, store: Session, connection_id: str,
                 registration: Callable[[str], Optional[Registration]]) -> None:
        self.connection_id = connection_id
        self._store = store
        self._schema = store.schema
        self._registration = registration
        self._held: dict[str, int] = {}  # dead connections whose lock this session took, until forget
        self._hosts: dict[str, str] = {}
        self._sockets: list[socket.socket] = []
        self._graced: set[int] = set()  # watch sockets whose hang-up has had its grace
        self._next_ping = time.monotonic() + PING_SECONDS
        self._key = connection_key(self._schema, connection_id)
        with store.lock:
            store.run("SELECT pg_advisory_lock($1)", (self._key,))
        self._hangups = HangupWatch(connection_id, store.path)

    def dead(self, connection_ids: Iterable[str]) -> list[str]:
        """The connections among these whose session is gone. Their locks stay taken until ``forget``."""
        listed = set(connection_ids)
        listed.discard(self.connection_id)
        found = [connection_id for connection_id in listed if connection_id in self._held]
        untested = [connection_id for connection_id in listed if connection_id not in self._held]
        if untested:
            newly = self._try(untested)
            if not newly and self._hung_up():
                deadline = time.monotonic() + HANGUP_GRACE_SECONDS
                while not newly and time.monotonic() < deadline:
                    time.sleep(0.005)
                    newly = self._try(untested)
            found.extend(newly)
        return found

    def is_dead(self, connection_id: str) -> bool:
        if connection_id == self.connection_id:
            return False
        if self.dead([connection_id]) == [connection_id]:
            return True
        # A process of this machine that is gone, whose lock is still held: its server session has yet to notice
        # the closed socket (a few milliseconds). Asked about one connection (an exclusive queue's owner), wait
        # that out rather than answer "alive" for a dead owner.
        registration = self._registration(connection_id)
        if registration is None or registration.host != HOST or process_may_live(registration):
            return False
        deadline = time.monotonic() + GONE_GRACE_SECONDS
        while time.monotonic() < deadline:
            time.sleep(0.005)
            if self._try([connection_id]):
                return True
        return False

    def _try(self, connection_ids: list[str]) -> list[str]:
        keys = {connection_key(self._schema, connection_id): connection_id for connection_id in connection_ids}
        with self._store.lock:
            taken = [row[0] for row in self._store.run(_TRY_LOCKS, (list(keys),)).fetchall()]
        for key in taken:
            self._held[keys[key]] = key
        return [keys[key] for key in taken]

    def _hung_up(self) -> bool:
        """Whether a watched socket hung up that has not had its grace yet."""
        live = [sock for sock in self._sockets if sock.fileno() != -1 and sock.fileno() not in self._graced]
        if not live:
            return False
        readable, _, _ = select.select(live, [], [], 0)
        self._graced.update(sock.fileno() for sock in readable)
        return bool(readable)

    def watch(self, connection_ids: Iterable[str]) -> tuple[list[socket.socket], float]:
        """Sockets that become readable when a same-host connection dies, and how long a waiter may sleep before
        it must call ``dead`` anyway."""
        listed = set(connection_ids)
        listed.discard(self.connection_id)
        local = [connection_id for connection_id in listed if self._host(connection_id) == HOST]
        sockets, complete = self._hangups.watch(local)
        self._sockets = sockets
        if not complete:
            return sockets, UNWATCHED_SECONDS
        return sockets, REMOTE_SECONDS if len(local) < len(listed) else WATCHED_SECONDS

    def _host(self, connection_id: str) -> Optional[str]:
        host = self._hosts.get(connection_id)
        if host is None:
            registration = self._registration(connection_id)
            if registration is None:
                return None  # not registered (yet, or any more): tested as a remote one
            host = self._hosts[connection_id] = registration.host
        return host

    def hung_up(self, sock: socket.socket) -> None:
        self._graced.discard(sock.fileno())
        self._hangups.hung_up(sock)

    def forget(self, connection_id: str) -> None:
        key = self._held.pop(connection_id, None)
        if key is not None:
            with self._store.lock:
                self._store.run("SELECT pg_advisory_unlock_shared($1)", (key,))
        self._hosts.pop(connection_id, None)
        self._hangups.forget(connection_id)

    def keep(self) -> None:
        """Speak to the server now and then: a session that stopped answering is found here, and the server
        never takes this one for idle (``idle_session_timeout``). Skipped while the session is busy anyway."""
        if time.monotonic() < self._next_ping or not self._store.lock.acquire(blocking=False):
            return
        try:
            self._next_ping = time.monotonic() + PING_SECONDS
            self._store.run("SELECT 1")
        except Exception as exc:  # the session is gone: its lock with it, and every operation will say so
            logger().error("litemq: connection %s to %s lost its session (%s): other connections take it for "
                           "dead and return its deliveries", self.connection_id, self._store.path, exc)
        finally:
            self._store.lock.release()

    def remove_strays(self, registered: Iterable[str]) -> None:
        """Nothing to remove: an advisory lock goes with its session."""

    def close(self, registered: bool = False) -> None:
        """Let go of this connection's lock and of the dead ones' taken. Never raises."""
        self._hangups.close()
        if self._store.closed:
            return
        try:
            with self._store.lock:
                self._store.run("SELECT pg_advisory_unlock_shared(k) FROM unnest($1::bigint[]) AS k",
                                (list(self._held.values()),))
                self._store.run("SELECT pg_advisory_unlock($1)", (self._key,))
        except Exception:  # the session is gone, and its locks with it
            pass
        self._held.clear()
