"""Each connection caches routes; a change to exchanges or bindings anywhere (another connection, another process,
plain SQL) raises the file's routing version, and the next publish anywhere routes by the new bindings."""

from __future__ import annotations

import pytest

import litemq
from conftest import vm_steps
from litemq import AccessRefused, ExchangeNotFound, Properties, PublishRejected

pytestmark = pytest.mark.no_lease_renewal


def ready(conn: litemq.Connection, queue: str) -> int:
    return conn.declare_queue(queue, passive=True).message_count


@pytest.fixture
def topic(conn: litemq.Connection) -> litemq.Connection:
    conn.declare_exchange("stocks", "topic")
    conn.declare_queue("nyse")
    conn.bind_queue("nyse", "stocks", "stock.*.nyse")
    assert conn.publish("stocks", "stock.acme.nyse", b"cached") == 1  # the route is now cached
    return conn


def test_a_binding_another_connection_adds_routes_the_next_publish(topic, other):
    other.declare_queue("all")
    other.bind_queue("all", "stocks", "#")
    assert topic.publish("stocks", "stock.acme.nyse", b"m") == 2
    assert ready(topic, "all") == 1


def test_an_unbind_by_another_connection_stops_routing_at_once(topic, other):
    other.unbind_queue("nyse", "stocks", "stock.*.nyse")
    assert topic.publish("stocks", "stock.acme.nyse", b"m") == 0
    assert ready(topic, "nyse") == 1


def test_a_queue_deleted_elsewhere_leaves_the_cached_route(topic, other):
    other.delete_queue("nyse")
    assert topic.publish("stocks", "stock.acme.nyse", b"m") == 0


def test_an_exchange_redeclared_elsewhere_with_another_type_routes_by_its_new_type(topic, other):
    other.delete_exchange("stocks")
    with pytest.raises(ExchangeNotFound):
        topic.publish("stocks", "stock.acme.nyse", b"m")
    other.declare_exchange("stocks", "fanout")
    other.bind_queue("nyse", "stocks", "ignored")
    assert topic.publish("stocks", "anything", b"m") == 1


def test_an_exchange_made_internal_elsewhere_refuses_publishes(topic, other):
    other.delete_exchange("stocks")
    other.declare_exchange("stocks", "topic", internal=True)
    with pytest.raises(AccessRefused):
        topic.publish("stocks", "stock.acme.nyse", b"m")


def test_a_binding_added_with_plain_sql_routes_the_next_publish(topic, sql):
    topic.declare_queue("by-hand")
    sql("INSERT INTO litemq_bindings (exchange, destination, destination_kind, routing_key, arguments) "
        "VALUES ('stocks', 'by-hand', 'queue', '#', '{}')")
    assert topic.publish("stocks", "stock.acme.nyse", b"m") == 2


def test_a_binding_another_process_adds_routes_the_next_publish(topic, db_path, processes):
    worker = processes.start(_bind_everything, db_path)
    worker.join(30)
    assert worker.exitcode == 0
    assert topic.publish("stocks", "stock.acme.nyse", b"m") == 2


def _bind_everything(path: str) -> None:
    with litemq.connect(path) as conn:
        conn.declare_queue("everything")
        conn.bind_queue("everything", "stocks", "#")


def test_exchange_to_exchange_and_alternate_routes_follow_changes(conn, other):
    conn.declare_exchange("front", "direct", arguments={"alternate-exchange": "spill"})
    conn.declare_exchange("spill", "fanout")
    conn.declare_queue("spilled")
    conn.declare_queue("direct")
    conn.bind_queue("spilled", "spill")
    assert conn.publish("front", "k", b"1") == 1 and ready(conn, "spilled") == 1
    other.declare_exchange("inner", "fanout")
    other.bind_exchange("inner", "front", "k")
    other.bind_queue("direct", "inner")
    assert conn.publish("front", "k", b"2") == 1
    assert ready(conn, "direct") == 1 and ready(conn, "spilled") == 1


def test_headers_routes_depend_on_each_messages_headers_not_its_routing_key(conn):
    conn.declare_exchange("h", "headers")
    conn.declare_queue("red")
    conn.bind_queue("red", "h", arguments={"colour": "red"})
    assert conn.publish("h", "same-key", b"1", Properties(headers={"colour": "red"})) == 1
    assert conn.publish("h", "same-key", b"2", Properties(headers={"colour": "blue"})) == 0
    assert conn.publish("h", "same-key", b"3", Properties(headers={"colour": "red"})) == 1


@pytest.mark.sqlite_only
def test_a_publish_by_a_cached_route_through_1000_topic_bindings_costs_no_more_than_a_direct_one(conn):
    conn.declare_exchange("many", "topic")
    conn.declare_exchange("one", "direct")
    for queue in ("a", "b"):
        conn.declare_queue(queue)
    for i in range(1000):
        conn.bind_queue("a" if i % 2 else "b", "many", f"stock.s{i}.*")
    conn.bind_queue("a", "one", "k")
    for _ in range(2):  # statements prepared, routes cached
        conn.publish("many", "stock.s7.nyse", b"m")
        conn.publish("one", "k", b"m")
    direct, _ = vm_steps(conn, lambda: conn.publish("one", "k", b"m"))
    topic, reached = vm_steps(conn, lambda: conn.publish("many", "stock.s7.nyse", b"m"))
    assert reached == 1
    assert topic <= direct * 1.1, f"a cached topic route took {topic} VM steps, a direct one {direct}"


def test_the_routing_version_rises_with_every_change_to_exchanges_and_bindings(conn, sql):
    def version() -> int:
        return sql.value("SELECT version FROM litemq_routing")

    seen = [version()]
    conn.declare_exchange("x", "fanout")
    seen.append(version())
    conn.declare_queue("q")
    conn.bind_queue("q", "x")
    seen.append(version())
    conn.unbind_queue("q", "x")
    seen.append(version())
    conn.delete_exchange("x")
    seen.append(version())
    assert seen == sorted(set(seen)), f"the routing version did not rise at each change: {seen}"


@pytest.mark.parametrize("rolled_back", [[("add", "q2")], [("remove", "q1"), ("add", "q2")]],
                         ids=["to two queues", "to one queue, published by one statement"])
def test_a_rolled_back_transaction_leaves_no_route_behind_even_when_the_version_comes_round_again(
        conn, other, rolled_back):
    # The cache is stamped with the version it was filled under. A transaction that changed a binding, routed, and
    # rolled back leaves the file at the old version; other changes can bring it to the same number again.
    conn.declare_exchange("x", "direct")
    for queue in ("q1", "q2", "q3"):
        conn.declare_queue(queue)
    conn.bind_queue("q1", "x", "k")
    with pytest.raises(RuntimeError):
        with conn._store.write() as store:
            for change, queue in rolled_back:
                (store.add_binding if change == "add" else store.remove_binding)("x", queue, "queue", "k", "{}")
            assert "q2" in conn._session.routes.route(store, "x", "k", None)[1]
            raise RuntimeError("rolled back")
    other.bind_queue("q3", "x", "k")
    for n in range(1, len(rolled_back)):  # as many changes as the rolled-back ones
        other.bind_queue("q3", "x", f"key {n}")
    assert conn.publish("x", "k", b"m") == 2
    assert (ready(conn, "q1"), ready(conn, "q2"), ready(conn, "q3")) == (1, 0, 1)


@pytest.mark.sqlite_only
def test_a_publish_by_a_cached_route_to_one_plain_queue_is_one_statement_with_no_begin_or_commit(conn):
    conn.declare_exchange("tasks", "direct")
    conn.declare_queue("celery")
    conn.bind_queue("celery", "tasks", "celery")
    assert conn.publish("tasks", "celery", b"caches the route") == 1
    statements: list[str] = []
    conn._store._db.set_trace_callback(statements.append)
    try:
        assert conn.publish("tasks", "celery", b"m", mandatory=True) == 1
    finally:
        conn._store._db.set_trace_callback(None)
    distinct = set(statements)  # the driver reports the statement again for each trigger it runs
    assert len(distinct) == 1 and statements[0].startswith("INSERT"), statements
    assert ready(conn, "celery") == 2


def test_a_cached_route_to_one_queue_with_a_length_limit_still_meets_the_limit(conn):
    conn.declare_exchange("x", "direct")
    conn.declare_queue("limited", arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    conn.bind_queue("limited", "x", "k")
    assert conn.publish("x", "k", b"1") == 1
    with pytest.raises(PublishRejected):
        conn.publish("x", "k", b"2")
    assert ready(conn, "limited") == 1
