"""The storage contract (litemq.store.contract), verb by verb, on both engines: each test runs on an SQLite file
and on a fresh schema of the local PostgreSQL server. What a verb promises in its docstring is what is tested."""

from __future__ import annotations

import os
import threading
import time
from typing import Any, Callable, Iterator

import pytest

from engines import make_broker
from litemq.errors import StorageError
from litemq.store.sqlite import SQLiteStore

TOKEN = 1 << 60  # lease tokens reach 2**62: past any 32-bit column


@pytest.fixture
def open_store(engine: str, db_path: str) -> Iterator[Callable[[], Any]]:
    """Opens a connection to one broker (another each call), closed after the test; on each engine that
    LITEMQ_TEST_ENGINES chooses (see engines.py)."""
    make_broker(db_path)
    if engine == "sqlite":
        def make() -> Any:
            return SQLiteStore(db_path)
    else:
        def make() -> Any:
            from litemq.store.postgres import PostgresStore

            return PostgresStore(db_path)
    opened: list[Any] = []

    def opener() -> Any:
        opened.append(make())
        return opened[-1]

    yield opener
    for store in opened:
        store.close()


@pytest.fixture
def store(open_store: Callable[[], Any]) -> Any:
    return open_store()


def declare(store: Any, queue: str = "q", arguments: Any = None, now: float = 1.0) -> None:
    with store.write_exclusive() as s:
        s.insert_queue(queue, True, False, False, arguments, None, now)


def publish(store: Any, queue: str = "q", *bodies: bytes, priority: int = 0, now: float = 2.0) -> None:
    with store.write() as s:
        for body in bodies or (b"m",):
            s.insert_message(queue, "", queue, body, None, now, priority)


def claim(store: Any, limit: int, queue: str = "q", owner: str = "c/1", token: int = TOKEN,
          expires: float = 100.0, **options: Any) -> list[Any]:
    with store.write() as s:
        return list(s.claim(queue, limit, owner, token, expires, **options))


# --- transactions
def test_a_write_that_raises_is_rolled_back_and_its_after_commit_actions_never_run(store: Any) -> None:
    declare(store)
    ran: list[str] = []
    with pytest.raises(RuntimeError):
        with store.write() as s:
            s.insert_message("q", "", "q", b"lost", None, 2.0)
            s.after_commit(lambda: ran.append("rolled back"))
            raise RuntimeError("boom")
    with store.write() as s:
        s.after_commit(lambda: ran.append("committed"))
    assert store.ready_count("q") == 0
    assert ran == ["committed"]


def test_a_transaction_a_ctrl_c_abandoned_is_rolled_back_when_the_next_begins(
        store: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # A KeyboardInterrupt raised as the rollback of a failed block begins (a signal lands between two bytecodes)
    # leaves the transaction open after the lock is given back: the next transaction must not fail on it.
    declare(store)
    transaction = type(store.write())

    def interrupted(self: Any, exc: BaseException) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(transaction, "_roll_back", interrupted)
    with pytest.raises(KeyboardInterrupt):
        with store.write() as s:
            s.insert_message("q", "", "q", b"abandoned", None, 2.0)
            raise RuntimeError("the block failed")
    monkeypatch.undo()
    publish(store, "q", b"next")
    with store.write() as s:
        assert [m.body for m in s.claim("q", 10, "c/1", TOKEN, 100.0)] == [b"next"]


def test_a_read_sees_one_snapshot_while_another_connection_commits(open_store: Callable[[], Any]) -> None:
    store, other = open_store(), open_store()
    declare(store)
    publish(store)
    with store.read() as s:
        first = s.ready_count("q")
        if getattr(store, "engine", "sqlite") == "postgresql":  # SQLite's writer would wait for this reader's lock
            publish(other)
        assert s.ready_count("q") == first == 1


def order_of(held: Any, inside: Callable[[Any], None], meanwhile: Callable[[list[str]], None]) -> list[str]:
    """What came first: the commit of the transaction ``held`` once ``inside`` ran in it, or what ``meanwhile``
    (started then in another thread) writes down in the list it is given."""
    order: list[str] = []
    thread = threading.Thread(target=meanwhile, args=(order,))
    with held as s:
        inside(s)
        thread.start()
        time.sleep(0.2)  # long enough for the other thread to reach its wait
        order.append("committing")
    thread.join(5)
    return order


def test_exclusive_writes_wait_for_writes_and_the_statements_of_writes_for_them(
        open_store: Callable[[], Any]) -> None:
    # The promise is about statements: none of a write() runs beside a write_exclusive(). Entering the block may
    # not wait (PostgreSQL sends a write's BEGIN and lock with its first statement).
    store, other = open_store(), open_store()
    declare(store)

    def publish(s: Any) -> None:
        s.insert_message("q", "", "q", b"m", None, 2.0)
        assert s.ready_count("q") == 1

    def declare_other(order: list[str]) -> None:
        with other.write_exclusive() as o:
            order.append("exclusive began")
            o.insert_queue("r", True, False, False, None, None, 3.0)

    assert order_of(store.write(), publish, declare_other) == ["committing", "exclusive began"]

    def publish_other(order: list[str]) -> None:
        with other.write() as o:
            order.append(f"write saw queue s: {o.queue('s') is not None}")

    assert order_of(store.write_exclusive(), lambda s: s.insert_queue("s", True, False, False, None, None, 4.0),
                    publish_other) == ["committing", "write saw queue s: True"]


def test_lock_queue_serialises_two_publishers_of_one_queue(open_store: Callable[[], Any]) -> None:
    store, other = open_store(), open_store()
    declare(store)

    def second(order: list[str]) -> None:
        with other.write() as o:
            o.lock_queue("q")
            order.append("second locked")

    assert order_of(store.write(), lambda s: s.lock_queue("q"), second) == ["committing", "second locked"]


# --- exchanges and bindings
def test_exchanges_and_bindings_round_trip_and_raise_the_routing_version(store: Any) -> None:
    version = store.routing_version()
    with store.write_exclusive() as s:
        s.insert_exchange("logs", "fanout", True, False, False, '{"a": 1}', 1.0)
        s.insert_exchange("inner", "topic", False, True, True, None, 1.0)
        s.add_binding("logs", "q1", "queue", "k", "{}")
        s.add_binding("logs", "q1", "queue", "k", "{}")  # twice: left as it is
        s.add_binding("logs", "inner", "exchange", "#", "{}")
    assert store.routing_version() > version
    row = store.exchange("logs")
    assert (row.type, row.durable, row.auto_delete, row.internal, row.arguments) == ("fanout", True, False, False,
                                                                                      '{"a": 1}')
    assert store.exchange_and_bindings("logs") == ("fanout", False, '{"a": 1}',
                                                   [("q1", "queue", "k", "{}"), ("inner", "exchange", "#", "{}")])
    assert store.exchange_in_use("inner") and store.has_bindings("logs") and not store.has_bindings("inner")
    with store.write_exclusive() as s:
        assert s.remove_binding("logs", "q1", "queue", "k", "{}") is True
        assert s.remove_binding("logs", "q1", "queue", "k", "{}") is False
        assert s.delete_exchange("inner") == ["logs"]
    assert store.exchange("inner") is None and store.exchange_and_bindings("logs") == ("fanout", False, '{"a": 1}', [])
    assert store.exchange_and_bindings("nope") is None


# --- queues and counts
def test_a_queue_counts_its_ready_messages_and_bytes(store: Any) -> None:
    declare(store, arguments='{"x-max-length": 5}')
    publish(store, "q", b"abc", b"de")
    row = store.queue("q")
    assert (row.durable, row.exclusive, row.auto_delete, row.arguments, row.ready_count, row.ready_bytes,
            row.created_at) == (True, False, False, '{"x-max-length": 5}', 2, 5, 1.0)
    with store.write() as s:
        assert s.counts_with("q", 10, 3) == (5, 15, '{"x-max-length": 5}', 0)
        assert s.counts_with("missing", 1) is None
        assert s.counts_with_first("q", 1) == ((3, 6, '{"x-max-length": 5}', 0), None)
        assert s.counts_with_queues(["q", "missing"], 1) == {"q": (3, 6, '{"x-max-length": 5}', 0)}
    claim(store, 1)
    assert store.ready_count("q") == 1 and store.unacked_count("q") == 1
    assert store.ready_count("missing") is None and store.queue_created_at("q") == 1.0


def test_messages_changed_by_hand_with_plain_sql_are_counted(store: Any) -> None:
    declare(store)
    publish(store, "q", b"one", b"two", b"three")
    with store.write() as s:
        s.execute("INSERT INTO litemq_messages (queue, exchange, routing_key, body, published_at) "
                  "VALUES (?, '', 'q', ?, 3.0)", ("q", b"by hand"))
        s.execute("DELETE FROM litemq_messages WHERE body = ?", (b"one",))
        s.execute("UPDATE litemq_messages SET visible_at = 99.0 WHERE body = ?", (b"two",))
    assert (store.queue("q").ready_count, store.queue("q").ready_bytes) == (2, len(b"three") + len(b"by hand"))


def test_maintain_folds_the_counters_without_changing_them(store: Any) -> None:
    declare(store)
    for _ in range(20):
        publish(store, "q", b"xy")
    claim(store, 5)
    store.maintain()
    assert (store.queue("q").ready_count, store.queue("q").ready_bytes) == (15, 30)
    if getattr(store, "engine", "") == "postgresql":
        assert store.run("SELECT count(*) FROM litemq_queue_deltas").fetchone()[0] == 0


def test_deleting_a_queue_takes_its_messages_bindings_consumers_and_counts(store: Any) -> None:
    declare(store)
    publish(store, "q", b"a", b"b")
    with store.write_exclusive() as s:
        s.add_binding("amq.direct", "q", "queue", "k", "{}")
        s.add_consumer("c", 1, "tag", "q", 0, False, False, 1.0)
        assert s.delete_queue("q") == ["amq.direct"]
    declare(store)  # the same name again: another queue, empty
    assert store.queue("q").ready_count == 0 and store.consumer_count("q") == 0


def test_purge_takes_ready_messages_and_leaves_unacked_ones(store: Any) -> None:
    declare(store)
    publish(store, "q", b"a", b"b", b"c")
    claim(store, 1)
    with store.write() as s:
        assert s.purge_queue("q") == 2
    assert store.ready_count("q") == 0 and store.unacked_count("q") == 1


def test_copies_batches_and_delayed_messages_are_stored_in_order(store: Any) -> None:
    for queue in ("a", "b", "c"):
        declare(store, queue)
    with store.write() as s:
        s.insert_copies(["a", "b"], "ex", "key", b"copy", '{"p": 1}', 2.0)
        s.insert_messages("c", "ex", "key", [b"1", b"2", b"3"], None, 2.0)
        s.insert_delayed("c", "ex", "key", [b"later"], None, 2.0, 50.0)
    assert [store.ready_count(q) for q in "abc"] == [1, 1, 3]
    assert [m.body for m in claim(store, 10, "c")] == [b"1", b"2", b"3"]
    message = claim(store, 1, "a")[0]
    assert (message.exchange, message.routing_key, message.properties) == ("ex", "key", '{"p": 1}')
    assert store.deadlines()[0] == 50.0 and store.arrival_due() == 50.0
    with store.write() as s:
        due = s.take_due(60.0, 10)
    assert [(m.body, m.queue, at) for m, at in due] == [(b"later", "c", 50.0)]


def test_a_plain_publish_stores_into_a_queue_without_arguments_and_tells_of_its_consumers(
        open_store: Callable[[], Any]) -> None:
    store, other = open_store(), open_store()
    declare(store)
    with store.write() as s:
        assert s.publish_plain("q", "ex", "key", b"m", '{"p": 1}', 2.0) is False  # no consumers to wake
    with other.write_exclusive() as s:
        s.add_consumer("c/1", 1, "tag", "q", 0, False, False, 3.0, 0)
    with store.write() as s:
        assert s.publish_plain("q", "ex", "key", b"n", None, 4.0) is True
    assert store.ready_count("q") == 2
    message = claim(store, 1)[0]
    assert (message.body, message.exchange, message.routing_key, message.properties) == (b"m", "ex", "key", '{"p": 1}')


def test_a_plain_publish_stores_nothing_into_a_queue_with_arguments_a_missing_one_or_when_something_is_due(
        store: Any) -> None:
    declare(store, "limited", '{"x-max-length":1}')
    declare(store)
    with store.write() as s:
        s.insert_delayed("q", "", "q", [b"due"], None, 1.0, 1.5)
    for queue, now in (("limited", 2.0), ("limited", 1.2), ("missing", 1.2), ("q", 2.0)):
        with store.write() as s:
            assert s.publish_plain(queue, "", queue, b"m", None, now) is None
    assert [store.ready_count(queue) for queue in ("limited", "q")] == [0, 0]
    with store.write() as s:
        assert s.publish_plain("q", "", "q", b"m", None, 1.2) is False  # nothing due yet
    assert store.ready_count("q") == 1


def test_a_publish_alone_commits_by_itself_outside_a_transaction_and_never_inside_one(
        open_store: Callable[[], Any]) -> None:
    store, other = open_store(), open_store()
    declare(store)
    stored = store.publish_alone("q", "ex", "key", b"m", None, 2.0)
    assert stored is (False if store.engine == "sqlite" else None)  # PostgreSQL: publish_plain's round trip is one
    assert other.ready_count("q") == (1 if stored is not None else 0)
    declare(store, "limited", '{"x-max-length":1}')
    assert store.publish_alone("limited", "", "limited", b"m", None, 2.0) is None
    with store.write():
        assert store.publish_alone("q", "", "q", b"m", None, 3.0) is None  # the block's transaction has it
    assert other.ready_count("q") == (1 if stored is not None else 0) and other.ready_count("limited") == 0


def test_a_routed_publish_alone_stores_only_while_the_files_routing_version_is_the_one_given(
        open_store: Callable[[], Any]) -> None:
    store, other = open_store(), open_store()
    declare(store)
    version = store.routing_version()
    with other.write_exclusive() as s:
        s.insert_exchange("ex", "direct", True, False, False, None, 1.0)  # a change to the routing: the version rises
    assert store.publish_alone("q", "ex", "key", b"stale", None, 2.0, routing_version=version) is None
    stored = store.publish_alone("q", "ex", "key", b"m", None, 2.0, routing_version=store.routing_version())
    assert stored is (False if store.engine == "sqlite" else None)  # PostgreSQL: publish_plain's round trip is one
    assert other.ready_count("q") == (1 if stored is not None else 0)


def test_an_ack_alone_commits_by_itself_outside_a_transaction_and_never_inside_one(
        open_store: Callable[[], Any]) -> None:
    store, other = open_store(), open_store()
    declare(store)
    publish(store, "q", b"1", b"2")
    first, second = claim(store, 2)
    alone = store.engine == "sqlite"  # PostgreSQL: ack_last's round trip is one already
    assert store.ack_alone((first.id, TOKEN + 1)) == (0 if alone else None)  # not its token: left alone
    assert store.ack_alone((first.id, TOKEN)) == (1 if alone else None)
    with store.write():
        assert store.ack_alone((second.id, TOKEN)) is None  # the block's transaction has it
    assert other.unacked_count("q") == (1 if alone else 2)


# --- claiming and settling
def test_claims_go_by_priority_then_arrival_and_take_no_more_than_asked(store: Any) -> None:
    declare(store)
    publish(store, "q", b"low1", b"low2")
    publish(store, "q", b"high", priority=5)
    publish(store, "q", b"low3")
    taken = claim(store, 3)
    assert [m.body for m in taken] == [b"high", b"low1", b"low2"]
    assert all(m.delivery_count == 1 for m in taken)
    assert store.ready_count("q") == 1 and store.unacked_count("q") == 3


def test_two_connections_claiming_at_once_never_take_the_same_message(open_store: Callable[[], Any]) -> None:
    stores = [open_store() for _ in range(4)]
    declare(stores[0])
    with stores[0].write() as s:
        s.insert_messages("q", "", "q", [str(i).encode() for i in range(400)], None, 2.0)
    taken: list[int] = []

    def consume(store: Any, owner: str) -> None:
        while True:
            batch = claim(store, 7, owner=owner)
            if not batch:
                return
            taken.extend(m.id for m in batch)

    threads = [threading.Thread(target=consume, args=(store, f"c{i}/1")) for i, store in enumerate(stores)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(taken) == len(set(taken)) == 400


def test_a_default_consumer_claims_nothing_while_a_higher_priority_consumer_has_room(store: Any) -> None:
    declare(store)
    publish(store, "q", b"a", b"b")
    with store.write_exclusive() as s:
        s.add_consumer("hi", 1, "t", "q", 1, False, False, 1.0, priority=5)
        s.add_consumer("lo", 1, "t", "q", 1, False, False, 1.0, priority=-1)
    assert store.consumer_ranking("q", 0) == (True, True)
    assert store.ready_count_ranked("q") == (2, True)
    assert claim(store, 1, default_consumer=True) == []
    with store.write() as s:
        s.set_consumer_room("hi", 1, "t", False)
    assert store.ready_count_ranked("q") == (2, False)
    assert store.ready_count_ranked("missing") == (None, False)
    got = claim(store, 1, default_consumer=True)
    assert [m.body for m in got] == [b"a"] and got[0].consumers_below == 1
    with store.write() as s:
        taken = s.claim_and_delete("q", 5, default_consumer=True)
    assert [(m.body, m.delivery_count) for m in taken] == [(b"b", 1)]
    assert store.consumer_ranking("q", 5) == (False, True)


def test_a_claim_alone_leases_the_next_message_by_itself_or_leaves_the_claim_to_a_transaction(
        open_store: Callable[[], Any]) -> None:
    store, other = open_store(), open_store()
    declare(store)
    declare(store, "empty")
    publish(store, "q", b"a", b"b")
    if store.engine != "sqlite":  # PostgreSQL: a claim's BEGIN and COMMIT already go with its statements
        assert store.claim_alone("q", "c/1", TOKEN, 100.0, 3.0) is None
        return
    got = store.claim_alone("q", "c/1", TOKEN, 100.0, 3.0)
    assert [(m.body, m.delivery_count) for m in got] == [(b"a", 1)]
    assert (other.ready_count("q"), other.unacked_count("q")) == (1, 1)  # committed
    with store.write() as s:
        assert s.ack([(got[0].id, TOKEN)]) == 1  # leased with that token
        assert store.claim_alone("q", "c/1", TOKEN, 100.0, 3.0) is None  # the block's transaction has it
    assert store.claim_alone("empty", "c/1", TOKEN, 100.0, 3.0) == []
    assert store.claim_alone("missing", "c/1", TOKEN, 100.0, 3.0) is None
    with store.write() as s:
        s.insert_delayed("empty", "", "empty", [b"due"], None, 1.0, 2.5)
    assert store.claim_alone("q", "c/1", TOKEN, 100.0, 3.0) is None  # due first: the general path settles it
    with store.write() as s:
        s.take_due(3.0, 10)
        s.add_consumer("hi", 1, "t", "q", 1, False, False, 1.0, priority=5)
    assert store.claim_alone("q", "c/1", TOKEN, 100.0, 3.0) == []  # a consumer of higher priority has room
    with store.write() as s:
        s.set_consumer_room("hi", 1, "t", False)
        s.add_consumer("lo", 1, "t", "q", 1, False, False, 1.0, priority=-1)
    assert store.claim_alone("q", "c/1", TOKEN, 100.0, 3.0) is None  # the general path tells lower ones of room
    assert other.ready_count("q") == 1


def test_a_claim_unless_due_leases_when_nothing_is_due_and_leaves_the_rest_to_the_general_path(store: Any) -> None:
    declare(store)
    declare(store, "other")
    publish(store, "q", b"a", b"b", b"c")

    def claimed(limit: int = 1, now: float = 3.0) -> Any:
        with store.write() as s:
            return s.claim_unless_due("q", limit, "c/1", TOKEN, 100.0, now)

    if store.engine == "sqlite":  # the general path's reads of what is due cost no round trip on a file
        assert claimed() is None
        return
    got = claimed()
    assert [(m.body, m.delivery_count, m.consumers_below) for m in got] == [(b"a", 1, 0)]
    assert (store.ready_count("q"), store.unacked_count("q")) == (2, 1)
    assert claimed(now=100.0) is None and store.unacked_count("q") == 1  # its lease expired by then: nothing leased
    with store.write() as s:
        s.insert_delayed("other", "", "other", [b"due"], None, 1.0, 4.0)  # in another queue: due all the same
    assert claimed(now=5.0) is None
    got = claimed(now=3.5)  # before it falls due
    assert [m.body for m in got] == [b"b"]
    with store.write() as s:
        s.take_due(5.0, 10)
        s.add_consumer("hi", 1, "t", "q", 1, False, False, 1.0, priority=5)
        s.add_consumer("lo", 1, "t", "q", 1, False, False, 1.0, priority=-1)
    assert claimed(now=5.0) == []  # a consumer of higher priority has room
    with store.write() as s:
        s.set_consumer_room("hi", 1, "t", False)
    got = claimed(5, now=5.0)
    assert [(m.body, m.consumers_below) for m in got] == [(b"c", 1)]
    assert claimed(now=5.0) == []  # nothing left ready


def test_an_ack_and_claim_unless_due_commits_with_its_statement_and_begins_again_when_more_is_to_do(
        open_store: Callable[[], Any]) -> None:
    store, other = open_store(), open_store()
    declare(store)
    publish(store, "q", b"a", b"b", b"c", b"d")
    held = claim(store, 1)[0]
    if store.engine == "sqlite":  # a file's statements cost no round trip
        with store.write() as s:
            assert s.ack_and_claim_unless_due((held.id, TOKEN), "q", 1, "c/1", TOKEN + 1, 100.0, 3.0) is None
        return
    with store.write() as s:
        acked, got = s.ack_and_claim_unless_due((held.id, TOKEN), "q", 1, "c/1", TOKEN + 1, 100.0, 3.0)
        assert (acked, [(m.body, m.delivery_count) for m in got]) == (1, [(b"b", 1)])
        assert (other.ready_count("q"), other.unacked_count("q")) == (2, 1)  # committed with the statement
    with store.write_exclusive() as s:
        s.add_consumer("x", 1, "t", "other", 1, False, False, 1.0)
    with pytest.raises(RuntimeError):
        with store.write() as s:
            acked, got = s.ack_and_claim_unless_due((got[0].id, TOKEN), "q", 1, "c/1", TOKEN + 2, 100.0, 3.0)
            assert (acked, [m.body for m in got]) == (0, [b"c"])  # not its lease: nothing acked, the claim all the same
            s.set_consumer_room("x", 1, "t", False)  # a write after it: in a transaction of its own, rolled back
            raise RuntimeError("boom")
    assert other.unacked_count("q") == 2
    assert other.run("SELECT has_room FROM litemq_consumers WHERE connection_id = 'x'").fetchone() == (True,)
    with store.write() as s:
        s.insert_delayed("q", "", "q", [b"later"], None, 1.0, 4.0)
        acked, got = s.ack_and_claim_unless_due((got[0].id, TOKEN + 2), "q", 1, "c/1", TOKEN + 3, 100.0, 5.0)
        assert (acked, got) == (1, None)  # the block's second statement: something is due, nothing claimed
        assert s.take_due(5.0, 10)[0][0].body == b"later"  # (out of the file: the broker stores it again)
    assert (other.ready_count("q"), other.unacked_count("q")) == (1, 1)
    with store.write() as s:
        acked, got = s.ack_and_claim_unless_due((1, 1), "q", 1, "c/1", TOKEN + 4, 100.0, 150.0)
        assert (acked, got) == (0, None)  # the lease of "b" expired by then
        assert len(s.return_expired("q", 150.0)) == 1
    with store.write() as s:
        s.add_consumer("lo", 1, "t", "q", 1, False, False, 1.0, priority=-1)
    with store.write() as s:
        acked, got = s.ack_and_claim_unless_due((1, 1), "q", 5, "c/1", TOKEN + 5, 200.0, 150.0)
        assert [(m.body, m.consumers_below) for m in got] == [(b"b", 1), (b"d", 1)]
        s.set_consumer_room("lo", 1, "t", True)  # told of consumers below: it may write on
    assert (other.ready_count("q"), other.unacked_count("q")) == (0, 2)


class _Interleaved:
    """A store's SQLite connection that runs ``meanwhile`` right after the statement ``after`` (another connection's
    work between the two statements of a claim alone)."""

    def __init__(self, db: Any, after: str, meanwhile: Callable[[], None]) -> None:
        self._db, self._after, self._meanwhile = db, after, meanwhile

    def execute(self, sql: str, *args: Any) -> Any:
        cursor = self._db.execute(sql, *args)
        if sql == self._after:
            rows = cursor.fetchall()
            self._meanwhile()
            return _Rows(rows)
        return cursor

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)


class _Rows:
    def __init__(self, rows: list[Any]) -> None:
        self._rows = rows

    def fetchone(self) -> Any:
        return self._rows[0] if self._rows else None


@pytest.mark.sqlite_only
def test_a_claim_alone_delivers_what_it_leased_when_its_message_was_taken_and_its_id_reused_in_between(
        open_store: Callable[[], Any]) -> None:
    # Between the claim's read and its lease by id, another consumer takes the message and acks it, and the next
    # publish gets the same id (SQLite reuses the highest rowid once it is deleted). The lease must then deliver
    # the message it leased, not the one it read, or none at all; never the old body under the new message's lease.
    from litemq.store.sqlite_sql import NEXT_READY_ALONE

    store, other = open_store(), open_store()
    declare(store)
    publish(store, "q", b"old")

    def meanwhile() -> None:
        (taken,) = claim(other, 1, owner="c/2", token=TOKEN + 1)
        with other.write() as s:
            assert s.ack([(taken.id, TOKEN + 1)]) == 1
        publish(other, "q", b"new")

    store._db = _Interleaved(store._db, NEXT_READY_ALONE, meanwhile)
    got = store.claim_alone("q", "c/1", TOKEN, 100.0, 3.0)
    store._db = store._db._db
    leased = claim(other, 5, owner="c/3", token=TOKEN + 2)  # what is still ready
    if got:
        assert [m.body for m in got] == [b"new"] and leased == []
    else:
        assert [m.body for m in leased] == [b"new"]


def test_settling_needs_the_lease_token(store: Any) -> None:
    declare(store)
    publish(store, "q", b"a", b"b", b"c", b"d")
    a, b, c, d = claim(store, 4)
    with store.write() as s:
        assert s.ack([(a.id, TOKEN + 1)]) == 0
        assert s.ack([(a.id, TOKEN), (b.id, TOKEN)]) == 2
        assert [m.body for m in s.drop([(c.id, TOKEN), (c.id, 7)])] == [b"c"]
        assert s.renew([(500.0, d.id, TOKEN), (500.0, d.id, 7)]) == 1
    assert store.next_lease_expiry("q") == 500.0
    assert store.next_lease_expiries(["q", "missing"]) == {"q": 500.0}
    with store.write() as s:
        assert s.requeue([(d.id, TOKEN)], undo_delivery=True) == [(d.id, "q", 0)]
        assert s.requeue([(d.id, TOKEN)]) == []
    assert store.ready_count("q") == 1 and store.next_lease_expiry("q") is None
    assert store.next_lease_expiries(["q"]) == {}


def test_leases_return_by_owner_by_connection_and_on_expiry(store: Any) -> None:
    declare(store)
    publish(store, "q", *[bytes([i]) for i in range(6)])
    claim(store, 2, owner="conn1/1", expires=10.0)
    claim(store, 2, owner="conn1/2", expires=20.0)
    claim(store, 2, owner="conn2/1", expires=30.0)
    with store.write() as s:
        assert [m.delivery_count for m in s.return_expired("q", 10.0)] == [1, 1]
        assert len(s.release_owner("conn1/2")) == 2
        assert s.release_connection("conn1") == []
        assert len(s.release_connection("conn2")) == 2
    assert store.ready_count("q") == 6
    assert [m.delivery_count for m in claim(store, 6)] == [2] * 6


def test_two_reapers_at_once_return_each_lease_once(open_store: Callable[[], Any]) -> None:
    stores = [open_store() for _ in range(3)]
    declare(stores[0])
    with stores[0].write() as s:
        s.insert_messages("q", "", "q", [b"m"] * 300, None, 2.0)
    claim(stores[0], 300, owner="dead/1")
    returned: list[int] = []

    def reap(store: Any) -> None:
        with store.write() as s:
            returned.extend(m.id for m in s.release_connection("dead"))

    threads = [threading.Thread(target=reap, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(returned) == len(set(returned)) == 300
    assert stores[0].ready_count("q") == 300


def test_taking_messages_out_head_by_id_and_on_expiry(store: Any) -> None:
    declare(store)
    with store.write() as s:
        s.insert_message("q", "", "q", b"old", None, 2.0, 0, 5.0)
        s.insert_message("q", "", "q", b"young", None, 2.0, 0, 9.0)
        s.insert_message("q", "", "q", b"forever", None, 2.0)
    assert store.deadlines() == (None, 5.0, None)
    with store.write() as s:
        assert [m.body for m in s.take_expired(6.0, 10)] == [b"old"]
        head = s.take_head("q", 1)
        assert [m.body for m in head] == [b"young"]
        ids = [m.id for m in s.claim("q", 1, "c/1", TOKEN, 100.0)]
        assert s.take_ready(ids) == []  # leased: not ready any more
    assert store.ready_count("q") == 0 and store.unacked_count("q") == 1


def test_next_due_is_the_earliest_lease_or_deadline(store: Any) -> None:
    declare(store)
    publish(store, "q", b"a")
    claim(store, 1, expires=40.0)
    with store.write() as s:
        s.insert_delayed("q", "", "q", [b"d"], None, 2.0, 30.0)
        s.set_queue_expiry("q", 20.0)
    assert store.next_due("q") == 20.0
    assert store.expired_queues(25.0) == ["q"] and store.expired_queues(15.0) == []


# --- consumers and connections
def test_consumers_are_kept_in_the_order_they_came(store: Any) -> None:
    declare(store)
    with store.write_exclusive() as s:
        s.add_consumer("b", 1, "t1", "q", 0, False, True, 1.0)
        s.add_consumer("a", 2, "t2", "q", 0, True, False, 1.0)
    assert store.first_consumer("q") == ("b", 1, "t1")
    assert store.has_exclusive_consumer("q") and store.consumer_count("q") == 2
    assert sorted(store.consumers_of("q")) == [("a", 2, "t2"), ("b", 1, "t1")] == sorted(store.all_consumers())
    with store.write_exclusive() as s:
        assert s.remove_consumer("b", 1, "t1") and not s.remove_consumer("b", 1, "t1")
        assert s.remove_connection_consumers("a") == ["q"]
    assert store.first_consumer("q") is None


def test_connections_register_and_unregister(store: Any) -> None:
    with store.write_exclusive() as s:
        s.register_connection("abc", 42, "host", 5.0)
        s.insert_queue("mine", False, True, False, None, "abc", 5.0)
    assert tuple(store.registration("abc")) == (42, "host", 5.0)
    assert store.has_connection("abc") and "abc" in store.connection_ids()
    assert store.owned_queues("abc") == ["mine"]
    with store.write_exclusive() as s:
        s.unregister_connection("abc")
    assert store.registration("abc") is None and not store.has_connection("abc")


def test_a_forked_childs_copy_refuses_every_operation_in_a_transaction_or_not(store: Any) -> None:
    with store.write_exclusive() as s:
        s.register_connection("abc", 42, "host", 5.0)
    pid = os.fork()
    if pid == 0:
        refused = 0
        for operation in (store.connection_ids, lambda: store.registration("abc"), store.write().__enter__):
            try:
                operation()
            except StorageError as exc:
                refused += "fork" in str(exc)
            except BaseException:
                pass
        os._exit(refused)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 3
    assert store.connection_ids() == ["abc"]  # the parent's copy goes on


# --- liveness
def test_a_connection_is_dead_once_its_store_closes_and_alive_before(open_store: Callable[[], Any]) -> None:
    store, other = open_store(), open_store()
    mine = store.liveness("a" * 32, lambda connection_id: None)
    theirs = other.liveness("b" * 32, lambda connection_id: None)
    assert mine.dead(["b" * 32, "a" * 32]) == [] and not mine.is_dead("b" * 32)
    theirs.close()
    other.close()
    assert mine.dead(["b" * 32]) == ["b" * 32]
    mine.forget("b" * 32)
    mine.close()
