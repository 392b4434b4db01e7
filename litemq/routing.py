"""Routing rules as pure functions: name and key checks, topic and headers matching, route(). No SQL here."""

from __future__ import annotations

from functools import lru_cache
from collections.abc import Mapping

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Iterable, NamedTuple, Optional
else:
    from .runtime_types import NamedTuple

EXCHANGE_TYPES = ("direct", "fanout", "topic", "headers")
DELAYED_EXCHANGE = "x-delayed-message"
"""The exchange type of RabbitMQ's delayed-message plugin: routes as its ``x-delayed-type``, after ``x-delay``."""
X_MATCH_VALUES = ("all", "any", "all-with-x", "any-with-x")
MAX_NAME_BYTES = 255


class Binding(NamedTuple):
    """One edge of the routing graph: messages from an exchange to a queue or another exchange."""

    destination: str
    destination_kind: str  # "queue" or "exchange"
    routing_key: str
    arguments: Mapping[str, Any]


def check_name(kind: str, name: object) -> str:
    """Validate an exchange, queue or consumer name (or a routing key): str, at most 255 bytes of UTF-8, no NUL."""
    if not isinstance(name, str):
        raise TypeError(f"{kind} must be str, not {type(name).__name__}")
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise ValueError(f"{kind} {name!r} is not valid UTF-8") from exc
    if size > MAX_NAME_BYTES:
        raise ValueError(f"{kind} {name[:40]!r}... is {size} bytes long; the limit is {MAX_NAME_BYTES}")
    if "\x00" in name:
        raise ValueError(f"{kind} {name!r} contains a NUL character")
    return name


def check_exchange_type(exchange_type: object) -> str:
    if not isinstance(exchange_type, str):
        raise TypeError(f"exchange type must be str, not {type(exchange_type).__name__}")
    if exchange_type not in EXCHANGE_TYPES and exchange_type != DELAYED_EXCHANGE:
        raise ValueError(f"unknown exchange type {exchange_type!r}; expected one of {', '.join(EXCHANGE_TYPES)} "
                         f"or {DELAYED_EXCHANGE}")
    return exchange_type


def x_match(arguments: Mapping[str, Any]) -> str:
    """The ``x-match`` mode of a headers binding (``all`` when absent); ValueError when invalid."""
    mode = arguments.get("x-match", "all")
    if mode not in X_MATCH_VALUES:
        raise ValueError(f"invalid x-match field value {mode!r}; expected one of {', '.join(X_MATCH_VALUES)}")
    return str(mode)


@lru_cache(maxsize=4096)
def topic_words(key: str) -> tuple[str, ...]:
    """RabbitMQ's split: ``""`` is zero words; otherwise every ``.`` separates, and empty words count."""
    return tuple(key.split(".")) if key else ()


def topic_matches(pattern: str, routing_key: str) -> bool:
    """Whether a topic binding key matches a routing key: ``*`` is one word, ``#`` zero or more."""
    pwords = topic_words(pattern)
    states = _closure(pwords, {0})
    for word in topic_words(routing_key):
        following = set()
        for i in states:
            if i < len(pwords):
                if pwords[i] == "#":
                    following.add(i)
                elif pwords[i] == "*" or pwords[i] == word:
                    following.add(i + 1)
        if not following:
            return False
        states = _closure(pwords, following)
    return len(pwords) in states


def _closure(pwords: tuple[str, ...], states: set[int]) -> set[int]:
    # "#" may match zero words, so being before it also means being after it.
    result = set(states)
    stack = list(states)
    while stack:
        i = stack.pop()
        if i < len(pwords) and pwords[i] == "#" and i + 1 not in result:
            result.add(i + 1)
            stack.append(i + 1)
    return result


def headers_match(arguments: Mapping[str, Any], headers: Optional[Mapping[str, Any]]) -> bool:
    """RabbitMQ's headers exchange rule for one binding's arguments against a message's headers."""
    mode = x_match(arguments)
    with_x = mode.endswith("-with-x")
    wanted = [
        (k, v) for k, v in arguments.items()
        if k != "x-match" and (with_x or not k.startswith("x-"))
    ]
    headers = headers or {}
    if mode.startswith("all"):
        return all(_header_matches(headers, k, v) for k, v in wanted)
    return any(_header_matches(headers, k, v) for k, v in wanted)


def _header_matches(headers: Mapping[str, Any], key: str, value: Any) -> bool:
    if key not in headers:
        return False
    if value is None:  # a field with no value matches on presence
        return True
    actual = headers[key]
    # At the top level RabbitMQ compares values loosely across numeric types (1 matches 1.0, never True);
    # inside arrays and tables it compares typed values.
    if _is_number(actual) and _is_number(value):
        return bool(actual == value)
    return _typed(actual) == _typed(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _typed(value: Any) -> Any:
    # str and bytes are both AMQP long strings, so they compare by their bytes.
    if isinstance(value, str):
        return ("s", value.encode("utf-8"))
    if isinstance(value, (bytes, bytearray)):
        return ("s", bytes(value))
    if isinstance(value, Mapping):
        return ("F", tuple(sorted((k, _typed(v)) for k, v in value.items())))
    if isinstance(value, (list, tuple)):
        return ("A", tuple(_typed(v) for v in value))
    return (type(value).__name__, value)


def binding_matches(exchange_type: str, binding: Binding, routing_key: str,
                    headers: Optional[Mapping[str, Any]]) -> bool:
    if exchange_type == "fanout":
        return True
    if exchange_type == "direct":
        return binding.routing_key == routing_key
    if exchange_type == "topic":
        return topic_matches(binding.routing_key, routing_key)
    return headers_match(binding.arguments, headers)


class BindingIndex:
    """An exchange's bindings arranged for matching: by key for direct, a word trie for topic. ``matching`` gives
    the same bindings, in the same order, as testing each with ``binding_matches``."""

    def __init__(self, exchange_type: str, bindings: Iterable[Binding]) -> None:
        self.exchange_type = exchange_type
        self.bindings = list(bindings)
        self._by_key: dict[str, list[int]] = {}
        self._trie = _TopicNode()
        for position, binding in enumerate(self.bindings):
            if exchange_type == "direct":
                self._by_key.setdefault(binding.routing_key, []).append(position)
            elif exchange_type == "topic":
                self._trie.add(topic_words(binding.routing_key), position)

    def matching(self, routing_key: str, headers: Optional[Mapping[str, Any]]) -> list[Binding]:
        if self.exchange_type == "fanout":
            return self.bindings
        if self.exchange_type == "direct":
            return [self.bindings[i] for i in self._by_key.get(routing_key, ())]
        if self.exchange_type == "topic":
            return [self.bindings[i] for i in sorted(self._trie.matching(topic_words(routing_key)))]
        return [b for b in self.bindings if binding_matches(self.exchange_type, b, routing_key, headers)]


class _TopicNode:
    """A node of a trie of topic binding keys, one word per level."""

    __slots__ = ("children", "ends")

    def __init__(self) -> None:
        self.children: dict[str, _TopicNode] = {}
        self.ends: list[int] = []  # positions of the bindings whose key ends here

    def add(self, words: tuple[str, ...], position: int) -> None:
        node = self
        for word in words:
            node = node.children.setdefault(word, _TopicNode())
        node.ends.append(position)

    def matching(self, words: tuple[str, ...]) -> set[int]:
        found: set[int] = set()
        seen: set[tuple[int, int]] = set()  # (node, word index) pairs already walked: "#" can reach one many ways
        stack: list[tuple[_TopicNode, int]] = [(self, 0)]
        while stack:
            node, i = stack.pop()
            if (id(node), i) in seen:
                continue
            seen.add((id(node), i))
            hash_node = node.children.get("#")
            if hash_node is not None:  # "#" takes zero or more words
                stack.extend((hash_node, j) for j in range(i, len(words) + 1))
            if i == len(words):
                found.update(node.ends)
                continue
            for word in (words[i], "*"):
                child = node.children.get(word)
                if child is not None and word != "#":
                    stack.append((child, i + 1))
        return found


if TYPE_CHECKING:
    ExchangeLookup = Callable[[str], Optional[tuple[str, "Iterable[Binding] | BindingIndex", Optional[str]]]]


def route(exchange: str, routing_key: str, headers: Optional[Mapping[str, Any]],
          lookup: ExchangeLookup) -> list[str]:
    """The queues a message reaches, each once, in first-reached order.

    ``lookup(name)`` gives an exchange's type, bindings (or their ``BindingIndex``) and alternate exchange, or None
    when it does not exist. Bindings to other exchanges are followed; an exchange whose bindings match nothing
    passes the message to its alternate exchange; an exchange reached twice is visited once.
    """
    queues: dict[str, None] = {}
    seen = {exchange}
    pending = [exchange]
    while pending:
        found = lookup(pending.pop(0))
        if found is None:
            continue
        exchange_type, bindings, alternate = found
        index = bindings if isinstance(bindings, BindingIndex) else BindingIndex(exchange_type, bindings)
        matched = index.matching(routing_key, headers)
        for binding in matched:
            if binding.destination_kind == "queue":
                queues[binding.destination] = None
            elif binding.destination not in seen:
                seen.add(binding.destination)
                pending.append(binding.destination)
        if not matched and alternate is not None and alternate not in seen:
            seen.add(alternate)
            pending.append(alternate)
    return list(queues)
