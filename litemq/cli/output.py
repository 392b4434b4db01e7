"""How the command prints: aligned tables or JSON, text a terminal can show, and message bodies."""

from __future__ import annotations

import argparse
import base64
import json
import sys
from typing import Any, Sequence

from ..message import Properties


def emit(args: argparse.Namespace, rows: list[dict[str, Any]], columns: Sequence[str]) -> None:
    if getattr(args, "json", False):
        print(json.dumps(rows, indent=2, default=str))
        return
    if not rows:
        return
    table = [[cell(row.get(column)) for column in columns] for row in rows]
    widths = [max(len(column), *(len(line[i]) for line in table)) for i, column in enumerate(columns)]
    print("  ".join(column.ljust(width) for column, width in zip(columns, widths)).rstrip())
    for line in table:
        print("  ".join(text.ljust(width) for text, width in zip(line, widths)).rstrip())


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.1f}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return shown(str(value))


def shown(text: str) -> str:
    """Text as a terminal may print it: one line, no control bytes. Only what cannot be shown is escaped, so
    UTF-8 text stays readable."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


def shown_body(args: argparse.Namespace, body: bytes) -> str:
    if getattr(args, "base64", False):
        return base64.b64encode(body).decode("ascii")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return repr(body)[2:-1]  # escaped, as Python writes bytes


def json_body(args: argparse.Namespace, body: bytes) -> dict[str, str]:
    """The body for JSON, with how it is encoded: text when it is UTF-8 (unless --base64), else base64."""
    if not getattr(args, "base64", False):
        try:
            return {"body": body.decode("utf-8"), "body_encoding": "text"}
        except UnicodeDecodeError:
            pass
    return {"body": base64.b64encode(body).decode("ascii"), "body_encoding": "base64"}


def write_raw(bodies: Sequence[bytes]) -> None:
    sys.stdout.flush()
    for body in bodies:
        sys.stdout.buffer.write(body)
    sys.stdout.buffer.flush()


def print_messages(args: argparse.Namespace, rows: list[dict[str, Any]]) -> None:
    if getattr(args, "raw", False):
        write_raw([row["body"] for row in rows])
        return
    for row in rows:
        if args.json:
            row.update(json_body(args, row["body"]))
        else:
            row["body"] = shown_body(args, row["body"])
            row["exchange"] = row["exchange"] or "amq.default"
    emit(args, rows, ("exchange", "routing_key", "redelivered", "properties", "body"))


def message_row(exchange: str, routing_key: str, body: bytes, properties: Properties,
                redelivered: bool) -> dict[str, Any]:
    set_fields = properties.set_fields()
    return {"exchange": exchange, "routing_key": routing_key, "redelivered": redelivered,
            "properties": json.loads(json.dumps(set_fields, default=str)), "body": body}
