"""Doorbells are only hints: anyone on the machine can ring one (their names are listed in /proc/net/unix), so a
ring makes a waiting consumer look at the file's change counter, never write, and a flood of rings costs reads.
A doorbell whose name someone else took is reported, and its consumer still receives, by polling.

The flooded consumer runs in a spawned process (liveness_workers.py) and counts its own write transactions
(``store.commits``); the flood comes from this process, on real time, for a bounded time."""

from __future__ import annotations

import logging
import socket
import threading
import time
from pathlib import Path

import pytest

import litemq
import liveness_workers as workers
from conftest import Processes
from litemq.store.doorbells import doorbell_address
from liveness_workers import wait_for_files, worker_errors

pytestmark = pytest.mark.sqlite_only  # the doorbells of a file (abstract Unix sockets); PostgreSQL wakes by NOTIFY

BOUND = 5.0
FLOOD_SECONDS = 2.0


def flood(address: bytes, stop: threading.Event, sent: list[int]) -> None:
    """Send datagrams to the address as fast as they go until ``stop`` is set; count in ``sent`` those tried and
    those that went in (the others found its queue full)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.setblocking(False)
    try:
        while not stop.is_set():
            sent[0] += 1
            try:
                sock.sendto(b"!", address)
                sent[1] += 1
            except BlockingIOError:
                time.sleep(0)
            except ConnectionRefusedError:  # the consumer is gone
                return
    finally:
        sock.close()


def test_a_flood_of_rings_makes_an_idle_consumer_write_nothing_and_the_next_message_still_comes(
        db_path: str, conn: litemq.Connection, processes: Processes, tmp_path: Path) -> None:
    conn.declare_queue("idle")
    processes.start(workers.wait_through_a_flood, db_path, "idle", str(tmp_path))
    wait_for_files([tmp_path / "waiting"])
    address = bytes.fromhex((tmp_path / "waiting").read_text())
    stop, sent = threading.Event(), [0, 0]
    flooding = threading.Thread(target=flood, args=(address, stop, sent))
    flooding.start()
    try:
        time.sleep(FLOOD_SECONDS)
        (tmp_path / "flood-done").write_text("")
        wait_for_files([tmp_path / "commits"])
        commits, cpu = (tmp_path / "commits").read_text().split()
        tried, rang = sent
        # Still flooding: the real message must get through it.
        conn.publish("", "idle", b"real")
        published_at = time.time()
        wait_for_files([tmp_path / "delivered"], timeout=BOUND)
    finally:
        stop.set()
        flooding.join()
    assert worker_errors(tmp_path) == {}
    print(f"\n{tried} rings tried in {FLOOD_SECONDS} s, {rang} of them queued: they cost the consumer {commits} "
          f"write transactions and {float(cpu):.2f} s of CPU")
    assert rang > 100, "the flood never got going"
    assert commits == "0"
    body, delivered_at = (tmp_path / "delivered").read_text().split()
    assert body == "real"
    assert float(delivered_at) - published_at < BOUND


def test_a_consumer_whose_doorbell_name_is_taken_says_so_and_still_receives_by_polling(
        conn: litemq.Connection, other: litemq.Connection, caplog: pytest.LogCaptureFixture) -> None:
    conn.declare_queue("jobs")
    squatter = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    squatter.bind(doorbell_address(conn._session.connection_id, conn.number, "mine"))
    try:
        with caplog.at_level(logging.WARNING, logger="litemq"):
            consumer = conn.consume("jobs", consumer_tag="mine")
        assert "the doorbell of consumer 'mine' of queue 'jobs'" in caplog.text
        assert "is taken by another socket" in caplog.text
        assert consumer.doorbell.socket is None
        other.publish("", "jobs", b"still")
        delivery = consumer.get(timeout=BOUND)
        assert delivery is not None and delivery.body == b"still"
        assert squatter.recv(64) == b"!"  # the publisher rang the squatter: only polling found the message
    finally:
        squatter.close()


def test_the_socket_names_a_connection_shows_every_local_user_do_not_reveal_its_connection_id(
        conn: litemq.Connection) -> None:
    consumer = conn.consume(conn.declare_queue("").queue)
    names = Path("/proc/net/unix").read_text()
    assert consumer.doorbell.address[1:].decode() in names  # listed for anyone to see, and ring
    assert conn._session.connection_id not in names  # from which every doorbell name of the connection derives


def test_a_ring_of_a_change_already_seen_leaves_the_doorbell_heard_and_a_second_one_hushes_it(db_path):
    # A publish's ring read after its message was claimed (the waiter looked at the file for another reason first)
    # announces nothing, yet is no flood: hushing then would leave the next message's ring unheard for a moment.
    from litemq.consumer import Waiter

    with litemq.connect(db_path) as conn:
        conn.declare_queue("q")
        consumer = conn.consume("q")
        steps = Waiter(consumer._session).waiting([consumer], None)
        first = next(steps)  # the first look
        after_one = steps.send(consumer.doorbell.socket)  # a ring, the file unchanged
        after_two = steps.send(consumer.doorbell.socket)  # another
        heard = [len(nap.doorbells) for nap in (first, after_one, after_two)]
        steps.close()
    assert heard == [1, 1, 0]
