"""Leases: an unacked delivery holds its message until acked, its channel closes, or its lease expires.

Expiry is tested under freezegun, calling the broker directly (no threads under a frozen clock)."""

import pytest

import litemq
from litemq import LeaseExpired

pytestmark = pytest.mark.no_lease_renewal


@pytest.fixture
def jobs(conn):
    conn.declare_queue("jobs")
    conn.publish("", "jobs", b"job")
    return "jobs"


def test_leased_message_is_not_delivered_to_anyone_else(conn, other, jobs, frozen):
    assert conn.get(jobs) is not None
    assert other.get(jobs) is None


def test_message_returns_with_redelivered_when_its_lease_expires(conn, other, jobs, frozen):
    conn.get(jobs, lease_seconds=10)
    frozen.tick(9.9)
    assert other.get(jobs) is None
    frozen.tick(0.2)
    again = other.get(jobs)
    assert (again.body, again.redelivered, again.delivery_count) == (b"job", True, 2)


def test_stale_ack_raises_and_never_touches_the_new_holders_message(conn, other, jobs, frozen, sql):
    stale = conn.get(jobs, lease_seconds=10)
    frozen.tick(11)
    current = other.get(jobs)
    with pytest.raises(LeaseExpired, match="'jobs'"):
        stale.ack()
    current.ack()  # the new holder still owns it
    assert other.declare_queue(jobs).message_count == 0
    assert sql.value("SELECT count(*) FROM litemq_messages") == 0


def test_stale_nack_does_not_requeue_a_message_held_by_another(conn, other, jobs, frozen):
    stale = conn.get(jobs, lease_seconds=10)
    frozen.tick(11)
    current = other.get(jobs)
    with pytest.raises(LeaseExpired):
        stale.nack(requeue=True)
    assert conn.get(jobs) is None
    current.ack()


def test_expired_message_keeps_its_place_in_the_queue(conn, frozen):
    conn.declare_queue("q")
    for body in (b"1", b"2"):
        conn.publish("", "q", body)
    conn.get("q", lease_seconds=5)
    frozen.tick(6)
    assert [conn.get("q", auto_ack=True).body for _ in range(2)] == [b"1", b"2"]


def test_a_consumers_claim_in_its_ack_returns_expired_leases_to_their_place_first(conn, frozen):
    conn.declare_queue("q")
    for body in (b"1", b"2", b"3"):
        conn.publish("", "q", body)
    conn.get("q", lease_seconds=5)
    consumer = conn.consume("q", prefetch=1)
    first = consumer.get(0)
    assert first.body == b"2"
    frozen.tick(6)
    first.ack()  # its room refilled in the ack's transaction: "1" is back before "3"
    again = consumer.get(0)
    assert (again.body, again.redelivered) == (b"1", True)
    again.ack()
    assert consumer.get(0).body == b"3"


def test_a_consumers_ack_after_its_lease_expired_raises_and_its_room_is_refilled(conn, other, frozen):
    conn.declare_queue("q")
    for body in (b"1", b"2"):
        conn.publish("", "q", body)
    consumer = conn.consume("q", prefetch=1, lease_seconds=5)
    first = consumer.get(0)
    frozen.tick(6)
    taken = other.get("q")  # the expired lease returned, and the message taken again
    assert (taken.body, taken.redelivered) == (b"1", True)
    with pytest.raises(LeaseExpired, match="'q'"):
        first.ack()
    assert consumer.get(0).body == b"2"  # claimed in the ack's transaction all the same
    taken.ack()


def test_expired_leases_count_as_ready_again(conn, jobs, frozen):
    conn.get(jobs, lease_seconds=5)
    assert conn.declare_queue(jobs).message_count == 0
    frozen.tick(6)
    assert conn.declare_queue(jobs).message_count == 1
    assert conn.get(jobs, lease_seconds=5).message_count == 0


def test_default_lease_is_the_connections_setting(db_path, frozen):
    with litemq.connect(db_path, lease_seconds=3, renew_leases=False) as conn:
        conn.declare_queue("q")
        conn.publish("", "q", b"m")
        conn.get("q")
        frozen.tick(2)
        assert conn.get("q") is None
        frozen.tick(2)
        assert conn.get("q").redelivered


def test_queue_argument_sets_the_lease_for_its_deliveries(conn, frozen):
    conn.declare_queue("short", arguments={"x-lease-ms": 2000})
    conn.publish("", "short", b"m")
    conn.get("short")
    frozen.tick(1.5)
    assert conn.get("short") is None
    frozen.tick(1)
    assert conn.get("short").redelivered


def test_consumer_lease_overrides_the_queue_argument(conn, frozen):
    conn.declare_queue("q", arguments={"x-lease-ms": 60000})
    conn.publish("", "q", b"m")
    consumer = conn.consume("q", lease_seconds=1)
    assert consumer.get(0).body == b"m"
    frozen.tick(2)
    again = conn.get("q")
    assert again is not None and again.redelivered


def test_lease_seconds_must_be_positive(conn, jobs):
    with pytest.raises(ValueError):
        conn.get(jobs, lease_seconds=0)
    with pytest.raises(ValueError):
        litemq.connect(conn.path, lease_seconds=-1)


def test_lease_is_stored_with_owner_token_and_expiry(conn, jobs, frozen, sql):
    conn.get(jobs, lease_seconds=30)
    ((owner, token, expires),) = sql("SELECT lease_owner, lease_token, lease_expires_at FROM litemq_messages")
    assert owner and token is not None
    assert expires == pytest.approx(frozen().timestamp() + 30)
