"""aio-pika's ``Message`` and ``IncomingMessage`` over litemq's values.

A ``Message`` becomes a litemq ``Properties`` as aio-pika sends it: ``expiration`` in seconds (a number, a
``timedelta`` or a ``datetime``) goes out as milliseconds, ``timestamp`` (a ``datetime`` or a number) as whole
seconds, ``delivery_mode`` as 1 or 2. An ``IncomingMessage`` reads them back the way aio-pika does."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from enum import Enum, IntEnum
from typing import Any, Mapping, Optional, Union

from ..aio.delivery import AsyncDelivery, Processing
from ..message import Properties
from .exceptions import MessageProcessError

DateType = Union[int, float, datetime, timedelta, None]


class DeliveryMode(IntEnum):
    NOT_PERSISTENT = 1
    PERSISTENT = 2


class ExchangeType(str, Enum):
    FANOUT = "fanout"
    DIRECT = "direct"
    TOPIC = "topic"
    HEADERS = "headers"
    X_DELAYED_MESSAGE = "x-delayed-message"


class Message:
    """A message to publish: ``Message(b"body", delivery_mode=DeliveryMode.PERSISTENT, ...)``."""

    def __init__(self, body: bytes, *, headers: Optional[Mapping[str, Any]] = None,
                 content_type: Optional[str] = None, content_encoding: Optional[str] = None,
                 delivery_mode: Union[DeliveryMode, int, None] = None, priority: Optional[int] = None,
                 correlation_id: Optional[str] = None, reply_to: Optional[str] = None, expiration: DateType = None,
                 message_id: Optional[str] = None, timestamp: DateType = None, type: Optional[str] = None,
                 user_id: Optional[str] = None, app_id: Optional[str] = None) -> None:
        self.body = body if isinstance(body, bytes) else bytes(body)
        self.body_size = len(self.body)
        self.headers: dict[str, Any] = dict(headers or {})
        self.content_type = content_type
        self.content_encoding = content_encoding
        self.delivery_mode = DeliveryMode(int(delivery_mode or DeliveryMode.NOT_PERSISTENT))
        self.priority = 0 if priority is None else int(priority)
        self.correlation_id = correlation_id
        self.reply_to = reply_to
        self.expiration = expiration
        self.message_id = message_id
        self.timestamp = _as_datetime(timestamp)
        self.type = type
        self.user_id = user_id
        self.app_id = app_id

    @property
    def properties(self) -> Properties:
        """As litemq stores it."""
        return Properties(headers=self.headers or None, content_type=self.content_type,
                          content_encoding=self.content_encoding, delivery_mode=int(self.delivery_mode),
                          priority=self.priority, correlation_id=self.correlation_id, reply_to=self.reply_to,
                          expiration=_milliseconds(self.expiration), message_id=self.message_id,
                          timestamp=None if self.timestamp is None else int(self.timestamp.timestamp()),
                          type=self.type, user_id=self.user_id, app_id=self.app_id)

    def __repr__(self) -> str:
        return f"{type(self).__name__}:{{body_size={self.body_size}, delivery_mode={self.delivery_mode.name}}}"


class IncomingMessage(Message):
    """A delivered message: its fields, ``await ack()``, ``nack()``, ``reject()`` and ``process()``."""

    def __init__(self, delivery: AsyncDelivery, no_ack: bool = False) -> None:
        properties = delivery.properties
        super().__init__(delivery.body, headers=properties.headers, content_type=properties.content_type,
                         content_encoding=properties.content_encoding, delivery_mode=properties.delivery_mode,
                         priority=properties.priority, correlation_id=properties.correlation_id,
                         reply_to=properties.reply_to,
                         expiration=None if properties.expiration is None else float(properties.expiration) / 1000,
                         message_id=properties.message_id, timestamp=properties.timestamp, type=properties.type,
                         user_id=properties.user_id, app_id=properties.app_id)
        self.cluster_id = properties.cluster_id
        self.consumer_tag = delivery.consumer_tag
        self.delivery_tag = delivery.delivery_tag
        self.exchange = delivery.exchange
        self.message_count = delivery.message_count
        self.redelivered = delivery.redelivered
        self.routing_key = delivery.routing_key
        self._delivery = delivery
        self.processed = no_ack or delivery.processed

    async def ack(self, multiple: bool = False) -> None:
        self._check_unsettled()
        await self._delivery._channel.ack(self.delivery_tag, multiple)
        self.processed = True

    async def nack(self, multiple: bool = False, requeue: bool = True) -> None:
        self._check_unsettled()
        await self._delivery._channel.nack(self.delivery_tag, multiple, requeue)
        self.processed = True

    async def reject(self, requeue: bool = False) -> None:
        self._check_unsettled()
        await self._delivery.reject(requeue=requeue)
        self.processed = True

    def _check_unsettled(self) -> None:
        if self.processed:
            raise MessageProcessError("Message already processed", self)

    def process(self, requeue: bool = False, reject_on_redelivered: bool = False,
                ignore_processed: bool = False) -> "Processing[IncomingMessage]":
        """``async with message.process():`` acks when the block ends normally, rejects when it raises (see
        ``litemq.aio.AsyncDelivery.process``)."""
        return Processing(self, requeue=requeue, reject_on_redelivered=reject_on_redelivered,
                          ignore_processed=ignore_processed)

    def info(self) -> dict[str, Any]:
        return {"body_size": self.body_size, "headers": self.headers, "content_type": self.content_type,
                "content_encoding": self.content_encoding, "delivery_mode": self.delivery_mode,
                "priority": self.priority, "correlation_id": self.correlation_id, "reply_to": self.reply_to,
                "expiration": self.expiration, "message_id": self.message_id, "timestamp": self.timestamp,
                "type": self.type, "user_id": self.user_id, "app_id": self.app_id, "cluster_id": self.cluster_id,
                "consumer_tag": self.consumer_tag, "delivery_tag": self.delivery_tag, "exchange": self.exchange,
                "redelivered": self.redelivered, "routing_key": self.routing_key}


def _milliseconds(expiration: DateType) -> Optional[str]:
    if expiration is None:
        return None
    if isinstance(expiration, datetime):
        seconds = (expiration - datetime.now(tz=expiration.tzinfo)).total_seconds()
    elif isinstance(expiration, timedelta):
        seconds = expiration.total_seconds()
    else:
        seconds = float(expiration)
    return str(max(0, int(seconds * 1000)))


def _as_datetime(value: DateType) -> Optional[datetime]:
    if value is None or isinstance(value, datetime):
        return value
    if isinstance(value, timedelta):
        return datetime.now(tz=timezone.utc) + value
    return datetime.fromtimestamp(value, tz=timezone.utc)

