"""A kombu transport over litemq, so Celery (and any kombu program) runs on a file or a PostgreSQL server.

    import litemq.kombu                                   # registers the ``litemq`` URL scheme with kombu
    app = Celery("tasks", broker="litemq:///app.db")      # or broker_transport="litemq.kombu:Transport"

It subclasses kombu's virtual transport but keeps nothing of the broker in the process: exchanges, bindings and
queues are litemq's (so fanout, topic and direct routing reach every process on the file, and Celery's remote
control and broadcast work), a delivery is a litemq lease settled in the store (a worker that dies returns its
unacked tasks, marked redelivered, as soon as litemq sees it dead), and ``drain_events`` sleeps on litemq's
doorbells rather than polling. URLs: ``litemq:///rel.db`` and ``litemq:////abs.db`` name a file (SQLAlchemy's
slashes, as ``sqlite:///`` in litemq), ``litemq+postgresql://...`` a PostgreSQL server; with
``broker_transport="litemq.kombu:Transport"``, any URL or path ``litemq.connect`` takes.

Transport options (Celery's ``broker_transport_options``) go to ``litemq.connect``: ``lease_seconds``,
``consumer_timeout``, ``synchronous``, ``busy_timeout``, ``max_message_bytes``, ``share_with_group``.
"""

from __future__ import annotations

import math
import os
import socket
import threading
import time
from collections import defaultdict, deque
from typing import Any, Callable, NamedTuple, Optional

from kombu.transport import TRANSPORT_ALIASES, virtual
from kombu.transport.base import to_rabbitmq_queue_arguments
from kombu.transport.virtual.base import queue_declare_ok_t

import litemq
from litemq import (AccessRefused, ChannelClosed, DeliveryError, LeaseExpired, LiteMQError, MessageTooLarge,
                    NotFound, PreconditionFailed, PublishRejected, QueueNotFound, ResourceLocked,
                    StorageError, Unroutable)
from litemq.kombu_hub import HubWaiting
from litemq.log import logger

SCHEME = "litemq"
CONNECT_OPTIONS = ("lease_seconds", "consumer_timeout", "synchronous", "busy_timeout", "max_message_bytes",
                   "share_with_group")
"""The transport options that are ``litemq.connect``'s; kombu's own (``polling_interval`` ...) are not."""
CONSUMER_TIMEOUT = math.inf
"""A worker holds an ETA or countdown task unacked until it is due, hours if need be: its lease is renewed for as
long as the worker lives. (RabbitMQ closes a channel that holds a delivery past its consumer timeout, 30 minutes by
default; Redis and SQS give it to another worker after their visibility timeout: then it runs twice.)"""
STRING_PROPERTIES = ("correlation_id", "reply_to", "expiration", "message_id", "type", "user_id", "app_id",
                     "cluster_id")


def broker_url(hostname: Optional[str]) -> Optional[str]:
    """What ``litemq.connect`` opens for a kombu connection's hostname: ``litemq://`` becomes ``sqlite://`` (so
    ``litemq:///app.db`` is relative, ``litemq:////srv/app.db`` absolute), what ``litemq+`` prefixed (kombu strips
    the prefix) and plain paths are taken as they are, and kombu's default host means litemq's default broker."""
    if not hostname or hostname == "localhost":
        return None
    if hostname.startswith(SCHEME + "://"):
        return "sqlite://" + hostname[len(SCHEME + "://"):]
    return hostname


class Subscription(NamedTuple):
    """A kombu consumer as the transport dispatches to it."""

    channel: "Channel"
    consumer_tag: str
    consumer: litemq.Consumer
    callback: Callable[[Any], Any]


class Message(virtual.Message):
    """A litemq delivery as kombu sees it."""


class Returned(NamedTuple):
    """An unroutable mandatory message on its way back to its channel's on_return callbacks."""

    channel: "Channel"
    error: Unroutable
    exchange: str
    routing_key: str
    message: Message

    def hand_back(self) -> None:
        """Call the channel's on_return callbacks as py-amqp does, (error, exchange, routing_key, message), or raise
        the error where it has none."""
        callbacks = list(self.channel.events["basic_return"])
        if not callbacks:
            raise self.error
        for callback in callbacks:
            callback(self.error, self.exchange, self.routing_key, self.message)


class Channel(virtual.Channel):
    """A kombu channel over a litemq channel of the transport's connection: declares, publishes, consumes and
    settles there, so nothing of the broker's state lives in this process."""

    Message = Message
    supports_fanout = True
    do_restore = False  # litemq returns what a closed channel or a dead process held; nothing to restore here

    def __init__(self, connection: "Transport", **kwargs: Any) -> None:
        super().__init__(connection, **kwargs)
        self.events: defaultdict[str, set[Callable[..., Any]]] = defaultdict(set)
        """kombu's Producer adds its ``on_return`` callback to ``events["basic_return"]``, as on py-amqp."""
        self.broker = connection.broker().channel()
        self.no_ack_consumers: set[str] = set()
        self._acks: list[int] = []
        """Acks made on the hub, not yet committed (``settle``)."""
        self._subscriptions: dict[str, Subscription] = {}

    # --- the model, in the store
    def exchange_declare(self, exchange: Optional[str] = None, type: str = "direct", durable: bool = False,
                         auto_delete: bool = False, arguments: Optional[dict[str, Any]] = None,
                         nowait: bool = False, passive: bool = False) -> None:
        type = type or "direct"
        self.broker.declare_exchange(exchange or f"amq.{type}", type, passive=passive, durable=durable,
                                     auto_delete=auto_delete, arguments=arguments)

    def exchange_delete(self, exchange: str, if_unused: bool = False, nowait: bool = False) -> None:
        self.broker.delete_exchange(exchange, if_unused=if_unused)

    def prepare_queue_arguments(self, arguments: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        # kombu's Queue(max_priority=..., message_ttl=..., expires=..., max_length=...) become RabbitMQ's
        # x-arguments, as on RabbitMQ (kombu's virtual transports drop them), and litemq keeps them.
        return to_rabbitmq_queue_arguments(arguments, **kwargs)

    def queue_declare(self, queue: Optional[str] = None, passive: bool = False, durable: bool = False,
                      exclusive: bool = False, auto_delete: bool = False,
                      arguments: Optional[dict[str, Any]] = None, nowait: bool = False, **kwargs: Any) -> Any:
        info = self.broker.declare_queue(queue or "", passive=passive, durable=durable, exclusive=exclusive,
                                         auto_delete=auto_delete, arguments=arguments)
        return queue_declare_ok_t(info.queue, info.message_count, info.consumer_count)

    def queue_delete(self, queue: str, if_unused: bool = False, if_empty: bool = False, **kwargs: Any) -> int:
        return self.broker.delete_queue(queue, if_unused=if_unused, if_empty=if_empty)

    def queue_bind(self, queue: str, exchange: Optional[str] = None, routing_key: str = "",
                   arguments: Optional[dict[str, Any]] = None, **kwargs: Any) -> None:
        self.broker.bind_queue(queue, exchange or "amq.direct", routing_key or "", arguments)

    def queue_unbind(self, queue: str, exchange: Optional[str] = None, routing_key: str = "",
                     arguments: Optional[dict[str, Any]] = None, **kwargs: Any) -> None:
        self.broker.unbind_queue(queue, exchange or "amq.direct", routing_key or "", arguments)

    def exchange_bind(self, destination: str, source: str = "", routing_key: str = "", nowait: bool = False,
                      arguments: Optional[dict[str, Any]] = None) -> None:
        self.broker.bind_exchange(destination, source, routing_key or "", arguments)

    def exchange_unbind(self, destination: str, source: str = "", routing_key: str = "", nowait: bool = False,
                        arguments: Optional[dict[str, Any]] = None) -> None:
        self.broker.unbind_exchange(destination, source, routing_key or "", arguments)

    def queue_purge(self, queue: str, **kwargs: Any) -> int:
        return self.broker.purge_queue(queue)

    def _has_queue(self, queue: str, **kwargs: Any) -> bool:
        try:
            self.broker.declare_queue(queue, passive=True)
        except NotFound:
            return False
        return True

    def _size(self, queue: str) -> int:
        return self.broker.declare_queue(queue, passive=True).message_count

    # --- publishing
    def basic_publish(self, message: dict[str, Any], exchange: str, routing_key: str, mandatory: bool = False,
                      **kwargs: Any) -> None:
        try:
            self.broker.publish(exchange or "", routing_key or "", _body(message), _properties(message),
                                mandatory=mandatory)
        except Unroutable as exc:
            # As RabbitMQ's basic.return, after the publish: the connection's next drain_events (or its hub's next
            # turn) hands it to the channel's on_return callbacks (kombu's Producer(on_return=...)), and raises it
            # where there are none, as py-amqp does.
            self.connection.returned(Returned(self, exc, exchange or "", routing_key or "",
                                              self.Message(_returned_payload(message, exchange or "", routing_key or ""),
                                                           channel=self)))

    # --- consuming
    def basic_consume(self, queue: str, no_ack: bool, callback: Callable[[Any], Any], consumer_tag: str,
                      **kwargs: Any) -> str:
        consumer_tag = consumer_tag or f"kombu-{os.urandom(8).hex()}"
        # Deliveries name the litemq consumer; its tag is unique on the connection, a kombu tag only per channel.
        # Its own prefetch is the channel's too: it then claims what the channel has room for in one statement
        # (a consumer without a prefetch claims one message at a time), and the channel's cap still bounds them all.
        consumer = self.broker.consume(queue, auto_ack=no_ack, prefetch=self.broker.channel_prefetch_count,
                                       consumer_tag=f"{self.channel_id}/{consumer_tag}")
        if no_ack:
            self.no_ack_consumers.add(consumer_tag)
        subscription = Subscription(self, consumer_tag, consumer, callback)
        self._subscriptions[consumer_tag] = subscription
        self._consumers.add(consumer_tag)
        self._active_queues.append(queue)
        self.connection.subscribed(subscription)
        return consumer_tag

    def basic_cancel(self, consumer_tag: str) -> None:
        subscription = self._subscriptions.pop(consumer_tag, None)
        if subscription is None:
            return
        self._consumers.discard(consumer_tag)
        self.no_ack_consumers.discard(consumer_tag)
        if subscription.consumer.queue in self._active_queues:
            self._active_queues.remove(subscription.consumer.queue)
        self.connection.unsubscribed(subscription)
        if self.broker.is_open:
            subscription.consumer.cancel()

    def basic_get(self, queue: str, no_ack: bool = False, **kwargs: Any) -> Optional[virtual.Message]:
        delivery = self.broker.get(queue, auto_ack=no_ack)
        return None if delivery is None else self.message(delivery)

    def message(self, delivery: litemq.Delivery, consumer_tag: Optional[str] = None) -> virtual.Message:
        """A delivery as a kombu message of this channel."""
        properties = delivery.properties
        fields = {name: value for name, value in properties.set_fields().items()
                  if name not in ("headers", "content_type", "content_encoding")}
        fields.setdefault("priority", 0)
        delivery_info = {"exchange": delivery.exchange, "routing_key": delivery.routing_key,
                         "redelivered": delivery.redelivered, "delivery_tag": delivery.delivery_tag,
                         "priority": fields["priority"]}
        if consumer_tag is not None:
            delivery_info["consumer_tag"] = consumer_tag
        payload = {"body": delivery.body, "content-type": properties.content_type,
                   "content-encoding": properties.content_encoding, "headers": dict(properties.headers or {}),
                   "properties": {**fields, "delivery_tag": delivery.delivery_tag,
                                  "delivery_info": delivery_info}}
        return self.Message(payload, channel=self)

    # --- settling: litemq's acks, on the lease each delivery holds
    def basic_ack(self, delivery_tag: int, multiple: bool = False) -> None:
        if self.connection.evented and not multiple:
            # On the hub, acks are pipelined as a RabbitMQ client's are (it does not wait for the broker): those of
            # one turn commit together, with the claims their room allows. Until then the lease holds; a worker
            # that dies before the commit has them redelivered, marked redelivered.
            self._acks.append(delivery_tag)
            self.connection.acked(self)
            return
        self.settle()
        self.broker.ack(delivery_tag, multiple=multiple)

    def settle(self) -> bool:
        """Commit the pipelined acks; whether there were any. One that fails (its lease ran out) is logged: the
        message is back in its queue, to be delivered again, marked redelivered."""
        if not self._acks or not self.connection.evented:
            return False  # only the hub's thread pipelines acks, and only it commits them
        tags, self._acks = self._acks, []
        if not self.broker.is_open:
            return False  # closed: what it held went back to the queues
        try:
            self.broker._ack_each(tags)
        except (LeaseExpired, DeliveryError) as exc:
            logger().warning("litemq: %s", exc)
        return True

    def basic_reject(self, delivery_tag: int, requeue: bool = False) -> None:
        self.settle()
        self.broker.reject(delivery_tag, requeue=requeue)

    def basic_recover(self, requeue: bool = False) -> None:
        if not requeue:
            # As kombu's own virtual channel answers, and as RabbitMQ answers basic.recover with requeue=false
            # (540 NOT_IMPLEMENTED): redelivering to the same consumer is not a thing a shared queue can promise.
            raise NotImplementedError("litemq returns unacked deliveries to their queues: recover(requeue=True)")
        self.settle()
        self.broker.nack(0, multiple=True, requeue=True)

    def basic_qos(self, prefetch_size: int = 0, prefetch_count: int = 0, apply_global: bool = False) -> None:
        # kombu's virtual transports follow the AMQP spec (Transport.qos_semantics_matches_spec), where a prefetch
        # without ``global`` bounds the whole channel: Celery's task consumer reads several queues on one channel
        # and means its prefetch for all of them, changed on the fly (ETA tasks raise it). That is litemq's
        # channel-wide cap, read at every claim.
        self.broker.qos(prefetch_count, global_qos=True)
        for subscription in self._subscriptions.values():
            subscription.consumer.prefetch = prefetch_count
        self.connection.room_changed()

    # --- closing
    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.broker.is_open:
            self.settle()
        for consumer_tag in list(self._subscriptions):
            self.basic_cancel(consumer_tag)
        self.broker.close()  # returns what it still holds to the queues
        if self.connection is not None:
            self.connection.close_channel(self)

    def after_reply_message_received(self, queue: str) -> None:
        self.queue_delete(queue)


def _body(message: dict[str, Any]) -> bytes:
    body = message["body"]
    if isinstance(body, str):
        return body.encode(message.get("content-encoding") or "utf-8")
    return bytes(body)


def _returned_payload(message: dict[str, Any], exchange: str, routing_key: str) -> dict[str, Any]:
    properties = {**(message.get("properties") or {}), "delivery_tag": None,
                  "delivery_info": {"exchange": exchange, "routing_key": routing_key}}
    return {**message, "properties": properties}


def _properties(message: dict[str, Any]) -> litemq.Properties:
    given = message.get("properties") or {}
    fields: dict[str, Any] = {name: str(given[name]) for name in STRING_PROPERTIES
                              if given.get(name) is not None}
    for name in ("delivery_mode", "priority", "timestamp"):
        if given.get(name) is not None:
            fields[name] = int(given[name])
    return litemq.Properties(content_type=message.get("content-type"),
                             content_encoding=message.get("content-encoding"),
                             headers=message.get("headers") or None, **fields)


class Transport(virtual.Transport):
    """kombu's transport for litemq: one litemq connection per kombu connection, its channels litemq channels."""

    Channel = Channel
    driver_type = driver_name = "litemq"
    can_parse_url = True  # the hostname is litemq's URL or path as given; kombu's URL parsing would mangle it
    default_port = None
    polling_interval = None  # never sleeps between polls: drain_events waits on litemq's doorbells
    implements = virtual.Transport.implements.extend(
        asynchronous=True,  # a Celery worker waits on its hub (register_with_event_loop), with any pool
        exchange_type=frozenset(["direct", "topic", "fanout", "headers"]),
        heartbeats=False,
    )
    connection_errors = virtual.Transport.connection_errors + (StorageError,)
    channel_errors = virtual.Transport.channel_errors + (
        NotFound, AccessRefused, PreconditionFailed, ResourceLocked, DeliveryError, LeaseExpired, PublishRejected,
        MessageTooLarge, ChannelClosed, Unroutable)

    def __init__(self, client: Any, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        self._broker: Optional[litemq.Connection] = None
        self._subscriptions: dict[str, Subscription] = {}
        self._waiting: Optional[litemq.ConsumerSet] = None
        self._hub: Optional[HubWaiting] = None
        self._returned: deque[Returned] = deque()
        self._acking: set[Channel] = set()
        self._hub_thread: Optional[int] = None

    def broker(self) -> litemq.Connection:
        """The litemq connection, opened on first use (so a connection kombu never uses opens nothing)."""
        if self._broker is None or not self._broker.is_open:
            options = self.client.transport_options
            settings = {name: options[name] for name in CONNECT_OPTIONS if name in options}
            settings.setdefault("consumer_timeout", CONSUMER_TIMEOUT)
            self._broker = litemq.connect(broker_url(self.client.hostname), **settings)
        return self._broker

    def driver_version(self) -> str:
        return litemq.__version__

    def establish_connection(self) -> "Transport":
        self.broker()
        return super().establish_connection()

    def close_connection(self, connection: Any) -> None:
        self._settle()
        if self._hub is not None:
            self._hub.close()  # before the doorbells close under the hub's poll
            self._hub = None
        super().close_connection(connection)
        if self._broker is not None:
            self._broker.close()
            self._broker = None
        self._subscriptions.clear()
        self._waiting = None

    # --- consuming: every kombu consumer of the connection, waited for together
    def register_with_event_loop(self, connection: Any, loop: Any) -> None:
        """Wait on ``loop`` (kombu's hub, as a Celery worker has): deliveries reach their callbacks from the hub
        when a doorbell rings, and ``drain_events`` is not needed."""
        if self._hub is not None:
            self._hub.close()
        self._hub = HubWaiting(loop, self._consumer_set, self._deliver_ready, self._settle)
        self._hub_thread = threading.get_ident()
        self._hub.changed()

    @property
    def evented(self) -> bool:
        """Whether a hub serves this connection and this is its thread (a threads pool acks from its own)."""
        return self._hub is not None and threading.get_ident() == self._hub_thread

    def acked(self, channel: Channel) -> None:
        """A channel pipelined an ack: the hub commits it."""
        self._acking.add(channel)
        if self._hub is not None:
            self._hub.acked()

    def _settle(self) -> bool:
        settled = False
        while self._acking:
            settled = self._acking.pop().settle() or settled
        return settled

    def subscribed(self, subscription: Subscription) -> None:
        self._subscriptions[subscription.consumer.consumer_tag] = subscription
        self._waiting = None
        self.room_changed()

    def unsubscribed(self, subscription: Subscription) -> None:
        self._subscriptions.pop(subscription.consumer.consumer_tag, None)
        self._waiting = None
        self.room_changed()  # the hub stops watching its doorbell before it closes

    def returned(self, returned: Returned) -> None:
        """An unroutable mandatory message, handed back at the next drain_events or turn of the hub."""
        self._returned.append(returned)
        self.room_changed()

    def _hand_back(self) -> bool:
        if not self._returned:
            return False
        self._returned.popleft().hand_back()
        return True

    def room_changed(self) -> None:
        """The consumers, or the room they have to claim (a new prefetch), changed: a hub looks again."""
        if self._hub is not None:
            self._hub.changed()

    def _consumer_set(self) -> Optional[litemq.ConsumerSet]:
        if not self._subscriptions:
            return None
        if self._waiting is None:
            self._waiting = litemq.ConsumerSet([s.consumer for s in self._subscriptions.values()], None)
        return self._waiting

    def _deliver_ready(self, consumers: litemq.ConsumerSet) -> bool:
        """Hand one ready delivery to its consumer's callback (or a returned message to its channel's), without
        waiting; whether there was one."""
        if self._hand_back():
            return True
        try:
            delivery = consumers.next_claimed() or consumers._poll()
        except QueueNotFound:
            delivery = None  # the last consumed queue was deleted: its consumers are cancelled
        self._drop_cancelled()
        if delivery is None:
            return False
        self._dispatch(delivery)
        return True

    def _dispatch(self, delivery: litemq.Delivery) -> None:
        subscription = self._subscriptions.get(delivery.consumer_tag or "")
        if subscription is None:  # cancelled by another thread while it was claimed: back to its queue
            _return(delivery)
            return
        subscription.callback(subscription.channel.message(delivery, subscription.consumer_tag))

    def drain_events(self, connection: Any, timeout: Optional[float] = None) -> None:
        """Deliver one message to its consumer's callback, waiting up to ``timeout`` seconds (forever when None)
        on the doorbells of all this connection's consumers; socket.timeout when none came."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self._hand_back():
                return
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not self._subscriptions:
                # Nothing to wait for; a consumer started meanwhile (by another thread) is seen within a second.
                time.sleep(1.0 if left is None else min(left, 1.0))
                if deadline is not None and time.monotonic() >= deadline:
                    raise socket.timeout()
                continue
            consumers = self._consumer_set()
            assert consumers is not None
            try:
                delivery = consumers.get(left)
            except QueueNotFound:
                delivery = None  # the last consumed queue was deleted: its consumers are cancelled
            self._drop_cancelled()
            if delivery is None:
                if deadline is not None and time.monotonic() >= deadline:
                    raise socket.timeout()
                continue
            self._dispatch(delivery)
            return

    def _drop_cancelled(self) -> None:
        """Forget consumers that litemq cancelled (their queue was deleted), as RabbitMQ's basic.cancel tells a
        client."""
        for subscription in [s for s in self._subscriptions.values() if not s.consumer.active]:
            subscription.channel.basic_cancel(subscription.consumer_tag)


def _return(delivery: litemq.Delivery) -> None:
    try:
        delivery.reject(requeue=True)
    except (LiteMQError, ValueError):
        pass  # auto-ack (already taken) or settled with its channel


TRANSPORT_ALIASES.setdefault(SCHEME, "litemq.kombu:Transport")
