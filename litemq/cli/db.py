"""``litemq db``: the database itself: its schema revision, its health (a file's integrity; the counters; a
PostgreSQL schema's bloat), recounting, VACUUM, and a file's checkpoint."""

from __future__ import annotations

import argparse
import json
from typing import Any, Optional

from ..store.postgres_url import ServerURL
from .common import Refused, UsageError, existing_file, open_connection, read_only, server
from .output import emit


def cmd_db(args: argparse.Namespace) -> int:
    if args.action == "downgrade" and not args.revision:
        raise UsageError("db downgrade needs the revision to go back to (for example 0001, or base)")
    if args.action != "downgrade" and args.revision:
        raise UsageError(f"db {args.action} takes no revision")
    if args.yes and args.action != "downgrade":
        raise UsageError("--yes is for db downgrade")
    if args.json and args.action != "check":
        raise UsageError("--json is for db check")
    found = server(args)
    if found is not None:
        _on_server(args, found)
    else:
        _on_file(args, existing_file(args))
    return 0


def _on_file(args: argparse.Namespace, path: str) -> None:
    from ..store import SCHEMA_REVISION, inspect, migrate, readonly

    if args.action == "current":  # read-only, whatever the revision
        _print_revision(read_only(args, lambda store: store.revision(), litemq_only=False, any_revision=True))
    elif args.action == "check":  # read-only: a damaged file gets SQLite's verdict, never a traceback
        problems = [line for line in readonly.integrity_check(path) if line != "ok"]
        if problems:
            _report(args, {"integrity": problems}, problems)
            raise Refused(f"{path} failed PRAGMA integrity_check")
        off = _counter_mismatches(args)
        _report(args, {"integrity": ["ok"], "counters": [row._asdict() for row in off]}, _counter_lines(off))
        _refuse_if_off(path, off)
    elif args.action == "upgrade":
        inspect.check_sqlite(path)
        changed = migrate.upgrade(path)
        print(f"{path}: at schema {SCHEMA_REVISION}" + ("" if changed else " already"))
    elif args.action == "downgrade":
        inspect.check_sqlite(path)
        lost = _lost_to_base(args, path)
        migrate.upgrade(path, args.revision)
        print(f"{path}: at schema {migrate.current_revision(path) or 'base'}" + (f" ({lost} deleted)" if lost else ""))
    else:
        with open_connection(args) as conn:
            store = inspect.sqlite_of(conn._store)
            if args.action == "recount":
                _recount(conn, path)
            elif args.action == "vacuum":
                before = inspect.file_sizes(path)["file_bytes"]
                inspect.vacuum(store)
                inspect.checkpoint(store)  # VACUUM's result sits in the WAL until then
                print(f"{path}: {before} -> {inspect.file_sizes(path)['file_bytes']} bytes")
            else:
                busy, frames, done = inspect.checkpoint(store)
                print(f"{path}: {done} of {frames} WAL frames checkpointed" + (" (busy: readers)" if busy else ""))


def _on_server(args: argparse.Namespace, found: ServerURL) -> None:
    from ..store import SCHEMA_REVISION, postgres_inspect

    if args.action == "checkpoint":
        raise Refused(f"db checkpoint copies an SQLite file's write-ahead log into the file: {found.where} is a "
                      "PostgreSQL schema, whose server checkpoints its own WAL (nothing was done)")
    # A schema that is not there is refused as a missing file is (and one from a newer litemq, unless only asked
    # its revision); an empty one is upgraded as an application's file would be.
    revision = read_only(args, lambda store: _existing(store, found), litemq_only=False,
                         any_revision=args.action == "current")
    if args.action == "current":
        _print_revision(revision)
    elif args.action == "check":
        off = _counter_mismatches(args)
        tables, oldest = read_only(args, lambda store: (postgres_inspect.tables(store),
                                                        postgres_inspect.oldest_transaction(store)))
        _report(args, {"counters": [row._asdict() for row in off], "tables": tables, "oldest_transaction": oldest},
                _counter_lines(off), tables, [f"oldest transaction holding back vacuum: {_described(oldest)}"])
        _refuse_if_off(found.where, off)
    elif args.action == "upgrade":
        changed = postgres_inspect.migrate_to(found)
        print(f"{found.where}: at schema {SCHEMA_REVISION}" + ("" if changed else " already"))
    elif args.action == "downgrade":
        lost = _lost_to_base(args, found.where)
        postgres_inspect.migrate_to(found, args.revision)
        now = read_only(args, lambda store: store.revision(), litemq_only=False, any_revision=True)
        print(f"{found.where}: at schema {now or 'base'}" + (f" ({lost} deleted)" if lost else ""))
    elif args.action == "vacuum":
        def sizes(store: Any) -> tuple[int, int, list[str]]:
            return (postgres_inspect.schema_bytes(store), postgres_inspect.dead_tuples(store),
                    postgres_inspect.table_names(store))

        before, dead_before, names = read_only(args, sizes)
        postgres_inspect.vacuum(found, names)  # after the read: its snapshot would hold VACUUM back
        after, dead_after, _ = read_only(args, sizes)
        print(f"{found.where}: {before} -> {after} bytes, {dead_before} -> {dead_after} dead tuples "
              f"(VACUUM (ANALYZE) of {len(names)} tables)")
    else:
        with open_connection(args) as conn:
            _recount(conn, found.where)


def _existing(store: Any, found: ServerURL) -> Optional[str]:
    if not store.has_schema():
        raise Refused(f"{found.where}: no such schema (nothing was created)")
    revision: Optional[str] = store.revision()
    return revision


def _print_revision(revision: Optional[str]) -> None:
    from ..store import SCHEMA_REVISION

    print(f"{revision} (this litemq writes {SCHEMA_REVISION})" if revision
          else f"base (no litemq tables; this litemq writes {SCHEMA_REVISION})")


def _counter_mismatches(args: argparse.Namespace) -> list[Any]:
    """The queues whose ready counters differ from their rows; a broker without litemq's tables, or from a newer
    litemq, is refused."""
    from ..store import inspect, readonly

    try:
        return read_only(args, inspect.counter_mismatches)
    except readonly.FileBehind:
        return []  # an older schema counts its own way; the upgrade to 0007 recounts every queue


def _counter_lines(off: list[Any]) -> list[str]:
    return [str(row) for row in off] or ["ok"]


def _refuse_if_off(name: str, off: list[Any]) -> None:
    if off:
        raise Refused(f"{name}: ready counters differ from the rows (`litemq db recount` sets them)")


def _report(args: argparse.Namespace, report: dict[str, Any], *parts: Any) -> None:
    """``report`` as JSON with --json; else each part: lines of text, or rows printed as a table."""
    if args.json:
        print(json.dumps(report, indent=2, default=str))
        return
    for part in parts:
        if part and isinstance(part[0], dict):
            emit(args, part, list(part[0]))
        else:
            for line in part:
                print(line)


def _described(oldest: Optional[dict[str, Any]]) -> str:
    if oldest is None:
        return "none"
    who = ", ".join(f"{key} {oldest[key]}" for key in ("user", "database", "application") if oldest[key])
    parts = [f"pid {oldest['pid']}" + (f" ({who})" if who else ""), oldest["state"] or "state unknown"]
    if oldest["open_seconds"] is not None:
        parts.append(f"its transaction open {oldest['open_seconds']:.1f} s")
    parts.append(f"its snapshot {oldest['xmin_age']} transactions old")
    return ", ".join(parts) + (f": {' '.join(oldest['query'].split())}" if oldest["query"] else "")


def _lost_to_base(args: argparse.Namespace, name: str) -> str:
    """What a downgrade to base would delete ("" for another revision); refused without --yes when it is not
    nothing."""
    from ..store import inspect

    if args.revision != "base":  # only base drops the tables that hold queues and messages
        return ""
    queues, messages = read_only(args, inspect.contents)
    lost = f"{queues} queue(s) and {messages} message(s)"
    if (queues or messages) and not args.yes:
        raise Refused(f"downgrading {name} to base drops litemq's tables and would delete {lost}; "
                      "give --yes to do it (nothing was changed)")
    return lost


def _recount(conn: Any, name: str) -> None:
    from ..store import inspect

    with conn._store.write_exclusive():
        off = inspect.recount(conn._store)
    print("\n".join([*map(str, off), f"{name}: {len(off)} queue(s) recounted"]))
