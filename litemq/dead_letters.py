"""How a dead-lettered message is marked, as RabbitMQ marks it: the ``x-death`` history and the
``x-first-death-*`` / ``x-last-death-*`` headers, and RabbitMQ's rule for dead-letter cycles. Pure: no SQL."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping

from .message import Properties

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Optional

REASONS = ("rejected", "expired", "maxlen", "delivery_limit")


def dead_lettered(properties: Properties, queue: str, reason: str, exchange: str, routing_keys: list[str],
                  now: float) -> Properties:
    """The properties of a message dead-lettered from ``queue`` for ``reason``.

    ``x-death`` keeps one entry per (queue, reason), most recent first; a repeat counts up its entry and moves it
    to the front. The per-message ``expiration`` is removed (so the message does not expire again where it goes)
    and kept in the entry as ``original-expiration``."""
    headers = dict(properties.headers or {})
    deaths = [dict(d) for d in headers.get("x-death") or [] if isinstance(d, Mapping)]
    for i, death in enumerate(deaths):
        if death.get("queue") == queue and death.get("reason") == reason:
            death["count"] = int(death.get("count", 0)) + 1
            deaths.insert(0, deaths.pop(i))
            break
    else:
        entry: dict[str, Any] = {"count": 1, "reason": reason, "queue": queue,
                                 "time": _dt.datetime.fromtimestamp(int(now), _dt.timezone.utc),
                                 "exchange": exchange, "routing-keys": list(routing_keys)}
        if properties.expiration is not None:
            entry["original-expiration"] = properties.expiration
        deaths.insert(0, entry)
    headers["x-death"] = deaths
    if "x-first-death-queue" not in headers:
        headers["x-first-death-queue"] = queue
        headers["x-first-death-reason"] = reason
        headers["x-first-death-exchange"] = exchange
    headers["x-last-death-queue"] = queue
    headers["x-last-death-reason"] = reason
    headers["x-last-death-exchange"] = exchange
    return properties.replace(headers=headers, expiration=None)


def is_cycle(headers: Optional[Mapping[str, Any]], target: str, reason: str) -> bool:
    """Whether dead-lettering into ``target`` closes a cycle that no consumer took part in.

    RabbitMQ drops such a message (it would circulate forever); a cycle with a rejection in it is a consumer's
    choice, and goes on. ``headers`` are the dead-lettered message's, its newest death first."""
    if reason == "rejected":
        return False
    deaths = list((headers or {}).get("x-death") or [])
    for death in deaths:
        if not isinstance(death, Mapping) or death.get("reason") == "rejected":
            return False
        if death.get("queue") == target:
            return True
    return False
