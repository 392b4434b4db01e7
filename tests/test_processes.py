"""Several real processes sharing one litemq file: every message is delivered, waiting consumers are woken by
other processes, and what a process leaves behind when it ends without closing is what RabbitMQ would leave.

Each child runs a function of process_workers.py (spawned, bounded in time, killed by the ``processes`` fixture)
and reports through files in tmp_path, exceptions included; every test asserts that no child wrote an error.
"""

from __future__ import annotations

import collections
import time
from pathlib import Path

import pytest

import litemq
import process_workers as workers
from conftest import Processes
from engines import sql_rows

JOIN_SECONDS = 30.0


def worker_errors(tmp_path: Path) -> dict[str, str]:
    errors = tmp_path / "errors"
    if not errors.is_dir():
        return {}
    return {f.stem: f.read_text() for f in sorted(errors.iterdir())}


def assert_children_succeeded(processes: Processes, tmp_path: Path, timeout: float = JOIN_SECONDS) -> None:
    processes.join_all(timeout)
    assert worker_errors(tmp_path) == {}
    assert [p.exitcode for p in processes.started] == [0] * len(processes.started)


def wait_for_files(paths: list[Path], timeout: float = JOIN_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while not all(p.exists() for p in paths):
        missing = [p.name for p in paths if not p.exists()]
        assert time.monotonic() < deadline, f"{missing} never appeared; errors: {worker_errors(paths[0].parent)}"
        time.sleep(0.01)


def get_each(conn: litemq.Connection, queue: str, count: int, **options: object) -> list[litemq.Delivery]:
    deliveries = [conn.get(queue, **options) for _ in range(count)]  # type: ignore[arg-type]
    assert None not in deliveries, f"queue {queue!r} held fewer than {count} messages"
    return deliveries  # type: ignore[return-value]


def sql(db_path: str, statement: str, *params: object) -> list[tuple]:
    """Look at the broker with plain SQL, as a person would."""
    return sql_rows(db_path, statement, params)


# ---------------------------------------------------------------------------------------------------------------
# Many producers and consumers on one file
# ---------------------------------------------------------------------------------------------------------------

PRODUCERS = 4
CONSUMERS = 4
PER_PRODUCER = {"sqlite": 5_000, "postgresql": 1_000}
"""On a server every publish is a network round trip and a commit that waits for the WAL flush: fewer, in the
same bound."""
IDLE_SECONDS = 2.0


@pytest.mark.slow
def test_four_producers_and_four_consumers_deliver_every_message_exactly_once(
        engine: str, db_path: str, conn: litemq.Connection, processes: Processes, tmp_path: Path) -> None:
    per_producer = PER_PRODUCER[engine]
    conn.declare_queue("work", durable=True)
    started = time.monotonic()
    for i in range(PRODUCERS):
        processes.start(workers.produce, db_path, "work", i, per_producer, str(tmp_path))
    consumers = [processes.start(workers.consume_until_producers_done, db_path, "work", i,
                                 str(tmp_path), IDLE_SECONDS) for i in range(CONSUMERS)]
    wait_for_files([tmp_path / f"ready-producer-{i}" for i in range(PRODUCERS)]
                   + [tmp_path / f"ready-consumer-{i}" for i in range(CONSUMERS)])
    (tmp_path / "go").write_text("")
    producers = [p for p in processes.started if p not in consumers]
    deadline = started + 50.0
    for p in producers:
        p.join(max(0.0, deadline - time.monotonic()))
    assert worker_errors(tmp_path) == {}
    assert [p.exitcode for p in producers] == [0] * PRODUCERS
    (tmp_path / "producers-done").write_text("")
    published = time.monotonic()
    assert_children_succeeded(processes, tmp_path, timeout=max(1.0, deadline - time.monotonic()))
    print(f"\n{PRODUCERS}x{per_producer} messages through {CONSUMERS} consumers: all published after "
          f"{published - started:.1f}s (process start-up included), consumers done after "
          f"{time.monotonic() - started:.1f}s (up to {2 * IDLE_SECONDS:.0f}s of it the idle tail)")

    acks: list[tuple[str, bool]] = []
    per_consumer: list[list[str]] = []
    for i in range(CONSUMERS):
        lines = (tmp_path / f"acked-{i}.txt").read_text().split()
        pairs = [(body, flag == "1") for body, flag in zip(lines[::2], lines[1::2])]
        acks.extend(pairs)
        per_consumer.append([body for body, _ in pairs])
    expected = {f"p{p}-{n}" for p in range(PRODUCERS) for n in range(per_producer)}
    counts = collections.Counter(body for body, _ in acks)
    redelivered = {body for body, flag in acks if flag}
    duplicates = {body for body, count in counts.items() if count > 1}
    assert set(counts) == expected
    assert duplicates - redelivered == set(), "a message was delivered twice without redelivered=True"
    assert duplicates == set() and redelivered == set(), "nothing crashed, so nothing should come twice"
    assert len(acks) == PRODUCERS * per_producer
    # Each consumer saw each producer's messages in the order they were published.
    for bodies in per_consumer:
        for p in range(PRODUCERS):
            sequence = [int(b.split("-")[1]) for b in bodies if b.startswith(f"p{p}-")]
            assert sequence == sorted(sequence)
    assert sql(db_path, "SELECT count(*) FROM litemq_messages") == [(0,)]
    assert conn.declare_queue("work", passive=True).message_count == 0


# ---------------------------------------------------------------------------------------------------------------
# Waking a waiting consumer from another process
# ---------------------------------------------------------------------------------------------------------------

def test_consumer_in_another_process_receives_a_message_published_while_it_waits(
        db_path: str, conn: litemq.Connection, processes: Processes, tmp_path: Path) -> None:
    conn.declare_queue("wake")
    processes.start(workers.wait_for_one_message, db_path, "wake", str(tmp_path))
    wait_for_files([tmp_path / "ready"])
    time.sleep(0.3)  # let it reach its wait; correctness does not depend on this, only what the test exercises
    assert conn.publish("", "wake", b"wake up from another process") == 1
    assert_children_succeeded(processes, tmp_path)
    assert (tmp_path / "received").read_bytes() == b"wake up from another process"
    assert conn.get("wake") is None


# ---------------------------------------------------------------------------------------------------------------
# Processes that end without closing their connection
# ---------------------------------------------------------------------------------------------------------------

def test_producer_that_exits_without_closing_leaves_its_queue_and_messages_for_the_next_consumer(
        db_path: str, conn: litemq.Connection, processes: Processes, tmp_path: Path) -> None:
    processes.start(workers.publish_then_exit_without_close, db_path, "left-behind", 5, str(tmp_path))
    assert_children_succeeded(processes, tmp_path)
    assert conn.declare_queue("left-behind", passive=True).message_count == 5
    deliveries = get_each(conn, "left-behind", 5)
    assert [d.body for d in deliveries] == [b"m0", b"m1", b"m2", b"m3", b"m4"]
    assert [d.redelivered for d in deliveries] == [False] * 5
    assert [d.properties.delivery_mode for d in deliveries] == [1] * 5
    assert conn.get("left-behind") is None


@pytest.mark.parametrize("how", ["return", "sys.exit", "garbage-collected"])
def test_unacked_message_returns_at_once_when_its_process_exits_without_closing(
        db_path: str, conn: litemq.Connection, other: litemq.Connection, processes: Processes, tmp_path: Path,
        how: str) -> None:
    # "garbage-collected": the connection was opened in a function that returned without closing it, and was
    # collected before the process ended (a script that forgets close inside a function); its exit must still
    # give the message back, as a pika connection collected without close drops its socket and RabbitMQ requeues.
    conn.declare_queue("jobs")
    conn.publish("", "jobs", b"job-1")
    processes.start(workers.get_without_ack_then_exit, db_path, "jobs", str(tmp_path), how)
    assert_children_succeeded(processes, tmp_path)
    assert (tmp_path / "got").read_text() == "job-1 0"
    # The child's lease had 600 s to run: getting the message now proves its exit gave it back.
    delivery = other.get("jobs")
    assert delivery is not None
    assert (delivery.body, delivery.redelivered, delivery.delivery_count) == (b"job-1", True, 2)


def test_consumer_that_exits_without_closing_returns_its_delivered_and_prefetched_messages_in_order(
        db_path: str, conn: litemq.Connection, other: litemq.Connection, processes: Processes,
        tmp_path: Path) -> None:
    conn.declare_queue("jobs")
    for n in range(3):
        conn.publish("", "jobs", b"job-%d" % n)
    processes.start(workers.consume_one_without_ack_then_exit, db_path, "jobs", 3, str(tmp_path))
    assert_children_succeeded(processes, tmp_path)
    assert (tmp_path / "got").read_text() == "job-0 0"
    assert other.declare_queue("jobs", passive=True).message_count == 3
    deliveries = get_each(other, "jobs", 3, lease_seconds=600)
    assert [(d.body, d.redelivered) for d in deliveries] == [
        (b"job-0", True),   # handed to the application, unacked
        (b"job-1", False),  # claimed by the consumer's prefetch but never handed out: the claim is undone
        (b"job-2", False),
    ]


def test_exclusive_queue_is_deleted_when_its_process_exits_without_closing(
        db_path: str, conn: litemq.Connection, processes: Processes, tmp_path: Path) -> None:
    processes.start(workers.declare_exclusive_then_exit, db_path, str(tmp_path))
    wait_for_files([tmp_path / "queue"])
    queue, pid = (tmp_path / "queue").read_text().split("\n")
    with pytest.raises(litemq.ResourceLocked):  # it exists, and belongs to the child
        conn.declare_queue(queue, passive=True)
    (tmp_path / "proceed").write_text("")
    assert_children_succeeded(processes, tmp_path)
    with pytest.raises(litemq.QueueNotFound):
        conn.declare_queue(queue, passive=True)
    assert sql(db_path, "SELECT count(*) FROM litemq_messages WHERE queue = ?", queue) == [(0,)]
    assert sql(db_path, "SELECT count(*) FROM litemq_connections WHERE pid = ?", int(pid)) == [(0,)]
