"""Queues: named and server-named, properties, passive declare, redeclare, purge, delete, counts."""

import pytest

from litemq import AccessRefused, PreconditionFailed, PublishRejected, QueueNotFound, ResourceLocked, Unroutable
from litemq.message import encode_table


def test_declare_returns_the_name_and_counts(conn):
    info = conn.declare_queue("jobs", durable=True)
    assert (info.queue, info.message_count, info.consumer_count) == ("jobs", 0, 0)
    conn.publish("", "jobs", b"1")
    conn.publish("", "jobs", b"2")
    assert conn.declare_queue("jobs", durable=True).message_count == 2


def test_empty_name_gives_a_server_named_queue(conn):
    first = conn.declare_queue("", exclusive=True).queue
    second = conn.declare_queue("", exclusive=True).queue
    assert first.startswith("amq.gen-") and second.startswith("amq.gen-") and first != second
    conn.declare_queue(first, passive=True)


def test_passive_declare_of_a_server_named_queue_works(conn, other):
    name = conn.declare_queue("").queue
    assert other.declare_queue(name, passive=True).queue == name


def test_new_queue_with_reserved_prefix_is_refused(conn):
    with pytest.raises(AccessRefused, match="reserved"):
        conn.declare_queue("amq.custom")


def test_passive_declare_of_a_missing_queue_is_not_found(conn, db_path):
    with pytest.raises(QueueNotFound) as info:
        conn.declare_queue("missing", passive=True)
    assert info.value.reply_code == 404
    assert "'missing'" in str(info.value) and db_path in str(info.value)


@pytest.mark.parametrize("change, field", [
    ({"durable": False}, "durable"),
    ({"auto_delete": True}, "auto_delete"),
    ({"arguments": {"x-max-length": 10}}, "x-max-length"),
])
def test_redeclare_with_other_properties_is_precondition_failed(conn, change, field):
    conn.declare_queue("q", durable=True)
    with pytest.raises(PreconditionFailed, match=f"inequivalent arg '{field}' for queue 'q'"):
        conn.declare_queue("q", **{"durable": True, **change})


@pytest.mark.parametrize("first, again, difference", [
    ({"x-message-ttl": 1000}, {"x-message-ttl": 2000}, "received '2000' but current is '1000'"),
    ({"x-message-ttl": 1000}, {}, "received none but current is the value '1000' of type 'signedint'"),
    ({"x-single-active-consumer": True}, {}, "received none but current is the value 'true' of type 'bool'"),
    ({"x-max-priority": 5}, {"x-max-priority": 6}, "received '6' but current is '5'"),
])
def test_a_redeclaration_names_the_argument_it_changes_as_rabbitmq_does(conn, first, again, difference):
    conn.declare_queue("q", arguments=first)
    name = next(iter(first))
    with pytest.raises(PreconditionFailed, match=rf"inequivalent arg '{name}' for queue 'q' in .*: {difference}$"):
        conn.declare_queue("q", arguments=again)


@pytest.mark.parametrize("first, again", [
    ({"x-custom": 1}, {"x-custom": 2}),
    ({"x-custom": 1}, {}),
    ({"x-queue-type": "classic"}, {}),
    ({"x-message-ttl": 1000}, {"x-message-ttl": 1000, "x-custom": "added"}),
])
def test_a_redeclaration_may_differ_in_arguments_the_broker_does_not_use(conn, first, again, sql):
    conn.declare_queue("q", arguments=first)
    conn.declare_queue("q", arguments=again)  # as RabbitMQ: only the arguments it acts on must match
    assert sql.value("SELECT arguments FROM litemq_queues") == encode_table(first)


def test_redeclare_with_other_exclusivity_is_resource_locked(conn):
    conn.declare_queue("q")
    with pytest.raises(ResourceLocked):
        conn.declare_queue("q", exclusive=True)


def test_message_count_counts_ready_messages_not_unacked_ones(conn):
    conn.declare_queue("q")
    for body in (b"1", b"2", b"3"):
        conn.publish("", "q", body)
    conn.get("q")
    assert conn.declare_queue("q").message_count == 2
    assert conn.declare_queue("q", passive=True).message_count == 2


def test_consumer_count_counts_consumers_of_every_connection(conn, other):
    conn.declare_queue("q")
    conn.consume("q")
    other.consume("q")
    assert conn.declare_queue("q").consumer_count == 2


def test_purge_removes_ready_messages_and_returns_the_count(conn):
    conn.declare_queue("q")
    for body in (b"1", b"2", b"3"):
        conn.publish("", "q", body)
    held = conn.get("q")
    assert conn.purge_queue("q") == 2
    assert conn.declare_queue("q").message_count == 0
    held.nack()
    assert conn.get("q", auto_ack=True).body == b"1"


def test_purge_of_a_missing_queue_is_not_found(conn):
    with pytest.raises(QueueNotFound):
        conn.purge_queue("missing")


def test_delete_returns_the_ready_message_count_and_removes_everything(conn, db_path, sql):
    conn.declare_queue("q")
    conn.declare_exchange("x", "fanout")
    conn.bind_queue("q", "x")
    for body in (b"1", b"2", b"3"):
        conn.publish("x", "", body)
    conn.get("q")
    assert conn.delete_queue("q") == 2
    with pytest.raises(QueueNotFound):
        conn.declare_queue("q", passive=True)
    assert conn.publish("x", "", b"4") == 0
    rows = sql.value("SELECT count(*) FROM litemq_messages")
    assert rows == 0


def test_delete_of_a_missing_queue_returns_zero(conn):
    assert conn.delete_queue("missing") == 0


def test_delete_if_unused_refuses_a_queue_with_consumers(conn):
    conn.declare_queue("q")
    consumer = conn.consume("q")
    with pytest.raises(PreconditionFailed, match="in use"):
        conn.delete_queue("q", if_unused=True)
    consumer.cancel()
    assert conn.delete_queue("q", if_unused=True) == 0


def test_delete_if_empty_refuses_a_queue_with_ready_messages(conn):
    conn.declare_queue("q")
    conn.publish("", "q", b"1")
    with pytest.raises(PreconditionFailed, match="not empty"):
        conn.delete_queue("q", if_empty=True)
    conn.get("q")  # only unacked left: empty for if_empty, as in RabbitMQ
    assert conn.delete_queue("q", if_empty=True) == 0


def test_queue_and_messages_survive_the_connection_that_made_them(db_path):
    import litemq

    with litemq.connect(db_path) as producer:
        producer.declare_queue("q", durable=False)
        producer.publish("", "q", b"left behind", litemq.Properties(delivery_mode=1))
    with litemq.connect(db_path) as consumer:
        assert consumer.get("q", auto_ack=True).body == b"left behind"


def test_lease_argument_must_be_positive_milliseconds(conn):
    # Like every other bad queue argument: a 406 naming the argument, the queue and the file.
    with pytest.raises(PreconditionFailed, match=r"invalid arg 'x-lease-ms' for queue 'q' in .*: must be at least 1"):
        conn.declare_queue("q", arguments={"x-lease-ms": 0})


@pytest.mark.parametrize("arguments, problem", [
    ({"x-message-ttl": 315_360_000_001}, "must be from 0 to 315360000000"),
    ({"x-expires": 315_360_000_001}, "must be from 1 to 315360000000"),
    ({"x-max-length": None}, "must be an integer, got NoneType"),
    ({"x-message-ttl": None}, "must be an integer, got NoneType"),
])
def test_queue_arguments_rabbitmq_refuses_are_refused(conn, arguments, problem):
    # RabbitMQ 3.10 here: {value_too_large,...} past ten years; "expected integer, got void" for a null.
    with pytest.raises(PreconditionFailed, match=problem):
        conn.declare_queue("q", arguments=arguments)


def test_a_null_argument_stored_by_an_older_litemq_still_reads_as_absent(conn, sql):
    conn.declare_queue("q")
    sql("UPDATE litemq_queues SET arguments = '{\"x-max-length\": null}' WHERE name = 'q'")
    conn.publish("", "q", b"still accepted")
    assert conn.get("q", auto_ack=True).body == b"still accepted"


def test_an_exclusive_queue_is_never_durable_whatever_its_declaration_says(conn):
    assert conn.declare_queue("mine", durable=True, exclusive=True).queue == "mine"
    conn.publish("", "mine", b"kept")
    assert conn.declare_queue("mine", durable=False, exclusive=True).message_count == 1
    assert conn.declare_queue("mine", durable=True, exclusive=True).message_count == 1
    conn.declare_queue("shared", durable=True)
    with pytest.raises(PreconditionFailed, match="durable"):
        conn.declare_queue("shared", durable=False)  # a shared queue still keeps its durability


def test_an_exclusive_queue_is_listed_as_not_durable(conn):
    from litemq.store.management import queue_counts  # what `litemq queues` lists

    conn.declare_queue("mine", durable=True, exclusive=True)
    with conn._store.read() as store:
        listed = {row["queue"]: row for row in queue_counts(store)}
    assert listed["mine"]["durable"] in (False, 0) and listed["mine"]["exclusive"] in (True, 1)


# A connection that used a queue without arguments may store into it and take from it in one step; what another
# connection changes in between still rules the next publish and get.
def test_a_queue_redeclared_elsewhere_with_a_limit_rules_the_next_publish(conn, other):
    conn.declare_queue("q")
    conn.publish("", "q", b"plain")
    conn.get("q", auto_ack=True)
    other.delete_queue("q")
    other.declare_queue("q", arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    conn.publish("", "q", b"1")
    with pytest.raises(PublishRejected):
        conn.publish("", "q", b"2")
    assert other.declare_queue("q", passive=True).message_count == 1


def test_a_queue_redeclared_elsewhere_as_exclusive_is_locked_to_the_next_get(conn, other):
    conn.declare_queue("q")
    conn.publish("", "q", b"plain")
    assert conn.get("q", auto_ack=True).body == b"plain"
    other.delete_queue("q")
    other.declare_queue("q", exclusive=True)
    other.publish("", "q", b"private")
    with pytest.raises(ResourceLocked):
        conn.get("q")
    assert other.get("q", auto_ack=True).body == b"private"  # the refused get took nothing


def test_a_publish_to_a_queue_deleted_elsewhere_is_unroutable(conn, other):
    conn.declare_queue("q")
    conn.publish("", "q", b"plain")
    other.delete_queue("q")
    assert conn.publish("", "q", b"lost") == 0
    with pytest.raises(Unroutable):
        conn.publish("", "q", b"lost", mandatory=True)
