"""Names on a PostgreSQL server: advisory lock keys and quoted identifiers, derived from the schema so that two
litemq schemas in one database never share a lock."""

from __future__ import annotations

import hashlib


def lock_key(schema: str, *names: str) -> int:
    """A signed 64-bit advisory lock key for ``names`` within the schema (advisory locks are per database)."""
    digest = hashlib.blake2b("\0".join(("litemq", schema, *names)).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def connection_key(schema: str, connection_id: str) -> int:
    """The key a connection holds for its whole life: its proof of life."""
    return lock_key(schema, "connection", connection_id)


def quoted(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def channel(schema: str) -> str:
    """The LISTEN/NOTIFY channel of the schema (an identifier: at most 63 bytes)."""
    name = f"litemq.{schema}"
    if len(name.encode("utf-8")) > 63:
        name = "litemq." + hashlib.blake2b(schema.encode("utf-8"), digest_size=16).hexdigest()
    return name
