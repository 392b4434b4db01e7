"""The commands about messages: publish, get, peek, tail, move."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Sequence

from .. import routing
from ..errors import QueueNotFound
from ..message import decode_properties
from ..shovel import move_ready
from .common import UsageError, exchange_name, open_connection, pairs, properties_from, read_only
from .output import json_body, message_row, print_messages, shown, shown_body, write_raw


def cmd_publish(args: argparse.Namespace) -> int:
    properties = properties_from(args.property, args.header)
    bodies = _bodies(args)
    with open_connection(args, create=True) as conn:
        routed = [conn.publish(exchange_name(args.exchange), args.routing_key, body, properties) for body in bodies]
    if not args.quiet:
        print(_published(routed))
    if bodies and not any(routed):
        print(f"litemq: unroutable: no queue in {conn.path} is bound to receive it from exchange "
              f"{args.exchange!r} with routing key {args.routing_key!r} ({len(bodies)} message(s) dropped)",
              file=sys.stderr)
    return 0


def _bodies(args: argparse.Namespace) -> list[bytes]:
    """The bodies to publish: BODY or --body, else standard input (read only when it is not a terminal, or when
    - asks for it). An empty body is published only when --body '' says so."""
    if args.body_text is not None:
        if args.body is not None or args.lines:
            raise UsageError("give the body once: as BODY, as --body, or on standard input (--lines)")
        return [args.body_text.encode("utf-8")]
    if args.lines and args.body not in (None, "-"):
        raise UsageError("--lines reads standard input: give no BODY (or -)")
    if args.body == "":
        raise UsageError("the BODY argument is empty: use --body '' to publish an empty body")
    if args.body is not None and args.body != "-":
        return [args.body.encode("utf-8")]
    if sys.stdin is None:
        raise UsageError("no BODY and no standard input: give BODY, or --body '' for an empty body")
    if args.body is None and sys.stdin.isatty():
        raise UsageError("no BODY, and standard input is a terminal: give BODY, pipe the body in, "
                         "or give - to type it")
    data = sys.stdin.buffer.read()
    if args.lines:
        return data.splitlines()
    if not data:
        raise UsageError("standard input was empty, so nothing was published: use --body '' for an empty body")
    return [data]


def _published(routed: Sequence[int]) -> str:
    def queues(n: int) -> str:
        return f"{n} queue" + ("" if n == 1 else "s")

    if not routed:
        return "published nothing: standard input had no lines"
    if len(routed) == 1:
        return f"published to {queues(routed[0])}"
    if len(set(routed)) == 1:
        return f"published {len(routed)} messages, each to {queues(routed[0])}"
    return (f"published {len(routed)} messages, each to {min(routed)} to {queues(max(routed))} "
            f"({sum(routed)} copies)")


def _check_form(args: argparse.Namespace) -> None:
    if args.raw and args.json:
        raise UsageError("--raw writes the bodies' bytes and --json prints JSON: give one of them")


def cmd_get(args: argparse.Namespace) -> int:
    _check_form(args)
    if args.count < 1:
        raise UsageError("--count must be at least 1")
    rows = []
    with open_connection(args) as conn:
        deliveries = []
        for _ in range(args.count):
            delivery = conn.get(args.queue)
            if delivery is None:
                break
            deliveries.append(delivery)
            rows.append(message_row(delivery.exchange, delivery.routing_key, delivery.body,
                                    delivery.properties, delivery.redelivered))
        if deliveries:
            last = deliveries[-1].delivery_tag
            conn.ack(last, multiple=True) if args.ack else conn.nack(last, multiple=True, requeue=True)
    print_messages(args, rows)
    return 0


def cmd_peek(args: argparse.Namespace) -> int:
    _check_form(args)
    from ..store import inspect

    if args.count < 1:
        raise UsageError("--count must be at least 1")
    routing.check_name("queue name", args.queue)

    def look(store: Any) -> list[dict[str, Any]]:
        if store.queue(args.queue) is None:
            raise QueueNotFound(f"queue {args.queue!r} not found in {store.path}")
        return inspect.peek(store, args.queue, args.count)

    rows = [message_row(row["exchange"], row["routing_key"], row["body"], decode_properties(row["properties"]),
                        row["delivery_count"] > 0) for row in read_only(args, look)]
    print_messages(args, rows)
    return 0


def cmd_tail(args: argparse.Namespace) -> int:
    _check_form(args)
    exchange = exchange_name(args.exchange)
    if exchange == "":
        raise UsageError("tail needs an exchange other than the default one")
    if args.count is not None and args.count < 1:
        raise UsageError("--count must be at least 1")
    with open_connection(args) as conn:
        conn.declare_exchange(exchange, passive=True)
        queue = conn.declare_queue("", exclusive=True, auto_delete=True).queue
        with conn._store.read() as store:
            found = store.exchange(exchange)
        key = args.binding_key
        if key is None:
            key = "#" if found is not None and found.type == "topic" else ""
        conn.bind_queue(queue, exchange, key, pairs(args.header, "header") or None)
        seen = 0
        for delivery in conn.consume(queue, auto_ack=True):
            if args.json:
                row = message_row(delivery.exchange, delivery.routing_key, delivery.body, delivery.properties,
                                   delivery.redelivered)
                row.update(json_body(args, delivery.body))
                print(json.dumps(row, default=str), flush=True)
            elif args.raw:
                write_raw([delivery.body])
            else:
                print(f"{shown(delivery.routing_key) or '-'}  {shown(shown_body(args, delivery.body))}", flush=True)
            seen += 1
            if args.count is not None and seen >= args.count:
                break
    return 0


def cmd_move(args: argparse.Namespace) -> int:
    if args.source == args.destination:
        raise UsageError("source and destination are the same queue")
    if args.limit is not None and args.limit < 1:
        raise UsageError("--limit must be at least 1")
    with open_connection(args) as conn:
        moved = move_ready(conn, args.source, args.destination, args.limit)
    print(moved)
    return 0

