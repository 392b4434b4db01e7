"""What the channels of one connection share, and the duties of a connection as a whole: registering itself,
finding and cleaning up after dead connections, renewing its leases, and its store's upkeep."""

from __future__ import annotations

import functools
import itertools
import os
import threading
import time
import weakref

from . import queue_rules
from .log import debug, logger
from .policy import queue_policy
from .routes import Routes
from .store.contract import QueueRow, Registration, Store, this_host
from .timing import SWEEP_SECONDS, clock

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    from typing import Iterable, Optional, Protocol
else:
    from .runtime_types import Protocol

MIN_RENEW_SECONDS = 0.05
UPKEEP_SECONDS = 0.5
"""How often the background thread does the store's upkeep after this connection wrote (``Store.maintain``: a WAL
checkpoint on SQLite, where a commit past ``WAL_CHECKPOINT_PAGES`` does it too) and makes sure this connection's
proof of life is in place (``Liveness.keep``)."""
ACK_DELAY_SECONDS = 0.005
"""How long a deferred ack waits for the connection's next write transaction before the background thread commits
it in one of its own."""
ACK_LINGER_SECONDS = 0.2
"""How long the background thread keeps looking every ``ACK_DELAY_SECONDS`` after the last deferred ack: a stream of
them wakes it at that pace, not once each."""
BACKOFF_SECONDS = (0.5, 30.0)
"""How long the background thread waits after its first failure to renew leases or checkpoint, doubling up to the
second: logged once, not at every retry."""


class OwnerDied(Exception):
    """Internal: an operation met an exclusive queue whose owner died; clean up in a transaction of its own and
    retry, so that an error the operation raises afterwards cannot roll the cleanup back."""

    def __init__(self, connection_id: str) -> None:
        super().__init__(connection_id)
        self.connection_id = connection_id


class Held:
    """A message leased to a channel: claimed for a consumer and not yet handed out, or delivered and unacked."""

    __slots__ = ("message_id", "token", "queue", "consumer", "lease_seconds", "claimed_at", "expires_at",
                 "queue_deleted", "queue_created_at")

    def __init__(self, message_id: int, token: int, queue: str, consumer: object, lease_seconds: float,
                 claimed_at: float, queue_created_at: Optional[float] = None) -> None:
        self.message_id = message_id
        self.token = token
        self.queue = queue
        self.consumer = consumer
        self.lease_seconds = lease_seconds
        self.claimed_at = claimed_at
        self.expires_at = claimed_at + lease_seconds
        self.queue_deleted = False
        """Its queue was deleted (by this connection), so settling it settles nothing, quietly."""
        self.queue_created_at = queue_created_at
        """When its queue was declared: a queue of that name declared at another time is another queue."""


class Scope(Protocol):
    """A channel as its connection sees it (``broker.Channel``)."""

    _closed: bool

    def _held(self) -> list["Held"]:
        ...

    def _close_in(self, store: Store) -> None:
        ...

    def _acks_settled(self, store: Store, acks: list[tuple["Scope", int, "Held"]]) -> None:
        ...


class Session:
    def __init__(self, store: Store, *, lease_seconds: float, max_message_bytes: int,
                 consumer_timeout: float, renew_leases: bool) -> None:
        self.store = store
        self.path = store.path
        self.connection_id = os.urandom(16).hex()
        self.lease_seconds = lease_seconds
        self.max_message_bytes = max_message_bytes
        self.consumer_timeout = consumer_timeout
        self.renew_leases = renew_leases
        self.channels: dict[int, Scope] = {}
        self.routes = Routes()
        # Lease tokens tell one lease of a message from the next: a count from a random start cannot repeat
        # within a connection, and another connection's count starts elsewhere among 2**62.
        self.lease_tokens = itertools.count(int.from_bytes(os.urandom(8), "big") >> 2)
        self.channel_numbers = iter(range(1, 1 << 31))
        self.closed = False
        self._next_sweep = 0.0
        self._known_connections: tuple[int, list[str]] = (-1, [])
        self._next_renewal = float("inf")  # when the next renewal is due: never while nothing is held
        self._checkpointed_commits = 0
        self._next_upkeep = 0.0
        self.deferred_acks: list[tuple[Scope, int, Held]] = []
        """Acks made with ``deferred=True`` and not yet committed, in order: (channel, delivery tag, lease)."""
        self._acks_since = 0.0  # when the oldest of them was made
        self._acks_armed = False  # the background thread looks for them every ACK_DELAY_SECONDS
        self._stop = threading.Event()
        self._poke = threading.Event()
        # The proof of life comes before the row, so a row whose proof can be taken always means a dead connection.
        self.liveness = store.liveness(self.connection_id, self._registration)
        try:
            with store.write_exclusive():
                store.register_connection(self.connection_id, os.getpid(), this_host(), clock())
                store.wake(None)  # waiting consumers elsewhere should start watching this connection: to look
            self.liveness.remove_strays(store.connection_ids())
            self.sweep(force=True)
        except BaseException:
            self.liveness.close()
            raise
        threading.Thread(target=_housekeep, args=(weakref.ref(self), self._stop, self._poke),
                         name=f"litemq-{self.connection_id[:8]}", daemon=True).start()

    # --- cascades that several operations share
    def delete_queue(self, store: Store, queue: str) -> None:
        store.wake([queue])  # so its consumers learn at once that they are cancelled
        self.auto_delete_exchanges(store, store.delete_queue(queue))
        # Its deliveries stay the channels' until settled, even once a queue of that name is declared again.
        store.after_commit(lambda: self._queue_deleted(queue))

    def _queue_deleted(self, queue: str) -> None:
        for held in self.held():
            if held.queue == queue:
                held.queue_deleted = True

    def consumer_removed(self, store: Store, queue: str) -> None:
        """A consumer of the queue went: an auto-delete queue goes with its last consumer (RabbitMQ's rule), an
        ``x-expires`` queue starts counting down, and with a single active consumer the next one takes over."""
        row = store.queue(queue)
        if row is None:
            return
        policy = queue_policy(row.arguments)
        if store.consumer_count(queue) == 0:
            if row.auto_delete:
                self.delete_queue(store, queue)
                return
            if policy.expires is not None:
                store.set_queue_expiry(queue, clock() + policy.expires)
        else:  # the next single active consumer takes over; consumers it outranked may claim now
            store.wake([queue])

    def auto_delete_exchanges(self, store: Store, exchanges: Iterable[str]) -> None:
        # An auto-delete exchange goes when its last binding goes, never before it had one.
        pending = list(dict.fromkeys(exchanges))
        while pending:
            name = pending.pop()
            row = store.exchange(name)
            if row is not None and row.auto_delete and not store.has_bindings(name):
                pending.extend(store.delete_exchange(name))

    # --- what time makes due
    def settle_due(self, queues: Iterable[str] = ()) -> None:
        """In a transaction of its own (which nothing raised later can roll back): delayed messages join their
        queues, expired messages and queues go, and expired leases in these queues return."""
        queues = list(queues)
        if not queues:
            with self.store.read() as store:
                deadlines = store.deadlines()
            now = clock()
            if all(deadline is None or deadline > now for deadline in deadlines):
                return
        with self.store.lock:
            with self.store.write() as store:
                now = clock()
                for queue in queues:
                    queue_rules.returned(self, store, store.return_expired(queue, now), now)
                queue_rules.settle_due(self, store, now)

    # --- other connections' deaths
    def sweep(self, force: bool = False, hung_up: Optional[socket.socket] = None) -> bool:
        """Clean up after connections whose process died; at most every SWEEP_SECONDS unless forced.
        ``hung_up``: the watched socket that woke the caller, watched no more if its connection is not found dead.

        Returns True when it cleaned up any."""
        now = time.monotonic()
        if (not force and now < self._next_sweep) or not self.liveness.supported:
            return False
        self._next_sweep = now + SWEEP_SECONDS
        with self.store.lock:
            dead = self.liveness.dead(self.connections())
            for connection_id in dead:
                self.reap_now(connection_id)
            if hung_up is not None:
                self.liveness.hung_up(hung_up)
        return bool(dead)

    def _registration(self, connection_id: str) -> Optional[Registration]:
        # What liveness falls back on when a connection's proof of life is missing (a lock file removed).
        with self.store.lock:
            return self.store.registration(connection_id)

    def connections(self) -> list[str]:
        """The registered connections, re-read only when another connection has committed since."""
        with self.store.lock:
            version = self.store.data_version()
            if version != self._known_connections[0]:
                self._known_connections = (version, self.store.connection_ids())
            return self._known_connections[1]

    def watch(self) -> tuple[list[socket.socket], float]:
        """What a waiter should also sleep on (sockets readable when a connection dies), and how long it may
        sleep before checking liveness by hand: long when every other connection is watched."""
        return self.liveness.watch(self.connections())

    def live_queue(self, store: Store, queue: str) -> Optional[QueueRow]:
        """The queue, or None when it is gone. Raises OwnerDied when it is exclusive to a dead connection."""
        return self.owner_alive(store.queue(queue))

    def owner_alive(self, row: Optional[QueueRow]) -> Optional[QueueRow]:
        """The queue's row as read. Raises OwnerDied when it is exclusive to a dead connection."""
        if (row is not None and row.exclusive and row.owner_connection != self.connection_id
                and row.owner_connection is not None and self.liveness.is_dead(row.owner_connection)):
            raise OwnerDied(row.owner_connection)
        return row

    def reap_now(self, connection_id: str) -> None:
        """Clean up after a dead connection in a transaction of its own."""
        with self.store.lock:
            with self.store.write_exclusive() as store:
                self.reap(store, connection_id)
            self.liveness.forget(connection_id)

    def reap(self, store: Store, connection_id: str) -> None:
        """A dead connection's state: its leases go back, its consumers are cancelled, its exclusive queues go.
        Idempotent: whatever of it is left is cleaned up, even without its row."""
        registered = store.has_connection(connection_id)
        returned = store.release_connection(connection_id)
        queue_rules.returned(self, store, returned, clock())
        for queue in dict.fromkeys(store.remove_connection_consumers(connection_id)):
            self.consumer_removed(store, queue)
        for queue in store.owned_queues(connection_id):
            self.delete_queue(store, queue)
        store.unregister_connection(connection_id)
        if returned:
            # INFO, not WARNING: a worker dying is what at-least-once delivery is for, and with no logging set up
            # Python prints a WARNING on stderr, in whichever process happened to clean up after it.
            logger().info("litemq: connection %s on %s died holding %d unacked deliveries; they were returned to "
                          "their queues (%s)", connection_id, self.path, len(returned),
                          ", ".join(sorted({message.queue for message in returned})))
        elif registered:
            debug("litemq: connection %s on %s died holding no deliveries; cleaned up", connection_id, self.path)

    # --- deferred acks: committed by the next write transaction, or by the background thread
    def defer_acks(self, acks: list[tuple[Scope, int, Held]]) -> None:
        """Queue acks (channel, delivery tag, lease), under the store's lock, for the connection's next write
        transaction, whichever it is, or the background thread's within ACK_DELAY_SECONDS; closing the connection
        commits them first."""
        pending = self.deferred_acks
        if not pending:
            self._acks_since = time.monotonic()
            self.store.before_write = self._settle_acks
        pending.extend(acks)
        if not self._acks_armed:
            self._acks_armed = True
            self._poke.set()

    def _settle_acks(self, store: Store) -> None:
        # At the start of a write transaction (``Store.before_write``): the acks go first, so one made before a
        # publish, a nack or a close commits before it, or with it. Until the commit they stay queued (a rollback
        # leaves them for the next transaction).
        pending = self.deferred_acks
        first = pending[0][0]
        if len(pending) == 1 or all(entry[0] is first for entry in pending):
            first._acks_settled(store, pending)
        else:
            by_channel: dict[Scope, list[tuple[Scope, int, Held]]] = {}
            for entry in pending:
                by_channel.setdefault(entry[0], []).append(entry)
            for channel, acks in by_channel.items():
                channel._acks_settled(store, acks)
        store.after_commit(functools.partial(self._acks_committed, len(pending)))

    def _acks_committed(self, count: int) -> None:
        del self.deferred_acks[:count]
        if not self.deferred_acks:
            self.store.before_write = None

    def settle_acks(self) -> None:
        """Commit the deferred acks now, if there are any."""
        with self.store.lock:
            if self.deferred_acks and not self.closed:
                with self.store.write():
                    pass  # its beginning settles them (``_settle_acks``)

    # --- background duties: lease renewal and the store's upkeep
    def lease_taken(self, lease_seconds: float) -> None:
        """A lease was taken: make sure the background thread renews it in time, however short it is."""
        if self.renew_leases:
            due = time.monotonic() + max(MIN_RENEW_SECONDS, lease_seconds / 3)
            if due < self._next_renewal:
                self._next_renewal = due
                self._poke.set()

    def held(self) -> list[Held]:
        leases: list[Held] = []
        for channel in list(self.channels.values()):
            leases.extend(channel._held())
        return leases

    def housekeep(self) -> float:
        """Commit deferred acks when due, renew leases when due, do the store's upkeep when this connection wrote, put
        this connection's proof of life back if it was removed, clean up after dead connections; returns how long
        to rest."""
        now = time.monotonic()
        if self._acks_armed:
            rest = self._housekeep_acks(now)
            if now < self._next_upkeep and now < self._next_renewal:  # a wake for the acks only
                return max(0.0, min(rest, self._next_upkeep - now, self._next_renewal - now))
        else:
            rest = UPKEEP_SECONDS
        self._next_upkeep = now + UPKEEP_SECONDS
        if self.renew_leases and now >= self._next_renewal:
            delay = self.renew()
            self._next_renewal = float("inf") if delay is None else now + delay
        if self.store.commits != self._checkpointed_commits:
            self._checkpointed_commits = self.store.commits
            self.store.maintain()
        self.liveness.keep()  # after the renewal, which nothing here may hold back
        with self.store.lock:
            if not self.closed:
                # Not only waiting consumers look for dead connections: a process that only publishes, or whose
                # consumers never run dry, notices too.
                self.sweep()
        rest = min(rest, UPKEEP_SECONDS, self._next_renewal - time.monotonic())
        return max(0.0, rest)

    def _housekeep_acks(self, now: float) -> float:
        """Commit the deferred acks that waited ACK_DELAY_SECONDS; how long until the next look."""
        if self.deferred_acks:
            due = self._acks_since + ACK_DELAY_SECONDS
            if now < due:
                return due - now
            self.settle_acks()
            return ACK_DELAY_SECONDS
        if now - self._acks_since < ACK_LINGER_SECONDS:
            return ACK_DELAY_SECONDS
        self._acks_armed = False
        if self.deferred_acks:  # one came as the thread stopped looking, and did not poke it
            self._acks_armed = True
            return 0.0
        return UPKEEP_SECONDS

    def renew(self) -> Optional[float]:
        """Extend every lease this connection holds, up to ``consumer_timeout`` after its claim.

        Returns how long to wait before the next renewal, or None when nothing is held."""
        with self.store.lock:
            if self.closed:
                return None
            leases = self.held()
            if not leases:
                return None
            now = clock()
            for held in leases:
                held.expires_at = min(now + held.lease_seconds, held.claimed_at + self.consumer_timeout)
            with self.store.write() as store:
                store.renew([(h.expires_at, h.message_id, h.token) for h in leases])
            return max(MIN_RENEW_SECONDS, min(h.lease_seconds for h in leases) / 3)

    def close(self, registered: bool = False) -> None:
        """After the connection's row is gone (or could not be deleted: ``registered``): stop the background
        thread, let go of the proof of life. Never raises."""
        self.closed = True
        self._stop.set()
        self._poke.set()
        self.liveness.close(registered)


def _housekeep(session_ref: "weakref.ref[Session]", stop: threading.Event, poke: threading.Event) -> None:
    # Holds the session only weakly, so a connection dropped without close() can still be collected (and closed).
    rest = UPKEEP_SECONDS
    failures = 0
    while True:
        poke.wait(rest)
        poke.clear()
        if stop.is_set():
            return
        session = session_ref()
        if session is None or session.closed:
            return
        try:
            rest = session.housekeep()
        except Exception as exc:
            # Backs off (a full disk fails every renewal until space is freed); a lease that expires meanwhile
            # returns its message, as it would for a hung process.
            rest = min(BACKOFF_SECONDS[0] * 2 ** failures, BACKOFF_SECONDS[1])
            if failures == 0:
                logger().exception("litemq: background work on %s failed; retrying in backoff up to %g s",
                                   session.path, BACKOFF_SECONDS[1])
            else:
                logger().debug("litemq: background work on %s failed again (%s); next try in %g s", session.path,
                               exc, rest)
            failures += 1
        else:
            if failures:
                logger().warning("litemq: background work on %s works again after %d failures", session.path,
                                 failures)
            failures = 0
        del session
