"""The inspection views, read the way a person at a terminal reads them: plain sqlite3 on the file (psql on a server),
while litemq works on it. ``litemq_queue_stats`` (counts, age of the oldest ready message, bytes),
``litemq_message_view`` (messages with readable times, states and bodies), ``litemq_connection_view`` (connections
with their consumers). Reading them blocks no publisher and no consumer."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from contextlib import closing
from datetime import datetime
from typing import Any, Iterator

import pytest

import litemq
from engines import BrokerSQL
from litemq import Properties

ISO = "%Y-%m-%dT%H:%M:%S.%fZ"


@pytest.fixture
def sql(db_path: str, conn: litemq.Connection) -> Iterator[BrokerSQL]:
    """A plain session on the broker (opened after litemq created it), as `sqlite3 mq.db` or `psql` would be."""
    with closing(BrokerSQL(db_path)) as session:
        yield session


def query(session: BrokerSQL, text: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    return session(text, params)


def columns(session: BrokerSQL, view: str) -> list[str]:
    return session.column_names(f"SELECT * FROM {view}")


def seconds(iso: str) -> float:
    """A view's time (ISO 8601 text, UTC) as UTC seconds."""
    return datetime.strptime(iso.replace("Z", "+0000"), ISO.replace("Z", "%z")).timestamp()


def age(session: BrokerSQL, message_id: int, by: float) -> None:
    """Make a message look ``by`` seconds older, as if published then."""
    session("UPDATE litemq_messages SET published_at = published_at - ? WHERE id = ?", (by, message_id))


# ---------------------------------------------------------------------------------------------------------------
# What the views offer
# ---------------------------------------------------------------------------------------------------------------

def test_the_views_have_the_columns_a_person_asks_about(sql: BrokerSQL) -> None:
    assert columns(sql, "litemq_queue_stats") == [
        "queue", "ready", "unacked", "total", "consumers", "oldest_ready_seconds", "bytes", "durable", "exclusive",
        "auto_delete", "arguments", "delayed", "ready_bytes"]
    assert columns(sql, "litemq_message_view") == [
        "id", "queue", "state", "exchange", "routing_key", "body_text", "body_bytes", "properties", "published_at",
        "delivery_count", "lease_owner", "lease_expires_at", "priority", "expires_at", "delayed_until"]
    assert columns(sql, "litemq_connection_view") == [
        "connection_id", "pid", "host", "started_at", "unacked", "channel", "consumer_tag", "queue",
        "prefetch_count", "auto_ack", "exclusive", "consumer_started_at"]


# ---------------------------------------------------------------------------------------------------------------
# litemq_queue_stats
# ---------------------------------------------------------------------------------------------------------------

def test_queue_stats_counts_ready_unacked_consumers_and_bytes(conn: litemq.Connection,
                                                              sql: BrokerSQL) -> None:
    conn.declare_queue("jobs", durable=True, arguments={"x-lease-ms": 30000})
    conn.declare_queue("idle", auto_delete=True)
    for body in (b"a" * 10, b"b" * 20, b"c" * 30):
        conn.publish("", "jobs", body)
    consumer = conn.consume("jobs", prefetch=1)
    assert consumer.get(10).body == b"a" * 10
    assert query(sql, "SELECT queue, ready, unacked, total, consumers, bytes, durable, exclusive, auto_delete, "
                      "arguments FROM litemq_queue_stats ORDER BY queue") == [
        ("idle", 0, 0, 0, 0, 0, 0, 0, 1, None),
        ("jobs", 2, 1, 3, 1, 60, 1, 0, 0, '{"x-lease-ms":30000}'),
    ]
    consumer.cancel()
    conn.purge_queue("jobs")
    assert query(sql, "SELECT ready, unacked, total, consumers, bytes FROM litemq_queue_stats "
                      "WHERE queue = 'jobs'") == [(0, 1, 1, 0, 10)]


def test_queue_stats_gives_the_age_of_the_oldest_ready_message(conn: litemq.Connection,
                                                               sql: BrokerSQL) -> None:
    conn.declare_queue("jobs")
    conn.declare_queue("empty")
    for body in ("taken", "waiting an hour", "new"):
        conn.publish("", "jobs", body)
    ids = [row[0] for row in query(sql, "SELECT id FROM litemq_messages ORDER BY id")]
    age(sql, ids[0], 7200)  # the oldest, but unacked: not counted as waiting
    age(sql, ids[1], 3600)
    assert conn.get("jobs").body == b"taken"
    (waiting,), (empty,) = (query(sql, "SELECT oldest_ready_seconds FROM litemq_queue_stats WHERE queue = ?", (q,))
                            for q in ("jobs", "empty"))
    assert 3600 <= waiting[0] < 3660
    assert empty == (None,)
    conn.get("jobs", auto_ack=True)  # the hour-old one
    (fresh,) = query(sql, "SELECT round(oldest_ready_seconds) FROM litemq_queue_stats WHERE queue = 'jobs'")
    assert 0 <= fresh[0] < 60


# ---------------------------------------------------------------------------------------------------------------
# litemq_message_view
# ---------------------------------------------------------------------------------------------------------------

def test_message_view_shows_states_readable_bodies_and_times(conn: litemq.Connection,
                                                             sql: BrokerSQL) -> None:
    conn.declare_exchange("logs", "topic")
    conn.declare_queue("jobs", arguments={"x-lease-ms": 30000})
    conn.bind_queue("jobs", "logs", "#")
    conn.publish("logs", "app.info", "hello world", Properties(content_type="text/plain", headers={"n": 1}))
    conn.publish("", "jobs", b"nul\x00inside")
    conn.publish("", "jobs", b"")
    conn.publish("", "jobs", "héllo wörld")
    before_get = time.time()
    delivery = conn.get("jobs")
    assert delivery is not None
    rows = query(sql, "SELECT queue, state, exchange, routing_key, body_text, body_bytes, properties, delivery_count, "
                      "lease_owner FROM litemq_message_view ORDER BY id")
    assert rows == [
        ("jobs", "unacked", "logs", "app.info", "hello world", 11,
         '{"content_type":"text/plain","headers":{"n":1}}', 1, f"{conn._session.connection_id}/{conn.number}"),
        ("jobs", "ready", "", "jobs", None, 10, None, 0, None),  # a NUL: not shown as text
        ("jobs", "ready", "", "jobs", "", 0, None, 0, None),
        ("jobs", "ready", "", "jobs", "héllo wörld", len("héllo wörld".encode()), None, 0, None),
    ]

    times = query(sql, "SELECT v.published_at, m.published_at, v.lease_expires_at, m.lease_expires_at "
                       "FROM litemq_message_view v JOIN litemq_messages m ON m.id = v.id ORDER BY v.id")
    for published_text, published, expires_text, expires in times:
        assert published_text.endswith("Z") and abs(seconds(published_text) - published) < 0.001
        if expires is None:
            assert expires_text is None
        else:
            assert abs(seconds(expires_text) - expires) < 0.001
            assert before_get + 30 - 1 < seconds(expires_text) < time.time() + 30 + 1


def test_message_view_shows_no_text_for_a_body_that_is_not_utf8(conn: litemq.Connection,
                                                                sql: BrokerSQL) -> None:
    # Python's sqlite3 (and any UTF-8 client) cannot read invalid UTF-8 text: such a body must be NULL here,
    # like a body with a NUL, and a query over the view must keep working.
    conn.declare_queue("jobs")
    for body in (b"\xff\xfe\xfd", "ok".encode(), b"caf\xe9", b"\xc3"):
        conn.publish("", "jobs", body)
    assert query(sql, "SELECT body_text, body_bytes FROM litemq_message_view ORDER BY id") == [
        (None, 3), ("ok", 2), (None, 4), (None, 1)]


def test_message_view_answers_what_is_waiting_in_a_queue(conn: litemq.Connection, sql: BrokerSQL) -> None:
    conn.declare_queue("jobs")
    conn.declare_queue("other")
    for body in ("one", "two", "three"):
        conn.publish("", "jobs", body)
    conn.publish("", "other", "elsewhere")
    conn.get("jobs")
    assert query(sql, "SELECT body_text FROM litemq_message_view WHERE queue = 'jobs' AND state = 'ready' "
                      "ORDER BY id") == [("two",), ("three",)]
    assert query(sql, "SELECT queue, state, count(*) FROM litemq_message_view GROUP BY queue, state "
                      "ORDER BY queue, state") == [("jobs", "ready", 2), ("jobs", "unacked", 1), ("other", "ready", 1)]


# ---------------------------------------------------------------------------------------------------------------
# litemq_connection_view
# ---------------------------------------------------------------------------------------------------------------

def test_connection_view_lists_each_connection_with_its_consumers_and_unacked(
        db_path: str, conn: litemq.Connection, other: litemq.Connection, sql: BrokerSQL) -> None:
    conn.declare_queue("jobs")
    conn.declare_queue("audit")
    for i in range(5):
        conn.publish("", "jobs", f"job {i}")
        conn.publish("", "audit", f"event {i}")
    jobs = conn.consume("jobs", prefetch=1, consumer_tag="jobs-worker")
    assert jobs.get(10) is not None
    channel = conn.channel()
    audit = channel.consume("audit", prefetch=2, auto_ack=False, exclusive=True, consumer_tag="auditor")
    assert audit.get(10) is not None and audit.get(10) is not None
    assert conn.get("jobs") is not None  # a basic.get delivery is unacked on the connection too
    mine, theirs = conn._session.connection_id, other._session.connection_id

    rows = query(sql, "SELECT connection_id, pid, host, unacked, channel, consumer_tag, queue, prefetch_count, "
                      "auto_ack, exclusive FROM litemq_connection_view ORDER BY connection_id = ?, channel",
                 (theirs,))
    me = (os.getpid(), socket.gethostname())
    assert rows == [
        (mine, *me, 4, conn.number, "jobs-worker", "jobs", 1, 0, 0),
        (mine, *me, 4, channel.number, "auditor", "audit", 2, 0, 1),
        (theirs, *me, 0, None, None, None, None, None, None),  # no consumers: one row, consumer columns NULL
    ]
    same = "IS" if sql.engine == "sqlite" else "IS NOT DISTINCT FROM"
    times = query(sql, "SELECT v.started_at, n.started_at, v.consumer_started_at, c.started_at "
                       "FROM litemq_connection_view v JOIN litemq_connections n ON n.id = v.connection_id "
                       f"LEFT JOIN litemq_consumers c ON c.connection_id = v.connection_id "
                       f"AND c.consumer_tag {same} v.consumer_tag")
    for started_text, started, consumer_text, consumer_started in times:
        assert abs(seconds(started_text) - started) < 0.001
        assert (consumer_text is None) == (consumer_started is None)
        if consumer_started is not None:
            assert abs(seconds(consumer_text) - consumer_started) < 0.001

    channel.close()
    assert query(sql, "SELECT unacked, consumer_tag FROM litemq_connection_view WHERE connection_id = ?",
                 (mine,)) == [(2, "jobs-worker")]
    other.close()
    assert query(sql, "SELECT count(*) FROM litemq_connection_view WHERE connection_id = ?", (theirs,)) == [(0,)]


# ---------------------------------------------------------------------------------------------------------------
# A session in the sqlite3 shell, as README shows it
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.sqlite_only
@pytest.mark.skipif(shutil.which("sqlite3") is None, reason="the sqlite3 shell is not installed")
def test_a_sqlite3_shell_session_reads_the_views(db_path: str, conn: litemq.Connection) -> None:
    conn.declare_queue("jobs")
    for body in ("first", "second", "third"):
        conn.publish("", "jobs", body)
    consumer = conn.consume("jobs", prefetch=1)
    assert consumer.get(10).body == b"first"

    def shell(text: str) -> str:
        return subprocess.run(["sqlite3", "-header", db_path, text], capture_output=True, text=True, check=True,
                              timeout=30).stdout

    assert shell("SELECT queue, ready, unacked, total, consumers, bytes FROM litemq_queue_stats") == (
        "queue|ready|unacked|total|consumers|bytes\n"
        "jobs|2|1|3|1|16\n")
    assert shell("SELECT id, queue, state, routing_key, body_text FROM litemq_message_view") == (
        "id|queue|state|routing_key|body_text\n"
        "1|jobs|unacked|jobs|first\n"
        "2|jobs|ready|jobs|second\n"
        "3|jobs|ready|jobs|third\n")
    assert shell("SELECT consumer_tag IS NOT NULL, unacked, queue FROM litemq_connection_view") == (
        "consumer_tag IS NOT NULL|unacked|queue\n"
        "1|1|jobs\n")


# ---------------------------------------------------------------------------------------------------------------
# Reading takes no lock that would hold litemq up
# ---------------------------------------------------------------------------------------------------------------

def test_an_open_read_of_the_views_blocks_no_publisher_or_consumer(db_path: str, conn: litemq.Connection,
                                                                   sql: BrokerSQL) -> None:
    conn.declare_queue("jobs")
    sql("BEGIN" if sql.engine == "sqlite" else "BEGIN ISOLATION LEVEL REPEATABLE READ")  # one snapshot, as SQLite's
    snapshot = [query(sql, f"SELECT * FROM {view}")
                for view in ("litemq_queue_stats", "litemq_message_view", "litemq_connection_view")]
    assert sql.in_transaction and snapshot[0] == [("jobs", 0, 0, 0, 0, None, 0, 0, 0, 0, None, 0, 0)]

    # A writer that had to wait for the reader would fail after 5 s (instead of waiting out the 60 s default).
    with litemq.connect(db_path, busy_timeout=5) as worker:
        started = time.monotonic()
        for i in range(100):
            worker.publish("", "jobs", f"message {i}")
        with worker.consume("jobs", prefetch=10) as consumer:
            received = []
            for _ in range(100):
                delivery = consumer.get(5)
                assert delivery is not None
                received.append(delivery.body)
                delivery.ack()
        worker.publish("", "jobs", "left over")
        elapsed = time.monotonic() - started
    assert received == [f"message {i}".encode() for i in range(100)]
    assert elapsed < 5

    # The reader still sees the moment it began; once it ends, it sees the present.
    assert query(sql, "SELECT ready, total FROM litemq_queue_stats WHERE queue = 'jobs'") == [(0, 0)]
    sql("COMMIT")
    assert query(sql, "SELECT ready, total FROM litemq_queue_stats WHERE queue = 'jobs'") == [(1, 1)]


def test_reading_the_views_never_waits_for_a_litemq_write(db_path: str, conn: litemq.Connection) -> None:
    conn.declare_queue("jobs")
    conn.publish("", "jobs", "committed")
    with closing(BrokerSQL(db_path, busy_timeout=1)) as reader:  # a wait would end in "database is locked"
        with conn._store.write() as store:  # litemq holds the write lock, mid-transaction
            store.insert_message("jobs", "", "jobs", b"not yet committed", None, time.time())
            assert query(reader, "SELECT ready FROM litemq_queue_stats") == [(1,)]
            assert query(reader, "SELECT body_text FROM litemq_message_view") == [("committed",)]
            assert query(reader, "SELECT count(*) FROM litemq_connection_view") == [(1,)]
        assert query(reader, "SELECT ready FROM litemq_queue_stats") == [(2,)]


def test_message_view_text_matches_pythons_utf8_check(conn: litemq.Connection, sql: BrokerSQL) -> None:
    import random

    rng = random.Random(7)
    pieces = [bytes([b]) for b in (0x41, 0x80, 0xBF, 0xC2, 0xDF, 0xE0, 0xED, 0xF0, 0xF4, 0xF5, 0xC1)]
    pieces += [c.encode() for c in "é日😀"]
    bodies = [b"".join(rng.choice(pieces) for _ in range(rng.randint(1, 6))) for _ in range(400)]
    conn.declare_queue("q")
    for body in bodies:
        conn.publish("", "q", body)
    # As bytes, so that a wrong answer shows up as a mismatch, not a decoding error.
    as_bytes = "CAST(body_text AS BLOB)" if sql.engine == "sqlite" else "convert_to(body_text, 'UTF8')"
    shown = [row[0] for row in query(sql, f"SELECT {as_bytes} FROM litemq_message_view ORDER BY id")]
    for body, text in zip(bodies, shown):
        try:
            expected = body.decode("utf-8").encode("utf-8")
        except UnicodeDecodeError:
            expected = None
        assert text == expected, body
