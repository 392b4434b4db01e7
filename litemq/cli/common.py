"""What every command shares: its two kinds of failure, opening the broker (a file, or a schema on a PostgreSQL
server; read-only for the commands that only look), and KEY=VALUE input."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any, Callable, Optional, Sequence, TypeVar

from ..connection import Connection, connect
from ..message import PROPERTY_NAMES, Properties
from ..store import postgres_url, resolve_path

T = TypeVar("T")
DEFAULT_EXCHANGE_NAMES = ("", "amq.default")


class UsageError(Exception):
    """Bad command-line input (exit code 2)."""


class Refused(Exception):
    """A missing file or object, or a refusal (exit code 1)."""


def given(args: argparse.Namespace) -> str:
    """What --db names, else $LITEMQ_URL, else litemq.db: a file (a path or sqlite:///path) or a server's URL."""
    return args.db if args.db is not None else os.environ.get("LITEMQ_URL") or "litemq.db"


def server(args: argparse.Namespace) -> Optional[postgres_url.ServerURL]:
    """The PostgreSQL server and schema named, or None for a file."""
    url = given(args)
    if not postgres_url.is_postgresql(url):
        return None
    try:
        return postgres_url.parse(url)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def where(args: argparse.Namespace) -> str:
    """What the command works on, as messages name it: the file's path, or the server's URL (no password) and
    schema."""
    found = server(args)
    return found.where if found is not None else file_path(args)


def file_path(args: argparse.Namespace) -> str:
    try:
        return resolve_path(args.db)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def existing_file(args: argparse.Namespace) -> str:
    path = file_path(args)
    if not os.path.exists(path):
        raise Refused(f"no litemq file at {path} (nothing was created)")
    return path


def open_connection(args: argparse.Namespace, create: bool = False) -> Connection:
    """A connection, for the commands that change the broker. Unless ``create``, a file or schema without litemq's
    tables is refused rather than built."""
    if server(args) is not None:
        if not create:
            read_only(args, lambda store: None)
        return connect(given(args))
    if create:
        return connect(file_path(args))
    from ..store import inspect, readonly

    path = existing_file(args)
    inspect.check_sqlite(path)  # not SQLite, locked by its application: said as what it is
    readonly.read(path, lambda store: None)  # refuses a file without litemq's tables rather than creating them
    return connect(path)


def read_only(args: argparse.Namespace, action: Callable[[Any], T], **options: bool) -> T:
    """``action(store)`` on the file or schema opened read-only, for the commands that only look: they never
    create, upgrade or write it, and work on a file nobody may write."""
    found = server(args)
    if found is not None:
        from ..store import postgres_readonly

        return postgres_readonly.read(found, action, **options)
    from ..store import readonly

    return readonly.read(existing_file(args), action, **options)


def exchange_name(name: str) -> str:
    return "" if name in DEFAULT_EXCHANGE_NAMES else name


# --- key=value input

def pairs(items: Sequence[str], what: str) -> dict[str, Any]:
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


def properties_from(items: Sequence[str], headers: Sequence[str]) -> Optional[Properties]:
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
        values["headers"] = pairs(headers, "header")
    if not values:
        return None
    try:
        return Properties(**values)
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from None
