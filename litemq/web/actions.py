"""What the page does to the broker, each through a connection opened for it and closed after: publish, get with
an ack mode, move (a dead-letter replay), purge, delete. Inputs come from forms or JSON and are checked here, as
the command checks its arguments (ValueError for a bad one)."""

from __future__ import annotations

import json
from typing import Any, Mapping, Optional

from ..shovel import move_ready
from ..message import Properties
from .source import Source, body_fields

ACK_MODES = {
    "requeue": "nack each, requeued (marked redelivered): the queue is left as it was",
    "ack": "acknowledge each: removed from the queue",
    "reject": "reject each without requeue: dead-lettered where the queue says, else dropped",
}
MAX_GET = 100


def _text(form: Mapping[str, Any], key: str, default: Optional[str] = None) -> str:
    value = form.get(key, default)
    if value is None:
        raise ValueError(f"{key} is missing")
    if not isinstance(value, str):
        raise ValueError(f"{key} must be text")
    return value


def _count(form: Mapping[str, Any], key: str, default: Optional[int], least: int = 1,
           most: Optional[int] = None) -> Optional[int]:
    value = form.get(key)
    if value in (None, ""):
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{key} must be a whole number, got {value!r}") from None
    if number < least or (most is not None and number > most):
        raise ValueError(f"{key} must be from {least} to {most}" if most else f"{key} must be at least {least}")
    return number


def _headers(form: Mapping[str, Any]) -> Optional[dict[str, Any]]:
    value = form.get("headers")
    if value in (None, ""):
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise ValueError("headers must be a JSON object, such as {\"x-retry\": 1}") from None
    if not isinstance(value, dict):
        raise ValueError("headers must be a JSON object")
    return value


def publish(source: Source, form: Mapping[str, Any]) -> dict[str, Any]:
    exchange, routing_key, body = _text(form, "exchange", ""), _text(form, "routing_key", ""), _text(form, "body", "")
    fields: dict[str, Any] = {}
    for key in ("content_type", "correlation_id", "reply_to", "message_id", "type", "app_id", "expiration"):
        if form.get(key) not in (None, ""):
            fields[key] = _text(form, key)
    for key in ("delivery_mode", "priority"):
        number = _count(form, key, None, least=0)
        if number is not None:
            fields[key] = number
    headers = _headers(form)
    if headers is not None:
        fields["headers"] = headers
    properties = Properties(**fields) if fields else None
    with source.connect() as conn:
        routed = conn.publish(exchange, routing_key, body, properties)
    return {"routed": routed}


def get(source: Source, queue: str, form: Mapping[str, Any]) -> dict[str, Any]:
    """Take up to ``count`` messages, then settle them as ``ackmode`` says."""
    mode = _text(form, "ackmode", "requeue")
    if mode not in ACK_MODES:
        raise ValueError(f"ackmode must be one of {', '.join(ACK_MODES)}, got {mode!r}")
    count = _count(form, "count", 1, most=MAX_GET)
    with source.connect() as conn:
        deliveries = []
        for _ in range(count or 1):
            delivery = conn.get(queue)
            if delivery is None:
                break
            deliveries.append(delivery)
        rows = [{"exchange": d.exchange, "routing_key": d.routing_key, **body_fields(d.body),
                 "properties": d.properties.set_fields(), "redelivered": d.redelivered} for d in deliveries]
        if deliveries:
            last = deliveries[-1].delivery_tag
            if mode == "ack":
                conn.ack(last, multiple=True)
            else:
                conn.nack(last, multiple=True, requeue=mode == "requeue")
    return {"messages": rows, "ackmode": mode}


def move(source: Source, queue: str, form: Mapping[str, Any]) -> dict[str, Any]:
    destination = _text(form, "destination")
    if destination == queue:
        raise ValueError("source and destination are the same queue")
    limit = _count(form, "limit", None)
    with source.connect() as conn:
        return {"moved": move_ready(conn, queue, destination, limit)}


def purge(source: Source, queue: str) -> dict[str, Any]:
    with source.connect() as conn:
        return {"purged": conn.purge_queue(queue)}


def delete(source: Source, queue: str, form: Mapping[str, Any]) -> dict[str, Any]:
    with source.connect() as conn:
        conn.declare_queue(queue, passive=True)
        return {"deleted": conn.delete_queue(queue, if_unused=_flag(form, "if_unused"),
                                             if_empty=_flag(form, "if_empty"))}


def _flag(form: Mapping[str, Any], key: str) -> bool:
    return form.get(key) in (True, "1", "true", "on", "yes")
