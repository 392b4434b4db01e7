"""Messages as values: properties, deliveries, and how properties are stored (JSON text, no pickle)."""

from __future__ import annotations

import base64
import datetime as _dt
import decimal
import json
import math
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Mapping, Optional

if TYPE_CHECKING:
    from .broker import Channel

_SHORT_STR_FIELDS = (
    "content_type", "content_encoding", "correlation_id", "reply_to", "expiration",
    "message_id", "type", "user_id", "app_id", "cluster_id",
)


@dataclass(frozen=True)
class Properties:
    """AMQP basic properties, field for field as pika's ``BasicProperties``."""

    content_type: Optional[str] = None
    content_encoding: Optional[str] = None
    headers: Optional[Mapping[str, Any]] = None
    delivery_mode: Optional[int] = None
    priority: Optional[int] = None
    correlation_id: Optional[str] = None
    reply_to: Optional[str] = None
    expiration: Optional[str] = None
    message_id: Optional[str] = None
    timestamp: Optional[int] = None
    type: Optional[str] = None
    user_id: Optional[str] = None
    app_id: Optional[str] = None
    cluster_id: Optional[str] = None

    def __post_init__(self) -> None:
        for name in _SHORT_STR_FIELDS:
            value = getattr(self, name)
            if value is None:
                continue
            if not isinstance(value, str):
                raise TypeError(f"property {name} must be str, not {type(value).__name__}")
            if len(value.encode("utf-8")) > 255:
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
        if self.headers is not None:
            if not isinstance(self.headers, Mapping):
                raise TypeError(f"property headers must be a dict, not {type(self.headers).__name__}")
            _check_table(self.headers, "headers")

    @property
    def is_empty(self) -> bool:
        return all(getattr(self, f.name) is None for f in fields(self))


EMPTY_PROPERTIES = Properties()


@dataclass(frozen=True)
class Delivery:
    """A message handed to a consumer or to ``get``. Settle it with ``ack``, ``nack`` or ``reject``."""

    body: bytes
    properties: Properties
    exchange: str
    routing_key: str
    queue: str
    delivery_tag: int
    redelivered: bool
    delivery_count: int
    consumer_tag: Optional[str] = None
    message_count: Optional[int] = None
    """Ready messages left in the queue, on deliveries returned by ``get``."""
    _channel: Optional["Channel"] = field(default=None, repr=False, compare=False)

    def ack(self) -> None:
        """Acknowledge: the message is done and deleted."""
        self._require_channel().ack(self.delivery_tag)

    def nack(self, requeue: bool = True) -> None:
        """Negative acknowledge: back to its place in the queue, or dropped with ``requeue=False``."""
        self._require_channel().nack(self.delivery_tag, requeue=requeue)

    def reject(self, requeue: bool = True) -> None:
        """Reject this one message (as ``nack`` without ``multiple``)."""
        self._require_channel().reject(self.delivery_tag, requeue=requeue)

    def _require_channel(self) -> "Channel":
        if self._channel is None:
            raise ValueError("this delivery was auto-acked; there is nothing to settle")
        return self._channel


def _check_table(table: Mapping[str, Any], where: str) -> None:
    for key, value in table.items():
        if not isinstance(key, str):
            raise TypeError(f"{where} keys must be str, got {key!r}")
        if len(key.encode("utf-8")) > 255:
            raise ValueError(f"{where} key {key[:40]!r}... is longer than 255 bytes")
        if "\x00" in key:
            raise ValueError(f"{where} key {key!r} contains a NUL character")
        _check_value(value, f"{where}[{key!r}]")


def _check_value(value: Any, where: str) -> None:
    if value is None or isinstance(value, (str, bytes, bool, int, float, decimal.Decimal, _dt.datetime)):
        return
    if isinstance(value, Mapping):
        _check_table(value, where)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_value(item, f"{where}[{i}]")
    else:
        raise TypeError(f"{where}: unsupported header value type {type(value).__name__}")


# Stored form: compact JSON of the set fields only; NULL when none is set. JSON has no bytes, datetime or
# Decimal (nor NaN and infinities), so those become objects tagged by a key that starts with NUL, which header keys may not contain.
_TAG = "\u0000litemq"


def _encode_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return {_TAG: "float", "v": repr(value)}  # JSON has no NaN or Infinity
    if isinstance(value, bytes):
        return {_TAG: "bytes", "v": base64.b64encode(value).decode("ascii")}
    if isinstance(value, _dt.datetime):
        return {_TAG: "datetime", "v": value.isoformat()}
    if isinstance(value, decimal.Decimal):
        return {_TAG: "decimal", "v": str(value)}
    if isinstance(value, Mapping):
        return {k: _encode_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode_value(v) for v in value]
    return value


def _decode_object(obj: dict[str, Any]) -> Any:
    kind = obj.get(_TAG)
    if kind is None:
        return obj
    if kind == "bytes":
        return base64.b64decode(obj["v"])
    if kind == "datetime":
        return _dt.datetime.fromisoformat(obj["v"])
    if kind == "float":
        return float(obj["v"])
    return decimal.Decimal(obj["v"])


def encode_table(table: Optional[Mapping[str, Any]]) -> Optional[str]:
    """An AMQP field table (headers, arguments) as canonical JSON, or None when empty."""
    if not table:
        return None
    return json.dumps(_encode_value(table), separators=(",", ":"), ensure_ascii=False, sort_keys=True)


def decode_table(text: Optional[str]) -> dict[str, Any]:
    if not text:
        return {}
    value: dict[str, Any] = json.loads(text, object_hook=_decode_object)
    return value


def encode_properties(properties: Properties) -> Optional[str]:
    if properties is EMPTY_PROPERTIES:
        return None
    data = {f.name: getattr(properties, f.name) for f in fields(properties) if getattr(properties, f.name) is not None}
    if not data:
        return None
    if "headers" in data:
        data["headers"] = _encode_value(data["headers"])
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def decode_properties(text: Optional[str]) -> Properties:
    if text is None:
        return EMPTY_PROPERTIES
    return Properties(**json.loads(text, object_hook=_decode_object))


def encode_body(body: Any) -> bytes:
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode("utf-8")
    if isinstance(body, (bytearray, memoryview)):
        return bytes(body)
    raise TypeError(f"message body must be bytes or str, not {type(body).__name__}")
