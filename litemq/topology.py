"""The model a channel declares: exchanges, queues and bindings, with RabbitMQ's rules for reserved names,
redeclares, exclusive and auto-delete queues, and the routing of a message to queues. No SQL here."""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping

from . import queue_rules, routing
from .errors import (AccessRefused, ChannelClosed, ExchangeNotFound, PreconditionFailed, QueueNotFound,
                     ResourceLocked, StorageError)
from .message import Properties, decode_table, encode_table
from .policy import (EXCHANGE_EQUIVALENCE, QUEUE_EQUIVALENCE, inequivalent_argument, parse_exchange_arguments,
                     parse_queue_arguments, queue_policy)
from .session import OwnerDied, Session
from .store.contract import QueueRow, Store
from .timing import clock

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Iterable, NamedTuple, Optional, TypeVar
else:
    from .runtime_types import NamedTuple

DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"


class QueueInfo(NamedTuple):
    """What ``declare_queue`` reports: the name (server-chosen for ``""``) and its counts."""

    queue: str
    message_count: int
    consumer_count: int


if TYPE_CHECKING:
    Method = TypeVar("Method", bound=Callable[..., Any])


def _reaping(method: Method) -> Method:
    """An operation that meets an exclusive queue whose owner died cleans up after it (in a transaction of its own,
    which nothing the operation raises can roll back) and starts over."""
    @functools.wraps(method)
    def run(self: "Topology", *args: Any, **kwargs: Any) -> Any:
        reaped: Optional[set[str]] = None  # made once one is: this runs on every get
        while True:
            try:
                return method(self, *args, **kwargs)
            except OwnerDied as dead:
                if reaped is None:
                    reaped = set()
                elif dead.connection_id in reaped:  # cleaned up, yet still there: never loop on it
                    raise StorageError(f"{self._session.path}: could not clean up after dead connection "
                                       f"{dead.connection_id}") from None
                reaped.add(dead.connection_id)
                self._session.reap_now(dead.connection_id)
    return run  # type: ignore[return-value]


class Topology:
    """Declaring, deleting and binding exchanges and queues; the base of ``Channel``."""

    _session: Session
    _store: Store
    _closed: bool
    number: int

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

    def declare_exchange(self, exchange: str, exchange_type: str = "direct", *, passive: bool = False,
                         durable: bool = False, auto_delete: bool = False, internal: bool = False,
                         arguments: Optional[Mapping[str, Any]] = None) -> None:
        """Create the exchange, or check that it exists with these properties (``passive`` only checks)."""
        self._check_open()
        routing.check_name("exchange name", exchange)
        if exchange == "":  # RabbitMQ refuses even a passive declare of it, whatever the type
            raise AccessRefused(f"the default exchange cannot be declared, not even passively (in {self.path})")
        if passive:
            with self._store.read() as store:
                if store.exchange(exchange) is None:
                    raise self._exchange_not_found(exchange)
            return
        routing.check_exchange_type(exchange_type)
        checked = _check_arguments(arguments)
        parse_exchange_arguments(checked, exchange, exchange_type, f" in {self.path}")
        args = encode_table(checked)
        wanted = (exchange_type, bool(durable), bool(auto_delete), bool(internal), args)
        with self._store.write_exclusive() as store:
            row = store.exchange(exchange)
            if row is None:
                if exchange.startswith("amq."):
                    raise AccessRefused(f"exchange name {exchange!r} is reserved: names starting 'amq.' "
                                        f"belong to the broker (in {self.path})")
                store.insert_exchange(exchange, exchange_type, *wanted[1:], clock())
                return
            difference = _inequivalent(zip(("type", "durable", "auto_delete", "internal"), wanted, row),
                                       checked, row.arguments, EXCHANGE_EQUIVALENCE)
            if difference is not None:
                raise PreconditionFailed(f"inequivalent arg {difference[0]!r} for exchange {exchange!r} in "
                                         f"{self.path}: {difference[1]}")

    def delete_exchange(self, exchange: str, *, if_unused: bool = False) -> None:
        """Delete the exchange and its bindings; with ``if_unused``, only when nothing is bound to it."""
        self._check_open()
        routing.check_name("exchange name", exchange)
        if exchange == "" or exchange.startswith("amq."):
            raise AccessRefused(f"exchange {exchange!r} belongs to the broker and cannot be deleted "
                                f"(in {self.path})")
        with self._store.write_exclusive() as store:
            if store.exchange(exchange) is None:
                return
            if if_unused and store.has_bindings(exchange):
                raise PreconditionFailed(f"exchange {exchange!r} in {self.path} is in use (it has bindings)")
            self._session.auto_delete_exchanges(store, store.delete_exchange(exchange))

    @_reaping
    def declare_queue(self, queue: str = "", *, passive: bool = False, durable: bool = False,
                      exclusive: bool = False, auto_delete: bool = False,
                      arguments: Optional[Mapping[str, Any]] = None) -> QueueInfo:
        """Create the queue (a server-named one for ``""``), or check it; returns its name and counts."""
        self._check_open()
        routing.check_name("queue name", queue)
        if passive:
            self._session.sweep()  # so the counts leave out consumers of connections that died
            self._session.settle_due()
            with self._store.write_exclusive() as store:
                # A responder may check that a direct reply-to requester is still there (RabbitMQ allows it).
                row = self._queue(store, queue, check_exclusive=not queue.startswith(DIRECT_REPLY_TO + "."))
                queue_rules.queue_used(store, queue, queue_policy(row.arguments), clock())
                return QueueInfo(queue, row.ready_count, store.consumer_count(queue))
        server_named = queue == ""
        if server_named:
            import base64  # here: base64 imports re, which a process that names its queues never needs

            queue = "amq.gen-" + base64.urlsafe_b64encode(os.urandom(16)).decode("ascii").rstrip("=")
        elif queue.startswith("amq."):
            # RabbitMQ refuses this even for an existing queue, a server-named one included: only passive declares
            # may name them.
            raise AccessRefused(f"queue name {queue!r} is reserved: names starting 'amq.' belong to the broker "
                                f"(in {self.path})")
        args = _check_arguments(arguments)
        policy = parse_queue_arguments(args, queue, f" in {self.path}", durable=bool(durable),
                                       exclusive=bool(exclusive), auto_delete=bool(auto_delete),
                                       server_named=server_named)
        encoded = encode_table(args)
        durable = bool(durable) and not exclusive  # as RabbitMQ stores it: an exclusive queue is never durable
        self._session.sweep()  # after the arguments are checked: bad input is refused before any SQL
        self._session.settle_due()
        with self._store.write_exclusive() as store:
            now = clock()
            row = self._session.live_queue(store, queue)
            if row is None:
                owner = self._session.connection_id if exclusive else None
                store.insert_queue(queue, durable, bool(exclusive), bool(auto_delete), encoded, owner, now)
                queue_rules.queue_used(store, queue, policy, now)
                return QueueInfo(queue, 0, 0)
            self._check_exclusive(row, queue)
            returned = store.return_expired(queue, now)
            queue_rules.returned(self._session, store, returned, now)
            if returned:
                queue_rules.settle_due(self._session, store, now)  # what came back past its TTL expires now
            ready = store.ready_count(queue) or 0
            if bool(exclusive) != row.exclusive:
                raise ResourceLocked(f"cannot obtain exclusive access to locked queue {queue!r} in {self.path}: "
                                     f"the exclusive property does not match the original declaration")
            difference = _inequivalent((("durable", durable, row.durable and not row.exclusive),
                                        ("auto_delete", bool(auto_delete), row.auto_delete)),
                                       args, row.arguments, QUEUE_EQUIVALENCE)
            if difference is not None:
                raise PreconditionFailed(f"inequivalent arg {difference[0]!r} for queue {queue!r} in {self.path}: "
                                         f"{difference[1]}")
            queue_rules.queue_used(store, queue, policy, now)
            return QueueInfo(queue, ready, store.consumer_count(queue))

    @_reaping
    def delete_queue(self, queue: str, *, if_unused: bool = False, if_empty: bool = False) -> int:
        """Delete the queue with its messages and bindings; returns how many messages it held."""
        self._check_open()
        routing.check_name("queue name", queue)
        self._session.settle_due()
        with self._store.write_exclusive() as store:
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
        self._session.settle_due()
        with self._store.write_exclusive() as store:
            self._queue(store, queue)
            return store.purge_queue(queue)

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
        self._session.settle_due()
        with self._store.write_exclusive() as store:
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

    def route(self, exchange: str, routing_key: str, headers: Optional[Mapping[str, Any]] = None) -> list[str]:
        """The queues a message would reach, without publishing it (a dry run)."""
        self._check_open()
        routing.check_name("exchange name", exchange)
        routing.check_name("routing key", routing_key)
        if headers is not None:
            Properties(headers=headers)
        with self._store.read() as store:
            if exchange == "":
                return list(self._session.routes.route(store, exchange, routing_key, None)[1])
            return list(self._route(store, exchange, routing_key, headers)[1])

    def _route(self, store: Store, exchange: str, routing_key: str,
               headers: Optional[Mapping[str, Any]]) -> tuple[str, list[str]]:
        """The exchange's type and the queues a message published to it reaches."""
        found, queues = self._session.routes.route(store, exchange, routing_key, headers)
        if found is None:
            raise self._exchange_not_found(exchange)
        if found.internal:
            raise AccessRefused(f"cannot publish to internal exchange {exchange!r} in {self.path}")
        return found.type, queues

    def _queue(self, store: Store, queue: str, check_exclusive: bool = True) -> QueueRow:
        return self._usable(store.queue(queue), queue, check_exclusive)

    def _usable(self, row: Optional[QueueRow], queue: str, check_exclusive: bool = True) -> QueueRow:
        """The queue's row as read, unless it is missing, exclusive to a dead connection or to another one."""
        row = self._session.owner_alive(row)
        if row is None:
            raise QueueNotFound(f"queue {queue!r} not found in {self.path}")
        if check_exclusive:
            self._check_exclusive(row, queue)
        return row

    def _declare_reply_queue(self) -> str:
        """A private queue for RabbitMQ's direct reply-to, under the name a responder publishes to."""
        queue = f"{DIRECT_REPLY_TO}.{os.urandom(12).hex()}"
        with self._store.write_exclusive() as store:
            store.insert_queue(queue, False, True, True, None, self._session.connection_id, clock())
        return queue

    def _check_exclusive(self, row: QueueRow, queue: str) -> None:
        if row.exclusive and row.owner_connection != self._session.connection_id:
            raise ResourceLocked(f"cannot obtain exclusive access to locked queue {queue!r} in {self.path}: "
                                 f"it is exclusive to another connection")

    def _exchange_not_found(self, exchange: str) -> ExchangeNotFound:
        return ExchangeNotFound(f"exchange {exchange!r} not found in {self.path}")


def _inequivalent(fields: Iterable[tuple[str, Any, Any]], arguments: Mapping[str, Any], stored: Optional[str],
                  keys: tuple[str, ...]) -> Optional[tuple[str, str]]:
    """What a redeclaration changes, as RabbitMQ reports it (its properties first, then its arguments)."""
    for field, received, current in fields:
        if received != current:
            return field, f"received {received!r} but current is {current!r}"
    return inequivalent_argument(arguments, decode_table(stored), keys)


def _check_arguments(arguments: Optional[Mapping[str, Any]]) -> dict[str, Any]:
    if arguments is None:
        return {}
    if not isinstance(arguments, Mapping):
        raise TypeError(f"arguments must be a dict, not {type(arguments).__name__}")
    Properties(headers=arguments)  # the same value rules as message headers
    return dict(arguments)
