"""The ``litemq`` command: what rabbitmqctl and rabbitmqadmin give an operator, for a litemq file or a litemq schema
on a PostgreSQL server.

Exit codes: 0 ok, 1 not found or refused, 2 usage. Listings print aligned tables, or JSON with ``--json``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Optional, Sequence

from .. import __version__
from ..errors import LiteMQError
from ..routing import DELAYED_EXCHANGE, EXCHANGE_TYPES
from .changes import (cmd_bind, cmd_declare_exchange, cmd_declare_queue, cmd_delete_exchange, cmd_delete_queue,
                      cmd_purge, cmd_unbind)
from .common import Refused, UsageError
from .db import cmd_db
from .demo import cmd_demo, demo_consumer, demo_producer
from .listing import cmd_bindings, cmd_connections, cmd_exchanges, cmd_queues, cmd_route, cmd_stats
from .messages import cmd_get, cmd_move, cmd_peek, cmd_publish, cmd_tail
from .web import cmd_web

__all__ = ["main", "build_parser"]


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
    except ImportError as exc:  # a PostgreSQL URL without psycopg installed: the error says what to install
        print(f"litemq: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:
        return 0


# --- the parser

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="litemq", description="An embedded message broker in one SQLite file, or "
                                                                "in a schema on a PostgreSQL server.")
    parser.add_argument("--db", metavar="PATH_OR_URL",
                        help="the file (a path or sqlite:///path) or the server (postgresql://user@host/db, with "
                             "?schema=NAME, default litemq); default $LITEMQ_URL, else litemq.db")
    parser.add_argument("--version", action="version", version=f"litemq {__version__}")
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
    sub.add_argument("body", nargs="?", default=None,
                     help="the body; - reads standard input, which is also the default when it is not a terminal")
    sub.add_argument("--body", dest="body_text", metavar="TEXT", default=None,
                     help="the body as an option: --body '' publishes an empty body")
    sub.add_argument("--property", action="append", default=[], metavar="K=V",
                     help="a message property, such as content_type=text/plain or delivery_mode=2")
    sub.add_argument("--header", action="append", default=[], metavar="K=V", help="a header (repeatable)")
    sub.add_argument("--lines", action="store_true", help="publish each line of standard input as a message")
    sub.add_argument("-q", "--quiet", action="store_true", help="do not print how many queues it reached")

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

    command("stats", cmd_stats, "messages and bytes per queue, totals, file and WAL size (a PostgreSQL schema's size)",
            listing=True)

    sub = command("web", cmd_web, "serve the management page, its JSON API and /metrics (Prometheus)")
    sub.add_argument("--host", default="127.0.0.1",
                     help="the address to listen on (default 127.0.0.1; any other needs --token)")
    sub.add_argument("--port", type=int, default=15672, help="the port (default 15672, as RabbitMQ's management)")
    sub.add_argument("--read-only", action="store_true", help="show only: serve no action (publish, get, move, "
                                                              "purge, delete)")
    sub.add_argument("--token", default=None, help="a secret every request must present (basic auth password or "
                                                   "bearer token); default $LITEMQ_WEB_TOKEN")
    sub.add_argument("--sample-seconds", type=float, default=5.0, help="seconds between samples of the depths "
                                                                       "for the charts and rates (default 5)")

    sub = command("db", cmd_db, "the database itself (the file, or the PostgreSQL schema): upgrade, downgrade REV, "
                                "current, check, recount, vacuum, checkpoint (a file's)")
    sub.add_argument("action", choices=["upgrade", "downgrade", "current", "check", "recount", "vacuum",
                                        "checkpoint"])
    sub.add_argument("revision", nargs="?", help="for downgrade: the revision to go back to")
    sub.add_argument("--yes", action="store_true",
                     help="for downgrade: go ahead even when it deletes queues and messages")
    sub.add_argument("--json", action="store_true", help="for check: print the report as JSON")

    sub = command("demo", cmd_demo, "run a producer and a consumer process that talk through the broker")
    sub.add_argument("-n", "--count", type=int, default=5, help="how many messages to send (default 5)")
    for name, run in (("demo-producer", demo_producer), ("demo-consumer", demo_consumer)):
        hidden = commands.add_parser(name)
        hidden.set_defaults(run=run)
        hidden.add_argument("-n", "--count", type=int, default=5)
    # The demo's own two processes stay out of --help (argparse lists even a suppressed subparser).
    commands._choices_actions = [a for a in commands._choices_actions if not a.dest.startswith("demo-")]
    return parser


def _body_options(sub: argparse.ArgumentParser) -> None:
    form = sub.add_mutually_exclusive_group()
    form.add_argument("--raw", action="store_true",
                      help="write each body's bytes exactly, nothing added (not even a newline)")
    form.add_argument("--base64", action="store_true", help="print bodies in base64")
