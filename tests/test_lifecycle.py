"""Lifecycles: closing channels and connections, exclusive and auto-delete queues."""

import pytest

import litemq
from litemq import ChannelClosed, QueueNotFound, ResourceLocked


def test_closing_a_channel_requeues_its_unacked_deliveries_at_once(conn, other):
    conn.declare_queue("q")
    conn.publish("", "q", b"m")
    channel = conn.channel()
    channel.get("q", lease_seconds=600)
    channel.close()
    again = other.get("q")
    assert (again.body, again.redelivered) == (b"m", True)


def test_closing_a_connection_requeues_its_unacked_deliveries_at_once(db_path, other):
    first = litemq.connect(db_path)
    first.declare_queue("q")
    first.publish("", "q", b"m")
    first.consume("q", lease_seconds=600).get(0)
    first.close()
    again = other.get("q")
    assert (again.body, again.redelivered) == (b"m", True)


def test_closing_a_channel_leaves_other_channels_deliveries_alone(conn):
    conn.declare_queue("q")
    for body in (b"1", b"2"):
        conn.publish("", "q", body)
    kept = conn.get("q")
    channel = conn.channel()
    channel.get("q")
    channel.close()
    assert conn.declare_queue("q").message_count == 1
    kept.ack()


def test_a_closed_channel_refuses_work(conn):
    channel = conn.channel()
    channel.close()
    with pytest.raises(ChannelClosed):
        channel.declare_queue("q")
    assert conn.is_open


def test_a_closed_connection_refuses_work(db_path):
    conn = litemq.connect(db_path)
    conn.close()
    conn.close()  # idempotent
    with pytest.raises(ChannelClosed):
        conn.publish("", "q", b"x")


def test_exclusive_queue_is_locked_to_its_connection(conn, other):
    name = conn.declare_queue("", exclusive=True).queue
    conn.declare_exchange("x", "fanout")
    for attempt in (
        lambda: other.declare_queue(name, passive=True),
        lambda: other.consume(name, exclusive=True),
        lambda: other.consume(name),
        lambda: other.get(name),
        lambda: other.bind_queue(name, "x"),
        lambda: other.unbind_queue(name, "x"),
        lambda: other.purge_queue(name),
        lambda: other.delete_queue(name),
    ):
        with pytest.raises(ResourceLocked) as info:
            attempt()
        assert info.value.reply_code == 405
    conn.bind_queue(name, "x")
    assert other.publish("x", "", b"allowed") == 1


def test_named_exclusive_queue_redeclared_by_another_connection_is_resource_locked(conn, other):
    conn.declare_queue("mine", exclusive=True)
    for exclusive in (True, False):
        with pytest.raises(ResourceLocked):
            other.declare_queue("mine", exclusive=exclusive)


def test_server_named_queue_cannot_be_redeclared_except_passively(conn):
    from litemq import AccessRefused

    name = conn.declare_queue("", exclusive=True).queue
    with pytest.raises(AccessRefused):
        conn.declare_queue(name, exclusive=True)
    assert conn.declare_queue(name, passive=True).queue == name


def test_acking_a_delivery_whose_queue_was_deleted_is_harmless(conn, other):
    conn.declare_queue("doomed")
    conn.publish("", "doomed", b"m")
    delivery = conn.get("doomed")
    other.delete_queue("doomed")
    delivery.ack()


def test_exclusive_queue_is_shared_by_the_channels_of_its_connection(conn):
    name = conn.declare_queue("", exclusive=True).queue
    channel = conn.channel()
    channel.publish("", name, b"m")
    assert channel.get(name, auto_ack=True).body == b"m"


def test_exclusive_queue_is_deleted_when_its_connection_closes(db_path, other, sql):
    owner = litemq.connect(db_path)
    name = owner.declare_queue("", exclusive=True).queue
    owner.publish("", name, b"m")
    owner.close()
    with pytest.raises(QueueNotFound):
        other.declare_queue(name, passive=True)
    assert sql.value("SELECT count(*) FROM litemq_messages") == 0


def test_auto_delete_queue_goes_when_its_last_consumer_is_cancelled(conn):
    conn.declare_queue("temp", auto_delete=True)
    first, second = conn.consume("temp"), conn.consume("temp")
    first.cancel()
    conn.declare_queue("temp", passive=True)
    second.cancel()
    with pytest.raises(QueueNotFound):
        conn.declare_queue("temp", passive=True)


def test_auto_delete_queue_is_never_deleted_before_a_first_consumer(conn):
    conn.declare_queue("temp", auto_delete=True)
    conn.publish("", "temp", b"m")
    conn.get("temp", auto_ack=True)
    conn.declare_queue("temp", passive=True)


def test_auto_delete_queue_goes_when_the_consumers_channel_closes(conn):
    conn.declare_queue("temp", auto_delete=True)
    channel = conn.channel()
    channel.consume("temp")
    channel.close()
    with pytest.raises(QueueNotFound):
        conn.declare_queue("temp", passive=True)


def test_cancelling_a_consumer_does_not_requeue_what_it_received(conn, other):
    conn.declare_queue("q")
    conn.publish("", "q", b"m")
    consumer = conn.consume("q", lease_seconds=600)
    delivery = consumer.get(0)
    consumer.cancel()
    assert other.get("q") is None
    delivery.ack()


def test_connection_registers_itself_while_open(db_path, sql):
    import os

    conn = litemq.connect(db_path)
    rows = sql("SELECT pid FROM litemq_connections")
    assert rows == [(os.getpid(),)]
    conn.close()
    with litemq.connect(db_path) as again:
        assert sql.value("SELECT count(*) FROM litemq_connections") == 1


def test_connection_opens_litemq_url_by_default(tmp_path, monkeypatch):
    monkeypatch.setenv("LITEMQ_URL", f"sqlite:///{tmp_path / 'env.db'}")
    with litemq.connect() as conn:
        assert conn.path == str(tmp_path / "env.db")


def test_connection_defaults_to_litemq_db_in_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.delenv("LITEMQ_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    with litemq.connect() as conn:
        assert conn.path == str(tmp_path / "litemq.db")


def test_connection_used_after_fork_refuses_with_a_clear_error(conn):
    import os

    conn.declare_queue("q")
    pid = os.fork()
    if pid == 0:
        try:
            conn.publish("", "q", b"from child")
        except litemq.StorageError as exc:
            os._exit(0 if "fork" in str(exc) else 2)
        os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert conn.declare_queue("q").message_count == 0
