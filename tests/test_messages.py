"""Messages go through the file unchanged: every property, every header value type, every kind of body.

Headers are compared exactly, type for type (``1``, ``1.0`` and ``True`` are equal in Python but not the same
header), and the stored form is checked with SQL: NULL for no properties, readable JSON for set ones.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from decimal import Decimal
from typing import Any, Mapping

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import litemq
from engines import BrokerSQL
from litemq import Properties


def exact(value: Any) -> Any:
    """A form of a header value in which equal means the same type and the same value."""
    if isinstance(value, Mapping):
        return ("dict", {key: exact(item) for key, item in value.items()})
    if isinstance(value, (list, tuple)):
        return ("list", [exact(item) for item in value])
    if isinstance(value, float):
        return ("float", repr(value))  # keeps -0.0 apart from 0.0
    if isinstance(value, Decimal):
        return ("decimal", str(value))  # keeps 1.10 apart from 1.1
    if isinstance(value, dt.datetime):
        return ("datetime", value.isoformat(), value.tzinfo)
    return (type(value).__name__, value)


def round_trip(conn: litemq.Connection, body: Any = b"body", properties: Properties | None = None,
               queue: str = "jobs") -> litemq.Delivery:
    conn.declare_queue(queue)
    assert conn.publish("", queue, body, properties) == 1
    delivery = conn.get(queue, auto_ack=True)
    assert delivery is not None
    return delivery


def stored_properties(sql: BrokerSQL) -> list[Any]:
    return [row[0] for row in sql("SELECT properties FROM litemq_messages ORDER BY id")]


def json_field(sql: BrokerSQL, path: str) -> str:
    """SQL that reads a field of the stored properties (``headers.city``) as a person would: SQLite's json_extract,
    PostgreSQL's jsonb path (a number comes back a number on both)."""
    if sql.engine == "sqlite":
        return f"json_extract(properties, '$.{path}')"
    return f"(properties::jsonb #> '{{{','.join(path.split('.'))}}}')"


def json_valid(sql: BrokerSQL, text: str) -> bool:
    """Whether the database takes the text as JSON (PostgreSQL's json type checks the syntax, and refuses with an
    error)."""
    statement = "SELECT json_valid(?)" if sql.engine == "sqlite" else "SELECT ?::json IS NOT NULL"
    return bool(sql.value(statement, (text,)))


HEADERS = {
    "text": "héllo wörld €",
    "empty": "",
    "int": 42,
    "negative": -(2 ** 63),
    "big": 2 ** 63 - 1,
    "float": 3.141592653589793,
    "tiny": 5e-324,
    "negative zero": -0.0,
    "true": True,
    "false": False,
    "none": None,
    "bytes": b"\x00\x01\xfe\xff raw",
    "empty bytes": b"",
    "naive datetime": dt.datetime(2024, 2, 29, 23, 59, 58, 123456),
    "utc datetime": dt.datetime(2024, 2, 29, 23, 59, 58, tzinfo=dt.timezone.utc),
    "offset datetime": dt.datetime(1999, 12, 31, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=-5, minutes=-30))),
    "decimal": Decimal("1234.5600"),
    "negative decimal": Decimal("-0.000001"),
    "list": [1, "two", 3.0, None, True, b"six", [7, [8]], {"nine": 9}],
    "empty list": [],
    "nested": {"a": {"b": {"c": [1, {"d": b"deep", "e": Decimal("2.50"), "f": dt.datetime(2020, 1, 1)}]}}},
    "empty dict": {},
    "x-match": "all",
    "€ key": "non-ASCII key",
    "v": {"\u0001litemq": "not a tag", "v": "looks like the stored form"},
}

ALL_PROPERTIES = Properties(
    content_type="application/json",
    content_encoding="gzip",
    headers=HEADERS,
    delivery_mode=2,
    priority=7,
    correlation_id="c0ffee-42",
    reply_to="amq.gen-abcDEF123",
    expiration="60000",
    message_id="msg-0001",
    timestamp=1_700_000_000,
    type="order.created",
    user_id="guest",
    app_id="shop",
    cluster_id="eu-1",
)


# ---------------------------------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------------------------------

def test_every_property_is_returned_unchanged(conn: litemq.Connection) -> None:
    delivery = round_trip(conn, properties=ALL_PROPERTIES)
    got = delivery.properties
    for name in ("content_type", "content_encoding", "delivery_mode", "priority", "correlation_id", "reply_to",
                 "expiration", "message_id", "timestamp", "type", "user_id", "app_id", "cluster_id"):
        assert (name, getattr(got, name)) == (name, getattr(ALL_PROPERTIES, name))
        assert type(getattr(got, name)) is type(getattr(ALL_PROPERTIES, name))
    assert exact(got.headers) == exact(HEADERS)
    assert got == ALL_PROPERTIES


def test_every_property_is_returned_unchanged_through_a_consumer_and_an_exchange(conn: litemq.Connection) -> None:
    conn.declare_queue("jobs")
    conn.bind_queue("jobs", "amq.topic", "order.*")
    assert conn.publish("amq.topic", "order.created", b"body", ALL_PROPERTIES) == 1
    with conn.consume("jobs", inactivity_timeout=5) as consumer:
        delivery = consumer.get(timeout=5)
    assert delivery is not None
    assert delivery.properties == ALL_PROPERTIES and exact(delivery.properties.headers) == exact(HEADERS)
    assert (delivery.exchange, delivery.routing_key) == ("amq.topic", "order.created")


@pytest.mark.parametrize("name, value", [
    (name, getattr(ALL_PROPERTIES, name)) for name in
    ("content_type", "content_encoding", "headers", "delivery_mode", "priority", "correlation_id", "reply_to",
     "expiration", "message_id", "timestamp", "type", "user_id", "app_id", "cluster_id")
])
def test_each_property_alone_is_returned_and_the_others_stay_unset(conn: litemq.Connection, name: str,
                                                                   value: Any) -> None:
    got = round_trip(conn, properties=Properties(**{name: value})).properties
    assert got == Properties(**{name: value})
    assert exact(getattr(got, name)) == exact(value)


def test_delivery_mode_1_and_priority_0_are_kept_not_taken_for_unset(conn: litemq.Connection) -> None:
    got = round_trip(conn, properties=Properties(delivery_mode=1, priority=0, timestamp=0)).properties
    assert (got.delivery_mode, got.priority, got.timestamp) == (1, 0, 0)


def test_no_properties_are_stored_as_null(conn: litemq.Connection, sql: BrokerSQL) -> None:
    conn.declare_queue("jobs")
    conn.publish("", "jobs", b"a")
    conn.publish("", "jobs", b"b", Properties())
    conn.publish("", "jobs", b"c", None)
    assert stored_properties(sql) == [None, None, None]
    assert sql.value("SELECT count(*) FROM litemq_messages WHERE properties IS NULL") == 3
    for _ in range(3):
        delivery = conn.get("jobs", auto_ack=True)
        assert delivery.properties == Properties()
        assert delivery.properties.headers is None


def test_set_properties_are_stored_as_readable_json(conn: litemq.Connection, sql: BrokerSQL) -> None:
    conn.declare_queue("jobs")
    conn.publish("", "jobs", b"x", Properties(content_type="text/plain", correlation_id="abc-1", priority=3,
                                              headers={"city": "Zürich", "tries": 2, "ok": True}))
    (text,) = stored_properties(sql)
    assert "Zürich" in text  # not \u-escaped
    assert json.loads(text) == {"content_type": "text/plain", "correlation_id": "abc-1", "priority": 3,
                                "headers": {"city": "Zürich", "tries": 2, "ok": True}}
    fields = ", ".join(json_field(sql, path) for path in ("correlation_id", "headers.city", "priority"))
    assert sql(f"SELECT {fields} FROM litemq_messages WHERE queue = 'jobs'") == [("abc-1", "Zürich", 3)]


def test_every_property_is_stored_as_valid_json(conn: litemq.Connection, sql: BrokerSQL) -> None:
    round_trip(conn, properties=ALL_PROPERTIES)
    conn.publish("", "jobs", b"kept", ALL_PROPERTIES)
    (text,) = stored_properties(sql)
    assert json_valid(sql, text)
    assert json.loads(text)["headers"]["text"] == "héllo wörld €"


@pytest.mark.parametrize("value", [math.inf, -math.inf])
def test_non_finite_float_headers_round_trip_and_keep_the_column_valid_json(conn: litemq.Connection,
                                                                           value: float, sql: BrokerSQL) -> None:
    # JSON has no Infinity; Python writes it anyway, and then SQLite's json functions fail on the whole column
    # ("malformed JSON"), which breaks any inspection query over litemq_messages (PostgreSQL's ::json refuses it).
    got = round_trip(conn, properties=Properties(headers={"limit": value}, correlation_id="a")).properties
    assert exact(got.headers) == exact({"limit": value})
    conn.publish("", "jobs", b"kept", Properties(headers={"limit": value}, correlation_id="a"))
    (text,) = stored_properties(sql)
    assert json_valid(sql, text)
    assert sql(f"SELECT {json_field(sql, 'correlation_id')} FROM litemq_messages") == [("a",)]


@pytest.mark.parametrize("value", [b"\x00\xff", dt.datetime(2024, 2, 29, 12, 0), Decimal("1.10"), math.nan])
def test_values_json_lacks_are_stored_as_tagged_objects_both_databases_read(conn: litemq.Connection, value: Any,
                                                                           sql: BrokerSQL) -> None:
    conn.declare_queue("jobs")
    conn.publish("", "jobs", b"kept", Properties(headers={"odd": value, "city": "Oslo"}))
    (text,) = stored_properties(sql)
    assert json_valid(sql, text)
    # PostgreSQL refuses a whole row whose JSON has "\u0000" once it is read as text: the tag has none.
    assert sql(f"SELECT {json_field(sql, 'headers.city')}, {json_field(sql, 'headers.odd')} "
               "FROM litemq_messages") != []
    delivery = conn.get("jobs", auto_ack=True)
    assert delivery is not None and exact(delivery.properties.headers) == exact({"odd": value, "city": "Oslo"})


def test_a_header_table_with_the_tag_as_a_key_comes_back_as_it_was(conn: litemq.Connection) -> None:
    lookalike = {"$litemq": "bytes", "v": "AAA="}
    headers = {"table": lookalike, "nested": [{"$litemq": "table", "v": [["a", 1]]}], "$litemq": "top"}
    got = round_trip(conn, properties=Properties(headers=headers)).properties
    assert exact(got.headers) == exact(headers)


def test_values_tagged_the_way_older_files_tagged_them_are_still_read() -> None:
    from litemq.message import decode_properties

    old = ('{"headers":{"b":{"\\u0000litemq":"bytes","v":"AP8="},"d":{"\\u0000litemq":"decimal","v":"1.10"},'
           '"t":{"\\u0000litemq":"datetime","v":"2024-02-29T12:00:00"},"f":{"\\u0000litemq":"float","v":"inf"}}}')
    assert exact(decode_properties(old).headers) == exact(
        {"b": b"\x00\xff", "d": Decimal("1.10"), "t": dt.datetime(2024, 2, 29, 12, 0), "f": math.inf})


def test_stored_properties_are_checked_as_the_constructor_checks_them_but_for_header_values() -> None:
    from litemq.message import decode_properties

    assert decode_properties('{"type": "x", "headers": {"k": [1, null]}}') == Properties(type="x",
                                                                                          headers={"k": [1, None]})
    with pytest.raises(ValueError, match="priority"):
        decode_properties('{"priority": 300}')  # a row written by hand
    with pytest.raises(TypeError, match="bogus"):
        decode_properties('{"bogus": 1}')
    with pytest.raises(TypeError, match="headers"):
        decode_properties('{"headers": [1]}')


def test_tuples_in_headers_come_back_as_lists(conn: litemq.Connection) -> None:
    got = round_trip(conn, properties=Properties(headers={"pair": (1, "b"), "nested": [(2,)]})).properties
    assert exact(got.headers) == exact({"pair": [1, "b"], "nested": [[2]]})


# ---------------------------------------------------------------------------------------------------------------
# Bodies
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.sqlite_only  # SQLite would keep a str as TEXT in the BLOB column; PostgreSQL's bytea takes only bytes
def test_a_str_body_is_stored_as_its_utf8_bytes(conn: litemq.Connection, sql: BrokerSQL) -> None:
    text = "héllo €uro 🐇 — 中文"
    delivery = round_trip(conn, body=text)
    assert delivery.body == text.encode("utf-8")
    assert type(delivery.body) is bytes
    conn.publish("", "jobs", text)
    assert sql("SELECT typeof(body), body FROM litemq_messages") == [("blob", text.encode("utf-8"))]


@pytest.mark.parametrize("body", [
    pytest.param(b"\x00\x01\x02\xff\xfe binary \x00", id="bytes"),
    pytest.param(bytearray(b"\x00mutable\xff"), id="bytearray"),
    pytest.param(memoryview(b"\x00a view\xff"), id="memoryview"),
    pytest.param(bytes(range(256)), id="every byte value"),
    pytest.param(b"\xff\xfe not utf-8 \x80", id="invalid utf-8"),
])
def test_binary_bodies_are_returned_byte_for_byte(conn: litemq.Connection, body: Any) -> None:
    delivery = round_trip(conn, body=body)
    assert delivery.body == bytes(body)
    assert type(delivery.body) is bytes


def test_a_bytearray_body_is_copied_when_published(conn: litemq.Connection) -> None:
    body = bytearray(b"original")
    conn.declare_queue("jobs")
    conn.publish("", "jobs", body)
    body[:] = b"changed!"
    assert conn.get("jobs", auto_ack=True).body == b"original"


@pytest.mark.parametrize("body", [b"", ""], ids=["bytes", "str"])
def test_an_empty_body_is_a_message(conn: litemq.Connection, body: Any) -> None:
    delivery = round_trip(conn, body=body)
    assert delivery.body == b"" and type(delivery.body) is bytes
    assert conn.get("jobs") is None


def test_a_10_mb_body_round_trips(conn: litemq.Connection) -> None:
    body = bytes(range(256)) * (10 * 1024 * 1024 // 256) + b"tail"
    assert len(body) > 10 * 1024 * 1024
    with_properties = Properties(content_type="application/octet-stream", headers={"size": len(body)})
    delivery = round_trip(conn, body=body, properties=with_properties)
    assert len(delivery.body) == len(body) and delivery.body == body
    assert delivery.properties == with_properties


# ---------------------------------------------------------------------------------------------------------------
# Any header table round-trips exactly (hypothesis)
# ---------------------------------------------------------------------------------------------------------------

keys = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40)
scalars = (
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30)
    | st.integers(min_value=-(2 ** 63), max_value=2 ** 63 - 1)
    | st.floats(allow_nan=False)
    | st.booleans()
    | st.none()
    | st.binary(max_size=30)
    | st.decimals(allow_nan=False, allow_infinity=False, places=None)
    | st.datetimes(timezones=st.none() | st.just(dt.timezone.utc))
)
values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4),
    max_leaves=12,
)
headers_tables = st.dictionaries(keys, values, max_size=6)


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(headers=headers_tables)
def test_any_header_table_round_trips_exactly(conn: litemq.Connection, headers: dict[str, Any]) -> None:
    delivery = round_trip(conn, properties=Properties(headers=headers))
    assert exact(delivery.properties.headers) == exact(headers)


@settings(max_examples=300, deadline=None)
@given(headers=headers_tables)
@example(headers={"lookalike": {"$litemq": "bytes", "v": "AAA="}, "$litemq": "top"})
@example(headers={"floats": [math.inf, -math.inf, math.nan], "when": dt.datetime(2024, 2, 29, 12, 0)})
@example(headers={"plain": ["a", 1, 2.5, True, None, {"b": []}], "text": "\u00e9t\u00e9"})
def test_any_header_table_is_stored_as_its_tagged_encoding_whichever_way_it_is_checked_and_encoded(
        headers: dict[str, Any]) -> None:
    # Headers of plain JSON types take a quicker path through the checks and the encoding than tagged values do:
    # both must store the same text.
    from litemq.message import _encode_value, encode_properties

    tagged = json.dumps({"headers": _encode_value(headers)}, separators=(",", ":"), ensure_ascii=False)
    assert encode_properties(Properties(headers=headers)) == tagged


# --- Properties and Delivery as values: immutable, compared and hashed by their fields, picklable
def test_properties_are_immutable_and_replace_makes_a_checked_copy() -> None:
    original = Properties(content_type="text/plain", priority=1)
    with pytest.raises(AttributeError, match="immutable"):
        original.priority = 2  # type: ignore[misc]
    changed = original.replace(priority=5)
    assert (changed.content_type, changed.priority, original.priority) == ("text/plain", 5, 1)
    with pytest.raises(ValueError, match="priority"):
        original.replace(priority=300)


def test_properties_compare_hash_and_pickle_by_their_fields() -> None:
    import pickle

    first, same, other = Properties(app_id="a"), Properties(app_id="a"), Properties(app_id="b")
    assert first == same and hash(first) == hash(same) and first != other
    assert pickle.loads(pickle.dumps(first)) == first
    assert "app_id='a'" in repr(first)


def test_properties_published_again_are_stored_the_same_and_pickle_after_it(conn: litemq.Connection,
                                                                            sql: BrokerSQL) -> None:
    import pickle

    persistent = Properties(delivery_mode=2, content_type="text/plain")
    conn.declare_queue("again")
    for _ in range(2):
        conn.publish("", "again", b"x", persistent)
    stored = sql("SELECT DISTINCT properties FROM litemq_messages")
    assert [json.loads(text) for (text,) in stored] == [{"content_type": "text/plain", "delivery_mode": 2}]
    assert pickle.loads(pickle.dumps(persistent)) == persistent
    assert conn.get("again", auto_ack=True).properties == persistent


def test_headers_changed_after_a_publish_are_stored_as_they_are_at_the_next(conn: litemq.Connection) -> None:
    headers = {"step": 1}
    properties = Properties(headers=headers)
    conn.declare_queue("changing")
    conn.publish("", "changing", b"first", properties)
    headers["step"] = 2  # the dict is the caller's: what a publish stores is what it holds then
    conn.publish("", "changing", b"second", properties)
    assert [conn.get("changing", auto_ack=True).properties.headers for _ in range(2)] == [{"step": 1}, {"step": 2}]


def test_deliveries_of_equal_headers_do_not_share_one_headers_dict(conn: litemq.Connection) -> None:
    conn.declare_queue("shared")
    for _ in range(2):
        conn.publish("", "shared", b"x", Properties(headers={"n": 1}, delivery_mode=2))
    first, second = conn.get("shared", auto_ack=True), conn.get("shared", auto_ack=True)
    assert first is not None and second is not None
    first.properties.headers["n"] = 99  # type: ignore[index]
    assert second.properties.headers == {"n": 1}
    assert first.properties is not second.properties


def test_a_delivery_compares_and_shows_its_message_not_its_channel(conn: litemq.Connection) -> None:
    conn.declare_queue("values")
    conn.publish("", "values", b"body")
    delivery = conn.get("values")
    assert delivery is not None
    assert "_channel" not in repr(delivery) and "body=b'body'" in repr(delivery)
    twin = litemq.Delivery(delivery.body, delivery.properties, delivery.exchange, delivery.routing_key,
                           delivery.queue, delivery.delivery_tag, delivery.redelivered, delivery.delivery_count,
                           delivery.consumer_tag, delivery.message_count)
    assert twin == delivery  # the channel it came on is not part of it
    with pytest.raises(AttributeError):
        delivery.body = b"other"  # type: ignore[misc]
    delivery.ack()
