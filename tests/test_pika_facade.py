"""litemq.pika: pika's blocking API over a litemq file. A pika program changes its import and runs unchanged.

Every test opens its broker through ``URLParameters('sqlite:///' + path)`` (a PostgreSQL URL as it is) unless it
tests how the file is chosen. Names, signatures and positional order are checked against the real pika installed
beside litemq; behaviour is what pika over RabbitMQ does. Deliveries are driven by the facade's own event loop
(process_data_events, start_consuming, consume()), on one thread unless a test is about threads. Processes that
receive Ctrl-C run as ``python -c`` subprocesses (tests/facade_workers.py), so the test sees their exit code and
stderr.
"""

from __future__ import annotations

import datetime
import inspect
import itertools
import os
import signal
import subprocess
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterator

import pika as real_pika
import pika.adapters.blocking_connection as real_blocking
import pytest

import facade_workers as workers
from engines import as_url, make_broker, sql_rows
from facade_workers import start_python, wait_for_file_from
import litemq
from litemq import pika

BOUND = 5.0
"""Seconds allowed for what normally takes milliseconds (a loaded 2-core machine must never flake)."""
START_SECONDS = 30.0
"""Seconds allowed for a fresh Python process to start and reach its first delivery."""


@pytest.fixture
def params(db_path: str) -> pika.URLParameters:
    make_broker(db_path)  # the connections open it at once
    return pika.URLParameters(as_url(db_path))


@pytest.fixture
def connection(params: pika.URLParameters) -> Iterator[pika.BlockingConnection]:
    opened = pika.BlockingConnection(params)
    yield opened
    if opened.is_open:
        opened.close()


@pytest.fixture
def channel(connection: pika.BlockingConnection) -> pika.BlockingChannel:
    return connection.channel()


@pytest.fixture
def second(params: pika.URLParameters) -> Iterator[pika.BlockingConnection]:
    """Another facade connection to the same file, as another program would have."""
    opened = pika.BlockingConnection(params)
    yield opened
    if opened.is_open:
        opened.close()


def ready(db_path: str, queue: str) -> int:
    """Ready messages in ``queue``, seen from outside through a fresh native connection."""
    with litemq.connect(db_path) as inspector:
        return inspector.declare_queue(queue, passive=True).message_count


def stored(db_path: str, queue: str) -> int:
    """Every message row of ``queue``, ready or leased."""
    ((count,),) = sql_rows(db_path, "SELECT count(*) FROM litemq_messages WHERE queue = ?", (queue,))
    return count


def stored_once_acked(db_path: str, queue: str, expected: int) -> int:
    """``stored`` once the acks made so far are committed: basic_ack is fire-and-forget, as on RabbitMQ, and the
    connection's background thread commits it within milliseconds when nothing else writes (polled up to 5 s)."""
    deadline = time.monotonic() + 5.0
    while (count := stored(db_path, queue)) != expected and time.monotonic() < deadline:
        time.sleep(0.002)
    return count


class Recorder:
    """An on_message_callback that records (channel, method, properties, body) and can run an action."""

    def __init__(self, action: Any = None) -> None:
        self.calls: list[tuple[Any, Any, Any, bytes]] = []
        self.action = action

    def __call__(self, ch: Any, method: Any, properties: Any, body: bytes) -> None:
        self.calls.append((ch, method, properties, body))
        if self.action is not None:
            self.action(ch, method, properties, body)

    @property
    def bodies(self) -> list[bytes]:
        return [call[3] for call in self.calls]


def pump_until(connection: pika.BlockingConnection, condition: Any, timeout: float = BOUND) -> None:
    """Run the event loop until ``condition()`` holds; fails after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        left = deadline - time.monotonic()
        assert left > 0, "the event loop never delivered what the test waited for"
        connection.process_data_events(time_limit=min(left, 0.5))


def parameters_of(function: Any) -> list[tuple[str, Any]]:
    return [(p.name, p.default) for p in inspect.signature(function).parameters.values()
            if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]


# ---------------------------------------------------------------------------------------------------------------
# Choosing the file: ConnectionParameters, URLParameters
# ---------------------------------------------------------------------------------------------------------------

PIKA_CONNECTION_ARGUMENTS = {
    "host": "rabbit.example.com", "port": 5673, "virtual_host": "/prod",
    "credentials": pika.PlainCredentials("app", "secret"), "channel_max": 100, "frame_max": 131072,
    "heartbeat": 30, "ssl_options": None, "connection_attempts": 3, "retry_delay": 2.0, "socket_timeout": 10.0,
    "stack_timeout": 15.0, "locale": "en_US", "blocked_connection_timeout": 300,
    "client_properties": {"connection_name": "worker"}, "tcp_options": {"TCP_KEEPIDLE": 60},
}


def test_connection_parameters_accept_every_argument_pika_takes_and_open_the_file_named_by_litemq_url(
        db_path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    pika_names = [name for name, _ in parameters_of(real_pika.ConnectionParameters.__init__)][1:]
    assert sorted(pika_names) == sorted(PIKA_CONNECTION_ARGUMENTS)  # the list below is all of pika's
    monkeypatch.setenv("LITEMQ_URL", db_path)
    parameters = pika.ConnectionParameters(**PIKA_CONNECTION_ARGUMENTS)
    assert (parameters.host, parameters.port, parameters.virtual_host) == ("rabbit.example.com", 5673, "/prod")
    assert parameters.credentials.username == "app"
    with pika.BlockingConnection(parameters) as connection:
        connection.channel().queue_declare("hello")
    assert ready(db_path, "hello") == 0  # the queue is in $LITEMQ_URL's file


def test_connection_parameters_take_pikas_arguments_in_pikas_positional_order() -> None:
    credentials = pika.PlainCredentials("guest", "guest")
    # host, port, virtual_host, credentials, channel_max, frame_max, heartbeat
    parameters = pika.ConnectionParameters("localhost", 5672, "/", credentials, 2047, 131072, 60)
    assert (parameters.host, parameters.port, parameters.credentials) == ("localhost", 5672, credentials)
    assert (parameters.channel_max, parameters.frame_max, parameters.heartbeat) == (2047, 131072, 60)


@pytest.mark.sqlite_only
def test_litemq_url_may_be_an_sqlite_url(db_path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LITEMQ_URL", as_url(db_path))
    with pika.BlockingConnection(pika.ConnectionParameters("localhost")) as connection:
        connection.channel().queue_declare("hello")
    assert ready(db_path, "hello") == 0


def test_without_litemq_url_connection_parameters_open_litemq_db_in_the_working_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LITEMQ_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    with pika.BlockingConnection(pika.ConnectionParameters(host="localhost")) as connection:
        connection.channel().queue_declare("hello")
    assert ready(str(tmp_path / "litemq.db"), "hello") == 0


def test_a_blocking_connection_with_no_parameters_opens_the_default_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LITEMQ_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    with pika.BlockingConnection() as connection:
        connection.channel().queue_declare("hello")
    assert ready(str(tmp_path / "litemq.db"), "hello") == 0


def test_url_parameters_open_the_file_of_an_sqlite_url_whatever_litemq_url_says(
        db_path: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LITEMQ_URL", str(tmp_path / "elsewhere.db"))
    with pika.BlockingConnection(pika.URLParameters(as_url(db_path))) as connection:
        connection.channel().queue_declare("hello")
    assert ready(db_path, "hello") == 0
    assert not (tmp_path / "elsewhere.db").exists()


@pytest.mark.sqlite_only
def test_url_parameters_accept_a_plain_path(db_path: str) -> None:
    with pika.BlockingConnection(pika.URLParameters(db_path)) as connection:
        connection.channel().queue_declare("hello")
    assert ready(db_path, "hello") == 0


@pytest.mark.parametrize("url", ["amqp://guest:guest@localhost:5672/%2F", "amqps://rabbit.example.com/"])
def test_an_amqp_url_is_refused_with_a_value_error_that_says_real_pika_is_needed(
        url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="pika"):
        pika.URLParameters(url)
    assert list(tmp_path.iterdir()) == []  # nothing was created


# ---------------------------------------------------------------------------------------------------------------
# Properties, delivery modes, spec constants
# ---------------------------------------------------------------------------------------------------------------

def test_basic_properties_take_pikas_fields_in_pikas_positional_order() -> None:
    assert parameters_of(pika.BasicProperties.__init__) == parameters_of(real_pika.BasicProperties.__init__)


def test_every_basic_property_survives_basic_publish_and_basic_get(channel: pika.BlockingChannel) -> None:
    sent = pika.BasicProperties(
        content_type="application/json", content_encoding="utf-8",
        headers={"str": "v", "int": 7, "bool": True, "decimal": Decimal("1.5"), "list": [1, "a"],
                 "nested": {"k": "v"}, "none": None, "bytes": b"\x00\xff", "long": 2 ** 40},
        delivery_mode=2, priority=5, correlation_id="corr-1", reply_to="replies", expiration="60000",
        message_id="msg-1", timestamp=1700000000, type="order.created", user_id="guest", app_id="shop",
        cluster_id="c1")
    channel.queue_declare("props")
    channel.basic_publish("", "props", b"{}", sent)
    method, received, body = channel.basic_get("props", auto_ack=True)
    assert isinstance(received, pika.BasicProperties)
    assert vars(received) == vars(sent)
    assert body == b"{}"


@pytest.mark.parametrize("value", [1.5, (1, 2), {1, 2}, bytearray(b"ab"), 2 ** 63, [0.5]],
                         ids=["float", "tuple", "set", "bytearray", "int past 64 bits", "float in a list"])
def test_a_header_value_pika_cannot_encode_is_refused_as_pika_refuses_it(
        channel: pika.BlockingChannel, db_path: str, value: Any) -> None:
    # Code tried on litemq.pika must fail here as it would with the real pika, which cannot put these on the wire.
    channel.queue_declare("headers")
    with pytest.raises(pika.exceptions.UnsupportedAMQPFieldException):
        channel.basic_publish("", "headers", b"x", pika.BasicProperties(headers={"h": value}))
    assert stored(db_path, "headers") == 0 and channel.is_open


def test_a_datetime_header_comes_back_as_rabbitmq_gives_it_whole_seconds_in_utc(
        channel: pika.BlockingChannel) -> None:
    channel.queue_declare("dated")
    sent = datetime.datetime(2024, 1, 2, 3, 4, 5, 678901)  # naive: pika sends it as UTC
    channel.basic_publish("", "dated", b"x", pika.BasicProperties(headers={"at": sent, "in": [{"at": sent}]}))
    headers = channel.basic_get("dated", auto_ack=True)[1].headers
    expected = datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    assert headers == {"at": expected, "in": [{"at": expected}]}


def test_basic_properties_changed_between_publishes_are_published_as_they_are(channel: pika.BlockingChannel) -> None:
    properties = pika.BasicProperties(delivery_mode=2, priority=1)
    channel.queue_declare("changing")
    channel.basic_publish("", "changing", b"first", properties)
    properties.priority = 3
    properties.app_id = "shop"
    channel.basic_publish("", "changing", b"second", properties)
    received = [channel.basic_get("changing", auto_ack=True)[1] for _ in range(2)]
    assert [(p.delivery_mode, p.priority, p.app_id) for p in received] == [(2, 1, None), (2, 3, "shop")]


@pytest.mark.parametrize("field, bad", [("priority", True), ("delivery_mode", True), ("delivery_mode", 2.0)])
def test_a_property_equal_to_a_good_one_but_of_the_wrong_type_is_refused_after_the_good_one(
        channel: pika.BlockingChannel, field: str, bad: Any) -> None:
    channel.queue_declare("typed")
    good = {"priority": 1, "delivery_mode": 2}[field]
    channel.basic_publish("", "typed", b"ok", pika.BasicProperties(**{field: good}))
    with pytest.raises(TypeError, match=field):
        channel.basic_publish("", "typed", b"bad", pika.BasicProperties(**{field: bad}))


def test_a_message_without_properties_arrives_with_every_property_none(channel: pika.BlockingChannel) -> None:
    channel.queue_declare("plain")
    channel.basic_publish("", "plain", b"x")
    _, received, _ = channel.basic_get("plain", auto_ack=True)
    assert all(value is None for value in vars(received).values())


@pytest.mark.parametrize("mode, stored_as", [(pika.DeliveryMode.Persistent, 2), (pika.DeliveryMode.Transient, 1),
                                             (pika.spec.PERSISTENT_DELIVERY_MODE, 2)])
def test_delivery_modes_are_accepted_as_pikas_enum_or_constants(
        channel: pika.BlockingChannel, mode: Any, stored_as: int) -> None:
    channel.queue_declare("modes")
    channel.basic_publish("", "modes", b"x", pika.BasicProperties(delivery_mode=mode))
    _, received, _ = channel.basic_get("modes", auto_ack=True)
    assert received.delivery_mode == stored_as


def test_spec_constants_have_pikas_values() -> None:
    assert pika.spec.PERSISTENT_DELIVERY_MODE == 2 == real_pika.spec.PERSISTENT_DELIVERY_MODE
    assert pika.spec.TRANSIENT_DELIVERY_MODE == 1 == real_pika.spec.TRANSIENT_DELIVERY_MODE
    assert pika.DeliveryMode.Persistent.value == real_pika.DeliveryMode.Persistent.value
    assert {t.name: t.value for t in pika.ExchangeType} == {
        t.name: t.value for t in real_pika.exchange_type.ExchangeType}


# ---------------------------------------------------------------------------------------------------------------
# Exceptions
# ---------------------------------------------------------------------------------------------------------------

def test_every_pika_exception_exists_by_name_with_the_same_ancestry_and_under_litemqs_root() -> None:
    checked = 0
    for name, real in vars(real_pika.exceptions).items():
        if not (inspect.isclass(real) and issubclass(real, BaseException)
                and real.__module__ == real_pika.exceptions.__name__):
            continue
        ours = getattr(pika.exceptions, name, None)
        assert ours is not None, f"litemq.pika.exceptions has no {name}"
        real_ancestry = [c.__name__ for c in real.__mro__ if c.__module__ == real_pika.exceptions.__name__]
        our_ancestry = [c.__name__ for c in ours.__mro__ if c.__module__ == pika.exceptions.__name__]
        assert our_ancestry == real_ancestry, name
        assert issubclass(ours, litemq.LiteMQError), name
        checked += 1
    assert checked > 30  # pika 1.4 has about 40


def test_channel_closed_by_broker_carries_reply_code_and_reply_text() -> None:
    error = pika.exceptions.ChannelClosedByBroker(404, "NOT_FOUND - no queue 'x'")
    assert (error.reply_code, error.reply_text) == (404, "NOT_FOUND - no queue 'x'")
    assert error.args == (404, "NOT_FOUND - no queue 'x'")
    assert isinstance(error, pika.exceptions.ChannelClosed)
    assert isinstance(error, pika.exceptions.AMQPChannelError)


# ---------------------------------------------------------------------------------------------------------------
# BlockingConnection: channels, closing, the event loop, timers, thread-safe callbacks
# ---------------------------------------------------------------------------------------------------------------

def test_the_connection_and_channel_methods_have_pikas_signatures() -> None:
    real_connection = real_blocking.BlockingConnection
    for name in ("channel", "close", "process_data_events", "sleep", "add_callback_threadsafe", "call_later",
                 "remove_timeout"):
        assert parameters_of(getattr(pika.BlockingConnection, name)) == \
            parameters_of(getattr(real_connection, name)), name


def test_channel_opens_numbered_open_channels(connection: pika.BlockingConnection) -> None:
    first, second_channel = connection.channel(), connection.channel()
    assert first.is_open and not first.is_closed
    assert first.channel_number != second_channel.channel_number
    assert first.connection is connection


def test_a_new_channel_takes_the_lowest_free_number_as_pika_gives_it(connection: pika.BlockingConnection) -> None:
    first, second = connection.channel(), connection.channel()
    first.close()
    again = connection.channel()
    numbers = [second.channel_number, again.channel_number, connection.channel().channel_number]
    assert numbers == [2, 1, 3]


def test_close_closes_the_connection_and_its_channels_and_a_second_close_is_refused(
        connection: pika.BlockingConnection) -> None:
    ch = connection.channel()
    assert connection.is_open and not connection.is_closed
    connection.close()
    assert connection.is_closed and not connection.is_open
    assert ch.is_closed
    with pytest.raises(pika.exceptions.ConnectionWrongStateError):
        connection.close()
    with pytest.raises(pika.exceptions.ChannelWrongStateError):
        ch.queue_declare("late")
    with pytest.raises(pika.exceptions.ConnectionWrongStateError):
        connection.channel()


def test_closing_the_connection_returns_unacked_deliveries(params: pika.URLParameters, db_path: str) -> None:
    with pika.BlockingConnection(params) as connection:
        ch = connection.channel()
        ch.queue_declare("jobs")
        ch.basic_publish("", "jobs", b"job")
        assert ch.basic_get("jobs")[2] == b"job"
        assert connection.is_open
    assert connection.is_closed
    assert ready(db_path, "jobs") == 1


def test_process_data_events_dispatches_a_ready_delivery_and_returns(
        connection: pika.BlockingConnection, channel: pika.BlockingChannel) -> None:
    channel.queue_declare("jobs")
    channel.basic_publish("", "jobs", b"job")
    recorder = Recorder()
    channel.basic_consume("jobs", recorder, auto_ack=True)
    connection.process_data_events(time_limit=BOUND)
    assert recorder.bodies == [b"job"]


def test_process_data_events_with_nothing_to_do_waits_its_time_limit(
        connection: pika.BlockingConnection, channel: pika.BlockingChannel) -> None:
    channel.queue_declare("idle")
    recorder = Recorder()
    channel.basic_consume("idle", recorder)
    started = time.monotonic()
    connection.process_data_events(time_limit=0.2)
    assert time.monotonic() - started >= 0.2
    connection.process_data_events()  # time_limit=0: returns at once
    assert recorder.calls == []


@pytest.mark.parametrize("consuming", ["nothing", "with a generator"])
def test_waiting_for_events_without_callback_consumers_sleeps_instead_of_spinning(
        connection: pika.BlockingConnection, channel: pika.BlockingChannel, consuming: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    channel.queue_declare("idle")
    if consuming == "with a generator":
        assert next(channel.consume("idle", inactivity_timeout=0.01)) == (None, None, None)
    looks = []
    dispatch = connection._dispatch
    monkeypatch.setattr(connection, "_dispatch", lambda: looks.append(1) or dispatch())
    started = time.monotonic()
    connection.sleep(0.3)
    assert time.monotonic() - started >= 0.3
    assert len(looks) <= 3  # it looked, slept its time out, and looked again: a spinning loop looks thousands of times
    ran: list[str] = []
    connection.add_callback_threadsafe(lambda: ran.append("callback"))
    connection.process_data_events(time_limit=BOUND)
    assert ran == ["callback"]


def test_sleep_dispatches_deliveries_while_it_sleeps(
        connection: pika.BlockingConnection, channel: pika.BlockingChannel) -> None:
    channel.queue_declare("jobs")
    recorder = Recorder()
    channel.basic_consume("jobs", recorder, auto_ack=True)
    channel.basic_publish("", "jobs", b"during sleep")
    started = time.monotonic()
    connection.sleep(0.2)
    assert time.monotonic() - started >= 0.2
    assert recorder.bodies == [b"during sleep"]


def test_call_later_runs_from_the_event_loop_and_remove_timeout_cancels(
        connection: pika.BlockingConnection) -> None:
    ran: list[str] = []
    removed = connection.call_later(0.01, lambda: ran.append("removed"))
    connection.call_later(0.02, lambda: ran.append("kept"))
    connection.remove_timeout(removed)
    assert ran == []  # nothing runs outside the event loop
    pump_until(connection, lambda: ran)
    connection.process_data_events(time_limit=0.05)
    assert ran == ["kept"]


def test_add_callback_threadsafe_from_another_thread_wakes_start_consuming_promptly(
        connection: pika.BlockingConnection, channel: pika.BlockingChannel) -> None:
    channel.queue_declare("idle")
    channel.basic_consume("idle", Recorder())
    ran_in: list[threading.Thread] = []
    added_at: list[float] = []

    def stop() -> None:
        ran_in.append(threading.current_thread())
        channel.stop_consuming()

    def from_other_thread() -> None:
        time.sleep(0.1)  # let the main thread go to sleep in start_consuming
        added_at.append(time.monotonic())
        connection.add_callback_threadsafe(stop)

    safety = connection.call_later(BOUND * 2, channel.stop_consuming)  # a broken wake-up fails instead of hanging
    thread = threading.Thread(target=from_other_thread)
    thread.start()
    channel.start_consuming()
    returned_at = time.monotonic()
    thread.join(BOUND)
    connection.remove_timeout(safety)
    assert ran_in == [threading.main_thread()]
    assert returned_at - added_at[0] < BOUND
    assert channel.consumer_tags == []


# ---------------------------------------------------------------------------------------------------------------
# BlockingChannel: signatures
# ---------------------------------------------------------------------------------------------------------------

CHANNEL_METHODS = (
    "exchange_declare", "exchange_delete", "exchange_bind", "exchange_unbind", "queue_declare", "queue_delete",
    "queue_purge", "queue_bind", "queue_unbind", "basic_publish", "basic_consume", "basic_cancel",
    "start_consuming", "stop_consuming", "consume", "cancel", "basic_get", "basic_ack", "basic_nack",
    "basic_reject", "basic_qos", "basic_recover", "confirm_delivery", "get_waiting_message_count",
    "add_on_return_callback", "add_on_cancel_callback", "close",
)


@pytest.mark.parametrize("name", CHANNEL_METHODS)
def test_channel_methods_take_pikas_parameters_in_pikas_order(name: str) -> None:
    real = parameters_of(getattr(real_blocking.BlockingChannel, name))
    ours = parameters_of(getattr(pika.BlockingChannel, name))
    assert [n for n, _ in ours] == [n for n, _ in real]
    for (n, our_default), (_, real_default) in zip(ours, real):
        if real_default is not inspect.Parameter.empty:  # optional in pika: optional with the same default here
            assert our_default == real_default, n


# ---------------------------------------------------------------------------------------------------------------
# BlockingChannel: exchanges
# ---------------------------------------------------------------------------------------------------------------

def test_exchange_declare_takes_pikas_positional_order_and_returns_declare_ok(
        connection: pika.BlockingConnection, channel: pika.BlockingChannel) -> None:
    frame = channel.exchange_declare("events", "fanout", False, True)  # exchange, type, passive, durable
    assert isinstance(frame.method, pika.spec.Exchange.DeclareOk)
    channel.exchange_declare("events", pika.ExchangeType.fanout, durable=True)  # the same: no error
    channel.exchange_declare("events", passive=True)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as closed:
        connection.channel().exchange_declare("events", "fanout")  # durable differs
    assert closed.value.reply_code == 406


def test_exchange_delete_takes_if_unused_second_and_returns_delete_ok(
        connection: pika.BlockingConnection, channel: pika.BlockingChannel) -> None:
    channel.exchange_declare("events", "fanout")
    channel.queue_declare("audit")
    channel.queue_bind("audit", "events")
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as closed:
        channel.exchange_delete("events", True)
    assert closed.value.reply_code == 406
    ch = connection.channel()
    assert isinstance(ch.exchange_delete("events").method, pika.spec.Exchange.DeleteOk)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as gone:
        ch.exchange_declare("events", passive=True)
    assert gone.value.reply_code == 404


def test_exchange_bind_routes_from_source_to_destination_and_exchange_unbind_stops_it(
        channel: pika.BlockingChannel) -> None:
    channel.exchange_declare("source", "topic")
    channel.exchange_declare("destination", "fanout")
    channel.queue_declare("sink")
    channel.queue_bind("sink", "destination")
    frame = channel.exchange_bind("destination", "source", "a.*")  # destination, source, routing_key
    assert isinstance(frame.method, pika.spec.Exchange.BindOk)
    channel.basic_publish("source", "a.b", b"matches")
    channel.basic_publish("source", "b.c", b"does not match")
    assert channel.basic_get("sink", auto_ack=True)[2] == b"matches"
    assert channel.basic_get("sink", auto_ack=True) == (None, None, None)
    frame = channel.exchange_unbind("destination", "source", "a.*")
    assert isinstance(frame.method, pika.spec.Exchange.UnbindOk)
    channel.basic_publish("source", "a.b", b"unbound")
    assert channel.basic_get("sink", auto_ack=True) == (None, None, None)


# ---------------------------------------------------------------------------------------------------------------
# BlockingChannel: queues
# ---------------------------------------------------------------------------------------------------------------

def test_queue_declare_of_an_empty_name_returns_a_server_named_queue(channel: pika.BlockingChannel) -> None:
    frame = channel.queue_declare("", exclusive=True)
    assert isinstance(frame.method, pika.spec.Queue.DeclareOk)
    assert frame.method.queue.startswith("amq.gen-")
    assert (frame.method.message_count, frame.method.consumer_count) == (0, 0)
    assert channel.queue_declare(frame.method.queue, passive=True).method.queue == frame.method.queue


def test_queue_declare_reports_ready_messages_and_consumers(
        connection: pika.BlockingConnection, channel: pika.BlockingChannel) -> None:
    channel.queue_declare("jobs")
    channel.basic_publish("", "jobs", b"1")
    channel.basic_publish("", "jobs", b"2")
    connection.channel().basic_consume("jobs", Recorder())  # not dispatched: it has taken nothing yet
    method = channel.queue_declare("jobs", passive=True).method
    assert (method.queue, method.message_count, method.consumer_count) == ("jobs", 2, 1)


def test_queue_declare_takes_pikas_positional_order(
        channel: pika.BlockingChannel, second: pika.BlockingConnection) -> None:
    channel.queue_declare("durable", False, True)  # queue, passive, durable
    channel.queue_declare("durable", durable=True)  # the same: no error
    channel.queue_declare("mine", False, False, True)  # queue, passive, durable, exclusive
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as locked:
        second.channel().queue_declare("mine", passive=True)
    assert locked.value.reply_code == 405
    channel.queue_declare("temporary", False, False, False, True, {"x-lease-ms": 5000})  # ..., auto_delete, arguments
    channel.queue_declare("temporary", auto_delete=True, arguments={"x-lease-ms": 5000})


def test_queue_delete_takes_if_unused_and_if_empty_in_order_and_reports_the_messages_deleted(
        connection: pika.BlockingConnection, channel: pika.BlockingChannel, db_path: str) -> None:
    channel.queue_declare("jobs")
    channel.basic_publish("", "jobs", b"1")
    channel.basic_publish("", "jobs", b"2")
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as not_empty:
        channel.queue_delete("jobs", False, True)  # queue, if_unused, if_empty
    assert not_empty.value.reply_code == 406
    ch = connection.channel()
    frame = ch.queue_delete("jobs")
    assert isinstance(frame.method, pika.spec.Queue.DeleteOk)
    assert frame.method.message_count == 2
    assert stored(db_path, "jobs") == 0


def test_queue_purge_deletes_ready_messages_and_reports_how_many(channel: pika.BlockingChannel) -> None:
    channel.queue_declare("jobs")
    for body in (b"1", b"2", b"3"):
        channel.basic_publish("", "jobs", body)
    frame = channel.queue_purge("jobs")
    assert isinstance(frame.method, pika.spec.Queue.PurgeOk)
    assert frame.method.message_count == 3
    assert channel.basic_get("jobs") == (None, None, None)


def test_queue_bind_without_a_routing_key_binds_with_the_queue_name_and_queue_unbind_likewise(
        channel: pika.BlockingChannel) -> None:
    channel.exchange_declare("direct-logs", "direct")
    channel.queue_declare("errors")
    frame = channel.queue_bind("errors", "direct-logs")
    assert isinstance(frame.method, pika.spec.Queue.BindOk)
    channel.basic_publish("direct-logs", "errors", b"by queue name")
    channel.basic_publish("direct-logs", "other", b"elsewhere")
    assert channel.basic_get("errors", auto_ack=True)[2] == b"by queue name"
    assert channel.basic_get("errors", auto_ack=True) == (None, None, None)
    frame = channel.queue_unbind("errors", "direct-logs")
    assert isinstance(frame.method, pika.spec.Queue.UnbindOk)
    channel.basic_publish("direct-logs", "errors", b"unbound")
    assert channel.basic_get("errors", auto_ack=True) == (None, None, None)


def test_queue_bind_takes_a_routing_key_third(channel: pika.BlockingChannel) -> None:
    channel.exchange_declare("topic-logs", "topic")
    channel.queue_declare("kern")
    channel.queue_bind("kern", "topic-logs", "kern.*")
    channel.basic_publish("topic-logs", "kern.critical", b"routed")
    assert channel.basic_get("kern", auto_ack=True)[2] == b"routed"


# ---------------------------------------------------------------------------------------------------------------
# BlockingChannel: publishing and getting
# ---------------------------------------------------------------------------------------------------------------

def test_basic_publish_takes_exchange_routing_key_body_properties_mandatory_in_order(
        channel: pika.BlockingChannel) -> None:
    channel.queue_declare("jobs")
    assert channel.basic_publish("", "jobs", b"job", pika.BasicProperties(message_id="m1"), True) is None
    _, properties, body = channel.basic_get("jobs", auto_ack=True)
    assert (properties.message_id, body) == ("m1", b"job")


def test_a_str_body_is_published_as_utf8_and_delivered_as_bytes(channel: pika.BlockingChannel) -> None:
    channel.queue_declare("jobs")
    channel.basic_publish("", "jobs", "héllo")
    assert channel.basic_get("jobs", auto_ack=True)[2] == "héllo".encode("utf-8")


def test_basic_get_returns_get_ok_properties_and_body_with_the_count_left(channel: pika.BlockingChannel) -> None:
    channel.exchange_declare("orders", "direct")
    channel.queue_declare("jobs")
    channel.queue_bind("jobs", "orders", "new")
    channel.basic_publish("orders", "new", b"first")
    channel.basic_publish("orders", "new", b"second")
    method, properties, body = channel.basic_get("jobs")
    assert isinstance(method, pika.spec.Basic.GetOk)
    assert isinstance(properties, pika.BasicProperties)
    assert body == b"first" and isinstance(body, bytes)
    assert (method.exchange, method.routing_key, method.redelivered, method.message_count) == \
        ("orders", "new", False, 1)
    assert isinstance(method.delivery_tag, int)
    channel.basic_ack(method.delivery_tag)
    assert channel.basic_get("jobs", auto_ack=True)[0].message_count == 0


def test_basic_get_on_an_empty_queue_returns_three_nones(channel: pika.BlockingChannel) -> None:
    channel.queue_declare("empty")
    assert channel.basic_get("empty") == (None, None, None)


# ---------------------------------------------------------------------------------------------------------------
# BlockingChannel: settling (ack, nack, reject)
# ---------------------------------------------------------------------------------------------------------------

def get_three(channel: pika.BlockingChannel) -> list[int]:
    channel.queue_declare("jobs")
    for body in (b"1", b"2", b"3"):
        channel.basic_publish("", "jobs", body)
    return [channel.basic_get("jobs")[0].delivery_tag for _ in range(3)]


def test_basic_ack_with_multiple_acks_every_delivery_up_to_the_tag(
        channel: pika.BlockingChannel, db_path: str) -> None:
    tags = get_three(channel)
    channel.basic_ack(tags[1], True)  # delivery_tag, multiple
    assert stored_once_acked(db_path, "jobs", 1) == 1
    channel.basic_ack(tags[2])
    assert stored_once_acked(db_path, "jobs", 0) == 0


def test_basic_nack_requeues_by_default_and_the_message_comes_back_redelivered(
        channel: pika.BlockingChannel) -> None:
    channel.queue_declare("jobs")
    channel.basic_publish("", "jobs", b"job")
    method, _, _ = channel.basic_get("jobs")
    channel.basic_nack(method.delivery_tag)
    again, _, body = channel.basic_get("jobs")
    assert (body, again.redelivered) == (b"job", True)


def test_basic_nack_with_multiple_and_without_requeue_drops_every_delivery_up_to_the_tag(
        channel: pika.BlockingChannel, db_path: str) -> None:
    tags = get_three(channel)
    channel.basic_nack(tags[1], True, False)  # delivery_tag, multiple, requeue
    assert stored(db_path, "jobs") == 1
    channel.basic_nack(tags[2], False, True)
    assert ready(db_path, "jobs") == 1


def test_basic_reject_requeues_or_drops_one_delivery(channel: pika.BlockingChannel, db_path: str) -> None:
    tags = get_three(channel)
    channel.basic_reject(tags[0], False)  # delivery_tag, requeue
    channel.basic_reject(tags[1])
    assert (stored(db_path, "jobs"), ready(db_path, "jobs")) == (2, 1)
    method, _, body = channel.basic_get("jobs")
    assert (body, method.redelivered) == (b"2", True)


def test_an_unknown_delivery_tag_is_a_406_that_closes_the_channel(
        connection: pika.BlockingConnection, channel: pika.BlockingChannel) -> None:
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as closed:
        channel.basic_ack(99)
    assert closed.value.reply_code == 406
    assert channel.is_closed and connection.is_open


def test_nack_multiple_up_to_an_unknown_tag_is_a_406_and_drops_nothing(
        connection: pika.BlockingConnection, channel: pika.BlockingChannel, db_path: str) -> None:
    get_three(channel)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker, match="unknown delivery tag 10") as closed:
        channel.basic_nack(10, multiple=True, requeue=False)
    assert closed.value.reply_code == 406
    assert (stored(db_path, "jobs"), ready(db_path, "jobs")) == (3, 3)  # the closed channel gave all three back


# ---------------------------------------------------------------------------------------------------------------
# BlockingChannel: consuming with callbacks
# ---------------------------------------------------------------------------------------------------------------

def test_basic_consume_returns_the_consumer_tag_and_the_callback_gets_channel_method_properties_body(
        connection: pika.BlockingConnection, channel: pika.BlockingChannel) -> None:
    channel.exchange_declare("orders", "direct")
    channel.queue_declare("jobs")
    channel.queue_bind("jobs", "orders", "new")
    recorder = Recorder()
    tag = channel.basic_consume("jobs", recorder)
    assert isinstance(tag, str) and tag
    assert channel.consumer_tags == [tag]
    channel.basic_publish("orders", "new", b"job", pika.BasicProperties(correlation_id="c"))
    pump_until(connection, lambda: recorder.calls)
    ch, method, properties, body = recorder.calls[0]
    assert ch is channel
    assert isinstance(method, pika.spec.Basic.Deliver)
    assert (method.consumer_tag, method.redelivered, method.exchange, method.routing_key) == \
        (tag, False, "orders", "new")
    assert isinstance(method.delivery_tag, int)
    assert isinstance(properties, pika.BasicProperties) and properties.correlation_id == "c"
    assert body == b"job" and isinstance(body, bytes)
    channel.basic_ack(method.delivery_tag)


def test_consumers_on_different_channels_of_one_connection_take_turns(
        connection: pika.BlockingConnection, channel: pika.BlockingChannel) -> None:
    # RabbitMQ serves every consumer as it has room, whatever its channel; one channel's consumers must not run
    # their queues dry while another channel's wait.
    order: list[str] = []

    def on_message(ch: pika.BlockingChannel, method: Any, properties: Any, body: bytes) -> None:
        order.append(f"{method.routing_key}:{body.decode()}")
        ch.basic_ack(method.delivery_tag)

    for queue in ("a", "b"):
        channel.queue_declare(queue)
        for n in range(3):
            channel.basic_publish("", queue, str(n).encode())
        own = connection.channel()
        own.basic_qos(prefetch_count=1)
        own.basic_consume(queue, on_message)
    pump_until(connection, lambda: len(order) == 6)
    assert order == ["a:0", "b:0", "a:1", "b:1", "a:2", "b:2"]


def test_basic_consume_takes_queue_callback_auto_ack_exclusive_consumer_tag_in_order(
        connection: pika.BlockingConnection, channel: pika.BlockingChannel, db_path: str) -> None:
    channel.queue_declare("jobs")
    recorder = Recorder()
    tag = channel.basic_consume("jobs", recorder, True, True, "my-tag")
    assert tag == "my-tag"
    channel.basic_publish("", "jobs", b"job")
    pump_until(connection, lambda: recorder.calls)
    assert recorder.calls[0][1].consumer_tag == "my-tag"
    assert stored(db_path, "jobs") == 0  # auto-acked
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
        connection.channel().basic_consume("jobs", Recorder())  # the exclusive consumer keeps others out
    assert refused.value.reply_code == 403


def test_a_redelivered_message_arrives_with_redelivered_set(
        connection: pika.BlockingConnection, channel: pika.BlockingChannel) -> None:
    channel.queue_declare("jobs")
    channel.basic_publish("", "jobs", b"job")
    recorder = Recorder(lambda ch, method, properties, body: ch.basic_nack(method.delivery_tag)
                        if not method.redelivered else ch.basic_ack(method.delivery_tag))
    channel.basic_consume("jobs", recorder)
    pump_until(connection, lambda: len(recorder.calls) == 2)
    assert [call[1].redelivered for call in recorder.calls] == [False, True]


def test_stop_consuming_from_a_callback_ends_start_consuming_and_unseen_messages_go_back(
        channel: pika.BlockingChannel, db_path: str) -> None:
    channel.queue_declare("jobs")
    for body in (b"1", b"2", b"3"):
        channel.basic_publish("", "jobs", body)

    def ack_and_stop(ch: Any, method: Any, properties: Any, body: bytes) -> None:
        ch.basic_ack(method.delivery_tag)
        ch.stop_consuming()

    recorder = Recorder(ack_and_stop)
    channel.basic_consume("jobs", recorder)
    channel.start_consuming()
    assert recorder.bodies == [b"1"]
    assert channel.consumer_tags == []
    assert ready(db_path, "jobs") == 2


def test_start_consuming_from_inside_a_callback_raises_reentrancy_error(
        connection: pika.BlockingConnection, channel: pika.BlockingChannel) -> None:
    channel.queue_declare("jobs")
    channel.basic_publish("", "jobs", b"job")
    outcome: list[object] = []

    def nested(ch: Any, method: Any, properties: Any, body: bytes) -> None:
        safety = connection.call_later(1.0, ch.stop_consuming)  # ends a nested loop instead of hanging
        try:
            ch.start_consuming()
            outcome.append("the nested start_consuming ran")
        except pika.exceptions.ReentrancyError:
            outcome.append(pika.exceptions.ReentrancyError)
        connection.remove_timeout(safety)
        ch.stop_consuming()

    channel.basic_consume("jobs", nested, auto_ack=True)
    channel.start_consuming()
    assert outcome == [pika.exceptions.ReentrancyError]


def test_basic_cancel_stops_deliveries_and_leaves_messages_in_the_queue(
        connection: pika.BlockingConnection, channel: pika.BlockingChannel, db_path: str) -> None:
    channel.queue_declare("jobs")
    recorder = Recorder()
    tag = channel.basic_consume("jobs", recorder)
    assert channel.basic_cancel(tag) == []
    channel.basic_publish("", "jobs", b"job")
    connection.process_data_events(time_limit=0.1)
    assert recorder.calls == []
    assert channel.consumer_tags == []
    assert ready(db_path, "jobs") == 1


def test_basic_cancel_of_an_auto_ack_consumer_returns_what_it_had_received_and_not_dispatched(
        channel: pika.BlockingChannel, db_path: str) -> None:
    channel.queue_declare("jobs")
    for body in (b"1", b"2", b"3"):
        channel.basic_publish("", "jobs", body)
    pending: list[Any] = []
    recorder = Recorder(lambda ch, method, properties, body: pending.extend(ch.basic_cancel(method.consumer_tag)))
    channel.basic_qos(prefetch_count=3)  # an auto-ack consumer then takes three at a time
    channel.basic_consume("jobs", recorder, auto_ack=True)
    channel.start_consuming()  # ends: the only consumer cancelled itself
    seen = recorder.bodies + [body for _, _, body in pending]
    assert sorted(seen) == [b"1", b"2", b"3"]  # nothing auto-acked was lost
    assert len(pending) == 2
    assert all(isinstance(method, pika.spec.Basic.Deliver) for method, _, _ in pending)
    assert stored(db_path, "jobs") == 3 - len(seen)


def test_basic_qos_takes_prefetch_size_then_prefetch_count_so_qos_0_1_means_one_unacked_at_a_time(
        connection: pika.BlockingConnection, channel: pika.BlockingChannel, db_path: str) -> None:
    channel.queue_declare("jobs")
    for body in (b"1", b"2", b"3"):
        channel.basic_publish("", "jobs", body)
    channel.basic_qos(0, 1)
    recorder = Recorder()
    channel.basic_consume("jobs", recorder)
    pump_until(connection, lambda: recorder.calls)
    connection.process_data_events(time_limit=0.1)
    assert recorder.bodies == [b"1"]
    assert ready(db_path, "jobs") == 2  # only one was taken
    channel.basic_ack(recorder.calls[0][1].delivery_tag)
    pump_until(connection, lambda: len(recorder.calls) == 2)
    assert recorder.bodies == [b"1", b"2"]


def test_basic_qos_with_global_qos_third_caps_the_whole_channel(
        connection: pika.BlockingConnection, channel: pika.BlockingChannel, db_path: str) -> None:
    for queue in ("a", "b"):
        channel.queue_declare(queue)
        for n in range(3):
            channel.basic_publish("", queue, b"%s%d" % (queue.encode(), n))
    channel.basic_qos(0, 2, True)  # prefetch_size, prefetch_count, global_qos
    recorder = Recorder()
    channel.basic_consume("a", recorder)
    channel.basic_consume("b", recorder)
    pump_until(connection, lambda: len(recorder.calls) == 2)
    connection.process_data_events(time_limit=0.1)
    assert len(recorder.calls) == 2
    assert ready(db_path, "a") + ready(db_path, "b") == 4


def test_basic_qos_accepts_keywords(connection: pika.BlockingConnection, channel: pika.BlockingChannel,
                                    db_path: str) -> None:
    channel.queue_declare("jobs")
    for body in (b"1", b"2", b"3"):
        channel.basic_publish("", "jobs", body)
    channel.basic_qos(prefetch_count=2)
    recorder = Recorder()
    channel.basic_consume("jobs", recorder)
    pump_until(connection, lambda: len(recorder.calls) == 2)
    assert ready(db_path, "jobs") == 1


def test_a_broker_cancel_tells_the_cancel_callback_and_ends_start_consuming(
        connection: pika.BlockingConnection, channel: pika.BlockingChannel,
        second: pika.BlockingConnection) -> None:
    channel.queue_declare("jobs")
    told: list[Any] = []
    channel.add_on_cancel_callback(told.append)
    tag = channel.basic_consume("jobs", Recorder())
    second.channel().queue_delete("jobs")  # another program deletes the queue
    safety = connection.call_later(BOUND, channel.stop_consuming)  # fails instead of hanging
    channel.start_consuming()
    connection.remove_timeout(safety)
    assert len(told) == 1
    assert isinstance(told[0].method, pika.spec.Basic.Cancel)
    assert told[0].method.consumer_tag == tag
    assert channel.is_open and channel.consumer_tags == []


# ---------------------------------------------------------------------------------------------------------------
# BlockingChannel: consuming with the consume() generator
# ---------------------------------------------------------------------------------------------------------------

def test_consume_yields_method_properties_body_then_three_nones_after_inactivity_timeout(
        channel: pika.BlockingChannel) -> None:
    channel.queue_declare("jobs")
    channel.basic_publish("", "jobs", b"job", pika.BasicProperties(app_id="a"))
    generator = channel.consume("jobs", inactivity_timeout=0.1)
    method, properties, body = next(generator)
    assert isinstance(method, pika.spec.Basic.Deliver)
    assert (properties.app_id, body) == ("a", b"job")
    channel.basic_ack(method.delivery_tag)
    started = time.monotonic()
    assert next(generator) == (None, None, None)
    assert time.monotonic() - started >= 0.1
    channel.basic_publish("", "jobs", b"more")
    method, _, body = next(generator)  # the generator goes on after an idle yield
    assert body == b"more"
    channel.basic_ack(method.delivery_tag)
    assert channel.cancel() == 0
    with pytest.raises(StopIteration):
        next(generator)
    assert channel.consumer_tags == []


def test_get_waiting_message_count_and_cancel_returning_what_the_generator_held_unseen(
        channel: pika.BlockingChannel, db_path: str) -> None:
    channel.queue_declare("jobs")
    for body in (b"1", b"2", b"3"):
        channel.basic_publish("", "jobs", body)
    assert channel.get_waiting_message_count() == 0
    channel.basic_qos(prefetch_count=3)  # the generator's consumer then claims three at a time
    generator = channel.consume("jobs")
    method, _, body = next(generator)
    assert body == b"1"
    assert channel.get_waiting_message_count() == 2
    channel.cancel()
    assert channel.get_waiting_message_count() == 0
    assert ready(db_path, "jobs") == 2  # unseen ones went back; the yielded one is still unacked
    channel.basic_ack(method.delivery_tag)
    assert stored_once_acked(db_path, "jobs", 2) == 2


def test_consume_with_other_parameters_while_a_generator_runs_is_refused(channel: pika.BlockingChannel) -> None:
    channel.queue_declare("a")
    channel.queue_declare("b")
    channel.basic_publish("", "a", b"x")
    next(channel.consume("a", inactivity_timeout=0.1))
    with pytest.raises(ValueError):
        next(channel.consume("b", inactivity_timeout=0.1))


def test_the_consume_generator_ends_when_the_broker_cancels_it(
        channel: pika.BlockingChannel, second: pika.BlockingConnection) -> None:
    channel.queue_declare("jobs")
    generator = channel.consume("jobs", inactivity_timeout=0.1)
    assert next(generator) == (None, None, None)  # consuming now
    second.channel().queue_delete("jobs")
    # It ends, rather than idling on (pika sends a generator's cancel to the generator, not to the cancel callbacks).
    assert list(itertools.islice(generator, int(BOUND / 0.1))) == []
    assert channel.is_open and channel.consumer_tags == []


# ---------------------------------------------------------------------------------------------------------------
# Publisher confirms and returned messages
# ---------------------------------------------------------------------------------------------------------------

def test_an_unroutable_mandatory_message_goes_to_the_return_callback(
        connection: pika.BlockingConnection, channel: pika.BlockingChannel) -> None:
    returned: list[tuple[Any, Any, Any, bytes]] = []
    channel.add_on_return_callback(lambda *args: returned.append(args))
    channel.basic_publish("", "nowhere", b"lost", pika.BasicProperties(message_id="m"), mandatory=True)
    channel.basic_publish("", "nowhere", b"dropped silently")  # not mandatory: no return
    pump_until(connection, lambda: returned)
    connection.process_data_events(time_limit=0.05)
    assert len(returned) == 1
    ch, method, properties, body = returned[0]
    assert ch is channel
    assert isinstance(method, pika.spec.Basic.Return)
    assert (method.reply_code, method.reply_text, method.exchange, method.routing_key) == \
        (312, "NO_ROUTE", "", "nowhere")
    assert (properties.message_id, body) == ("m", b"lost")


def test_with_confirms_an_unroutable_mandatory_publish_raises_unroutable_error(
        channel: pika.BlockingChannel, db_path: str) -> None:
    channel.queue_declare("jobs")
    assert channel.confirm_delivery() is None
    channel.basic_publish("", "jobs", b"routed", mandatory=True)  # confirmed: returns normally
    channel.basic_publish("", "nowhere", b"dropped")  # not mandatory: confirmed though unroutable
    with pytest.raises(pika.exceptions.UnroutableError) as unroutable:
        channel.basic_publish("", "nowhere", b"lost", mandatory=True)
    [message] = unroutable.value.messages
    assert (message.method.reply_code, message.body) == (312, b"lost")
    assert channel.is_open
    assert stored(db_path, "jobs") == 1


# ---------------------------------------------------------------------------------------------------------------
# Channel state: close, context manager; broker errors close the channel only
# ---------------------------------------------------------------------------------------------------------------

def test_closing_a_channel_returns_its_unacked_deliveries_and_a_second_close_is_refused(
        connection: pika.BlockingConnection, channel: pika.BlockingChannel) -> None:
    channel.queue_declare("jobs")
    channel.basic_publish("", "jobs", b"job")
    channel.basic_get("jobs")
    channel.close()
    assert channel.is_closed and not channel.is_open and connection.is_open
    with pytest.raises(pika.exceptions.ChannelWrongStateError):
        channel.close()
    method, _, body = connection.channel().basic_get("jobs")
    assert (body, method.redelivered) == (b"job", True)


def test_a_channel_is_a_context_manager_that_closes_it(connection: pika.BlockingConnection, db_path: str) -> None:
    with connection.channel() as ch:
        ch.queue_declare("jobs")
        ch.basic_publish("", "jobs", b"job")
        ch.basic_get("jobs")
        assert ch.is_open
    assert ch.is_closed and connection.is_open
    assert ready(db_path, "jobs") == 1


def reserved(ch: pika.BlockingChannel, other_ch: pika.BlockingChannel) -> None:
    ch.queue_declare("amq.mine")


def missing(ch: pika.BlockingChannel, other_ch: pika.BlockingChannel) -> None:
    ch.queue_declare("missing", passive=True)


def locked(ch: pika.BlockingChannel, other_ch: pika.BlockingChannel) -> None:
    other_ch.queue_declare("theirs", exclusive=True)
    ch.queue_purge("theirs")


def inequivalent(ch: pika.BlockingChannel, other_ch: pika.BlockingChannel) -> None:
    ch.queue_declare("jobs", durable=True)


@pytest.mark.parametrize("fail, code, name", [(reserved, 403, "ACCESS_REFUSED"), (missing, 404, "NOT_FOUND"),
                                              (locked, 405, "RESOURCE_LOCKED"),
                                              (inequivalent, 406, "PRECONDITION_FAILED")])
def test_a_broker_error_closes_that_channel_only_and_requeues_what_it_held(
        connection: pika.BlockingConnection, channel: pika.BlockingChannel, second: pika.BlockingConnection,
        db_path: str, fail: Any, code: int, name: str) -> None:
    channel.queue_declare("jobs")
    channel.basic_publish("", "jobs", b"held")
    channel.basic_publish("", "jobs", b"consumed")
    held, _, _ = channel.basic_get("jobs")
    recorder = Recorder()
    channel.basic_consume("jobs", recorder)
    pump_until(connection, lambda: recorder.calls)
    bystander = connection.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as closed:
        fail(channel, second.channel())
    assert closed.value.reply_code == code
    assert closed.value.reply_text.startswith(name)
    assert channel.is_closed and connection.is_open and bystander.is_open
    assert ready(db_path, "jobs") == 2  # both deliveries it held are back
    with pytest.raises(pika.exceptions.ChannelWrongStateError):
        channel.basic_ack(held.delivery_tag)
    with pytest.raises(pika.exceptions.ChannelWrongStateError):
        channel.basic_publish("", "jobs", b"x")
    method, _, _ = connection.channel().basic_get("jobs")
    assert method.redelivered
    assert bystander.queue_declare("jobs", passive=True).method.message_count == 1


# ---------------------------------------------------------------------------------------------------------------
# Ctrl-C during start_consuming
# ---------------------------------------------------------------------------------------------------------------



def finish(process: subprocess.Popen, timeout: float = BOUND) -> tuple[int, str]:
    """Exit code and stderr of a subprocess that should end within ``timeout`` (killed if it does not)."""
    try:
        _, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise AssertionError(f"process {process.pid} did not end within {timeout}s") from None
    return process.returncode, stderr


def test_ctrl_c_during_start_consuming_raises_keyboard_interrupt_promptly_and_close_requeues(
        db_path: str, channel: pika.BlockingChannel, tmp_path: Path, subprocess_env: dict[str, str],
        popen: list[subprocess.Popen]) -> None:
    channel.queue_declare("jobs")
    channel.basic_publish("", "jobs", b"job")
    consumer = start_python(f"w.pika_consume({db_path!r}, 'jobs', {str(tmp_path)!r}, catch=True)",
                            subprocess_env, popen)
    assert wait_for_file_from(consumer, tmp_path / "got") == "job"
    os.kill(consumer.pid, signal.SIGINT)
    code, stderr = finish(consumer)
    assert (code, stderr) == (0, "")
    assert (tmp_path / "interrupted").exists()
    assert workers.worker_errors(tmp_path) == {}
    method, _, body = channel.basic_get("jobs")  # back at once: the program closed its connection
    assert (body, method.redelivered) == (b"job", True)


def test_an_uncaught_ctrl_c_during_start_consuming_ends_the_program(
        db_path: str, channel: pika.BlockingChannel, tmp_path: Path, subprocess_env: dict[str, str],
        popen: list[subprocess.Popen]) -> None:
    channel.queue_declare("jobs")
    channel.basic_publish("", "jobs", b"job")
    consumer = start_python(f"w.pika_consume({db_path!r}, 'jobs', {str(tmp_path)!r}, catch=False)",
                            subprocess_env, popen)
    assert wait_for_file_from(consumer, tmp_path / "got") == "job"
    os.kill(consumer.pid, signal.SIGINT)
    code, stderr = finish(consumer)
    assert code == -signal.SIGINT, stderr  # Python's exit for an uncaught KeyboardInterrupt
    assert "KeyboardInterrupt" in stderr
    assert workers.worker_errors(tmp_path) == {}
    method, _, body = channel.basic_get("jobs")  # connections still open are closed at exit
    assert (body, method.redelivered) == (b"job", True)


# ---------------------------------------------------------------------------------------------------------------
# Direct reply-to (amq.rabbitmq.reply-to)
# ---------------------------------------------------------------------------------------------------------------

def test_direct_reply_to_delivers_the_servers_reply_to_the_requesting_consumer(
        connection: pika.BlockingConnection, channel: pika.BlockingChannel,
        second: pika.BlockingConnection) -> None:
    server = second.channel()
    server.queue_declare("rpc")
    replies = Recorder()
    channel.basic_consume("amq.rabbitmq.reply-to", replies, auto_ack=True)
    channel.basic_publish("", "rpc", b"ping",
                          pika.BasicProperties(reply_to="amq.rabbitmq.reply-to", correlation_id="c1"))
    method, properties, body = server.basic_get("rpc")
    assert body == b"ping"
    assert properties.reply_to.startswith("amq.rabbitmq.reply-to.")  # a name only this requester consumes
    server.basic_publish("", properties.reply_to, b"pong",
                         pika.BasicProperties(correlation_id=properties.correlation_id))
    server.basic_ack(method.delivery_tag)
    pump_until(connection, lambda: replies.calls)
    _, reply_method, reply_properties, reply_body = replies.calls[0]
    assert (reply_body, reply_properties.correlation_id) == (b"pong", "c1")
    assert reply_method.routing_key == properties.reply_to


def test_direct_reply_to_without_the_reply_consumer_is_a_406(
        connection: pika.BlockingConnection, channel: pika.BlockingChannel) -> None:
    channel.queue_declare("rpc")
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as closed:
        channel.basic_publish("", "rpc", b"ping", pika.BasicProperties(reply_to="amq.rabbitmq.reply-to"))
    assert closed.value.reply_code == 406
    assert connection.is_open


def test_direct_reply_to_must_be_consumed_with_auto_ack(
        connection: pika.BlockingConnection, channel: pika.BlockingChannel) -> None:
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as closed:
        channel.basic_consume("amq.rabbitmq.reply-to", Recorder())
    assert closed.value.reply_code == 406
    assert connection.is_open


def test_a_message_may_carry_only_the_connections_own_user_id(db_path: str) -> None:
    parameters = pika.ConnectionParameters(credentials=pika.PlainCredentials("alice", "secret"))
    parameters.path = db_path
    with pika.BlockingConnection(parameters) as connection:
        channel = connection.channel()
        channel.queue_declare("jobs")
        channel.basic_publish("", "jobs", b"mine", pika.BasicProperties(user_id="alice"))
        with pytest.raises(pika.exceptions.ChannelClosedByBroker, match="user_id") as refused:
            channel.basic_publish("", "jobs", b"forged", pika.BasicProperties(user_id="guest"))
        assert refused.value.reply_code == 406 and not channel.is_open
        method, properties, body = connection.channel().basic_get("jobs", auto_ack=True)
        assert (body, properties.user_id, method.message_count) == (b"mine", "alice", 0)
