"""The ``litemq`` command: what rabbitmqctl and rabbitmqadmin give an operator, for a litemq file.

Exit codes: 0 ok, 1 not found or refused, 2 usage. Listings print aligned tables, or JSON with ``--json``.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys
from typing import Any, Callable, Optional, Sequence

from .connection import Connection, connect, resolve_path
from .errors import LiteMQError
from .message import PROPERTY_NAMES, Properties, decode_properties, decode_table
from .routing import DELAYED_EXCHANGE, EXCHANGE_TYPES

DEMO_QUEUE = "litemq-demo"
DEFAULT_EXCHANGE_NAMES = ("", "amq.default")


class UsageError(Exception):
    """Bad command-line input (exit code 2)."""


class Refused(Exception):
    """A missing file or object, or a refusal (exit code 1)."""


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except (UsageError, ValueError, TypeError) as exc:
        print(f"litemq: {exc}", file=sys.stderr)
        return 2
    except (Refused, LiteMQError) as exc:
        print(f"litemq: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:
        return 0


# --- the parser

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="litemq", description="An embedded message broker in one SQLite file.")
    parser.add_argument("--db", metavar="PATH_OR_URL",
                        help="the file (a path or sqlite:///path); default $LITEMQ_URL, else litemq.db")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, run: Callable[[argparse.Namespace], int], help: str, listing: bool = False
                ) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        sub.set_defaults(run=run)
        if listing:
            sub.add_argument("--json", action="store_true", help="print JSON instead of a table")
        return sub

    command("queues", cmd_queues, "list queues: ready, unacked, consumers, flags and arguments", listing=True)
    command("exchanges", cmd_exchanges, "list exchanges", listing=True)
    command("bindings", cmd_bindings, "list bindings", listing=True)
    command("connections", cmd_connections, "list open connections: pid, host, consumers, unacked, alive",
            listing=True)

    sub = command("declare-queue", cmd_declare_queue, "declare a queue (idempotent)")
    sub.add_argument("name")
    sub.add_argument("--durable", action="store_true", help="mark the queue durable")
    sub.add_argument("--auto-delete", action="store_true", help="delete it when its last consumer goes")
    sub.add_argument("--argument", action="append", default=[], metavar="K=V", help="a queue argument (repeatable)")

    sub = command("declare-exchange", cmd_declare_exchange, "declare an exchange (idempotent)")
    sub.add_argument("name")
    sub.add_argument("type", choices=[*EXCHANGE_TYPES, DELAYED_EXCHANGE])
    sub.add_argument("--durable", action="store_true", help="mark the exchange durable")
    sub.add_argument("--auto-delete", action="store_true", help="delete it when its last binding goes")
    sub.add_argument("--internal", action="store_true", help="refuse direct publishes")
    sub.add_argument("--argument", action="append", default=[], metavar="K=V", help="an exchange argument")

    for name, run, text in (("bind", cmd_bind, "bind a queue to an exchange"),
                            ("unbind", cmd_unbind, "remove a binding")):
        sub = command(name, run, text)
        sub.add_argument("queue")
        sub.add_argument("exchange")
        sub.add_argument("routing_key", nargs="?", default="", help="the binding key (default '')")
        sub.add_argument("--argument", action="append", default=[], metavar="K=V",
                         help="a binding argument, such as x-match=any for headers exchanges")

    sub = command("delete-queue", cmd_delete_queue, "delete a queue and its messages")
    sub.add_argument("name")
    sub.add_argument("--if-unused", action="store_true", help="only if it has no consumers")
    sub.add_argument("--if-empty", action="store_true", help="only if it has no ready messages")

    sub = command("delete-exchange", cmd_delete_exchange, "delete an exchange and its bindings")
    sub.add_argument("name")
    sub.add_argument("--if-unused", action="store_true", help="only if nothing is bound to it")

    sub = command("purge", cmd_purge, "delete a queue's ready messages")
    sub.add_argument("queue")

    sub = command("publish", cmd_publish, "publish a message (the body from the argument, or standard input)")
    sub.add_argument("exchange", help="the exchange; '' or amq.default for the default exchange")
    sub.add_argument("routing_key")
    sub.add_argument("body", nargs="?", default="-", help="the body, or - (the default) for standard input")
    sub.add_argument("--property", action="append", default=[], metavar="K=V",
                     help="a message property, such as content_type=text/plain or delivery_mode=2")
    sub.add_argument("--header", action="append", default=[], metavar="K=V", help="a header (repeatable)")
    sub.add_argument("--lines", action="store_true", help="publish each line of standard input as a message")

    sub = command("get", cmd_get, "take messages from a queue; requeued (marked redelivered) unless --ack",
                  listing=True)
    sub.add_argument("queue")
    sub.add_argument("-n", "--count", type=int, default=1, help="how many (default 1)")
    mode = sub.add_mutually_exclusive_group()
    mode.add_argument("--ack", action="store_true", help="acknowledge them: they are removed")
    mode.add_argument("--requeue", action="store_true", help="put them back (the default)")
    _body_options(sub)

    sub = command("peek", cmd_peek, "show a queue's first ready messages without taking them", listing=True)
    sub.add_argument("queue")
    sub.add_argument("-n", "--count", type=int, default=10, help="how many (default 10)")
    _body_options(sub)

    sub = command("tail", cmd_tail, "print what an exchange routes, as it arrives, until Ctrl-C", listing=True)
    sub.add_argument("exchange")
    sub.add_argument("binding_key", nargs="?", default=None,
                     help="the binding key (default: '#' on a topic exchange, else '')")
    sub.add_argument("--header", action="append", default=[], metavar="K=V",
                     help="a binding argument for a headers exchange")
    sub.add_argument("--count", type=int, default=None, help="stop after this many messages")
    _body_options(sub)

    sub = command("route", cmd_route, "show which queues a message would reach (nothing is published)",
                  listing=True)
    sub.add_argument("exchange")
    sub.add_argument("routing_key")
    sub.add_argument("--header", action="append", default=[], metavar="K=V", help="a message header")

    sub = command("move", cmd_move, "move ready messages from one queue to the end of another")
    sub.add_argument("source")
    sub.add_argument("destination")
    sub.add_argument("--limit", type=int, default=None, help="at most this many (default: all)")

    command("stats", cmd_stats, "messages and bytes per queue, totals, file and WAL size", listing=True)

    sub = command("db", cmd_db, "the file itself: upgrade, downgrade REV, current, check, recount, vacuum, "
                                "checkpoint")
    sub.add_argument("action", choices=["upgrade", "downgrade", "current", "check", "recount", "vacuum",
                                        "checkpoint"])
    sub.add_argument("revision", nargs="?", help="for downgrade: the revision to go back to")

    sub = command("demo", cmd_demo, "run a producer and a consumer process that talk through the file")
    sub.add_argument("-n", "--count", type=int, default=5, help="how many messages to send (default 5)")
    for name, run in (("demo-producer", _demo_producer), ("demo-consumer", _demo_consumer)):
        hidden = commands.add_parser(name)
        hidden.set_defaults(run=run)
        hidden.add_argument("-n", "--count", type=int, default=5)
    # The demo's own two processes stay out of --help (argparse lists even a suppressed subparser).
    commands._choices_actions = [a for a in commands._choices_actions if not a.dest.startswith("demo-")]
    return parser


def _body_options(sub: argparse.ArgumentParser) -> None:
    form = sub.add_mutually_exclusive_group()
    form.add_argument("--raw", action="store_true", help="write bodies as raw bytes, one per line")
    form.add_argument("--base64", action="store_true", help="print bodies in base64")


# --- opening the file

def _path(args: argparse.Namespace) -> str:
    try:
        return resolve_path(args.db)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _open(args: argparse.Namespace, create: bool = False) -> Connection:
    path = _path(args)
    if not create:
        from .store import inspect

        if not os.path.exists(path):
            raise Refused(f"no litemq file at {path} (nothing was created)")
        if not inspect.is_litemq_file(path):
            raise Refused(f"{path} holds no litemq data (nothing was changed)")
    return connect(path)


def _exchange(name: str) -> str:
    return "" if name in DEFAULT_EXCHANGE_NAMES else name


# --- key=value input

def _pairs(items: Sequence[str], what: str) -> dict[str, Any]:
    """K=V pairs; V is read as JSON when it parses (numbers, true, null, "quoted"), else as a string."""
    table: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise UsageError(f"malformed {what} {item!r}: expected KEY=VALUE")
        try:
            table[key] = json.loads(text)
        except ValueError:
            table[key] = text
    return table


PROPERTY_TYPES = {"delivery_mode": int, "priority": int, "timestamp": int}


def _properties(items: Sequence[str], headers: Sequence[str]) -> Optional[Properties]:
    values: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise UsageError(f"malformed property {item!r}: expected KEY=VALUE")
        if key not in PROPERTY_NAMES or key == "headers":
            raise UsageError(f"unknown property {key!r}; use --header for headers")
        try:
            values[key] = PROPERTY_TYPES.get(key, str)(text)
        except ValueError:
            raise UsageError(f"property {key} needs a whole number, got {text!r}") from None
    if headers:
        values["headers"] = _pairs(headers, "header")
    if not values:
        return None
    try:
        return Properties(**values)
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from None


# --- output

def _emit(args: argparse.Namespace, rows: list[dict[str, Any]], columns: Sequence[str]) -> None:
    if getattr(args, "json", False):
        print(json.dumps(rows, indent=2, default=str))
        return
    if not rows:
        return
    table = [[_cell(row.get(column)) for column in columns] for row in rows]
    widths = [max(len(column), *(len(line[i]) for line in table)) for i, column in enumerate(columns)]
    print("  ".join(column.ljust(width) for column, width in zip(columns, widths)).rstrip())
    for line in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip())


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.1f}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    text = str(value)
    if text.isprintable():
        return text
    # One line per row, whatever the body holds: escape only what cannot be shown, and keep UTF-8 text readable.
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


def _body(args: argparse.Namespace, body: bytes) -> str:
    if getattr(args, "base64", False):
        return base64.b64encode(body).decode("ascii")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return repr(body)[2:-1]  # escaped, as Python writes bytes


def _print_messages(args: argparse.Namespace, rows: list[dict[str, Any]]) -> None:
    if getattr(args, "raw", False):
        for row in rows:
            sys.stdout.buffer.write(row["body"] + b"\n")
        sys.stdout.flush()
        return
    for row in rows:
        row["body"] = _body(args, row["body"])
        if not getattr(args, "json", False):
            row["exchange"] = row["exchange"] or "amq.default"
    _emit(args, rows, ("exchange", "routing_key", "redelivered", "properties", "body"))


def _message_row(exchange: str, routing_key: str, body: bytes, properties: Properties,
                 redelivered: bool) -> dict[str, Any]:
    set_fields = properties.set_fields()
    return {"exchange": exchange, "routing_key": routing_key, "redelivered": redelivered,
            "properties": json.loads(json.dumps(set_fields, default=str)), "body": body}


# --- listings

def cmd_queues(args: argparse.Namespace) -> int:
    from .store import inspect

    with _open(args) as conn, conn._store.read() as store:
        rows = inspect.queues(store)
    for row in rows:
        for flag in ("durable", "exclusive", "auto_delete"):
            row[flag] = bool(row[flag])
        row["arguments"] = decode_table(row["arguments"])
        row.pop("oldest_ready_seconds", None)
        row.pop("bytes", None)
    _emit(args, rows, ("queue", "ready", "unacked", "consumers", "durable", "exclusive", "auto_delete",
                       "arguments"))
    return 0


def cmd_exchanges(args: argparse.Namespace) -> int:
    from .store import inspect

    with _open(args) as conn, conn._store.read() as store:
        rows = inspect.exchanges(store)
    rows.insert(0, {"name": "", "type": "direct", "durable": True, "auto_delete": False, "internal": False,
                    "arguments": None})
    for row in rows:
        for flag in ("durable", "auto_delete", "internal"):
            row[flag] = bool(row[flag])
        row["arguments"] = decode_table(row["arguments"])
    if not getattr(args, "json", False):
        rows = [{**row, "name": row["name"] or "amq.default"} for row in rows]
    _emit(args, rows, ("name", "type", "durable", "auto_delete", "internal", "arguments"))
    return 0


def cmd_bindings(args: argparse.Namespace) -> int:
    from .store import inspect

    with _open(args) as conn, conn._store.read() as store:
        rows = inspect.bindings(store)
    for row in rows:
        row["arguments"] = decode_table(row["arguments"])
    _emit(args, rows, ("exchange", "destination", "destination_kind", "routing_key", "arguments"))
    return 0


def cmd_connections(args: argparse.Namespace) -> int:
    from .store import inspect

    with _open(args) as conn:
        with conn._store.read() as store:
            rows = [row for row in inspect.connections(store) if row["connection_id"] != conn._session.connection_id]
        for row in rows:
            row["alive"] = not conn._session.liveness.is_dead(row["connection_id"])
    _emit(args, rows, ("connection_id", "pid", "host", "started_at", "consumers", "unacked", "alive"))
    return 0


# --- changes

def cmd_declare_queue(args: argparse.Namespace) -> int:
    with _open(args, create=True) as conn:
        info = conn.declare_queue(args.name, durable=args.durable, auto_delete=args.auto_delete,
                                  arguments=_pairs(args.argument, "argument") or None)
    print(info.queue)
    return 0


def cmd_declare_exchange(args: argparse.Namespace) -> int:
    with _open(args, create=True) as conn:
        conn.declare_exchange(args.name, args.type, durable=args.durable, auto_delete=args.auto_delete,
                              internal=args.internal, arguments=_pairs(args.argument, "argument") or None)
    return 0


def cmd_bind(args: argparse.Namespace) -> int:
    with _open(args) as conn:
        conn.bind_queue(args.queue, _exchange(args.exchange), args.routing_key,
                        _pairs(args.argument, "argument") or None)
    return 0


def cmd_unbind(args: argparse.Namespace) -> int:
    with _open(args) as conn:
        conn.unbind_queue(args.queue, _exchange(args.exchange), args.routing_key,
                          _pairs(args.argument, "argument") or None)
    return 0


def cmd_delete_queue(args: argparse.Namespace) -> int:
    with _open(args) as conn:
        if conn.route("", args.name) == []:
            raise Refused(f"queue {args.name!r} not found in {conn.path}")
        print(conn.delete_queue(args.name, if_unused=args.if_unused, if_empty=args.if_empty))
    return 0


def cmd_delete_exchange(args: argparse.Namespace) -> int:
    with _open(args) as conn:
        conn.declare_exchange(args.name, passive=True)
        conn.delete_exchange(args.name, if_unused=args.if_unused)
    return 0


def cmd_purge(args: argparse.Namespace) -> int:
    with _open(args) as conn:
        print(conn.purge_queue(args.queue))
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    properties = _properties(args.property, args.header)
    if args.lines and args.body != "-":
        raise UsageError("--lines reads standard input: give no BODY (or -)")
    if args.lines or args.body == "-":
        data = sys.stdin.buffer.read()
        bodies = data.splitlines() if args.lines else [data]
    else:
        bodies = [args.body.encode("utf-8")]
    with _open(args, create=True) as conn:
        routed = [conn.publish(_exchange(args.exchange), args.routing_key, body, properties) for body in bodies]
    if bodies and not any(routed):
        print(f"litemq: unroutable: no queue in {conn.path} is bound to receive it from exchange "
              f"{args.exchange!r} with routing key {args.routing_key!r} ({len(bodies)} message(s) dropped)",
              file=sys.stderr)
    return 0


def cmd_get(args: argparse.Namespace) -> int:
    if args.count < 1:
        raise UsageError("--count must be at least 1")
    rows = []
    with _open(args) as conn:
        deliveries = []
        for _ in range(args.count):
            delivery = conn.get(args.queue)
            if delivery is None:
                break
            deliveries.append(delivery)
            rows.append(_message_row(delivery.exchange, delivery.routing_key, delivery.body,
                                     delivery.properties, delivery.redelivered))
        if deliveries:
            last = deliveries[-1].delivery_tag
            conn.ack(last, multiple=True) if args.ack else conn.nack(last, multiple=True, requeue=True)
    _print_messages(args, rows)
    return 0


def cmd_peek(args: argparse.Namespace) -> int:
    from .store import inspect

    if args.count < 1:
        raise UsageError("--count must be at least 1")
    with _open(args) as conn:
        if conn.route("", args.queue) == []:
            raise Refused(f"queue {args.queue!r} not found in {conn.path}")
        with conn._store.read() as store:
            found = inspect.peek(store, args.queue, args.count)
    rows = [_message_row(row["exchange"], row["routing_key"], row["body"], decode_properties(row["properties"]),
                         row["delivery_count"] > 0) for row in found]
    _print_messages(args, rows)
    return 0


def cmd_tail(args: argparse.Namespace) -> int:
    exchange = _exchange(args.exchange)
    if exchange == "":
        raise UsageError("tail needs an exchange other than the default one")
    if args.count is not None and args.count < 1:
        raise UsageError("--count must be at least 1")
    with _open(args) as conn:
        conn.declare_exchange(exchange, passive=True)
        queue = conn.declare_queue("", exclusive=True, auto_delete=True).queue
        with conn._store.read() as store:
            found = store.exchange(exchange)
        key = args.binding_key
        if key is None:
            key = "#" if found is not None and found.type == "topic" else ""
        conn.bind_queue(queue, exchange, key, _pairs(args.header, "header") or None)
        seen = 0
        for delivery in conn.consume(queue, auto_ack=True):
            row = _message_row(delivery.exchange, delivery.routing_key, delivery.body, delivery.properties,
                               delivery.redelivered)
            if args.json:
                row["body"] = _body(args, row["body"])
                print(json.dumps(row, default=str), flush=True)
            elif args.raw:
                sys.stdout.buffer.write(delivery.body + b"\n")
                sys.stdout.flush()
            else:
                print(f"{delivery.routing_key or '-'}  {_body(args, delivery.body)}", flush=True)
            seen += 1
            if args.count is not None and seen >= args.count:
                break
    return 0


def cmd_route(args: argparse.Namespace) -> int:
    with _open(args) as conn:
        queues = conn.route(_exchange(args.exchange), args.routing_key, _pairs(args.header, "header") or None)
    if args.json:
        print(json.dumps(queues))
    else:
        for queue in queues:
            print(queue)
    return 0


def cmd_move(args: argparse.Namespace) -> int:
    from .policy import queue_policy
    from .store import inspect

    if args.source == args.destination:
        raise UsageError("source and destination are the same queue")
    if args.limit is not None and args.limit < 1:
        raise UsageError("--limit must be at least 1")
    with _open(args) as conn:
        for queue in (args.source, args.destination):
            conn.declare_queue(queue, passive=True)
        with conn._store.write() as store:
            target = store.queue(args.destination)
            max_priority = (queue_policy(target.arguments).max_priority or 0) if target is not None else 0
            moved = inspect.move(store, args.source, args.destination, args.limit, max_priority)
            conn._session.wake_consumers(store, [args.destination])
    print(moved)
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    from .store import inspect

    with _open(args) as conn:
        with conn._store.read() as store:
            queues = inspect.queues(store)
        sizes = inspect.file_sizes(conn.path)
    rows = [{"queue": q["queue"], "messages": q["total"], "ready": q["ready"], "unacked": q["unacked"],
             "bytes": q["bytes"], "oldest_ready_seconds": q["oldest_ready_seconds"]} for q in queues]
    totals = {"messages": sum(r["messages"] for r in rows), "bytes": sum(r["bytes"] for r in rows), **sizes}
    if args.json:
        print(json.dumps({"queues": rows, "totals": totals}, indent=2))
        return 0
    _emit(args, rows, ("queue", "messages", "ready", "unacked", "bytes", "oldest_ready_seconds"))
    print(f"total: {totals['messages']} messages, {totals['bytes']} bytes of bodies; "
          f"file {sizes['file_bytes']} bytes, WAL {sizes['wal_bytes']} bytes")
    return 0


def cmd_db(args: argparse.Namespace) -> int:
    from .store import SCHEMA_REVISION, inspect, migrate

    path = _path(args)
    if args.action == "downgrade" and not args.revision:
        raise UsageError("db downgrade needs the revision to go back to (for example 0001, or base)")
    if args.action != "downgrade" and args.revision:
        raise UsageError(f"db {args.action} takes no revision")
    if not os.path.exists(path):
        raise Refused(f"no litemq file at {path} (nothing was created)")
    inspect.check_sqlite(path)
    if args.action == "upgrade":
        changed = migrate.upgrade(path)
        print(f"{path}: at schema {SCHEMA_REVISION}" + ("" if changed else " already"))
    elif args.action == "downgrade":
        migrate.upgrade(path, args.revision)
        print(f"{path}: at schema {migrate.current_revision(path) or 'base'}")
    elif args.action == "current":
        print(f"{migrate.current_revision(path)} (this litemq writes {SCHEMA_REVISION})")
    else:
        with _open(args) as conn:  # refuses a file without litemq's tables rather than creating them
            if args.action == "check":
                problems = [line for line in inspect.integrity_check(conn._store) if line != "ok"]
                for line in problems:
                    print(line)
                if problems:
                    raise Refused(f"{path} failed PRAGMA integrity_check")
                with conn._store.read():
                    off = inspect.counter_mismatches(conn._store)
                print("\n".join(map(str, off or ["ok"])))
                if off:
                    raise Refused(f"{path}: ready counters differ from the rows (`litemq db recount` sets them)")
            elif args.action == "recount":
                with conn._store.write():
                    off = inspect.recount(conn._store)
                print("\n".join([*map(str, off), f"{path}: {len(off)} queue(s) recounted"]))
            elif args.action == "vacuum":
                before = inspect.file_sizes(path)["file_bytes"]
                inspect.vacuum(conn._store)
                inspect.checkpoint(conn._store)  # VACUUM's result sits in the WAL until then
                print(f"{path}: {before} -> {inspect.file_sizes(path)['file_bytes']} bytes")
            else:
                busy, frames, done = inspect.checkpoint(conn._store)
                print(f"{path}: {done} of {frames} WAL frames checkpointed" + (" (busy: readers)" if busy else ""))
    return 0


# --- the demo

def cmd_demo(args: argparse.Namespace) -> int:
    path = _path(args)
    print(f"litemq demo on {path}: a consumer process and a producer process, queue {DEMO_QUEUE!r}")
    with connect(path) as conn:
        conn.declare_queue(DEMO_QUEUE, durable=True)
        conn.purge_queue(DEMO_QUEUE)
    base = [sys.executable, "-m", "litemq", "--db", path]
    consumer = subprocess.Popen(base + ["demo-consumer", "-n", str(args.count)])
    producer = subprocess.Popen(base + ["demo-producer", "-n", str(args.count)])
    try:
        codes = [producer.wait(timeout=60), consumer.wait(timeout=60)]
    except subprocess.TimeoutExpired:
        for process in (producer, consumer):
            process.kill()
        raise Refused("the demo timed out")
    return 0 if codes == [0, 0] else 1


def _demo_producer(args: argparse.Namespace) -> int:
    with connect(args.db) as conn:
        conn.declare_queue(DEMO_QUEUE, durable=True)
        for i in range(1, args.count + 1):
            body = f"Hello World! #{i}"
            conn.publish("", DEMO_QUEUE, body)
            _say(f" [producer pid {os.getpid()}] Sent {body!r}")
    return 0


def _demo_consumer(args: argparse.Namespace) -> int:
    with connect(args.db) as conn:
        conn.declare_queue(DEMO_QUEUE, durable=True)
        _say(f" [consumer pid {os.getpid()}] Waiting for messages")
        received = 0
        with conn.consume(DEMO_QUEUE, prefetch=1, inactivity_timeout=30) as consumer:
            for delivery in consumer:
                _say(f" [consumer pid {os.getpid()}] Received {delivery.body.decode()!r}")
                delivery.ack()
                received += 1
                if received == args.count:
                    break
    return 0 if received == args.count else 1


def _say(line: str) -> None:
    # One write per line: the demo's two processes share one terminal, and their lines must not interleave.
    sys.stdout.flush()
    os.write(sys.stdout.fileno(), (line + "\n").encode())

