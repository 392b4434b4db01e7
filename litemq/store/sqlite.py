"""The SQLite store: the storage contract's verbs (``contract.Store``) on the stdlib driver, one file shared by
every process on the machine.

Each verb runs inside the transaction the caller holds and is one or a few statements prepared once
(``sqlite_sql``). The per-queue ready counters are kept by triggers in the file (migration 0007), so every write to
the messages counts, litemq's own and those made by hand with plain SQL. What only this engine knows: deaths are
told by lock files (``lockfiles``), consumers are woken by datagrams to abstract sockets (``doorbells``), upkeep is
a WAL checkpoint, and nothing ever runs beside a writer (``write()`` and ``write_exclusive()`` are both BEGIN
IMMEDIATE; ``lock_queue`` has nothing to do).
"""

from __future__ import annotations

import sqlite3

from ..log import debug
from . import remember
from .contract import (Binding, Consumer, Counts, ExchangeRow, Lease, MessageRow, QueueRow, Registration,
                       ReturnedMessage, StoredMessage)
from .doorbells import Bell, Doorbell, doorbell_address
from .lockfiles import FlockLiveness
from .sqlite_connection import SQLiteConnection
from .sqlite_sql import (ACK, BATCH_ROWS, CLAIM, CLAIM_AND_DELETE, CLAIM_AND_DELETE_AS_DEFAULT_CONSUMER,
                         CLAIM_AS_DEFAULT_CONSUMER, COUNT_TAKEN, COUNTS_WITH, COUNTS_WITH_FIRST, COUNTS_WITH_QUEUES,
                         DELETE_BINDING, DELETE_BINDINGS_OF_EXCHANGE, DELETE_BINDINGS_TO_QUEUE, DELETE_CONNECTION,
                         DELETE_CONNECTION_CONSUMERS, DELETE_CONSUMER, DELETE_EXCHANGE, DELETE_QUEUE,
                         DELETE_QUEUE_CONSUMERS, DELETE_QUEUE_MESSAGES, DELETE_READY, DROP, INSERT_BINDING, INSERT_BODY,
                         INSERT_CONNECTION, INSERT_CONSUMER, INSERT_COPIES, INSERT_DELAYED, INSERT_EXCHANGE,
                         INSERT_MESSAGE, INSERT_MESSAGES, INSERT_QUEUE, LEASE_READY, LEASE_READY_ALONE, NEXT_READY,
                         NEXT_READY_AS_DEFAULT_CONSUMER, NEXT_READY_ALONE, OUT_OF_ROW_BYTES, PUBLISH_PLAIN, PUBLISH_PLAIN_UNCONSUMED,
                         PUBLISH_ROUTED, PUBLISH_ROUTED_UNCONSUMED, PURGE_READY,
                         RELEASE_CONNECTION, RELEASE_OWNER, RENEW_LEASE, REQUEUE, RETURN_EXPIRED,
                         SELECT_ALL_CONSUMERS, SELECT_ARRIVAL_DEADLINES, SELECT_CONNECTION, SELECT_CONNECTION_IDS,
                         SELECT_CONSUMERS_OF, SELECT_CONSUMER_COUNT, SELECT_CONSUMER_RANKING, SELECT_DEADLINES,
                         SELECT_DEFAULT_CONSUMER_RANKING, SELECT_DUE, SELECT_EXCHANGE, SELECT_EXCLUSIVE_CONSUMER,
                         SELECT_EXPIRED_QUEUES, SELECT_FIRST_CONSUMER, SELECT_HAS_BINDINGS, SELECT_IS_DESTINATION,
                         SELECT_NEXT_EXPIRIES, SELECT_NEXT_EXPIRY, SELECT_OWNED_QUEUES, SELECT_QUEUE,
                         SELECT_QUEUE_CREATED_AT, SELECT_QUEUE_DUE, SELECT_QUEUE_DUE_NEXT, SELECT_READY_COUNT, SELECT_READY_COUNT_RANKED,
                         SELECT_REGISTRATION, SELECT_ROUTE,
                         SELECT_ROUTING_VERSION, SELECT_UNACKED_COUNT, SET_CONSUMER_ROOM, SET_QUEUE_EXPIRY, TAKE_DUE,
                         TAKE_EXPIRED, TAKE_HEAD, TAKE_READY, padded)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Iterable, Optional, Sequence

if TYPE_CHECKING:
    from .contract import Store


class SQLiteStore(SQLiteConnection):
    """One connection to a litemq file (``contract.Store``). Thread-safe: every transaction holds its lock."""

    engine = "sqlite"
    statements_are_round_trips = False

    def __init__(self, path: str, *, synchronous: str = "NORMAL", busy_timeout: float = 60.0,
                 share_with_group: bool = False) -> None:
        """Open (create, upgrade) the file at ``path``. SQLite's own settings: ``synchronous`` ("NORMAL" or
        "FULL"), ``busy_timeout`` (seconds a writer waits for the lock), ``share_with_group`` (a new file 0660)."""
        super().__init__(path, synchronous=synchronous, busy_timeout=busy_timeout, share_with_group=share_with_group)

    def _start(self, path: str) -> None:
        super()._start(path)
        self._bell: Optional[Bell] = None
        # Hints for ``publish_plain`` (a queue in neither may still be missing, have arguments or consumers):
        self._consumed: dict[str, None] = {}  # queues seen with consumers
        self._not_plain: dict[str, None] = {}  # queues seen with arguments

    # --- what only the engine knows
    def liveness(self, connection_id: str,
                 registration: Callable[[str], Optional[Registration]]) -> FlockLiveness:
        """This connection's lock file, taken now, and the tests of the others' (``lockfiles``)."""
        return FlockLiveness(self.path, connection_id, registration=registration, lock=self.lock)

    def doorbell(self, connection_id: str, channel: int, consumer_tag: str, queue: str, owner: str) -> Doorbell:
        """A datagram socket in the abstract namespace, named after the consumer (``doorbells``)."""
        return Doorbell(doorbell_address(connection_id, channel, consumer_tag), owner)

    def wake(self, queues: Optional[Iterable[str]]) -> None:
        """Inside a write: once it commits, ring the doorbells of the consumers these queues have now (None: of
        every consumer)."""
        if queues is None:
            consumers = self.all_consumers()
        else:
            consumers = []
            for queue in queues:
                found = self.consumers_of(queue)
                if not found:
                    self._consumed.pop(queue, None)
                consumers.extend(found)
        if consumers:
            addresses = [doorbell_address(*consumer) for consumer in consumers]
            self.after_commit(lambda: self._ring(addresses))

    def _ring(self, addresses: list[bytes]) -> None:
        if self._bell is None:
            self._bell = Bell()
        self._bell.ring(addresses)

    def lock_queue(self, queue: str) -> None:
        """Nothing to do: no writer runs beside another on SQLite."""

    def close(self) -> None:
        super().close()
        if self._bell is not None:
            self._bell.close()
            self._bell = None

    # --- exchanges
    def exchange(self, name: str) -> Optional[ExchangeRow]:
        row = self._db.execute(SELECT_EXCHANGE, (name,)).fetchone()
        return ExchangeRow(row[0], bool(row[1]), bool(row[2]), bool(row[3]), row[4]) if row else None

    def insert_exchange(self, name: str, type: str, durable: bool, auto_delete: bool, internal: bool,
                        arguments: Optional[str], now: float) -> None:
        self._db.execute(INSERT_EXCHANGE, (name, type, durable, auto_delete, internal, arguments, now))

    def delete_exchange(self, name: str) -> list[str]:
        """Delete the exchange and every binding from or to it; return the exchanges that lost a binding."""
        sources = [r[0] for r in self._db.execute(DELETE_BINDINGS_OF_EXCHANGE, (name, name))]
        self._db.execute(DELETE_EXCHANGE, (name,))
        return [s for s in sources if s != name]

    def exchange_in_use(self, name: str) -> bool:
        """Whether the exchange is the source or destination of any binding."""
        return (self._db.execute(SELECT_HAS_BINDINGS, (name,)).fetchone() is not None
                or self._db.execute(SELECT_IS_DESTINATION, (name,)).fetchone() is not None)

    def has_bindings(self, exchange: str) -> bool:
        return self._db.execute(SELECT_HAS_BINDINGS, (exchange,)).fetchone() is not None

    def exchange_and_bindings(self, name: str
                              ) -> Optional[tuple[str, bool, Optional[str], list[Binding]]]:
        """The exchange's type, internal flag, arguments and bindings (destination, kind, routing key, arguments
        JSON), or None."""
        rows = self._db.execute(SELECT_ROUTE, (name,)).fetchall()
        if not rows:
            return None
        return rows[0][0], bool(rows[0][1]), rows[0][2], [(r[3], r[4], r[5], r[6]) for r in rows if r[3] is not None]

    def routing_version(self) -> int:
        """Raised by every change to exchanges and bindings, by any connection (or by hand)."""
        return self._db.execute(SELECT_ROUTING_VERSION).fetchone()[0]

    # --- bindings
    def add_binding(self, exchange: str, destination: str, kind: str, routing_key: str, arguments: str) -> None:
        self._db.execute(INSERT_BINDING, (exchange, destination, kind, routing_key, arguments))

    def remove_binding(self, exchange: str, destination: str, kind: str, routing_key: str, arguments: str) -> bool:
        return self._db.execute(DELETE_BINDING, (exchange, destination, kind, routing_key, arguments)).rowcount > 0

    # --- queues
    def queue(self, name: str) -> Optional[QueueRow]:
        row = self._db.execute(SELECT_QUEUE, (name,)).fetchone()
        return QueueRow(bool(row[0]), bool(row[1]), bool(row[2]), *row[3:]) if row else None

    def queue_created_at(self, name: str) -> Optional[float]:
        """When the queue of that name was declared; None when there is none."""
        row = self._db.execute(SELECT_QUEUE_CREATED_AT, (name,)).fetchone()
        return row[0] if row else None

    def insert_queue(self, name: str, durable: bool, exclusive: bool, auto_delete: bool,
                     arguments: Optional[str], owner_connection: Optional[str], now: float) -> None:
        self._db.execute(INSERT_QUEUE, (name, durable, exclusive, auto_delete, arguments, owner_connection, now))

    def delete_queue(self, name: str) -> list[str]:
        """Delete the queue with its messages, bindings and consumers; return the exchanges that lost a binding."""
        self._db.execute(DELETE_QUEUE, (name,))  # first: the messages' delete trigger then has no counter to keep
        self._db.execute(DELETE_QUEUE_MESSAGES, (name,))
        sources = [r[0] for r in self._db.execute(DELETE_BINDINGS_TO_QUEUE, (name,))]
        self._db.execute(DELETE_QUEUE_CONSUMERS, (name,))
        return sources

    def purge_queue(self, name: str) -> int:
        """Delete the queue's ready messages (not the unacked ones); return how many."""
        return self._db.execute(PURGE_READY, (name,)).rowcount

    def unacked_count(self, queue: str) -> int:
        return int(self._db.execute(SELECT_UNACKED_COUNT, (queue,)).fetchone()[0])

    def owned_queues(self, connection_id: str) -> list[str]:
        return [r[0] for r in self._db.execute(SELECT_OWNED_QUEUES, (connection_id,))]

    # --- messages
    def counts_with(self, queue: str, size: int, count: int = 1) -> Optional[Counts]:
        """The queue's ready count and bytes as they will be with ``count`` more ready messages of ``size`` bytes
        in all (stored, the triggers count them in), its arguments and its number of consumers; or None when the
        queue does not exist."""
        return self._db.execute(COUNTS_WITH, (count, size, queue)).fetchone()

    def counts_with_queues(self, queues: Sequence[str], size: int, count: int = 1
                           ) -> dict[str, Counts]:
        """``counts_with`` for each of several queues: what it returns, by name, for those that exist."""
        self._outside()
        counted = {}
        for names in padded(queues):
            for name, *row in self._db.execute(COUNTS_WITH_QUEUES, (count, size, *names)):
                counted[name] = tuple(row)
        return counted

    def insert_message(self, queue: str, exchange: str, routing_key: str, body: bytes, properties: Optional[str],
                       now: float, priority: int = 0, expires_at: Optional[float] = None) -> None:
        """Store a ready message."""
        self._insert(INSERT_MESSAGE, (queue, exchange, routing_key, body, properties, now, priority, expires_at))

    def insert_copies(self, queues: Sequence[str], exchange: str, routing_key: str, body: bytes,
                      properties: Optional[str], now: float) -> None:
        """Store a copy of one ready message in each of these queues."""
        if len(queues) == 1 or len(body) > OUT_OF_ROW_BYTES:
            for queue in queues:
                self.insert_message(queue, exchange, routing_key, body, properties, now)
            return
        for names in padded(queues):
            self._db.execute(INSERT_COPIES, (exchange, routing_key, body, properties, now, *names))

    def insert_messages(self, queue: str, exchange: str, routing_key: str, bodies: Sequence[bytes],
                        properties: Optional[str], now: float, priority: int = 0) -> None:
        """Store ready messages that differ only in their bodies, in this order."""
        if any(len(body) > OUT_OF_ROW_BYTES for body in bodies):
            for body in bodies:
                self.insert_message(queue, exchange, routing_key, body, properties, now, priority)
            return
        start, left = 0, len(bodies)
        for rows in BATCH_ROWS:
            while left >= rows:
                self._db.execute(INSERT_MESSAGES[rows],
                                 (queue, exchange, routing_key, properties, now, priority, *bodies[start:start + rows]))
                start += rows
                left -= rows

    def insert_delayed(self, queue: str, exchange: str, routing_key: str, bodies: Sequence[bytes],
                       properties: Optional[str], now: float, visible_at: float) -> None:
        """Store messages that join the queue at ``visible_at`` (not counted as ready until then), in this order."""
        for body in bodies:
            self._insert(INSERT_DELAYED, (queue, exchange, routing_key, body, properties, now, visible_at))

    def _insert(self, sql: str, row: tuple[Any, ...]) -> None:
        """Run an INSERT of one message whose fourth value is its body, storing a large body in litemq_bodies."""
        body = row[3]
        if len(body) <= OUT_OF_ROW_BYTES:
            self._db.execute(sql, row)
        else:
            message_id = self._db.execute(sql, (*row[:3], None, *row[4:])).lastrowid
            self._db.execute(INSERT_BODY, (message_id, body))

    def take_head(self, queue: str, count: int) -> list[StoredMessage]:
        """Remove up to ``count`` ready messages from the head of the queue (the next to be delivered)."""
        return self._taken_out(self._db.execute(TAKE_HEAD, (queue, count)).fetchall())

    def take_expired(self, now: float, limit: int) -> list[StoredMessage]:
        """Remove up to ``limit`` ready messages of any queue whose TTL ran out by ``now``, soonest first."""
        return self._taken_out(self._db.execute(TAKE_EXPIRED, (now, limit)).fetchall())

    def take_due(self, now: float, limit: int) -> list[tuple[StoredMessage, float]]:
        """Remove up to ``limit`` delayed messages due by ``now`` with their due times, in the order they fall due
        (to be enqueued)."""
        rows = self._db.execute(TAKE_DUE, (now, limit)).fetchall()
        rows.sort(key=lambda r: (r[7], r[0]))
        return [(StoredMessage(*r[:7]), r[7]) for r in rows]

    def arrival_due(self) -> Optional[float]:
        """When the next delayed message falls due or unused queue expires (what a publish settles first)."""
        return _earliest(self._db.execute(SELECT_ARRIVAL_DEADLINES).fetchone())

    def counts_with_first(self, queue: str, size: int, count: int = 1
                          ) -> tuple[Optional[Counts], Optional[float]]:
        """``counts_with``, and what a publish must settle first: when the next delayed message falls due or unused
        queue expires (None when nothing waits)."""
        row = self._db.execute(COUNTS_WITH_FIRST, (count, size, queue)).fetchone()
        if row is None:
            return None, self.arrival_due()
        if row[2] is not None:
            remember(self._not_plain, queue)  # ``publish_plain`` need not try it
        return (row[0], row[1], row[2], row[3]), _earliest(row[4:])

    def ack_last(self, leases: Sequence[Lease]) -> int:
        """``ack``: the transaction commits when its block ends."""
        return self.ack(leases)

    def drop(self, leases: Sequence[Lease]) -> list[StoredMessage]:
        """Delete leased messages by (id, token), returning them (for dead-lettering)."""
        taken = []
        for lease in leases:
            row = self._db.execute(DROP, lease).fetchone()
            if row:
                taken.append(StoredMessage(*row))
        return taken

    def take_ready(self, ids: Sequence[int]) -> list[StoredMessage]:
        """Remove ready messages by id (those no longer ready are left alone)."""
        return self._taken_out([row for message_id in ids
                                for row in self._db.execute(TAKE_READY, (message_id,)).fetchall()])

    def _taken_out(self, rows: list[Any]) -> list[StoredMessage]:
        rows.sort()
        return [StoredMessage(*r) for r in rows]

    def return_expired(self, queue: str, now: float) -> list[ReturnedMessage]:
        """Make messages whose lease expired by ``now`` ready again, in their original place."""
        returned = self._returned(self._db.execute(RETURN_EXPIRED, (queue, now)).fetchall())
        if returned:  # their holders hung, ran past the consumer timeout, or died unseen
            debug("litemq: %d expired lease(s) in queue %r of %s returned to the queue (message ids %s)",
                  len(returned), queue, self.path, [message.id for message in returned])
        return returned

    def claim(self, queue: str, limit: int, owner: str, token: int, lease_expires_at: float, *,
              default_consumer: bool = False) -> list[MessageRow]:
        """Lease up to ``limit`` ready messages, in delivery order, to ``owner`` with ``token``. For a
        ``default_consumer`` (priority 0): none while a consumer of higher priority has room."""
        if limit == 1:
            row = self._next_ready(queue, default_consumer)
            if row is not None:
                self._db.execute(LEASE_READY, (owner, token, lease_expires_at, row[0]))
                return [MessageRow(*row)]
            return []
        statement = CLAIM_AS_DEFAULT_CONSUMER if default_consumer else CLAIM
        rows = self._db.execute(statement, (owner, token, lease_expires_at, queue, limit)).fetchall()
        return self._taken(rows)

    def _next_ready(self, queue: str, default_consumer: bool) -> Optional[tuple[Any, ...]]:
        """The next ready message as a claim returns it, to be leased or deleted by id (``NEXT_READY``)."""
        return self._db.execute(NEXT_READY_AS_DEFAULT_CONSUMER if default_consumer else NEXT_READY,
                                (queue,)).fetchone()

    def claim_with_queue(self, queue: str, limit: int, owner: str, token: int, lease_expires_at: float,
                         now: float, *, auto_ack: bool = False
                         ) -> tuple[Optional[QueueRow], Optional[float], Optional[list[MessageRow]]]:
        """The queue, when it is due, and a claim when it exists, has no arguments and nothing is due. One message
        is read with the queue (``SELECT_QUEUE_DUE_NEXT``), then leased or deleted by its id."""
        one = limit == 1
        found = self._db.execute(SELECT_QUEUE_DUE_NEXT if one else SELECT_QUEUE_DUE, (queue,)).fetchone()
        if found is None:
            return None, None, None
        row, due = QueueRow(bool(found[0]), bool(found[1]), bool(found[2]), *found[3:8]), _earliest(found[8:12])
        if row.arguments is not None or (due is not None and due <= now):
            return row, due, None
        if not one:
            if auto_ack:
                return row, due, self.claim_and_delete(queue, limit)
            return row, due, self.claim(queue, limit, owner, token, lease_expires_at)
        if found[12] is None:
            return row, due, []
        message = MessageRow(*found[12:])
        if auto_ack:
            self._delete_taken(queue, [message])
        else:
            self._db.execute(LEASE_READY, (owner, token, lease_expires_at, message.id))
        return row, due, [message]

    def claim_alone(self, queue: str, owner: str, token: int, lease_expires_at: float, now: float
                    ) -> Optional[list[MessageRow]]:
        """``claim`` of one message for a priority-0 consumer as a transaction of its own: the next ready message
        read, then leased by its id in autocommit mode (``NEXT_READY_ALONE``), without BEGIN and COMMIT. None, having
        leased nothing, when the general path must claim: the connection needs a ``write()`` block (``alone``), the
        queue is gone, something is due by ``now``, consumers of lower priority wait for word of this one's room,
        or another claim took the message in between."""
        self.before_lock()
        with self.lock:
            if not self.alone():
                return None
            try:
                found = self._db.execute(NEXT_READY_ALONE, (queue, now)).fetchone()
                if found is None or found[0] or found[2]:
                    return None
                if found[1] or found[3] is None:
                    return []  # outranked, or nothing ready: what the general path's claim finds too
                # fetchall: stepped to its end, the statement commits here, not when its cursor is collected
                lease = (queue, owner, token, lease_expires_at, found[3])
                leased = self._db.execute(LEASE_READY_ALONE, lease).fetchall()
                if not leased:
                    return None
            except sqlite3.Error as exc:
                raise self.failed(exc) from exc
            self.commits += 1
            return [MessageRow(*leased[0])]

    def claim_unless_due(self, queue: str, limit: int, owner: str, token: int, lease_expires_at: float, now: float
                         ) -> Optional[list[MessageRow]]:
        """Never: the general path's reads of what is due cost no round trip on a file."""
        return None

    def ack_and_claim_unless_due(self, lease: Lease, queue: str, limit: int, owner: str, token: int,
                                 lease_expires_at: float, now: float
                                 ) -> Optional[tuple[int, Optional[list[MessageRow]]]]:
        """Never: a file's statements cost no round trip."""
        return None

    def claim_and_delete(self, queue: str, limit: int, *, default_consumer: bool = False) -> list[MessageRow]:
        """Take up to ``limit`` ready messages for good (auto-ack), in delivery order (``default_consumer``: as
        ``claim``)."""
        if limit == 1:
            row = self._next_ready(queue, default_consumer)
            if row is None:
                return []
            taken = [MessageRow(*row)]
            self._delete_taken(queue, taken)
            return taken
        statement = CLAIM_AND_DELETE_AS_DEFAULT_CONSUMER if default_consumer else CLAIM_AND_DELETE
        taken = self._taken(self._db.execute(statement, (queue, limit)).fetchall())
        if taken:
            self._count_taken(queue, taken)
        return taken

    def _delete_taken(self, queue: str, taken: list[MessageRow]) -> None:
        """Delete one ready message read to be taken for good (auto-ack)."""
        self._db.execute(DELETE_READY, (taken[0].id,))
        self._count_taken(queue, taken)

    def _count_taken(self, queue: str, taken: list[MessageRow]) -> None:
        # A trigger cannot tell this delete from a purge's: the take counts itself as delivered.
        self._db.execute(COUNT_TAKEN, (len(taken), sum(m.delivery_count > 1 for m in taken), queue))

    def _taken(self, rows: list[Any]) -> list[MessageRow]:
        messages = [MessageRow(*r) for r in rows]
        if len(messages) > 1:
            messages.sort(key=lambda m: (-m.priority, m.id))  # RETURNING gives no order: back to delivery order
        return messages

    def publish_plain(self, queue: str, exchange: str, routing_key: str, body: bytes, properties: Optional[str],
                      now: float, routing_version: Optional[int] = None) -> Optional[bool]:
        """One INSERT (``PUBLISH_PLAIN``), which stores nothing unless the queue has no arguments and nothing is due
        (and, with a ``routing_version``, the file's is that one: ``PUBLISH_ROUTED``); the block's COMMIT follows.
        Queues seen with consumers or arguments are remembered: the first try asks for no consumers (then it tells
        there are none to wake), and a queue with arguments takes the general path."""
        if not self._may_be_plain(queue, body):
            return None
        if routing_version is None:
            row: tuple[Any, ...] = (queue, exchange, routing_key, body, properties, now)
            unconsumed, consumed = PUBLISH_PLAIN_UNCONSUMED, PUBLISH_PLAIN
        else:
            row = (queue, exchange, routing_key, body, properties, now, routing_version)
            unconsumed, consumed = PUBLISH_ROUTED_UNCONSUMED, PUBLISH_ROUTED
        if queue not in self._consumed and self._db.execute(unconsumed, row).rowcount:
            return False
        if self._db.execute(consumed, row).rowcount:
            remember(self._consumed, queue)  # ``wake`` forgets it once it finds no consumers
            return True
        return None

    def _may_be_plain(self, queue: str, body: bytes) -> bool:
        """Whether ``publish_plain`` may store this: the queue not seen with arguments, the body kept in its row."""
        return queue not in self._not_plain and len(body) <= OUT_OF_ROW_BYTES

    def publish_alone(self, queue: str, exchange: str, routing_key: str, body: bytes, properties: Optional[str],
                      now: float, routing_version: Optional[int] = None) -> Optional[bool]:
        """``publish_plain`` as a transaction of its own: its INSERT in autocommit mode, which takes the write lock
        (waiting for it as BEGIN IMMEDIATE does) and commits, without BEGIN and COMMIT statements (callgrind: 17,000
        instructions less per publish); consumers are rung at once. None, having stored nothing, when the
        connection needs a ``write()`` block first (``alone``) or the queue is not plain."""
        if not self._may_be_plain(queue, body):  # (before the lock: a queue with arguments never waits for it)
            return None
        self.before_lock()
        with self.lock:
            if not self.alone():
                return None
            self.reserve(len(body))
            try:
                consumed = self.publish_plain(queue, exchange, routing_key, body, properties, now, routing_version)
                if consumed is None:
                    return None
                self.commits += 1
                addresses = [doorbell_address(*consumer) for consumer in self.consumers_of(queue)] if consumed else []
            except sqlite3.Error as exc:
                raise self.failed(exc) from exc
        if addresses:
            self._ring(addresses)
        elif consumed:
            self._consumed.pop(queue, None)
        return bool(addresses)

    def ack_alone(self, lease: Lease) -> Optional[int]:
        """``ack`` of one lease as a transaction of its own: its DELETE in autocommit mode (as ``publish_alone``).
        None when the connection needs a ``write()`` block first (``alone``)."""
        self.before_lock()
        with self.lock:
            if not self.alone():
                return None
            try:
                done = self._db.execute(ACK, lease).rowcount
            except sqlite3.Error as exc:
                raise self.failed(exc) from exc
            self.commits += 1
            return done

    def ack(self, leases: Sequence[Lease]) -> int:
        """Delete messages by (id, token); a message whose token changed is left alone. Returns how many."""
        if len(leases) == 1:
            return self._db.execute(ACK, leases[0]).rowcount
        return sum(self._db.execute(ACK, lease).rowcount for lease in leases)

    def requeue(self, leases: Sequence[Lease], undo_delivery: bool = False) -> list[ReturnedMessage]:
        """Return leased messages by (id, token) to their place. ``undo_delivery`` also uncounts the delivery (for
        messages claimed but never handed to the application)."""
        rows = []
        for message_id, token in leases:
            row = self._db.execute(REQUEUE, (1 if undo_delivery else 0, message_id, token)).fetchone()
            if row:
                rows.append(row)
        return self._returned(rows)

    def release_owner(self, owner: str) -> list[ReturnedMessage]:
        """Return every message leased to ``owner`` to its queue."""
        return self._returned(self._db.execute(RELEASE_OWNER, (owner,)).fetchall())

    def release_connection(self, connection_id: str) -> list[ReturnedMessage]:
        """Return every message leased to any channel of the connection."""
        # Owners are "<connection id>/<channel>": a connection's leases are one range of owners.
        return self._returned(self._db.execute(RELEASE_CONNECTION, (connection_id + "/", connection_id + "0")).fetchall())

    def _returned(self, rows: list[Any]) -> list[ReturnedMessage]:
        return [ReturnedMessage(*r) for r in rows]

    def renew(self, leases: Sequence[tuple[float, int, int]]) -> int:
        """Set new expiries on leases given as (expires_at, id, token); returns how many were still held."""
        return sum(self._db.execute(RENEW_LEASE, lease).rowcount for lease in leases)

    def next_lease_expiry(self, queue: str) -> Optional[float]:
        """When the first lease in the queue expires, or None when none is held."""
        self._outside()
        row = self._db.execute(SELECT_NEXT_EXPIRY, (queue,)).fetchone()
        return row[0] if row else None

    def next_lease_expiries(self, queues: Sequence[str]) -> dict[str, float]:
        self._outside()
        expiries: dict[str, float] = {}
        for names in padded(queues):
            expiries.update(self._db.execute(SELECT_NEXT_EXPIRIES, names).fetchall())
        return expiries

    def next_due(self, queue: str) -> Optional[float]:
        """The earliest of: the first lease in the queue expiring, and ``deadlines()`` (None when nothing waits)."""
        return _earliest(self._db.execute(SELECT_DUE, (queue,)).fetchone())

    def deadlines(self) -> tuple[Optional[float], Optional[float], Optional[float]]:
        """When the next delayed message falls due, the next ready message expires, the next unused queue
        expires (None for each where nothing waits)."""
        self._outside()
        return self._db.execute(SELECT_DEADLINES).fetchone()

    def expired_queues(self, now: float) -> list[str]:
        return [r[0] for r in self._db.execute(SELECT_EXPIRED_QUEUES, (now,))]

    def set_queue_expiry(self, queue: str, expires_at: Optional[float]) -> None:
        self._db.execute(SET_QUEUE_EXPIRY, (expires_at, queue))

    def ready_count(self, queue: str) -> Optional[int]:
        self._outside()
        row = self._db.execute(SELECT_READY_COUNT, (queue,)).fetchone()
        return row[0] if row else None

    def ready_count_ranked(self, queue: str) -> tuple[Optional[int], bool]:
        """``ready_count`` and ``consumer_ranking(queue, 0)[0]`` in one statement."""
        self._outside()
        row = self._db.execute(SELECT_READY_COUNT_RANKED, (queue,)).fetchone()
        return (row[0], bool(row[1])) if row else (None, False)

    # --- consumers and connections
    def consumer_count(self, queue: str) -> int:
        return int(self._db.execute(SELECT_CONSUMER_COUNT, (queue,)).fetchone()[0])

    def first_consumer(self, queue: str) -> Optional[Consumer]:
        """The queue's longest-standing consumer: (connection id, channel, consumer tag), or None."""
        return self._db.execute(SELECT_FIRST_CONSUMER, (queue,)).fetchone()

    def has_exclusive_consumer(self, queue: str) -> bool:
        return self._db.execute(SELECT_EXCLUSIVE_CONSUMER, (queue,)).fetchone() is not None

    def add_consumer(self, connection_id: str, channel: int, consumer_tag: str, queue: str, prefetch_count: int,
                     auto_ack: bool, exclusive: bool, now: float, priority: int = 0) -> None:
        self._db.execute(INSERT_CONSUMER, (connection_id, channel, consumer_tag, queue, prefetch_count, auto_ack,
                                           exclusive, now, priority))

    def consumer_ranking(self, queue: str, priority: int) -> tuple[bool, bool]:
        """For a consumer of the queue with this priority: (whether a consumer of higher priority has room, whether
        a consumer of lower priority is there)."""
        if priority:
            higher_has_room, lower = self._db.execute(SELECT_CONSUMER_RANKING, (queue, priority)).fetchone()
        else:
            higher_has_room, lower = self._db.execute(SELECT_DEFAULT_CONSUMER_RANKING, (queue,)).fetchone()
        return bool(higher_has_room), bool(lower)

    def set_consumer_room(self, connection_id: str, channel: int, consumer_tag: str, has_room: bool) -> None:
        self._db.execute(SET_CONSUMER_ROOM, (has_room, connection_id, channel, consumer_tag))

    def remove_consumer(self, connection_id: str, channel: int, consumer_tag: str) -> bool:
        return self._db.execute(DELETE_CONSUMER, (connection_id, channel, consumer_tag)).rowcount > 0

    def consumers_of(self, queue: str) -> list[Consumer]:
        """(connection id, channel, consumer tag) of each consumer of the queue."""
        return self._db.execute(SELECT_CONSUMERS_OF, (queue,)).fetchall()

    def all_consumers(self) -> list[Consumer]:
        return self._db.execute(SELECT_ALL_CONSUMERS).fetchall()

    def remove_connection_consumers(self, connection_id: str) -> list[str]:
        """Remove every consumer of the connection; return their queues."""
        return [r[0] for r in self._db.execute(DELETE_CONNECTION_CONSUMERS, (connection_id,)).fetchall()]

    def connection_ids(self) -> list[str]:
        self.check_process()  # read outside a transaction (a sweep), which checks at BEGIN
        return [r[0] for r in self._db.execute(SELECT_CONNECTION_IDS)]

    def has_connection(self, connection_id: str) -> bool:
        return self._db.execute(SELECT_CONNECTION, (connection_id,)).fetchone() is not None

    def registration(self, connection_id: str) -> Optional[Registration]:
        """The pid, host and start time a connection registered, or None when it is not registered."""
        self.check_process()
        row = self._db.execute(SELECT_REGISTRATION, (connection_id,)).fetchone()
        return Registration(row[0], row[1], row[2]) if row else None

    def register_connection(self, connection_id: str, pid: int, host: str, now: float) -> None:
        self._db.execute(INSERT_CONNECTION, (connection_id, pid, host, now))

    def unregister_connection(self, connection_id: str) -> None:
        self._db.execute(DELETE_CONNECTION, (connection_id,))


def _earliest(times: Sequence[Optional[float]]) -> Optional[float]:
    earliest = None  # a loop, not min() over a generator: it runs at every publish and get
    for t in times:
        if t is not None and (earliest is None or t < earliest):
            earliest = t
    return earliest


if TYPE_CHECKING:
    def _implements_the_contract(store: SQLiteStore) -> Store:
        return store
