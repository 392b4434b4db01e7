"""Exchanges: the predeclared ones, declare, passive declare, redeclare, delete."""

import pytest

import litemq
from litemq import AccessRefused, ExchangeNotFound, PreconditionFailed


@pytest.mark.parametrize("name", ["amq.direct", "amq.fanout", "amq.topic", "amq.headers", "amq.match"])
def test_predeclared_exchanges_exist(conn, name):
    conn.declare_exchange(name, passive=True)


def test_predeclared_exchange_redeclared_with_its_own_properties_is_accepted(conn):
    conn.declare_exchange("amq.topic", "topic", durable=True)


def test_default_exchange_routes_to_the_queue_named_by_the_key(conn):
    conn.declare_queue("hello")
    assert conn.publish("", "hello", b"hi") == 1
    assert conn.get("hello", auto_ack=True).body == b"hi"


def test_new_exchange_with_reserved_prefix_is_refused(conn, db_path):
    with pytest.raises(AccessRefused, match="amq.mine") as info:
        conn.declare_exchange("amq.mine", "direct")
    assert info.value.reply_code == 403
    with pytest.raises(ExchangeNotFound):
        conn.declare_exchange("amq.mine", passive=True)


def test_passive_declare_of_missing_exchange_is_not_found_and_names_it(conn, db_path):
    with pytest.raises(ExchangeNotFound) as info:
        conn.declare_exchange("nope", passive=True)
    assert info.value.reply_code == 404
    assert "'nope'" in str(info.value) and db_path in str(info.value)


def test_declare_is_idempotent_with_equal_properties(conn):
    conn.declare_exchange("logs", "fanout", durable=True)
    conn.declare_exchange("logs", "fanout", durable=True)
    conn.declare_exchange("logs", passive=True)


@pytest.mark.parametrize("change, field", [
    ({"exchange_type": "topic"}, "type"),
    ({"durable": False}, "durable"),
    ({"auto_delete": True}, "auto_delete"),
    ({"internal": True}, "internal"),
    ({"arguments": {"alternate-exchange": "ae"}}, "alternate-exchange"),
])
def test_redeclare_with_other_properties_is_precondition_failed(conn, change, field):
    conn.declare_exchange("x", "direct", durable=True)
    options = {"exchange_type": "direct", "durable": True, **change}
    with pytest.raises(PreconditionFailed, match=f"inequivalent arg '{field}'") as info:
        conn.declare_exchange("x", **options)
    assert info.value.reply_code == 406


def test_a_redeclaration_may_differ_in_arguments_the_exchange_does_not_use(conn):
    conn.declare_exchange("x", "direct", arguments={"x-custom": 1})
    conn.declare_exchange("x", "direct", arguments={"x-custom": 2})  # RabbitMQ compares alternate-exchange only
    with pytest.raises(PreconditionFailed, match=r"inequivalent arg 'alternate-exchange' for exchange 'x' in .*: "
                                                 r"received the value 'ae' of type 'longstr' but current is none"):
        conn.declare_exchange("x", "direct", arguments={"alternate-exchange": "ae"})


def test_passive_declare_ignores_the_other_properties(conn):
    conn.declare_exchange("x", "direct")
    conn.declare_exchange("x", "topic", passive=True, durable=True)


def test_declared_exchange_is_seen_by_another_connection(conn, other):
    conn.declare_exchange("shared", "topic")
    other.declare_exchange("shared", passive=True)


def test_delete_removes_the_exchange_and_its_bindings(conn):
    conn.declare_exchange("x", "fanout")
    conn.declare_queue("q")
    conn.bind_queue("q", "x")
    conn.delete_exchange("x")
    with pytest.raises(ExchangeNotFound):
        conn.declare_exchange("x", passive=True)
    conn.declare_exchange("x", "fanout")
    assert conn.publish("x", "", b"m") == 0


def test_delete_if_unused_refuses_an_exchange_with_bindings(conn):
    conn.declare_exchange("x", "fanout")
    conn.declare_queue("q")
    conn.bind_queue("q", "x")
    with pytest.raises(PreconditionFailed, match="in use"):
        conn.delete_exchange("x", if_unused=True)
    conn.unbind_queue("q", "x")
    conn.delete_exchange("x", if_unused=True)


def test_delete_of_a_missing_exchange_is_not_an_error(conn):
    conn.delete_exchange("never-declared")


@pytest.mark.parametrize("name", ["", "amq.direct", "amq.topic"])
def test_broker_exchanges_cannot_be_deleted(conn, name):
    with pytest.raises(AccessRefused):
        conn.delete_exchange(name)


def test_auto_delete_exchange_goes_when_its_last_binding_goes(conn):
    conn.declare_exchange("temp", "fanout", auto_delete=True)
    conn.declare_queue("q")
    conn.declare_exchange("temp", passive=True)  # never bound: stays
    conn.bind_queue("q", "temp")
    conn.unbind_queue("q", "temp")
    with pytest.raises(ExchangeNotFound):
        conn.declare_exchange("temp", passive=True)


def test_auto_delete_exchange_goes_when_its_last_bound_queue_is_deleted(conn):
    conn.declare_exchange("temp", "fanout", auto_delete=True)
    conn.declare_queue("q")
    conn.bind_queue("q", "temp")
    conn.delete_queue("q")
    with pytest.raises(ExchangeNotFound):
        conn.declare_exchange("temp", passive=True)


def test_publishing_to_an_internal_exchange_is_refused(conn):
    conn.declare_exchange("inner", "fanout", internal=True)
    with pytest.raises(AccessRefused, match="internal"):
        conn.publish("inner", "", b"x")


def test_unknown_exchange_type_is_a_value_error(conn):
    with pytest.raises(ValueError, match="unknown exchange type 'foo'"):
        conn.declare_exchange("x", "foo")


def test_exchange_to_exchange_binding_routes_onwards(conn):
    conn.declare_exchange("front", "topic")
    conn.declare_exchange("back", "fanout")
    conn.declare_queue("q")
    conn.bind_exchange("back", "front", "orders.*")
    conn.bind_queue("q", "back")
    assert conn.publish("front", "orders.new", b"o") == 1
    assert conn.publish("front", "users.new", b"u") == 0
    conn.unbind_exchange("back", "front", "orders.*")
    assert conn.publish("front", "orders.new", b"o") == 0
    assert conn.get("q", auto_ack=True).body == b"o"


def test_connections_are_litemq_connections(conn):
    assert isinstance(conn, litemq.Connection)
