"""What the management page (``litemq web``) reads, on either engine's read-only store: per-queue counts that stay
cheap at any depth, a queue's bindings and consumers with what each holds, and messages browsed without a lease.

Every count here comes from the ready counters (``litemq_queues``, with PostgreSQL's deltas, as the store counts
them) or from an index of the rows it counts: unacked messages from the lease index, delayed ones from the delay
index. The ``litemq_queue_stats`` view's ``bytes`` and ``oldest_ready_seconds`` read every message of a queue, so
the page asks for neither: with a million messages its refresh would take seconds.

The statements are SQLite's text, which the PostgreSQL read-only store takes too (translating the placeholders).
"""

from __future__ import annotations

from typing import Any, Optional

from . import postgres_sql
from .sqlite_sql import BODY, BODY_BYTES

# Not the litemq_queue_stats view: on PostgreSQL its unused columns (bytes, the oldest message's age: a walk of every
# message of each queue) are computed too, 1 s with a million messages.
TOTALS = postgres_sql.TOTALS
_QUEUES = ("SELECT q.name AS queue, {ready} AS ready, {unacked} AS unacked, {consumers} AS consumers, "
           "{ready_bytes} AS ready_bytes, q.durable, q.exclusive, q.auto_delete, q.arguments{totals} FROM {queues}")
_ROW = {"ready": "q.ready_count", "ready_bytes": "q.ready_bytes", "queues": "litemq_queues q",
        "unacked": "(SELECT count(*) FROM litemq_messages m WHERE m.queue = q.name AND m.lease_token IS NOT NULL)",
        "consumers": "(SELECT count(*) FROM litemq_consumers c WHERE c.queue = q.name)",
        "totals": "".join(f", q.{c} AS {c}" for c in TOTALS)}
SELECT_QUEUES = _QUEUES.format(**_ROW) + " ORDER BY q.name"
SELECT_QUEUE = _QUEUES.format(**_ROW) + " WHERE q.name = ?"
# The command's listings, without the totals (so a file from before migration 0010 is still read).
SELECT_QUEUE_COUNTS = _QUEUES.format(**{**_ROW, "totals": ""}) + " ORDER BY q.name"
# On PostgreSQL a queue's counts and totals are its row's plus its deltas' (migrations 0007 and 0010), as the store
# counts them. One queue's are looked up; every queue's are read in one walk each of the deltas, the lease index and
# the consumers, joined by hash: with 1,000 queues, 1,000 lookups of each (the deltas' index leading to their dead
# row versions until vacuum) took 19 to 36 ms here, the walks 2.8 ms.
_SUMMED = ("ready_count", "ready_bytes", *TOTALS)
_DELTAS = ", ".join(f"coalesce(sum({c}), 0)::bigint AS {c}" for c in _SUMMED) + f" FROM {postgres_sql.DELTAS}"
_LOOKED_UP = {**_ROW, "ready": "q.ready_count + d.ready_count", "ready_bytes": "q.ready_bytes + d.ready_bytes",
              "totals": "".join(f", q.{c} + d.{c} AS {c}" for c in TOTALS),
              "queues": f"litemq_queues q CROSS JOIN LATERAL (SELECT {_DELTAS} WHERE queue = q.name) d"}
_JOINED = {"ready": "q.ready_count + coalesce(d.ready_count, 0)",
           "ready_bytes": "q.ready_bytes + coalesce(d.ready_bytes, 0)",
           "unacked": "coalesce(u.unacked, 0)", "consumers": "coalesce(c.consumers, 0)",
           "totals": "".join(f", q.{c} + coalesce(d.{c}, 0) AS {c}" for c in TOTALS),
           "queues": f"litemq_queues q LEFT JOIN (SELECT queue, {_DELTAS} GROUP BY queue) d ON d.queue = q.name "
                     "LEFT JOIN (SELECT queue, count(*) AS unacked FROM litemq_messages WHERE lease_token IS NOT NULL "
                     "GROUP BY queue) u ON u.queue = q.name LEFT JOIN (SELECT queue, count(*) AS consumers "
                     "FROM litemq_consumers GROUP BY queue) c ON c.queue = q.name"}
SELECT_QUEUES_POSTGRESQL = _QUEUES.format(**_JOINED) + " ORDER BY q.name"
SELECT_QUEUE_POSTGRESQL = _QUEUES.format(**_LOOKED_UP) + " WHERE q.name = ?"
SELECT_QUEUE_COUNTS_POSTGRESQL = _QUEUES.format(**{**_JOINED, "totals": ""}) + " ORDER BY q.name"
# One walk of the delay index for every queue (the view's per-queue count walks it once per queue).
SELECT_DELAYED = ("SELECT queue, count(*) FROM litemq_messages WHERE visible_at IS NOT NULL GROUP BY queue")
SELECT_DELAYED_OF = "SELECT count(*) FROM litemq_messages WHERE visible_at IS NOT NULL AND queue = ?"
SELECT_CONNECTION_COUNT = "SELECT count(*) FROM litemq_connections"
SELECT_BINDINGS_TO = ("SELECT exchange, routing_key, arguments FROM litemq_bindings "
                      "WHERE destination_kind = 'queue' AND destination = ? ORDER BY exchange, routing_key, id")
SELECT_CONSUMERS_OF = ("SELECT c.connection_id, c.channel, c.consumer_tag, c.prefetch_count, c.auto_ack, c.exclusive, "
                       "c.started_at, c.priority, n.pid, n.host FROM litemq_consumers c "
                       "LEFT JOIN litemq_connections n ON n.id = c.connection_id "
                       "WHERE c.queue = ? ORDER BY c.started_at, c.consumer_tag")
# Leases name their holder as connection/channel: what each channel holds of the queue, from the lease index.
SELECT_HELD_IN = ("SELECT lease_owner, count(*) FROM litemq_messages WHERE queue = ? AND lease_token IS NOT NULL "
                  "GROUP BY lease_owner")
SELECT_CONNECTIONS = "SELECT id AS connection_id, pid, host, started_at FROM litemq_connections ORDER BY started_at, id"
# Every lease's holder and queue once, from the lease index (litemq_connection_view counts a connection's leases once
# per consumer row, a walk of the table each: 100 consumers on one connection took 28 ms with a million messages).
SELECT_HOLDINGS = ("SELECT lease_owner, queue, count(*) FROM litemq_messages WHERE lease_token IS NOT NULL "
                   "GROUP BY lease_owner, queue")
SELECT_ALL_CONSUMERS = ("SELECT connection_id, channel, consumer_tag, queue, prefetch_count FROM litemq_consumers "
                        "ORDER BY connection_id, channel, consumer_tag")
# What ``litemq stats`` adds: the bytes of the messages that are not ready (ready ones are counted in ready_bytes),
# from the lease and delay indexes, and the arrival of each queue's oldest ready message. A queue's head (its first
# in delivery order, one step down the ready index) is its oldest when its priority is 0 (then all are); else the
# oldest is the least id over the queue's ready rows.
SELECT_HELD_BYTES = (f"SELECT queue, coalesce(sum({BODY_BYTES}), 0) FROM litemq_messages "
                     "WHERE lease_token IS NOT NULL GROUP BY queue")
SELECT_DELAYED_BYTES = (f"SELECT queue, coalesce(sum({BODY_BYTES}), 0) FROM litemq_messages "
                        "WHERE visible_at IS NOT NULL AND lease_token IS NULL GROUP BY queue")
SELECT_HEADS = ("SELECT m.queue, m.published_at, m.priority FROM litemq_queues q JOIN litemq_messages m "
                "ON m.id = (SELECT h.id FROM litemq_messages h WHERE h.queue = q.name AND h.lease_token IS NULL "
                "AND h.visible_at IS NULL ORDER BY h.priority DESC, h.id LIMIT 1)")
SELECT_OLDEST_PUBLISHED = ("SELECT published_at FROM litemq_messages WHERE id = (SELECT min(id) FROM litemq_messages "
                           "WHERE queue = ? AND lease_token IS NULL AND visible_at IS NULL)")
BROWSE = (f"SELECT id, exchange, routing_key, {BODY} AS body, properties, delivery_count, published_at, priority "
          "FROM litemq_messages WHERE queue = ? AND lease_token IS NULL AND visible_at IS NULL "
          "ORDER BY priority DESC, id LIMIT ? OFFSET ?")


# Every statement here is served by an index; PostgreSQL, before it has analyzed a table just filled (or on estimates
# that a million rows skew), plans scans of the whole messages table instead, and JIT-compiles them (200 ms a look).
# On such estimates it also plans the walk of a small partial index (the delayed, the leased) with parallel workers,
# whose start took 15 to 45 ms here against 0.3 ms without. For the page's transaction only: what these statements
# cost does not depend on statistics. Sent as one statement (each round trip counts on a loaded machine); a session
# that only the page reads on takes them once, for the session.
FOR_PAGE_POSTGRESQL = ("jit = off", "enable_seqscan = off", "max_parallel_workers_per_gather = 0")


def for_page(store: Any, *, session: bool = False) -> None:
    """Set up the read transaction for the page's statements (on PostgreSQL: plans by the indexes); with
    ``session``, every later read of the session (outside a transaction: the page's own session)."""
    if _on_postgresql(store):
        scope = "SET " if session else "SET LOCAL "
        store.execute("; ".join(scope + setting for setting in FOR_PAGE_POSTGRESQL))


def _on_postgresql(store: Any) -> bool:
    return bool(store.engine == "postgresql")


def _rows(store: Any, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    cursor = store.execute(sql, params)
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def queues(store: Any) -> list[dict[str, Any]]:
    """Every queue with ready, unacked, delayed, consumers, ready_bytes, its flags and arguments (as stored)."""
    rows = _rows(store, SELECT_QUEUES_POSTGRESQL if _on_postgresql(store) else SELECT_QUEUES)
    delayed = dict(store.execute(SELECT_DELAYED).fetchall())
    for row in rows:
        row["delayed"] = int(delayed.get(row["queue"], 0))
    return rows


def queue_counts(store: Any) -> list[dict[str, Any]]:
    """Every queue with ready, unacked, consumers, ready_bytes, its flags and arguments (``queues`` without the
    totals and the delayed, for the command's listings)."""
    return _rows(store, SELECT_QUEUE_COUNTS_POSTGRESQL if _on_postgresql(store) else SELECT_QUEUE_COUNTS)


def stats(store: Any) -> list[dict[str, Any]]:
    """``queue_counts`` with each queue's ``bytes`` (the bodies of all its messages: ready, unacked and delayed)
    and ``oldest_ready_at`` (when its oldest ready message was published, None when it has none)."""
    rows = queue_counts(store)
    held = dict(store.execute(SELECT_HELD_BYTES).fetchall())
    delayed = dict(store.execute(SELECT_DELAYED_BYTES).fetchall())
    heads = {name: (published_at, priority) for name, published_at, priority in store.execute(SELECT_HEADS)}
    for row in rows:
        name = row["queue"]
        row["bytes"] = int(row["ready_bytes"]) + int(held.get(name, 0)) + int(delayed.get(name, 0))
        oldest, priority = heads.get(name, (None, 0))
        if priority:
            oldest = store.execute(SELECT_OLDEST_PUBLISHED, (name,)).fetchone()[0]
        row["oldest_ready_at"] = None if oldest is None else float(oldest)
    return rows


def queue(store: Any, name: str) -> Optional[dict[str, Any]]:
    found = _rows(store, SELECT_QUEUE_POSTGRESQL if _on_postgresql(store) else SELECT_QUEUE, (name,))
    if not found:
        return None
    row = found[0]
    row["delayed"] = int(store.execute(SELECT_DELAYED_OF, (name,)).fetchone()[0])
    return row


def connection_count(store: Any) -> int:
    return int(store.execute(SELECT_CONNECTION_COUNT).fetchone()[0])


def bindings_to(store: Any, queue: str) -> list[dict[str, Any]]:
    return _rows(store, SELECT_BINDINGS_TO, (queue,))


def consumers_of(store: Any, queue: str) -> list[dict[str, Any]]:
    """The queue's consumers with their connection's pid and host and how many of its messages their channel
    holds."""
    rows = _rows(store, SELECT_CONSUMERS_OF, (queue,))
    held = dict(store.execute(SELECT_HELD_IN, (queue,)).fetchall())
    for row in rows:
        row["unacked"] = int(held.get(f"{row['connection_id']}/{row['channel']}", 0))
    return rows


def holdings(store: Any) -> dict[tuple[str, str], int]:
    """How many messages each lease holder (``connection/channel``) holds, by holder and queue."""
    return {(owner or "", queue): int(count) for owner, queue, count in store.execute(SELECT_HOLDINGS).fetchall()}


def connections(store: Any, held: dict[tuple[str, str], int]) -> list[dict[str, Any]]:
    """Registered connections with pid, host, started_at (epoch seconds) and how many messages they hold (of
    ``held``, the holdings)."""
    rows = _rows(store, SELECT_CONNECTIONS)
    by_connection: dict[str, int] = {}
    for (owner, _), count in held.items():
        connection = owner.partition("/")[0]
        by_connection[connection] = by_connection.get(connection, 0) + count
    for row in rows:
        row["unacked"] = by_connection.get(row["connection_id"], 0)
    return rows


def all_consumers(store: Any) -> list[dict[str, Any]]:
    return _rows(store, SELECT_ALL_CONSUMERS)


def browse(store: Any, queue: str, limit: int, offset: int = 0) -> list[dict[str, Any]]:
    """Ready messages of the queue in delivery order, from ``offset``, without leasing them."""
    return _rows(store, BROWSE, (queue, limit, offset))
