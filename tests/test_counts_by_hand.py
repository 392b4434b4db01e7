"""Counts that survive plain SQL: a message deleted, inserted or updated by hand (a separate ``sqlite3`` connection,
as a person at the prompt) leaves every count right: declare's and get's message_count, delete_queue(if_empty),
length limits and x-overflow. Triggers in the file keep the counters (migration 0007); ``litemq db check`` names a
queue whose counters differ from its rows, and ``litemq db recount`` sets them from the rows."""

from __future__ import annotations

import contextlib
import itertools
import json
import sqlite3
from typing import Any, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import litemq
from litemq import PreconditionFailed, Properties, PublishRejected, cli
from litemq.store import inspect

# The file's counter triggers (migration 0007), with rows written by hand in sqlite3: SQLite's.
pytestmark = [pytest.mark.no_lease_renewal, pytest.mark.sqlite_only]

LARGE = bytes(range(256)) * 20  # 5,120 bytes: kept in litemq_bodies
BODY_BYTES = "coalesce(length(m.body), (SELECT length(b.body) FROM litemq_bodies b WHERE b.id = m.id), 0)"


@contextlib.contextmanager
def by_hand(path: str) -> Iterator[sqlite3.Connection]:
    """A plain sqlite3 connection of its own, committed at the end, as a user at the ``sqlite3`` prompt has."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        yield db
        db.commit()


def counters(path: str, queue: str) -> tuple[int, int]:
    """(ready_count, ready_bytes) as litemq_queues keeps them."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        return db.execute("SELECT ready_count, ready_bytes FROM litemq_queues WHERE name = ?", (queue,)).fetchone()


def ready_rows(path: str, queue: str) -> tuple[int, int]:
    """(count, body bytes) of the queue's ready messages, counted from the rows."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        return db.execute(f"SELECT count(*), coalesce(sum({BODY_BYTES}), 0) FROM litemq_messages m "
                          "WHERE queue = ? AND lease_token IS NULL AND visible_at IS NULL", (queue,)).fetchone()


def ids(path: str, queue: str) -> list[int]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return [i for (i,) in db.execute("SELECT id FROM litemq_messages WHERE queue = ? ORDER BY id", (queue,))]


def insert(db: sqlite3.Connection, queue: str, body: bytes, **columns: Any) -> int:
    """A message row written by hand: the columns a person must give, and any others."""
    names = ["queue", "exchange", "routing_key", "body", "published_at", *columns]
    values = [queue, "", queue, body, 1000.0, *columns.values()]
    cursor = db.execute(f"INSERT INTO litemq_messages ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                        values)
    return int(cursor.lastrowid)


def publish(conn: litemq.Connection, queue: str, *bodies: bytes, **properties: Any) -> None:
    for body in bodies:
        conn.publish("", queue, body, Properties(**properties) if properties else None)


# ---------------------------------------------------------------------------------------------------------------
# Deleting by hand
# ---------------------------------------------------------------------------------------------------------------

def test_a_ready_message_deleted_by_hand_leaves_the_queue_with_the_count_it_has(conn, db_path):
    conn.declare_queue("q")
    publish(conn, "q", b"one", b"two", b"three")
    with by_hand(db_path) as db:
        db.execute("DELETE FROM litemq_messages WHERE id = ?", (ids(db_path, "q")[1],))
    assert conn.declare_queue("q", passive=True).message_count == 2
    assert counters(db_path, "q") == ready_rows(db_path, "q") == (2, 8)
    first = conn.get("q", auto_ack=True)
    assert (first.body, first.message_count) == (b"one", 1)
    assert conn.get("q", auto_ack=True).body == b"three"
    assert conn.get("q") is None


def test_delete_queue_if_empty_succeeds_once_its_messages_are_deleted_by_hand(conn, db_path):
    conn.declare_queue("q")
    publish(conn, "q", b"one", b"two")
    with pytest.raises(PreconditionFailed, match="not empty"):
        conn.delete_queue("q", if_empty=True)
    with by_hand(db_path) as db:
        db.execute("DELETE FROM litemq_messages WHERE queue = 'q'")
    assert conn.delete_queue("q", if_empty=True) == 0
    with pytest.raises(litemq.NotFound):
        conn.declare_queue("q", passive=True)


def test_an_unacked_message_deleted_by_hand_leaves_the_ready_count_alone(conn, db_path):
    conn.declare_queue("q")
    publish(conn, "q", b"held", b"ready")
    held = conn.get("q", lease_seconds=3600)
    with by_hand(db_path) as db:
        db.execute("DELETE FROM litemq_messages WHERE id = ?", (ids(db_path, "q")[0],))
    assert conn.declare_queue("q", passive=True).message_count == 1
    assert counters(db_path, "q") == (1, 5)


def test_a_delayed_message_deleted_by_hand_was_never_counted(conn, db_path, frozen):
    conn.declare_queue("q")
    conn.publish("", "q", b"later", delay=60)
    publish(conn, "q", b"now")
    with by_hand(db_path) as db:
        db.execute("DELETE FROM litemq_messages WHERE visible_at IS NOT NULL")
    frozen.tick(61)
    assert conn.declare_queue("q", passive=True).message_count == 1
    assert counters(db_path, "q") == (1, 3)


def test_a_large_body_message_deleted_by_hand_takes_its_bytes_and_its_body_with_it(conn, db_path):
    conn.declare_queue("q")
    publish(conn, "q", LARGE, b"small")
    assert counters(db_path, "q") == (2, len(LARGE) + 5)
    with by_hand(db_path) as db:
        db.execute("DELETE FROM litemq_messages WHERE body IS NULL")
        assert db.execute("SELECT count(*) FROM litemq_bodies").fetchone() == (0,)
    assert counters(db_path, "q") == ready_rows(db_path, "q") == (1, 5)
    assert conn.declare_queue("q", passive=True).message_count == 1


def test_an_expired_message_deleted_by_hand_is_not_dead_lettered_or_counted(conn, db_path, dlx, frozen):
    conn.declare_queue("q", arguments={"x-message-ttl": 1000, "x-dead-letter-exchange": dlx})
    publish(conn, "q", b"gone", b"kept")
    frozen.tick(2)  # both expired; litemq takes them out at its next look
    with by_hand(db_path) as db:
        db.execute("DELETE FROM litemq_messages WHERE body = X'676f6e65'")  # 'gone'
    assert counters(db_path, "q") == (1, 4)
    assert conn.declare_queue("q", passive=True).message_count == 0  # the other expired, to the dead letters
    assert [d.body for d in iter(lambda: conn.get("dead", auto_ack=True), None)] == [b"kept"]
    assert counters(db_path, "q") == (0, 0)


# ---------------------------------------------------------------------------------------------------------------
# Inserting by hand
# ---------------------------------------------------------------------------------------------------------------

def test_a_message_inserted_by_hand_is_counted_and_delivered(conn, db_path):
    conn.declare_queue("q")
    publish(conn, "q", b"first")
    with by_hand(db_path) as db:
        insert(db, "q", b"by hand")
    assert conn.declare_queue("q", passive=True).message_count == 2
    assert counters(db_path, "q") == (2, 12)
    assert conn.get("q", auto_ack=True).message_count == 1
    last = conn.get("q", auto_ack=True)
    assert (last.body, last.message_count) == (b"by hand", 0)
    assert conn.delete_queue("q", if_empty=True) == 0


def test_a_leased_message_inserted_by_hand_is_not_ready_until_its_lease_expires(conn, db_path, frozen):
    conn.declare_queue("q")
    with by_hand(db_path) as db:
        insert(db, "q", b"held", lease_owner="someone/1", lease_token=7,
               lease_expires_at=frozen.time_to_freeze.timestamp() + 30, delivery_count=1)
    assert conn.declare_queue("q", passive=True).message_count == 0
    frozen.tick(31)
    delivery = conn.get("q", auto_ack=True)
    assert (delivery.body, delivery.redelivered, delivery.message_count) == (b"held", True, 0)
    assert counters(db_path, "q") == (0, 0)


def test_a_delayed_message_inserted_by_hand_is_counted_when_it_joins_its_queue(conn, db_path, frozen):
    conn.declare_queue("q")
    with by_hand(db_path) as db:
        insert(db, "q", b"later", visible_at=frozen.time_to_freeze.timestamp() + 10)
    assert conn.declare_queue("q", passive=True).message_count == 0
    assert counters(db_path, "q") == (0, 0)
    frozen.tick(11)
    assert conn.declare_queue("q", passive=True).message_count == 1
    assert counters(db_path, "q") == (1, 5)


def test_an_expired_message_inserted_by_hand_leaves_as_litemq_expires_it(conn, db_path, dlx, frozen):
    conn.declare_queue("q", arguments={"x-dead-letter-exchange": dlx})
    with by_hand(db_path) as db:
        insert(db, "q", b"stale", expires_at=frozen.time_to_freeze.timestamp() - 1)
    assert counters(db_path, "q") == (1, 5)  # in the table, not yet taken out
    assert conn.declare_queue("q", passive=True).message_count == 0
    assert counters(db_path, "q") == (0, 0)
    assert conn.get("dead", auto_ack=True).body == b"stale"


def test_a_large_body_inserted_by_hand_in_its_own_table_counts_its_bytes(conn, db_path):
    conn.declare_queue("q")
    with by_hand(db_path) as db:  # as litemq stores it: NULL in the row, the body under the message's id
        message_id = insert(db, "q", None)
        assert counters(db_path, "q") == (0, 0)  # not committed yet: read from another connection
        db.execute("INSERT INTO litemq_bodies (id, body) VALUES (?, ?)", (message_id, LARGE))
    assert counters(db_path, "q") == ready_rows(db_path, "q") == (1, len(LARGE))
    assert conn.get("q", auto_ack=True).body == LARGE
    assert counters(db_path, "q") == (0, 0)


def test_a_priority_message_inserted_by_hand_goes_first_and_is_counted(conn, db_path):
    conn.declare_queue("q", arguments={"x-max-priority": 5})
    publish(conn, "q", b"low")
    with by_hand(db_path) as db:
        insert(db, "q", b"urgent", priority=5)
    assert conn.declare_queue("q", passive=True, arguments={"x-max-priority": 5}).message_count == 2
    first = conn.get("q", auto_ack=True)
    assert (first.body, first.message_count) == (b"urgent", 1)
    with by_hand(db_path) as db:
        db.execute("DELETE FROM litemq_messages WHERE queue = 'q' AND priority = 0")
    assert counters(db_path, "q") == (0, 0)


# ---------------------------------------------------------------------------------------------------------------
# Updating by hand
# ---------------------------------------------------------------------------------------------------------------

def test_messages_moved_to_another_queue_by_hand_are_counted_there(conn, db_path):
    conn.declare_queue("a")
    conn.declare_queue("b")
    publish(conn, "a", b"one", LARGE, b"three")
    with by_hand(db_path) as db:
        db.execute("UPDATE litemq_messages SET queue = 'b' WHERE body IS NULL OR body = X'6f6e65'")
    assert counters(db_path, "a") == ready_rows(db_path, "a") == (1, 5)
    assert counters(db_path, "b") == ready_rows(db_path, "b") == (2, 3 + len(LARGE))
    assert [conn.get("b", auto_ack=True).body for _ in range(2)] == [b"one", LARGE]


def test_a_lease_released_by_hand_makes_the_message_ready_and_counted(conn, db_path):
    conn.declare_queue("q")
    publish(conn, "q", b"stuck")
    conn.get("q", lease_seconds=3600)  # held by this connection, which then never acks
    assert counters(db_path, "q") == (0, 0)
    with by_hand(db_path) as db:
        db.execute("UPDATE litemq_messages SET lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL")
    assert conn.declare_queue("q", passive=True).message_count == 1
    assert counters(db_path, "q") == (1, 5)


def test_a_message_delayed_or_leased_by_hand_leaves_the_count(conn, db_path):
    conn.declare_queue("q")
    publish(conn, "q", b"one", b"two", b"three")
    first, second, _ = ids(db_path, "q")
    with by_hand(db_path) as db:
        db.execute("UPDATE litemq_messages SET visible_at = 4000000000.0 WHERE id = ?", (first,))
        db.execute("UPDATE litemq_messages SET lease_owner = 'x/1', lease_token = 1, lease_expires_at = 4000000000.0 "
                   "WHERE id = ?", (second,))
    assert conn.declare_queue("q", passive=True).message_count == 1
    assert counters(db_path, "q") == (1, 5)


def test_a_body_changed_by_hand_changes_the_queue_s_bytes(conn, db_path):
    conn.declare_queue("q", arguments={"x-max-length-bytes": 6000})
    publish(conn, "q", b"ab", LARGE)
    with by_hand(db_path) as db:
        db.execute("UPDATE litemq_messages SET body = X'00112233' WHERE body = X'6162'")
        db.execute("UPDATE litemq_bodies SET body = zeroblob(100)")
    assert counters(db_path, "q") == ready_rows(db_path, "q") == (2, 104)
    with by_hand(db_path) as db:  # an out-of-row body written back into its row
        db.execute("UPDATE litemq_messages SET body = zeroblob(10) WHERE body IS NULL")
    assert counters(db_path, "q") == ready_rows(db_path, "q") == (2, 14)


def test_updates_that_leave_readiness_alone_leave_the_counts_alone(conn, db_path):
    conn.declare_queue("q")
    publish(conn, "q", b"one", b"two")
    with by_hand(db_path) as db:
        db.execute("UPDATE litemq_messages SET priority = 3, properties = '{\"type\": \"x\"}', delivery_count = 9")
    assert counters(db_path, "q") == (2, 6)


# ---------------------------------------------------------------------------------------------------------------
# Length limits see the rows as they are
# ---------------------------------------------------------------------------------------------------------------

def test_reject_publish_takes_a_message_again_once_one_is_deleted_by_hand(conn, db_path):
    arguments = {"x-max-length": 2, "x-overflow": "reject-publish"}
    conn.declare_queue("q", arguments=arguments)
    publish(conn, "q", b"one", b"two")
    with pytest.raises(PublishRejected):
        publish(conn, "q", b"refused")
    with by_hand(db_path) as db:
        db.execute("DELETE FROM litemq_messages WHERE id = ?", (ids(db_path, "q")[0],))
    publish(conn, "q", b"three")
    assert [conn.get("q", auto_ack=True).body for _ in range(2)] == [b"two", b"three"]


def test_reject_publish_refuses_when_messages_inserted_by_hand_fill_the_queue(conn, db_path):
    conn.declare_queue("q", arguments={"x-max-length": 2, "x-overflow": "reject-publish"})
    with by_hand(db_path) as db:
        insert(db, "q", b"one")
        insert(db, "q", b"two")
    with pytest.raises(PublishRejected):
        publish(conn, "q", b"refused")
    assert counters(db_path, "q") == (2, 6)


def test_drop_head_counts_messages_inserted_by_hand(conn, db_path):
    conn.declare_queue("q", arguments={"x-max-length": 2})
    with by_hand(db_path) as db:
        insert(db, "q", b"one")
        insert(db, "q", b"two")
    publish(conn, "q", b"three")
    assert conn.declare_queue("q", passive=True).message_count == 2
    assert [conn.get("q", auto_ack=True).body for _ in range(2)] == [b"two", b"three"]


def test_max_length_bytes_sees_a_large_body_deleted_by_hand(conn, db_path):
    conn.declare_queue("q", arguments={"x-max-length-bytes": len(LARGE) + 2, "x-overflow": "reject-publish"})
    publish(conn, "q", LARGE)
    with pytest.raises(PublishRejected):
        publish(conn, "q", b"abc")
    with by_hand(db_path) as db:
        db.execute("DELETE FROM litemq_messages")
    publish(conn, "q", b"abc")
    assert counters(db_path, "q") == (1, 3)


# ---------------------------------------------------------------------------------------------------------------
# Any mix of litemq's operations and plain SQL
# ---------------------------------------------------------------------------------------------------------------

HAND = {
    "delete one": "DELETE FROM litemq_messages WHERE id = (SELECT min(id) FROM litemq_messages WHERE queue = :q)",
    "delete held": "DELETE FROM litemq_messages WHERE queue = :q AND lease_token IS NOT NULL",
    "insert": "INSERT INTO litemq_messages (queue, exchange, routing_key, body, published_at) "
              "VALUES (:q, '', :q, X'68616e64', 1000.0)",
    "insert large": "INSERT INTO litemq_messages (queue, exchange, routing_key, body, published_at) "
                    "VALUES (:q, '', :q, NULL, 1000.0); "
                    "INSERT INTO litemq_bodies (id, body) VALUES (last_insert_rowid(), zeroblob(4000))",
    "insert delayed": "INSERT INTO litemq_messages (queue, exchange, routing_key, body, published_at, visible_at) "
                      "VALUES (:q, '', :q, X'6c61746572', 1000.0, 1767225601.0)",
    "release all": "UPDATE litemq_messages SET lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL "
                   "WHERE lease_token IS NOT NULL",
    "move to other": "UPDATE litemq_messages SET queue = :other WHERE id = (SELECT max(id) FROM litemq_messages "
                     "WHERE queue = :q)",
    # A body put back in its row takes its out-of-row copy with it, as a careful hand edit does.
    "resize": "UPDATE litemq_messages SET body = zeroblob(7) WHERE id = (SELECT min(id) FROM litemq_messages "
              "WHERE queue = :q); DELETE FROM litemq_bodies WHERE id = (SELECT min(id) FROM litemq_messages "
              "WHERE queue = :q)",
    "resize large": "UPDATE litemq_bodies SET body = zeroblob(3500) WHERE id = (SELECT min(id) FROM litemq_bodies)",
    "delay one": "UPDATE litemq_messages SET visible_at = 1767225601.0 WHERE id = (SELECT max(id) "
                 "FROM litemq_messages WHERE queue = :q AND lease_token IS NULL)",
}
OPERATIONS = st.lists(st.one_of(
    st.tuples(st.just("hand"), st.sampled_from(sorted(HAND))),
    st.tuples(st.just("publish"), st.sampled_from([b"", b"abc", LARGE]), st.sampled_from([None, "1000"])),
    st.tuples(st.sampled_from(["get-ack", "get-nack", "get-reject", "get-hold", "auto-ack", "purge", "tick",
                               "publish later", "close-channel"]))), max_size=25)
QUEUE_NAMES = itertools.count()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations=OPERATIONS, limits=st.sampled_from([{}, {"x-max-length": 3},
                                                       {"x-max-length": 2, "x-overflow": "reject-publish"},
                                                       {"x-max-length-bytes": 5000}]))
def test_ready_counters_equal_the_rows_after_any_mix_of_litemq_and_plain_sql(conn, db_path, operations, limits):
    from freezegun import freeze_time

    n = next(QUEUE_NAMES)
    queue, other, dead = f"q{n}", f"other{n}", f"dead{n}"
    for name in (other, dead):
        conn.declare_queue(name)
    conn.declare_queue(queue, arguments={**limits, "x-dead-letter-exchange": "", "x-dead-letter-routing-key": dead})
    channel, held = conn.channel(), []
    with freeze_time("2026-01-01") as frozen:
        for operation in operations:
            kind = operation[0]
            if kind == "hand":
                with by_hand(db_path) as db:
                    for statement in HAND[operation[1]].split("; "):
                        db.execute(statement, {"q": queue, "other": other})
            elif kind == "publish":
                with contextlib.suppress(PublishRejected):
                    channel.publish("", queue, operation[1], Properties(expiration=operation[2]))
            elif kind == "publish later":
                channel.publish("", queue, b"soon", delay=1.0)
            elif kind.startswith("get"):
                delivery = channel.get(queue, lease_seconds=3600)
                if delivery is not None:
                    with contextlib.suppress(litemq.LiteMQError):  # its row may have been deleted by hand
                        {"get-ack": delivery.ack, "get-nack": delivery.nack,
                         "get-hold": lambda: held.append(delivery),
                         "get-reject": lambda: delivery.reject(requeue=False)}[kind]()
            elif kind == "auto-ack":
                channel.get(queue, auto_ack=True)
            elif kind == "purge":
                channel.purge_queue(queue)
            elif kind == "tick":
                frozen.tick(2)
            elif kind == "close-channel":
                channel.close()
                channel, held = conn.channel(), []
            with conn._store.read():
                assert inspect.counter_mismatches(conn._store) == [], operation
            for name in (queue, other, dead):
                assert counters(db_path, name) == ready_rows(db_path, name), (name, operation)
        for name in (queue, other, dead):
            count = conn.declare_queue(name, passive=True).message_count
            assert count == counters(db_path, name)[0] == ready_rows(db_path, name)[0]
    channel.close()


# ---------------------------------------------------------------------------------------------------------------
# litemq db check names a queue whose counters are off; litemq db recount sets them from the rows
# ---------------------------------------------------------------------------------------------------------------

def break_counters(path: str, queue: str, count: int, size: int) -> None:
    """Counters made wrong by a direct write to them (the one write by hand that is never safe)."""
    with by_hand(path) as db:
        db.execute("UPDATE litemq_queues SET ready_count = ?, ready_bytes = ? WHERE name = ?", (count, size, queue))


def test_counter_mismatches_names_each_queue_that_is_off_with_both_values(conn, db_path):
    for name in ("a", "b", "c"):
        conn.declare_queue(name)
    publish(conn, "a", b"one", LARGE)
    publish(conn, "b", b"two")
    with conn._store.read():
        assert inspect.counter_mismatches(conn._store) == []
    break_counters(db_path, "a", 5, 9)
    break_counters(db_path, "c", 0, 1)
    with conn._store.read():
        assert inspect.counter_mismatches(conn._store) == [
            inspect.CounterMismatch("a", 5, 9, 2, 3 + len(LARGE)), inspect.CounterMismatch("c", 0, 1, 0, 0)]


def test_recount_sets_only_the_queues_that_are_off_from_their_rows(conn, db_path):
    conn.declare_queue("a")
    conn.declare_queue("b")
    publish(conn, "a", b"one", LARGE)
    publish(conn, "b", b"two")
    break_counters(db_path, "a", 7, 1)
    with conn._store.write():
        assert inspect.recount(conn._store) == [inspect.CounterMismatch("a", 7, 1, 2, 3 + len(LARGE))]
    assert counters(db_path, "a") == (2, 3 + len(LARGE))
    assert counters(db_path, "b") == (1, 3)
    assert conn.declare_queue("a", passive=True).message_count == 2


def run_cli(capsys: pytest.CaptureFixture[str], path: str, *args: str) -> tuple[int, str, str]:
    code = cli.main(["--db", path, *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_db_check_prints_the_queues_whose_counters_are_off_and_fails_until_db_recount(conn, db_path, capsys):
    conn.declare_queue("jobs")
    conn.declare_queue("fine")
    publish(conn, "jobs", b"one", b"two")
    assert run_cli(capsys, db_path, "db", "check") == (0, "ok\n", "")
    break_counters(db_path, "jobs", 3, 6)

    code, out, err = run_cli(capsys, db_path, "db", "check")
    assert code == 1
    assert out == "queue 'jobs': counted 3 ready messages of 6 bytes, the rows hold 2 of 6 bytes\n"
    assert err == f"litemq: {db_path}: ready counters differ from the rows (`litemq db recount` sets them)\n"

    code, out, _ = run_cli(capsys, db_path, "db", "recount")
    assert code == 0
    assert out == ("queue 'jobs': counted 3 ready messages of 6 bytes, the rows hold 2 of 6 bytes\n"
                   f"{db_path}: 1 queue(s) recounted\n")
    assert run_cli(capsys, db_path, "db", "check") == (0, "ok\n", "")
    assert conn.delete_queue("jobs", if_empty=False) == 2


def test_db_check_json_names_the_queues_whose_counters_are_off(conn, db_path, capsys):
    conn.declare_queue("jobs")
    publish(conn, "jobs", b"one", b"two")
    assert json.loads(run_cli(capsys, db_path, "db", "check", "--json")[1]) == {"integrity": ["ok"], "counters": []}
    break_counters(db_path, "jobs", 3, 6)
    code, out, _ = run_cli(capsys, db_path, "db", "check", "--json")
    assert code == 1
    assert json.loads(out) == {"integrity": ["ok"], "counters": [
        {"queue": "jobs", "ready_count": 3, "ready_bytes": 6, "rows_count": 2, "rows_bytes": 6}]}


def test_a_body_row_left_behind_by_a_hand_edit_never_makes_a_publish_fail(conn, db_path):
    conn.declare_queue("q")
    conn.publish("", "q", LARGE)
    db = sqlite3.connect(db_path, isolation_level=None)
    try:
        # The body put back in its row by hand, its out-of-row copy forgotten; then the message deleted, so SQLite
        # gives its id to the next message.
        db.execute("UPDATE litemq_messages SET body = X'6869' WHERE queue = 'q'")
        db.execute("DELETE FROM litemq_messages WHERE queue = 'q'")
        assert db.execute("SELECT count(*) FROM litemq_bodies").fetchone()[0] == 1
    finally:
        db.close()
    conn.publish("", "q", LARGE[::-1])
    delivery = conn.get("q", auto_ack=True)
    assert delivery is not None and delivery.body == LARGE[::-1]
    assert conn.declare_queue("q", passive=True).message_count == 0
