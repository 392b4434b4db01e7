"""What a queue's arguments do to the messages in it: priority, TTL, length limits and overflow on the way in;
dead-lettering on the way out (rejected, expired, over the length limit, over the delivery limit); delayed
messages joining their queue when due; unused queues expiring. No SQL here: every statement is a store verb."""

from __future__ import annotations


from .dead_letters import dead_lettered, is_cycle
from .message import Properties, decode_properties, encode_properties
from .policy import QueuePolicy, expiration_seconds, queue_policy
from .routes import Routes
from .store.contract import Counts, ReturnedMessage, Store, StoredMessage

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Iterable, Optional, Protocol, Sequence
else:
    from .runtime_types import Protocol

IMMEDIATE_HANDOFF = 1.0
"""How long a message with TTL 0 waits for a consumer of its queue to claim it (RabbitMQ delivers such a message
to a consumer that is ready at once, and drops it otherwise)."""
DUE_BATCH = 1000
"""Most delayed or expired messages one pass moves (a claim runs passes until nothing is left due)."""


class Session(Protocol):
    """What the rules need of the connection they run for (``session.Session``)."""

    routes: Routes

    def delete_queue(self, store: Store, queue: str) -> None:
        ...


class Arrival:
    """Where one published message went: the queues that stored it, and those whose length limit refused it."""

    __slots__ = ("stored", "rejected")

    def __init__(self) -> None:
        self.stored: list[str] = []
        self.rejected: list[str] = []


def arrived(store: Store, queue: str, consumed: bool) -> Arrival:
    """A message stored in a plain queue in a single step (``publish_plain``): wake its consumers."""
    arrival = Arrival()
    arrival.stored.append(queue)
    if consumed:
        store.wake([queue])
    return arrival


def enqueue(session: Session, store: Store, queues: Iterable[str], exchange: str, routing_key: str,
            bodies: Sequence[bytes], properties: Properties, encoded: Optional[str], now: float, delay: float = 0.0,
            published: bool = False) -> Arrival:
    """Store a copy of each message (the same but for their bodies, in this order) in each queue that exists, as
    each queue's arguments say; wake their consumers.

    A ``published`` message first lets what fell due go ahead of it: delayed messages join their queues before it,
    and queues past their ``x-expires`` go, so it cannot reach them."""
    arrival = Arrival()
    consumed: list[str] = []  # the queues with consumers to wake
    queues = list(queues)
    if delay > 0:
        for queue in queues:
            if store.queue(queue) is not None:
                store.insert_delayed(queue, exchange, routing_key, bodies, encoded, now, now + delay)
                arrival.stored.append(queue)
                consumed.append(queue)  # a waiting consumer then reads the new deadline and sets its timer by it
        if consumed:
            store.wake(consumed)
        return arrival
    count, size = len(bodies), sum(map(len, bodies))
    counts = _counts_with(session, store, queues, size, count, now, published)
    # Queues without rules for arriving messages take the messages as they are, all in one statement.
    copies = [queue for queue in queues if queue in counts and properties.expiration is None
              and queue_policy(counts[queue][2]).plain]
    if copies:
        if count == 1:
            store.insert_copies(copies, exchange, routing_key, bodies[0], encoded, now)
        else:
            for queue in copies:
                store.insert_messages(queue, exchange, routing_key, bodies, encoded, now)
        arrival.stored.extend(copies)
        consumed.extend(queue for queue in copies if counts[queue][3])
    copied = set(copies)
    # A queue with a length limit counts, then stores: no other publish to it may come in between (where writers
    # run side by side). Locked in one order, so that two publishes to the same queues cannot wait for each other.
    limited: list[str] = []
    if len(copied) < len(counts):
        limited = sorted(queue for queue, counted in counts.items()
                         if queue not in copied and queue_policy(counted[2]).limited)
        for queue in limited:
            store.lock_queue(queue)
    counted_early = len(queues) > 1  # with the others: the rest read their counts again at their turn
    for queue in queues:
        counted = counts.get(queue)
        if counted is None or queue in copied:
            continue
        if counted_early or queue in limited:
            counted = store.counts_with(queue, size, count)
        if counted is None:
            continue
        if counted[3]:
            consumed.append(queue)
        policy = queue_policy(counted[2])
        for body in bodies:  # each message meets the queue's limits as it arrives, after those before it
            each = counted if count == 1 else store.counts_with(queue, len(body))
            if each is not None:  # always: the queue was counted in above, in this transaction
                _arrive(session, store, arrival, queue, policy, each, exchange, routing_key, body, properties,
                        encoded, now)
    if consumed:
        store.wake([queue for queue in consumed if queue in arrival.stored])
    return arrival


def _counts_with(session: Session, store: Store, queues: list[str], size: int, count: int, now: float,
                 published: bool) -> dict[str, Counts]:
    """Each existing queue's counts with the messages in (``counts_with``), by name; for a published message,
    settle first what fell due."""
    if len(queues) != 1:
        if published and queues:
            due = store.arrival_due()
            if due is not None and due <= now:
                settle_due(session, store, now)
        return store.counts_with_queues(queues, size, count)
    queue = queues[0]
    if not published:
        counted = store.counts_with(queue, size, count)
    else:  # one statement reads the counts and the deadlines: whether anything fell due
        counted, due = store.counts_with_first(queue, size, count)
        if due is not None and due <= now:
            settle_due(session, store, now)
            counted = store.counts_with(queue, size, count)
    return {} if counted is None else {queue: counted}


def _arrive(session: Session, store: Store, arrival: Arrival, queue: str, policy: QueuePolicy,
            counted: Counts, exchange: str, routing_key: str, body: bytes,
            properties: Properties, encoded: Optional[str], now: float) -> None:
    """One message (``counted``: the queue's ready count and bytes with it, arguments, consumers) meets its queue's
    length limit, TTL and priority."""
    ready, ready_bytes, _, consumers = counted
    over = policy.limited and policy.over_limit(ready, ready_bytes)
    if over and policy.overflow != "drop-head":
        _note(arrival.rejected, queue)
        if policy.overflow == "reject-publish-dlx":
            message = StoredMessage(0, queue, exchange, routing_key, body, encoded, 0)
            dead_letter(session, store, policy, [message], "maxlen", now)
        return
    ttl = _ttl(policy, properties)
    if ttl == 0 and consumers:
        ttl = IMMEDIATE_HANDOFF  # TTL 0 still reaches a consumer that is there to take it, as in RabbitMQ
    store.insert_message(queue, exchange, routing_key, body, encoded, now, policy.priority_of(properties.priority),
                         None if ttl is None else now + ttl)
    _note(arrival.stored, queue)
    if over:
        _drop_head(session, store, queue, policy, ready, ready_bytes, now)


def _note(queues: list[str], queue: str) -> None:
    if not queues or queues[-1] != queue:
        queues.append(queue)


def _ttl(policy: QueuePolicy, properties: Properties) -> Optional[float]:
    own = expiration_seconds(properties.expiration)
    if own is None:
        return policy.message_ttl
    return own if policy.message_ttl is None else min(own, policy.message_ttl)


def _drop_head(session: Session, store: Store, queue: str, policy: QueuePolicy, ready: int, ready_bytes: int,
               now: float) -> None:
    dropped: list[StoredMessage] = []
    if policy.max_length is not None and ready > policy.max_length:
        dropped = store.take_head(queue, ready - policy.max_length)
        ready_bytes -= sum(len(m.body) for m in dropped)
    while policy.max_length_bytes is not None and ready_bytes > policy.max_length_bytes:
        head = store.take_head(queue, 1)
        if not head:
            break
        dropped.extend(head)
        ready_bytes -= len(head[0].body)
    dead_letter(session, store, policy, dropped, "maxlen", now)


def dead_letter(session: Session, store: Store, policy: QueuePolicy, messages: Sequence[StoredMessage],
                reason: str, now: float) -> None:
    """Republish messages taken out of a queue to its dead-letter exchange, marked as RabbitMQ marks them; without
    one (or when it does not exist) they are dropped."""
    exchange = policy.dead_letter_exchange
    if exchange is None:
        return
    for message in messages:
        properties = dead_lettered(decode_properties(message.properties), message.queue, reason, message.exchange,
                                   [message.routing_key], now)
        key = policy.dead_letter_routing_key if policy.dead_letter_routing_key is not None else message.routing_key
        targets = [queue for queue in session.routes.route(store, exchange, key, properties.headers)[1]
                   if not is_cycle(properties.headers, queue, reason)]
        if targets:
            enqueue(session, store, targets, exchange, key, [message.body], properties, encode_properties(properties),
                    now)


def dead_letter_taken(session: Session, store: Store, messages: Sequence[StoredMessage], reason: str,
                      now: float) -> None:
    """Dead-letter messages taken out of any queues, each as its own queue's arguments say."""
    for queue in dict.fromkeys(message.queue for message in messages):
        row = store.queue(queue)
        if row is not None:
            dead_letter(session, store, queue_policy(row.arguments), [m for m in messages if m.queue == queue],
                        reason, now)


def returned(session: Session, store: Store, messages: Sequence[ReturnedMessage], now: float) -> None:
    """Leased messages went back to their queues: wake the consumers; dead-letter (or drop) those returned more
    often than their queue's ``x-delivery-limit`` allows; and where the returns took a queue over its length
    limit, drop its head (RabbitMQ's drop-head applies to requeues too)."""
    if not messages:
        return
    queues = list(dict.fromkeys(message.queue for message in messages))
    for queue in queues:
        row = store.queue(queue)
        policy = queue_policy(row.arguments) if row is not None else None
        if row is None or policy is None or policy.plain and policy.delivery_limit is None:
            continue
        if policy.delivery_limit is not None:
            over = [m.id for m in messages if m.queue == queue and m.delivery_count > policy.delivery_limit]
            if over:
                dead_letter(session, store, policy, store.take_ready(over), "delivery_limit", now)
                row = store.queue(queue) or row
        if policy.limited and policy.overflow == "drop-head":
            store.lock_queue(queue)  # counts, then drops: as a publish to it does
            row = store.queue(queue) or row
            if policy.over_limit(row.ready_count, row.ready_bytes):
                _drop_head(session, store, queue, policy, row.ready_count, row.ready_bytes, now)
    store.wake(queues)


def settle_due(session: Session, store: Store, now: float) -> bool:
    """Do what time has made due: delayed messages join their queues, expired messages leave theirs (to be
    dead-lettered), unused queues with ``x-expires`` go. Returns whether there was anything to do."""
    did = False
    while True:
        upcoming = min((d for d in store.deadlines() if d is not None), default=None)
        if upcoming is None or upcoming > now:
            return did
        did = True
        for message, due_at in store.take_due(now, DUE_BATCH):
            # It joins its queue as of when it fell due: its TTL runs from then.
            enqueue(session, store, [message.queue], message.exchange, message.routing_key, [message.body],
                    decode_properties(message.properties), message.properties, due_at)
        dead_letter_taken(session, store, store.take_expired(now, DUE_BATCH), "expired", now)
        for queue in store.expired_queues(now):
            if store.consumer_count(queue):
                store.set_queue_expiry(queue, None)  # in use after all: its last consumer sets it again
            else:
                session.delete_queue(store, queue)


def queue_used(store: Store, queue: str, policy: QueuePolicy, now: float) -> None:
    """Restart an ``x-expires`` queue's countdown (declared again, or a basic.get), unless consumers hold it."""
    if policy.expires is not None and not store.consumer_count(queue):
        store.set_queue_expiry(queue, now + policy.expires)
