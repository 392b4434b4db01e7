"""What happens to a message on its way in, beyond routing: alternate exchanges catch what an exchange cannot
route; a mandatory message that reaches no queue is refused (natively Unroutable, nothing stored; through the
facade a basic.return, and UnroutableError under confirms); a queue's length limit refusing it is a PublishRejected
(NackError under confirms); and a publish returns only once it is committed, so every other connection sees it.

RabbitMQ parity is in tests/conformance; these are litemq's own promises, natively and through litemq.pika.
"""

from __future__ import annotations

from typing import Any, Iterator

import pytest

import litemq
from engines import BrokerSQL, as_url, make_broker
from litemq import AccessRefused, ExchangeNotFound, PreconditionFailed, PublishRejected, Unroutable
from litemq import pika


def stored(sql: BrokerSQL) -> int:
    return sql.value("SELECT count(*) FROM litemq_messages")


def drain(conn: litemq.Connection, queue: str) -> list[tuple[str, str, str]]:
    """(body, exchange, routing key) of every ready message of the queue."""
    got = []
    while (delivery := conn.get(queue, auto_ack=True)) is not None:
        got.append((delivery.body.decode(), delivery.exchange, delivery.routing_key))
    return got


@pytest.fixture
def with_ae(conn: litemq.Connection) -> litemq.Connection:
    """Exchange "main" (direct; "known" -> queue "bound") whose alternate is fanout "ae" -> queue "caught"."""
    conn.declare_exchange("ae", "fanout")
    conn.declare_exchange("main", "direct", arguments={"alternate-exchange": "ae"})
    for queue in ("bound", "caught"):
        conn.declare_queue(queue)
    conn.bind_queue("bound", "main", "known")
    conn.bind_queue("caught", "ae")
    return conn


# ---------------------------------------------------------------------------------------------------------------
# Alternate exchanges
# ---------------------------------------------------------------------------------------------------------------

def test_an_unroutable_message_goes_to_the_alternate_exchange_under_its_original_exchange_and_key(
        with_ae: litemq.Connection) -> None:
    conn = with_ae
    assert conn.publish("main", "unknown", b"stray") == 1
    assert drain(conn, "caught") == [("stray", "main", "unknown")]
    assert drain(conn, "bound") == []


def test_a_routable_message_never_reaches_the_alternate_exchange(with_ae: litemq.Connection) -> None:
    conn = with_ae
    assert conn.publish("main", "known", b"routed") == 1
    assert drain(conn, "bound") == [("routed", "main", "known")]
    assert drain(conn, "caught") == []


def test_alternate_exchanges_chain_until_one_routes_the_message(conn: litemq.Connection) -> None:
    conn.declare_exchange("last", "fanout")
    conn.declare_exchange("middle", "direct", arguments={"alternate-exchange": "last"})
    conn.declare_exchange("main", "direct", arguments={"alternate-exchange": "middle"})
    for queue in ("at-middle", "at-last"):
        conn.declare_queue(queue)
    conn.bind_queue("at-middle", "middle", "m")
    conn.bind_queue("at-last", "last")
    conn.publish("main", "m", b"middle catches")
    conn.publish("main", "zz", b"last catches")
    assert drain(conn, "at-middle") == [("middle catches", "main", "m")]
    assert drain(conn, "at-last") == [("last catches", "main", "zz")]


def test_an_alternate_exchange_cycle_ends_and_the_message_is_unroutable(
        conn: litemq.Connection, sql: BrokerSQL) -> None:
    conn.declare_exchange("one", "direct", arguments={"alternate-exchange": "two"})
    conn.declare_exchange("two", "direct", arguments={"alternate-exchange": "one"})
    conn.declare_queue("on-two")
    conn.bind_queue("on-two", "two", "for-two")
    assert conn.publish("one", "nowhere", b"cycled") == 0
    with pytest.raises(Unroutable):
        conn.publish("one", "nowhere", b"cycled", mandatory=True)
    assert conn.publish("one", "for-two", b"found on the way") == 1
    assert drain(conn, "on-two") == [("found on the way", "one", "for-two")]
    assert stored(sql) == 0


def test_an_exchange_that_is_its_own_alternate_does_not_loop(conn: litemq.Connection) -> None:
    conn.declare_exchange("selfish", "direct", arguments={"alternate-exchange": "selfish"})
    assert conn.publish("selfish", "nowhere", b"m") == 0


def test_a_missing_alternate_exchange_drops_the_message_without_an_error(
        conn: litemq.Connection, sql: BrokerSQL) -> None:
    conn.declare_exchange("main", "direct", arguments={"alternate-exchange": "not-declared"})
    assert conn.publish("main", "nowhere", b"dropped") == 0
    assert stored(sql) == 0
    conn.declare_exchange("not-declared", "fanout")  # declared later: from then on it catches
    conn.declare_queue("caught")
    conn.bind_queue("caught", "not-declared")
    assert conn.publish("main", "nowhere", b"caught") == 1
    assert drain(conn, "caught") == [("caught", "main", "nowhere")]


def test_a_message_the_alternate_exchange_takes_counts_as_routed_for_mandatory(with_ae: litemq.Connection) -> None:
    conn = with_ae
    assert conn.publish("main", "unknown", b"stray", mandatory=True) == 1
    assert drain(conn, "caught") == [("stray", "main", "unknown")]


def test_a_mandatory_message_the_alternate_exchange_cannot_route_either_is_unroutable(
        conn: litemq.Connection, sql: BrokerSQL) -> None:
    conn.declare_exchange("ae", "direct")
    conn.declare_exchange("main", "direct", arguments={"alternate-exchange": "ae"})
    with pytest.raises(Unroutable) as info:
        conn.publish("main", "nowhere", b"m", mandatory=True)
    assert (info.value.exchange, info.value.routing_key) == ("main", "nowhere")
    assert stored(sql) == 0


@pytest.mark.parametrize("value", [5, True, ["ae"], {"name": "ae"}])
def test_an_alternate_exchange_that_is_not_a_string_is_refused_and_nothing_is_created(
        conn: litemq.Connection, value: Any) -> None:
    with pytest.raises(PreconditionFailed, match="alternate-exchange") as info:
        conn.declare_exchange("main", "direct", arguments={"alternate-exchange": value})
    assert info.value.reply_code == 406
    with pytest.raises(ExchangeNotFound):
        conn.declare_exchange("main", passive=True)


def test_an_exchange_redeclared_with_another_alternate_exchange_is_refused(with_ae: litemq.Connection) -> None:
    conn = with_ae
    for arguments in ({"alternate-exchange": "other"}, None):
        with pytest.raises(PreconditionFailed) as info:
            conn.declare_exchange("main", "direct", arguments=arguments)
        assert info.value.reply_code == 406
    conn.declare_exchange("main", "direct", arguments={"alternate-exchange": "ae"})  # the same: fine
    assert conn.publish("main", "unknown", b"still caught") == 1
    assert drain(conn, "caught") == [("still caught", "main", "unknown")]


def test_the_default_exchange_has_no_alternate_and_a_missing_queue_through_it_is_unroutable(
        conn: litemq.Connection, sql: BrokerSQL) -> None:
    with pytest.raises(AccessRefused):
        conn.declare_exchange("", "direct", arguments={"alternate-exchange": "ae"})
    assert conn.publish("", "no-such-queue", b"m") == 0
    with pytest.raises(Unroutable) as info:
        conn.publish("", "no-such-queue", b"m", mandatory=True)
    assert (info.value.exchange, info.value.routing_key) == ("", "no-such-queue")
    assert stored(sql) == 0


# ---------------------------------------------------------------------------------------------------------------
# Mandatory, natively
# ---------------------------------------------------------------------------------------------------------------

def test_a_mandatory_message_that_reaches_no_queue_raises_unroutable_and_stores_nothing(
        conn: litemq.Connection, sql: BrokerSQL) -> None:
    conn.declare_exchange("logs", "direct")
    conn.declare_queue("errors")
    conn.bind_queue("errors", "logs", "error")
    with pytest.raises(Unroutable, match="'logs'.*'info'") as info:
        conn.publish("logs", "info", b"lost", mandatory=True)
    assert (info.value.reply_code, info.value.exchange, info.value.routing_key) == (312, "logs", "info")
    assert stored(sql) == 0
    assert conn.publish("logs", "error", b"kept", mandatory=True) == 1
    assert stored(sql) == 1


def test_without_mandatory_an_unroutable_message_is_dropped_quietly(conn: litemq.Connection, sql: BrokerSQL) -> None:
    conn.declare_exchange("logs", "direct")
    assert conn.publish("logs", "info", b"lost") == 0
    assert stored(sql) == 0


def test_a_mandatory_publish_counts_every_queue_it_reaches(conn: litemq.Connection) -> None:
    conn.declare_exchange("fan", "fanout")
    for queue in ("a", "b", "c"):
        conn.declare_queue(queue)
        conn.bind_queue(queue, "fan")
    assert conn.publish("fan", "", b"m", mandatory=True) == 3


def test_a_publish_to_a_missing_exchange_is_not_found_even_when_mandatory(conn: litemq.Connection) -> None:
    with pytest.raises(ExchangeNotFound):
        conn.publish("no-such-exchange", "k", b"m", mandatory=True)


# ---------------------------------------------------------------------------------------------------------------
# A length limit refusing a message, natively
# ---------------------------------------------------------------------------------------------------------------

def test_a_queue_refusing_a_message_raises_publish_rejected_after_the_other_queues_took_their_copies(
        conn: litemq.Connection, other: litemq.Connection) -> None:
    conn.declare_exchange("fan", "fanout")
    conn.declare_queue("full", arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    conn.declare_queue("roomy")
    conn.bind_queue("full", "fan")
    conn.bind_queue("roomy", "fan")
    assert conn.publish("fan", "", b"one") == 2
    with pytest.raises(PublishRejected) as info:
        conn.publish("fan", "", b"two")
    assert (info.value.rejected, info.value.stored) == (["full"], ["roomy"])
    assert [d.body for d in iter(lambda: other.get("roomy", auto_ack=True), None)] == [b"one", b"two"]
    assert [d.body for d in iter(lambda: other.get("full", auto_ack=True), None)] == [b"one"]


# ---------------------------------------------------------------------------------------------------------------
# Through litemq.pika: returns, confirms, nacks
# ---------------------------------------------------------------------------------------------------------------

@pytest.fixture
def connection(db_path: str) -> Iterator[pika.BlockingConnection]:
    make_broker(db_path)
    opened = pika.BlockingConnection(pika.URLParameters(as_url(db_path)))
    yield opened
    if opened.is_open:
        opened.close()


@pytest.fixture
def channel(connection: pika.BlockingConnection) -> pika.BlockingChannel:
    channel = connection.channel()
    channel.exchange_declare("logs", "direct")
    return channel


def recorder(channel: pika.BlockingChannel) -> list[list[Any]]:
    returns: list[list[Any]] = []
    channel.add_on_return_callback(lambda ch, method, properties, body: returns.append(
        [method.reply_code, method.reply_text, method.exchange, method.routing_key, body]))
    return returns


def test_an_unroutable_mandatory_message_comes_back_to_the_return_callback_on_the_next_events(
        connection: pika.BlockingConnection, channel: pika.BlockingChannel) -> None:
    returns = recorder(channel)
    channel.basic_publish("logs", "info", b"lost", mandatory=True)
    assert returns == []  # returns are dispatched by the event loop, as pika does
    connection.process_data_events(time_limit=0)
    assert returns == [[312, "NO_ROUTE", "logs", "info", b"lost"]]
    connection.process_data_events(time_limit=0)
    assert len(returns) == 1
    assert channel.is_open


def test_an_unroutable_message_without_mandatory_is_not_returned(connection: pika.BlockingConnection,
                                                                 channel: pika.BlockingChannel) -> None:
    returns = recorder(channel)
    channel.basic_publish("logs", "info", b"lost")
    connection.process_data_events(time_limit=0.05)
    assert returns == []


def test_under_confirms_an_unroutable_mandatory_message_raises_and_reaches_the_return_callback(
        connection: pika.BlockingConnection, channel: pika.BlockingChannel) -> None:
    returns = recorder(channel)
    channel.confirm_delivery()
    with pytest.raises(pika.exceptions.UnroutableError) as info:
        channel.basic_publish("logs", "info", b"lost", mandatory=True)
    (message,) = info.value.messages
    assert (message.method.reply_code, message.method.exchange, message.method.routing_key, message.body) == (
        312, "logs", "info", b"lost")
    connection.process_data_events(time_limit=0)
    assert returns == [[312, "NO_ROUTE", "logs", "info", b"lost"]]
    assert channel.is_open


def test_under_confirms_a_message_the_alternate_exchange_takes_is_confirmed(
        connection: pika.BlockingConnection, channel: pika.BlockingChannel) -> None:
    channel.exchange_declare("ae", "fanout")
    channel.exchange_declare("main", "direct", arguments={"alternate-exchange": "ae"})
    channel.queue_declare("caught")
    channel.queue_bind("caught", "ae")
    returns = recorder(channel)
    channel.confirm_delivery()
    channel.basic_publish("main", "unknown", b"stray", mandatory=True)
    connection.process_data_events(time_limit=0)
    assert returns == []
    method, _, body = channel.basic_get("caught", auto_ack=True)
    assert (body, method.exchange, method.routing_key) == (b"stray", "main", "unknown")


def test_under_confirms_a_queue_refusing_a_message_raises_nack_error_without_messages(
        connection: pika.BlockingConnection, channel: pika.BlockingChannel) -> None:
    channel.queue_declare("full", arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    returns = recorder(channel)
    channel.confirm_delivery()
    channel.basic_publish("", "full", b"one")
    with pytest.raises(pika.exceptions.NackError) as info:
        channel.basic_publish("", "full", b"two", mandatory=True)
    assert info.value.messages == []
    connection.process_data_events(time_limit=0)
    assert returns == []  # refused, not unroutable: nothing is returned
    assert channel.is_open
    assert channel.queue_declare("full", passive=True).method.message_count == 1


def test_without_confirms_a_message_a_queue_refuses_is_dropped_silently(
        connection: pika.BlockingConnection, channel: pika.BlockingChannel) -> None:
    channel.queue_declare("full", arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    channel.basic_publish("", "full", b"one")
    channel.basic_publish("", "full", b"two")
    assert channel.is_open
    method, _, body = channel.basic_get("full", auto_ack=True)
    assert (body, method.message_count) == (b"one", 0)


def test_under_confirms_a_publish_returns_only_once_another_connection_can_see_the_message(
        connection: pika.BlockingConnection, channel: pika.BlockingChannel, db_path: str) -> None:
    channel.queue_declare("jobs")
    channel.confirm_delivery()
    with litemq.connect(db_path) as reader:
        for n in range(20):
            channel.basic_publish("", "jobs", b"job-%d" % n)
            delivery = reader.get("jobs", auto_ack=True)  # at once: no wait, no retry
            assert delivery is not None and delivery.body == b"job-%d" % n
