"""pika's ``BlockingChannel`` over a litemq channel: pika's names, signatures, defaults and return shapes.

A 403, 404, 405 or 406 from the broker closes this channel (returning what it held to the queues) and raises
``ChannelClosedByBroker``, as with RabbitMQ; the connection stays usable (a 503 or 540 closes the connection).

Deliberate differences from pika with RabbitMQ (tests/conformance asserts each):

- Errors surface at the call that caused them. Without publisher confirms pika sends a publish, ack, nack or
  reject without waiting, so RabbitMQ's error (a missing exchange, an unknown delivery tag) is raised by the
  channel's next synchronous call; litemq knows at once and raises at the publish or ack itself, and the next call
  then raises ChannelWrongStateError. basic_ack does not wait either (litemq's deferred ack: committed by the
  connection's next write, within a few milliseconds, or at close); an ack whose lease had expired by then is
  logged at WARNING, as RabbitMQ has already closed such a channel (its delivery timeout) and redelivered.
- Consumers pull. RabbitMQ pushes messages to a consumer, up to its prefetch, as soon as it is registered; litemq
  claims them only when the connection processes events (process_data_events, start_consuming, sleep, consume()).
  Until then they stay ready (counted by queue_declare, free for other consumers), and a channel closed before
  that returns them unmarked rather than redelivered.
"""

from __future__ import annotations

from datetime import datetime
from collections import deque
from typing import Any, Callable, Iterator, NoReturn, Optional, Protocol, Union, overload

from .. import errors
from ..broker import Channel
from ..routing import DELAYED_EXCHANGE
from ..topology import DIRECT_REPLY_TO
from ..consumer import Consumer
from ..message import Body, Delivery
from . import exceptions, spec
from .frame import Method

_REPLY_NAMES = {403: "ACCESS_REFUSED", 404: "NOT_FOUND", 405: "RESOURCE_LOCKED", 406: "PRECONDITION_FAILED",
                503: "COMMAND_INVALID", 540: "NOT_IMPLEMENTED"}

MessageCallback = Callable[["BlockingChannel", spec.Basic.Deliver, spec.BasicProperties, bytes], object]
"""``on_message_callback(channel, method, properties, body)``, as pika calls it."""
PikaDelivery = tuple[spec.Basic.Deliver, spec.BasicProperties, bytes]
Nothing = tuple[None, None, None]


class Connection(Protocol):
    """``BlockingConnection`` as its channels see it (``channel.connection``): its connection module makes the
    channels, so this one cannot name it."""

    params: Any
    _dispatch_depth: int

    @property
    def is_open(self) -> bool:
        ...

    @property
    def is_closed(self) -> bool:
        ...

    def channel(self, channel_number: Optional[int] = None) -> "BlockingChannel":
        ...

    def close(self, reply_code: int = 200, reply_text: str = "Normal shutdown") -> None:
        ...

    def process_data_events(self, time_limit: Optional[float] = 0) -> None:
        ...

    def sleep(self, duration: float) -> None:
        ...

    def add_callback_threadsafe(self, callback: Callable[[], None]) -> None:
        ...

    def call_later(self, delay: float, callback: Callable[[], None]) -> int:
        ...

    def remove_timeout(self, timeout_id: int) -> None:
        ...

    def _forget_channel(self, number: int) -> None:
        ...

    def _shut(self, reply_code: int, reply_text: str) -> None:
        ...


class ReturnedMessage:
    """An unroutable mandatory message, as pika's blocking adapter hands it back."""

    def __init__(self, method: spec.Basic.Return, properties: spec.BasicProperties, body: bytes) -> None:
        self.method = method
        self.properties = properties
        self.body = body


class _ConsumerInfo:
    def __init__(self, consumer: Consumer, callback: Optional[MessageCallback], auto_ack: bool) -> None:
        self.consumer = consumer
        self.callback = callback
        self.auto_ack = auto_ack


class BlockingChannel:
    """pika's blocking channel."""

    def __init__(self, connection: Connection, channel_number: int, native: Channel) -> None:
        self._connection = connection
        self.channel_number = channel_number
        self._native = native
        self._consumers: dict[str, _ConsumerInfo] = {}
        self._returned: deque[ReturnedMessage] = deque()
        self._cancelled: deque[str] = deque()
        self._on_return: list[Callable[[BlockingChannel, spec.Basic.Return, spec.BasicProperties, bytes], object]] = []
        self._on_cancel: list[Callable[[Method[spec.Basic.Cancel]], object]] = []
        self._confirming = False
        self._closed = False
        self._reply_queue: Optional[str] = None
        self._last_queue: Optional[str] = None
        self._generator: Optional[tuple[tuple[str, bool, bool], _ConsumerInfo]] = None

    # --- state
    @property
    def connection(self) -> Connection:
        return self._connection

    @property
    def is_open(self) -> bool:
        return not self._closed and self._connection.is_open

    @property
    def is_closed(self) -> bool:
        return not self.is_open

    @property
    def consumer_tags(self) -> list[str]:
        return list(self._consumers)

    def __repr__(self) -> str:
        return f"<BlockingChannel impl=<Channel number={self.channel_number} {'OPEN' if self.is_open else 'CLOSED'}>>"

    def _call(self, action: Callable[[], Any]) -> Any:
        """Run a native call; a broker error closes this channel as RabbitMQ would, and raises pika's error."""
        if self._closed or not self._connection.is_open:
            raise exceptions.ChannelWrongStateError("Channel is closed.")
        try:
            return action()
        except errors.LeaseExpired as exc:
            raise self._closed_by_broker(406, f"delivery acknowledgement timed out: {exc}") from None
        except errors.MessageTooLarge as exc:
            raise self._closed_by_broker(406, str(exc)) from None
        except errors.LiteMQError as exc:
            if exc.reply_code in (403, 404, 405, 406):
                raise self._closed_by_broker(exc.reply_code, str(exc)) from None
            raise

    def _closed_by_broker(self, code: int, text: str) -> exceptions.ChannelClosedByBroker:
        self._shut()
        return exceptions.ChannelClosedByBroker(code, f"{_REPLY_NAMES.get(code, 'ERROR')} - {text}")

    def _shut(self) -> None:
        self._closed = True
        self._consumers.clear()
        self._generator = None
        if self._native.is_open:
            self._native.close()
        self._connection._forget_channel(self.channel_number)

    def close(self, reply_code: int = 0, reply_text: str = "Normal shutdown") -> None:
        """Cancel this channel's consumers and close it; its unacked deliveries go back to their queues."""
        if self.is_closed:
            raise exceptions.ChannelWrongStateError("Channel is closed.")
        self._shut()

    def __enter__(self) -> "BlockingChannel":
        return self

    def __exit__(self, *exc: object) -> None:
        if self.is_open:
            self.close()

    # --- exchanges
    def exchange_declare(self, exchange: str, exchange_type: Union[str, spec.ExchangeType] = spec.ExchangeType.direct,
                         passive: bool = False, durable: bool = False, auto_delete: bool = False,
                         internal: bool = False, arguments: Optional[dict[str, Any]] = None
                         ) -> Method[spec.Exchange.DeclareOk]:
        _short("exchange", exchange)
        kind = exchange_type.value if isinstance(exchange_type, spec.ExchangeType) else exchange_type
        if not passive and isinstance(kind, str) and kind not in ("direct", "fanout", "topic", "headers",
                                                                  DELAYED_EXCHANGE):
            # RabbitMQ closes the whole connection for this one (the delayed-message plugin's type is built in).
            self._connection._shut(503, "invalid exchange type")
            raise exceptions.ConnectionClosedByBroker(503, f"COMMAND_INVALID - invalid exchange type '{kind}'")
        self._call(lambda: self._native.declare_exchange(exchange, kind, passive=passive, durable=durable,
                                                         auto_delete=auto_delete, internal=internal,
                                                         arguments=arguments))
        return Method(self.channel_number, spec.Exchange.DeclareOk())

    def exchange_delete(self, exchange: Optional[str] = None, if_unused: bool = False) -> Method[spec.Exchange.DeleteOk]:
        self._call(lambda: self._native.delete_exchange(exchange or "", if_unused=if_unused))
        return Method(self.channel_number, spec.Exchange.DeleteOk())

    def exchange_bind(self, destination: str, source: str, routing_key: str = "",
                      arguments: Optional[dict[str, Any]] = None) -> Method[spec.Exchange.BindOk]:
        self._call(lambda: self._native.bind_exchange(destination, source, routing_key, arguments))
        return Method(self.channel_number, spec.Exchange.BindOk())

    def exchange_unbind(self, destination: Optional[str] = None, source: Optional[str] = None,
                        routing_key: str = "", arguments: Optional[dict[str, Any]] = None
                        ) -> Method[spec.Exchange.UnbindOk]:
        self._call(lambda: self._native.unbind_exchange(destination or "", source or "", routing_key, arguments))
        return Method(self.channel_number, spec.Exchange.UnbindOk())

    # --- queues
    def queue_declare(self, queue: str, passive: bool = False, durable: bool = False, exclusive: bool = False,
                      auto_delete: bool = False, arguments: Optional[dict[str, Any]] = None
                      ) -> Method[spec.Queue.DeclareOk]:
        _short("queue", queue)
        info = self._call(lambda: self._native.declare_queue(queue, passive=passive, durable=durable,
                                                             exclusive=exclusive, auto_delete=auto_delete,
                                                             arguments=arguments))
        self._last_queue = info.queue
        return Method(self.channel_number, spec.Queue.DeclareOk(queue=info.queue, message_count=info.message_count,
                                                                consumer_count=info.consumer_count))

    def queue_delete(self, queue: str, if_unused: bool = False, if_empty: bool = False
                     ) -> Method[spec.Queue.DeleteOk]:
        name = self._queue_name(queue)
        count = self._call(lambda: self._native.delete_queue(name, if_unused=if_unused, if_empty=if_empty))
        return Method(self.channel_number, spec.Queue.DeleteOk(message_count=count))

    def queue_purge(self, queue: str) -> Method[spec.Queue.PurgeOk]:
        name = self._queue_name(queue)
        count = self._call(lambda: self._native.purge_queue(name))
        return Method(self.channel_number, spec.Queue.PurgeOk(message_count=count))

    def queue_bind(self, queue: str, exchange: str, routing_key: Optional[str] = None,
                   arguments: Optional[dict[str, Any]] = None) -> Method[spec.Queue.BindOk]:
        name = self._queue_name(queue)
        key = self._binding_key(queue, name, routing_key)
        self._call(lambda: self._native.bind_queue(name, exchange, key, arguments))
        return Method(self.channel_number, spec.Queue.BindOk())

    def queue_unbind(self, queue: str, exchange: Optional[str] = None, routing_key: Optional[str] = None,
                     arguments: Optional[dict[str, Any]] = None) -> Method[spec.Queue.UnbindOk]:
        name = self._queue_name(queue)
        key = self._binding_key(queue, name, routing_key)
        self._call(lambda: self._native.unbind_queue(name, exchange or "", key, arguments))
        return Method(self.channel_number, spec.Queue.UnbindOk())

    def _queue_name(self, queue: str) -> str:
        """RabbitMQ's shortcut: an empty queue name means the queue this channel declared last (passively too, and
        even once it is deleted); 404 when it declared none."""
        if queue != "":
            return queue
        if self._last_queue is None:
            self._call(lambda: None)
            raise self._closed_by_broker(404, "no previously declared queue")
        return self._last_queue

    @staticmethod
    def _binding_key(queue: str, name: str, routing_key: Optional[str]) -> str:
        # pika binds with the queue's name by default; RabbitMQ reads an empty key with the empty queue name as the
        # last declared queue's name too.
        return name if routing_key is None or (queue == "" and routing_key == "") else routing_key

    # --- publishing
    def basic_publish(self, exchange: str, routing_key: str, body: Body,
                      properties: Optional[spec.BasicProperties] = None, mandatory: bool = False) -> None:
        _short("exchange", exchange)
        _short("routing_key", routing_key)
        if properties is not None:
            self._check_sendable(exchange, routing_key, properties)
        native_properties = None if properties is None else properties.to_native()
        if properties is not None and properties.reply_to == DIRECT_REPLY_TO:
            if self._reply_queue is None:
                raise self._closed_by_broker(406, "fast reply consumer does not exist")
            native_properties = native_properties.replace(reply_to=self._reply_queue)
        data = body.encode("utf-8") if isinstance(body, str) else body
        try:
            routed = self._call(lambda: self._native.publish(exchange, routing_key, data, native_properties))
        except errors.PublishRejected:
            # A queue's length limit refused it (the others have it): RabbitMQ nacks it, which only a confirming
            # publisher hears of.
            if self._confirming:
                raise exceptions.NackError([]) from None
            return
        if routed == 0 and mandatory:
            returned = ReturnedMessage(spec.Basic.Return(reply_code=spec.NO_ROUTE, reply_text="NO_ROUTE",
                                                         exchange=exchange, routing_key=routing_key),
                                       properties or spec.BasicProperties(), bytes(data))
            self._returned.append(returned)  # the return callbacks hear of it, with confirms too
            if self._confirming:
                raise exceptions.UnroutableError([returned])

    def _check_sendable(self, exchange: str, routing_key: str, properties: spec.BasicProperties) -> None:
        """What RabbitMQ refuses in a message's properties, closing the channel (pika itself sends any of it), in
        its order: a missing (404) or internal (403) exchange first, then the user id, the expiration, the
        delivery mode."""
        where = f"(exchange {exchange!r}, routing key {routing_key!r})"
        user = getattr(self._connection.params.credentials, "username", None)
        expiration = properties.expiration
        mode = getattr(properties.delivery_mode, "value", properties.delivery_mode)
        if properties.user_id is not None and user is not None and properties.user_id != user:
            problem = f"user_id property set to {properties.user_id!r} but the connection's user is {user!r} {where}"
        elif expiration is not None and not (isinstance(expiration, str) and expiration.isascii()
                                             and expiration.isdigit()):
            problem = f"invalid expiration {expiration!r}: not a whole number of milliseconds {where}"
        elif isinstance(mode, int) and not isinstance(mode, bool) and mode not in (1, 2):  # a wrong type: TypeError
            problem = f"invalid message: delivery_mode {mode!r} is neither 1 (transient) nor 2 (persistent) {where}"
        else:
            return
        self._call(lambda: self._native.route(exchange, routing_key))
        raise self._closed_by_broker(406, problem)

    def confirm_delivery(self) -> None:
        """Publisher confirms: a publish returns once committed (always so in litemq); an unroutable mandatory
        message raises UnroutableError, one a queue's length limit refused raises NackError."""
        self._call(lambda: None)
        self._confirming = True

    def add_on_return_callback(self, callback: Callable[["BlockingChannel", spec.Basic.Return, spec.BasicProperties, bytes], object]
                               ) -> None:
        """``callback(channel, method, properties, body)`` for each unroutable mandatory message."""
        self._on_return.append(callback)

    def add_on_cancel_callback(self, callback: Callable[[Method[spec.Basic.Cancel]], object]) -> None:
        """``callback(method_frame)`` when the broker cancels a consumer (its queue was deleted)."""
        self._on_cancel.append(callback)

    # --- getting
    def basic_get(self, queue: str, auto_ack: bool = False
                  ) -> Union[tuple[spec.Basic.GetOk, spec.BasicProperties, bytes], Nothing]:
        if not isinstance(queue, str):
            raise TypeError("queue must be a str")
        name = self._queue_name(queue)
        delivery = self._call(lambda: self._native.get(name, auto_ack=auto_ack))
        if delivery is None:
            return None, None, None
        method = spec.Basic.GetOk._received(delivery.delivery_tag, delivery.redelivered, delivery.exchange,
                                            delivery.routing_key, delivery.message_count)
        return method, spec.BasicProperties.from_native(delivery.properties), delivery.body

    # --- consuming with callbacks
    def basic_qos(self, prefetch_size: int = 0, prefetch_count: int = 0, global_qos: bool = False) -> None:
        if prefetch_size:
            self._not_implemented(f"prefetch_size!=0 ({prefetch_size})")
        self._call(lambda: self._native.qos(prefetch_count, global_qos))

    def basic_consume(self, queue: str, on_message_callback: MessageCallback, auto_ack: bool = False,
                      exclusive: bool = False, consumer_tag: Optional[str] = None,
                      arguments: Optional[dict[str, Any]] = None) -> str:
        if not callable(on_message_callback):
            raise ValueError("callback on_message_callback must be callable; got %r" % (on_message_callback,))
        info = self._start_consumer(queue, on_message_callback, auto_ack, exclusive, consumer_tag, arguments)
        return info.consumer.consumer_tag

    def _start_consumer(self, queue: str, callback: Optional[MessageCallback], auto_ack: bool, exclusive: bool,
                        consumer_tag: Optional[str], arguments: Optional[dict[str, Any]] = None) -> _ConsumerInfo:
        if not isinstance(queue, str):
            raise TypeError("queue must be a str")
        if consumer_tag is not None and consumer_tag in self._consumers:
            raise exceptions.DuplicateConsumerTag(consumer_tag)
        import uuid  # here: uuid imports platform, which a publisher never needs

        tag = consumer_tag or f"ctag{self.channel_number}.{uuid.uuid4().hex}"
        name = self._queue_name(queue)
        priority = self._consumer_priority(name, arguments)
        if name == DIRECT_REPLY_TO:
            if not auto_ack:
                raise self._closed_by_broker(406, "reply consumer cannot acknowledge")
            if self._reply_queue is None:
                self._reply_queue = self._call(self._native._declare_reply_queue)
            name = self._reply_queue
        consumer = self._call(lambda: self._native.consume(name, auto_ack=auto_ack, exclusive=exclusive,
                                                           consumer_tag=tag, priority=priority))
        info = _ConsumerInfo(consumer, callback, auto_ack)
        self._consumers[tag] = info
        return info

    def _consumer_priority(self, queue: str, arguments: Optional[dict[str, Any]]) -> int:
        """``x-priority`` from basic_consume's arguments (0 without it): an integer, or RabbitMQ's 406."""
        if not arguments:
            return 0
        priority = spec._as_sent(dict(arguments)).get("x-priority", 0)  # what pika cannot encode fails as there
        if isinstance(priority, int) and not isinstance(priority, bool):
            return priority
        self._call(lambda: None)
        from decimal import Decimal

        kind = {type(None): "void", str: "longstr", bool: "bool", bytes: "bytes", dict: "table", list: "array",
                Decimal: "decimal", datetime: "timestamp"}.get(type(priority), type(priority).__name__)
        raise self._closed_by_broker(406, f"invalid arg 'x-priority' for queue {queue!r} in {self._native.path}: "
                                          f"expected integer, got {kind}")

    def basic_cancel(self, consumer_tag: str) -> list[PikaDelivery]:
        """Cancel a consumer. For an auto-ack consumer, returns the messages it had received but not dispatched."""
        info = self._consumers.pop(consumer_tag, None)
        if info is None:
            return []
        if self._generator is not None and self._generator[1] is info:
            self._generator = None
        pending = self._call(info.consumer.cancel)
        return [self._as_pika(delivery) for delivery in pending]

    def start_consuming(self) -> None:
        """Dispatch deliveries to the callbacks until every consumer of this channel is cancelled."""
        if self._connection._dispatch_depth:
            raise exceptions.ReentrancyError("start_consuming may not be called from the scope of another "
                                             "BlockingConnection or BlockingChannel callback")
        self._call(lambda: None)
        while self._callback_consumers():
            self._connection.process_data_events(time_limit=None)

    def stop_consuming(self, consumer_tag: Optional[str] = None) -> None:
        """Cancel one consumer, or every consumer of this channel, which ends start_consuming()."""
        for tag in [consumer_tag] if consumer_tag else list(self._consumers):
            self.basic_cancel(tag)

    def _callback_consumers(self) -> list[Consumer]:
        if self._closed:
            return []
        return [info.consumer for info in self._consumers.values()
                if info.callback is not None and info.consumer.active]

    def _dispatch_round(self) -> bool:
        """Returns, then at most one delivery to each consumer, then cancels; whether anything was dispatched. The
        connection runs rounds over all its channels until none dispatches anything: consumers take turns,
        across channels too, as RabbitMQ serves them."""
        handled = False
        while self._returned and self.is_open:
            returned = self._returned.popleft()
            for callback in list(self._on_return):
                callback(self, returned.method, returned.properties, returned.body)
            handled = True
        for tag, info in list(self._consumers.items()):
            if not self.is_open:
                break
            if info.callback is None or tag not in self._consumers:
                continue
            delivery = self._next(tag, info, 0)
            if delivery is not None:
                method, properties, body = self._as_pika(delivery)
                info.callback(self, method, properties, body)
                handled = True
        while self._cancelled and self.is_open:
            tag = self._cancelled.popleft()
            for on_cancel in list(self._on_cancel):
                on_cancel(Method(self.channel_number, spec.Basic.Cancel(consumer_tag=tag, nowait=True)))
            handled = True
        return handled

    def _next(self, tag: str, info: _ConsumerInfo, timeout: Optional[float]) -> Optional[Delivery]:
        """The consumer's next delivery, or None; a consumer whose queue was deleted is cancelled by the broker
        (its cancel callbacks run), without closing the channel."""
        def get() -> Optional[Delivery]:
            try:
                return info.consumer.get(timeout)
            except errors.QueueNotFound:
                if info.consumer.active:
                    raise
                return None

        delivery = self._call(get)
        if not info.consumer.active and self._consumers.get(tag) is info:
            del self._consumers[tag]
            self._cancelled.append(tag)
        return delivery

    def _as_pika(self, delivery: Delivery) -> PikaDelivery:
        method = spec.Basic.Deliver._received(delivery.consumer_tag, delivery.delivery_tag, delivery.redelivered,
                                              delivery.exchange, delivery.routing_key)
        return method, spec.BasicProperties.from_native(delivery.properties), delivery.body

    # --- consuming with a generator
    @overload
    def consume(self, queue: str, auto_ack: bool = False, exclusive: bool = False,
                arguments: Optional[dict[str, Any]] = None, inactivity_timeout: None = None,
                consumer_tag: Optional[str] = None) -> Iterator[PikaDelivery]: ...

    @overload
    def consume(self, queue: str, auto_ack: bool = False, exclusive: bool = False,
                arguments: Optional[dict[str, Any]] = None, inactivity_timeout: Optional[float] = None,
                consumer_tag: Optional[str] = None) -> Iterator[Union[PikaDelivery, Nothing]]: ...

    def consume(self, queue: str, auto_ack: bool = False, exclusive: bool = False,
                arguments: Optional[dict[str, Any]] = None, inactivity_timeout: Optional[float] = None,
                consumer_tag: Optional[str] = None) -> Iterator[Union[PikaDelivery, Nothing]]:
        """Yield ``(method, properties, body)`` for each delivery; ``(None, None, None)`` after
        ``inactivity_timeout`` seconds without one. Ends when cancelled (``cancel()``) or by the broker."""
        params = (queue, auto_ack, exclusive)
        if self._generator is None:
            info = self._start_consumer(queue, None, auto_ack, exclusive, consumer_tag, arguments)
            self._generator = (params, info)
        elif self._generator[0] != params:
            raise ValueError(f"Consume with different params not allowed on existing queue consumer generator; "
                             f"previous params: {self._generator[0]!r}; new params: {params!r}")
        info = self._generator[1]
        tag = info.consumer.consumer_tag
        while self._generator is not None and self._generator[1] is info and self.is_open:
            delivery = self._next(tag, info, inactivity_timeout)
            if delivery is None:
                if not info.consumer.active:
                    self._generator = None
                    return
                yield None, None, None
            else:
                yield self._as_pika(delivery)

    def get_waiting_message_count(self) -> int:
        """How many deliveries the consume() generator holds and can yield without waiting."""
        return len(self._generator[1].consumer._buffer) if self._generator else 0

    def cancel(self) -> int:
        """Cancel the consume() generator's consumer; what it held unseen goes back to the queue."""
        if self._generator is None:
            return 0
        tag = self._generator[1].consumer.consumer_tag
        self._generator = None
        self.basic_cancel(tag)
        return 0

    # --- settling
    def basic_ack(self, delivery_tag: int = 0, multiple: bool = False) -> None:
        """Fire-and-forget, as on RabbitMQ: committed by the connection's next write, within a few milliseconds, or
        at close (litemq's deferred ack); an unknown tag is refused at once."""
        self._call(lambda: self._native.ack(delivery_tag, multiple, deferred=True))

    def basic_nack(self, delivery_tag: int = 0, multiple: bool = False, requeue: bool = True) -> None:
        self._call(lambda: self._native.nack(delivery_tag, multiple, requeue))

    def basic_reject(self, delivery_tag: int = 0, requeue: bool = True) -> None:
        self._call(lambda: self._native.reject(delivery_tag, requeue))

    def basic_recover(self, requeue: bool = False) -> None:
        """Return every unacked delivery of this channel to its queue. RabbitMQ implements only ``requeue=True``
        (pika's default, False, closes the connection there: so here too)."""
        if not requeue:
            self._not_implemented("requeue=false")
        self._call(lambda: self._native.nack(0, multiple=True, requeue=True))

    # --- what litemq does not do
    def _not_implemented(self, what: str) -> NoReturn:
        self._call(lambda: None)
        # RabbitMQ closes the whole connection for these (540 NOT_IMPLEMENTED is a connection error).
        self._connection._shut(540, what)
        raise exceptions.ConnectionClosedByBroker(540, f"NOT_IMPLEMENTED - {what}")

    def flow(self, active: bool) -> bool:
        return True

    def tx_select(self) -> NoReturn:
        raise exceptions.MethodNotImplemented("AMQP transactions are not supported by litemq: each publish and "
                                              "ack commits on its own; use ack_and_publish for the RPC case")

    tx_commit = tx_select
    tx_rollback = tx_select


def _short(what: str, value: object) -> None:
    if isinstance(value, str) and len(value.encode("utf-8")) > 255:
        raise exceptions.ShortStringTooLong(value)
