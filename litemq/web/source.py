"""The broker the page shows: read in one read-only transaction per look (as the read commands of ``litemq`` read
it: nothing created, upgraded or registered), and written through a connection opened for one action and closed
after it, so the page itself never shows up as a connection holding messages."""

from __future__ import annotations

import os
import threading
import time
from typing import Any, Callable, NamedTuple, Optional, TypeVar

from ..connection import Connection, connect
from ..errors import QueueNotFound
from ..message import decode_properties, decode_table
from ..store import postgres_url, resolve_path
from .rates import TOTALS

T = TypeVar("T")


class Snapshot(NamedTuple):
    queues: list[dict[str, Any]]
    connections: int
    consumers: list[dict[str, Any]]
    sizes: dict[str, int]


class Source:
    def __init__(self, url: Optional[str]) -> None:
        given = url if url is not None else os.environ.get("LITEMQ_URL") or "litemq.db"
        self.url = given
        self.server = postgres_url.parse(given) if postgres_url.is_postgresql(given) else None
        self.path = None if self.server is not None else resolve_path(given)
        self.where: str = self.server.where if self.server is not None else resolve_path(given)
        self._session: Optional[Any] = None
        self._session_lock = threading.Lock()

    @property
    def engine(self) -> str:
        return "postgresql" if self.server is not None else "sqlite"

    def read(self, action: Callable[[Any], T]) -> T:
        """``action(store)`` in one read-only transaction (one snapshot)."""
        if self.server is not None:
            return self._read_on_server(action)
        from ..store import readonly

        return readonly.read(self.path, action)  # type: ignore[arg-type]

    def _read_on_server(self, action: Callable[[Any], T]) -> T:
        """On one read-only session, kept between looks (a new one costs a connection's set-up each time). When
        the kept one fails (the server restarted, or ended it), the look is made again once on a new session."""
        from ..errors import StorageError
        from ..store import postgres_readonly

        with self._session_lock:
            kept = self._session is not None
            if self._session is None:
                self._session = self._new_session()
            try:
                return postgres_readonly.read_on(self._session, action)
            except StorageError:
                self.close()
                if not kept:
                    raise
            self._session = self._new_session()
            try:
                return postgres_readonly.read_on(self._session, action)
            except StorageError:
                self.close()
                raise

    def _new_session(self) -> Any:
        """A read-only session planned for the page's statements (management.for_page), for all its reads."""
        from ..store import management, postgres_readonly

        session = postgres_readonly.ReadOnlyPostgres(self.server)  # type: ignore[arg-type]
        try:
            management.for_page(session, session=True)
        except Exception as exc:  # the driver's error (psycopg is the store's to import)
            session.close()
            raise postgres_readonly.failed(self.where, exc) from exc
        return session

    def close(self) -> None:
        """Close the kept session, if any."""
        if self._session is not None:
            session, self._session = self._session, None
            try:
                session.close()
            except Exception:  # a session already broken: nothing left to close
                pass

    def connect(self) -> Connection:
        """A connection for one action; a file or schema without litemq's tables is refused, not built."""
        self.read(lambda store: None)
        return connect(self.url)

    # --- what the pages show
    def sizes(self, store: Optional[Any] = None) -> dict[str, int]:
        """The file's and its WAL's bytes, or the schema's (read in ``store``'s transaction when given)."""
        if self.server is not None:
            from ..store import postgres_inspect

            if store is not None:
                return {"schema_bytes": postgres_inspect.schema_bytes(store)}
            return {"schema_bytes": self.read(postgres_inspect.schema_bytes)}
        from ..store import inspect

        return inspect.file_sizes(self.path)  # type: ignore[arg-type]

    def alive(self, store: Any, connection_id: str) -> Optional[bool]:
        """Whether the connection's process holds its proof of life (None: this user cannot tell)."""
        if self.server is not None:
            from ..store import postgres_inspect

            return postgres_inspect.is_alive(store, connection_id)
        from ..store import inspect

        return inspect.is_alive(self.path, connection_id)  # type: ignore[arg-type]

    def queues(self) -> list[dict[str, Any]]:
        from ..store import management

        return [_queue_row(row) for row in self.read(management.queues)]

    def snapshot(self, sizes: bool = False) -> Snapshot:
        """Queues, the number of connections and every consumer from one snapshot (what a sample takes), with the
        sizes when asked."""
        from ..store import management

        def look(store: Any) -> Snapshot:
            return Snapshot(management.queues(store), management.connection_count(store),
                            management.all_consumers(store), self.sizes(store) if sizes else {})

        seen = self.read(look)
        return seen._replace(queues=[_queue_row(row) for row in seen.queues])

    def queue(self, name: str, browse: int = 0) -> dict[str, Any]:
        """One queue with its bindings, its consumers (each with its connection's liveness) and its first
        ``browse`` ready messages; QueueNotFound when there is none by that name."""
        from ..store import management

        def look(store: Any) -> dict[str, Any]:
            row = management.queue(store, name)
            if row is None:
                raise QueueNotFound(f"queue {name!r} not found in {self.where}")
            found = _queue_row(row)
            found["bindings"] = [{**b, "arguments": decode_table(b["arguments"])}
                                 for b in management.bindings_to(store, name)]
            consumers = management.consumers_of(store, name)
            alive = {c["connection_id"]: self.alive(store, c["connection_id"]) for c in consumers}
            found["consumer_details"] = [{**c, "auto_ack": bool(c["auto_ack"]), "exclusive": bool(c["exclusive"]),
                                   "alive": alive[c["connection_id"]]} for c in consumers]
            found["messages"] = [message_row(m) for m in management.browse(store, name, browse)] if browse else []
            return found

        return self.read(look)

    def exchanges(self) -> list[dict[str, Any]]:
        """Exchanges (the default one first) with their bindings."""
        from ..store import inspect

        def look(store: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
            return inspect.exchanges(store), inspect.bindings(store)

        exchanges, bindings = self.read(look)
        exchanges.insert(0, {"name": "", "type": "direct", "durable": True, "auto_delete": False, "internal": False,
                             "arguments": None})
        by_exchange: dict[str, list[dict[str, Any]]] = {}
        for binding in bindings:
            by_exchange.setdefault(binding["exchange"], []).append(
                {"destination": binding["destination"], "destination_kind": binding["destination_kind"],
                 "routing_key": binding["routing_key"], "arguments": decode_table(binding["arguments"])})
        return [{"name": e["name"], "type": e["type"], "durable": bool(e["durable"]),
                 "auto_delete": bool(e["auto_delete"]), "internal": bool(e["internal"]),
                 "arguments": decode_table(e["arguments"]), "bindings": by_exchange.get(e["name"], [])}
                for e in exchanges]

    def connections(self) -> list[dict[str, Any]]:
        """Open connections with pid, host, start, unacked, whether alive, and their consumers with how many
        messages of its queue each one's channel holds."""
        from ..store import management

        def look(store: Any) -> list[dict[str, Any]]:
            held = management.holdings(store)
            rows = management.connections(store, held)
            by_connection: dict[str, list[dict[str, Any]]] = {}
            for c in management.all_consumers(store):
                by_connection.setdefault(c["connection_id"], []).append(
                    {"channel": c["channel"], "consumer_tag": c["consumer_tag"], "queue": c["queue"],
                     "prefetch_count": c["prefetch_count"],
                     "unacked": held.get((f"{c['connection_id']}/{c['channel']}", c["queue"]), 0)})
            for row in rows:
                row["alive"] = self.alive(store, row["connection_id"])
                row["consumers"] = by_connection.get(row["connection_id"], [])
            return rows

        return self.read(look)

    def route(self, exchange: str, routing_key: str, headers: Optional[dict[str, Any]]) -> list[str]:
        """The queues a message would reach (the command's ``route``: a dry run, nothing published)."""
        from .. import routing
        from ..errors import AccessRefused, ExchangeNotFound
        from ..message import Properties
        from ..routes import Routes

        routing.check_name("exchange name", exchange)
        routing.check_name("routing key", routing_key)
        if headers:
            Properties(headers=headers)

        def look(store: Any) -> list[str]:
            found, queues = Routes().route(store, exchange, routing_key, headers or None)
            if exchange and found is None:
                raise ExchangeNotFound(f"exchange {exchange!r} not found in {self.where}")
            if found is not None and found.internal:
                raise AccessRefused(f"cannot publish to internal exchange {exchange!r} in {self.where}")
            return list(queues)

        return self.read(look)


_TOTALS = tuple((name, f"{name}_total") for name in TOTALS)  # the page's name, the store's column


def _queue_row(row: dict[str, Any]) -> dict[str, Any]:
    # Once per queue for every look: a thousand queues' rows take 1.8 ms here at best, 3.3 to 4.1 ms when the
    # totals' names were cut from the columns' for each row.
    return {"name": row["queue"], "ready": int(row["ready"]), "unacked": int(row["unacked"]),
            "delayed": int(row["delayed"]), "consumers": int(row["consumers"]),
            "ready_bytes": int(row["ready_bytes"]), "durable": bool(row["durable"]),
            "exclusive": bool(row["exclusive"]), "auto_delete": bool(row["auto_delete"]),
            "arguments": decode_table(row["arguments"]),
            "totals": {name: int(row[column]) for name, column in _TOTALS}}


def body_fields(body: bytes) -> dict[str, Any]:
    """A body for the page: as text when it is UTF-8, else as hex, with which it is and its size."""
    try:
        return {"body": body.decode("utf-8"), "body_encoding": "text", "body_bytes": len(body)}
    except UnicodeDecodeError:
        return {"body": body.hex(), "body_encoding": "hex", "body_bytes": len(body)}


def message_row(row: dict[str, Any]) -> dict[str, Any]:
    """A stored message for the page: where it came from, its body, properties and deliveries so far."""
    delivery_count = int(row["delivery_count"])
    return {"id": row["id"], "exchange": row["exchange"], "routing_key": row["routing_key"],
            **body_fields(bytes(row["body"] or b"")), "properties": decode_properties(row["properties"]).set_fields(),
            "delivery_count": delivery_count, "redelivered": delivery_count > 0, "priority": row["priority"],
            "published_at": float(row["published_at"]), "age_seconds": max(0.0, time.time() - row["published_at"])}
