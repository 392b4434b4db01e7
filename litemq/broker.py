"""The semantics of delivery over a store: publish, get, consume, ack/nack/reject, leases, closing a channel.

No SQL here: every statement is a verb of the store, and this module computes each policy value (now, lease
expiry, tokens, target queues) and passes it down. Declaring the model is ``topology``'s part of a channel.
"""

from __future__ import annotations

import itertools
import os

from . import queue_rules, routing
from .errors import (AccessRefused, DeliveryError, LeaseExpired, MessageTooLarge, PreconditionFailed,
                     PublishRejected, QueueNotFound, Unroutable)
from .log import logger
from .message import EMPTY_PROPERTIES, Body, Delivery, Properties, decode_properties, encode_body, encode_properties
from .policy import QueuePolicy, delay_seconds, queue_policy
from .queue_rules import Arrival
from .routing import DELAYED_EXCHANGE
from .session import Held, Scope, Session
from .store.contract import MessageRow, QueueRow, Store
from .timing import check_seconds, clock
from .topology import Topology, _reaping

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Iterable, Optional

    from .consumer import Consumer, ConsumerSet



_CHECKED_NAMES: set[str] = set()
"""Exchange names, routing keys and queue names a publish or a get has checked (``routing.check_name``): not
checked again. Bounded."""
CHECKED_NAMES_KEPT = 4096


def _check_names(*names: tuple[str, object]) -> None:
    """``routing.check_name`` of each (kind, name), then remembered in _CHECKED_NAMES."""
    for kind, name in names:
        routing.check_name(kind, name)
    if len(_CHECKED_NAMES) >= CHECKED_NAMES_KEPT:
        _CHECKED_NAMES.clear()
    _CHECKED_NAMES.update(name for _, name in names)  # type: ignore[misc]  # checked: str


class Channel(Topology):
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

    # --- publishing
    def publish(self, exchange: str, routing_key: str, body: Body,
                properties: Optional[Properties] = None, *, mandatory: bool = False,
                delay: Optional[float] = None) -> int:
        """Route one message and store a copy in each queue it reaches; returns how many queues that is.

        A message that reaches no queue is dropped, as RabbitMQ drops an unroutable message, or with ``mandatory``
        raises Unroutable. ``delay`` (seconds) keeps it out of its queues until then. A queue whose length limit
        refuses it (``x-overflow: reject-publish``) makes the publish raise PublishRejected once the other queues
        have it, as RabbitMQ nacks it."""
        properties = self._outgoing(exchange, routing_key, properties)
        data = self._body(exchange, body)
        if delay is not None:
            check_seconds("delay", delay)
        elif properties.expiration is None:  # to one plain queue perhaps: a transaction of its own (publish_alone)
            if exchange == "":  # (the commonest publish: no call between)
                if self._store.publish_alone(routing_key, exchange, routing_key, data,
                                             self._encoded(exchange, properties), clock()) is not None:
                    return 1
            elif self._published_routed(exchange, routing_key, data, properties):
                return 1
        with self._store.write() as store:
            arrival = self._publish_in(store, exchange, routing_key, [data], properties, delay=delay)
        return self._confirm(arrival, exchange, routing_key, mandatory)

    def _published_routed(self, exchange: str, routing_key: str, data: bytes, properties: Properties) -> bool:
        """Whether the message went to the one queue, a plain one, of a route this connection cached, as a
        transaction of its own (``publish_alone``, while the file's bindings are still the ones it was cached by)."""
        self._store.check_process()  # before the lock, which another thread may have held at fork()
        with self._store.lock:  # the routes are cached under it
            route = self._session.routes.only_queue(self._store, exchange, routing_key)
            if route is None:
                return False
            return self._store.publish_alone(route[0], exchange, routing_key, data, self._encoded(exchange, properties),
                                             clock(), routing_version=route[1]) is not None

    def publish_many(self, exchange: str, routing_key: str, bodies: Iterable[Body],
                     properties: Optional[Properties] = None, *, mandatory: bool = False,
                     delay: Optional[float] = None) -> int:
        """Publish several messages with the same routing key and properties, in order, in one short transaction:
        an error stores none of them. Returns how many queues they reached. Each message meets each queue's rules
        as a single publish would: a length limit with ``x-overflow: reject-publish`` refuses those past it, the
        others stay, and PublishRejected names the queues that refused some."""
        properties = self._outgoing(exchange, routing_key, properties)
        if isinstance(bodies, (str, bytes, bytearray, memoryview)):
            raise TypeError(f"bodies must be an iterable of message bodies (a list), not one "
                            f"{type(bodies).__name__}: use publish() for a single message")
        if not hasattr(bodies, "__iter__"):
            raise TypeError(f"bodies must be an iterable of message bodies (a list), not {type(bodies).__name__}")
        datas = [self._body(exchange, body) for body in bodies]
        check_seconds("delay", delay)
        if not datas:
            return 0
        with self._store.write() as store:
            arrival = self._publish_in(store, exchange, routing_key, datas, properties, delay=delay)
        return self._confirm(arrival, exchange, routing_key, mandatory)

    def _confirm(self, arrival: Arrival, exchange: str, routing_key: str, mandatory: bool) -> int:
        if arrival.rejected:
            raise PublishRejected(
                f"message for exchange {exchange!r} with routing key {routing_key!r} was refused by queue "
                f"{', '.join(map(repr, arrival.rejected))} in {self.path}: its length limit is reached "
                "(x-overflow reject-publish)", rejected=arrival.rejected, stored=arrival.stored)
        if mandatory and not arrival.stored:
            raise Unroutable(f"message for exchange {exchange!r} with routing key {routing_key!r} reached no queue "
                             f"in {self.path} (mandatory)", exchange=exchange, routing_key=routing_key)
        return len(arrival.stored)

    def ack_and_publish(self, delivery_tag: int, exchange: str, routing_key: str, body: Body,
                        properties: Optional[Properties] = None) -> int:
        """Acknowledge a delivery and publish a message in one transaction: both happen or neither.

        An RPC server answers this way, so a request is answered exactly once even if the server dies between
        the two. A delivery whose lease expired raises LeaseExpired, and nothing is published."""
        properties = self._outgoing(exchange, routing_key, properties)
        data = self._body(exchange, body)
        _check_tag(delivery_tag)
        with self._store.write() as store:
            acked = self._settle_in(store, delivery_tag, False, "ack", all_or_nothing=True)
            arrival = self._publish_in(store, exchange, routing_key, [data], properties)
            self._refill(store, acked)
        return self._confirm(arrival, exchange, routing_key, False)

    def _outgoing(self, exchange: str, routing_key: str, properties: Optional[Properties]) -> Properties:
        self._check_open()
        try:
            checked = exchange in _CHECKED_NAMES and routing_key in _CHECKED_NAMES
        except TypeError:  # unhashable: check_name says what it must be
            checked = False
        if not checked:
            _check_names(("exchange name", exchange), ("routing key", routing_key))
        if properties is None:
            return EMPTY_PROPERTIES
        if not isinstance(properties, Properties):
            raise TypeError(f"properties must be litemq.Properties, not {type(properties).__name__}")
        return properties

    def _body(self, exchange: str, body: Body) -> bytes:
        data = encode_body(body)
        if len(data) > self._session.max_message_bytes:
            self._check_size("message", len(data), exchange)
        return data

    def _check_size(self, what: str, size: int, exchange: str) -> None:
        if size > self._session.max_message_bytes:
            raise MessageTooLarge(f"{what} of {size} bytes for exchange {exchange!r} is larger than the "
                                  f"maximum of {self._session.max_message_bytes} bytes (in {self.path})")

    def _encoded(self, exchange: str, properties: Properties) -> Optional[str]:
        encoded = encode_properties(properties)
        if encoded is not None and len(encoded) > self._session.max_message_bytes // 4:
            self._check_size("properties", len(encoded.encode("utf-8")), exchange)
        return encoded

    def _publish_in(self, store: Store, exchange: str, routing_key: str, bodies: list[bytes],
                    properties: Properties, delay: Optional[float] = None) -> Arrival:
        if exchange == "":
            queues = [routing_key]
        else:
            exchange_type, queues = self._route(store, exchange, routing_key, properties.headers)
            if delay is None and exchange_type == DELAYED_EXCHANGE:
                delay = delay_seconds(properties.headers)
        encoded = self._encoded(exchange, properties)
        if exchange == "" and len(bodies) == 1 and not delay and properties.expiration is None:
            store.reserve(len(bodies[0]))  # refused while the disk is under the floor
            consumed = store.publish_plain(routing_key, exchange, routing_key, bodies[0], encoded, clock())
            if consumed is not None:
                return queue_rules.arrived(store, routing_key, consumed)
        else:
            store.reserve(len(queues) * sum(map(len, bodies)))
        return queue_rules.enqueue(self._session, store, queues, exchange, routing_key, bodies, properties,
                                   encoded, clock(), delay or 0.0, published=True)

    # --- getting and consuming
    @_reaping
    def get(self, queue: str, *, auto_ack: bool = False, lease_seconds: Optional[float] = None
            ) -> Optional[Delivery]:
        """Take the next ready message (basic.get), or None when there is none.

        The delivery's ``message_count`` is how many ready messages are left."""
        self._check_open()
        try:
            checked = queue in _CHECKED_NAMES
        except TypeError:  # unhashable: check_name says what it must be
            checked = False
        if not checked:
            _check_names(("queue name", queue))
        if lease_seconds is not None:
            check_seconds("lease_seconds", lease_seconds, positive=True)
        for attempt in range(2):
            with self._store.write() as store:
                now = clock()
                token = 0 if auto_ack else next(self._session.lease_tokens)
                # Read and claimed in one step where the queue has no arguments (which may set the lease) and
                # nothing is due (which settles first): then the claim's lease is the channel's.
                lease = self._session.lease_seconds if lease_seconds is None else float(lease_seconds)
                found, due, rows = store.claim_with_queue(queue, 1, self._owner, token, now + lease, now,
                                                          auto_ack=auto_ack)
                row = self._usable(found, queue)
                policy = queue_policy(None)
                if rows is None:
                    if due is not None and due <= now:
                        # Expired leases first: a message whose TTL ran out meanwhile then expires with the rest.
                        returned = store.return_expired(queue, now)
                        queue_rules.returned(self._session, store, returned, now)
                        if queue_rules.settle_due(self._session, store, now) or returned:
                            again = self._session.live_queue(store, queue)  # what fell due may have changed or gone
                            if again is None:
                                gone = QueueNotFound(f"queue {queue!r} not found in {self.path}")
                                store.after_commit(lambda: _raise(gone))  # after the commit that deleted it
                                return None
                            row = again
                    policy = queue_policy(row.arguments)
                    queue_rules.queue_used(store, queue, policy, now)
                    if auto_ack:
                        rows = store.claim_and_delete(queue, 1)
                    else:
                        lease = self._lease_seconds(row, queue, lease_seconds)
                        rows = store.claim(queue, 1, self._owner, token, now + lease)
                if rows:
                    held = None if auto_ack else self._hold(rows[0], queue, token, None, lease, now, row)
                    return self._deliver(rows[0], queue, held, None, policy, message_count=row.ready_count - 1)
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
                inactivity_timeout: Optional[float] = None, priority: int = 0) -> "Consumer":
        """Start a consumer: iterate it for deliveries, or give it a callback with ``run``.

        ``prefetch`` bounds this consumer's unacked deliveries (0 = unlimited; by default the channel's ``qos``
        setting, itself 0 unless set); iteration ends after
        ``inactivity_timeout`` seconds without a message, or never when it is None. ``priority`` (RabbitMQ's
        ``x-priority``): the queue delivers to its highest-priority consumers that have room, in turn, and to
        lower ones only while every higher one holds its prefetch."""
        from .consumer import Consumer

        self._check_open()
        routing.check_name("queue name", queue)
        if prefetch is None:
            prefetch = self.prefetch_count
        _check_prefetch(prefetch)
        check_seconds("lease_seconds", lease_seconds, positive=True)
        check_seconds("inactivity_timeout", inactivity_timeout, forever=True)
        check_priority(priority)
        tag = consumer_tag or f"ctag-{os.urandom(16).hex()}"
        routing.check_name("consumer tag", tag)
        if tag in self._consumers:
            raise PreconditionFailed(f"consumer tag {tag!r} is already in use on channel {self.number}")
        self._session.settle_due()  # an x-expires queue may be gone
        with self._store.write_exclusive() as store:
            row = self._queue(store, queue)
            if store.has_exclusive_consumer(queue) or (exclusive and store.consumer_count(queue)):
                raise AccessRefused(f"queue {queue!r} in {self.path} has an exclusive consumer, or cannot get one "
                                    f"because it has consumers")
            lease = self._lease_seconds(row, queue, lease_seconds)
            policy = queue_policy(row.arguments)
            store.add_consumer(self._session.connection_id, self.number, tag, queue, prefetch, bool(auto_ack),
                               bool(exclusive), clock(), priority)
            if policy.expires is not None:
                store.set_queue_expiry(queue, None)  # in use: it cannot expire while it has a consumer
            consumer = Consumer(self, queue, tag, prefetch, bool(auto_ack), lease, inactivity_timeout, policy)
            consumer.priority = priority
            consumer.queue_created_at = row.created_at
            self._consumers[tag] = consumer
            return consumer

    def consume_many(self, queues: Iterable[str], *, prefetch: Optional[int] = None, auto_ack: bool = False,
                     exclusive: bool = False, lease_seconds: Optional[float] = None,
                     inactivity_timeout: Optional[float] = None) -> "ConsumerSet":
        """Consume several queues in one thread: one consumer per queue (each with this ``prefetch``), iterated
        together, taking turns so no queue starves another; ``inactivity_timeout`` is for all of them together."""
        from .consumer import ConsumerSet

        if isinstance(queues, str):
            raise TypeError(f"queues must be a list of queue names, not one str ({queues!r}): use consume()")
        names = list(queues)
        if not names:
            raise ValueError("consume_many needs at least one queue")
        check_seconds("inactivity_timeout", inactivity_timeout, forever=True)
        consumers: list[Consumer] = []
        try:
            for name in names:
                consumers.append(self.consume(name, prefetch=prefetch, auto_ack=auto_ack, exclusive=exclusive,
                                              lease_seconds=lease_seconds))
        except BaseException:
            for consumer in consumers:
                consumer.cancel()
            raise
        return ConsumerSet(consumers, inactivity_timeout)

    def _claim(self, consumer: "Consumer", limit: int) -> list[tuple[MessageRow, Optional[Held]]]:
        """Claim up to ``limit`` messages for a consumer; raises QueueNotFound when its queue is gone."""
        if limit == 1:
            claimed = self._claim_alone(consumer)
            if claimed is not None:
                return claimed
        with self._store.write() as store:
            claimed = self._claim_in(store, consumer, limit)
            if not claimed and store.queue(consumer.queue) is None:
                self._forget_consumer(consumer)
                gone = QueueNotFound(f"queue {consumer.queue!r} in {self.path} was deleted; consumer "
                                     f"{consumer.consumer_tag!r} is cancelled")
                store.after_commit(lambda: _raise(gone))  # after the commit, which may be what deleted it
            return claimed

    def _claim_alone(self, consumer: "Consumer") -> Optional[list[tuple[MessageRow, Optional[Held]]]]:
        """One message claimed as a transaction of its own, where the engine can (``claim_alone``) and nothing else
        is to be done in the claim's transaction: a priority-0 consumer that acks, of a queue without a single
        active consumer, that told no one it is full, when no lease in its queue can have expired (its waiter
        looked). None when the general path must claim."""
        now = clock()
        if not _claims_plainly(consumer) or consumer.reported_full or now >= consumer.expiry_horizon:
            return None
        token = next(self._session.lease_tokens)
        rows = self._store.claim_alone(consumer.queue, self._owner, token, now + consumer.lease_seconds, now)
        if rows is None:
            return None
        if rows:
            consumer.expiry_horizon = 0.0  # as after any claim that leased: the next one looks for expired leases
        return [(row, self._hold(row, consumer.queue, token, consumer, consumer.lease_seconds, now)) for row in rows]

    def _claim_in(self, store: Store, consumer: "Consumer", limit: int
                  ) -> list[tuple[MessageRow, Optional[Held]]]:
        now = clock()
        if store.statements_are_round_trips and _claims_plainly(consumer):
            # A priority-0 consumer that acks: first a claim that leases only when nothing is due, where the engine
            # makes it one statement with its look at what is due (none when it is not).
            token = next(self._session.lease_tokens)
            rows = store.claim_unless_due(consumer.queue, limit, self._owner, token, now + consumer.lease_seconds,
                                          now)
            if rows is not None:
                consumer.expiry_horizon = 0.0
                return self._claimed(store, consumer, rows, token, limit, now, False)
        if now >= consumer.expiry_horizon:
            queue_rules.returned(self._session, store, store.return_expired(consumer.queue, now), now)
        consumer.expiry_horizon = 0.0  # until its waiter looks at the leases again, every claim looks for expired ones
        queue_rules.settle_due(self._session, store, now)
        if consumer.policy.single_active_consumer and not self._is_active(store, consumer):
            return []
        # A queue delivers to its highest-priority consumers with room. A priority-0 consumer's claim ranks itself;
        # one of another priority asks first.
        default = not consumer.priority
        outranked, lower = (False, False) if default else store.consumer_ranking(consumer.queue, consumer.priority)
        if outranked:
            return []
        if consumer.auto_ack:
            return self._claimed(store, consumer, store.claim_and_delete(consumer.queue, limit,
                                                                         default_consumer=default), 0, limit, now,
                                 lower)
        token = next(self._session.lease_tokens)
        rows = store.claim(consumer.queue, limit, self._owner, token, now + consumer.lease_seconds,
                           default_consumer=default)
        return self._claimed(store, consumer, rows, token, limit, now, lower)

    def _claimed(self, store: Store, consumer: "Consumer", rows: list[MessageRow], token: int, limit: int,
                 now: float, lower: bool) -> list[tuple[MessageRow, Optional[Held]]]:
        """A consumer's claim of ``rows`` (leased with ``token``, or taken for good with auto-ack); ``lower``:
        the queue has consumers of lower priority than this one's."""
        claimed = [(row, None if consumer.auto_ack else self._hold(row, consumer.queue, token, consumer,
                                                                   consumer.lease_seconds, now)) for row in rows]
        if lower or (rows and rows[0].consumers_below) or consumer.reported_full:
            # Consumers of lower priority claim while this one is full: tell them when it is, and when it is not.
            consumer.report_room(store, full=consumer.full_after(len(claimed), limit))
        return claimed

    def _hold(self, row: MessageRow, queue: str, token: int, consumer: Optional["Consumer"],
              lease_seconds: float, now: float, queue_row: Optional[QueueRow] = None) -> Held:
        self._session.lease_taken(lease_seconds)
        created_at = queue_row.created_at if queue_row is not None else consumer and consumer.queue_created_at
        return Held(row.id, token, queue, consumer, lease_seconds, now, created_at)

    def _is_active(self, store: Store, consumer: "Consumer") -> bool:
        """With a single active consumer, whether it is this one: the queue's longest-standing consumer."""
        return store.first_consumer(consumer.queue) == (self._session.connection_id, self.number,
                                                        consumer.consumer_tag)

    def _deliver(self, row: MessageRow, queue: str, held: Optional[Held], consumer: Optional["Consumer"],
                 policy: QueuePolicy, message_count: Optional[int] = None) -> Delivery:
        tag = next(self._tags)
        if held is not None:
            self._unacked[tag] = held
            if consumer is not None:
                consumer.unacked += 1
        properties = decode_properties(row.properties)
        if row.delivery_count > 1 and (policy.delivery_limit is not None or policy.queue_type == "quorum"):
            # As RabbitMQ's quorum queues show it: absent on the first delivery, then the returns before this one.
            properties = properties.replace(headers={**(properties.headers or {}),
                                                     "x-delivery-count": row.delivery_count - 1})
        # (body, properties, exchange, routing_key, queue, delivery_tag, redelivered, delivery_count, consumer_tag,
        # message_count, _channel): positional, one per delivery
        return Delivery(row.body, properties, row.exchange, row.routing_key, queue, tag, row.delivery_count > 1,
                        row.delivery_count, consumer.consumer_tag if consumer else None, message_count,
                        None if held is None else self)

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
        with self._store.write_exclusive() as store:
            self._cancel_in(store, consumer)

    def _cancel_in(self, store: Store, consumer: "Consumer") -> None:
        unseen = [(held.message_id, held.token) for held in consumer.take_unseen()]
        if unseen:
            queue_rules.returned(self._session, store, store.requeue(unseen, undo_delivery=True), clock())
        if self._forget_consumer(consumer):
            self._session.consumer_removed(store, consumer.queue)

    def _take_back(self, delivery_tag: int) -> None:
        """A delivery made for a consumer but never handed to the application (an asyncio consumer cancelled
        while its next delivery was on the way) goes back to its place unmarked, as claimed messages do."""
        held = self._unacked.pop(delivery_tag, None)
        if held is None:
            return
        if held.consumer is not None:
            held.consumer.unacked -= 1  # type: ignore[attr-defined]
        with self._store.write() as store:
            returned = store.requeue([(held.message_id, held.token)], undo_delivery=True)
            queue_rules.returned(self._session, store, returned, clock())

    def _forget_consumer(self, consumer: "Consumer") -> bool:
        self._consumers.pop(consumer.consumer_tag, None)
        consumer.stop()
        return self._store.remove_consumer(self._session.connection_id, self.number, consumer.consumer_tag)

    # --- settling
    def ack(self, delivery_tag: int, multiple: bool = False, *, deferred: bool = False) -> None:
        """Acknowledge a delivery (and every earlier one on this channel with ``multiple``): committed when this
        returns, or with ``deferred`` (as RabbitMQ's acks are: sent without waiting) by the connection's next
        write, within a few milliseconds, or at close; a process killed before that gets it back redelivered."""
        if deferred:
            self._defer_ack(delivery_tag, multiple)
        else:
            self._settle(delivery_tag, multiple, "ack")

    def _defer_ack(self, delivery_tag: int, multiple: bool) -> None:
        self._check_open()
        _check_tag(delivery_tag)
        with self._store.lock:
            unacked = self._unacked
            if multiple:
                acks: list[tuple[Scope, int, Held]] = [(self, tag, unacked.pop(tag))
                                                       for tag in self._settled_by(delivery_tag, multiple)]
            else:  # the common case, without the list of tags
                held = unacked.pop(delivery_tag, None)
                if held is None:
                    raise self._unknown_tag(delivery_tag)
                acks = [(self, delivery_tag, held)]
            for _, _, held in acks:
                if held.consumer is not None:
                    held.consumer.unacked -= 1  # type: ignore[attr-defined]  # its room is free for its next claim
            if acks:
                self._session.defer_acks(acks)

    def _acks_settled(self, store: Store, acks: list[tuple[Scope, int, Held]]) -> None:
        """Deferred acks of this channel, settled at the start of a write transaction: one whose lease expired
        meanwhile is logged (its ack returned long ago), and their consumers have room again."""
        done = store.ack([(held.message_id, held.token) for _, _, held in acks])
        if done < len(acks):
            self._acks_late(store, acks, done)
        consumers = {held.consumer for _, _, held in acks if held.consumer is not None} if len(acks) > 1 else (
            () if acks[0][2].consumer is None else (acks[0][2].consumer,))  # one ack: no set
        for consumer in consumers:
            if consumer.reported_full:  # type: ignore[attr-defined]
                consumer.report_room(store, full=False)  # type: ignore[attr-defined]
            if consumer.waiting:  # type: ignore[attr-defined]  # in another thread: it claims the room itself
                store.after_commit(consumer.doorbell.ring)  # type: ignore[attr-defined]

    def _acks_late(self, store: Store, acks: list[tuple[Scope, int, Held]], done: int) -> None:
        gone = sum(1 for _, _, held in acks if held.queue_deleted or _queue_gone_since(store, held))
        count = len(acks) - done - gone
        if count <= 0:
            return  # their queue was deleted: settled quietly, as RabbitMQ settles them
        now = clock()
        late = [(tag, held) for _, tag, held in acks if held.expires_at <= now] or [(t, h) for _, t, h in acks]
        queues = ", ".join(sorted({repr(held.queue) for _, held in late}))
        tags = ", ".join(str(tag) for tag, _ in late)
        store.after_commit(lambda: logger().warning(
            "litemq: %d deferred ack(s) of delivery tag %s on channel %d from queue %s in %s came after the lease "
            "expired: the message went back to the queue, to be delivered again", count, tags, self.number,
            queues, self.path))

    def nack(self, delivery_tag: int, multiple: bool = False, requeue: bool = True) -> None:
        """Return deliveries to their original place in the queue, or drop them with ``requeue=False``."""
        self._settle(delivery_tag, multiple, "requeue" if requeue else "drop")

    def reject(self, delivery_tag: int, requeue: bool = True) -> None:
        """Reject one delivery: back to its place, or dropped with ``requeue=False``."""
        self._settle(delivery_tag, False, "requeue" if requeue else "drop")

    def _settle(self, delivery_tag: int, multiple: bool, how: str) -> None:
        self._check_open()
        _check_tag(delivery_tag)
        if how == "ack" and not multiple:
            held = self._unacked.get(delivery_tag)
            # A get's delivery (no consumer's room to refill) acked as a transaction of its own, where the engine
            # can, and forgotten under the same lock as after a write() block's commit; one it did not delete takes
            # the general path, which says why.
            if held is not None and held.consumer is None:
                self._store.check_process()  # before the lock, which another thread may have held at fork()
                with self._store.lock:
                    if self._store.ack_alone((held.message_id, held.token)):
                        self._unacked.pop(delivery_tag, None)  # ``_forget``, for a get's delivery (no consumer)
                        return
        with self._store.write() as store:
            if how == "ack" and not multiple and self._ack_refilling(store, delivery_tag):
                return
            leases = self._settle_in(store, delivery_tag, multiple, how, last=True)
            self._refill(store, leases, claim=how == "ack")

    def _ack_refilling(self, store: Store, delivery_tag: int) -> bool:
        """A consumer's ack of one delivery and the claim that refills its room, in one statement where the engine
        can (``ack_and_claim_unless_due``) and nothing else is to be done for them; False, having done nothing,
        when the general path must settle."""
        held = self._unacked.get(delivery_tag)
        consumer = held.consumer if held is not None else None
        if (not store.statements_are_round_trips or held is None or consumer is None or not _claims_plainly(consumer)
                or consumer.reported_full):
            return False
        room = consumer.refill_room(1, 1)
        if room <= 0:
            return False
        now = clock()
        token = next(self._session.lease_tokens)
        done = store.ack_and_claim_unless_due((held.message_id, held.token), consumer.queue, room, self._owner, token,
                                              now + consumer.lease_seconds, now)
        if done is None:
            return False
        acked, rows = done
        store.after_commit(lambda: self._forget([delivery_tag]))  # as _settle_in's
        self._settled(store, [held], acked, delivery_tag, False)
        if rows is None:  # something was due: the general path settles it, then claims
            consumer.refill(store, 1, 1)
        else:
            consumer.expiry_horizon = 0.0
            consumer.refilled(store, self._claimed(store, consumer, rows, token, room, now, False))
        return True

    def _ack_each(self, delivery_tags: list[int]) -> None:
        """Ack each delivery as ``ack`` would, in one transaction (the asyncio channel's acks, pipelined): those
        whose lease expired raise LeaseExpired after the commit, and a tag no longer known raises DeliveryError
        after the others are acked."""
        self._check_open()
        with self._store.write() as store:
            known = [tag for tag in delivery_tags if tag in self._unacked]
            leases: list[Held] = []
            for tag in known:
                leases.extend(self._settle_in(store, tag, False, "ack"))
            self._refill(store, leases)
        if len(known) < len(delivery_tags):
            raise self._unknown_tag(next(tag for tag in delivery_tags if tag not in known))

    def _unknown_tag(self, delivery_tag: int) -> DeliveryError:
        return DeliveryError(f"unknown delivery tag {delivery_tag} on channel {self.number} of {self.path}: "
                             f"already settled, or not delivered on this channel")

    def _settle_in(self, store: Store, delivery_tag: int, multiple: bool, how: str, *,
                   all_or_nothing: bool = False, last: bool = False) -> list[Held]:
        """Settle deliveries as ``how`` says; the leases settled. ``last``: nothing else writes in the transaction
        but refills of consumers' room."""
        tags = self._settled_by(delivery_tag, multiple)
        if not tags:
            return []
        leases = [self._unacked[t] for t in tags]
        # Forgotten once settled for good: a transaction that rolls back (ack_and_publish whose publish fails)
        # leaves them held, still to be acked and renewed.
        store.after_commit(lambda: self._forget(tags))
        pairs = [(lease.message_id, lease.token) for lease in leases]
        if how == "requeue":
            returned = store.requeue(pairs)
            queue_rules.returned(self._session, store, returned, clock())
            done = len(returned)
        elif how == "drop":
            dropped = store.drop(pairs)
            queue_rules.dead_letter_taken(self._session, store, dropped, "rejected", clock())
            done = len(dropped)
        elif last and all(lease.consumer is None for lease in leases):  # nothing to refill: the last write
            done = store.ack_last(pairs)
        else:
            done = store.ack(pairs)
        self._settled(store, leases, done, delivery_tag, all_or_nothing)
        return leases

    def _settled(self, store: Store, leases: list[Held], done: int, delivery_tag: int, all_or_nothing: bool) -> None:
        """After ``done`` of ``leases`` (up to ``delivery_tag``) were settled: the rest raise LeaseExpired unless
        their queue was deleted (at once with ``all_or_nothing``, otherwise after the commit)."""
        if done < len(leases):
            # A message that went with its deleted queue is settled as RabbitMQ settles it: quietly, even when a
            # queue of the same name was declared since (this connection marks its leases when it deletes a queue;
            # a queue another connection declared again has another declaration time).
            gone = sum(1 for lease in leases if lease.queue_deleted or _queue_gone_since(store, lease))
            done += gone
        if done < len(leases):
            queues = sorted({lease.queue for lease in leases})
            error = LeaseExpired(
                f"{len(leases) - done} of {len(leases)} deliveries (up to tag {delivery_tag}) from queue "
                f"{', '.join(map(repr, queues))} in {self.path} were not settled: their lease expired and the "
                f"message went back to the queue, to be delivered again")
            if all_or_nothing:
                raise error  # inside the transaction: everything in it rolls back
            store.after_commit(lambda: _raise(error))

    def _settled_by(self, delivery_tag: int, multiple: bool) -> list[int]:
        """The unacked tags an ack (nack, reject) of ``delivery_tag`` settles; DeliveryError when it names none."""
        if multiple and delivery_tag == 0:  # everything outstanding, if anything is (RabbitMQ's rule)
            return list(self._unacked)
        if delivery_tag not in self._unacked:
            raise self._unknown_tag(delivery_tag)  # with ``multiple`` too: RabbitMQ settles nothing up to it
        return [t for t in self._unacked if t <= delivery_tag] if multiple else [delivery_tag]

    def _refill(self, store: Store, settled: list[Held], claim: bool = True) -> None:
        # The room an ack frees is filled in the same transaction, as RabbitMQ sends a consumer its next message on
        # the ack: a consumer with prefetch 1 (an RPC server too) then writes once per message, not twice.
        held = [lease.consumer for lease in settled if lease.consumer is not None]
        for consumer in set(held):
            if consumer.reported_full:
                consumer.report_room(store, full=False)
            if claim:
                consumer.refill(store, held.count(consumer), len(held))

    def _forget(self, tags: list[int]) -> None:
        for tag in tags:
            lease = self._unacked.pop(tag, None)
            if lease is not None and lease.consumer is not None:
                lease.consumer.unacked -= 1  # type: ignore[attr-defined]

    # --- closing
    def close(self) -> None:
        """Cancel this channel's consumers and return its unacked deliveries to their queues."""
        if self._closed:
            return
        if not self._session.closed:
            with self._store.write_exclusive() as store:
                self._close_in(store)
        self._closed = True
        self._session.channels.pop(self.number, None)

    def _close_in(self, store: Store) -> None:
        for consumer in list(self._consumers.values()):
            self._cancel_in(store, consumer)
        self._unacked.clear()
        queue_rules.returned(self._session, store, store.release_owner(self._owner), clock())

    def __enter__(self) -> "Channel":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- helpers
    def _lease_seconds(self, row: QueueRow, queue: str, override: Optional[float]) -> float:
        if override is not None:
            return float(override)
        from_queue = queue_policy(row.arguments).lease_seconds
        return from_queue if from_queue is not None else self._session.lease_seconds


def _claims_plainly(consumer: "Consumer") -> bool:
    """Whether the consumer's claim may lease what is ready with no other look first (``claim_alone``,
    ``claim_unless_due``): a priority-0 consumer that acks, of a queue without a single active consumer."""
    return not (consumer.priority or consumer.auto_ack or consumer.policy.single_active_consumer)


def _check_prefetch(prefetch: object) -> None:
    if isinstance(prefetch, bool) or not isinstance(prefetch, int) or not 0 <= prefetch <= 65535:
        raise ValueError(f"prefetch must be an int from 0 (unlimited) to 65535, got {prefetch!r}")


def check_priority(priority: object) -> None:
    """A consumer priority: an int (negative allowed) that fits SQLite's 64-bit integers."""
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise TypeError(f"consumer priority must be an int, not {type(priority).__name__}")
    if not -(1 << 63) <= priority < (1 << 63):
        raise ValueError(f"consumer priority must fit in 64 bits (signed), got {priority!r}")


def _check_tag(delivery_tag: object) -> None:
    if isinstance(delivery_tag, bool) or not isinstance(delivery_tag, int):
        raise TypeError(f"delivery_tag must be an int, not {type(delivery_tag).__name__}")


def _queue_gone_since(store: Store, lease: Held) -> bool:
    created_at = store.queue_created_at(lease.queue)
    return created_at is None or lease.queue_created_at not in (None, created_at)


def _raise(error: Exception) -> None:
    raise error
