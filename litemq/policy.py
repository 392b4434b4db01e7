"""What a queue's or an exchange's x-arguments ask for (TTLs, limits, dead-lettering, priorities, alternate
exchanges, delayed delivery), checked with RabbitMQ's rules. Pure: no SQL, no clock.

Arguments are fixed when a queue or exchange is declared (a different redeclare is refused), so a policy is parsed
once per distinct arguments text and cached."""

from __future__ import annotations

import functools
import math

from .errors import PreconditionFailed
from .message import decode_table
from .routing import DELAYED_EXCHANGE, EXCHANGE_TYPES

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Mapping, NamedTuple, Optional
else:
    from .runtime_types import NamedTuple

LEASE_ARGUMENT = "x-lease-ms"
"""Queue argument: how long, in milliseconds, a delivery from this queue stays leased to its consumer."""
OVERFLOW_BEHAVIOURS = ("drop-head", "reject-publish", "reject-publish-dlx")
QUEUE_TYPES = ("classic", "quorum")
MAX_PRIORITY = 255


class QueuePolicy(NamedTuple):
    message_ttl: Optional[float] = None
    """Seconds a message may wait in the queue (``x-message-ttl``)."""
    expires: Optional[float] = None
    """Seconds the queue may stay unused before it is deleted (``x-expires``)."""
    max_length: Optional[int] = None
    max_length_bytes: Optional[int] = None
    overflow: str = "drop-head"
    dead_letter_exchange: Optional[str] = None
    dead_letter_routing_key: Optional[str] = None
    max_priority: Optional[int] = None
    delivery_limit: Optional[int] = None
    single_active_consumer: bool = False
    queue_type: str = "classic"
    lease_seconds: Optional[float] = None

    @property
    def limited(self) -> bool:
        return self.max_length is not None or self.max_length_bytes is not None

    @property
    def plain(self) -> bool:
        """Nothing to do for a message on its way in beyond storing it."""
        return self.message_ttl is None and not self.limited and self.max_priority is None

    def priority_of(self, priority: Optional[int]) -> int:
        """RabbitMQ's rule: no priority counts as 0, one above the queue's maximum as the maximum."""
        if self.max_priority is None or priority is None:
            return 0
        return min(priority, self.max_priority)

    def over_limit(self, ready: int, ready_bytes: int) -> bool:
        return ((self.max_length is not None and ready > self.max_length)
                or (self.max_length_bytes is not None and ready_bytes > self.max_length_bytes))


class ExchangePolicy(NamedTuple):
    alternate_exchange: Optional[str] = None
    delayed_type: Optional[str] = None
    """The type a ``x-delayed-message`` exchange routes as."""


MAX_EXPIRY_MS = 315_360_000_000
"""The longest x-message-ttl and x-expires RabbitMQ takes: ten years of milliseconds."""

PLAIN_QUEUE = QueuePolicy()
PLAIN_EXCHANGE = ExchangePolicy()


@functools.lru_cache(maxsize=4096)
def queue_policy(arguments: Optional[str]) -> QueuePolicy:
    """The policy stored queue arguments (JSON text, as the store keeps them) ask for."""
    if arguments is None:
        return PLAIN_QUEUE
    return parse_queue_arguments(decode_table(arguments), "?", "", declaring=False)


@functools.lru_cache(maxsize=1024)
def exchange_policy(arguments: Optional[str]) -> ExchangePolicy:
    if arguments is None:
        return PLAIN_EXCHANGE
    args = decode_table(arguments)
    alternate = args.get("alternate-exchange")
    delayed = args.get("x-delayed-type")
    return ExchangePolicy(alternate if isinstance(alternate, str) else None,
                          delayed if isinstance(delayed, str) else None)


def parse_queue_arguments(args: Mapping[str, Any], queue: str, where: str, *, durable: bool = True,
                          exclusive: bool = False, auto_delete: bool = False,
                          server_named: bool = False, declaring: bool = True) -> QueuePolicy:
    """Check a queue's x-arguments as RabbitMQ does (406 PRECONDITION_FAILED naming the argument). Arguments
    already stored (not ``declaring``) are read as an older litemq accepted them: null as absent, no maximum."""
    def invalid(name: str, problem: str) -> PreconditionFailed:
        return PreconditionFailed(f"invalid arg {name!r} for queue {queue!r}{where}: {problem}")

    def integer(name: str, minimum: int, maximum: Optional[int] = None) -> Optional[int]:
        value = args.get(name)
        if value is None and not (declaring and name in args):
            return None
        if not declaring:
            maximum = None
        if isinstance(value, bool) or not isinstance(value, int):
            raise invalid(name, f"must be an integer, got {type(value).__name__} {value!r}")
        if value < minimum or (maximum is not None and value > maximum):
            bound = f"from {minimum} to {maximum}" if maximum is not None else f"at least {minimum}"
            raise invalid(name, f"must be {bound}, got {value}")
        return value

    def text(name: str) -> Optional[str]:
        value = args.get(name)
        if value is None:
            return None
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if not isinstance(value, str):
            raise invalid(name, f"must be a string, got {type(value).__name__} {value!r}")
        return value

    message_ttl = integer("x-message-ttl", 0, MAX_EXPIRY_MS)
    expires = integer("x-expires", 1, MAX_EXPIRY_MS)
    lease = integer(LEASE_ARGUMENT, 1)
    max_priority = integer("x-max-priority", 0, MAX_PRIORITY)
    overflow = text("x-overflow") or "drop-head"
    if overflow not in OVERFLOW_BEHAVIOURS:
        raise invalid("x-overflow", f"must be one of {', '.join(OVERFLOW_BEHAVIOURS)}, got {overflow!r}")
    dead_letter_exchange = text("x-dead-letter-exchange")
    dead_letter_routing_key = text("x-dead-letter-routing-key")
    if dead_letter_routing_key is not None and dead_letter_exchange is None:
        raise PreconditionFailed(f"invalid arg 'x-dead-letter-routing-key' for queue {queue!r}{where}: it needs "
                                 f"'x-dead-letter-exchange' as well")
    sac = args.get("x-single-active-consumer")
    if sac is not None and not isinstance(sac, bool):
        raise invalid("x-single-active-consumer", f"must be a boolean, got {type(sac).__name__} {sac!r}")
    queue_type = text("x-queue-type") or "classic"
    if queue_type not in QUEUE_TYPES:
        raise invalid("x-queue-type", f"must be one of {', '.join(QUEUE_TYPES)} (litemq has no stream queues), "
                                      f"got {queue_type!r}")
    if queue_type == "quorum":
        problem = ("non-durable" if not durable else "exclusive" if exclusive else "auto-delete" if auto_delete
                   else "server-named" if server_named else None)
        if problem is not None:
            raise PreconditionFailed(f"invalid property {problem!r} for quorum queue {queue!r}{where}: quorum "
                                     f"queues are durable, named, never exclusive nor auto-delete")
        if args.get("x-max-priority") is not None:
            raise invalid("x-max-priority", "quorum queues have no priorities")
    delivery_limit = integer("x-delivery-limit", -1)
    return QueuePolicy(
        message_ttl=None if message_ttl is None else message_ttl / 1000.0,
        expires=None if expires is None else expires / 1000.0,
        max_length=integer("x-max-length", 0),
        max_length_bytes=integer("x-max-length-bytes", 0),
        overflow=overflow,
        dead_letter_exchange=dead_letter_exchange,
        dead_letter_routing_key=dead_letter_routing_key,
        max_priority=max_priority or None,
        delivery_limit=None if delivery_limit is None or delivery_limit < 0 else delivery_limit,  # -1: none
        single_active_consumer=bool(sac),
        queue_type=queue_type,
        lease_seconds=None if lease is None else lease / 1000.0,
    )


def parse_exchange_arguments(args: Mapping[str, Any], exchange: str, exchange_type: str,
                             where: str) -> ExchangePolicy:
    alternate = args.get("alternate-exchange")
    if alternate is not None and not isinstance(alternate, str):
        raise PreconditionFailed(f"invalid arg 'alternate-exchange' for exchange {exchange!r}{where}: must be a "
                                 f"string, got {type(alternate).__name__}")
    delayed = args.get("x-delayed-type")
    if exchange_type == DELAYED_EXCHANGE:
        if delayed not in EXCHANGE_TYPES:
            raise PreconditionFailed(f"invalid arg 'x-delayed-type' for exchange {exchange!r}{where}: a "
                                     f"{DELAYED_EXCHANGE} exchange needs the type it routes as, one of "
                                     f"{', '.join(EXCHANGE_TYPES)}; got {delayed!r}")
    return ExchangePolicy(alternate, delayed if exchange_type == DELAYED_EXCHANGE else None)


# What a redeclaration must repeat: the arguments that change what a queue or exchange does (RabbitMQ's list,
# and litemq's own lease). Others, unknown to the broker, are ignored, as RabbitMQ ignores them.
QUEUE_EQUIVALENCE = ("x-expires", "x-message-ttl", "x-dead-letter-exchange", "x-dead-letter-routing-key",
                     "x-max-length", "x-max-length-bytes", "x-max-priority", "x-overflow", "x-single-active-consumer",
                     "x-queue-type", "x-queue-mode", "x-delivery-limit", LEASE_ARGUMENT)
EXCHANGE_EQUIVALENCE = ("alternate-exchange", "x-delayed-type")


def inequivalent_argument(received: Mapping[str, Any], current: Mapping[str, Any],
                          keys: tuple[str, ...]) -> Optional[tuple[str, str]]:
    """The first of ``keys`` whose value (and type: True is not 1) differs between a redeclaration and the stored
    arguments, with how RabbitMQ words the difference; None when they are equivalent. No x-queue-type is classic."""
    for key in keys:
        default = "classic" if key == "x-queue-type" else None
        new, old = received.get(key, default), current.get(key, default)
        if (type(new), new) != (type(old), old):
            return key, f"received {_described(new, old is None)} but current is {_described(old, new is None)}"
    return None


def _described(value: Any, alone: bool) -> str:
    if value is None:
        return "none"
    shown = str(value).lower() if isinstance(value, bool) else str(value)
    if not alone:
        return f"'{shown}'"
    kind = ("bool" if isinstance(value, bool) else "signedint" if isinstance(value, int) and -2 ** 31 <= value < 2 ** 31
            else "long" if isinstance(value, int) else "longstr" if isinstance(value, (str, bytes))
            else type(value).__name__)
    return f"the value '{shown}' of type '{kind}'"


def expiration_seconds(expiration: Optional[str]) -> Optional[float]:
    """A message's own TTL: its ``expiration`` property, a string of milliseconds."""
    return None if expiration is None else int(expiration) / 1000.0


def delay_seconds(headers: Optional[Mapping[str, Any]]) -> float:
    """The ``x-delay`` header of a message published to a delayed-message exchange, in seconds (none: 0)."""
    value = (headers or {}).get("x-delay")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        return 0.0  # the plugin's rule: no delay
    try:
        seconds = value / 1000.0
    except OverflowError:  # an int past a float's range
        seconds = math.inf
    if not math.isfinite(seconds):  # as ``delay=``: a message that never falls due is refused, not stored
        shown = repr(value) if len(repr(value)) <= 40 else f"{repr(value)[:20]}... ({len(repr(value))} digits)"
        raise ValueError(f"header x-delay must be a finite number of milliseconds, got {shown}")
    return seconds
