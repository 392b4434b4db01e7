"""Bad input is refused with a clear exception, and nothing is written to the file.

Wrong types and values are refused at the API edge, before any SQL runs (checked by counting SQLite VM steps:
zero; on PostgreSQL, transactions begun: zero). Missing objects and AMQP refusals are found inside a transaction,
which writes nothing (checked by comparing every litemq table before and after, and on SQLite its count of changed
rows).
"""

from __future__ import annotations

import os
import time
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

import litemq
import litemq.store
from litemq import Properties
from conftest import counting_vm_steps
from engines import BrokerSQL, broker_exists

pytestmark = pytest.mark.no_lease_renewal

TABLES = ("litemq_exchanges", "litemq_queues", "litemq_bindings", "litemq_messages", "litemq_consumers")

LONG = "€" * 100  # 100 characters, 300 bytes of UTF-8
LONGEST = "€" * 85  # 255 bytes: the limit itself
assert len(LONG) == 100 and len(LONG.encode("utf-8")) == 300
assert len(LONGEST.encode("utf-8")) == 255


def snapshot(sql: BrokerSQL) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every litemq table that holds broker state."""
    return {table: sorted(sql(f"SELECT * FROM {table}"), key=repr) for table in TABLES}


@contextmanager
def nothing_written(conn: litemq.Connection, sql: BrokerSQL) -> Iterator[None]:
    """The block changes no row: the tables are equal before and after, and SQLite counted no change."""
    before = snapshot(sql)
    changes = conn._store._db.total_changes if sql.engine == "sqlite" else None
    yield
    if sql.engine == "sqlite":
        assert conn._store._db.total_changes == changes, "a statement changed rows (even if rolled back)"
    assert snapshot(sql) == before


@contextmanager
def counting_transactions(conn: litemq.Connection) -> Iterator[list[int]]:
    """Counts the transactions the connection begins inside the block (what any SQL on PostgreSQL runs in)."""
    store, begun = conn._store, [0]
    originals = {name: getattr(store, name) for name in ("read", "write", "write_exclusive") if hasattr(store, name)}
    own = {name: vars(store)[name] for name in originals if name in vars(store)}

    def counted(begin: Callable[..., Any]) -> Callable[..., Any]:
        def counting(*args: Any, **kwargs: Any) -> Any:
            begun[0] += 1
            return begin(*args, **kwargs)
        return counting

    for name, begin in originals.items():
        setattr(store, name, counted(begin))
    try:
        yield begun
    finally:
        for name in originals:
            if name in own:
                setattr(store, name, own[name])
            else:
                delattr(store, name)


@contextmanager
def refused_before_any_sql(conn: litemq.Connection, sql: BrokerSQL) -> Iterator[None]:
    """The block runs not one SQLite VM instruction on the connection (on PostgreSQL: begins no transaction):
    refused at the API edge."""
    before = snapshot(sql)
    counted, what = (counting_vm_steps, "SQLite VM steps") if sql.engine == "sqlite" else \
        (counting_transactions, "transactions")
    with counted(conn) as steps:
        yield
    assert steps[0] == 0, f"{steps[0]} {what} ran before the input was refused"
    assert snapshot(sql) == before


@pytest.fixture
def world(conn: litemq.Connection) -> litemq.Connection:
    """A file with some state to protect: exchange 'logs' bound to queue 'jobs', which holds one message."""
    conn.declare_exchange("logs", "direct")
    conn.declare_queue("jobs")
    conn.bind_queue("jobs", "logs", "info")
    assert conn.publish("logs", "info", b"first") == 1
    return conn


Call = Callable[[litemq.Connection], Any]


def case(id: str, call: Call, error: type[BaseException], match: str) -> Any:
    return pytest.param(call, error, match, id=id)


# ---------------------------------------------------------------------------------------------------------------
# Wrong types: TypeError (or ValueError) before any SQL
# ---------------------------------------------------------------------------------------------------------------

WRONG_TYPES = [
    case("queue name int: declare_queue", lambda c: c.declare_queue(1), TypeError, "queue name must be str, not int"),
    case("queue name int: get", lambda c: c.get(1), TypeError, "queue name must be str"),
    case("queue name int: consume", lambda c: c.consume(1), TypeError, "queue name must be str"),
    case("queue name int: purge_queue", lambda c: c.purge_queue(1), TypeError, "queue name must be str"),
    case("queue name int: delete_queue", lambda c: c.delete_queue(1), TypeError, "queue name must be str"),
    case("queue name int: bind_queue", lambda c: c.bind_queue(1, "logs", "info"), TypeError,
         "queue name must be str"),
    case("queue name int: publish to default exchange", lambda c: c.publish("", 1, b"x"), TypeError,
         "routing key must be str"),
    case("exchange None: declare_exchange", lambda c: c.declare_exchange(None), TypeError,
         "exchange name must be str, not NoneType"),
    case("exchange None: publish", lambda c: c.publish(None, "info", b"x"), TypeError, "exchange name must be str"),
    case("exchange None: bind_queue", lambda c: c.bind_queue("jobs", None, "info"), TypeError,
         "exchange name must be str"),
    case("exchange None: delete_exchange", lambda c: c.delete_exchange(None), TypeError,
         "exchange name must be str"),
    case("exchange type int", lambda c: c.declare_exchange("x", 5), TypeError, "exchange type must be str"),
    case("routing key bytes: publish", lambda c: c.publish("logs", b"info", b"x"), TypeError,
         "routing key must be str, not bytes"),
    case("routing key bytes: publish to default exchange", lambda c: c.publish("", b"jobs", b"x"), TypeError,
         "routing key must be str"),
    case("routing key bytes: bind_queue", lambda c: c.bind_queue("jobs", "logs", b"info"), TypeError,
         "routing key must be str"),
    case("body int", lambda c: c.publish("", "jobs", 42), TypeError, "body must be bytes or str, not int"),
    case("body dict", lambda c: c.publish("", "jobs", {"a": 1}), TypeError, "body must be bytes or str, not dict"),
    case("body None", lambda c: c.publish("", "jobs", None), TypeError, "body must be bytes or str"),
    case("properties dict", lambda c: c.publish("", "jobs", b"x", {"content_type": "text/plain"}), TypeError,
         "properties must be litemq.Properties, not dict"),
    case("arguments list", lambda c: c.declare_queue("q2", arguments=[("x-lease-ms", 5)]), TypeError,
         "arguments must be a dict"),
    case("lease argument negative", lambda c: c.declare_queue("q2", arguments={"x-lease-ms": -5}),
         litemq.PreconditionFailed, "invalid arg 'x-lease-ms' for queue 'q2' in .*: must be at least 1"),
    case("prefetch negative", lambda c: c.consume("jobs", prefetch=-1), ValueError, "prefetch must be an int"),
    case("prefetch bool", lambda c: c.consume("jobs", prefetch=True), (TypeError, ValueError),
         "prefetch must be an int"),
    case("prefetch str", lambda c: c.consume("jobs", prefetch="5"), (TypeError, ValueError), "prefetch"),
    case("prefetch above 65535", lambda c: c.consume("jobs", prefetch=65536), ValueError, "prefetch"),
    case("consumer tag int", lambda c: c.consume("jobs", consumer_tag=7), TypeError, "consumer tag must be str"),
    case("body str UTF-8 cannot encode", lambda c: c.publish("", "jobs", "a\ud800"), ValueError,
         "message body is a str that UTF-8 cannot encode"),
]

NAN, INF = float("nan"), float("inf")
BAD_SECONDS = [
    # A lease or a delay that never ends would keep its message forever; NaN compares false with everything.
    case("lease nan: get", lambda c: c.get("jobs", lease_seconds=NAN), ValueError, "lease_seconds must be a positive"),
    case("lease inf: consume", lambda c: c.consume("jobs", lease_seconds=INF), ValueError,
         r"lease_seconds.*\(finite\)"),
    case("delay nan", lambda c: c.publish("", "jobs", b"x", delay=NAN), ValueError, "delay must be a number"),
    case("delay inf", lambda c: c.publish("", "jobs", b"x", delay=INF), ValueError, r"delay.*\(finite\)"),
    case("delay inf: publish_many", lambda c: c.publish_many("", "jobs", [b"x"], delay=INF), ValueError, "delay"),
    case("inactivity nan", lambda c: c.consume("jobs", inactivity_timeout=NAN), ValueError, "inactivity_timeout"),
    case("inactivity str", lambda c: c.consume("jobs", inactivity_timeout="1"), ValueError, "inactivity_timeout"),
]


@pytest.mark.parametrize("call, error, match", BAD_SECONDS)
def test_durations_that_are_nan_negative_or_never_ending_are_refused_before_any_sql(
        world: litemq.Connection, call: Call, error: Any, match: str, sql: BrokerSQL) -> None:
    with refused_before_any_sql(world, sql), pytest.raises(error, match=match):
        call(world)


@pytest.mark.parametrize("timeout", [NAN, -1, "1"])
def test_a_consumer_refuses_a_bad_timeout_and_takes_none_as_forever(world: litemq.Connection,
                                                                     timeout: Any, sql: BrokerSQL) -> None:
    consumer = world.consume("jobs", inactivity_timeout=INF)  # infinite: wait as long as it takes
    with refused_before_any_sql(world, sql), pytest.raises(ValueError, match="timeout must be a number of seconds"):
        consumer.get(timeout)
    assert consumer.get(INF) is not None  # the message 'jobs' holds


@pytest.mark.parametrize("call, error, match", WRONG_TYPES)
def test_wrong_types_are_refused_before_any_sql(world: litemq.Connection, call: Call, error: Any,
                                                match: str, sql: BrokerSQL) -> None:
    with refused_before_any_sql(world, sql), pytest.raises(error, match=match):
        call(world)


def test_a_delivery_tag_that_is_not_an_int_is_refused_and_the_delivery_stays_unacked(
        conn: litemq.Connection, sql: BrokerSQL) -> None:
    conn.declare_queue("jobs")
    conn.publish("", "jobs", b"work")
    delivery = conn.get("jobs")
    assert delivery is not None
    for tag in (str(delivery.delivery_tag), float(delivery.delivery_tag), True):
        with refused_before_any_sql(conn, sql), pytest.raises(TypeError, match="delivery_tag must be an int"):
            conn.ack(tag)
        with refused_before_any_sql(conn, sql), pytest.raises(TypeError, match="delivery_tag must be an int"):
            conn.nack(tag)
    leased = sql.value("SELECT count(*) FROM litemq_messages WHERE lease_token IS NOT NULL")
    assert leased == 1
    conn.ack(delivery.delivery_tag)  # the right tag still settles it
    assert sql.value("SELECT count(*) FROM litemq_messages") == 0


def test_a_bad_lease_is_refused_before_the_queue_is_looked_up(world: litemq.Connection, sql: BrokerSQL) -> None:
    # DESIGN section 5: wrong types and values raise at the API edge, before any SQL.
    with refused_before_any_sql(world, sql), pytest.raises(ValueError, match="lease_seconds"):
        world.get("jobs", lease_seconds=-1)
    with refused_before_any_sql(world, sql), pytest.raises(ValueError, match="lease_seconds"):
        world.consume("jobs", lease_seconds=0)


def test_a_bad_lease_is_refused_and_nothing_is_written(world: litemq.Connection, sql: BrokerSQL) -> None:
    with nothing_written(world, sql), pytest.raises(ValueError, match="lease_seconds must be a positive number"):
        world.get("jobs", lease_seconds=-1)
    with nothing_written(world, sql), pytest.raises(ValueError, match="lease_seconds must be a positive number"):
        world.consume("jobs", lease_seconds=True)
    assert world.declare_queue("jobs", passive=True).consumer_count == 0


# ---------------------------------------------------------------------------------------------------------------
# Names and keys: at most 255 bytes of UTF-8, no NUL
# ---------------------------------------------------------------------------------------------------------------

TOO_LONG = [
    case("queue name: declare_queue", lambda c: c.declare_queue(LONG), ValueError, "queue name"),
    case("queue name: get", lambda c: c.get(LONG), ValueError, "queue name"),
    case("queue name: bind_queue", lambda c: c.bind_queue(LONG, "logs", "info"), ValueError, "queue name"),
    case("exchange name: declare_exchange", lambda c: c.declare_exchange(LONG, "direct"), ValueError,
         "exchange name"),
    case("exchange name: publish", lambda c: c.publish(LONG, "info", b"x"), ValueError, "exchange name"),
    case("routing key: publish", lambda c: c.publish("logs", LONG, b"x"), ValueError, "routing key"),
    case("routing key: publish to default exchange", lambda c: c.publish("", LONG, b"x"), ValueError,
         "routing key"),
    case("binding key: bind_queue", lambda c: c.bind_queue("jobs", "logs", LONG), ValueError, "routing key"),
    case("consumer tag", lambda c: c.consume("jobs", consumer_tag=LONG), ValueError, "consumer tag"),
]


@pytest.mark.parametrize("call, error, match", TOO_LONG)
def test_names_and_keys_over_255_bytes_are_refused_naming_the_limit(world: litemq.Connection, call: Call,
                                                                    error: Any, match: str, sql: BrokerSQL) -> None:
    with refused_before_any_sql(world, sql), pytest.raises(error, match=match) as raised:
        call(world)
    assert "300 bytes" in str(raised.value) and "the limit is 255" in str(raised.value)


def test_names_and_keys_of_exactly_255_bytes_are_accepted(conn: litemq.Connection) -> None:
    conn.declare_exchange(LONGEST, "direct")
    conn.declare_queue(LONGEST)
    conn.bind_queue(LONGEST, LONGEST, LONGEST)
    assert conn.publish(LONGEST, LONGEST, b"x") == 1
    delivery = conn.get(LONGEST)
    assert delivery is not None
    assert (delivery.exchange, delivery.routing_key, delivery.queue) == (LONGEST, LONGEST, LONGEST)


WITH_NUL = [
    case("queue name", lambda c: c.declare_queue("jo\x00bs"), ValueError, "queue name .* contains a NUL"),
    case("queue name: get", lambda c: c.get("jobs\x00"), ValueError, "NUL"),
    case("exchange name", lambda c: c.declare_exchange("lo\x00gs", "direct"), ValueError,
         "exchange name .* contains a NUL"),
    case("exchange name: publish", lambda c: c.publish("logs\x00", "info", b"x"), ValueError, "NUL"),
    case("routing key: publish", lambda c: c.publish("logs", "in\x00fo", b"x"), ValueError,
         "routing key .* contains a NUL"),
    case("binding key", lambda c: c.bind_queue("jobs", "logs", "\x00"), ValueError, "NUL"),
    case("consumer tag", lambda c: c.consume("jobs", consumer_tag="t\x00"), ValueError, "NUL"),
    case("queue name not UTF-8 (lone surrogate)", lambda c: c.declare_queue("jobs\ud800"), ValueError,
         "not valid UTF-8"),
    case("routing key not UTF-8 (lone surrogate)", lambda c: c.publish("logs", "\udcff", b"x"), ValueError,
         "not valid UTF-8"),
]


@pytest.mark.parametrize("call, error, match", WITH_NUL)
def test_names_and_keys_with_nul_are_refused(
        world: litemq.Connection, call: Call, error: Any, match: str, sql: BrokerSQL) -> None:
    with refused_before_any_sql(world, sql), pytest.raises(error, match=match):
        call(world)


# ---------------------------------------------------------------------------------------------------------------
# The empty name: the default exchange is the broker's; '' is a valid key; a queue named '' gets a server name
# ---------------------------------------------------------------------------------------------------------------

def test_declaring_the_default_exchange_is_access_refused(world: litemq.Connection, sql: BrokerSQL) -> None:
    for exchange_type in ("direct", "fanout"):
        with nothing_written(world, sql), pytest.raises(litemq.AccessRefused, match="default exchange") as raised:
            world.declare_exchange("", exchange_type)
        assert raised.value.reply_code == 403


def test_passively_declaring_the_default_exchange_is_access_refused_as_in_rabbitmq(
        world: litemq.Connection, sql: BrokerSQL) -> None:
    for exchange_type in ("direct", "topic"):
        with nothing_written(world, sql), pytest.raises(litemq.AccessRefused, match="default exchange") as raised:
            world.declare_exchange("", exchange_type, passive=True)
        assert raised.value.reply_code == 403 and world.path in str(raised.value)


def test_deleting_the_default_exchange_is_access_refused(world: litemq.Connection, sql: BrokerSQL) -> None:
    with nothing_written(world, sql), pytest.raises(litemq.AccessRefused):
        world.delete_exchange("")


BIND_DEFAULT = [
    case("bind_queue", lambda c: c.bind_queue("jobs", "", "jobs"), litemq.AccessRefused, "default exchange"),
    case("unbind_queue", lambda c: c.unbind_queue("jobs", "", "jobs"), litemq.AccessRefused, "default exchange"),
    case("bind_exchange from ''", lambda c: c.bind_exchange("logs", "", "info"), litemq.AccessRefused,
         "default exchange"),
    case("bind_exchange to ''", lambda c: c.bind_exchange("", "logs", "info"), litemq.AccessRefused,
         "default exchange"),
]


@pytest.mark.parametrize("call, error, match", BIND_DEFAULT)
def test_binding_to_the_default_exchange_is_access_refused(world: litemq.Connection, call: Call, error: Any,
                                                           match: str, sql: BrokerSQL) -> None:
    with nothing_written(world, sql), pytest.raises(error, match=match):
        call(world)


def test_the_empty_routing_key_and_binding_key_are_valid(world: litemq.Connection) -> None:
    world.bind_queue("jobs", "amq.direct", "")
    assert world.publish("amq.direct", "", b"to the empty key") == 1
    assert world.publish("amq.direct", "other", b"not routed") == 0
    assert world.get("jobs", auto_ack=True).body == b"first"
    delivery = world.get("jobs", auto_ack=True)
    assert (delivery.body, delivery.exchange, delivery.routing_key) == (b"to the empty key", "amq.direct", "")
    assert world.get("jobs") is None


def test_declaring_queue_empty_name_creates_a_server_named_queue(conn: litemq.Connection) -> None:
    first = conn.declare_queue("")
    second = conn.declare_queue("")
    assert first.queue.startswith("amq.gen-") and second.queue.startswith("amq.gen-")
    assert first.queue != second.queue
    assert conn.declare_queue(first.queue, passive=True).queue == first.queue
    assert conn.publish("", first.queue, b"reply") == 1
    assert conn.get(first.queue).body == b"reply"


# ---------------------------------------------------------------------------------------------------------------
# Exchange types and headers bindings
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("exchange_type", ["fan-out", "Direct", "x-consistent-hash", ""])
def test_an_unknown_exchange_type_is_a_value_error(
        world: litemq.Connection, exchange_type: str, sql: BrokerSQL) -> None:
    with refused_before_any_sql(world, sql), pytest.raises(ValueError, match="unknown exchange type") as raised:
        world.declare_exchange("events", exchange_type)
    assert repr(exchange_type) in str(raised.value)


@pytest.mark.parametrize("x_match", ["some", "ALL", "", 1, None])
def test_an_invalid_x_match_on_a_headers_binding_is_precondition_failed(world: litemq.Connection,
                                                                        x_match: Any, sql: BrokerSQL) -> None:
    world.declare_exchange("by-header", "headers")
    for exchange in ("by-header", "amq.headers"):
        with nothing_written(world, sql), pytest.raises(litemq.PreconditionFailed, match="x-match") as raised:
            world.bind_queue("jobs", exchange, "", arguments={"x-match": x_match, "format": "pdf"})
        assert raised.value.reply_code == 406
        assert exchange in str(raised.value)


# ---------------------------------------------------------------------------------------------------------------
# Missing objects: 404, naming the object and the file
# ---------------------------------------------------------------------------------------------------------------

EXCHANGE_404 = "exchange 'nowhere' not found in "
QUEUE_404 = "queue 'nowhere' not found in "

MISSING_EXCHANGE = [
    case("publish", lambda c: c.publish("nowhere", "info", b"x"), litemq.ExchangeNotFound, EXCHANGE_404),
    case("bind_queue", lambda c: c.bind_queue("jobs", "nowhere", "info"), litemq.ExchangeNotFound, EXCHANGE_404),
    case("passive declare", lambda c: c.declare_exchange("nowhere", passive=True), litemq.ExchangeNotFound,
         EXCHANGE_404),
    case("bind_exchange source", lambda c: c.bind_exchange("logs", "nowhere", "info"), litemq.ExchangeNotFound,
         EXCHANGE_404),
    case("bind_exchange destination", lambda c: c.bind_exchange("nowhere", "logs", "info"),
         litemq.ExchangeNotFound, EXCHANGE_404),
]


@pytest.mark.parametrize("call, error, match", MISSING_EXCHANGE)
def test_a_missing_exchange_is_exchange_not_found_naming_it_and_the_file(world: litemq.Connection, db_path: str,
                                                                         call: Call, error: Any,
                                                                         match: str, sql: BrokerSQL) -> None:
    with nothing_written(world, sql), pytest.raises(error, match=match) as raised:
        call(world)
    assert isinstance(raised.value, litemq.NotFound) and raised.value.reply_code == 404
    assert "'nowhere'" in str(raised.value) and db_path in str(raised.value)


MISSING_QUEUE = [
    case("get", lambda c: c.get("nowhere"), litemq.QueueNotFound, QUEUE_404),
    case("get auto_ack", lambda c: c.get("nowhere", auto_ack=True), litemq.QueueNotFound, QUEUE_404),
    case("consume", lambda c: c.consume("nowhere"), litemq.QueueNotFound, QUEUE_404),
    case("purge", lambda c: c.purge_queue("nowhere"), litemq.QueueNotFound, QUEUE_404),
    case("bind_queue", lambda c: c.bind_queue("nowhere", "logs", "info"), litemq.QueueNotFound, QUEUE_404),
    case("passive declare", lambda c: c.declare_queue("nowhere", passive=True), litemq.QueueNotFound, QUEUE_404),
]


@pytest.mark.parametrize("call, error, match", MISSING_QUEUE)
def test_a_missing_queue_is_queue_not_found_naming_it_and_the_file(world: litemq.Connection, db_path: str,
                                                                   call: Call, error: Any, match: str,
                                                                   sql: BrokerSQL) -> None:
    with nothing_written(world, sql), pytest.raises(error, match=match) as raised:
        call(world)
    assert isinstance(raised.value, litemq.NotFound) and raised.value.reply_code == 404
    assert "'nowhere'" in str(raised.value) and db_path in str(raised.value)


def test_publishing_to_a_missing_queue_through_the_default_exchange_drops_the_message(
        world: litemq.Connection, sql: BrokerSQL) -> None:
    # RabbitMQ drops an unroutable message (without mandatory); it is not an error.
    with nothing_written(world, sql):
        assert world.publish("", "nowhere", b"lost") == 0


# ---------------------------------------------------------------------------------------------------------------
# Properties with bad values: refused when the Properties is made, so nothing can be published with them
# ---------------------------------------------------------------------------------------------------------------

def nested(leaf: Any, levels: int) -> Any:
    """``leaf`` inside ``levels`` tables (or lists, for a list leaf), built without recursion."""
    for _ in range(levels):
        leaf = [leaf] if isinstance(leaf, list) else {"k": leaf}
    return leaf


BAD_PROPERTIES = [
    pytest.param({"delivery_mode": 3}, ValueError, "delivery_mode must be 1 or 2", id="delivery_mode 3"),
    pytest.param({"delivery_mode": 0}, ValueError, "delivery_mode must be 1 or 2", id="delivery_mode 0"),
    pytest.param({"delivery_mode": True}, TypeError, "delivery_mode must be an int", id="delivery_mode bool"),
    pytest.param({"delivery_mode": "2"}, TypeError, "delivery_mode must be an int", id="delivery_mode str"),
    pytest.param({"priority": 256}, ValueError, "priority must be from 0 to 255", id="priority 256"),
    pytest.param({"priority": -1}, ValueError, "priority must be from 0 to 255", id="priority -1"),
    pytest.param({"priority": 1.0}, TypeError, "priority must be an int", id="priority float"),
    pytest.param({"expiration": "abc"}, ValueError, "expiration must be a string of milliseconds",
                 id="expiration abc"),
    pytest.param({"expiration": "-5"}, ValueError, "expiration", id="expiration negative"),
    pytest.param({"expiration": "1.5"}, ValueError, "expiration", id="expiration fraction"),
    pytest.param({"expiration": ""}, ValueError, "expiration", id="expiration empty"),
    pytest.param({"expiration": 60000}, TypeError, "expiration must be str", id="expiration int"),
    pytest.param({"timestamp": "2024-01-01"}, TypeError, "timestamp must be an int", id="timestamp str"),
    pytest.param({"timestamp": 1.5}, TypeError, "timestamp must be an int", id="timestamp float"),
    pytest.param({"headers": {1: "a"}}, TypeError, "headers keys must be str", id="header key int"),
    pytest.param({"headers": {"a": {2: "b"}}}, TypeError, "keys must be str", id="nested header key int"),
    pytest.param({"headers": {"k\x00": 1}}, ValueError, "NUL", id="header key NUL"),
    pytest.param({"headers": {LONG: 1}}, ValueError, "255 bytes", id="header key over 255 bytes"),
    pytest.param({"headers": {"k": object()}}, TypeError, "unsupported header value type", id="header value object"),
    pytest.param({"headers": {"k": [1, {2, 3}]}}, TypeError, "unsupported header value type", id="header value set"),
    pytest.param({"headers": "k=v"}, TypeError, "headers must be a dict", id="headers str"),
    pytest.param({"content_type": 5}, TypeError, "content_type must be str", id="content_type int"),
    pytest.param({"correlation_id": b"abc"}, TypeError, "correlation_id must be str", id="correlation_id bytes"),
    pytest.param({"reply_to": LONG}, ValueError, "reply_to is longer than 255 bytes", id="reply_to over 255 bytes"),
    # A lone surrogate: UTF-8 cannot carry it (pika raises this same UnicodeEncodeError at basic_publish).
    pytest.param({"correlation_id": "a\ud800"}, UnicodeEncodeError, "surrogates not allowed in property correlation_id",
                 id="correlation_id lone surrogate"),
    pytest.param({"app_id": "\udfff"}, UnicodeEncodeError, "in property app_id", id="app_id lone surrogate"),
    pytest.param({"headers": {"k\ud800": 1}}, UnicodeEncodeError, r"in headers key 'k\\ud800'",
                 id="header key lone surrogate"),
    pytest.param({"headers": {"k": "x\udc00"}}, UnicodeEncodeError, r"in headers\['k'\]", id="header value lone surrogate"),
    pytest.param({"headers": {"k": [{"deep": ["\ud800"]}]}}, UnicodeEncodeError,
                 r"in headers\['k'\]\[0\]\['deep'\]\[0\]", id="nested header value lone surrogate"),
    pytest.param({"headers": nested({}, 100)}, ValueError, "headers nest deeper than 100 levels",
                 id="headers 101 levels deep"),
    pytest.param({"headers": nested({}, 480)}, ValueError, "nest deeper than 100", id="headers 481 levels deep"),
    pytest.param({"headers": nested({}, 5000)}, ValueError, "nest deeper than 100", id="headers 5001 levels deep"),
    pytest.param({"headers": {"k": nested([], 100)}}, ValueError, "nest deeper than 100", id="lists 101 levels deep"),
]


@pytest.mark.parametrize("fields, error, match", BAD_PROPERTIES)
def test_properties_with_bad_values_are_refused(fields: dict[str, Any], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        Properties(**fields)


@pytest.mark.parametrize("expiration", ["\u00b2", "6\u00b9", "\u0663\u0660", "\uff15\uff10"],
                         ids=["superscript two", "6 superscript one", "arabic-indic 30", "fullwidth 50"])
def test_an_expiration_of_non_ascii_digits_is_refused(expiration: str) -> None:
    # AMQP's expiration is a decimal number of milliseconds in ASCII; str.isdigit() also accepts superscripts
    # and other scripts' digits, some of which int() cannot even parse (int("\u00b2") is a ValueError).
    with pytest.raises(ValueError, match="expiration"):
        Properties(expiration=expiration)


def test_headers_100_levels_deep_are_stored_and_delivered(conn: litemq.Connection) -> None:
    headers = nested({"leaf": "x"}, 99)
    conn.declare_queue("deep")
    conn.publish("", "deep", b"m", Properties(headers=headers))
    assert conn.get("deep", auto_ack=True).properties.headers == headers


def test_a_cyclic_header_table_is_refused_not_a_recursion_error() -> None:
    table: dict[str, Any] = {}
    table["self"] = table
    with pytest.raises(ValueError, match="nest deeper than 100"):
        Properties(headers=table)


# ---------------------------------------------------------------------------------------------------------------
# The x-delay header: the rules of delay=, checked at publish before anything is written
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("x_delay", [INF, NAN, 10 ** 400], ids=["inf", "nan", "10**400"])
def test_an_x_delay_that_never_falls_due_is_refused_and_nothing_is_stored(conn: litemq.Connection,
                                                                       x_delay: Any, sql: BrokerSQL) -> None:
    conn.declare_exchange("later", "x-delayed-message", arguments={"x-delayed-type": "direct"})
    conn.declare_queue("jobs")
    conn.bind_queue("jobs", "later", "k")
    with nothing_written(conn, sql), pytest.raises(ValueError, match="header x-delay must be a finite number"):
        conn.publish("later", "k", b"never", Properties(headers={"x-delay": x_delay}))


def test_an_x_delay_on_an_ordinary_exchange_is_only_a_header(conn: litemq.Connection) -> None:
    conn.declare_queue("jobs")
    conn.publish("", "jobs", b"now", Properties(headers={"x-delay": INF}))
    assert conn.get("jobs", auto_ack=True).body == b"now"


# ---------------------------------------------------------------------------------------------------------------
# Message size
# ---------------------------------------------------------------------------------------------------------------

@pytest.fixture
def small(db_path: str) -> Iterator[litemq.Connection]:
    connection = litemq.connect(db_path, max_message_bytes=1000)
    connection.declare_exchange("all", "fanout")
    for queue in ("a", "b"):
        connection.declare_queue(queue)
        connection.bind_queue(queue, "all")
    yield connection
    connection.close()


def test_a_body_over_the_maximum_is_message_too_large_and_nothing_is_stored(
        small: litemq.Connection, sql: BrokerSQL) -> None:
    for exchange, key in (("", "a"), ("all", "")):
        with refused_before_any_sql(small, sql), pytest.raises(litemq.MessageTooLarge) as raised:
            small.publish(exchange, key, b"x" * 1001)
        assert "1001 bytes" in str(raised.value) and "maximum of 1000 bytes" in str(raised.value)
    assert sql.value("SELECT count(*) FROM litemq_messages") == 0
    assert small.declare_queue("a", passive=True).message_count == 0


def test_the_maximum_applies_to_the_encoded_size_of_a_str_body(small: litemq.Connection, sql: BrokerSQL) -> None:
    body = "€" * 334  # 334 characters, 1002 bytes
    with refused_before_any_sql(small, sql), pytest.raises(litemq.MessageTooLarge, match="1002 bytes"):
        small.publish("", "a", body)


def test_headers_over_the_maximum_are_message_too_large_and_nothing_is_stored(
        small: litemq.Connection, sql: BrokerSQL) -> None:
    properties = Properties(headers={"big": "h" * 1000})
    with nothing_written(small, sql), pytest.raises(litemq.MessageTooLarge, match=r"properties of 10\d\d bytes"):
        small.publish("all", "", b"x", properties)
    small.publish("all", "", b"x", Properties(headers={"small": "h" * 900}))


def test_a_body_of_exactly_the_maximum_is_stored(small: litemq.Connection) -> None:
    assert small.publish("all", "", b"y" * 1000) == 2
    assert small.get("b", auto_ack=True).body == b"y" * 1000


# ---------------------------------------------------------------------------------------------------------------
# What connect opens: files only
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("url, match", [
    ("amqp://localhost", "litemq opens SQLite files"),
    ("amqp://guest:guest@localhost:5672/%2F", "litemq opens SQLite files"),
    (":memory:", "not an in-memory database"),
    ("sqlite:///:memory:", "not an in-memory database"),
    ("", "not an in-memory database"),
])
def test_connect_refuses_what_is_not_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str,
                                            match: str) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=re.escape(match)):
        litemq.connect(url)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("url", ["postgresql://localhost/db",
                                 "postgresql+psycopg://app@db.internal:5433/app?schema=jobs"])
def test_a_postgresql_url_names_a_server_and_is_never_taken_for_a_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.chdir(tmp_path)
    assert litemq.store.locate(url) == url
    with pytest.raises(ValueError, match="litemq opens SQLite files"):
        litemq.store.resolve_path(url)  # what the file-only tools (the litemq command) accept
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("options, error, match", [
    ({"max_message_bytes": 0}, ValueError, "max_message_bytes must be a positive int"),
    ({"max_message_bytes": 1.5}, ValueError, "max_message_bytes"),
    ({"max_message_bytes": 2 ** 40}, ValueError, "up to 1,000,000,000 .the most SQLite stores in one value"),
    ({"lease_seconds": -1}, ValueError, "lease_seconds must be a positive number"),
    ({"lease_seconds": True}, ValueError, "lease_seconds"),
    ({"lease_seconds": float("nan")}, ValueError, "lease_seconds"),
    ({"consumer_timeout": float("nan")}, ValueError, "consumer_timeout must be a positive number"),
    ({"consumer_timeout": 0}, ValueError, "consumer_timeout"),
    # SQLite's busy handler would take each of these as "do not wait"
    ({"busy_timeout": -1}, ValueError, "busy_timeout must be a number of seconds, 0 or more"),
    ({"busy_timeout": float("nan")}, ValueError, "busy_timeout"),
    ({"busy_timeout": float("inf")}, ValueError, r"busy_timeout.*\(finite\)"),
    ({"busy_timeout": 1e7}, ValueError, "busy_timeout must be at most 2,147,483 seconds"),
    ({"busy_timeout": "60"}, ValueError, "busy_timeout"),
])
def test_connect_refuses_bad_settings_without_creating_the_file(db_path: str, options: dict[str, Any],
                                                                error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        litemq.connect(db_path, **options)
    assert not broker_exists(db_path)


def test_an_infinite_consumer_timeout_leaves_lease_renewal_uncapped(db_path: str) -> None:
    with litemq.connect(db_path, consumer_timeout=float("inf"), renew_leases=False) as conn:
        conn.declare_queue("jobs")
        conn.publish("", "jobs", b"long job")
        delivery = conn.get("jobs", lease_seconds=5)
        conn._session.renew()
        (held,) = conn._session.held()
        assert held.expires_at - time.time() == pytest.approx(5, abs=1)
        delivery.ack()


def test_connect_refuses_a_path_of_the_wrong_type(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TypeError, match="path or an sqlite:/// URL"):
        litemq.connect(42)
    assert os.listdir(tmp_path) == []
