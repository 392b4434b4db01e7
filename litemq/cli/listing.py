"""The commands that only look (queues, exchanges, bindings, connections, route, stats): each reads the file or
schema read-only, in one snapshot."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any, Callable, Optional, TypeVar

from .. import routing
from ..errors import AccessRefused, ExchangeNotFound
from ..message import Properties, decode_table
from .common import exchange_name, file_path, pairs, read_only, server
from .output import emit, shown

T = TypeVar("T")


def cmd_queues(args: argparse.Namespace) -> int:
    from ..store import management

    rows = [{"queue": q["queue"], "ready": int(q["ready"]), "unacked": int(q["unacked"]),
             "total": int(q["ready"]) + int(q["unacked"]), "consumers": int(q["consumers"]),
             "durable": bool(q["durable"]), "exclusive": bool(q["exclusive"]), "auto_delete": bool(q["auto_delete"]),
             "arguments": decode_table(q["arguments"])} for q in read_only(args, _counted(management.queue_counts))]
    emit(args, rows, ("queue", "ready", "unacked", "consumers", "durable", "exclusive", "auto_delete",
                      "arguments"))
    return 0


def _counted(action: Callable[[Any], T]) -> Callable[[Any], T]:
    """A read of the page's counts (litemq web's, store.management), set up as the page sets up its reads."""
    from ..store import management

    def read(store: Any) -> T:
        management.for_page(store)
        return action(store)

    return read


def cmd_exchanges(args: argparse.Namespace) -> int:
    from ..store import inspect

    rows = read_only(args, inspect.exchanges)
    rows.insert(0, {"name": "", "type": "direct", "durable": True, "auto_delete": False, "internal": False,
                    "arguments": None})
    for row in rows:
        for flag in ("durable", "auto_delete", "internal"):
            row[flag] = bool(row[flag])
        row["arguments"] = decode_table(row["arguments"])
    if not getattr(args, "json", False):
        rows = [{**row, "name": row["name"] or "amq.default"} for row in rows]
    emit(args, rows, ("name", "type", "durable", "auto_delete", "internal", "arguments"))
    return 0


def cmd_bindings(args: argparse.Namespace) -> int:
    from ..store import inspect

    rows = read_only(args, inspect.bindings)
    for row in rows:
        row["arguments"] = decode_table(row["arguments"])
    emit(args, rows, ("exchange", "destination", "destination_kind", "routing_key", "arguments"))
    return 0


def cmd_connections(args: argparse.Namespace) -> int:
    from ..store import inspect

    alive = _alive_on_server if server(args) is not None else _alive_by_lock_file

    def look(store: Any) -> list[dict[str, Any]]:
        rows = inspect.connections(store)
        for row in rows:
            row["alive"] = alive(store, row["connection_id"])
        return rows

    emit(args, read_only(args, look), ("connection_id", "pid", "host", "started_at", "consumers", "unacked", "alive"))
    return 0


def _alive_by_lock_file(store: Any, connection_id: str) -> Optional[bool]:
    from ..store import inspect

    return inspect.is_alive(store.path, connection_id)


def _alive_on_server(store: Any, connection_id: str) -> Optional[bool]:
    from ..store import postgres_inspect

    return postgres_inspect.is_alive(store, connection_id)


def cmd_route(args: argparse.Namespace) -> int:
    from ..routes import Routes

    exchange = exchange_name(args.exchange)
    routing.check_name("exchange name", exchange)
    routing.check_name("routing key", args.routing_key)
    headers = pairs(args.header, "header") or None
    if headers is not None:
        Properties(headers=headers)  # refuses what a message could not carry

    def look(store: Any) -> list[str]:
        found, queues = Routes().route(store, exchange, args.routing_key, headers)
        if exchange and found is None:
            raise ExchangeNotFound(f"exchange {exchange!r} not found in {store.path}")
        if found is not None and found.internal:
            raise AccessRefused(f"cannot publish to internal exchange {exchange!r} in {store.path}")
        return list(queues)

    queues = read_only(args, look)
    if args.json:
        print(json.dumps(queues))
    else:
        for queue in queues:
            print(shown(queue))
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    from ..store import inspect, management

    found = server(args)
    if found is not None:
        from ..store import postgres_inspect

        queues, schema_bytes = read_only(args, _counted(lambda store: (management.stats(store),
                                                                       postgres_inspect.schema_bytes(store))))
        sizes = {"schema_bytes": schema_bytes}
        where = f"schema {found.schema} {schema_bytes} bytes (tables and indexes)"
    else:
        queues = read_only(args, _counted(management.stats))
        sizes = inspect.file_sizes(file_path(args))
        where = f"file {sizes['file_bytes']} bytes, WAL {sizes['wal_bytes']} bytes"
    now = time.time()
    rows = [{"queue": q["queue"], "messages": int(q["ready"]) + int(q["unacked"]), "ready": int(q["ready"]),
             "unacked": int(q["unacked"]), "bytes": q["bytes"],
             "oldest_ready_seconds": None if q["oldest_ready_at"] is None else now - q["oldest_ready_at"]}
            for q in queues]
    totals = {"messages": sum(r["messages"] for r in rows), "bytes": sum(r["bytes"] for r in rows), **sizes}
    if args.json:
        print(json.dumps({"queues": rows, "totals": totals}, indent=2))
        return 0
    emit(args, rows, ("queue", "messages", "ready", "unacked", "bytes", "oldest_ready_seconds"))
    print(f"total: {totals['messages']} messages, {totals['bytes']} bytes of bodies; {where}")
    return 0
