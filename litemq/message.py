"""Messages as values: properties, deliveries, and how properties are stored (JSON text, no pickle)."""

from __future__ import annotations

import datetime as _dt
import math
import sys
from collections.abc import Mapping

TYPE_CHECKING = False
if TYPE_CHECKING:
    import decimal
    import json
    from typing import Any, Optional, Protocol
else:
    from .runtime_types import Protocol

_SHORT_STR_FIELDS = (
    "content_type", "content_encoding", "correlation_id", "reply_to", "expiration",
    "message_id", "type", "user_id", "app_id", "cluster_id",
)


_SET = object.__setattr__
"""How an immutable value sets its fields (its own ``__setattr__`` refuses)."""


class _Value:
    """Immutable fields with equality, a hash and a repr: what ``dataclass(frozen=True)`` gives, without importing
    dataclasses (and inspect) in every process that imports litemq."""

    __slots__: tuple[str, ...] = ()
    _compared: tuple[str, ...] = ()

    def _set(self, values: dict[str, Any]) -> None:
        for name, value in values.items():
            _SET(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable: cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable: cannot delete {name!r}")

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self._compared)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._values() == other._values()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._compared)
        return f"{type(self).__name__}({shown})"

    def __reduce__(self) -> tuple[Any, ...]:
        return _rebuild, (type(self), {name: getattr(self, name) for name in self.__slots__ if hasattr(self, name)})


def _rebuild(cls: type, values: dict[str, Any]) -> Any:
    value = object.__new__(cls)
    value._set(values)
    return value


PROPERTY_NAMES = ("content_type", "content_encoding", "headers", "delivery_mode", "priority", "correlation_id",
                  "reply_to", "expiration", "message_id", "timestamp", "type", "user_id", "app_id", "cluster_id")


_PROPERTY_NAME_SET = frozenset(PROPERTY_NAMES)
_NO_PROPERTIES = dict.fromkeys(PROPERTY_NAMES)


class Properties(_Value):
    """AMQP basic properties, field for field as pika's ``BasicProperties``. Immutable; ``replace`` makes a
    changed copy."""

    __slots__ = (*PROPERTY_NAMES, "_encoded")  # _encoded: how encode_properties stored it, once computed
    _compared = PROPERTY_NAMES
    content_type: Optional[str]
    content_encoding: Optional[str]
    headers: Optional[Mapping[str, Any]]
    delivery_mode: Optional[int]
    priority: Optional[int]
    correlation_id: Optional[str]
    reply_to: Optional[str]
    expiration: Optional[str]
    message_id: Optional[str]
    timestamp: Optional[int]
    type: Optional[str]
    user_id: Optional[str]
    app_id: Optional[str]
    cluster_id: Optional[str]

    def __init__(self, content_type: Optional[str] = None, content_encoding: Optional[str] = None,
                 headers: Optional[Mapping[str, Any]] = None, delivery_mode: Optional[int] = None,
                 priority: Optional[int] = None, correlation_id: Optional[str] = None,
                 reply_to: Optional[str] = None, expiration: Optional[str] = None, message_id: Optional[str] = None,
                 timestamp: Optional[int] = None, type: Optional[str] = None, user_id: Optional[str] = None,
                 app_id: Optional[str] = None, cluster_id: Optional[str] = None) -> None:
        self._set({"content_type": content_type, "content_encoding": content_encoding, "headers": headers,
                   "delivery_mode": delivery_mode, "priority": priority, "correlation_id": correlation_id,
                   "reply_to": reply_to, "expiration": expiration, "message_id": message_id,
                   "timestamp": timestamp, "type": type, "user_id": user_id, "app_id": app_id,
                   "cluster_id": cluster_id})
        self._check()

    @classmethod
    def _stored(cls, fields: dict[str, Any]) -> "Properties":
        """Properties as the store kept them: checked as the constructor checks them, but for the headers' values,
        which decode from JSON (and litemq's tags) into field-table values only: a Celery message's headers took
        80 % of a delivery's decoding to check again."""
        unknown = set(fields) - _PROPERTY_NAME_SET
        if unknown:
            return cls(**fields)  # raises TypeError naming the field, as the constructor does
        value = object.__new__(cls)
        value._set({**_NO_PROPERTIES, **fields})
        value._check(headers=False)
        if value.headers is not None and not isinstance(value.headers, Mapping):
            raise TypeError(f"property headers must be a dict, not {type(value.headers).__name__}")
        return value

    def _check(self, headers: bool = True) -> None:
        for name in _SHORT_STR_FIELDS:
            value = getattr(self, name)
            if value is None:
                continue
            if not isinstance(value, str):
                raise TypeError(f"property {name} must be str, not {type(value).__name__}")
            if not (value.isascii() and len(value) <= 255) and len(_utf8(value, f"property {name}")) > 255:
                raise ValueError(f"property {name} is longer than 255 bytes")
        if self.expiration is not None and not (self.expiration.isascii() and self.expiration.isdigit()):
            raise ValueError(f"property expiration must be a string of milliseconds, got {self.expiration!r}")
        if self.delivery_mode is not None:
            if isinstance(self.delivery_mode, bool) or not isinstance(self.delivery_mode, int):
                raise TypeError("property delivery_mode must be an int (1 transient, 2 persistent)")
            if self.delivery_mode not in (1, 2):
                raise ValueError(f"property delivery_mode must be 1 or 2, got {self.delivery_mode}")
            object.__setattr__(self, "delivery_mode", int(self.delivery_mode))
        if self.priority is not None:
            if isinstance(self.priority, bool) or not isinstance(self.priority, int):
                raise TypeError("property priority must be an int from 0 to 255")
            if not 0 <= self.priority <= 255:
                raise ValueError(f"property priority must be from 0 to 255, got {self.priority}")
        if self.timestamp is not None:
            if isinstance(self.timestamp, bool) or not isinstance(self.timestamp, int):
                raise TypeError("property timestamp must be an int (seconds since the epoch)")
        if self.headers is not None and headers:
            if not isinstance(self.headers, Mapping):
                raise TypeError(f"property headers must be a dict, not {type(self.headers).__name__}")
            if not _plainly_valid(self.headers):
                _check_table(self.headers, "headers")

    def replace(self, **changes: Any) -> "Properties":
        """A copy with these fields changed (checked as the constructor checks them)."""
        return Properties(**{**self.set_fields(), **changes})

    def set_fields(self) -> dict[str, Any]:
        """The fields that are set (not None), by name."""
        return {name: value for name in PROPERTY_NAMES if (value := getattr(self, name)) is not None}

    @property
    def is_empty(self) -> bool:
        return all(getattr(self, name) is None for name in PROPERTY_NAMES)


EMPTY_PROPERTIES = Properties()


class Settles(Protocol):
    """What a delivery needs of the channel that delivered it (``broker.Channel``)."""

    def ack(self, delivery_tag: int, multiple: bool = False, *, deferred: bool = False) -> None:
        ...

    def nack(self, delivery_tag: int, multiple: bool = False, requeue: bool = True) -> None:
        ...

    def reject(self, delivery_tag: int, requeue: bool = True) -> None:
        ...


class Delivery(_Value):
    """A message handed to a consumer or to ``get``. Settle it with ``ack``, ``nack`` or ``reject``."""

    __slots__ = ("body", "properties", "exchange", "routing_key", "queue", "delivery_tag", "redelivered",
                 "delivery_count", "consumer_tag", "message_count", "_channel")
    _compared = __slots__[:-1]
    body: bytes
    properties: Properties
    exchange: str
    routing_key: str
    queue: str
    delivery_tag: int
    redelivered: bool
    delivery_count: int
    consumer_tag: Optional[str]
    message_count: Optional[int]
    """Ready messages left in the queue, on deliveries returned by ``get``."""
    _channel: Optional[Settles]

    def __init__(self, body: bytes, properties: Properties, exchange: str, routing_key: str, queue: str,
                 delivery_tag: int, redelivered: bool, delivery_count: int, consumer_tag: Optional[str] = None,
                 message_count: Optional[int] = None, _channel: Optional[Settles] = None) -> None:
        # One per delivery: set field by field, without the dict ``_set`` takes.
        _SET(self, "body", body)
        _SET(self, "properties", properties)
        _SET(self, "exchange", exchange)
        _SET(self, "routing_key", routing_key)
        _SET(self, "queue", queue)
        _SET(self, "delivery_tag", delivery_tag)
        _SET(self, "redelivered", redelivered)
        _SET(self, "delivery_count", delivery_count)
        _SET(self, "consumer_tag", consumer_tag)
        _SET(self, "message_count", message_count)
        _SET(self, "_channel", _channel)

    def ack(self, *, deferred: bool = False) -> None:
        """Acknowledge: the message is done and deleted, when this returns; with ``deferred``, by the connection's
        next write, within a few milliseconds, or at close (see ``Channel.ack``)."""
        if deferred:
            self._require_channel().ack(self.delivery_tag, deferred=True)
        else:
            self._require_channel().ack(self.delivery_tag)

    def nack(self, requeue: bool = True) -> None:
        """Negative acknowledge: back to its place in the queue, or dropped with ``requeue=False``."""
        self._require_channel().nack(self.delivery_tag, requeue=requeue)

    def reject(self, requeue: bool = True) -> None:
        """Reject this one message (as ``nack`` without ``multiple``)."""
        self._require_channel().reject(self.delivery_tag, requeue=requeue)

    def _require_channel(self) -> Settles:
        if self._channel is None:
            raise ValueError("this delivery was auto-acked; there is nothing to settle")
        return self._channel


MAX_HEADER_DEPTH = 100
"""How deep tables and lists may nest in headers (and arguments): a deeper one is refused when the properties are
made, before anything is stored; decoding it at every get would need more of Python's recursion limit than a
consumer's call stack can spare."""


def _utf8(text: str, where: str) -> bytes:
    """The text as UTF-8; a lone surrogate (which UTF-8 cannot carry, nor pika send) is refused, naming ``where``."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:  # pika raises this same error at basic_publish
        raise UnicodeEncodeError(exc.encoding, exc.object, exc.start, exc.end, f"{exc.reason} in {where}") from None


_PLAIN_SCALARS = frozenset({str, int, bool, float, type(None), bytes, _dt.datetime})
_PLAIN_DEPTH = 16
"""How deep ``_plainly_valid`` looks; deeper tables take the checks that name what is wrong."""


def _plainly_valid(table: Mapping[str, Any], depth: int = 1) -> bool:
    """Whether a table passes ``_check_table`` at a glance: ASCII keys and strings, values of the common exact
    types. Publishing a Celery task checks some twenty headers; the checks below build a description of each
    value's place in case it is wrong, which cost more than the publish's SQL. False sends it to those checks."""
    if depth > _PLAIN_DEPTH or type(table) is not dict:
        return False
    for key, value in table.items():
        if type(key) is not str or len(key) > 255 or not key.isascii() or "\x00" in key:
            return False
        kind = type(value)
        if kind is str:
            if not value.isascii():
                return False
        elif kind is dict:
            if not _plainly_valid(value, depth + 1):
                return False
        elif kind is list or kind is tuple:
            if not all(type(item) in _PLAIN_SCALARS and (type(item) is not str or item.isascii())
                       for item in value):
                return False
        elif kind not in _PLAIN_SCALARS:
            return False
    return True


def _check_table(table: Mapping[str, Any], where: str, depth: int = 1) -> None:
    if depth > MAX_HEADER_DEPTH:
        raise ValueError(f"{where.split('[')[0]} nest deeper than {MAX_HEADER_DEPTH} levels")
    for key, value in table.items():
        if not isinstance(key, str):
            raise TypeError(f"{where} keys must be str, got {key!r}")
        if len(_utf8(key, f"{where} key {key!r}")) > 255:
            raise ValueError(f"{where} key {key[:40]!r}... is longer than 255 bytes")
        if "\x00" in key:
            raise ValueError(f"{where} key {key!r} contains a NUL character")
        _check_value(value, f"{where}[{key!r}]", depth)


def _check_value(value: Any, where: str, depth: int) -> None:
    if isinstance(value, str):
        _utf8(value, where)
    elif value is None or isinstance(value, (bytes, bool, int, float, _dt.datetime)) or _is_decimal(value):
        return
    elif isinstance(value, Mapping):
        _check_table(value, where, depth + 1)
    elif isinstance(value, (list, tuple)):
        if depth >= MAX_HEADER_DEPTH:
            raise ValueError(f"{where.split('[')[0]} nest deeper than {MAX_HEADER_DEPTH} levels")
        for i, item in enumerate(value):
            _check_value(item, f"{where}[{i}]", depth + 1)
    else:
        raise TypeError(f"{where}: unsupported header value type {type(value).__name__}")


# Stored form: compact JSON of the set fields only; NULL when none is set. JSON has no bytes, datetime or
# Decimal (nor NaN and infinities), so those become objects tagged by the key "$litemq"; a header table of the
# user's that has that key itself is tagged too ("table", its items as pairs), so no table is ever mistaken for a
# tag. The tag of litemq 0.x files, a key starting with NUL, is still read: PostgreSQL's JSON refuses "\u0000".
_TAG = "$litemq"
_OLD_TAG = "\u0000litemq"


# json, base64 and decimal are imported where a table or properties are first encoded or decoded, never at
# import: with the re module json brings, they were a sixth of a one-shot publisher's start, which has neither.
def _is_decimal(value: object) -> bool:
    # A Decimal exists only once its module was imported: no need to import it to ask.
    decimal = sys.modules.get("decimal")
    return decimal is not None and isinstance(value, decimal.Decimal)


def _encode_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return {_TAG: "float", "v": repr(value)}  # JSON has no NaN or Infinity
    if isinstance(value, bytes):
        import base64

        return {_TAG: "bytes", "v": base64.b64encode(value).decode("ascii")}
    if isinstance(value, _dt.datetime):
        return {_TAG: "datetime", "v": value.isoformat()}
    if _is_decimal(value):
        return {_TAG: "decimal", "v": str(value)}
    if isinstance(value, Mapping):
        if _TAG in value:
            return {_TAG: "table", "v": [[k, _encode_value(v)] for k, v in value.items()]}
        return {k: _encode_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode_value(v) for v in value]
    return value


def _untagged(value: Any) -> Any:
    raise ValueError(f"{type(value).__name__} takes a tag")


_KINDS = frozenset({"bytes", "datetime", "float", "decimal", "table"})


def _decode_object(obj: dict[str, Any]) -> Any:
    kind = obj.get(_TAG) or obj.get(_OLD_TAG)
    if kind not in _KINDS or len(obj) != 2:
        return obj
    if kind == "bytes":
        import base64

        return base64.b64decode(obj["v"])
    if kind == "datetime":
        return _dt.datetime.fromisoformat(obj["v"])
    if kind == "float":
        return float(obj["v"])
    if kind == "table":
        return dict(obj["v"])
    import decimal

    return decimal.Decimal(obj["v"])


_properties_decoder: Optional[json.JSONDecoder] = None


def encode_table(table: Optional[Mapping[str, Any]]) -> Optional[str]:
    """An AMQP field table (headers, arguments) as canonical JSON, or None when empty."""
    if not table:
        return None
    import json

    return json.dumps(_encode_value(table), separators=(",", ":"), ensure_ascii=False, sort_keys=True)


def decode_table(text: Optional[str]) -> dict[str, Any]:
    if not text:
        return {}
    import json

    value: dict[str, Any] = json.loads(text, object_hook=_decode_object)
    return value


_UNENCODED = object()


def encode_properties(properties: Properties) -> Optional[str]:
    encoded = getattr(properties, "_encoded", _UNENCODED)
    if encoded is not _UNENCODED:
        return encoded  # type: ignore[no-any-return]
    data = properties.set_fields()
    if not data:
        encoded = None
    else:
        import json

        encoded = None
        if "headers" in data:
            try:
                # Headers JSON takes as they are (the common case) need no tags: encoded in one pass, in C.
                encoded = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False,
                                     default=_untagged)
            except ValueError:  # NaN or an infinity, or a value JSON has no form for
                encoded = None
            if encoded is not None and f'"{_TAG}"' in encoded:
                encoded = None  # a table with the tag's key (or that text as a value): tagged below
            if encoded is None:
                data["headers"] = _encode_value(data["headers"])
        if encoded is None:
            encoded = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    if properties.headers is None:  # headers can be a dict its owner changes later: never kept
        object.__setattr__(properties, "_encoded", encoded)
    return encoded


_DECODED_MAX = 256
_decoded: dict[str, Properties] = {}


def decode_properties(text: Optional[str]) -> Properties:
    global _properties_decoder
    if text is None:
        return EMPTY_PROPERTIES
    properties = _decoded.get(text)
    if properties is None:
        if _properties_decoder is None:
            import json

            _properties_decoder = json.JSONDecoder(object_hook=_decode_object)
        properties = Properties._stored(_properties_decoder.decode(text))
        if properties.headers is None:  # then it holds nothing mutable, and one serves every message stored so
            if len(_decoded) >= _DECODED_MAX:
                _decoded.clear()
            _decoded[text] = properties
    return properties


Body = bytes | bytearray | memoryview | str
"""What a message body may be given as: bytes (bytearray and memoryview are copied), or str (encoded as UTF-8)."""


def encode_body(body: object) -> bytes:
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        try:
            return body.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError(f"message body is a str that UTF-8 cannot encode ({exc.reason} at position "
                             f"{exc.start}): pass bytes") from None
    if isinstance(body, (bytearray, memoryview)):
        return bytes(body)
    raise TypeError(f"message body must be bytes or str, not {type(body).__name__}")
