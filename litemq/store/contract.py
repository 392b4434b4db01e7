"""The storage contract: what the semantic layer (session, topology, broker, consumer) may ask of a store.

A store is one connection to one broker: a file (``store.sqlite``) or a schema on a PostgreSQL server
(``store.postgres``). Its verbs are atomic steps in the broker's own words; each runs inside the transaction the
caller holds (``write()``, ``write_exclusive()`` or ``read()``) and none decides policy: the caller computes every
value that policy sets (now, a lease's expiry and token, the queues a message reaches) and passes it in. Time is
always a parameter, never the database's clock.

Beside its verbs a store gives what only the engine can know: whether another connection is dead (``liveness``),
how a waiting consumer is woken (``doorbell``, ``wake``, ``data_version``) and what upkeep it needs (``maintain``).
The semantic modules import this module, never an engine's.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    import threading
    from typing import Callable, ContextManager, Iterable, NamedTuple, Optional, Protocol, Sequence
else:
    from ..runtime_types import NamedTuple, Protocol


class ExchangeRow(NamedTuple):
    type: str
    durable: bool
    auto_delete: bool
    internal: bool
    arguments: Optional[str]


class QueueRow(NamedTuple):
    durable: bool
    exclusive: bool
    auto_delete: bool
    arguments: Optional[str]
    owner_connection: Optional[str]
    ready_count: int
    ready_bytes: int = 0
    created_at: Optional[float] = None  # which queue of that name: one deleted and declared again is another


class MessageRow(NamedTuple):
    """A message as a claim hands it to a consumer."""

    id: int
    exchange: str
    routing_key: str
    body: bytes
    properties: Optional[str]
    delivery_count: int
    priority: int = 0
    consumers_below: int = 0
    """In a priority-0 consumer's claim: 1 when the queue has consumers of negative priority."""


class StoredMessage(NamedTuple):
    """A message taken out of its queue other than by an ack: expired, dropped, rejected, or due after a delay."""

    id: int
    queue: str
    exchange: str
    routing_key: str
    body: bytes
    properties: Optional[str]
    delivery_count: int


class ReturnedMessage(NamedTuple):
    """A leased message made ready again."""

    id: int
    queue: str
    delivery_count: int


class Registration(NamedTuple):
    """What a connection's row says about who opened it."""

    pid: int
    host: str
    started_at: float


def this_host() -> str:
    """The ``host`` of this process's registrations: what gethostname() says (the node name of uname(), read
    without importing socket where the OS has it)."""
    if hasattr(os, "uname"):
        return os.uname().nodename
    import socket

    return socket.gethostname()


Counts = tuple[int, int, str | None, int]
"""(ready count, ready bytes, arguments JSON, number of consumers) of a queue."""
Binding = tuple[str, str, str, str]
"""(destination, destination kind 'queue' or 'exchange', routing key, arguments JSON)."""
Consumer = tuple[str, int, str]
"""(connection id, channel number, consumer tag)."""
Lease = tuple[int, int]
"""(message id, lease token)."""


class Liveness(Protocol):
    """This connection's proof of life, held for as long as it is open, and the tests of the others'. Only a proof
    of life that can be taken over shows a death (a flock on a file; an advisory lock on the server)."""

    @property
    def supported(self) -> bool:
        """False where deaths cannot be told (no flock on this OS): leases expiring are then the only backstop."""

    def dead(self, connection_ids: Iterable[str]) -> list[str]:
        """The connections among these (this one excluded) that are certainly dead, until ``forget``."""

    def is_dead(self, connection_id: str) -> bool:
        """Whether this one connection is certainly dead."""

    def watch(self, connection_ids: Iterable[str]) -> tuple[list[socket.socket], float]:
        """Sockets that become readable when one of these connections dies, and how long a waiter may sleep before
        it must call ``dead`` anyway (short while some connection cannot be watched)."""

    def hung_up(self, sock: socket.socket) -> None:
        """A watched socket became readable but no death was found: stop waking on it, test it on the timer."""

    def forget(self, connection_id: str) -> None:
        """A dead connection's state is cleaned up: let go of what testing it took (its lock file goes)."""

    def keep(self) -> None:
        """Make sure this connection's own proof of life is still in place (from the background thread)."""

    def remove_strays(self, registered: Iterable[str]) -> None:
        """Remove proofs of life left by connections that died before registering (all but these)."""

    def close(self, registered: bool = False) -> None:
        """Let go of this connection's proof of life (``registered``: its row could not be deleted, so others must
        still find it dead and clean up). Never raises."""


class Doorbell(Protocol):
    """What one consumer sleeps on: ``socket`` becomes readable when ``wake`` names its queue (or ``ring`` is
    called), None where this platform cannot have one (the consumer then polls ``data_version``). A ring is a hint
    to look, never a promise of a message."""

    socket: Optional[socket.socket]

    def ring(self) -> None:
        """Wake it from this process (any thread, or a signal handler)."""

    def close(self) -> None:
        ...


if TYPE_CHECKING:
    class Transaction(ContextManager["Store"], Protocol):
        """``with store.write() as store:``: the store's lock and one transaction, committed when the block ends
        and rolled back when it raises."""


class WouldWait(Exception):
    """A write begun in ``Store.without_waiting`` would have had to wait (for another thread of this process, another
    connection's write lock, or the disk): nothing was done; run it where waiting is allowed."""


class Store(Protocol):
    """One connection to a broker. Thread-safe: a transaction holds ``lock`` from begin to commit."""

    path: str
    """What the broker is, for messages: the file's absolute path, or the server URL (no password) and schema."""
    lock: threading.RLock
    commits: int
    """This connection's own commits (which ``data_version`` does not count)."""
    rollbacks: int
    """This connection's rolled-back transactions: what one of them read may be gone, so caches of what was read
    inside transactions (the routes) are dropped when this changes."""
    pid: int
    """The process that opened it; a forked child's copy refuses every operation (``check_process``)."""
    engine: str
    """``"sqlite"`` or ``"postgresql"``."""

    # --- transactions
    def write(self) -> Transaction:
        """A write transaction that may run beside other ``write()`` transactions of other connections (on SQLite,
        nothing runs beside a writer anyway): for the verbs that are safe so (publishing, claiming, settling
        with a token, renewing, returning expired leases, taking due and expired messages). Its statements wait for
        any ``write_exclusive()`` to end (entering the block may not: PostgreSQL begins with the first statement)."""

    def write_exclusive(self) -> Transaction:
        """A write transaction that no other write transaction runs beside: for declaring, deleting, binding,
        adding and removing consumers, reaping a dead connection, and anything that reads and then decides."""

    def read(self) -> Transaction:
        """A consistent snapshot for several reads."""

    writes_without_waiting: bool
    """Whether ``without_waiting`` can ever succeed: commits here never wait for the disk."""

    statements_are_round_trips: bool
    """Whether each statement goes to a server and back: then ``claim_unless_due`` and ``ack_and_claim_unless_due``,
    which fold several steps into one statement, are worth asking (elsewhere they answer None)."""

    def without_waiting(self) -> ContextManager[None]:
        """A block for an event loop's thread: its first write begins only if it need not wait (the lock free in
        this process, the write lock free in every other) and commits without waiting for the disk; otherwise it
        raises WouldWait, and nothing was done. Writes after that first one wait as usual."""

    def after_commit(self, action: Callable[[], None]) -> None:
        """Run ``action`` once the current transaction has committed (never if it rolls back)."""

    before_write: Optional[Callable[["Store"], None]]
    """Set by the connection while it has work for its next write (deferred acks): called with the store at the
    start of every write transaction, before the block runs, and inside it (it commits or rolls back with it)."""

    def check_process(self) -> None:
        """Raise StorageError in a forked child: a connection belongs to the process that opened it."""

    def reserve(self, size: int) -> None:
        """Refuse a publish of ``size`` bytes (StorageFull) when the storage is nearly full; inside a write."""

    def lock_queue(self, queue: str) -> None:
        """Serialise publishes to this queue for the rest of the transaction (a queue with a length limit, which
        must count before it stores). A no-op where writers are serialised anyway."""

    def close(self) -> None:
        ...

    # --- what only the engine knows
    def liveness(self, connection_id: str,
                 registration: Callable[[str], Optional[Registration]]) -> Liveness:
        """Take this connection's proof of life (before its row is inserted: a row whose proof can be taken is
        then always a dead connection's)."""

    def doorbell(self, connection_id: str, channel: int, consumer_tag: str, queue: str, owner: str) -> Doorbell:
        """A doorbell for one consumer of ``queue``, rung by ``wake`` of that queue from any process (``owner``
        names the consumer in messages: "consumer 'x' of queue 'q' in ...")."""

    def wake(self, queues: Optional[Iterable[str]]) -> None:
        """Inside a write: once it commits, ring the doorbells of the consumers of these queues in every process
        (None: of every queue, so waiters start watching a new connection). The consumers are those the queues
        have when ``wake`` is called: a queue about to be deleted wakes its consumers to find it gone."""

    def data_version(self) -> int:
        """A number that changes whenever another connection commits (cheap; no transaction)."""

    def maintain(self) -> None:
        """Background upkeep after this connection wrote (a WAL checkpoint; folding counter deltas). From one
        background thread only; never blocks the connection's own transactions for long."""

    # --- exchanges and bindings
    def exchange(self, name: str) -> Optional[ExchangeRow]:
        ...

    def insert_exchange(self, name: str, type: str, durable: bool, auto_delete: bool, internal: bool,
                        arguments: Optional[str], now: float) -> None:
        ...

    def delete_exchange(self, name: str) -> list[str]:
        """Delete the exchange and every binding from or to it; return the exchanges that lost a binding."""

    def exchange_in_use(self, name: str) -> bool:
        """Whether the exchange is the source or destination of any binding."""

    def has_bindings(self, exchange: str) -> bool:
        ...

    def exchange_and_bindings(self, name: str) -> Optional[tuple[str, bool, Optional[str], list[Binding]]]:
        """The exchange's type, internal flag, arguments and bindings (in the order they were made), or None."""

    def routing_version(self) -> int:
        """A number raised by every change to exchanges and bindings, by any connection (or by hand)."""

    def add_binding(self, exchange: str, destination: str, kind: str, routing_key: str, arguments: str) -> None:
        """Bind (a binding that exists already is left as it is)."""

    def remove_binding(self, exchange: str, destination: str, kind: str, routing_key: str, arguments: str) -> bool:
        ...

    # --- queues
    def queue(self, name: str) -> Optional[QueueRow]:
        ...

    def queue_created_at(self, name: str) -> Optional[float]:
        """When the queue of that name was declared; None when there is none."""

    def insert_queue(self, name: str, durable: bool, exclusive: bool, auto_delete: bool,
                     arguments: Optional[str], owner_connection: Optional[str], now: float) -> None:
        ...

    def delete_queue(self, name: str) -> list[str]:
        """Delete the queue with its messages, bindings and consumers; return the exchanges that lost a binding."""

    def purge_queue(self, name: str) -> int:
        """Delete the queue's ready messages (not the unacked ones); return how many."""

    def unacked_count(self, queue: str) -> int:
        ...

    def owned_queues(self, connection_id: str) -> list[str]:
        """The exclusive queues of a connection."""

    def ready_count(self, queue: str) -> Optional[int]:
        """The queue's ready messages (None: no such queue). O(1) at any depth."""

    def ready_count_ranked(self, queue: str) -> tuple[Optional[int], bool]:
        """``ready_count``, and whether a consumer of the queue with a priority above 0 has room (so that a
        priority-0 consumer may take nothing: ``consumer_ranking``); SQLite reads both in one statement."""

    def expired_queues(self, now: float) -> list[str]:
        ...

    def set_queue_expiry(self, queue: str, expires_at: Optional[float]) -> None:
        ...

    # --- publishing
    def counts_with(self, queue: str, size: int, count: int = 1) -> Optional[Counts]:
        """The queue's ready count and bytes as they will be with ``count`` more ready messages of ``size`` bytes
        in all, its arguments and its number of consumers; None when the queue does not exist."""

    def counts_with_queues(self, queues: Sequence[str], size: int, count: int = 1) -> dict[str, Counts]:
        """``counts_with`` for several queues, by name, for those that exist."""

    def counts_with_first(self, queue: str, size: int, count: int = 1) -> tuple[Optional[Counts], Optional[float]]:
        """``counts_with``, and when the next delayed message falls due or unused queue expires (what a publish
        settles first; None when nothing waits)."""

    def arrival_due(self) -> Optional[float]:
        """When the next delayed message falls due or unused queue expires."""

    def insert_message(self, queue: str, exchange: str, routing_key: str, body: bytes, properties: Optional[str],
                       now: float, priority: int = 0, expires_at: Optional[float] = None) -> None:
        """Store a ready message at the tail of the queue."""

    def insert_copies(self, queues: Sequence[str], exchange: str, routing_key: str, body: bytes,
                      properties: Optional[str], now: float) -> None:
        """Store a copy of one ready message in each of these queues."""

    def insert_messages(self, queue: str, exchange: str, routing_key: str, bodies: Sequence[bytes],
                        properties: Optional[str], now: float, priority: int = 0) -> None:
        """Store ready messages that differ only in their bodies, in this order."""

    def insert_delayed(self, queue: str, exchange: str, routing_key: str, bodies: Sequence[bytes],
                       properties: Optional[str], now: float, visible_at: float) -> None:
        """Store messages that join the queue at ``visible_at`` (not counted as ready until then), in this order."""

    # --- claiming and settling
    def claim(self, queue: str, limit: int, owner: str, token: int, lease_expires_at: float, *,
              default_consumer: bool = False) -> list[MessageRow]:
        """Lease up to ``limit`` ready messages to ``owner`` with ``token``, in delivery order (priority, then
        arrival), counting a delivery each; a message another claim holds is skipped, never waited for. For a
        ``default_consumer`` (priority 0): none while a consumer of higher priority has room."""

    def claim_alone(self, queue: str, owner: str, token: int, lease_expires_at: float, now: float
                    ) -> Optional[list[MessageRow]]:
        """Outside any transaction: ``claim`` of one message for a priority-0 consumer, as a transaction of its own
        (SQLite: two statements in autocommit mode). None when it leased nothing and the general path must claim
        (the engine has no use for it, the connection needs a ``write()`` block first, the queue is gone, anything
        in the file is due by ``now``, the queue has consumers of lower priority, or another claim took the
        message); the empty list when the queue has nothing this consumer may take."""

    def claim_unless_due(self, queue: str, limit: int, owner: str, token: int, lease_expires_at: float, now: float
                         ) -> Optional[list[MessageRow]]:
        """In a ``write()`` block: ``claim`` for a priority-0 consumer, in one statement with the look at what is due
        that the general path makes first (the queue's leases expired by ``now``, anything else ``deadlines`` would
        settle). None, having leased nothing, when something is due (the general path returns and settles it, then
        claims) or the engine has no such statement."""

    def ack_and_claim_unless_due(self, lease: Lease, queue: str, limit: int, owner: str, token: int,
                                 lease_expires_at: float, now: float
                                 ) -> Optional[tuple[int, Optional[list[MessageRow]]]]:
        """In a ``write()`` block: ``ack`` of one lease and ``claim_unless_due`` for a priority-0 consumer of
        ``queue``, in one statement; (messages acked, claimed or None when something was due). As the block's
        first statement its COMMIT may go with it: then, when the rest of the block may have more to write (nothing
        claimed as something was due, nothing acked, a claim that found consumers of lower priority), the block
        goes on in a transaction of its own. None, having done nothing, where the engine has no such statement."""

    def claim_and_delete(self, queue: str, limit: int, *, default_consumer: bool = False) -> list[MessageRow]:
        """Take up to ``limit`` ready messages for good (auto-ack), in delivery order (as ``claim``)."""

    def claim_with_queue(self, queue: str, limit: int, owner: str, token: int, lease_expires_at: float,
                         now: float, *, auto_ack: bool = False
                         ) -> tuple[Optional[QueueRow], Optional[float], Optional[list[MessageRow]]]:
        """``queue(queue)``, ``next_due(queue)`` and, when the queue exists, has no arguments and nothing is due by
        ``now``, ``claim`` (``claim_and_delete`` with ``auto_ack``) as one step (basic.get's common case: one
        statement on PostgreSQL). The claimed rows are None when it did not claim. As the transaction's first
        statement, on a queue no connection owns, the engine may commit with it (PostgreSQL: one round trip) when it
        claimed: the block then writes nothing more."""

    def ack(self, leases: Sequence[Lease]) -> int:
        """Delete messages by (id, token); one whose token changed is left alone. Returns how many."""

    def publish_plain(self, queue: str, exchange: str, routing_key: str, body: bytes, properties: Optional[str],
                      now: float) -> Optional[bool]:
        """As the transaction's first and only write, store one message in ``queue`` when it exists without
        arguments (PostgreSQL: nor an owner) and nothing is due (delayed messages, queue expiry), and commit (one
        round trip on PostgreSQL; SQLite commits when the block ends): whether the queue has consumers to wake
        (True: it may have; ``wake`` reads them). None when it stored nothing: the block goes on, in a transaction
        as before, by the general path."""

    def publish_alone(self, queue: str, exchange: str, routing_key: str, body: bytes, properties: Optional[str],
                      now: float, routing_version: Optional[int] = None) -> Optional[bool]:
        """Outside any transaction: ``publish_plain`` as a transaction of its own, consumers woken (SQLite: one
        statement in autocommit mode). Whether the queue has consumers. None when it stored nothing (the engine
        has no use for it, or the connection or the queue needs the general path): publish in a ``write()``.
        ``routing_version``: the queue is where routes cached at that version (``routing_version()``) send the
        message; nothing is stored unless the file's version is still that one."""

    def ack_alone(self, lease: Lease) -> Optional[int]:
        """Outside any transaction: ``ack`` of one lease as a transaction of its own (SQLite: one statement in
        autocommit mode); how many it deleted (0 or 1). None when it did nothing (the engine has no use for it, or
        the connection needs a ``write()`` block first)."""

    def ack_last(self, leases: Sequence[Lease]) -> int:
        """``ack`` as the transaction's last write: the engine may commit with it (PostgreSQL: BEGIN, lock, DELETE
        and COMMIT in one round trip). Reads may follow it (then outside the transaction), writes may not."""

    def drop(self, leases: Sequence[Lease]) -> list[StoredMessage]:
        """Delete leased messages by (id, token), returning them (for dead-lettering)."""

    def requeue(self, leases: Sequence[Lease], undo_delivery: bool = False) -> list[ReturnedMessage]:
        """Return leased messages by (id, token) to their place. ``undo_delivery`` also uncounts the delivery."""

    def renew(self, leases: Sequence[tuple[float, int, int]]) -> int:
        """Set new expiries on leases given as (expires_at, id, token); returns how many were still held."""

    def release_owner(self, owner: str) -> list[ReturnedMessage]:
        """Return every message leased to ``owner`` (a channel) to its queue."""

    def release_connection(self, connection_id: str) -> list[ReturnedMessage]:
        """Return every message leased to any channel of the connection."""

    def return_expired(self, queue: str, now: float) -> list[ReturnedMessage]:
        """Make the queue's messages whose lease expired by ``now`` ready again, in their original place."""

    def take_head(self, queue: str, count: int) -> list[StoredMessage]:
        """Remove up to ``count`` ready messages from the head of the queue (the next to be delivered)."""

    def take_ready(self, ids: Sequence[int]) -> list[StoredMessage]:
        """Remove ready messages by id (those no longer ready are left alone)."""

    def take_expired(self, now: float, limit: int) -> list[StoredMessage]:
        """Remove up to ``limit`` ready messages of any queue whose TTL ran out by ``now``, soonest first."""

    def take_due(self, now: float, limit: int) -> list[tuple[StoredMessage, float]]:
        """Remove up to ``limit`` delayed messages due by ``now`` with their due times, in the order they fall due."""

    def next_lease_expiry(self, queue: str) -> Optional[float]:
        """When the first lease in the queue expires, or None when none is held."""

    def next_lease_expiries(self, queues: Sequence[str]) -> dict[str, float]:
        """``next_lease_expiry`` for several queues, by name, for those where a lease is held: what a waiter for
        many consumers reads in one statement, not one per queue."""

    def next_due(self, queue: str) -> Optional[float]:
        """The earliest of: the first lease in the queue expiring, and ``deadlines()``."""

    def deadlines(self) -> tuple[Optional[float], Optional[float], Optional[float]]:
        """When the next delayed message falls due, the next ready message expires, the next unused queue
        expires (None for each where nothing waits)."""

    # --- consumers and connections
    def consumer_count(self, queue: str) -> int:
        ...

    def first_consumer(self, queue: str) -> Optional[Consumer]:
        """The queue's longest-standing consumer."""

    def has_exclusive_consumer(self, queue: str) -> bool:
        ...

    def add_consumer(self, connection_id: str, channel: int, consumer_tag: str, queue: str, prefetch_count: int,
                     auto_ack: bool, exclusive: bool, now: float, priority: int = 0) -> None:
        ...

    def consumer_ranking(self, queue: str, priority: int) -> tuple[bool, bool]:
        """For a consumer of the queue with this priority: (whether a consumer of higher priority has room, whether
        a consumer of lower priority is there)."""

    def set_consumer_room(self, connection_id: str, channel: int, consumer_tag: str, has_room: bool) -> None:
        ...

    def remove_consumer(self, connection_id: str, channel: int, consumer_tag: str) -> bool:
        ...

    def consumers_of(self, queue: str) -> list[Consumer]:
        ...

    def all_consumers(self) -> list[Consumer]:
        ...

    def remove_connection_consumers(self, connection_id: str) -> list[str]:
        """Remove every consumer of the connection; return their queues."""

    def connection_ids(self) -> list[str]:
        ...

    def has_connection(self, connection_id: str) -> bool:
        ...

    def registration(self, connection_id: str) -> Optional[Registration]:
        """The pid, host and start time a connection registered, or None when it is not registered."""

    def register_connection(self, connection_id: str, pid: int, host: str, now: float) -> None:
        ...

    def unregister_connection(self, connection_id: str) -> None:
        ...
