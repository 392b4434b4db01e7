"""The SQLite store's statements: every statement litemq runs on the hot path, written once, prepared once per
connection (a test prepares each against the migrated schema). The inspection tools' statements are in
``inspect``; the schema itself is SQLAlchemy's (``schema``) and Alembic's."""

from __future__ import annotations


from . import VERSION_TABLE

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Iterator, Optional, Sequence

OUT_OF_ROW_BYTES = 3072
"""A larger body is stored in litemq_bodies under its message's id, and the message row holds NULL: a claim or a
requeue sets or clears the row's lease, and SQLite rewrites a row whole, overflow pages and all, when its size
changes (a 1 MB body: 256 pages at every claim). A body up to this size fits its row's page."""

SELECT_REVISION = f"SELECT version_num FROM {VERSION_TABLE}"
SELECT_EXCHANGE = "SELECT type, durable, auto_delete, internal, arguments FROM litemq_exchanges WHERE name = ?"
INSERT_EXCHANGE = ("INSERT INTO litemq_exchanges (name, type, durable, auto_delete, internal, arguments, created_at) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?)")
DELETE_EXCHANGE = "DELETE FROM litemq_exchanges WHERE name = ?"
SELECT_ROUTE = ("SELECT e.type, e.internal, e.arguments, b.destination, b.destination_kind, b.routing_key, b.arguments "
                "FROM litemq_exchanges e LEFT JOIN litemq_bindings b ON b.exchange = e.name "
                "WHERE e.name = ? ORDER BY b.id")
SELECT_ROUTING_VERSION = "SELECT version FROM litemq_routing"
SELECT_HAS_BINDINGS = "SELECT 1 FROM litemq_bindings WHERE exchange = ? LIMIT 1"
SELECT_IS_DESTINATION = "SELECT 1 FROM litemq_bindings WHERE destination_kind = 'exchange' AND destination = ? LIMIT 1"
INSERT_BINDING = ("INSERT OR IGNORE INTO litemq_bindings (exchange, destination, destination_kind, routing_key, "
                  "arguments) VALUES (?, ?, ?, ?, ?)")
DELETE_BINDING = ("DELETE FROM litemq_bindings WHERE exchange = ? AND destination = ? AND destination_kind = ? "
                  "AND routing_key = ? AND arguments = ?")
DELETE_BINDINGS_OF_EXCHANGE = ("DELETE FROM litemq_bindings WHERE exchange = ? "
                               "OR (destination_kind = 'exchange' AND destination = ?) RETURNING exchange")
DELETE_BINDINGS_TO_QUEUE = ("DELETE FROM litemq_bindings WHERE destination_kind = 'queue' AND destination = ? "
                            "RETURNING exchange")
SELECT_QUEUE = ("SELECT durable, exclusive, auto_delete, arguments, owner_connection, ready_count, ready_bytes, "
                "created_at FROM litemq_queues WHERE name = ?")
SELECT_QUEUE_CREATED_AT = "SELECT created_at FROM litemq_queues WHERE name = ?"
INSERT_QUEUE = ("INSERT INTO litemq_queues (name, durable, exclusive, auto_delete, arguments, owner_connection, "
                "ready_count, created_at) VALUES (?, ?, ?, ?, ?, ?, 0, ?)")
DELETE_QUEUE = "DELETE FROM litemq_queues WHERE name = ?"
DELETE_QUEUE_MESSAGES = "DELETE FROM litemq_messages WHERE queue = ?"
DELETE_QUEUE_CONSUMERS = "DELETE FROM litemq_consumers WHERE queue = ?"
PURGE_READY = "DELETE FROM litemq_messages WHERE queue = ? AND lease_token IS NULL AND visible_at IS NULL"
# The ready counters are kept by triggers (migration 0007) on every write to the messages, litemq's or by hand: a
# publish reads what they will be with its messages in (its queue's length limits need that before it stores them),
# with the queue's arguments and its number of consumers.
_COUNTS_WITH = ("ready_count + ?1, ready_bytes + ?2, arguments, "
                "(SELECT count(*) FROM litemq_consumers c WHERE c.queue = litemq_queues.name)")
COUNTS_WITH = f"SELECT {_COUNTS_WITH} FROM litemq_queues WHERE name = ?3"
# A message routed to several queues: one statement reads the counts of up to COPIES queues, one stores its copies
# (NULL fills the places a shorter list leaves; such a row matches no queue and stores nothing). OR FAIL: a
# statement that writes many rows and may abort keeps a statement journal, in memory freed at every statement's
# end (the allocator then returns it to the system and faults it in again) or, past a few pages, in a temporary
# file (copies land on as many index pages as queues). Any error rolls back the whole transaction anyway.
COPIES = 16
COUNTS_WITH_QUEUES = (f"SELECT name, {_COUNTS_WITH} FROM litemq_queues "
                      f"WHERE name IN ({', '.join(f'?{3 + i}' for i in range(COPIES))})")
INSERT_COPIES = ("INSERT OR FAIL INTO litemq_messages (queue, exchange, routing_key, body, properties, published_at) "
                 "SELECT column1, ?1, ?2, ?3, ?4, ?5 FROM (VALUES "
                 + ", ".join(f"(?{6 + i})" for i in range(COPIES)) + ") WHERE column1 IS NOT NULL")
# When the next delayed message falls due, the next ready message expires, the next unused queue expires.
_DELAYED_DUE = "(SELECT min(visible_at) FROM litemq_messages WHERE visible_at IS NOT NULL)"
_MESSAGE_EXPIRY = ("(SELECT min(expires_at) FROM litemq_messages WHERE expires_at IS NOT NULL "
                   "AND lease_token IS NULL)")
_QUEUE_EXPIRY = "(SELECT min(expires_at) FROM litemq_queues WHERE expires_at IS NOT NULL)"
# COUNTS_WITH, with what a publish settles first: delayed messages falling due and unused queues expiring.
COUNTS_WITH_FIRST = f"SELECT {_COUNTS_WITH}, {_DELAYED_DUE}, {_QUEUE_EXPIRY} FROM litemq_queues WHERE name = ?3"
SELECT_ARRIVAL_DEADLINES = f"SELECT {_DELAYED_DUE}, {_QUEUE_EXPIRY}"
# A publish of one message to a queue without arguments when nothing is due (``publish_plain``) is one INSERT: its
# queue is the subquery's name, NULL when the queue is missing, has arguments or something is due, and then OR
# IGNORE stores nothing (the queue column is NOT NULL). Not INSERT ... SELECT ... WHERE: SQLite fills a temporary
# table with the SELECT's rows first when the table has triggers (callgrind: 26,000 instructions more than the
# counts read and INSERT it replaces, 39,000 more than this). The first form also asks that the queue have no
# consumers, so that storing tells the caller there are none to wake: a read of them costs 9,000.
_PLAIN_QUEUE = ("SELECT name FROM litemq_queues WHERE name = ?1 AND arguments IS NULL "
                f"AND NOT coalesce({_DELAYED_DUE} <= ?6, 0) AND NOT coalesce({_QUEUE_EXPIRY} <= ?6, 0)")


def _insert_plain(queue: str) -> str:
    return ("INSERT OR IGNORE INTO litemq_messages (queue, exchange, routing_key, body, properties, published_at) "
            f"VALUES (({queue}), ?2, ?3, ?4, ?5, ?6)")


_UNCONSUMED = " AND NOT EXISTS (SELECT 1 FROM litemq_consumers c WHERE c.queue = ?1)"
PUBLISH_PLAIN_UNCONSUMED = _insert_plain(_PLAIN_QUEUE + _UNCONSUMED)
PUBLISH_PLAIN = _insert_plain(_PLAIN_QUEUE)
# The same for a queue that an exchange's routes, cached at routing version ?7, reach alone: stored only while the
# file's bindings are still the ones cached (every change to them raises the version).
_ROUTED_QUEUE = f"{_PLAIN_QUEUE} AND (SELECT version FROM litemq_routing) = ?7"
PUBLISH_ROUTED_UNCONSUMED = _insert_plain(_ROUTED_QUEUE + _UNCONSUMED)
PUBLISH_ROUTED = _insert_plain(_ROUTED_QUEUE)
# A message's body and its size, from the row or from litemq_bodies.
_OUT_OF_ROW = "(SELECT {} FROM litemq_bodies b WHERE b.id = litemq_messages.id)"
BODY = f"coalesce(body, {_OUT_OF_ROW.format('b.body')})"
BODY_BYTES = f"coalesce(length(body), {_OUT_OF_ROW.format('length(b.body)')})"
# OR REPLACE: a body row that a hand edit left behind (its message's body then set in the row, the message since
# deleted) must not make a publish fail when SQLite gives its id to a new message.
INSERT_BODY = "INSERT OR REPLACE INTO litemq_bodies (id, body) VALUES (?, ?)"
INSERT_MESSAGE = ("INSERT INTO litemq_messages (queue, exchange, routing_key, body, properties, published_at, "
                  "priority, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
# A batch goes in as a few multi-row INSERTs of 256, 128, ... 1 rows (binding row by row costs twice as much),
# so a batch of any size uses at most nine statements, each prepared once. OR FAIL, as for the copies above.
BATCH_ROWS = tuple(1 << k for k in range(8, -1, -1))
INSERT_MESSAGES = {rows: "INSERT OR FAIL INTO litemq_messages (queue, exchange, routing_key, properties, published_at, "
                         "priority, body) VALUES " + ", ".join(f"(?1, ?2, ?3, ?4, ?5, ?6, ?{7 + row})"
                                                               for row in range(rows))
                   for rows in BATCH_ROWS}
INSERT_DELAYED = ("INSERT INTO litemq_messages (queue, exchange, routing_key, body, properties, published_at, "
                  "visible_at) VALUES (?, ?, ?, ?, ?, ?, ?)")
_RETURNED = "RETURNING id, queue, delivery_count"
_TAKEN = f"RETURNING id, queue, exchange, routing_key, {BODY}, properties, delivery_count"
_READY_IN_ORDER = ("SELECT id FROM litemq_messages WHERE queue = ? AND lease_token IS NULL AND visible_at IS NULL "
                   "ORDER BY priority DESC, id LIMIT ?")
RETURN_EXPIRED = ("UPDATE litemq_messages SET lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL "
                  f"WHERE queue = ? AND lease_token IS NOT NULL AND lease_expires_at <= ? {_RETURNED}")
CLAIM = ("UPDATE litemq_messages SET lease_owner = ?, lease_token = ?, lease_expires_at = ?, "
         f"delivery_count = delivery_count + 1 WHERE id IN ({_READY_IN_ORDER}) "
         f"RETURNING id, exchange, routing_key, {BODY}, properties, delivery_count, priority")
CLAIM_AND_DELETE = (f"DELETE FROM litemq_messages WHERE id IN ({_READY_IN_ORDER}) "
                    f"RETURNING id, exchange, routing_key, {BODY}, properties, delivery_count + 1, priority")
# A delete cannot tell its triggers why it deletes (a purge counts in no total): messages taken with auto-ack count
# as delivered (and redelivered, when they were delivered before) here, as RabbitMQ counts deliver_no_ack and
# get_no_ack in its delivery rates, and never as acked (no ack happens).
COUNT_TAKEN = ("UPDATE litemq_queues SET delivered_total = delivered_total + ?, "
               "redelivered_total = redelivered_total + ? WHERE name = ?")


def _as_default_consumer(claim: str, queue: int, limit: int, count: str) -> str:
    """A claim statement as a priority-0 consumer's, the common case: nothing while a consumer of higher priority
    has room, and each row says whether consumers of lower priority are there (then the claimer tells them when it is
    full). Both look only at the index of consumers of other than the default priority, usually empty: a consumer
    pays for priorities with no statement of its own."""
    ready = _READY_IN_ORDER.replace("queue = ?", f"queue = ?{queue}").replace("LIMIT ?", f"LIMIT ?{limit}")
    others = f"SELECT 1 FROM litemq_consumers WHERE queue = ?{queue} AND priority != 0 AND priority"
    ranking = (f"AND NOT EXISTS ({others} > 0 AND has_room) RETURNING id, exchange, routing_key, {BODY}, properties, "
               f"{count}, priority, EXISTS ({others} < 0)")
    return claim.format(ready=ready, ranking=ranking)


CLAIM_AS_DEFAULT_CONSUMER = _as_default_consumer(
    "UPDATE litemq_messages SET lease_owner = ?1, lease_token = ?2, lease_expires_at = ?3, "
    "delivery_count = delivery_count + 1 WHERE id IN ({ready}) {ranking}", 4, 5, "delivery_count")
CLAIM_AND_DELETE_AS_DEFAULT_CONSUMER = _as_default_consumer(
    "DELETE FROM litemq_messages WHERE id IN ({ready}) {ranking}", 1, 2, "delivery_count + 1")
# A claim of one message, the common case (a get, a consumer with prefetch 1): the next ready message read, then
# leased or deleted by its id. RETURNING and ``id IN (SELECT ...)`` each build a temporary b-tree per statement
# (one to hold the rows returned, one for the ids): callgrind counted 294,000 instructions per claim + ack with
# CLAIM, 230,000 read then leased. Inside the write transaction nothing can claim it in between.
_OTHER_PRIORITIES = "SELECT 1 FROM litemq_consumers WHERE queue = ?1 AND priority != 0 AND priority"
# A consumer of higher priority than 0 has room: then a priority-0 consumer may take nothing.
_OUTRANKED = f"EXISTS ({_OTHER_PRIORITIES} > 0 AND has_room)"


def _next_ready(below: str = "", ranking: str = "") -> str:
    return (f"SELECT id, exchange, routing_key, {BODY}, properties, delivery_count + 1, priority{below} "
            f"FROM litemq_messages WHERE queue = ?1 AND lease_token IS NULL AND visible_at IS NULL {ranking}"
            "ORDER BY priority DESC, id LIMIT 1")


NEXT_READY = _next_ready()
# As a priority-0 consumer's (``_as_default_consumer`` below).
NEXT_READY_AS_DEFAULT_CONSUMER = _next_ready(f", EXISTS ({_OTHER_PRIORITIES} < 0)",
                                             f"AND NOT {_OUTRANKED} ")
LEASE_READY = ("UPDATE litemq_messages SET lease_owner = ?, lease_token = ?, lease_expires_at = ?, "
               "delivery_count = delivery_count + 1 WHERE id = ?")
# A priority-0 consumer's claim of one message as two statements in autocommit mode (``claim_alone``): the next
# ready message read with whether anything is due by ?2 (which the general path settles first) and whether
# consumers of other priorities rank it (NULL columns when none is ready; no row when the queue is gone), then
# leased by its id while it is still ready and no consumer of higher priority has room: each statement is atomic,
# the lease decides, and what it returns is what is delivered (the id read may have been taken, acked and given to
# a newer message in between: SQLite reuses the highest rowid). No BEGIN and COMMIT, nor a read of the deadlines.
NEXT_READY_ALONE = (f"SELECT coalesce({_DELAYED_DUE} <= ?2, 0) OR coalesce({_MESSAGE_EXPIRY} <= ?2, 0) "
                    f"OR coalesce({_QUEUE_EXPIRY} <= ?2, 0), {_OUTRANKED}, "
                    f"EXISTS ({_OTHER_PRIORITIES} < 0), litemq_messages.id "
                    "FROM litemq_queues LEFT JOIN litemq_messages ON "
                    "litemq_messages.id = (SELECT id FROM litemq_messages WHERE queue = ?1 AND lease_token IS NULL "
                    "AND visible_at IS NULL ORDER BY priority DESC, id LIMIT 1) WHERE name = ?1")
LEASE_READY_ALONE = ("UPDATE litemq_messages SET lease_owner = ?2, lease_token = ?3, lease_expires_at = ?4, "
                     "delivery_count = delivery_count + 1 WHERE id = ?5 AND queue = ?1 AND lease_token IS NULL "
                     f"AND visible_at IS NULL AND NOT {_OUTRANKED} "
                     f"RETURNING id, exchange, routing_key, {BODY}, properties, delivery_count, priority")
DELETE_READY = "DELETE FROM litemq_messages WHERE id = ?"
TAKE_HEAD = f"DELETE FROM litemq_messages WHERE id IN ({_READY_IN_ORDER}) {_TAKEN}"
TAKE_EXPIRED = ("DELETE FROM litemq_messages WHERE id IN (SELECT id FROM litemq_messages "
                f"WHERE expires_at <= ? AND lease_token IS NULL ORDER BY expires_at LIMIT ?) {_TAKEN}")
TAKE_DUE = ("DELETE FROM litemq_messages WHERE id IN (SELECT id FROM litemq_messages "
            f"WHERE visible_at <= ? ORDER BY visible_at LIMIT ?) {_TAKEN}, visible_at")
SELECT_DEADLINES = f"SELECT {_DELAYED_DUE}, {_MESSAGE_EXPIRY}, {_QUEUE_EXPIRY}"
SELECT_EXPIRED_QUEUES = "SELECT name FROM litemq_queues WHERE expires_at <= ?"
SET_QUEUE_EXPIRY = "UPDATE litemq_queues SET expires_at = ? WHERE name = ?"
ACK = "DELETE FROM litemq_messages WHERE id = ? AND lease_token = ?"
DROP = f"DELETE FROM litemq_messages WHERE id = ? AND lease_token = ? {_TAKEN}"
TAKE_READY = f"DELETE FROM litemq_messages WHERE id = ? AND lease_token IS NULL {_TAKEN}"
REQUEUE = ("UPDATE litemq_messages SET lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL, "
           f"delivery_count = delivery_count - ? WHERE id = ? AND lease_token = ? {_RETURNED}")
RELEASE_OWNER = ("UPDATE litemq_messages SET lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL "
                 f"WHERE lease_owner = ? AND lease_token IS NOT NULL {_RETURNED}")
RELEASE_CONNECTION = ("UPDATE litemq_messages SET lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL "
                      f"WHERE lease_owner >= ? AND lease_owner < ? AND lease_token IS NOT NULL {_RETURNED}")
RENEW_LEASE = "UPDATE litemq_messages SET lease_expires_at = ? WHERE id = ? AND lease_token = ?"
SELECT_NEXT_EXPIRY = ("SELECT min(lease_expires_at) FROM litemq_messages "
                      "WHERE queue = ? AND lease_token IS NOT NULL")
SELECT_NEXT_EXPIRIES = ("SELECT queue, min(lease_expires_at) FROM litemq_messages WHERE lease_token IS NOT NULL "
                        f"AND queue IN ({', '.join(f'?{1 + i}' for i in range(COPIES))}) GROUP BY queue")
# The same with the deadlines: what a get must settle first, if it is due.
SELECT_DUE = f"SELECT ({SELECT_NEXT_EXPIRY}), {_DELAYED_DUE}, {_MESSAGE_EXPIRY}, {_QUEUE_EXPIRY}"
# A get's first read: the queue (SELECT_QUEUE's columns) and SELECT_DUE's deadlines, in one statement.
SELECT_QUEUE_DUE = (SELECT_QUEUE.replace(" FROM litemq_queues", f", ({SELECT_NEXT_EXPIRY.replace('?', 'litemq_queues.name')}), "
                                                                f"{_DELAYED_DUE}, {_MESSAGE_EXPIRY}, {_QUEUE_EXPIRY} "
                                                                "FROM litemq_queues"))
# The same with the next ready message (NEXT_READY's columns, NULL when none), for a get of one message: one
# statement less (callgrind: a statement run from Python costs some 8,000 instructions besides its own work). The
# message is read whether or not the queue lets it be claimed (its arguments, what is due): a read, left unused.
SELECT_QUEUE_DUE_NEXT = (f"{SELECT_QUEUE_DUE.replace(' FROM litemq_queues WHERE name = ?', ', ')}"
                         f"litemq_messages.id, exchange, routing_key, {BODY}, properties, delivery_count + 1, priority "
                         "FROM litemq_queues LEFT JOIN litemq_messages ON litemq_messages.id = "
                         "(SELECT id FROM litemq_messages WHERE queue = ?1 AND lease_token IS NULL AND visible_at IS NULL "
                         "ORDER BY priority DESC, id LIMIT 1) WHERE name = ?1")
SELECT_READY_COUNT = "SELECT ready_count FROM litemq_queues WHERE name = ?"
# The same with whether a consumer of priority above 0 has room (then a priority-0 consumer may take nothing).
SELECT_READY_COUNT_RANKED = f"SELECT ready_count, {_OUTRANKED} FROM litemq_queues WHERE name = ?1"
SELECT_CONSUMERS_OF = "SELECT connection_id, channel, consumer_tag FROM litemq_consumers WHERE queue = ?"
SELECT_ALL_CONSUMERS = "SELECT connection_id, channel, consumer_tag FROM litemq_consumers"
DELETE_CONNECTION_CONSUMERS = "DELETE FROM litemq_consumers WHERE connection_id = ? RETURNING queue"
SELECT_CONNECTION_IDS = "SELECT id FROM litemq_connections"
SELECT_CONNECTION = "SELECT 1 FROM litemq_connections WHERE id = ?"
SELECT_REGISTRATION = "SELECT pid, host, started_at FROM litemq_connections WHERE id = ?"
SELECT_UNACKED_COUNT = "SELECT count(*) FROM litemq_messages WHERE queue = ? AND lease_token IS NOT NULL"
SELECT_CONSUMER_COUNT = "SELECT count(*) FROM litemq_consumers WHERE queue = ?"
INSERT_CONSUMER = ("INSERT INTO litemq_consumers (connection_id, channel, consumer_tag, queue, prefetch_count, "
                   "auto_ack, exclusive, started_at, priority) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
# Whether a consumer of higher priority has room (then this one may not claim), and whether one of lower priority
# is there (then this one tells it when it is full).
SELECT_CONSUMER_RANKING = ("SELECT max(priority > ?2 AND has_room), min(priority) < ?2 FROM litemq_consumers "
                           "WHERE queue = ?1")
# The same for a priority-0 consumer: only consumers of other priorities matter, and their index is small.
SELECT_DEFAULT_CONSUMER_RANKING = ("SELECT max(priority > 0 AND has_room), min(priority) < 0 FROM litemq_consumers "
                                   "WHERE queue = ? AND priority != 0")
SET_CONSUMER_ROOM = ("UPDATE litemq_consumers SET has_room = ? WHERE connection_id = ? AND channel = ? "
                     "AND consumer_tag = ?")
DELETE_CONSUMER = "DELETE FROM litemq_consumers WHERE connection_id = ? AND channel = ? AND consumer_tag = ?"
SELECT_EXCLUSIVE_CONSUMER = "SELECT 1 FROM litemq_consumers WHERE queue = ? AND exclusive LIMIT 1"
SELECT_FIRST_CONSUMER = ("SELECT connection_id, channel, consumer_tag FROM litemq_consumers WHERE queue = ? "
                         "ORDER BY rowid LIMIT 1")
INSERT_CONNECTION = "INSERT INTO litemq_connections (id, pid, host, started_at) VALUES (?, ?, ?, ?)"
DELETE_CONNECTION = "DELETE FROM litemq_connections WHERE id = ?"
SELECT_OWNED_QUEUES = "SELECT name FROM litemq_queues WHERE owner_connection = ?"

STATEMENTS = {name: value for name, value in globals().items() if name.isupper() and isinstance(value, str)
              and value.startswith(("SELECT ", "INSERT ", "UPDATE ", "DELETE "))}
STATEMENTS.update({f"INSERT_MESSAGES[{rows}]": sql for rows, sql in INSERT_MESSAGES.items()})


def padded(queues: Sequence[str]) -> Iterator[tuple[Optional[str], ...]]:
    """The queues in groups of COPIES, the last filled up with NULL, for COUNTS_WITH_QUEUES and INSERT_COPIES."""
    for start in range(0, len(queues), COPIES):
        names = tuple(queues[start:start + COPIES])
        yield names + (None,) * (COPIES - len(names))
