"""The pure routing rules of litemq.routing, checked against RabbitMQ's documented and observed behaviour."""

from __future__ import annotations

import decimal
import struct
from typing import Any, Iterable, Mapping, Optional

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from litemq.routing import (
    Binding,
    BindingIndex,
    binding_matches,
    check_exchange_type,
    check_name,
    headers_match,
    route,
    topic_matches,
    topic_words,
    x_match,
)
from services import rabbitmq_channel, unique_name  # noqa: F401  (rabbitmq_channel is a fixture)

# ---------------------------------------------------------------------------------------------------------------
# Topic matching: RabbitMQ's routing_SUITE "topic1" table
# ---------------------------------------------------------------------------------------------------------------

TOPIC_BINDINGS = {
    "t1": "a.b.c",
    "t2": "a.*.c",
    "t3": "a.#.b",
    "t4": "a.b.b.c",
    "t5": "#",
    "t6": "#.#",
    "t7": "#.b",
    "t8": "*.*",
    "t9": "a.*",
    "t10": "*.b.c",
    "t11": "a.#",
    "t12": "a.#.#",
    "t13": "b.b.c",
    "t14": "a.b.b",
    "t15": "a.b",
    "t16": "b.c",
    "t17": "",
    "t18": "*.*.*",
    "t19": "vodka.martini",
    "t20": "a.b.c",
    "t21": "*.#",
    "t22": "#.*.#",
    "t23": "*.#.#",
    "t24": "#.#.#",
    "t25": "*",
    "t26": "#.b.#",
}

TOPIC_EXPECTED = {
    "a.b.c": "t1 t2 t5 t6 t10 t11 t12 t18 t20 t21 t22 t23 t24 t26",
    "a.b": "t3 t5 t6 t7 t8 t9 t11 t12 t15 t21 t22 t23 t24 t26",
    "a.b.b": "t3 t5 t6 t7 t11 t12 t14 t18 t21 t22 t23 t24 t26",
    "": "t5 t6 t17 t24",
    "b.c.c": "t5 t6 t18 t21 t22 t23 t24 t26",
    "a.a.a.a.a": "t5 t6 t11 t12 t21 t22 t23 t24",
    "vodka.gin": "t5 t6 t8 t21 t22 t23 t24",
    "b.b.c": "t5 t6 t10 t13 t18 t21 t22 t23 t24 t26",
    "oneword": "t5 t6 t21 t22 t23 t24 t25",
    "nothing.here.at.all": "t5 t6 t21 t22 t23 t24",
}


def matching_bindings(routing_key: str, bindings: Mapping[str, str] = TOPIC_BINDINGS) -> set[str]:
    return {name for name, pattern in bindings.items() if topic_matches(pattern, routing_key)}


@pytest.mark.parametrize("routing_key", list(TOPIC_EXPECTED), ids=lambda key: repr(key))
def test_topic_table_routing_key_reaches_exactly_the_expected_bindings(routing_key: str) -> None:
    assert matching_bindings(routing_key) == set(TOPIC_EXPECTED[routing_key].split())


# ---------------------------------------------------------------------------------------------------------------
# Topic matching: the documented word rules
# ---------------------------------------------------------------------------------------------------------------


def test_empty_routing_key_is_zero_words() -> None:
    assert topic_words("") == ()
    assert topic_words("a") == ("a",)


def test_hash_matches_the_empty_routing_key() -> None:
    assert topic_matches("#", "")


def test_star_does_not_match_the_empty_routing_key() -> None:
    assert not topic_matches("*", "")


def test_empty_binding_key_matches_only_the_empty_routing_key() -> None:
    assert topic_matches("", "")
    assert not topic_matches("", "a")
    assert not topic_matches("", ".")


def test_trailing_hash_matches_zero_words() -> None:
    assert topic_matches("a.#", "a")


def test_leading_hash_matches_zero_words() -> None:
    assert topic_matches("#.b", "b")


def test_inner_hash_matches_zero_words() -> None:
    assert topic_matches("a.#.b", "a.b")


def test_inner_hash_matches_several_words() -> None:
    assert topic_matches("a.#.b", "a.x.y.z.b")


def test_double_dot_makes_an_empty_word() -> None:
    assert topic_words("a..b") == ("a", "", "b")
    assert topic_words(".") == ("", "")
    assert topic_words("a.") == ("a", "")


def test_star_matches_an_empty_word() -> None:
    assert topic_matches("a.*.b", "a..b")
    assert topic_matches("*", ".") is False
    assert topic_matches("*.*", ".")


def test_three_word_key_with_empty_middle_word_is_not_two_words() -> None:
    assert not topic_matches("a.b", "a..b")
    assert not topic_matches("a..b", "a.b")
    assert topic_matches("a..b", "a..b")


def test_trailing_dot_is_a_trailing_empty_word() -> None:
    assert not topic_matches("a", "a.")
    assert topic_matches("a.*", "a.")
    assert topic_matches("a.#", "a.")


@pytest.mark.parametrize(
    "pattern, literal_key, other_key",
    [
        ("a#", "a#", "ab"),
        ("*b", "*b", "ab"),
        ("#a", "#a", "xa"),
        ("a*", "a*", "ab"),
        ("**", "**", "ab"),
        ("##", "##", "a"),
    ],
)
def test_word_is_a_wildcard_only_when_exactly_star_or_hash(pattern: str, literal_key: str, other_key: str) -> None:
    assert topic_matches(pattern, literal_key)
    assert not topic_matches(pattern, other_key)
    assert not topic_matches(pattern, "")


def test_wildcard_characters_in_a_routing_key_are_literal() -> None:
    assert topic_matches("*", "#")
    assert topic_matches("#", "*")
    assert not topic_matches("a", "*")
    assert topic_matches("#", "#.#")


def test_star_needs_exactly_one_word_so_cities_star_does_not_match_cities() -> None:
    assert not topic_matches("regions.na.cities.*", "regions.na.cities")
    assert topic_matches("regions.na.cities.*", "regions.na.cities.toronto")
    assert not topic_matches("regions.na.cities.*", "regions.na.cities.toronto.downtown")


def test_hash_between_stars_needs_at_least_two_words() -> None:
    assert not topic_matches("*.#.*", "a")
    assert topic_matches("*.#.*", "a.b")
    assert topic_matches("*.#.*", "a.b.c.d")


def test_literal_words_are_case_sensitive_and_exact() -> None:
    assert not topic_matches("A.b", "a.b")
    assert not topic_matches("a.b", "a.bc")


def test_long_keys_with_many_hashes_match_quickly() -> None:
    pattern = ".".join(["#", "a"] * 40)
    key = ".".join(["a"] * 200)
    assert topic_matches(pattern, key)
    assert not topic_matches(pattern + ".b", key)


# ---------------------------------------------------------------------------------------------------------------
# Topic matching: property test against an independent reference
# ---------------------------------------------------------------------------------------------------------------


def reference_words(key: str) -> list[str]:
    return [] if key == "" else key.split(".")


def reference_topic_match(pattern: list[str], key: list[str]) -> bool:
    """Straight from the definition: ``*`` is exactly one word, ``#`` zero or more, anything else itself."""
    if not pattern:
        return not key
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return reference_topic_match(rest, key) or (bool(key) and reference_topic_match(pattern, key[1:]))
    if not key:
        return False
    return (head == "*" or head == key[0]) and reference_topic_match(rest, key[1:])


WORDS = st.sampled_from(["", "*", "#", "a", "b", "a#", "*b"])
TOPIC_KEYS = st.lists(WORDS, max_size=6).map(".".join)


@settings(max_examples=1500, deadline=None)
@given(pattern=TOPIC_KEYS, routing_key=TOPIC_KEYS)
def test_topic_matches_agrees_with_a_naive_recursive_matcher(pattern: str, routing_key: str) -> None:
    expected = reference_topic_match(reference_words(pattern), reference_words(routing_key))
    assert topic_matches(pattern, routing_key) is expected


@settings(max_examples=500, deadline=None)
@given(patterns=st.lists(TOPIC_KEYS, max_size=8), routing_key=TOPIC_KEYS)
def test_the_topic_trie_finds_exactly_the_bindings_topic_matches_accepts_in_binding_order(
        patterns: list[str], routing_key: str) -> None:
    bindings = [Binding(f"q{i}", "queue", pattern, {}) for i, pattern in enumerate(patterns)]
    expected = [b for b in bindings if topic_matches(b.routing_key, routing_key)]
    assert BindingIndex("topic", bindings).matching(routing_key, None) == expected


@pytest.mark.parametrize("exchange_type", ["direct", "fanout", "headers"])
def test_a_binding_index_matches_as_binding_matches_does(exchange_type: str) -> None:
    bindings = [Binding("q1", "queue", "a", {"x-match": "any", "h": 1}), Binding("q2", "queue", "b", {"h": 2}),
                Binding("q3", "queue", "a", {"h": 1})]
    for key, headers in [("a", {"h": 1}), ("b", {"h": 2}), ("c", None)]:
        expected = [b for b in bindings if binding_matches(exchange_type, b, key, headers)]
        assert BindingIndex(exchange_type, bindings).matching(key, headers) == expected


@settings(max_examples=300, deadline=None)
@given(routing_key=TOPIC_KEYS)
def test_hash_matches_every_routing_key(routing_key: str) -> None:
    assert topic_matches("#", routing_key)


@settings(max_examples=300, deadline=None)
@given(routing_key=TOPIC_KEYS.filter(lambda key: "*" not in key.split(".") and "#" not in key.split(".")))
def test_a_key_without_wildcards_matches_itself(routing_key: str) -> None:
    assert topic_matches(routing_key, routing_key)


# ---------------------------------------------------------------------------------------------------------------
# Headers matching
# ---------------------------------------------------------------------------------------------------------------


def test_missing_x_match_means_all() -> None:
    assert x_match({}) == "all"
    assert x_match({"k": 1}) == "all"
    assert headers_match({"a": 1, "b": 2}, {"a": 1, "b": 2})
    assert not headers_match({"a": 1, "b": 2}, {"a": 1})


@pytest.mark.parametrize("mode", ["all", "any", "all-with-x", "any-with-x"])
def test_x_match_accepts_the_four_rabbitmq_modes(mode: str) -> None:
    assert x_match({"x-match": mode}) == mode


@pytest.mark.parametrize("mode", ["bogus", "ALL", "", None, 1, b"any"])
def test_invalid_x_match_raises_value_error(mode: Any) -> None:
    with pytest.raises(ValueError):
        x_match({"x-match": mode})
    with pytest.raises(ValueError):
        headers_match({"x-match": mode, "k": "v"}, {"k": "v"})


def test_all_requires_every_binding_field_to_match() -> None:
    arguments = {"x-match": "all", "format": "pdf", "type": "report"}
    assert headers_match(arguments, {"format": "pdf", "type": "report"})
    assert headers_match(arguments, {"format": "pdf", "type": "report", "extra": 1})
    assert not headers_match(arguments, {"format": "pdf", "type": "log"})
    assert not headers_match(arguments, {"format": "pdf"})


def test_any_requires_one_binding_field_to_match() -> None:
    arguments = {"x-match": "any", "format": "pdf", "type": "report"}
    assert headers_match(arguments, {"format": "pdf", "type": "log"})
    assert headers_match(arguments, {"type": "report"})
    assert not headers_match(arguments, {"format": "zip", "type": "log"})
    assert not headers_match(arguments, {"other": "pdf"})


def test_all_and_any_ignore_binding_fields_starting_with_x() -> None:
    assert headers_match({"x-match": "all", "x-k": "v", "k": 1}, {"k": 1})
    assert not headers_match({"x-match": "any", "x-k": "v"}, {"x-k": "v"})
    assert not headers_match({"x-match": "any", "x-k": "v", "k": 1}, {"x-k": "v"})


def test_all_with_x_also_requires_x_fields() -> None:
    arguments = {"x-match": "all-with-x", "x-k": "v", "k": 1}
    assert headers_match(arguments, {"x-k": "v", "k": 1})
    assert not headers_match(arguments, {"k": 1})


def test_any_with_x_is_satisfied_by_an_x_field() -> None:
    arguments = {"x-match": "any-with-x", "x-k": "v", "k": 1}
    assert headers_match(arguments, {"x-k": "v"})
    assert headers_match(arguments, {"k": 1})
    assert not headers_match(arguments, {"x-k": "w", "k": 2})


def test_x_match_itself_is_never_a_field_to_match() -> None:
    assert headers_match({"x-match": "all-with-x"}, {})
    assert not headers_match({"x-match": "any-with-x"}, {"x-match": "any-with-x"})


def test_binding_field_without_value_matches_on_presence() -> None:
    arguments = {"x-match": "all", "k": None}
    assert headers_match(arguments, {"k": "anything"})
    assert headers_match(arguments, {"k": 0})
    assert headers_match(arguments, {"k": None})
    assert not headers_match(arguments, {"other": None})


def test_header_without_value_does_not_match_a_binding_value() -> None:
    assert not headers_match({"k": 1}, {"k": None})


def test_all_without_plain_fields_matches_everything() -> None:
    assert headers_match({"x-match": "all"}, {"k": "v"})
    assert headers_match({"x-match": "all"}, None)
    assert headers_match({}, None)
    assert headers_match({"x-match": "all", "x-only": "v"}, {})


def test_any_without_plain_fields_matches_nothing() -> None:
    assert not headers_match({"x-match": "any"}, {"k": "v"})
    assert not headers_match({"x-match": "any"}, None)
    assert not headers_match({"x-match": "any", "x-only": "v"}, {"x-only": "v"})


def test_message_without_headers_matches_only_field_free_all_bindings() -> None:
    for headers in (None, {}):
        assert headers_match({"x-match": "all"}, headers)
        assert not headers_match({"x-match": "all", "k": "v"}, headers)
        assert not headers_match({"x-match": "any", "k": "v"}, headers)
        assert not headers_match({"x-match": "all", "k": None}, headers)


def test_int_and_float_with_equal_values_match() -> None:
    assert headers_match({"n": 1}, {"n": 1.0})
    assert headers_match({"n": 1.0}, {"n": 1})
    assert not headers_match({"n": 1}, {"n": 1.5})


def test_booleans_do_not_match_numbers() -> None:
    assert headers_match({"n": True}, {"n": True})
    assert not headers_match({"n": True}, {"n": 1})
    assert not headers_match({"n": 1}, {"n": True})
    assert not headers_match({"n": False}, {"n": 0})
    assert not headers_match({"n": 0.0}, {"n": False})


def test_strings_match_by_value_and_not_loosely() -> None:
    assert headers_match({"k": "1"}, {"k": "1"})
    assert not headers_match({"k": "1"}, {"k": 1})
    assert not headers_match({"k": "pdf"}, {"k": "PDF"})


def test_str_and_bytes_with_the_same_bytes_match_as_in_rabbitmq() -> None:
    assert headers_match({"k": "1"}, {"k": b"1"})


def test_decimal_does_not_match_an_equal_integer_as_in_rabbitmq() -> None:
    assert not headers_match({"n": 1}, {"n": decimal.Decimal(1)})


def test_nested_values_compare_with_their_types_as_in_rabbitmq() -> None:
    assert not headers_match({"n": [1]}, {"n": [True]})
    assert not headers_match({"n": [1]}, {"n": [1.0]})
    assert not headers_match({"n": {"a": 1}}, {"n": {"a": True}})


# ---------------------------------------------------------------------------------------------------------------
# binding_matches: one binding per exchange type
# ---------------------------------------------------------------------------------------------------------------


def test_direct_binding_matches_the_exact_routing_key_only() -> None:
    binding = Binding("q", "queue", "a.*", {})
    assert binding_matches("direct", binding, "a.*", None)
    assert not binding_matches("direct", binding, "a.b", None)


def test_fanout_binding_ignores_the_routing_key() -> None:
    assert binding_matches("fanout", Binding("q", "queue", "x", {}), "anything", None)


def test_topic_binding_uses_topic_matching() -> None:
    assert binding_matches("topic", Binding("q", "queue", "a.#", {}), "a.b.c", None)
    assert not binding_matches("topic", Binding("q", "queue", "a.*", {}), "a.b.c", None)


def test_headers_binding_ignores_the_routing_key() -> None:
    binding = Binding("q", "queue", "rk", {"x-match": "all", "k": "v"})
    assert binding_matches("headers", binding, "other", {"k": "v"})
    assert not binding_matches("headers", binding, "rk", {"k": "w"})


# ---------------------------------------------------------------------------------------------------------------
# route(): following bindings through the exchange graph
# ---------------------------------------------------------------------------------------------------------------


def graph_lookup(graph: Mapping[str, tuple[Any, ...]]):
    """An exchange graph as {name: (type, bindings)} or {name: (type, bindings, alternate exchange)}."""
    def lookup(name: str) -> Optional[tuple[str, Iterable[Binding], Optional[str]]]:
        found = graph.get(name)
        return None if found is None else (found[0], found[1], found[2] if len(found) > 2 else None)
    return lookup


def to_queue(name: str, key: str = "", arguments: Optional[Mapping[str, Any]] = None) -> Binding:
    return Binding(name, "queue", key, arguments or {})


def to_exchange(name: str, key: str = "", arguments: Optional[Mapping[str, Any]] = None) -> Binding:
    return Binding(name, "exchange", key, arguments or {})


def test_route_reaches_the_matching_queues_of_one_exchange() -> None:
    graph = {"x": ("direct", [to_queue("q1", "k"), to_queue("q2", "other"), to_queue("q3", "k")])}
    assert route("x", "k", None, graph_lookup(graph)) == ["q1", "q3"]


def test_queue_reached_through_several_bindings_appears_once() -> None:
    graph = {
        "x": ("topic", [to_queue("q", "a.*"), to_queue("q", "#"), to_exchange("y", "a.b")]),
        "y": ("fanout", [to_queue("q"), to_queue("r")]),
    }
    assert route("x", "a.b", None, graph_lookup(graph)) == ["q", "r"]


def test_exchange_to_exchange_bindings_are_followed() -> None:
    graph = {
        "x": ("direct", [to_exchange("y", "k"), to_exchange("unused", "other")]),
        "y": ("topic", [to_queue("qy", "#"), to_exchange("z", "k")]),
        "z": ("headers", [to_queue("qz", "", {"h": 1}), to_queue("qz-no", "", {"h": 2})]),
        "unused": ("fanout", [to_queue("never")]),
    }
    assert route("x", "k", {"h": 1}, graph_lookup(graph)) == ["qy", "qz"]


def test_destination_exchange_applies_its_own_type_to_the_original_routing_key() -> None:
    graph = {
        "x": ("fanout", [to_exchange("y", "ignored")]),
        "y": ("direct", [to_queue("q-match", "orig"), to_queue("q-binding-key", "ignored")]),
    }
    assert route("x", "orig", None, graph_lookup(graph)) == ["q-match"]


def test_cycle_of_exchanges_terminates_and_lists_each_queue_once() -> None:
    graph = {
        "x": ("fanout", [to_exchange("y"), to_queue("qx")]),
        "y": ("fanout", [to_exchange("x"), to_exchange("y"), to_queue("qy"), to_queue("qx")]),
    }
    assert route("x", "", None, graph_lookup(graph)) == ["qx", "qy"]
    assert route("y", "", None, graph_lookup(graph)) == ["qy", "qx"]


def test_exchange_bound_to_itself_terminates() -> None:
    graph = {"x": ("fanout", [to_exchange("x"), to_queue("q")])}
    assert route("x", "", None, graph_lookup(graph)) == ["q"]


def test_missing_exchange_routes_nowhere() -> None:
    assert route("missing", "k", None, graph_lookup({})) == []


def test_binding_to_a_missing_exchange_is_skipped() -> None:
    graph = {"x": ("fanout", [to_exchange("gone"), to_queue("q")])}
    assert route("x", "", None, graph_lookup(graph)) == ["q"]


def test_exchange_without_bindings_routes_nowhere() -> None:
    assert route("x", "k", None, graph_lookup({"x": ("direct", [])})) == []


def test_queues_are_listed_in_first_reached_order() -> None:
    graph = {
        "x": ("fanout", [to_queue("b"), to_exchange("y"), to_queue("a")]),
        "y": ("fanout", [to_queue("c"), to_queue("a")]),
    }
    assert route("x", "", None, graph_lookup(graph)) == ["b", "a", "c"]


def test_each_exchange_is_looked_up_once() -> None:
    graph = {
        "x": ("fanout", [to_exchange("y"), to_exchange("z")]),
        "y": ("fanout", [to_exchange("z"), to_queue("qy")]),
        "z": ("fanout", [to_exchange("x"), to_queue("qz")]),
    }
    calls: list[str] = []

    def lookup(name: str):
        calls.append(name)
        return graph_lookup(graph)(name)

    assert sorted(route("x", "", None, lookup)) == ["qy", "qz"]
    assert sorted(calls) == ["x", "y", "z"]


# ---------------------------------------------------------------------------------------------------------------
# Names and exchange types
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [b"queue", None, 1, ["q"]])
def test_check_name_accepts_str_only(name: Any) -> None:
    with pytest.raises(TypeError):
        check_name("queue", name)


def test_check_name_allows_the_empty_name() -> None:
    assert check_name("queue", "") == ""


def test_check_name_allows_255_bytes() -> None:
    assert check_name("queue", "q" * 255) == "q" * 255
    assert check_name("queue", "é" * 127 + "q") == "é" * 127 + "q"


def test_check_name_rejects_more_than_255_bytes() -> None:
    with pytest.raises(ValueError):
        check_name("queue", "q" * 256)


def test_check_name_counts_multibyte_characters_in_bytes() -> None:
    name = "é" * 128  # 128 characters, 256 bytes of UTF-8
    assert len(name) < 255
    with pytest.raises(ValueError):
        check_name("queue", name)
    with pytest.raises(ValueError):
        check_name("exchange", "\U0001F407" * 64)  # 64 characters, 256 bytes


def test_check_name_rejects_nul() -> None:
    with pytest.raises(ValueError):
        check_name("exchange", "a\x00b")


def test_check_name_rejects_lone_surrogates() -> None:
    with pytest.raises(ValueError):
        check_name("queue", "a\ud800")


def test_check_name_error_names_the_kind() -> None:
    with pytest.raises(ValueError, match="routing key"):
        check_name("routing key", "k" * 300)


@pytest.mark.parametrize("exchange_type", ["direct", "fanout", "topic", "headers"])
def test_check_exchange_type_accepts_the_four_types(exchange_type: str) -> None:
    assert check_exchange_type(exchange_type) == exchange_type


@pytest.mark.parametrize("exchange_type", ["foo", "", "Direct", "x-consistent-hash"])
def test_check_exchange_type_rejects_unknown_types(exchange_type: str) -> None:
    with pytest.raises(ValueError):
        check_exchange_type(exchange_type)


def test_check_exchange_type_accepts_str_only() -> None:
    with pytest.raises(TypeError):
        check_exchange_type(b"direct")


# ---------------------------------------------------------------------------------------------------------------
# Differential tests against a real RabbitMQ
# ---------------------------------------------------------------------------------------------------------------

# Topic edge cases beyond the topic1 table: empty words, literal wildcard characters, hashes around stars.
EDGE_BINDINGS = {
    f"e{i}": pattern
    for i, pattern in enumerate([
        "", "#", "*", "a", "a.*.b", "a.#.b", "#.b", "a.#", "a..b", "a.", ".a", ".", "*.", ".*", "#.", ".#",
        "a#", "*b", "*.#.*", "#.*", "*.*", "#.#.b", "a.*.#", "#.a.#", "*.*.*",
    ])
}
EDGE_KEYS = [
    "", "a", "b", "a.b", "a..b", "a.x.b", "a.", ".a", ".", "..", "a#", "*b", "a.b.b", "#", "*", "b.a.b",
    "x.a", "a.b.c.b",
]


def rabbitmq_topic_routes(channel: Any, bindings: Mapping[str, str], keys: list[str]) -> dict[str, set[str]]:
    """For each routing key, the names of the bindings whose queue RabbitMQ delivered it to."""
    exchange = unique_name("topic")
    channel.exchange_declare(exchange, "topic", auto_delete=True)
    try:
        queues = {}
        for name, pattern in bindings.items():
            queue = channel.queue_declare("", exclusive=True).method.queue
            channel.queue_bind(queue, exchange, routing_key=pattern)
            queues[queue] = name
        channel.confirm_delivery()
        for index, key in enumerate(keys):
            channel.basic_publish(exchange, key, str(index).encode())
        routes: dict[str, set[str]] = {key: set() for key in keys}
        for queue, name in queues.items():
            for body in drain(channel, queue):
                routes[keys[int(body)]].add(name)
        return routes
    finally:
        delete_exchange(channel, exchange)


def rabbitmq_headers_routes(channel: Any, bindings: Mapping[str, Mapping[str, Any]],
                            messages: Mapping[str, Optional[Mapping[str, Any]]]) -> dict[str, set[str]]:
    """For each message, the names of the headers bindings whose queue RabbitMQ delivered it to."""
    import pika

    exchange = unique_name("headers")
    channel.exchange_declare(exchange, "headers", auto_delete=True)
    try:
        queues = {}
        for name, arguments in bindings.items():
            queue = channel.queue_declare("", exclusive=True).method.queue
            channel.queue_bind(queue, exchange, routing_key="", arguments=dict(arguments))
            queues[queue] = name
        channel.confirm_delivery()
        for message, headers in messages.items():
            properties = pika.BasicProperties(headers=None if headers is None else dict(headers))
            channel.basic_publish(exchange, "", message.encode(), properties)
        routes: dict[str, set[str]] = {message: set() for message in messages}
        for queue, name in queues.items():
            for body in drain(channel, queue):
                routes[body.decode()].add(name)
        return routes
    finally:
        delete_exchange(channel, exchange)


def delete_exchange(channel: Any, exchange: str) -> None:
    """Delete the test's exchange, on a new channel when a broker error closed this one."""
    if not channel.is_open:
        if not channel.connection.is_open:
            return
        channel = channel.connection.channel()
    channel.exchange_delete(exchange)


def drain(channel: Any, queue: str) -> list[bytes]:
    bodies = []
    while True:
        method, _properties, body = channel.basic_get(queue, auto_ack=True)
        if method is None:
            return bodies
        bodies.append(body)


def test_rabbitmq_routes_the_topic_table_as_topic_matches_predicts(rabbitmq_channel: Any) -> None:
    keys = list(TOPIC_EXPECTED)
    routes = rabbitmq_topic_routes(rabbitmq_channel, TOPIC_BINDINGS, keys)
    assert routes == {key: matching_bindings(key) for key in keys}
    assert routes == {key: set(expected.split()) for key, expected in TOPIC_EXPECTED.items()}


def test_rabbitmq_routes_topic_edge_cases_as_topic_matches_predicts(rabbitmq_channel: Any) -> None:
    routes = rabbitmq_topic_routes(rabbitmq_channel, EDGE_BINDINGS, EDGE_KEYS)
    predicted = {key: matching_bindings(key, EDGE_BINDINGS) for key in EDGE_KEYS}
    assert routes == predicted


class Double(float):
    """A float pika is made to send as an AMQP double (pika itself cannot encode floats in tables)."""


@pytest.fixture
def pika_encodes_doubles(monkeypatch: pytest.MonkeyPatch) -> None:
    import pika.data

    encode_value = pika.data.encode_value

    def encode_value_with_doubles(pieces: list, value: Any) -> int:
        if isinstance(value, float):
            pieces.append(struct.pack(">cd", b"d", value))
            return 9
        return encode_value(pieces, value)

    monkeypatch.setattr(pika.data, "encode_value", encode_value_with_doubles)


HEADERS_BINDINGS: dict[str, dict[str, Any]] = {
    "all": {"x-match": "all", "format": "pdf", "type": "report"},
    "any": {"x-match": "any", "format": "pdf", "type": "report"},
    "default-all": {"format": "pdf", "type": "report"},
    "all-ignores-x": {"x-match": "all", "format": "pdf", "x-tag": "t"},
    "any-ignores-x": {"x-match": "any", "x-tag": "t", "type": "log"},
    "all-with-x": {"x-match": "all-with-x", "format": "pdf", "x-tag": "t"},
    "any-with-x": {"x-match": "any-with-x", "x-tag": "t", "type": "log"},
    "presence": {"x-match": "all", "format": None},
    "any-presence": {"x-match": "any", "format": None, "type": "log"},
    "all-empty": {"x-match": "all"},
    "any-empty": {"x-match": "any"},
    "any-only-x": {"x-match": "any", "x-tag": "t"},
    "int-1": {"n": 1},
    "double-1": {"n": Double(1.0)},
    "bool-true": {"n": True},
    "str-1": {"n": "1"},
    "big-int": {"n": 2**40},
}

HEADERS_MESSAGES: dict[str, Optional[dict[str, Any]]] = {
    "no-headers": None,
    "empty-headers": {},
    "pdf-report": {"format": "pdf", "type": "report"},
    "pdf-log": {"format": "pdf", "type": "log"},
    "zip-report-extra": {"format": "zip", "type": "report", "extra": 1},
    "pdf-only": {"format": "pdf"},
    "pdf-tag": {"format": "pdf", "x-tag": "t"},
    "tag-only": {"x-tag": "t"},
    "format-void": {"format": None},
    "format-int": {"format": 7},
    "n-int-1": {"n": 1},
    "n-double-1": {"n": Double(1.0)},
    "n-double-1.5": {"n": Double(1.5)},
    "n-true": {"n": True},
    "n-false": {"n": False},
    "n-int-0": {"n": 0},
    "n-str-1": {"n": "1"},
    "n-big-int": {"n": 2**40},
}


def test_rabbitmq_routes_headers_bindings_as_headers_match_predicts(rabbitmq_channel: Any,
                                                                     pika_encodes_doubles: None) -> None:
    routes = rabbitmq_headers_routes(rabbitmq_channel, HEADERS_BINDINGS, HEADERS_MESSAGES)
    predicted = {
        message: {name for name, arguments in HEADERS_BINDINGS.items() if headers_match(arguments, headers)}
        for message, headers in HEADERS_MESSAGES.items()
    }
    assert routes == predicted
    assert {"int-1", "double-1"} <= routes["n-double-1"]  # 1 bound, 1.0 published: numeric equality


def test_rabbitmq_routes_bytes_and_decimal_headers_as_headers_match_predicts(rabbitmq_channel: Any) -> None:
    bindings = {"str-1": {"n": "1"}, "bytes-1": {"n": b"1"}, "int-1": {"n": 1},
                "decimal-1": {"n": decimal.Decimal(1)}}
    messages = {"n-str-1": {"n": "1"}, "n-bytes-1": {"n": b"1"}, "n-int-1": {"n": 1},
                "n-decimal-1": {"n": decimal.Decimal(1)}}
    routes = rabbitmq_headers_routes(rabbitmq_channel, bindings, messages)
    predicted = {
        message: {name for name, arguments in bindings.items() if headers_match(arguments, headers)}
        for message, headers in messages.items()
    }
    assert routes == predicted


def test_unroutable_message_goes_to_the_alternate_exchange_and_along_its_chain() -> None:
    graph = {"x": ("direct", [to_queue("q", "k")], "ae1"),
             "ae1": ("direct", [to_queue("never", "other")], "ae2"),
             "ae2": ("fanout", [to_queue("unrouted")])}
    assert route("x", "k", None, graph_lookup(graph)) == ["q"]
    assert route("x", "nope", None, graph_lookup(graph)) == ["unrouted"]


def test_alternate_exchange_cycle_and_missing_alternate_end_the_chain() -> None:
    graph = {"x": ("direct", [], "y"), "y": ("direct", [], "x"), "z": ("direct", [], "missing")}
    assert route("x", "k", None, graph_lookup(graph)) == []
    assert route("z", "k", None, graph_lookup(graph)) == []


def test_alternate_exchange_is_not_used_when_a_binding_to_an_exchange_matched() -> None:
    graph = {"x": ("direct", [to_exchange("inner", "k")], "ae"), "inner": ("direct", []),
             "ae": ("fanout", [to_queue("unrouted")])}
    assert route("x", "k", None, graph_lookup(graph)) == []
    assert route("x", "other", None, graph_lookup(graph)) == ["unrouted"]
