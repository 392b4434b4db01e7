"""The semantics of RabbitMQ's model over a store: declare, bind, publish, get, consume, ack/nack/reject, leases.

No SQL here: every statement is a verb of the store, and this module computes each policy value (now, lease
expiry, tokens, target queues) and passes it down.
"""

from __future__ import annotations

import atexit
import base64
import functools
import itertools
import logging
import os
import secrets
import uuid
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional, TypeVar

from . import routing
from .errors import (AccessRefused, ChannelClosed, DeliveryError, ExchangeNotFound, LeaseExpired, MessageTooLarge,
                     PreconditionFailed, QueueNotFound, ResourceLocked)
from .message import (EMPTY_PROPERTIES, Delivery, Properties, decode_properties, decode_table, encode_body,
                      encode_properties, encode_table)
from .session import Held, OwnerDied, Session, clock
from .store.sqlite import MessageRow, QueueRow, SQLiteStore

if TYPE_CHECKING:
    from .consumer import Consumer

log = logging.getLogger("litemq")

DEFAULT_LEASE_SECONDS = 60.0
DEFAULT_CONSUMER_TIMEOUT = 1800.0  # RabbitMQ's delivery acknowledgement timeout
DEFAULT_MAX_MESSAGE_BYTES = 128 * 1024 * 1024  # RabbitMQ's default max_message_size
DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"
LEASE_ARGUMENT = "x-lease-ms"
"""Queue argument: how long, in milliseconds, a delivery from this queue stays leased to its consumer."""


@dataclass(frozen=True)
class QueueInfo:
    """What ``declare_queue`` reports: the name (server-chosen for ``""``) and its counts."""

    queue: str
    message_count: int
    consumer_count: int


def resolve_path(url: Optional[str]) -> str:
    """The file a connection opens: a plain path or ``sqlite:///path``; default ``$LITEMQ_URL``, else litemq.db."""
    if url is None:
        url = os.environ.get("LITEMQ_URL") or "litemq.db"
    if not isinstance(url, (str, os.PathLike)):
        raise TypeError(f"the file to open must be a path or an sqlite:/// URL, not {type(url).__name__}")
    url = os.fspath(url)
    if url.startswith("sqlite:///"):
        url = url[len("sqlite:///"):]
    elif "://" in url:
        raise ValueError(f"litemq opens SQLite files (a path or sqlite:///path), not {url!r}")
    if not url or url == ":memory:":
        raise ValueError("litemq needs a file that other processes can open, not an in-memory database")
    return os.path.abspath(url)


Method = TypeVar("Method", bound=Callable[..., Any])


def _reaping(method: Method) -> Method:
    """An operation that meets an exclusive queue whose owner died cleans up after it (in a transaction of its own,
    which nothing the operation raises can roll back) and starts over."""
    @functools.wraps(method)
    def run(self: "Channel", *args: Any, **kwargs: Any) -> Any:
        while True:
            try:
                return method(self, *args, **kwargs)
            except OwnerDied as dead:
                self._session.reap_now(dead.connection_id)
    return run  # type: ignore[return-value]


class Channel:
    """A scope of consumers and unacked deliveries: closing it returns what it still holds to the queues."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._store = session.store
        self.number = next(session.channel_numbers)
        self._owner = f"{session.connection_id}/{self.number}"
        self._tags = itertools.count(1)
        self._unacked: dict[int, Held] = {}
        self._consumers: dict[str, Consumer] = {}
        self._closed = False
        self.prefetch_count = 0
        """The prefetch of consumers started without one (set by ``qos``)."""
        self.channel_prefetch_count = 0
        """A cap on unacked deliveries across this channel's consumers (0 = none; set by ``qos(global_qos=True)``)."""
        session.channels[self.number] = self

    # --- state
    @property
    def is_open(self) -> bool:
        return not self._closed and not self._session.closed

    @property
    def path(self) -> str:
        """The file this channel's connection opened."""
        return self._session.path

    def _check_open(self) -> None:
        if not self.is_open:
            raise ChannelClosed(f"channel {self.number} on {self.path} is closed")

    # --- exchanges
    def declare_exchange(self, exchange: str, exchange_type: str = "direct", *, passive: bool = False,
                         durable: bool = False, auto_delete: bool = False, internal: bool = False,
                         arguments: Optional[Mapping[str, Any]] = None) -> None:
        """Create the exchange, or check that it exists with these properties (``passive`` only checks)."""
        self._check_open()
        routing.check_name("exchange name", exchange)
        if passive:
            with self._store.read() as store:
                if store.exchange(exchange) is None and exchange != "":
                    raise self._exchange_not_found(exchange)
            return
        if exchange == "":
            raise AccessRefused(f"the default exchange cannot be declared (in {self.path})")
        routing.check_exchange_type(exchange_type)
        args = encode_table(_check_arguments(arguments))
        wanted = (exchange_type, bool(durable), bool(auto_delete), bool(internal), args)
        with self._store.write() as store:
            row = store.exchange(exchange)
            if row is None:
                if exchange.startswith("amq."):
                    raise AccessRefused(f"exchange name {exchange!r} is reserved: names starting 'amq.' "
                                        f"belong to the broker (in {self.path})")
                store.insert_exchange(exchange, exchange_type, *wanted[1:], clock())
                return
            for field, received, current in zip(("type", "durable", "auto_delete", "internal", "arguments"),
                                                wanted, row):
                if received != current:
                    raise PreconditionFailed(
                        f"inequivalent arg {field!r} for exchange {exchange!r} in {self.path}: "
                        f"received {received!r} but current is {current!r}")

    def delete_exchange(self, exchange: str, *, if_unused: bool = False) -> None:
        """Delete the exchange and its bindings; with ``if_unused``, only when nothing is bound to it."""
        self._check_open()
        routing.check_name("exchange name", exchange)
        if exchange == "" or exchange.startswith("amq."):
            raise AccessRefused(f"exchange {exchange!r} belongs to the broker and cannot be deleted "
                                f"(in {self.path})")
        with self._store.write() as store:
            if store.exchange(exchange) is None:
                return
            if if_unused and store.has_bindings(exchange):
                raise PreconditionFailed(f"exchange {exchange!r} in {self.path} is in use (it has bindings)")
            self._session.auto_delete_exchanges(store, store.delete_exchange(exchange))

    # --- queues
    @_reaping
    def declare_queue(self, queue: str = "", *, passive: bool = False, durable: bool = False,
                      exclusive: bool = False, auto_delete: bool = False,
                      arguments: Optional[Mapping[str, Any]] = None) -> QueueInfo:
        """Create the queue (a server-named one for ``""``), or check it; returns its name and counts."""
        self._check_open()
        routing.check_name("queue name", queue)
        self._session.sweep()  # so the counts leave out consumers of connections that died
        if passive:
            with self._store.write() as store:
                # A responder may check that a direct reply-to requester is still there (RabbitMQ allows it).
                row = self._queue(store, queue, check_exclusive=not queue.startswith(DIRECT_REPLY_TO + "."))
                return QueueInfo(queue, row.ready_count, store.consumer_count(queue))
        server_named = queue == ""
        if server_named:
            queue = "amq.gen-" + base64.urlsafe_b64encode(secrets.token_bytes(16)).decode("ascii").rstrip("=")
        elif queue.startswith("amq."):
            # RabbitMQ refuses this even for an existing queue, a server-named one included: only passive declares
            # may name them.
            raise AccessRefused(f"queue name {queue!r} is reserved: names starting 'amq.' belong to the broker "
                                f"(in {self.path})")
        args = _check_arguments(arguments)
        _lease_seconds_of(args, queue)
        encoded = encode_table(args)
        with self._store.write() as store:
            row = self._session.live_queue(store, queue)
            if row is None:
                owner = self._session.connection_id if exclusive else None
                store.insert_queue(queue, bool(durable), bool(exclusive), bool(auto_delete), encoded, owner,
                                   clock())
                return QueueInfo(queue, 0, 0)
            self._check_exclusive(row, queue)
            ready = row.ready_count + store.return_expired(queue, clock())
            if bool(exclusive) != row.exclusive:
                raise ResourceLocked(f"cannot obtain exclusive access to locked queue {queue!r} in {self.path}: "
                                     f"the exclusive property does not match the original declaration")
            for field, received, current in (("durable", bool(durable), row.durable),
                                             ("auto_delete", bool(auto_delete), row.auto_delete),
                                             ("arguments", encoded, row.arguments)):
                if received != current:
                    raise PreconditionFailed(
                        f"inequivalent arg {field!r} for queue {queue!r} in {self.path}: "
                        f"received {received!r} but current is {current!r}")
            return QueueInfo(queue, ready, store.consumer_count(queue))

    @_reaping
    def delete_queue(self, queue: str, *, if_unused: bool = False, if_empty: bool = False) -> int:
        """Delete the queue with its messages and bindings; returns how many messages it held."""
        self._check_open()
        routing.check_name("queue name", queue)
        with self._store.write() as store:
            row = self._session.live_queue(store, queue)
            if row is None:
                return 0
            self._check_exclusive(row, queue)
            if if_unused and store.consumer_count(queue):
                raise PreconditionFailed(f"queue {queue!r} in {self.path} is in use (it has consumers)")
            if if_empty and row.ready_count:
                raise PreconditionFailed(f"queue {queue!r} in {self.path} is not empty")
            self._session.delete_queue(store, queue)
            return row.ready_count

    @_reaping
    def purge_queue(self, queue: str) -> int:
        """Delete the queue's ready messages (unacked ones stay); returns how many."""
        self._check_open()
        routing.check_name("queue name", queue)
        with self._store.write() as store:
            self._queue(store, queue)
            return store.purge_queue(queue)

    # --- bindings
    def bind_queue(self, queue: str, exchange: str, routing_key: str = "",
                   arguments: Optional[Mapping[str, Any]] = None) -> None:
        """Route messages from the exchange to the queue (idempotent)."""
        self._bind(exchange, queue, "queue", routing_key, arguments, bind=True)

    def unbind_queue(self, queue: str, exchange: str, routing_key: str = "",
                     arguments: Optional[Mapping[str, Any]] = None) -> None:
        """Remove a binding made by ``bind_queue`` (idempotent)."""
        self._bind(exchange, queue, "queue", routing_key, arguments, bind=False)

    def bind_exchange(self, destination: str, source: str, routing_key: str = "",
                      arguments: Optional[Mapping[str, Any]] = None) -> None:
        """Route messages from one exchange on to another (idempotent)."""
        self._bind(source, destination, "exchange", routing_key, arguments, bind=True)

    def unbind_exchange(self, destination: str, source: str, routing_key: str = "",
                        arguments: Optional[Mapping[str, Any]] = None) -> None:
        """Remove a binding made by ``bind_exchange`` (idempotent)."""
        self._bind(source, destination, "exchange", routing_key, arguments, bind=False)

    @_reaping
    def _bind(self, exchange: str, destination: str, kind: str, routing_key: str,
              arguments: Optional[Mapping[str, Any]], *, bind: bool) -> None:
        self._check_open()
        routing.check_name("exchange name", exchange)
        routing.check_name(f"{kind} name", destination)
        routing.check_name("routing key", routing_key)
        args = _check_arguments(arguments)
        if exchange == "" or (kind == "exchange" and destination == ""):
            raise AccessRefused(f"the default exchange cannot be bound or unbound (in {self.path})")
        with self._store.write() as store:
            source = store.exchange(exchange)
            target = (self._session.live_queue(store, destination) if kind == "queue"
                      else store.exchange(destination))
            if isinstance(target, QueueRow):
                self._check_exclusive(target, destination)
            if not bind and (source is None or target is None):
                return  # as in RabbitMQ, unbinding what does not exist is not an error
            if source is None:
                raise self._exchange_not_found(exchange)
            if target is None:
                raise (QueueNotFound(f"queue {destination!r} not found in {self.path}") if kind == "queue"
                       else self._exchange_not_found(destination))
            if source.type == "headers" and bind:
                try:
                    routing.x_match(args)
                except ValueError as exc:
                    raise PreconditionFailed(f"cannot bind {kind} {destination!r} to exchange {exchange!r} "
                                             f"in {self.path}: {exc}") from None
            encoded = encode_table(args) or "{}"
            if bind:
                store.add_binding(exchange, destination, kind, routing_key, encoded)
            elif store.remove_binding(exchange, destination, kind, routing_key, encoded):
                self._session.auto_delete_exchanges(store, [exchange])

    # --- publishing
    def publish(self, exchange: str, routing_key: str, body: bytes | str,
                properties: Optional[Properties] = None) -> int:
        """Route one message and store a copy in each queue it reaches; returns how many queues that is.

        A message that reaches no queue is dropped, as RabbitMQ drops an unroutable message."""
        message = self._outgoing(exchange, routing_key, body, properties)
        with self._store.write() as store:
            return self._publish_in(store, *message)

    def ack_and_publish(self, delivery_tag: int, exchange: str, routing_key: str, body: bytes | str,
                        properties: Optional[Properties] = None) -> int:
        """Acknowledge a delivery and publish a message in one transaction: both happen or neither.

        An RPC server answers this way, so a request is answered exactly once even if the server dies between
        the two. A delivery whose lease expired raises LeaseExpired, and nothing is published."""
        message = self._outgoing(exchange, routing_key, body, properties)
        _check_tag(delivery_tag)
        with self._store.write() as store:
            self._settle_in(store, delivery_tag, False, "ack", all_or_nothing=True)
            return self._publish_in(store, *message)

    def _outgoing(self, exchange: str, routing_key: str, body: bytes | str,
                  properties: Optional[Properties]) -> tuple[str, str, bytes, Properties]:
        self._check_open()
        routing.check_name("exchange name", exchange)
        routing.check_name("routing key", routing_key)
        data = encode_body(body)
        if properties is None:
            properties = EMPTY_PROPERTIES
        elif not isinstance(properties, Properties):
            raise TypeError(f"properties must be litemq.Properties, not {type(properties).__name__}")
        if len(data) > self._session.max_message_bytes:
            raise MessageTooLarge(f"message of {len(data)} bytes for exchange {exchange!r} is larger than the "
                                  f"maximum of {self._session.max_message_bytes} bytes (in {self.path})")
        return exchange, routing_key, data, properties

    def _publish_in(self, store: SQLiteStore, exchange: str, routing_key: str, data: bytes,
                    properties: Properties) -> int:
        if exchange == "":
            queues = [routing_key]
        else:
            queues = self._route(store, exchange, routing_key, properties.headers)
        stored = store.insert_copies(queues, exchange, routing_key, data, encode_properties(properties), clock())
        if stored:
            self._session.wake_consumers(store, queues)
        return stored

    def route(self, exchange: str, routing_key: str, headers: Optional[Mapping[str, Any]] = None) -> list[str]:
        """The queues a message would reach, without publishing it (a dry run)."""
        self._check_open()
        routing.check_name("exchange name", exchange)
        routing.check_name("routing key", routing_key)
        if headers is not None:
            Properties(headers=headers)
        with self._store.read() as store:
            if exchange == "":
                return [routing_key] if store.queue(routing_key) is not None else []
            return self._route(store, exchange, routing_key, headers)

    def _route(self, store: SQLiteStore, exchange: str, routing_key: str,
               headers: Optional[Mapping[str, Any]]) -> list[str]:
        def lookup(name: str) -> Optional[tuple[str, list[routing.Binding]]]:
            found = store.exchange_and_bindings(name)
            if found is None:
                if name == exchange:
                    raise self._exchange_not_found(exchange)
                return None
            exchange_type, rows = found
            return exchange_type, [
                routing.Binding(dest, kind, key, decode_table(args) if exchange_type == "headers" else {})
                for dest, kind, key, args in rows]

        row = store.exchange(exchange)
        if row is not None and row.internal:
            raise AccessRefused(f"cannot publish to internal exchange {exchange!r} in {self.path}")
        return routing.route(exchange, routing_key, headers, lookup)

    # --- getting and consuming
    @_reaping
    def get(self, queue: str, *, auto_ack: bool = False, lease_seconds: Optional[float] = None
            ) -> Optional[Delivery]:
        """Take the next ready message (basic.get), or None when there is none.

        The delivery's ``message_count`` is how many ready messages are left."""
        self._check_open()
        routing.check_name("queue name", queue)
        _check_lease_seconds(lease_seconds)
        for attempt in range(2):
            with self._store.write() as store:
                row = self._queue(store, queue)
                now = clock()
                ready = row.ready_count + store.return_expired(queue, now)
                if auto_ack:
                    rows = store.claim_and_delete(queue, 1)
                    token = 0
                else:
                    token = secrets.randbits(62)
                    rows = store.claim(queue, 1, self._owner, token, now + self._lease_seconds(row, queue, lease_seconds))
                if rows:
                    held = None if auto_ack else self._hold(rows[0], queue, token, None, lease_seconds or 0, now,
                                                            row)
                    return self._deliver(rows[0], queue, held, None, message_count=ready - 1)
            # Empty: a dead connection may be holding messages; look (at most every SWEEP_SECONDS) and retry once.
            if attempt or not self._session.sweep():
                return None
        return None

    def qos(self, prefetch_count: int = 0, global_qos: bool = False) -> None:
        """basic.qos: the prefetch of consumers started later (RabbitMQ's per-consumer default), or with
        ``global_qos`` a cap on unacked deliveries across the whole channel. 0 means unlimited."""
        self._check_open()
        _check_prefetch(prefetch_count)
        if global_qos:
            self.channel_prefetch_count = prefetch_count
        else:
            self.prefetch_count = prefetch_count

    @_reaping
    def consume(self, queue: str, *, prefetch: Optional[int] = None, auto_ack: bool = False,
                exclusive: bool = False,
                consumer_tag: Optional[str] = None, lease_seconds: Optional[float] = None,
                inactivity_timeout: Optional[float] = None) -> "Consumer":
        """Start a consumer: iterate it for deliveries, or give it a callback with ``run``.

        ``prefetch`` bounds this consumer's unacked deliveries (0 = unlimited; by default the channel's ``qos``
        setting, itself 0 unless set); iteration ends after
        ``inactivity_timeout`` seconds without a message, or never when it is None."""
        from .consumer import Consumer

        self._check_open()
        routing.check_name("queue name", queue)
        if prefetch is None:
            prefetch = self.prefetch_count
        _check_prefetch(prefetch)
        _check_lease_seconds(lease_seconds)
        tag = consumer_tag or f"ctag-{uuid.uuid4().hex}"
        routing.check_name("consumer tag", tag)
        if tag in self._consumers:
            raise PreconditionFailed(f"consumer tag {tag!r} is already in use on channel {self.number}")
        with self._store.write() as store:
            row = self._queue(store, queue)
            if store.has_exclusive_consumer(queue) or (exclusive and store.consumer_count(queue)):
                raise AccessRefused(f"queue {queue!r} in {self.path} has an exclusive consumer, or cannot get one "
                                    f"because it has consumers")
            lease = self._lease_seconds(row, queue, lease_seconds)
            store.add_consumer(self._session.connection_id, self.number, tag, queue, prefetch, bool(auto_ack),
                               bool(exclusive), clock())
            consumer = Consumer(self, queue, tag, prefetch, bool(auto_ack), lease, inactivity_timeout)
            self._consumers[tag] = consumer
            return consumer

    def _claim(self, consumer: "Consumer", limit: int) -> list[tuple[MessageRow, Optional[Held]]]:
        """Claim up to ``limit`` messages for a consumer; raises QueueNotFound when its queue is gone."""
        with self._store.write() as store:
            now = clock()
            store.return_expired(consumer.queue, now)
            if consumer.auto_ack:
                rows = store.claim_and_delete(consumer.queue, limit)
                claimed = [(row, None) for row in rows]
            else:
                token = secrets.randbits(62)
                rows = store.claim(consumer.queue, limit, self._owner, token, now + consumer.lease_seconds)
                claimed = [(row, self._hold(row, consumer.queue, token, consumer, consumer.lease_seconds, now))
                           for row in rows]
            if not claimed and store.queue(consumer.queue) is None:
                self._forget_consumer(consumer)
                raise QueueNotFound(f"queue {consumer.queue!r} in {self.path} was deleted; consumer "
                                    f"{consumer.consumer_tag!r} is cancelled")
            return claimed

    def _hold(self, row: MessageRow, queue: str, token: int, consumer: Optional["Consumer"],
              lease_seconds: float, now: float, queue_row: Optional[QueueRow] = None) -> Held:
        if not lease_seconds:
            assert queue_row is not None
            lease_seconds = self._lease_seconds(queue_row, queue, None)
        self._session.lease_taken(lease_seconds)
        return Held(row.id, token, queue, consumer, lease_seconds, now)

    def _deliver(self, row: MessageRow, queue: str, held: Optional[Held], consumer: Optional["Consumer"],
                 message_count: Optional[int] = None) -> Delivery:
        tag = next(self._tags)
        if held is not None:
            self._unacked[tag] = held
            if consumer is not None:
                consumer.unacked += 1
        return Delivery(
            body=row.body, properties=decode_properties(row.properties), exchange=row.exchange,
            routing_key=row.routing_key, queue=queue, delivery_tag=tag, redelivered=row.delivery_count > 1,
            delivery_count=row.delivery_count, consumer_tag=consumer.consumer_tag if consumer else None,
            message_count=message_count, _channel=None if held is None else self)

    def _holding(self) -> int:
        """How many deliveries this channel's consumers hold, handed out or not (for a channel-wide prefetch)."""
        return sum(1 for held in self._unacked.values() if held.consumer is not None) + sum(
            len(consumer._buffer) for consumer in self._consumers.values())

    def _held(self) -> list[Held]:
        """Every lease this channel holds: unacked deliveries and messages its consumers claimed but not handed out."""
        leases = list(self._unacked.values())
        for consumer in self._consumers.values():
            leases.extend(consumer.unseen())
        return leases

    def _cancel(self, consumer: "Consumer") -> None:
        with self._store.write() as store:
            self._cancel_in(store, consumer)

    def _cancel_in(self, store: SQLiteStore, consumer: "Consumer") -> None:
        unseen = [(held.message_id, held.token) for held in consumer.take_unseen()]
        if unseen:
            self._session.wake_consumers(store, store.requeue(unseen, undo_delivery=True))
        if self._forget_consumer(consumer):
            self._session.apply_auto_delete(store, consumer.queue)

    def _forget_consumer(self, consumer: "Consumer") -> bool:
        self._consumers.pop(consumer.consumer_tag, None)
        consumer.stop()
        return self._store.remove_consumer(self._session.connection_id, self.number, consumer.consumer_tag)

    # --- settling
    def ack(self, delivery_tag: int, multiple: bool = False) -> None:
        """Acknowledge a delivery (and every earlier one on this channel with ``multiple``)."""
        self._settle(delivery_tag, multiple, "ack")

    def nack(self, delivery_tag: int, multiple: bool = False, requeue: bool = True) -> None:
        """Return deliveries to their original place in the queue, or drop them with ``requeue=False``."""
        self._settle(delivery_tag, multiple, "requeue" if requeue else "drop")

    def reject(self, delivery_tag: int, requeue: bool = True) -> None:
        """Reject one delivery: back to its place, or dropped with ``requeue=False``."""
        self._settle(delivery_tag, False, "requeue" if requeue else "drop")

    def _settle(self, delivery_tag: int, multiple: bool, how: str) -> None:
        self._check_open()
        _check_tag(delivery_tag)
        with self._store.write() as store:
            self._settle_in(store, delivery_tag, multiple, how)

    def _settle_in(self, store: SQLiteStore, delivery_tag: int, multiple: bool, how: str, *,
                   all_or_nothing: bool = False) -> None:
        if multiple:
            tags = [t for t in self._unacked if t <= delivery_tag or delivery_tag == 0]
        else:
            tags = [delivery_tag] if delivery_tag in self._unacked else []
        if not tags:
            raise DeliveryError(f"unknown delivery tag {delivery_tag} on channel {self.number} of {self.path}: "
                                f"already settled, or not delivered on this channel")
        leases = [self._unacked.pop(t) for t in tags]
        for lease in leases:
            if lease.consumer is not None:
                lease.consumer.unacked -= 1  # type: ignore[attr-defined]
        pairs = [(lease.message_id, lease.token) for lease in leases]
        if how == "requeue":
            returned = store.requeue(pairs)
            self._session.wake_consumers(store, returned)
            done = sum(returned.values())
        else:
            done = store.ack(pairs)
        if done < len(pairs):
            # A message that went with its deleted queue is settled as RabbitMQ settles it: quietly.
            gone = sum(1 for lease in leases if store.queue(lease.queue) is None)
            done += gone
        if done < len(pairs):
            queues = sorted({lease.queue for lease in leases})
            error = LeaseExpired(
                f"{len(pairs) - done} of {len(pairs)} deliveries (up to tag {delivery_tag}) from queue "
                f"{', '.join(map(repr, queues))} in {self.path} were not settled: their lease expired and the "
                f"message went back to the queue, to be delivered again")
            if all_or_nothing:
                raise error  # inside the transaction: everything in it rolls back
            store.after_commit(lambda: _raise(error))

    # --- closing
    def close(self) -> None:
        """Cancel this channel's consumers and return its unacked deliveries to their queues."""
        if self._closed:
            return
        if not self._session.closed:
            with self._store.write() as store:
                self._close_in(store)
        self._closed = True
        self._session.channels.pop(self.number, None)

    def _close_in(self, store: SQLiteStore) -> None:
        for consumer in list(self._consumers.values()):
            self._cancel_in(store, consumer)
        self._unacked.clear()
        self._session.wake_consumers(store, store.release_owner(self._owner))

    def __enter__(self) -> "Channel":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- helpers
    def _queue(self, store: SQLiteStore, queue: str, check_exclusive: bool = True) -> QueueRow:
        row = self._session.live_queue(store, queue)
        if row is None:
            raise QueueNotFound(f"queue {queue!r} not found in {self.path}")
        if check_exclusive:
            self._check_exclusive(row, queue)
        return row

    def _declare_reply_queue(self) -> str:
        """A private queue for RabbitMQ's direct reply-to, under the name a responder publishes to."""
        queue = f"{DIRECT_REPLY_TO}.{secrets.token_hex(12)}"
        with self._store.write() as store:
            store.insert_queue(queue, False, True, True, None, self._session.connection_id, clock())
        return queue

    def _check_exclusive(self, row: QueueRow, queue: str) -> None:
        if row.exclusive and row.owner_connection != self._session.connection_id:
            raise ResourceLocked(f"cannot obtain exclusive access to locked queue {queue!r} in {self.path}: "
                                 f"it is exclusive to another connection")

    def _exchange_not_found(self, exchange: str) -> ExchangeNotFound:
        return ExchangeNotFound(f"exchange {exchange!r} not found in {self.path}")

    def _lease_seconds(self, row: QueueRow, queue: str, override: Optional[float]) -> float:
        if override is not None:
            return float(override)
        from_queue = _lease_seconds_of(decode_table(row.arguments), queue)
        return from_queue if from_queue is not None else self._session.lease_seconds


class Connection(Channel):
    """An open litemq file. It is also its own first channel; ``channel()`` opens more.

    ``url`` is a path or ``sqlite:///path``; by default ``$LITEMQ_URL``, else ``litemq.db`` in the working
    directory. ``synchronous`` is ``"NORMAL"`` (the default) or ``"FULL"`` (an fsync at every commit).
    Unacked deliveries are leased for ``lease_seconds`` and renewed in the background while this process lives
    (``renew_leases``), up to ``consumer_timeout`` seconds after delivery.
    """

    def __init__(self, url: Optional[str] = None, *, synchronous: str = "NORMAL",
                 lease_seconds: float = DEFAULT_LEASE_SECONDS, consumer_timeout: float = DEFAULT_CONSUMER_TIMEOUT,
                 renew_leases: bool = True, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
                 busy_timeout: float = 60.0) -> None:
        _check_lease_seconds(lease_seconds)
        if isinstance(consumer_timeout, bool) or not isinstance(consumer_timeout, (int, float)) \
                or consumer_timeout <= 0:
            raise ValueError(f"consumer_timeout must be a positive number of seconds, got {consumer_timeout!r}")
        if isinstance(max_message_bytes, bool) or not isinstance(max_message_bytes, int) or max_message_bytes <= 0:
            raise ValueError(f"max_message_bytes must be a positive int, got {max_message_bytes!r}")
        store = SQLiteStore(resolve_path(url), synchronous=synchronous, busy_timeout=busy_timeout)
        try:
            session = Session(store, lease_seconds=float(lease_seconds), max_message_bytes=max_message_bytes,
                              consumer_timeout=float(consumer_timeout), renew_leases=bool(renew_leases))
        except BaseException:
            store.close()
            raise
        super().__init__(session)
        _open_connections.add(self)

    def channel(self) -> Channel:
        """Open another channel on this connection."""
        self._check_open()
        return Channel(self._session)

    @property
    def is_open(self) -> bool:
        return not self._session.closed

    def close(self) -> None:
        """Close every channel (returning unacked deliveries), delete this connection's exclusive queues."""
        session = self._session
        if session.closed:
            return
        try:
            with self._store.write() as store:
                for channel in list(session.channels.values()):
                    channel._close_in(store)
                for queue in store.owned_queues(session.connection_id):
                    session.delete_queue(store, queue)
                store.unregister_connection(session.connection_id)
        finally:
            session.close()
            for channel in list(session.channels.values()):
                channel._closed = True
            session.channels.clear()
            self._store.close()
            _open_connections.discard(self)

    def __enter__(self) -> "Connection":
        return self

    def __del__(self) -> None:
        # A connection dropped without close() returns what it holds when it is collected, as a dropped
        # pika connection's socket makes RabbitMQ requeue.
        session = getattr(self, "_session", None)
        if session is not None and not session.closed and os.getpid() == session.store.pid:
            try:
                self.close()
            except Exception:
                log.exception("litemq: closing a collected connection to %s failed", session.path)


def connect(url: Optional[str] = None, **options: Any) -> Connection:
    """Open a litemq file (see ``Connection``)."""
    return Connection(url, **options)


def _check_arguments(arguments: Optional[Mapping[str, Any]]) -> dict[str, Any]:
    if arguments is None:
        return {}
    if not isinstance(arguments, Mapping):
        raise TypeError(f"arguments must be a dict, not {type(arguments).__name__}")
    Properties(headers=arguments)  # the same value rules as message headers
    return dict(arguments)


def _check_prefetch(prefetch: object) -> None:
    if isinstance(prefetch, bool) or not isinstance(prefetch, int) or not 0 <= prefetch <= 65535:
        raise ValueError(f"prefetch must be an int from 0 (unlimited) to 65535, got {prefetch!r}")


def _check_tag(delivery_tag: object) -> None:
    if isinstance(delivery_tag, bool) or not isinstance(delivery_tag, int):
        raise TypeError(f"delivery_tag must be an int, not {type(delivery_tag).__name__}")


def _raise(error: Exception) -> None:
    raise error


def _check_lease_seconds(value: Optional[float]) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
        raise ValueError(f"lease_seconds must be a positive number, got {value!r}")


def _lease_seconds_of(arguments: Mapping[str, Any], queue: str) -> Optional[float]:
    value = arguments.get(LEASE_ARGUMENT)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"queue {queue!r}: {LEASE_ARGUMENT} must be a positive int of milliseconds, got {value!r}")
    return value / 1000.0


# Connections still open at interpreter exit are closed, so a script that forgets returns its unacked
# deliveries and drops its exclusive queues at once rather than at lease expiry.
_open_connections: "weakref.WeakSet[Connection]" = weakref.WeakSet()


@atexit.register
def _close_open_connections() -> None:
    for connection in list(_open_connections):
        try:
            connection.close()
        except Exception:  # exit must go on; the leases expire anyway
            log.exception("litemq: closing %s at exit failed", connection.path)
