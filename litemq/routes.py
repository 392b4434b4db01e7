"""Routes cached per connection. Each exchange's bindings are read and indexed once, and each routing key's
queues remembered; all of it is dropped when the file's routing version changes, which every change to an
exchange or a binding raises (in any process, or by hand in sqlite3). A publish reads that version in its own
transaction, so it never routes by bindings older than the ones it commits against."""

from __future__ import annotations


from . import routing
from .message import decode_table
from .policy import exchange_policy
from .store.contract import Store

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Mapping, NamedTuple, Optional
else:
    from .runtime_types import NamedTuple

MAX_ROUTES = 10_000
"""Routing keys remembered per connection; past that the memory starts again (keys can be unbounded, e.g. ids)."""


class Exchange(NamedTuple):
    type: str  # as declared
    internal: bool
    kind: str  # how it routes: the x-delayed-type of a delayed-message exchange, else its type
    bindings: routing.BindingIndex
    alternate: Optional[str]


class Routes:
    """One connection's cache; used only inside the store's transactions (under its lock)."""

    def __init__(self) -> None:
        self._version: Optional[tuple[int, int]] = None
        self._exchanges: dict[str, Optional[Exchange]] = {}
        self._queues: dict[tuple[str, str], list[str]] = {}

    def route(self, store: Store, exchange: str, routing_key: str, headers: Optional[Mapping[str, Any]]
              ) -> tuple[Optional[Exchange], list[str]]:
        """The exchange (None when it does not exist, or is the default exchange) and the queues a message
        published to it reaches."""
        if exchange == "":
            return None, [routing_key] if store.queue(routing_key) is not None else []
        # A rolled-back transaction may have cached routes by bindings it changed, under a version number that
        # another change can reach again: after a rollback, nothing cached is trusted.
        version = (store.routing_version(), store.rollbacks)
        if version != self._version:
            self._version = version
            self._exchanges.clear()
            self._queues.clear()
        found = self._exchange(store, exchange)
        if found is None:
            return None, []
        queues = self._queues.get((exchange, routing_key))
        if queues is None:
            by_headers = False

            def lookup(name: str) -> Optional[tuple[str, routing.BindingIndex, Optional[str]]]:
                nonlocal by_headers
                entry = self._exchange(store, name)
                if entry is None:
                    return None
                by_headers = by_headers or entry.kind == "headers"
                return entry.kind, entry.bindings, entry.alternate

            queues = routing.route(exchange, routing_key, headers, lookup)
            if not by_headers:  # a route through a headers exchange depends on each message's headers
                if len(self._queues) >= MAX_ROUTES:
                    self._queues.clear()
                self._queues[(exchange, routing_key)] = queues
        return found, queues

    def only_queue(self, store: Store, exchange: str, routing_key: str) -> Optional[tuple[str, int]]:
        """Outside a transaction, without reading the file: the one queue a message published to the exchange with
        this key reached when last routed, and the routing version that route holds at (the publish must check
        it). None unless that route is cached and is one queue, from an exchange a message may be published to
        without more ado (not internal, not delayed)."""
        if self._version is None or self._version[1] != store.rollbacks:
            return None
        found = self._exchanges.get(exchange)
        if found is None or found.internal or found.type == routing.DELAYED_EXCHANGE:
            return None
        queues = self._queues.get((exchange, routing_key))
        if queues is None or len(queues) != 1:
            return None
        return queues[0], self._version[0]

    def _exchange(self, store: Store, name: str) -> Optional[Exchange]:
        if name in self._exchanges:
            return self._exchanges[name]
        found = store.exchange_and_bindings(name)
        entry = None
        if found is not None:
            exchange_type, internal, arguments, rows = found
            policy = exchange_policy(arguments)
            kind = policy.delayed_type or exchange_type
            bindings = [routing.Binding(destination, destination_kind, key,
                                        decode_table(args) if kind == "headers" else {})
                        for destination, destination_kind, key, args in rows]
            entry = Exchange(exchange_type, internal, kind, routing.BindingIndex(kind, bindings),
                             policy.alternate_exchange)
        self._exchanges[name] = entry
        return entry
