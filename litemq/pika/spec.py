"""The AMQP method and property classes pika programs use, with pika's names and attributes."""

from __future__ import annotations

from datetime import datetime, timezone
from enum import Enum
from operator import attrgetter
from typing import Any, Optional, TypeVar

from ..message import EMPTY_PROPERTIES, PROPERTY_NAMES, Properties
from . import exceptions

TRANSIENT_DELIVERY_MODE = 1
PERSISTENT_DELIVERY_MODE = 2
FRAME_MAX_SIZE = 131072

REPLY_SUCCESS = 200
NO_ROUTE = 312
ACCESS_REFUSED = 403
NOT_FOUND = 404
RESOURCE_LOCKED = 405
PRECONDITION_FAILED = 406
COMMAND_INVALID = 503


class DeliveryMode(Enum):
    Transient = 1
    Persistent = 2


class ExchangeType(str, Enum):
    direct = "direct"
    fanout = "fanout"
    headers = "headers"
    topic = "topic"


M = TypeVar("M", bound="_Method")


class _Method:
    """An AMQP method with named fields, shown as pika shows them. Each is a class of its own, as in pika, so a
    callback can be annotated ``method: spec.Basic.Deliver`` and its fields are typed."""

    NAME = ""
    FIELDS: tuple[str, ...] = ()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        values = dict(zip(self.FIELDS, args))
        values.update(kwargs)
        for name in self.FIELDS:
            setattr(self, name, values.get(name))

    @classmethod
    def _received(cls: type[M], *values: Any) -> M:
        """One as litemq hands it out, from every field's value in FIELDS order: without the dict of arguments
        ``__init__`` builds (one per delivery)."""
        method = cls.__new__(cls)
        method.__dict__.update(zip(cls.FIELDS, values))
        return method

    def __repr__(self) -> str:
        fields = [f"{name}={getattr(self, name)!r}" for name in self.FIELDS]
        return f"<{self.NAME}({fields})>"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and vars(other) == vars(self)


class Basic:
    class Deliver(_Method):
        NAME, FIELDS = "Basic.Deliver", ("consumer_tag", "delivery_tag", "redelivered", "exchange", "routing_key")
        consumer_tag: str
        delivery_tag: int
        redelivered: bool
        exchange: str
        routing_key: str

    class GetOk(_Method):
        NAME, FIELDS = "Basic.GetOk", ("delivery_tag", "redelivered", "exchange", "routing_key", "message_count")
        delivery_tag: int
        redelivered: bool
        exchange: str
        routing_key: str
        message_count: int

    class GetEmpty(_Method):
        NAME = "Basic.GetEmpty"

    class Return(_Method):
        NAME, FIELDS = "Basic.Return", ("reply_code", "reply_text", "exchange", "routing_key")
        reply_code: int
        reply_text: str
        exchange: str
        routing_key: str

    class Cancel(_Method):
        NAME, FIELDS = "Basic.Cancel", ("consumer_tag", "nowait")
        consumer_tag: str
        nowait: bool

    class CancelOk(_Method):
        NAME, FIELDS = "Basic.CancelOk", ("consumer_tag",)
        consumer_tag: str

    class ConsumeOk(_Method):
        NAME, FIELDS = "Basic.ConsumeOk", ("consumer_tag",)
        consumer_tag: str

    class QosOk(_Method):
        NAME = "Basic.QosOk"

    class Ack(_Method):
        NAME, FIELDS = "Basic.Ack", ("delivery_tag", "multiple")
        delivery_tag: int
        multiple: bool

    class Nack(_Method):
        NAME, FIELDS = "Basic.Nack", ("delivery_tag", "multiple", "requeue")
        delivery_tag: int
        multiple: bool
        requeue: bool

    class RecoverOk(_Method):
        NAME = "Basic.RecoverOk"


class Queue:
    class DeclareOk(_Method):
        NAME, FIELDS = "Queue.DeclareOk", ("queue", "message_count", "consumer_count")
        queue: str
        message_count: int
        consumer_count: int

    class DeleteOk(_Method):
        NAME, FIELDS = "Queue.DeleteOk", ("message_count",)
        message_count: int

    class PurgeOk(_Method):
        NAME, FIELDS = "Queue.PurgeOk", ("message_count",)
        message_count: int

    class BindOk(_Method):
        NAME = "Queue.BindOk"

    class UnbindOk(_Method):
        NAME = "Queue.UnbindOk"


class Exchange:
    class DeclareOk(_Method):
        NAME = "Exchange.DeclareOk"

    class DeleteOk(_Method):
        NAME = "Exchange.DeleteOk"

    class BindOk(_Method):
        NAME = "Exchange.BindOk"

    class UnbindOk(_Method):
        NAME = "Exchange.UnbindOk"


class Confirm:
    class SelectOk(_Method):
        NAME = "Confirm.SelectOk"


class Tx:
    class SelectOk(_Method):
        NAME = "Tx.SelectOk"

    class CommitOk(_Method):
        NAME = "Tx.CommitOk"

    class RollbackOk(_Method):
        NAME = "Tx.RollbackOk"


_NATIVE: dict[tuple[tuple[Any, ...], tuple[type, ...]], Properties] = {}
_NATIVE_MAX = 256


class BasicProperties:
    """pika's message properties: every field optional and settable."""

    def __init__(self, content_type: Optional[str] = None, content_encoding: Optional[str] = None,
                 headers: Optional[dict[str, Any]] = None, delivery_mode: Any = None, priority: Optional[int] = None,
                 correlation_id: Optional[str] = None, reply_to: Optional[str] = None,
                 expiration: Optional[str] = None, message_id: Optional[str] = None,
                 timestamp: Optional[int] = None, type: Optional[str] = None, user_id: Optional[str] = None,
                 app_id: Optional[str] = None, cluster_id: Optional[str] = None) -> None:
        self.content_type = content_type
        self.content_encoding = content_encoding
        self.headers = headers
        self.delivery_mode = delivery_mode.value if isinstance(delivery_mode, DeliveryMode) else delivery_mode
        self.priority = priority
        self.correlation_id = correlation_id
        self.reply_to = reply_to
        self.expiration = expiration
        self.message_id = message_id
        self.timestamp = timestamp
        self.type = type
        self.user_id = user_id
        self.app_id = app_id
        self.cluster_id = cluster_id

    def __repr__(self) -> str:
        fields = [f"{name}={getattr(self, name)!r}" for name in PROPERTY_NAMES if getattr(self, name) is not None]
        return f"<BasicProperties({fields})>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BasicProperties) and vars(other) == vars(self)

    def to_native(self) -> Properties:
        values = tuple(getattr(self, name) for name in PROPERTY_NAMES)
        # The same settings give the same immutable Properties, checked and encoded once. By type as well as value
        # (True == 1, 2.0 == 2: those must still be refused), and never with headers (a dict, changed at will).
        key = None if values[2] is not None else (values, tuple(map(type, values)))
        try:
            native = _NATIVE.get(key) if key is not None else None
        except TypeError:  # a value that cannot be hashed: checked (and refused) below
            key = native = None
        if native is not None:
            return native
        fields = dict(zip(PROPERTY_NAMES, values))
        if fields["headers"] is not None:
            fields["headers"] = _as_sent(fields["headers"])
        if isinstance(fields["delivery_mode"], DeliveryMode):
            fields["delivery_mode"] = fields["delivery_mode"].value
        native = Properties(**fields)
        if key is not None:
            if len(_NATIVE) >= _NATIVE_MAX:
                _NATIVE.clear()
            _NATIVE[key] = native
        return native

    @classmethod
    def from_native(cls, properties: Properties) -> "BasicProperties":
        received = cls.__new__(cls)  # its fields as they are: checked already (1.5 -> 0.9 us a get)
        if properties is EMPTY_PROPERTIES:  # most messages': a copy of the fields read once (a dict's copy is quickest)
            received.__dict__ = _EMPTY_FIELDS.copy()
        else:
            received.__dict__.update(zip(PROPERTY_NAMES, _property_values(properties)))
        return received


_property_values = attrgetter(*PROPERTY_NAMES)
_EMPTY_FIELDS = dict(zip(PROPERTY_NAMES, _property_values(EMPTY_PROPERTIES)))


def _as_sent(value: Any) -> Any:
    """A header value as pika puts it on the wire and RabbitMQ gives it back: refused where pika cannot encode it
    (a float, a tuple, an int past 64 bits), so code tried here fails here as it would there; a datetime as whole
    seconds in UTC. Tables and lists are copied on the way."""
    # calendar and decimal are imported here, not by every process that imports litemq.pika.
    if value is None or isinstance(value, (str, bytes, bool)):
        return value
    if isinstance(value, int):
        if not -2 ** 63 <= value < 2 ** 63:
            raise exceptions.UnsupportedAMQPFieldException([], value)  # pika: a struct.error as it packs it
        return value
    if isinstance(value, datetime):
        import calendar

        return datetime.fromtimestamp(calendar.timegm(value.utctimetuple()), timezone.utc)
    if isinstance(value, dict):
        return {key: _as_sent(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_as_sent(item) for item in value]
    from decimal import Decimal

    if isinstance(value, Decimal):
        return value
    raise exceptions.UnsupportedAMQPFieldException([], value)
