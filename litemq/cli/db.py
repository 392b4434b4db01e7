"""``litemq db``: the file itself (schema revision, integrity, VACUUM, checkpoint)."""

from __future__ import annotations

import argparse

from .common import Refused, UsageError, existing_file, open_connection, read_only


def cmd_db(args: argparse.Namespace) -> int:
    from ..store import SCHEMA_REVISION, inspect, migrate, readonly

    if args.action == "downgrade" and not args.revision:
        raise UsageError("db downgrade needs the revision to go back to (for example 0001, or base)")
    if args.action != "downgrade" and args.revision:
        raise UsageError(f"db {args.action} takes no revision")
    if args.yes and args.action != "downgrade":
        raise UsageError("--yes is for db downgrade")
    path = existing_file(args)
    if args.action == "current":  # read-only, whatever the revision
        revision = read_only(args, lambda store: store.revision(), litemq_only=False, any_revision=True)
        print(f"{revision} (this litemq writes {SCHEMA_REVISION})" if revision
              else f"base (no litemq tables; this litemq writes {SCHEMA_REVISION})")
    elif args.action == "check":  # read-only: a damaged file gets SQLite's verdict, never a traceback
        problems = [line for line in readonly.integrity_check(path) if line != "ok"]
        for line in problems:
            print(line)
        if problems:
            raise Refused(f"{path} failed PRAGMA integrity_check")
        # A file without litemq's tables, or from a newer litemq, is refused; then the counters against the rows.
        try:
            off = read_only(args, inspect.counter_mismatches)
        except readonly.FileBehind:
            off = []  # an older schema counts its own way; the upgrade to 0007 recounts every queue
        print("\n".join(map(str, off or ["ok"])))
        if off:
            raise Refused(f"{path}: ready counters differ from the rows (`litemq db recount` sets them)")
    elif args.action == "upgrade":
        inspect.check_sqlite(path)
        changed = migrate.upgrade(path)
        print(f"{path}: at schema {SCHEMA_REVISION}" + ("" if changed else " already"))
    elif args.action == "downgrade":
        inspect.check_sqlite(path)
        lost = ""
        if args.revision == "base":  # only base drops the tables that hold queues and messages
            queues, messages = read_only(args, inspect.contents)
            lost = f"{queues} queue(s) and {messages} message(s)"
            if (queues or messages) and not args.yes:
                raise Refused(f"downgrading {path} to base drops litemq's tables and would delete {lost}; "
                              "give --yes to do it (nothing was changed)")
        migrate.upgrade(path, args.revision)
        print(f"{path}: at schema {migrate.current_revision(path) or 'base'}" + (f" ({lost} deleted)" if lost else ""))
    else:
        with open_connection(args) as conn:
            store = inspect.sqlite_of(conn._store)
            if args.action == "recount":
                with store.write_exclusive():
                    off = inspect.recount(store)
                print("\n".join([*map(str, off), f"{path}: {len(off)} queue(s) recounted"]))
            elif args.action == "vacuum":
                before = inspect.file_sizes(path)["file_bytes"]
                inspect.vacuum(store)
                inspect.checkpoint(store)  # VACUUM's result sits in the WAL until then
                print(f"{path}: {before} -> {inspect.file_sizes(path)['file_bytes']} bytes")
            else:
                busy, frames, done = inspect.checkpoint(store)
                print(f"{path}: {done} of {frames} WAL frames checkpointed" + (" (busy: readers)" if busy else ""))
    return 0
