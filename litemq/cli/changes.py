"""The commands that change the model: declare, bind, unbind, delete, purge."""

from __future__ import annotations

import argparse

from .common import Refused, exchange_name, open_connection, pairs
from .output import shown


def cmd_declare_queue(args: argparse.Namespace) -> int:
    with open_connection(args, create=True) as conn:
        info = conn.declare_queue(args.name, durable=args.durable, auto_delete=args.auto_delete,
                                  arguments=pairs(args.argument, "argument") or None)
    print(shown(info.queue))
    return 0


def cmd_declare_exchange(args: argparse.Namespace) -> int:
    with open_connection(args, create=True) as conn:
        conn.declare_exchange(args.name, args.type, durable=args.durable, auto_delete=args.auto_delete,
                              internal=args.internal, arguments=pairs(args.argument, "argument") or None)
    return 0


def cmd_bind(args: argparse.Namespace) -> int:
    with open_connection(args) as conn:
        conn.bind_queue(args.queue, exchange_name(args.exchange), args.routing_key,
                        pairs(args.argument, "argument") or None)
    return 0


def cmd_unbind(args: argparse.Namespace) -> int:
    with open_connection(args) as conn:
        conn.unbind_queue(args.queue, exchange_name(args.exchange), args.routing_key,
                          pairs(args.argument, "argument") or None)
    return 0


def cmd_delete_queue(args: argparse.Namespace) -> int:
    with open_connection(args) as conn:
        if conn.route("", args.name) == []:
            raise Refused(f"queue {args.name!r} not found in {conn.path}")
        print(conn.delete_queue(args.name, if_unused=args.if_unused, if_empty=args.if_empty))
    return 0


def cmd_delete_exchange(args: argparse.Namespace) -> int:
    with open_connection(args) as conn:
        conn.declare_exchange(args.name, passive=True)
        conn.delete_exchange(args.name, if_unused=args.if_unused)
    return 0


def cmd_purge(args: argparse.Namespace) -> int:
    with open_connection(args) as conn:
        print(conn.purge_queue(args.queue))
    return 0
