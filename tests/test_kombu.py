"""kombu on litemq: the transport keeps exchanges, bindings, queues and acks in the broker (not in the process),
so routing, fanout and redelivery work across processes, and a consumer waits on litemq's doorbells. On both
engines: ``litemq:////abs/path.db`` names a file, ``litemq+postgresql://...`` a server."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

pytest.importorskip("kombu")

from kombu import Connection, Consumer, Exchange, Producer, Queue  # noqa: E402
from kombu.asynchronous import Hub  # noqa: E402

import kombu_workers  # noqa: E402
import litemq  # noqa: E402
import litemq.kombu  # noqa: E402
from conftest import PYTHON, Processes  # noqa: E402

WAIT = 20.0


def kombu_url(db_path: str) -> str:
    """The kombu URL of the test's broker: ``litemq:///`` and the absolute path of a file, or litemq+ and a
    PostgreSQL URL."""
    return "litemq+" + db_path if "://" in db_path else "litemq:///" + db_path


@pytest.fixture
def url(db_path: str) -> str:
    return kombu_url(db_path)


@pytest.fixture
def connection(url: str) -> Iterator[Connection]:
    with Connection(url) as conn:
        yield conn


def receive(connection: Connection, queue: str, timeout: float = WAIT) -> Any:
    """The next message's payload on ``queue`` (acked), waiting up to ``timeout`` seconds."""
    simple = connection.SimpleQueue(queue)
    try:
        message = simple.get(timeout=timeout)
        message.ack()
        return message.payload
    finally:
        simple.close()


# --- what kombu users write
def test_a_simple_queue_round_trips_the_payload_headers_and_properties(connection: Connection) -> None:
    simple = connection.SimpleQueue("simple")
    simple.put({"n": 1}, headers={"trace": "abc", "nested": {"list": [1, None]}}, correlation_id="c-1",
               reply_to="answers", priority=3)
    message = simple.get(timeout=WAIT)
    assert message.payload == {"n": 1}
    assert message.headers == {"trace": "abc", "nested": {"list": [1, None]}}
    assert message.content_type == "application/json"
    assert (message.properties["correlation_id"], message.properties["reply_to"]) == ("c-1", "answers")
    assert message.delivery_info["redelivered"] is False
    message.ack()
    with pytest.raises(simple.Empty):
        simple.get(timeout=0.1)
    simple.close()


def test_topic_routing_declared_by_one_connection_serves_another_that_never_declared(url: str) -> None:
    logs = Exchange("logs", "topic")
    with Connection(url) as declarer:
        for name, key in (("all", "#"), ("kernel", "kern.*"), ("tree", "a.#")):
            Queue(name, logs, routing_key=key)(declarer.default_channel).declare()
    with Connection(url) as other:  # kombu's own virtual transports keep bindings in the declaring process
        producer = Producer(other.default_channel)
        for key in ("kern.disk", "kern.disk.full", "a"):  # RabbitMQ: a.# matches a; * is exactly one word
            producer.publish({"key": key}, exchange="logs", routing_key=key)
        assert [receive(other, "kernel", 0.5)["key"]] == ["kern.disk"]
        assert receive(other, "tree", 0.5) == {"key": "a"}
        assert [receive(other, "all", 0.5)["key"] for _ in range(3)] == ["kern.disk", "kern.disk.full", "a"]
        with pytest.raises(other.SimpleQueue("kernel").Empty):
            other.SimpleQueue("kernel").get(timeout=0.1)


def test_fanout_reaches_a_consumer_in_another_process(url: str, processes: Processes,
                                                      connection: Connection) -> None:
    fanout = Exchange("news", "fanout")
    processes.start(kombu_workers.echo_fanout, url, "news", "theirs")
    assert receive(connection, "ready") == "theirs"
    with Consumer(connection, [Queue("mine", fanout)], callbacks=[]) as consumer:
        got: list[Any] = []
        consumer.register_callback(lambda body, message: (got.append(body), message.ack()))
        Producer(connection.default_channel).publish({"n": 7}, exchange=fanout, routing_key="ignored")
        connection.drain_events(timeout=WAIT)
    assert got == [{"n": 7}]
    assert receive(connection, "echo") == {"body": {"n": 7}, "exchange": "news"}
    processes.join_all(WAIT)


# --- acks are litemq's: leases in the broker
def test_a_killed_consumers_unacked_message_is_redelivered_marked_redelivered(url: str, processes: Processes,
                                                                              connection: Connection) -> None:
    simple = connection.SimpleQueue("jobs")
    simple.put({"job": 1})
    holder = processes.start(kombu_workers.hold_unacked, url, "jobs")
    assert receive(connection, "holding") == "jobs"
    os.kill(holder.pid, signal.SIGKILL)
    message = simple.get(timeout=WAIT)  # as soon as litemq sees the holder dead; its lease was 60 s
    assert (message.payload, message.delivery_info["redelivered"]) == ({"job": 1}, True)
    message.ack()
    simple.close()


def test_a_held_message_keeps_its_lease_past_the_lease_time(url: str) -> None:
    with Connection(url, transport_options={"lease_seconds": 0.3}) as holder, Connection(url) as other:
        held = holder.SimpleQueue("eta")
        held.put("later")
        message = held.get(timeout=WAIT)
        time.sleep(1.2)  # four leases: renewed in the background while the holder lives
        with pytest.raises(held.Empty):
            other.SimpleQueue("eta").get(timeout=0.1)
        message.ack()
        held.close()


def test_reject_requeues_or_dead_letters_through_queue_arguments(connection: Connection) -> None:
    dead = Exchange("dead", "fanout")
    Queue("graveyard", dead)(connection.default_channel).declare()
    simple = connection.SimpleQueue(Queue("work", routing_key="work",
                                          queue_arguments={"x-dead-letter-exchange": "dead"}))
    simple.put("first")
    message = simple.get(timeout=WAIT)
    message.reject(requeue=True)
    again = simple.get(timeout=WAIT)
    assert (again.payload, again.delivery_info["redelivered"]) == ("first", True)
    again.reject(requeue=False)
    buried = connection.SimpleQueue("graveyard").get(timeout=WAIT)
    assert buried.payload == "first" and buried.headers["x-death"][0]["reason"] == "rejected"
    buried.ack()
    simple.close()


def test_prefetch_bounds_the_unacked_deliveries_of_a_channel(connection: Connection) -> None:
    producer = Producer(connection.default_channel)
    for n in range(5):
        producer.publish(n, routing_key="batch", declare=[Queue("batch")])
    channel = connection.channel()
    got: list[Any] = []
    consumer = Consumer(channel, [Queue("batch")], callbacks=[lambda body, message: got.append(message)])
    consumer.qos(prefetch_count=2)
    with consumer:
        connection.drain_events(timeout=WAIT)
        connection.drain_events(timeout=WAIT)
        with pytest.raises(socket.timeout):
            connection.drain_events(timeout=0.2)
        got[0].ack()
        connection.drain_events(timeout=WAIT)
    assert [message.payload for message in got] == [0, 1, 2]
    channel.close()


# --- queue arguments pass through
def test_max_priority_orders_a_queue_by_message_priority(connection: Connection) -> None:
    simple = connection.SimpleQueue(Queue("urgent", routing_key="urgent", max_priority=10))
    for priority in (1, 9, 5):
        simple.put(priority, priority=priority)
    assert [simple.get(timeout=WAIT).payload for _ in range(3)] == [9, 5, 1]
    simple.close()


def test_message_ttl_expires_waiting_messages(connection: Connection) -> None:
    simple = connection.SimpleQueue(Queue("short", routing_key="short", message_ttl=0.1))
    simple.put("stale")
    time.sleep(0.3)
    with pytest.raises(simple.Empty):
        simple.get(timeout=0.1)
    simple.close()


def test_queue_expiry_deletes_a_queue_left_unused(url: str, connection: Connection) -> None:
    Queue("fleeting", routing_key="fleeting", expires=0.2)(connection.default_channel).declare()  # x-expires
    time.sleep(0.4)  # unused: no consumer, no declare, no get (each would restart its countdown)
    with Connection(url) as other:
        other.SimpleQueue("busy").put("x")
        assert receive(other, "busy") == "x"  # a claim: whoever claims or waits first does what fell due
        assert not other.default_channel._has_queue("fleeting")


# --- waiting: litemq's doorbells, no polling interval
@pytest.mark.alone
def test_a_waiting_consumer_wakes_on_a_publish_from_another_process(url: str, processes: Processes,
                                                                    connection: Connection) -> None:
    simple = connection.SimpleQueue("wake")
    processes.start(kombu_workers.publish_later, url, "wake", 0.3, 3)
    latencies = []
    for _ in range(3):
        message = simple.get(timeout=WAIT)
        latencies.append(time.time() - message.payload["sent"])
        message.ack()
    simple.close()
    assert sorted(latencies)[1] < 0.2, latencies  # the median; kombu's SQLAlchemy transport polls once a second
    processes.join_all(WAIT)


@pytest.mark.alone
def test_drain_events_times_out_as_kombu_expects(connection: Connection) -> None:
    with Consumer(connection, [Queue("quiet")], callbacks=[]):
        started = time.monotonic()
        with pytest.raises(socket.timeout):
            connection.drain_events(timeout=0.2)
        assert 0.2 <= time.monotonic() - started < 1.0


def test_deleting_a_consumed_queue_cancels_its_consumer_and_the_others_go_on(url: str,
                                                                           connection: Connection) -> None:
    got: list[Any] = []
    with Consumer(connection, [Queue("doomed"), Queue("lasting")],
                  callbacks=[lambda body, message: (got.append(body), message.ack())]):
        with Connection(url) as other:
            other.default_channel.queue_delete("doomed")  # RabbitMQ tells the consumer with basic.cancel
            with pytest.raises(socket.timeout):
                connection.drain_events(timeout=0.2)
            Producer(other.default_channel).publish("still here", routing_key="lasting")
            connection.drain_events(timeout=WAIT)
    assert got == ["still here"]


# --- waiting on kombu's event loop (a Celery worker's hub)
def run_hub(hub: Hub, until: Callable[[], bool], timeout: float = WAIT) -> None:
    """Turn the hub's loop until ``until()`` or ``timeout`` seconds."""
    loop = hub.create_loop()
    deadline = time.monotonic() + timeout
    while not until() and time.monotonic() < deadline:
        next(loop)


def hub_for(connection: Connection, queue: str = "", count: int = 0) -> Hub:
    """A hub the connection's transport is registered with, after ``count`` messages (0, 1, ...) published to
    ``queue``."""
    hub = Hub()
    connection.transport.register_with_event_loop(connection.connection, hub)
    if count:
        producer = Producer(connection.default_channel)
        for n in range(count):
            producer.publish(n, routing_key=queue, declare=[Queue(queue)])
    return hub


def test_the_transport_says_it_is_asynchronous_so_celery_runs_its_event_loop(connection: Connection) -> None:
    assert connection.transport.implements.asynchronous is True
    assert connection.is_evented


def test_a_consumer_on_the_hub_gets_messages_from_another_process_without_drain_events(
        url: str, processes: Processes, connection: Connection) -> None:
    hub = hub_for(connection)
    got: list[Any] = []
    consumer = Consumer(connection, [Queue("evented")], callbacks=[lambda body, message: (got.append(body),
                                                                                         message.ack())])
    consumer.qos(prefetch_count=4)
    with consumer:
        processes.start(kombu_workers.publish_later, url, "evented", 0.2, 3)
        run_hub(hub, lambda: len(got) == 3)
        assert [set(body) for body in got] == [{"sent"}] * 3
        run_hub(hub, lambda: False, timeout=0.3)  # nothing more, and no error, while idle
    assert len(got) == 3
    processes.join_all(WAIT)
    hub.close()


def test_the_hub_stops_watching_a_cancelled_consumers_doorbell_and_serves_the_others(
        connection: Connection) -> None:
    hub = hub_for(connection)
    got: list[Any] = []
    keep = Consumer(connection, [Queue("kept")], callbacks=[lambda body, message: (got.append(body), message.ack())])
    gone = Consumer(connection.channel(), [Queue("cancelled")], callbacks=[lambda body, message: got.append(body)])
    with keep:
        gone.consume()
        watched = set(hub.readers)
        gone.cancel()
        assert len(set(hub.readers)) == len(watched) - 1  # its doorbell, before it closed
        producer = Producer(connection.default_channel)
        producer.publish("not for me", routing_key="cancelled")
        producer.publish("for me", routing_key="kept")
        run_hub(hub, lambda: bool(got))
    assert got == ["for me"]
    hub.close()


def test_raising_the_prefetch_on_the_hub_claims_what_waited(connection: Connection) -> None:
    hub = hub_for(connection, "held", 3)
    got: list[Any] = []
    consumer = Consumer(connection.channel(), [Queue("held")], callbacks=[lambda body, message: got.append(message)])
    consumer.qos(prefetch_count=1)
    with consumer:
        run_hub(hub, lambda: len(got) > 1, timeout=0.5)
        assert [message.payload for message in got] == [0]
        consumer.qos(prefetch_count=3)  # as Celery does for an ETA task it holds
        run_hub(hub, lambda: len(got) == 3, timeout=5.0)  # the file did not change: the new room tells the hub
    assert [message.payload for message in got] == [0, 1, 2]
    hub.close()


def test_acks_made_on_the_hub_commit_between_its_batches_and_at_close(url: str) -> None:
    with Connection(url) as connection:
        hub = hub_for(connection, "piped", 6)
        got: list[Any] = []
        consumer = Consumer(connection.channel(), [Queue("piped")],
                            callbacks=[lambda body, message: (got.append(message), body < 4 and message.ack())])
        consumer.qos(prefetch_count=2)  # the messages after the first two come only as acks commit
        with consumer:
            run_hub(hub, lambda: len(got) == 6)
            assert [message.payload for message in got] == [0, 1, 2, 3, 4, 5]
            for message in got[4:]:
                message.ack()  # pipelined outside a turn: committed on the hub's next turn, or (here) at close
    with Connection(url) as other:
        assert other.default_channel.queue_declare("piped", passive=True).message_count == 0  # none requeued
    hub.close()


def test_acks_made_on_the_hubs_next_turn_as_celery_makes_them_claim_the_next_messages_without_a_nap(
        connection: Connection) -> None:
    # A Celery worker acks with hub.call_soon: on the hub's next turn, not in the delivery's callback. The hub's
    # tick (after those acks, before the poll) commits them, and what they claim is handed out at once: a
    # prefetch's worth of messages a turn, without taking up the waiter in between (its looks read the store).
    hub = hub_for(connection, "turns", 12)
    got: list[Any] = []
    consumer = Consumer(connection.channel(), [Queue("turns")],
                        callbacks=[lambda body, message: (got.append(body), hub.call_soon(message.ack))])
    consumer.qos(prefetch_count=3)
    store = connection.transport.broker()._store
    looks: list[str] = []
    for name in ("data_version", "counts_with_queues", "next_lease_expiry", "next_lease_expiries"):
        def counted(*args: Any, _name: str = name, _read: Any = getattr(store, name)) -> Any:
            looks.append(_name)
            return _read(*args)
        setattr(store, name, counted)
    turns = 0
    loop = hub.create_loop()
    deadline = time.monotonic() + WAIT
    with consumer:
        while len(got) < 12 and time.monotonic() < deadline:
            next(loop)
            turns += 1
        assert got == list(range(12))
        assert turns <= 12 // 3 + 2  # the first claim, then one turn per three messages
        assert len(looks) <= 2, looks  # the first wait's look, if any: none between the batches
    hub.close()


# --- mandatory publishes: basic.return, as on RabbitMQ through py-amqp
def test_an_unroutable_mandatory_message_comes_back_to_on_return_at_the_next_drain(
        connection: Connection) -> None:
    returned: list[tuple[Any, ...]] = []
    exchange = Exchange("routes-nowhere", "direct")
    producer = Producer(connection.channel(), exchange=exchange, on_return=lambda *args: returned.append(args))
    producer.publish({"n": 1}, routing_key="nobody", mandatory=True, declare=[exchange], headers={"h": 1})
    assert returned == []  # RabbitMQ's basic.return arrives after the publish, read by drain_events
    with pytest.raises(socket.timeout):
        connection.drain_events(timeout=0.1)  # the return is this drain's event: it waits no more
        connection.drain_events(timeout=0.1)
    [(error, exchange_name, routing_key, message)] = returned
    assert (error.reply_code, exchange_name, routing_key) == (312, "routes-nowhere", "nobody")
    assert isinstance(error, litemq.Unroutable)
    assert (message.payload, message.headers) == ({"n": 1}, {"h": 1})
    producer.publish({"n": 2}, routing_key="nobody")  # not mandatory: dropped, as RabbitMQ drops it
    with pytest.raises(socket.timeout):
        connection.drain_events(timeout=0.1)
    assert len(returned) == 1


def test_a_returned_message_without_on_return_raises_from_drain_events(connection: Connection) -> None:
    producer = Producer(connection.channel())
    producer.publish("lost", exchange="amq.direct", routing_key="nobody", mandatory=True)
    with pytest.raises(litemq.Unroutable, match="nobody"):  # py-amqp raises its ChannelError 312 there
        connection.drain_events(timeout=WAIT)
    assert connection.default_channel.queue_declare("after", passive=False).queue == "after"  # the channel lives


def test_a_routable_mandatory_message_is_stored_and_nothing_comes_back(connection: Connection) -> None:
    returned: list[Any] = []
    producer = Producer(connection.channel(), on_return=lambda *args: returned.append(args))
    producer.publish("kept", routing_key="present", declare=[Queue("present")], mandatory=True)
    assert receive(connection, "present") == "kept"
    assert returned == []


# --- URLs and the import
@pytest.mark.sqlite_only
def test_litemq_urls_name_files_as_sqlalchemy_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert litemq.kombu.broker_url("litemq:///rel.db") == "sqlite:///rel.db"
    assert litemq.kombu.broker_url("litemq:////srv/app.db") == "sqlite:////srv/app.db"
    assert litemq.kombu.broker_url("postgresql://h/db") == "postgresql://h/db"  # what kombu leaves of litemq+
    assert litemq.kombu.broker_url("localhost") is None  # kombu's default host: litemq's default broker
    with Connection("litemq:///rel.db") as connection:
        connection.SimpleQueue("made").put("here")
    assert (tmp_path / "rel.db").exists()
    with Connection(f"sqlite:///{tmp_path}/app.db", transport="litemq.kombu:Transport") as connection:
        connection.SimpleQueue("made").put("there")
    with litemq.connect(tmp_path / "app.db") as conn:
        assert conn.declare_queue("made", passive=True).message_count == 1


@pytest.mark.sqlite_only
def test_litemq_itself_never_imports_kombu(tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    program = ("import sys, litemq\n"
               f"with litemq.connect({str(tmp_path / 'core.db')!r}) as conn:\n"
               "    conn.declare_queue('q'); conn.publish('', 'q', b'x'); conn.get('q').ack()\n"
               "print(sorted(m for m in sys.modules if m.split('.')[0] in ('kombu', 'celery')))\n")
    result = subprocess.run([PYTHON, "-c", program], env=subprocess_env, capture_output=True, text=True,
                            timeout=WAIT)
    assert result.stdout == "[]\n", result.stderr
