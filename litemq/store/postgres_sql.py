"""The PostgreSQL store's statements: SQLite's own text wherever the SQL is the same (its ``?`` and ``?N``
placeholders become ``$N``), and PostgreSQL's forms where it must differ: claims that lock what they take
(``FOR UPDATE SKIP LOCKED``, fenced in a materialised CTE so the planner cannot take more rows than asked), batches
as arrays, counts that add the queue's deltas (migration 0007), ``ON CONFLICT`` for ``INSERT OR IGNORE``.
"""

from __future__ import annotations

import itertools
import re

from . import sqlite_sql as lite


def from_sqlite(sql: str) -> str:
    """SQLite's placeholders as PostgreSQL's: ``?N`` is ``$N``, and bare ``?`` count from 1."""
    numbered, bare = re.search(r"\?\d", sql), re.search(r"\?(?!\d)", sql)
    assert not (numbered and bare), f"mixed placeholders: {sql}"
    counter = itertools.count(1)
    return re.sub(r"\?(\d*)", lambda m: "$" + (m.group(1) or str(next(counter))), sql)


# --- the same on both engines
SELECT_EXCHANGE = from_sqlite(lite.SELECT_EXCHANGE)
INSERT_EXCHANGE = from_sqlite(lite.INSERT_EXCHANGE)
DELETE_EXCHANGE = from_sqlite(lite.DELETE_EXCHANGE)
SELECT_ROUTE = from_sqlite(lite.SELECT_ROUTE)
SELECT_ROUTING_VERSION = from_sqlite(lite.SELECT_ROUTING_VERSION)
SELECT_HAS_BINDINGS = from_sqlite(lite.SELECT_HAS_BINDINGS)
SELECT_IS_DESTINATION = from_sqlite(lite.SELECT_IS_DESTINATION)
DELETE_BINDING = from_sqlite(lite.DELETE_BINDING)
DELETE_BINDINGS_OF_EXCHANGE = from_sqlite(lite.DELETE_BINDINGS_OF_EXCHANGE)
DELETE_BINDINGS_TO_QUEUE = from_sqlite(lite.DELETE_BINDINGS_TO_QUEUE)
SELECT_QUEUE_CREATED_AT = from_sqlite(lite.SELECT_QUEUE_CREATED_AT)
INSERT_QUEUE = from_sqlite(lite.INSERT_QUEUE)
DELETE_QUEUE = from_sqlite(lite.DELETE_QUEUE)
DELETE_QUEUE_MESSAGES = from_sqlite(lite.DELETE_QUEUE_MESSAGES)
DELETE_QUEUE_CONSUMERS = from_sqlite(lite.DELETE_QUEUE_CONSUMERS)
PURGE_READY = from_sqlite(lite.PURGE_READY)
INSERT_MESSAGE = from_sqlite(lite.INSERT_MESSAGE)
INSERT_DELAYED = from_sqlite(lite.INSERT_DELAYED)
SELECT_DEADLINES = from_sqlite(lite.SELECT_DEADLINES)
SELECT_ARRIVAL_DEADLINES = from_sqlite(lite.SELECT_ARRIVAL_DEADLINES)
SELECT_EXPIRED_QUEUES = from_sqlite(lite.SELECT_EXPIRED_QUEUES)
SET_QUEUE_EXPIRY = from_sqlite(lite.SET_QUEUE_EXPIRY)
SELECT_NEXT_EXPIRY = from_sqlite(lite.SELECT_NEXT_EXPIRY)
SELECT_NEXT_EXPIRIES = ("SELECT queue, min(lease_expires_at) FROM litemq_messages WHERE lease_token IS NOT NULL "
                        "AND queue = ANY($1::text[]) GROUP BY queue")
SELECT_DUE = from_sqlite(lite.SELECT_DUE)
SELECT_CONSUMERS_OF = from_sqlite(lite.SELECT_CONSUMERS_OF)
SELECT_ALL_CONSUMERS = from_sqlite(lite.SELECT_ALL_CONSUMERS)
DELETE_CONNECTION_CONSUMERS = from_sqlite(lite.DELETE_CONNECTION_CONSUMERS)
SELECT_CONNECTION_IDS = from_sqlite(lite.SELECT_CONNECTION_IDS)
SELECT_CONNECTION = from_sqlite(lite.SELECT_CONNECTION)
SELECT_REGISTRATION = from_sqlite(lite.SELECT_REGISTRATION)
SELECT_UNACKED_COUNT = from_sqlite(lite.SELECT_UNACKED_COUNT)
SELECT_CONSUMER_COUNT = from_sqlite(lite.SELECT_CONSUMER_COUNT)
INSERT_CONSUMER = from_sqlite(lite.INSERT_CONSUMER)
SET_CONSUMER_ROOM = from_sqlite(lite.SET_CONSUMER_ROOM)
DELETE_CONSUMER = from_sqlite(lite.DELETE_CONSUMER)
SELECT_EXCLUSIVE_CONSUMER = from_sqlite(lite.SELECT_EXCLUSIVE_CONSUMER)
SELECT_FIRST_CONSUMER = from_sqlite(lite.SELECT_FIRST_CONSUMER)
INSERT_CONNECTION = from_sqlite(lite.INSERT_CONNECTION)
DELETE_CONNECTION = from_sqlite(lite.DELETE_CONNECTION)
SELECT_OWNED_QUEUES = from_sqlite(lite.SELECT_OWNED_QUEUES)
SELECT_REVISION = from_sqlite(lite.SELECT_REVISION)
# (SELECT_FIRST_CONSUMER orders by rowid: on PostgreSQL an identity column of that name, migration 0001.)

# --- counts: the queue's row plus its deltas (migration 0007), with how many deltas there are to fold
DELTAS = "litemq_queue_deltas"
_COUNTED = ("litemq_queues q CROSS JOIN LATERAL (SELECT coalesce(sum(ready_count), 0)::bigint AS ready_count, "
            "coalesce(sum(ready_bytes), 0)::bigint AS ready_bytes, count(*) AS deltas "
            f"FROM {DELTAS} WHERE queue = q.name) d")
_COUNTS_WITH = ("q.ready_count + d.ready_count + $1, q.ready_bytes + d.ready_bytes + $2, q.arguments, "
                "(SELECT count(*) FROM litemq_consumers c WHERE c.queue = q.name), d.deltas")
SELECT_QUEUE = ("SELECT q.durable, q.exclusive, q.auto_delete, q.arguments, q.owner_connection, "
                "q.ready_count + d.ready_count, q.ready_bytes + d.ready_bytes, q.created_at, d.deltas "
                f"FROM {_COUNTED} WHERE q.name = $1")
SELECT_READY_COUNT = f"SELECT q.ready_count + d.ready_count, d.deltas FROM {_COUNTED} WHERE q.name = $1"
COUNTS_WITH = f"SELECT {_COUNTS_WITH} FROM {_COUNTED} WHERE q.name = $3"
COUNTS_WITH_QUEUES = f"SELECT q.name, {_COUNTS_WITH} FROM {_COUNTED} WHERE q.name = ANY($3::text[])"
COUNTS_WITH_FIRST = (f"SELECT {_COUNTS_WITH}, {lite._DELAYED_DUE}, {lite._QUEUE_EXPIRY} FROM {_COUNTED} "
                     "WHERE q.name = $3")
# The queue's counts and its totals (migration 0010) are its row's plus its deltas'.
TOTALS = ("published_total", "delivered_total", "redelivered_total", "acked_total")
_FOLDED = ("ready_count", "ready_bytes", *TOTALS)


def added_to_own_row(*columns: str) -> str:
    """An insert into the deltas adding to the session's own row of the queue instead (migration 0011)."""
    return "ON CONFLICT (queue, backend_pid) DO UPDATE SET " + ", ".join(
        f"{c} = {DELTAS}.{c} + excluded.{c}" for c in columns)


# A fold takes the rows no transaction is adding to (those it leaves for the next), and waits for none.
FOLD = (f"WITH folded AS (DELETE FROM {DELTAS} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {DELTAS} "
        f"FOR UPDATE SKIP LOCKED)) RETURNING queue, {', '.join(_FOLDED)}) "
        "UPDATE litemq_queues q SET " + ", ".join(f"{c} = q.{c} + f.{c}" for c in _FOLDED)
        + " FROM (SELECT queue, " + ", ".join(f"sum({c}) AS {c}" for c in _FOLDED)
        + " FROM folded GROUP BY queue) f WHERE q.name = f.queue")
DELETE_QUEUE_DELTAS = f"DELETE FROM {DELTAS} WHERE queue = $1"
ANY_DELTAS = f"SELECT 1 FROM {DELTAS} LIMIT 1"

# --- publishing: arrays instead of SQLite's padded lists and multi-row VALUES
INSERT_BINDING = from_sqlite(lite.INSERT_BINDING.replace("INSERT OR IGNORE", "INSERT")) + " ON CONFLICT DO NOTHING"
INSERT_COPIES = ("INSERT INTO litemq_messages (queue, exchange, routing_key, body, properties, published_at) "
                 "SELECT queue, $1, $2, $3, $4, $5 FROM unnest($6::text[]) AS queue")
INSERT_MESSAGES = ("INSERT INTO litemq_messages (queue, exchange, routing_key, properties, published_at, priority, "
                   "body) SELECT $1, $2, $3, $4, $5, $6, body FROM unnest($7::bytea[]) WITH ORDINALITY AS b(body, n) "
                   "ORDER BY n")

# --- claiming and taking: one statement, the rows locked as they are chosen and skipped when another holds them
_READY = "queue = {queue} AND lease_token IS NULL AND visible_at IS NULL"
_CHOSEN = ("WITH chosen(chosen_id) AS MATERIALIZED (SELECT id FROM litemq_messages WHERE {where} ORDER BY {order} "
           "LIMIT {limit} FOR UPDATE SKIP LOCKED) ")
_LEASE = ("UPDATE litemq_messages SET lease_owner = $1, lease_token = $2, lease_expires_at = $3, "
          "delivery_count = delivery_count + 1 WHERE id = ANY(ARRAY(SELECT chosen_id FROM chosen)) ")
_TAKE = "DELETE FROM litemq_messages WHERE id = ANY(ARRAY(SELECT chosen_id FROM chosen)) "
_DELIVERED = f"RETURNING id, exchange, routing_key, {lite.BODY}, properties, {{count}}, priority"
# A priority-0 consumer claims nothing while one of higher priority has room, and learns whether any of lower
# priority are there: both from the index of consumers of other than the default priority, usually empty.
_OTHERS = "SELECT 1 FROM litemq_consumers WHERE queue = {queue} AND priority != 0 AND priority"
_IN_ORDER = "priority DESC, id"
_NOT_OUTRANKED = f"NOT EXISTS ({_OTHERS} > 0 AND has_room)"
_BELOW = f", EXISTS ({_OTHERS} < 0)::int"


def _claim(queue: str, limit: str, action: str, count: str, default_consumer: bool) -> str:
    where = _READY.format(queue=queue)
    if default_consumer:
        where += " AND " + _NOT_OUTRANKED.format(queue=queue)
    claim = _CHOSEN.format(where=where, order=_IN_ORDER, limit=limit) + action + _DELIVERED.format(count=count)
    return claim + _BELOW.format(queue=queue) if default_consumer else claim


# A priority-0 consumer's claim in an ack's transaction (its refill) when nothing is due: what the general path
# would do first (return the queue's expired leases, settle what fell due) would do nothing then, so its two
# statements are left out; when something is due, nothing is claimed and the row says when it fell due.
_DUE = "due(at) AS (SELECT least(a, b, c, d) FROM ({select_due}) AS t(a, b, c, d)), "
_NOTHING_DUE = "NOT EXISTS (SELECT 1 FROM due WHERE at <= {now})"
_CLAIM_UNLESS_DUE = (_DUE.format(select_due=SELECT_DUE.replace('$1', '$4'))
                     + _CHOSEN.format(where=f"{_READY} AND {_NOTHING_DUE} AND {_NOT_OUTRANKED}".format(
                         queue="$4", now="$6"), order=_IN_ORDER, limit="$5")[len("WITH "):]
                     + f", taken AS ({_LEASE}{_DELIVERED.format(count='delivery_count')}{_BELOW.format(queue='$4')}) ")
CLAIM_UNLESS_DUE = f"WITH {_CLAIM_UNLESS_DUE}SELECT due.at, taken.* FROM due LEFT JOIN taken ON true"
# A consumer's ack of one delivery and the claim that refills its room, in one statement: the ack's count first.
ACK_AND_CLAIM_UNLESS_DUE = ("WITH acked AS (DELETE FROM litemq_messages WHERE id = $7 AND lease_token = $8 RETURNING 1), "
                            f"{_CLAIM_UNLESS_DUE}SELECT (SELECT count(*) FROM acked), due.at, taken.* FROM due "
                            "LEFT JOIN taken ON true")


# Messages taken with auto-ack count as delivered (redelivered when delivered before) in a delta row of the same
# statement, as lite.COUNT_TAKEN counts them on SQLite (the delete's trigger cannot tell a take from a purge).
_TAKEN_COUNT = "delivery_count + 1 AS delivery_count"
_COUNT_TAKEN = (f"counted AS (INSERT INTO {DELTAS} (queue, ready_count, ready_bytes, delivered_total, "
                "redelivered_total) SELECT {queue}, 0, 0, count(*), count(*) FILTER (WHERE delivery_count > 1) "
                f"FROM taken HAVING count(*) > 0 {added_to_own_row(*TOTALS[1:3])})")


def _counted(claim: str, queue: str) -> str:
    """An auto-ack claim (``WITH chosen ... DELETE ... RETURNING ...``) that counts what it takes."""
    chosen, _, take = claim.partition(_TAKE)
    return f"{chosen}, taken AS ({_TAKE}{take}), {_COUNT_TAKEN.format(queue=queue)} SELECT * FROM taken"


CLAIM = _claim("$4", "$5", _LEASE, "delivery_count", False)
CLAIM_AS_DEFAULT_CONSUMER = _claim("$4", "$5", _LEASE, "delivery_count", True)
CLAIM_AND_DELETE = _counted(_claim("$1", "$2", _TAKE, _TAKEN_COUNT, False), "$1")
CLAIM_AND_DELETE_AS_DEFAULT_CONSUMER = _counted(_claim("$1", "$2", _TAKE, _TAKEN_COUNT, True), "$1")
# basic.get's common case: the queue, when it is due, and a claim unless it has arguments or something is due.
_CLAIMABLE = "EXISTS (SELECT 1 FROM queue_row WHERE arguments IS NULL{owner}) AND " + _NOTHING_DUE


def _claim_with_queue(queue: str, limit: str, now: str, action: str, count: str, plain: bool = False) -> str:
    """``plain``: claims only from a queue that no connection owns either, whose claim nothing can undo after."""
    claimable = _CLAIMABLE.format(now=now, owner=" AND owner_connection IS NULL" if plain else "")
    return ("WITH queue_row(durable, exclusive, auto_delete, arguments, owner_connection, ready_count, ready_bytes, "
            f"created_at, deltas) AS ({SELECT_QUEUE.replace('$1', queue)}), "
            + _DUE.format(select_due=SELECT_DUE.replace('$1', queue))
            + _CHOSEN.format(where=f"{_READY.format(queue=queue)} AND {claimable}", order=_IN_ORDER,
                             limit=limit)[len("WITH "):]
            + f", taken AS ({action}{_DELIVERED.format(count=count)}) "
            + (f", {_COUNT_TAKEN.format(queue=queue)} " if action == _TAKE else "")
            + f"SELECT {claimable}, queue_row.*, due.at, taken.* FROM due LEFT JOIN queue_row ON true "
            "LEFT JOIN taken ON true")


CLAIM_WITH_QUEUE = _claim_with_queue("$4", "$5", "$6", _LEASE, "delivery_count")
CLAIM_AND_DELETE_WITH_QUEUE = _claim_with_queue("$1", "$2", "$3", _TAKE, _TAKEN_COUNT)
CLAIM_WITH_PLAIN_QUEUE = _claim_with_queue("$4", "$5", "$6", _LEASE, "delivery_count", plain=True)
CLAIM_AND_DELETE_WITH_PLAIN_QUEUE = _claim_with_queue("$1", "$2", "$3", _TAKE, _TAKEN_COUNT, plain=True)
# The one statement of its transaction counts what it stores itself, and says so: the insert trigger then counts
# nothing (migration 0011; since 0012 its function returns at once). Local to the transaction, which the statement's
# commit ends.
COUNTED_HERE = "set_config('litemq.counted', 'on', true) = 'on'"
# A publish to a queue without arguments or an owner when nothing is due (delayed messages, queue expiry): nothing
# to decide, so stored at once, and counted in the session's delta row, whose RETURNING says whether the queue has
# consumers to ring; no row when nothing was stored (the queue is missing, not plain, or something is due: then
# SELECT_PLAIN tells which). As few plan nodes as the work needs, since each is set up at every execution: the queue's
# row read where the insert reads it, the earliest deadlines as the first entry of their index rather than by min(),
# no SELECT around the upsert (428,000 instructions of the server per publish, lock and commit included, against
# 463,000 with a CTE of the queue's row, min()s and a SELECT of three subqueries: bench/postgres_instructions.py).
_NOT_DUE = " AND ".join(f"coalesce((SELECT {column} FROM {table} WHERE {column} IS NOT NULL ORDER BY {column} LIMIT 1) "
                        "> $6, true)" for table, column in (("litemq_messages", "visible_at"),
                                                            ("litemq_queues", "expires_at")))
_PLAIN = "arguments IS NULL AND owner_connection IS NULL"
PUBLISH_PLAIN = ("WITH stored AS (INSERT INTO litemq_messages (queue, exchange, routing_key, body, properties, "
                 f"published_at) SELECT $1, $2, $3, $4, $5, $6 FROM litemq_queues WHERE name = $1 AND {_PLAIN} "
                 f"AND {_NOT_DUE} AND {COUNTED_HERE} RETURNING 1) "
                 f"INSERT INTO {DELTAS} (queue, ready_count, ready_bytes, published_total) "
                 f"SELECT $1, 1, length($4), 1 FROM stored {added_to_own_row('ready_count', 'ready_bytes', 'published_total')} "
                 "RETURNING EXISTS (SELECT FROM litemq_consumers WHERE queue = $1)")
SELECT_PLAIN = f"SELECT {_PLAIN} FROM litemq_queues WHERE name = $1"
TAKE_HEAD = _CHOSEN.format(where=_READY.format(queue="$1"), order=_IN_ORDER, limit="$2") + _TAKE + lite._TAKEN
TAKE_EXPIRED = (_CHOSEN.format(where="expires_at <= $1 AND lease_token IS NULL", order="expires_at", limit="$2")
                + _TAKE + lite._TAKEN)
TAKE_DUE = (_CHOSEN.format(where="visible_at <= $1", order="visible_at", limit="$2") + _TAKE + lite._TAKEN
            + ", visible_at")

# --- settling by (id, token), many in one statement
_LEASES = "unnest($1::bigint[], $2::bigint[]) AS l(message_id, token) WHERE id = message_id AND lease_token = token"
ACK = f"DELETE FROM litemq_messages USING {_LEASES}"
# One lease (an ack as it comes) by its primary key, as on SQLite: no arrays to send nor unnest and join on the server
# (bench/postgres_cpu.py: get + ack 8 % less of the server's CPU, 10 % less of the client's).
ACK_ONE = from_sqlite(lite.ACK)
DROP = f"DELETE FROM litemq_messages USING {_LEASES} {lite._TAKEN}"
REQUEUE = ("UPDATE litemq_messages SET lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL, "
           f"delivery_count = delivery_count - $3 FROM {_LEASES} {lite._RETURNED}")
RENEW_LEASES = ("UPDATE litemq_messages SET lease_expires_at = l.expiry FROM unnest($1::bigint[], $2::bigint[], "
                "$3::float8[]) AS l(message_id, token, expiry) WHERE id = message_id AND lease_token = token")
TAKE_READY = f"DELETE FROM litemq_messages WHERE id = ANY($1::bigint[]) AND lease_token IS NULL {lite._TAKEN}"
# Leases returned in bulk skip rows another transaction holds (an ack, a renewal, another process returning the same
# leases): whoever holds them settles them, and nothing waits on a lock another bulk return could wait on in turn.
_RELEASE = ("UPDATE litemq_messages SET lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL "
            "WHERE id IN (SELECT id FROM litemq_messages WHERE {where} AND lease_token IS NOT NULL "
            f"FOR UPDATE SKIP LOCKED) {lite._RETURNED}")
RETURN_EXPIRED = _RELEASE.format(where="queue = $1 AND lease_expires_at <= $2")
RELEASE_OWNER = _RELEASE.format(where="lease_owner = $1")
RELEASE_CONNECTION = _RELEASE.format(where="lease_owner >= $1 AND lease_owner < $2")

# --- consumers: PostgreSQL has no max() of booleans
SELECT_CONSUMER_RANKING = ("SELECT coalesce(bool_or(priority > $2 AND has_room), false), "
                           "coalesce(min(priority) < $2, false) FROM litemq_consumers WHERE queue = $1")
SELECT_DEFAULT_CONSUMER_RANKING = ("SELECT coalesce(bool_or(priority > 0 AND has_room), false), "
                                   "coalesce(min(priority) < 0, false) FROM litemq_consumers "
                                   "WHERE queue = $1 AND priority != 0")

# --- locks (the keys are computed in Python from the schema and the name)
LOCK_SHARED = "SELECT pg_advisory_xact_lock_shared({key})"
LOCK_EXCLUSIVE = "SELECT pg_advisory_xact_lock({key})"
LOCK = "SELECT pg_advisory_xact_lock($1)"
TRY_LOCK = "SELECT pg_try_advisory_xact_lock($1)"

# --- what ``litemq db check`` reports on PostgreSQL
REPORT_TABLES = ("SELECT relname, n_live_tup, n_dead_tup, pg_table_size(relid), pg_indexes_size(relid), "
                 "extract(epoch FROM last_autovacuum)::float8, extract(epoch FROM last_vacuum)::float8 "
                 "FROM pg_stat_user_tables WHERE schemaname = $1 ORDER BY relname")
# A session holds back vacuum by its snapshot (backend_xmin) or, idle in a transaction that wrote, by its own
# transaction id (backend_xid: its snapshot is gone between statements at READ COMMITTED); for this database's
# tables, only the sessions of this database do (and those of none, such as a WAL sender for a standby).
_HELD_BACK = "greatest(age(backend_xmin), age(backend_xid))"
REPORT_OLDEST_XMIN = (f"SELECT pid, datname, usename, application_name, state, {_HELD_BACK}, "
                      "extract(epoch FROM clock_timestamp() - xact_start)::float8, left(query, 200) "
                      "FROM pg_stat_activity WHERE (backend_xmin IS NOT NULL OR backend_xid IS NOT NULL) "
                      "AND (datname = current_database() OR datname IS NULL) AND pid != pg_backend_pid() "
                      f"ORDER BY {_HELD_BACK} DESC LIMIT 1")
