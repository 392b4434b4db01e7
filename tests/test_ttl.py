"""Message TTL (x-message-ttl, the expiration property) and queue TTL (x-expires): when a message or an unused
queue goes, what counts as using a queue, where it shows in SQL, and what expiring costs.

Time rules are tested under freezegun, calling the broker directly on connections that renew no leases (no
threads, no waits under a frozen clock; a consumer is only asked ``get(0)``, which never sleeps). Expiry is done by
whoever touches the file next, so each test makes that touch explicit. One test runs in real time: a waiting
consumer's own timer does an expiry no one else would."""

from __future__ import annotations

import time
from typing import Callable, Optional

import pytest

import litemq
from conftest import vm_steps
from litemq import Properties, QueueNotFound

pytestmark = pytest.mark.no_lease_renewal

FAR_FUTURE = 4_000_000_000.0  # year 2096: a TTL nothing here outlives


def now(frozen) -> float:
    return frozen().timestamp()


def rows(sql, queue: str) -> int:
    """Every stored message of the queue, ready or unacked, expired or not."""
    return sql.value("SELECT count(*) FROM litemq_messages WHERE queue = ?", (queue,))


def expires_at(sql, queue: str) -> list[Optional[float]]:
    return [r[0] for r in sql("SELECT expires_at FROM litemq_messages WHERE queue = ? ORDER BY id", (queue,))]


def queue_names(sql) -> set[str]:
    return {r[0] for r in sql("SELECT name FROM litemq_queues")}


def queue_expiry(sql, queue: str) -> Optional[float]:
    return sql.value("SELECT expires_at FROM litemq_queues WHERE name = ?", (queue,))


def touch(conn) -> None:
    """Any operation on the file does what time has made due; this one uses no queue under test."""
    conn.declare_queue("bystander")


# ---------------------------------------------------------------------------------------------------------------
# Message TTL: how long a message lives
# ---------------------------------------------------------------------------------------------------------------

def test_a_message_is_gettable_until_its_queue_ttl_runs_out_and_never_after(conn, frozen, sql):
    conn.declare_queue("q", arguments={"x-message-ttl": 2000})
    conn.publish("", "q", b"m1")
    conn.publish("", "q", b"m2")
    frozen.tick(1.9)
    assert conn.get("q", auto_ack=True).body == b"m1"
    frozen.tick(0.2)
    assert conn.get("q") is None
    assert rows(sql, "q") == 0


def test_a_message_past_its_ttl_is_never_delivered_to_a_consumer(conn, frozen, sql):
    conn.declare_queue("q", arguments={"x-message-ttl": 1000})
    consumer = conn.consume("q", prefetch=10)
    conn.publish("", "q", b"stale")
    frozen.tick(1.1)
    assert consumer.get(0) is None
    assert rows(sql, "q") == 0


def test_the_expiration_property_is_a_ttl_of_its_own_in_milliseconds(conn, frozen, sql):
    conn.declare_queue("q")
    conn.publish("", "q", b"short", Properties(expiration="1500"))
    conn.publish("", "q", b"forever")
    assert expires_at(sql, "q") == [pytest.approx(now(frozen) + 1.5), None]
    frozen.tick(1.4)
    assert conn.declare_queue("q").message_count == 2
    frozen.tick(0.2)
    assert [d.body for d in iter(lambda: conn.get("q", auto_ack=True), None)] == [b"forever"]


def test_an_expired_message_between_others_leaves_them_in_order(conn, frozen):
    conn.declare_queue("q")
    conn.publish("", "q", b"1", Properties(expiration="60000"))
    conn.publish("", "q", b"2", Properties(expiration="1000"))
    conn.publish("", "q", b"3")
    frozen.tick(2)
    assert [d.body for d in iter(lambda: conn.get("q", auto_ack=True), None)] == [b"1", b"3"]


@pytest.mark.parametrize("queue_ttl, expiration", [(5000, "2000"), (2000, "5000")],
                         ids=["message TTL lower", "queue TTL lower"])
def test_the_lower_of_queue_ttl_and_message_expiration_wins(conn, frozen, queue_ttl, expiration, sql):
    conn.declare_queue("q", arguments={"x-message-ttl": queue_ttl})
    conn.publish("", "q", b"m", Properties(expiration=expiration))
    assert expires_at(sql, "q") == [pytest.approx(now(frozen) + 2.0)]
    frozen.tick(1.9)
    assert conn.declare_queue("q", passive=True).message_count == 1
    frozen.tick(0.2)
    assert conn.get("q") is None


def test_the_ttl_is_stored_as_a_utc_expiry_beside_the_message(conn, frozen, sql):
    conn.declare_queue("q", arguments={"x-message-ttl": 90_000})
    conn.publish("", "q", b"m")
    lifetime = sql.value("SELECT expires_at - published_at FROM litemq_messages")
    assert lifetime == pytest.approx(90.0)
    shown = sql.value("SELECT expires_at FROM litemq_message_view")
    assert shown == "2026-01-01T00:01:30.000Z"


@pytest.mark.parametrize("arguments, properties", [
    ({"x-message-ttl": 0}, None),
    ({}, Properties(expiration="0")),
], ids=["queue TTL 0", "expiration 0"])
def test_ttl_zero_drops_a_message_when_no_consumer_is_registered(conn, frozen, arguments, properties, sql):
    conn.declare_queue("q", arguments=arguments)
    assert conn.publish("", "q", b"now or never", properties) == 1  # it reached the queue
    assert conn.declare_queue("q", passive=True).message_count == 0
    assert conn.get("q") is None
    assert rows(sql, "q") == 0


def test_ttl_zero_reaches_a_consumer_registered_on_the_queue(conn, frozen):
    conn.declare_queue("q", arguments={"x-message-ttl": 0})
    consumer = conn.consume("q")
    conn.publish("", "q", b"handed over")
    frozen.tick(0.5)
    assert consumer.get(0).body == b"handed over"


def test_ttl_zero_for_a_registered_consumer_expires_if_it_does_not_claim_within_a_second(conn, frozen, sql):
    conn.declare_queue("q", arguments={"x-message-ttl": 0})
    consumer = conn.consume("q")
    conn.publish("", "q", b"missed")
    frozen.tick(1.1)
    assert consumer.get(0) is None
    assert rows(sql, "q") == 0


# ---------------------------------------------------------------------------------------------------------------
# Message TTL: requeued, unacked and leased messages
# ---------------------------------------------------------------------------------------------------------------

def test_a_requeued_message_keeps_its_original_expiry(conn, frozen, sql):
    conn.declare_queue("q", arguments={"x-message-ttl": 10_000})
    conn.publish("", "q", b"m")
    published = now(frozen)
    frozen.tick(6)
    conn.get("q").nack(requeue=True)
    assert expires_at(sql, "q") == [pytest.approx(published + 10)]
    frozen.tick(3)  # 9 s after publishing: still alive, though only 3 s after the requeue
    again = conn.get("q")
    assert (again.body, again.redelivered) == (b"m", True)
    again.nack(requeue=True)
    frozen.tick(1.1)  # 10.1 s after publishing, 4.1 s after the first requeue
    assert conn.get("q") is None


def test_an_unacked_message_does_not_expire_in_its_holders_hands(conn, other, frozen, sql):
    conn.declare_queue("q", arguments={"x-message-ttl": 1000})
    conn.publish("", "q", b"m")
    held = conn.get("q", lease_seconds=60)
    frozen.tick(5)
    assert other.get("q") is None
    assert rows(sql, "q") == 1
    held.ack()
    assert rows(sql, "q") == 0


def test_an_unacked_message_past_its_ttl_expires_when_it_is_requeued(conn, frozen):
    conn.declare_exchange("dlx", "fanout")
    conn.declare_queue("dead")
    conn.bind_queue("dead", "dlx")
    conn.declare_queue("q", arguments={"x-message-ttl": 1000, "x-dead-letter-exchange": "dlx"})
    conn.publish("", "q", b"m")
    held = conn.get("q", lease_seconds=60)
    frozen.tick(5)
    held.nack(requeue=True)
    assert conn.get("q") is None
    dead = conn.get("dead", auto_ack=True)
    assert (dead.body, dead.properties.headers["x-death"][0]["reason"]) == (b"m", "expired")


@pytest.mark.parametrize("taker", ["get", "consumer"])
def test_a_message_whose_lease_runs_out_after_its_ttl_is_never_redelivered(conn, other, frozen, taker, sql):
    conn.declare_queue("q", arguments={"x-message-ttl": 10_000})
    conn.publish("", "q", b"m")
    conn.get("q", lease_seconds=20)
    frozen.tick(21)  # the lease ran out 11 s after the message's TTL did
    if taker == "get":
        assert other.get("q") is None
    else:
        assert other.consume("q").get(0) is None
    assert rows(sql, "q") == 0


# ---------------------------------------------------------------------------------------------------------------
# Message TTL: counts and who does the expiring
# ---------------------------------------------------------------------------------------------------------------

def test_message_counts_leave_out_expired_messages(conn, frozen, sql):
    conn.declare_queue("q")
    for expiration in ("1000", "1000", None, "60000"):
        conn.publish("", "q", b"m", Properties(expiration=expiration))
    assert conn.declare_queue("q").message_count == 4
    frozen.tick(1.5)
    assert conn.declare_queue("q").message_count == 2
    assert conn.declare_queue("q", passive=True).message_count == 2
    assert conn.get("q").message_count == 1
    assert sql.value("SELECT ready FROM litemq_queue_stats WHERE queue = 'q'") == 1


def test_expired_messages_of_every_queue_go_when_anyone_touches_the_file(conn, other, frozen, sql):
    for queue in ("a", "b"):
        conn.declare_queue(queue, arguments={"x-message-ttl": 1000})
        conn.publish("", queue, b"m")
    frozen.tick(1.1)
    assert rows(sql, "a") + rows(sql, "b") == 2  # nobody has looked yet
    other.declare_queue("unrelated")
    assert rows(sql, "a") + rows(sql, "b") == 0


# ---------------------------------------------------------------------------------------------------------------
# Queue TTL (x-expires): an unused queue goes
# ---------------------------------------------------------------------------------------------------------------

def test_an_unused_queue_is_deleted_with_its_messages_once_its_x_expires_passes(conn, frozen, sql):
    conn.declare_queue("q", arguments={"x-expires": 5000})
    conn.publish("", "q", b"m1")
    conn.publish("", "q", b"m2")
    assert queue_expiry(sql, "q") == pytest.approx(now(frozen) + 5)
    frozen.tick(4.9)
    touch(conn)
    assert "q" in queue_names(sql)
    frozen.tick(0.2)
    touch(conn)
    assert "q" not in queue_names(sql)
    assert rows(sql, "q") == 0
    with pytest.raises(QueueNotFound):
        conn.declare_queue("q", passive=True)


def test_an_expired_queue_is_found_gone_by_a_passive_declare_of_it(conn, frozen):
    conn.declare_queue("q", arguments={"x-expires": 1000})
    frozen.tick(1.1)
    with pytest.raises(QueueNotFound):
        conn.declare_queue("q", passive=True)


def test_a_queue_past_its_x_expires_cannot_be_consumed_though_nobody_looked_since(conn, frozen, sql):
    conn.declare_queue("q", arguments={"x-expires": 1000})
    frozen.tick(1.1)
    with pytest.raises(QueueNotFound):
        conn.consume("q")
    assert "q" not in queue_names(sql)


def test_a_mandatory_publish_to_a_queue_past_its_x_expires_is_unroutable(conn, frozen, sql):
    conn.declare_queue("q", arguments={"x-expires": 1000})
    frozen.tick(1.1)
    with pytest.raises(litemq.Unroutable):
        conn.publish("", "q", b"m", mandatory=True)
    assert rows(sql, "q") == 0


def test_the_messages_of_an_expired_queue_are_not_dead_lettered(conn, frozen, sql):
    conn.declare_exchange("dlx", "fanout")
    conn.declare_queue("dead")
    conn.bind_queue("dead", "dlx")
    conn.declare_queue("q", arguments={"x-expires": 1000, "x-dead-letter-exchange": "dlx"})
    conn.publish("", "q", b"m1")
    conn.publish("", "q", b"m2")
    frozen.tick(1.1)
    touch(conn)
    assert "q" not in queue_names(sql)
    assert conn.declare_queue("dead").message_count == 0


USES: dict[str, Callable[[litemq.Connection], object]] = {
    "declare": lambda conn: conn.declare_queue("q", arguments={"x-expires": 5000}),
    "passive declare": lambda conn: conn.declare_queue("q", passive=True),
    "get of nothing": lambda conn: conn.get("q"),
    "get of a message": lambda conn: (conn.publish("", "q", b"m"), conn.get("q", auto_ack=True)),
}


@pytest.mark.parametrize("use", list(USES))
def test_a_use_of_the_queue_restarts_its_countdown(conn, frozen, use, sql):
    conn.declare_queue("q", arguments={"x-expires": 5000})
    frozen.tick(4)
    USES[use](conn)
    assert queue_expiry(sql, "q") == pytest.approx(now(frozen) + 5)
    frozen.tick(4.9)  # 8.9 s after the declare
    touch(conn)
    assert "q" in queue_names(sql)
    frozen.tick(0.2)
    touch(conn)
    assert "q" not in queue_names(sql)


def test_publishing_to_the_queue_does_not_restart_its_countdown(conn, frozen, sql):
    conn.declare_queue("q", arguments={"x-expires": 5000})
    frozen.tick(4)
    conn.publish("", "q", b"m")
    frozen.tick(1.1)
    touch(conn)
    assert "q" not in queue_names(sql)


def test_a_consumer_holds_an_expiring_queue_however_long_it_waits(conn, frozen, sql):
    conn.declare_queue("q", arguments={"x-expires": 1000})
    consumer = conn.consume("q")
    assert queue_expiry(sql, "q") is None
    frozen.tick(3600)
    touch(conn)
    assert "q" in queue_names(sql)
    assert consumer.get(0) is None and consumer.active


def test_the_countdown_starts_when_the_last_consumer_cancels(conn, other, frozen, sql):
    conn.declare_queue("q", arguments={"x-expires": 5000})
    first, second = conn.consume("q"), other.consume("q")
    frozen.tick(10)
    first.cancel()
    assert queue_expiry(sql, "q") is None  # the other consumer still holds it
    frozen.tick(10)
    touch(conn)
    assert "q" in queue_names(sql)
    second.cancel()
    assert queue_expiry(sql, "q") == pytest.approx(now(frozen) + 5)
    frozen.tick(4.9)
    touch(conn)
    assert "q" in queue_names(sql)
    frozen.tick(0.2)
    touch(conn)
    assert "q" not in queue_names(sql)


@pytest.mark.parametrize("ending", ["channel close", "connection close"])
def test_a_consumer_gone_with_its_channel_or_connection_no_longer_holds_the_queue(db_path, conn, frozen, ending, sql):
    conn.declare_queue("q", arguments={"x-expires": 5000})
    holder = litemq.connect(db_path, renew_leases=False)
    channel = holder.channel()
    channel.consume("q")
    frozen.tick(60)
    if ending == "channel close":
        channel.close()
    else:
        holder.close()
    frozen.tick(5.1)
    touch(conn)
    assert "q" not in queue_names(sql)
    holder.close()


# ---------------------------------------------------------------------------------------------------------------
# Real time: a waiting consumer's timer does an expiry no one else would
# ---------------------------------------------------------------------------------------------------------------

def test_a_waiting_consumer_receives_what_expires_out_of_a_queue_nobody_consumes(conn, other):
    conn.declare_queue("work")
    conn.declare_queue("wait", arguments={"x-message-ttl": 100, "x-dead-letter-exchange": "",
                                          "x-dead-letter-routing-key": "work"})
    consumer = conn.consume("work")
    started = time.monotonic()
    other.publish("", "wait", b"retry me")
    delivery = consumer.get(timeout=2.0)
    waited = time.monotonic() - started
    assert delivery is not None, "the expired message never reached the waiting consumer"
    assert delivery.body == b"retry me"
    assert delivery.properties.headers["x-death"][0]["reason"] == "expired"
    assert 0.09 <= waited < 2.0


# ---------------------------------------------------------------------------------------------------------------
# Cost pins: expiring finds its messages through an index (counted in SQLite VM steps: sqlite only)
# ---------------------------------------------------------------------------------------------------------------

def add_ready(conn, queue: str, count: int, *, expires_at: Optional[float] = None,
              visible_at: Optional[float] = None) -> None:
    """Add messages straight into the table (fast); the file's triggers count them (not delayed ones)."""
    store = conn._store
    with store.write():
        store._db.executemany(
            "INSERT INTO litemq_messages (queue, exchange, routing_key, body, published_at, expires_at, visible_at) "
            "VALUES (?, '', ?, ?, 0.0, ?, ?)", ((queue, queue, b"m", expires_at, visible_at) for _ in range(count)))


@pytest.mark.sqlite_only
def test_expiring_10_messages_costs_about_the_same_behind_20000_unexpired_as_behind_200(conn, frozen, sql):
    sizes = {"warm": 200, "few": 200, "many": 20_000}
    costs = {}
    for queue, count in sizes.items():  # "warm" first: the statements are cached before anything is measured
        conn.declare_queue(queue)
        add_ready(conn, queue, count, expires_at=FAR_FUTURE)  # long TTLs, all ahead of the short ones
        for _ in range(10):
            conn.publish("", queue, b"short", Properties(expiration="1000"))
        frozen.tick(1.5)
        costs[queue], delivery = vm_steps(conn, lambda: conn.get(queue))
        assert delivery is not None and delivery.body == b"m"
        assert rows(sql, queue) == sizes[queue]  # the 10 expired ones went; the head is delivered, unacked
    assert costs["few"] > 0
    assert costs["many"] <= 2 * costs["few"], (
        f"a get expiring 10 messages cost {costs['many']} VM steps behind 20,000 unexpired ones against "
        f"{costs['few']} behind 200: expired messages are not found through an index")


@pytest.mark.sqlite_only
def test_a_plain_get_costs_the_same_with_10000_delayed_and_10000_ttl_messages_in_another_queue(conn):
    conn.declare_queue("jobs")
    conn.declare_queue("elsewhere")
    for n in range(3):
        conn.publish("", "jobs", b"%d" % n)
    conn.get("jobs")  # statements cached
    baseline, delivery = vm_steps(conn, lambda: conn.get("jobs"))
    assert delivery is not None and delivery.body == b"1"
    add_ready(conn, "elsewhere", 10_000, visible_at=FAR_FUTURE)
    add_ready(conn, "elsewhere", 10_000, expires_at=FAR_FUTURE)
    crowded, delivery = vm_steps(conn, lambda: conn.get("jobs"))
    assert delivery is not None and delivery.body == b"2"
    assert baseline > 0
    assert abs(crowded - baseline) <= 0.1 * baseline, (
        f"a plain get cost {crowded} VM steps with 20,000 delayed and TTL messages in another queue against "
        f"{baseline} without")
