"""Dead-lettering: what sends a message to its queue's dead-letter exchange (rejection, expiry, a length limit, the
delivery limit), how it is marked (x-death, x-first-death-*, x-last-death-*, its expiration removed), where it goes
(exchange and routing key; the default exchange; a missing exchange), cycles, and the rules of the queue it lands in.

Time rules run under freezegun on connections that renew no leases, calling the broker directly; one flow runs
through litemq.pika, whose headers come back as pika shows RabbitMQ's."""

from __future__ import annotations

import datetime as dt

import pytest
from freezegun import freeze_time

from engines import as_url
from litemq import Properties, PublishRejected

pytestmark = pytest.mark.no_lease_renewal

UTC = dt.timezone.utc


@pytest.fixture
def frozen():
    with freeze_time("2026-03-04 05:06:07.890") as clock:
        yield clock


def rows(sql, queue: str) -> int:
    return sql.value("SELECT count(*) FROM litemq_messages WHERE queue = ?", (queue,))


def all_rows(sql) -> int:
    return sql.value("SELECT count(*) FROM litemq_messages")


def deaths(delivery) -> list[tuple[str, str, int]]:
    """(queue, reason, count) of each x-death entry, newest first (none when it never died)."""
    return [(d["queue"], d["reason"], d["count"]) for d in (delivery.properties.headers or {}).get("x-death", [])]


def touch(conn) -> None:
    """Any operation on the file does what time has made due; this one uses no queue under test."""
    conn.declare_queue("bystander")


# ---------------------------------------------------------------------------------------------------------------
# Every trigger
# ---------------------------------------------------------------------------------------------------------------

def by_nack(conn, frozen):
    conn.get("src").nack(requeue=False)


def by_reject(conn, frozen):
    conn.get("src").reject(requeue=False)


def by_expiry(conn, frozen):
    frozen.tick(1.1)
    assert conn.get("src") is None


def by_drop_head(conn, frozen):
    conn.publish("", "src", b"newer")


def by_reject_publish_dlx(conn, frozen):
    conn.purge_queue("src")
    conn.publish("", "src", b"keeper")
    with pytest.raises(PublishRejected):
        conn.publish("", "src", b"m")


def by_delivery_limit(conn, frozen):
    conn.get("src").nack(requeue=True)
    assert conn.get("src") is None  # the return went over the limit


TRIGGERS = {
    "nack": ({}, by_nack, "rejected"),
    "reject": ({}, by_reject, "rejected"),
    "expiry": ({"x-message-ttl": 1000}, by_expiry, "expired"),
    "drop-head": ({"x-max-length": 1}, by_drop_head, "maxlen"),
    "reject-publish-dlx": ({"x-max-length": 1, "x-overflow": "reject-publish-dlx"}, by_reject_publish_dlx,
                           "maxlen"),
    "delivery limit": ({"x-delivery-limit": 0}, by_delivery_limit, "delivery_limit"),
}


@pytest.mark.parametrize("trigger", list(TRIGGERS))
def test_each_trigger_dead_letters_the_message_with_its_reason(conn, dlx, frozen, trigger, sql):
    arguments, act, reason = TRIGGERS[trigger]
    conn.declare_queue("src", arguments={"x-dead-letter-exchange": dlx, **arguments})
    conn.publish("", "src", b"m")
    act(conn, frozen)
    dead = conn.get("dead", auto_ack=True)
    assert dead is not None and dead.body == b"m"
    assert deaths(dead) == [("src", reason, 1)]
    assert conn.get("dead") is None
    assert sql.value("SELECT count(*) FROM litemq_messages WHERE queue = 'src' AND body = ?", (b"m",)) == 0


@pytest.mark.parametrize("trigger", [t for t in TRIGGERS if t != "reject-publish-dlx"])  # that one refuses "m"
def test_each_trigger_dead_letters_a_large_body_whole_and_leaves_no_copy_of_it(conn, dlx, frozen, trigger, sql):
    arguments, act, reason = TRIGGERS[trigger]
    large = bytes(range(256)) * 40  # over 3 KB: kept in litemq_bodies
    conn.declare_queue("src", arguments={"x-dead-letter-exchange": dlx, **arguments})
    conn.publish("", "src", large)
    act(conn, frozen)
    dead = conn.get("dead", auto_ack=True)
    assert dead is not None and dead.body == large and deaths(dead) == [("src", reason, 1)]
    assert sql.value("SELECT count(*) FROM litemq_bodies") == 0


@pytest.mark.parametrize("trigger", list(TRIGGERS))
def test_without_a_dead_letter_exchange_each_trigger_drops_the_message(conn, frozen, trigger, sql):
    arguments, act, reason = TRIGGERS[trigger]
    conn.declare_queue("src", arguments=arguments)
    conn.publish("", "src", b"m")
    act(conn, frozen)
    assert sql.value("SELECT count(*) FROM litemq_messages WHERE body = ?", (b"m",)) == 0


def test_nack_without_requeue_dead_letters_every_message_it_settles(conn, dlx, sql):
    conn.declare_queue("src", arguments={"x-dead-letter-exchange": dlx})
    for body in (b"1", b"2", b"3"):
        conn.publish("", "src", body)
    tags = [conn.get("src").delivery_tag for _ in range(3)]
    conn.nack(tags[1], multiple=True, requeue=False)
    assert [conn.get("dead", auto_ack=True).body for _ in range(2)] == [b"1", b"2"]
    assert conn.get("dead") is None
    conn.ack(tags[2])
    assert all_rows(sql) == 0


def test_an_ack_or_a_requeue_dead_letters_nothing(conn, dlx):
    conn.declare_queue("src", arguments={"x-dead-letter-exchange": dlx})
    conn.publish("", "src", b"m")
    conn.get("src").nack(requeue=True)
    conn.get("src").ack()
    assert conn.declare_queue("dead").message_count == 0


# ---------------------------------------------------------------------------------------------------------------
# How a dead-lettered message is marked
# ---------------------------------------------------------------------------------------------------------------

def test_the_x_death_entry_holds_exactly_count_reason_queue_time_exchange_keys_and_original_expiration(
        conn, dlx, frozen):
    conn.declare_exchange("in", "direct")
    conn.declare_queue("src", arguments={"x-dead-letter-exchange": dlx})
    conn.bind_queue("src", "in", "k")
    conn.publish("in", "k", b"m", Properties(expiration="60000", content_type="text/plain",
                                              correlation_id="c-1", headers={"app": "x"}))
    frozen.tick(2)  # 05:06:09.890
    conn.get("src").reject(requeue=False)
    dead = conn.get("dead", auto_ack=True)
    headers = dead.properties.headers
    assert headers["x-death"] == [{
        "count": 1, "reason": "rejected", "queue": "src",
        "time": dt.datetime(2026, 3, 4, 5, 6, 9, tzinfo=UTC),  # whole seconds
        "exchange": "in", "routing-keys": ["k"], "original-expiration": "60000",
    }]
    assert headers["x-death"][0]["time"].utcoffset() == dt.timedelta(0)
    assert {k: v for k, v in headers.items() if k != "x-death"} == {
        "app": "x",
        "x-first-death-queue": "src", "x-first-death-reason": "rejected", "x-first-death-exchange": "in",
        "x-last-death-queue": "src", "x-last-death-reason": "rejected", "x-last-death-exchange": "in",
    }
    assert (dead.properties.content_type, dead.properties.correlation_id) == ("text/plain", "c-1")


def test_a_message_without_an_expiration_has_no_original_expiration_in_its_entry(conn, dlx):
    conn.declare_queue("src", arguments={"x-dead-letter-exchange": dlx, "x-message-ttl": 60000})
    conn.publish("", "src", b"m")
    conn.get("src").nack(requeue=False)
    entry, = conn.get("dead", auto_ack=True).properties.headers["x-death"]
    assert sorted(entry) == ["count", "exchange", "queue", "reason", "routing-keys", "time"]


def test_the_expiration_property_is_removed_so_the_message_never_expires_where_it_lands(conn, dlx, frozen, sql):
    conn.declare_queue("src", arguments={"x-dead-letter-exchange": dlx})
    conn.publish("", "src", b"m", Properties(expiration="1000"))
    conn.get("src").reject(requeue=False)
    assert sql("SELECT expires_at FROM litemq_messages WHERE queue = 'dead'") == [(None,)]
    frozen.tick(3600)
    dead = conn.get("dead", auto_ack=True)
    assert dead is not None and dead.properties.expiration is None
    assert dead.properties.headers["x-death"][0]["original-expiration"] == "1000"


def test_first_death_headers_never_change_and_last_death_headers_follow_the_latest(conn, frozen):
    conn.declare_exchange("in", "direct")
    conn.declare_exchange("to-mid", "direct")
    conn.declare_exchange("to-end", "fanout")
    conn.declare_queue("src", arguments={"x-dead-letter-exchange": "to-mid"})
    conn.declare_queue("mid", arguments={"x-dead-letter-exchange": "to-end", "x-message-ttl": 1000})
    conn.declare_queue("end", arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "grave"})
    conn.declare_queue("grave")
    conn.bind_queue("src", "in", "k")
    conn.bind_queue("mid", "to-mid", "k")
    conn.bind_queue("end", "to-end")
    conn.publish("in", "k", b"m")
    conn.get("src").reject(requeue=False)   # src -> mid, rejected
    frozen.tick(1.1)
    touch(conn)                              # mid -> end, expired
    conn.get("end").nack(requeue=False)     # end -> grave, rejected
    headers = conn.get("grave", auto_ack=True).properties.headers
    assert [(d["queue"], d["reason"], d["exchange"], d["routing-keys"]) for d in headers["x-death"]] == [
        ("end", "rejected", "to-end", ["k"]),
        ("mid", "expired", "to-mid", ["k"]),
        ("src", "rejected", "in", ["k"]),
    ]
    assert {k: v for k, v in headers.items() if k.startswith(("x-first", "x-last"))} == {
        "x-first-death-queue": "src", "x-first-death-reason": "rejected", "x-first-death-exchange": "in",
        "x-last-death-queue": "end", "x-last-death-reason": "rejected", "x-last-death-exchange": "to-end",
    }


def test_a_repeat_death_counts_up_its_entry_and_moves_it_first_while_the_others_keep_their_order(conn):
    for hop, after in (("h1", "h2"), ("h2", "h3"), ("h3", "h1")):  # rejections may go round
        conn.declare_queue(hop, arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": after})
    conn.publish("", "h1", b"m")
    orders = []
    for hop, after in (("h1", "h2"), ("h2", "h3"), ("h3", "h1"), ("h1", "h2"), ("h2", "h3")):
        conn.get(hop).reject(requeue=False)
        delivery = conn.get(after)
        orders.append(deaths(delivery))
        delivery.nack(requeue=True)
    assert orders == [
        [("h1", "rejected", 1)],
        [("h2", "rejected", 1), ("h1", "rejected", 1)],
        [("h3", "rejected", 1), ("h2", "rejected", 1), ("h1", "rejected", 1)],
        [("h1", "rejected", 2), ("h3", "rejected", 1), ("h2", "rejected", 1)],
        [("h2", "rejected", 2), ("h1", "rejected", 2), ("h3", "rejected", 1)],
    ]
    headers = delivery.properties.headers
    assert (headers["x-first-death-queue"], headers["x-last-death-queue"]) == ("h1", "h2")


# ---------------------------------------------------------------------------------------------------------------
# Where a dead-lettered message goes
# ---------------------------------------------------------------------------------------------------------------

@pytest.fixture
def routed(conn):
    """Exchange "in" routes key "orig" to "src"; "src" dead-letters to the direct exchange "dlx-direct", where
    "by-orig" is bound with "orig" and "by-new" with "new"."""
    conn.declare_exchange("in", "direct")
    conn.declare_exchange("dlx-direct", "direct")
    for queue, key in (("by-orig", "orig"), ("by-new", "new")):
        conn.declare_queue(queue)
        conn.bind_queue(queue, "dlx-direct", key)


def test_a_dead_lettered_message_is_delivered_from_the_dead_letter_exchange_with_its_original_key(conn, routed):
    conn.declare_queue("src", arguments={"x-dead-letter-exchange": "dlx-direct"})
    conn.bind_queue("src", "in", "orig")
    conn.publish("in", "orig", b"m")
    conn.get("src").reject(requeue=False)
    dead = conn.get("by-orig", auto_ack=True)
    assert (dead.exchange, dead.routing_key) == ("dlx-direct", "orig")
    assert conn.get("by-new") is None


def test_x_dead_letter_routing_key_replaces_the_key_but_not_the_one_recorded(conn, routed):
    conn.declare_queue("src", arguments={"x-dead-letter-exchange": "dlx-direct", "x-dead-letter-routing-key": "new"})
    conn.bind_queue("src", "in", "orig")
    conn.publish("in", "orig", b"m")
    conn.get("src").reject(requeue=False)
    dead = conn.get("by-new", auto_ack=True)
    assert (dead.exchange, dead.routing_key) == ("dlx-direct", "new")
    assert dead.properties.headers["x-death"][0]["routing-keys"] == ["orig"]
    assert conn.get("by-orig") is None


def test_the_default_exchange_can_be_the_dead_letter_exchange(conn):
    conn.declare_queue("graveyard")
    conn.declare_queue("src", arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "graveyard"})
    conn.publish("", "src", b"m")
    conn.get("src").reject(requeue=False)
    dead = conn.get("graveyard", auto_ack=True)
    assert (dead.body, dead.exchange, dead.routing_key) == (b"m", "", "graveyard")
    assert dead.properties.headers["x-death"][0]["exchange"] == ""


def test_a_dead_letter_exchange_routes_by_headers_it_finds_on_the_message(conn):
    conn.declare_exchange("by-headers", "headers")
    conn.declare_queue("red")
    conn.bind_queue("red", "by-headers", arguments={"x-match": "all", "colour": "red"})
    conn.declare_queue("src", arguments={"x-dead-letter-exchange": "by-headers"})
    conn.publish("", "src", b"m", Properties(headers={"colour": "red"}))
    conn.get("src").reject(requeue=False)
    assert conn.get("red", auto_ack=True).body == b"m"


@pytest.mark.parametrize("trigger", ["reject", "expiry"])
def test_a_missing_dead_letter_exchange_drops_the_message_quietly(conn, frozen, trigger, sql):
    conn.declare_queue("src", arguments={"x-dead-letter-exchange": "nowhere", "x-message-ttl": 1000})
    conn.publish("", "src", b"m")
    if trigger == "reject":
        conn.get("src").reject(requeue=False)  # no error
    else:
        frozen.tick(1.1)
        assert conn.get("src") is None
    assert all_rows(sql) == 0


def test_a_dead_letter_exchange_with_nothing_bound_drops_the_message(conn, sql):
    conn.declare_exchange("empty", "fanout")
    conn.declare_queue("src", arguments={"x-dead-letter-exchange": "empty"})
    conn.publish("", "src", b"m")
    conn.get("src").nack(requeue=False)
    assert all_rows(sql) == 0


# ---------------------------------------------------------------------------------------------------------------
# Cycles
# ---------------------------------------------------------------------------------------------------------------

def test_a_message_expiring_back_into_its_own_queue_is_dropped_there_but_reaches_the_others(conn, dlx, frozen, sql):
    conn.declare_queue("loop", arguments={"x-message-ttl": 1000, "x-dead-letter-exchange": dlx})
    conn.bind_queue("loop", dlx)
    conn.publish("", "loop", b"m")
    frozen.tick(1.1)
    touch(conn)
    assert (rows(sql, "loop"), rows(sql, "dead")) == (0, 1)
    frozen.tick(1.1)
    touch(conn)
    assert deaths(conn.get("dead", auto_ack=True)) == [("loop", "expired", 1)]
    assert conn.get("dead") is None and all_rows(sql) == 0


def test_a_self_loop_through_the_default_exchange_by_expiry_is_dropped(conn, frozen, sql):
    conn.declare_queue("loop", arguments={"x-message-ttl": 1000, "x-dead-letter-exchange": ""})
    conn.publish("", "loop", b"m")  # its routing key names the queue itself
    frozen.tick(1.1)
    touch(conn)
    assert all_rows(sql) == 0


def test_an_expiry_cycle_through_two_queues_is_dropped_on_its_way_back(conn, frozen, sql):
    conn.declare_queue("first", arguments={"x-message-ttl": 1000, "x-dead-letter-exchange": "",
                                           "x-dead-letter-routing-key": "second"})
    conn.declare_queue("second", arguments={"x-message-ttl": 1000, "x-dead-letter-exchange": "",
                                            "x-dead-letter-routing-key": "first"})
    conn.publish("", "first", b"m")
    frozen.tick(1.1)
    touch(conn)
    assert (rows(sql, "first"), rows(sql, "second")) == (0, 1)
    frozen.tick(1.1)
    touch(conn)
    assert all_rows(sql) == 0


def test_a_rejection_back_into_the_same_queue_is_allowed_and_counted(conn):
    conn.declare_queue("loop", arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "loop"})
    conn.publish("", "loop", b"m")
    counts = []
    for _ in range(3):
        delivery = conn.get("loop")
        counts.append(deaths(delivery))
        delivery.reject(requeue=False)
    assert counts == [[], [("loop", "rejected", 1)], [("loop", "rejected", 2)]]
    assert deaths(conn.get("loop", auto_ack=True)) == [("loop", "rejected", 3)]


def test_the_retry_loop_of_a_rejection_and_an_expiry_goes_round_without_being_taken_for_a_cycle(conn, frozen):
    conn.declare_queue("work", arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "wait"})
    conn.declare_queue("wait", arguments={"x-message-ttl": 1000, "x-dead-letter-exchange": "",
                                          "x-dead-letter-routing-key": "work"})
    conn.publish("", "work", b"job")
    for _ in range(2):
        conn.get("work").reject(requeue=False)
        frozen.tick(1.1)
        touch(conn)
    delivery = conn.get("work", auto_ack=True)
    assert deaths(delivery) == [("wait", "expired", 2), ("work", "rejected", 2)]


def test_an_expiry_back_into_the_same_queue_is_a_cycle_even_after_a_rejection_there(conn, dlx, frozen, sql):
    conn.declare_queue("loop", arguments={"x-message-ttl": 1000, "x-dead-letter-exchange": dlx})
    conn.bind_queue("loop", dlx)
    conn.publish("", "loop", b"m")
    conn.get("loop").reject(requeue=False)  # back into loop (and into dead): a rejection may loop
    assert (rows(sql, "loop"), rows(sql, "dead")) == (1, 1)
    frozen.tick(1.1)
    touch(conn)  # expired: into dead, not into loop again
    assert (rows(sql, "loop"), rows(sql, "dead")) == (0, 2)
    second = [conn.get("dead", auto_ack=True) for _ in range(2)][1]
    assert deaths(second) == [("loop", "expired", 1), ("loop", "rejected", 1)]


# ---------------------------------------------------------------------------------------------------------------
# The queue it lands in applies its own rules
# ---------------------------------------------------------------------------------------------------------------

def test_a_dead_letter_queue_with_a_length_limit_drops_its_head(conn):
    conn.declare_queue("graveyard", arguments={"x-max-length": 1})
    conn.declare_queue("src", arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "graveyard"})
    for body in (b"1", b"2"):
        conn.publish("", "src", body)
    for _ in range(2):
        conn.get("src").reject(requeue=False)
    assert [d.body for d in iter(lambda: conn.get("graveyard", auto_ack=True), None)] == [b"2"]


def test_a_full_reject_publish_dead_letter_queue_refuses_quietly_without_failing_the_rejection(conn, sql):
    conn.declare_queue("graveyard", arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    conn.declare_queue("src", arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "graveyard"})
    for body in (b"1", b"2"):
        conn.publish("", "src", body)
    conn.get("src").reject(requeue=False)
    conn.get("src").reject(requeue=False)  # graveyard is full: the message is dropped, and no error is raised
    assert [d.body for d in iter(lambda: conn.get("graveyard", auto_ack=True), None)] == [b"1"]
    assert all_rows(sql) == 0


def test_a_dead_letter_queue_with_a_message_ttl_expires_what_lands_there(conn, frozen):
    conn.declare_queue("graveyard", arguments={"x-message-ttl": 1000})
    conn.declare_queue("src", arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "graveyard"})
    conn.publish("", "src", b"m")
    conn.get("src").reject(requeue=False)
    assert conn.declare_queue("graveyard", arguments={"x-message-ttl": 1000}).message_count == 1
    frozen.tick(1.1)
    assert conn.get("graveyard") is None


def test_a_message_dropped_from_a_full_dead_letter_queue_is_dead_lettered_on_from_there(conn):
    conn.declare_queue("final")
    conn.declare_queue("graveyard", arguments={"x-max-length": 1, "x-dead-letter-exchange": "",
                                               "x-dead-letter-routing-key": "final"})
    conn.declare_queue("src", arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "graveyard"})
    for body in (b"1", b"2"):
        conn.publish("", "src", body)
    for _ in range(2):
        conn.get("src").reject(requeue=False)
    pushed_out = conn.get("final", auto_ack=True)
    assert pushed_out.body == b"1"
    assert deaths(pushed_out) == [("graveyard", "maxlen", 1), ("src", "rejected", 1)]


# ---------------------------------------------------------------------------------------------------------------
# Through litemq.pika
# ---------------------------------------------------------------------------------------------------------------

def test_through_the_pika_facade_a_rejected_message_arrives_with_the_headers_pika_shows(db_path):
    from litemq import pika

    connection = pika.BlockingConnection(pika.URLParameters(as_url(db_path)))
    try:
        channel = connection.channel()
        channel.exchange_declare("dlx", "fanout")
        channel.queue_declare("dead")
        channel.queue_bind("dead", "dlx")
        channel.queue_declare("src", arguments={"x-dead-letter-exchange": "dlx"})
        channel.basic_publish("", "src", b"m", pika.BasicProperties(expiration="60000", headers={"app": "x"}))
        before = dt.datetime.now(UTC).replace(microsecond=0)
        method, _, _ = channel.basic_get("src")
        channel.basic_reject(method.delivery_tag, requeue=False)
        after = dt.datetime.now(UTC)
        method, properties, body = channel.basic_get("dead", auto_ack=True)
    finally:
        connection.close()
    assert (body, method.exchange, method.routing_key, method.redelivered) == (b"m", "dlx", "src", False)
    assert properties.expiration is None
    entry, = properties.headers["x-death"]
    moment = entry.pop("time")
    assert isinstance(moment, dt.datetime) and moment.tzinfo is not None and before <= moment <= after
    assert entry == {"count": 1, "reason": "rejected", "queue": "src", "exchange": "",
                     "routing-keys": ["src"], "original-expiration": "60000"}
    assert type(entry["count"]) is int
    assert properties.headers["app"] == "x"
    assert (properties.headers["x-first-death-queue"], properties.headers["x-first-death-reason"],
            properties.headers["x-first-death-exchange"]) == ("src", "rejected", "")
