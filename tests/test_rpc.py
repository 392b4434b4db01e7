"""Request and reply: RpcClient calls and waits on one exclusive reply queue, matching replies by correlation id;
RpcServer answers each request exactly once, publishing its reply and acking the request in one transaction.

Servers run on their own connections, in a thread of the test process, except where a server must die: those run
as ``python -c`` subprocesses (tests/facade_workers.py) that are SIGKILLed, or that SIGKILL themselves inside the
reply transaction. Where a test must count replies exactly, the request is published by hand with ``reply_to`` set
to a plain queue the test reads (an RpcClient drops replies it does not wait for, so it cannot count them).
The lease rule (a stale server's reply is refused) runs in real time with a 0.2 s lease and renewal off.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import pytest

import facade_workers as workers
from engines import sql_rows
from facade_workers import start_python, wait_for_file_from
import litemq

BOUND = 5.0
"""Seconds allowed for what normally takes milliseconds (a loaded 2-core machine must never flake)."""
START_SECONDS = 30.0
"""Seconds allowed for a fresh Python process to start and reach its first request."""


def stored(db_path: str, queue: str) -> int:
    """Every message row of ``queue``, ready or leased."""
    ((count,),) = sql_rows(db_path, "SELECT count(*) FROM litemq_messages WHERE queue = ?", (queue,))
    return count


def queue_rows(db_path: str, pattern: str) -> list[tuple[str, int, Optional[str]]]:
    return sql_rows(db_path, "SELECT name, exclusive, owner_connection FROM litemq_queues WHERE name LIKE ? "
                             "ORDER BY name", (pattern,))


def take_all(db_path: str, queue: str) -> list[litemq.Delivery]:
    """Every message in ``queue``, removed (through a fresh connection)."""
    taken = []
    with litemq.connect(db_path) as reader:
        while (delivery := reader.get(queue, auto_ack=True)) is not None:
            taken.append(delivery)
    return taken


def request(conn: litemq.Connection, body: bytes, correlation_id: str, reply_to: str = "replies") -> None:
    conn.publish("", "rpc", body, litemq.Properties(reply_to=reply_to, correlation_id=correlation_id))


class Serving:
    """An RpcServer on its own connection, serving in a thread until stopped; errors it raised are kept."""

    def __init__(self, db_path: str, queue: str, handler: Callable[[litemq.Delivery], bytes | str],
                 prefetch: int = 1) -> None:
        self.connection = litemq.connect(db_path)
        self.server = litemq.RpcServer(self.connection, queue, handler, prefetch=prefetch)
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self.server.serve(inactivity_timeout=0.05)
        except BaseException as exc:  # reported by stop()
            self.errors.append(exc)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(BOUND)
        assert not self._thread.is_alive(), "the server thread did not stop"
        self.connection.close()


@contextmanager
def serving(db_path: str, handler: Callable[[litemq.Delivery], bytes | str], prefetch: int = 1,
            queue: str = "rpc") -> Iterator[Serving]:
    server = Serving(db_path, queue, handler, prefetch)
    try:
        yield server
    finally:
        server.stop()
    assert server.errors == []


def echo(request: litemq.Delivery) -> bytes:
    return b"echo:" + request.body


# ---------------------------------------------------------------------------------------------------------------
# Calling
# ---------------------------------------------------------------------------------------------------------------

def test_call_returns_the_body_the_servers_handler_returned(db_path: str, conn: litemq.Connection) -> None:
    with serving(db_path, echo):
        client = litemq.RpcClient(conn)
        assert client.call("rpc", b"ping", timeout=BOUND) == b"echo:ping"
        assert client.call("rpc", "str", timeout=BOUND) == b"echo:str"


def test_a_handler_may_return_str_which_is_sent_as_utf8(db_path: str, conn: litemq.Connection) -> None:
    with serving(db_path, lambda request: "héllo"):
        assert litemq.RpcClient(conn).call("rpc", b"x", timeout=BOUND) == "héllo".encode("utf-8")


def test_call_to_a_queue_without_a_server_raises_rpc_timeout_after_the_timeout(
        db_path: str, conn: litemq.Connection) -> None:
    conn.declare_queue("rpc")  # a queue nobody serves yet
    client = litemq.RpcClient(conn)
    started = time.monotonic()
    with pytest.raises(litemq.RpcTimeout, match="rpc"):
        client.call("rpc", b"anyone?", timeout=0.2)
    assert time.monotonic() - started >= 0.2
    assert stored(db_path, "rpc") == 1  # routed, as RabbitMQ routes it: waiting for a server


def test_call_to_a_queue_no_one_declared_fails_at_once_with_unroutable(conn: litemq.Connection) -> None:
    client = litemq.RpcClient(conn)
    started = time.monotonic()
    with pytest.raises(litemq.Unroutable, match="request to queue 'nowhere' reached no queue") as raised:
        client.call("nowhere", b"anyone?", timeout=60)
    assert time.monotonic() - started < BOUND  # not the 60 s timeout
    assert (raised.value.exchange, raised.value.routing_key, raised.value.reply_code) == ("", "nowhere", 312)
    assert client._pending == {}
    conn.declare_queue("nowhere")
    with pytest.raises(litemq.RpcTimeout):  # the client is still usable
        client.call("nowhere", b"again", timeout=0.05)


def test_call_through_an_exchange_that_routes_nowhere_fails_with_unroutable(conn: litemq.Connection) -> None:
    conn.declare_exchange("services", "direct")
    with pytest.raises(litemq.Unroutable, match="exchange 'services' with routing key 'billing'"):
        litemq.RpcClient(conn, exchange="services").call("billing", b"x", timeout=60)


def test_a_server_that_starts_after_the_request_was_sent_answers_it(db_path: str, conn: litemq.Connection) -> None:
    conn.declare_queue("rpc")
    client = litemq.RpcClient(conn)
    replies: list[bytes] = []
    caller = threading.Thread(target=lambda: replies.append(client.call("rpc", b"early", timeout=BOUND * 4)))
    caller.start()
    deadline = time.monotonic() + BOUND
    while stored(db_path, "rpc") == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    with serving(db_path, echo):
        caller.join(BOUND * 4)
    assert replies == [b"echo:early"]


def test_finish_answers_the_request_in_hand_then_serve_returns_leaving_the_rest_unmarked(
        db_path: str, conn: litemq.Connection) -> None:
    conn.declare_queue("replies")
    conn.declare_queue("rpc")
    for n in range(3):
        request(conn, b"%d" % n, f"id-{n}")
    with litemq.connect(db_path) as serving_conn:
        server = litemq.RpcServer(serving_conn, "rpc", lambda req: (server.finish(), b"answer:" + req.body)[1],
                                  prefetch=3)
        assert server.serve(inactivity_timeout=BOUND) == 1
    assert [(d.body, d.properties.correlation_id) for d in take_all(db_path, "replies")] == [(b"answer:0", "id-0")]
    assert [(d.body, d.redelivered) for d in take_all(db_path, "rpc")] == [(b"1", False), (b"2", False)]


def test_eight_threads_calling_on_one_client_each_get_their_own_replies(
        db_path: str, conn: litemq.Connection) -> None:
    client = litemq.RpcClient(conn)
    barrier = threading.Barrier(8)
    results: dict[int, list[tuple[bytes, bytes]]] = {}
    failures: list[BaseException] = []

    def caller(n: int) -> None:
        try:
            barrier.wait(BOUND)
            results[n] = [(b"%d-%d" % (n, i), client.call("rpc", b"%d-%d" % (n, i), timeout=BOUND))
                          for i in range(10)]
        except BaseException as exc:
            failures.append(exc)

    with serving(db_path, echo, prefetch=4):
        threads = [threading.Thread(target=caller, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(START_SECONDS)
    assert failures == []
    assert sorted(results) == list(range(8))
    for n, pairs in results.items():
        assert [reply for _, reply in pairs] == [b"echo:" + sent for sent, _ in pairs], n


# ---------------------------------------------------------------------------------------------------------------
# The reply queue
# ---------------------------------------------------------------------------------------------------------------

def test_a_client_has_one_exclusive_server_named_reply_queue_for_all_its_calls(
        db_path: str, conn: litemq.Connection, other: litemq.Connection) -> None:
    client = litemq.RpcClient(conn)
    assert client.reply_queue.startswith("amq.gen-")
    with serving(db_path, echo):
        for n in range(3):
            client.call("rpc", b"%d" % n, timeout=BOUND)
    rows = queue_rows(db_path, "amq.gen-%")
    assert [(name, exclusive) for name, exclusive, _ in rows] == [(client.reply_queue, 1)]
    assert rows[0][2] == conn._session.connection_id  # exclusive to the client's connection
    with pytest.raises(litemq.ResourceLocked):
        other.consume(client.reply_queue)


def test_two_clients_have_two_reply_queues_and_closing_the_connection_deletes_them(
        db_path: str, conn: litemq.Connection) -> None:
    first, second = litemq.RpcClient(conn), litemq.RpcClient(conn)
    assert first.reply_queue != second.reply_queue
    assert len(queue_rows(db_path, "amq.gen-%")) == 2
    conn.close()
    assert queue_rows(db_path, "amq.gen-%") == []


def test_stray_replies_are_dropped_and_do_not_disturb_a_call(
        db_path: str, conn: litemq.Connection, other: litemq.Connection) -> None:
    client = litemq.RpcClient(conn)
    # Replies nobody asked for, published by hand to the reply queue (any connection may publish to it).
    other.publish("", client.reply_queue, b"stray", litemq.Properties(correlation_id="nobody-asked"))
    other.publish("", client.reply_queue, b"no correlation id")
    with serving(db_path, echo):
        assert client.call("rpc", b"mine", timeout=BOUND) == b"echo:mine"
        assert client.call("rpc", b"again", timeout=BOUND) == b"echo:again"
    assert stored(db_path, client.reply_queue) == 0  # the strays were taken and dropped


def test_a_late_reply_after_a_timeout_is_dropped_and_later_calls_get_their_own_replies(
        db_path: str, conn: litemq.Connection) -> None:
    handled: list[bytes] = []

    def slow_then_fast(request: litemq.Delivery) -> bytes:
        if request.body == b"slow":
            time.sleep(0.5)  # longer than the caller waits
        handled.append(request.body)
        return b"reply to " + request.body

    client = litemq.RpcClient(conn)
    with serving(db_path, slow_then_fast):  # prefetch 1: the late reply is sent before "fast" is handled
        with pytest.raises(litemq.RpcTimeout):
            client.call("rpc", b"slow", timeout=0.1)
        assert client.call("rpc", b"fast", timeout=BOUND) == b"reply to fast"
        assert client.call("rpc", b"faster", timeout=BOUND) == b"reply to faster"
    assert handled == [b"slow", b"fast", b"faster"]  # the late reply was really sent, and dropped
    assert stored(db_path, client.reply_queue) == 0


# ---------------------------------------------------------------------------------------------------------------
# Serving
# ---------------------------------------------------------------------------------------------------------------

def test_a_reply_carries_the_requests_correlation_id_to_its_reply_to_queue(
        db_path: str, conn: litemq.Connection, other: litemq.Connection) -> None:
    conn.declare_queue("replies")
    server = litemq.RpcServer(other, "rpc", echo)
    request(conn, b"q", "abc-123")
    assert server.serve(limit=1, inactivity_timeout=BOUND) == 1
    [reply] = take_all(db_path, "replies")
    assert (reply.body, reply.properties.correlation_id) == (b"echo:q", "abc-123")
    assert (reply.exchange, reply.routing_key) == ("", "replies")
    assert stored(db_path, "rpc") == 0


def test_a_server_answers_each_request_in_one_transaction_that_also_claims_the_next(
        db_path: str, conn: litemq.Connection, other: litemq.Connection) -> None:
    conn.declare_queue("replies")
    server = litemq.RpcServer(other, "rpc", echo)
    for n in range(10):
        request(conn, b"%d" % n, f"c{n}")
    commits = other._store.commits
    assert server.serve(limit=10, inactivity_timeout=BOUND) == 10
    assert other._store.commits - commits <= 11  # the first claim, then one ack, reply and claim per request
    assert [reply.body for reply in take_all(db_path, "replies")] == [b"echo:%d" % n for n in range(10)]


@pytest.mark.parametrize("prefetch", [1, 3])
def test_a_server_holds_at_most_its_prefetch_of_requests(
        db_path: str, conn: litemq.Connection, prefetch: int) -> None:
    conn.declare_queue("rpc")
    conn.declare_queue("replies")
    for n in range(5):
        request(conn, b"%d" % n, f"c{n}")
    started, release = threading.Event(), threading.Event()

    def blocking(request: litemq.Delivery) -> bytes:
        started.set()
        assert release.wait(BOUND)
        return request.body

    with serving(db_path, blocking, prefetch=prefetch):
        assert started.wait(BOUND)
        assert conn.declare_queue("rpc", passive=True).message_count == 5 - prefetch
        release.set()
        deadline = time.monotonic() + BOUND
        while stored(db_path, "replies") < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert sorted(reply.properties.correlation_id for reply in take_all(db_path, "replies")) == \
        [f"c{n}" for n in range(5)]
    assert stored(db_path, "rpc") == 0


def test_a_handler_exception_becomes_rpc_error_and_the_request_is_acked_not_retried(
        db_path: str, conn: litemq.Connection) -> None:
    calls: list[bytes] = []

    def picky(request: litemq.Delivery) -> bytes:
        calls.append(request.body)
        if request.body == b"bad":
            raise ValueError("bad input")
        return b"ok"

    client = litemq.RpcClient(conn)
    with serving(db_path, picky) as server:
        with pytest.raises(litemq.RpcError, match="ValueError: bad input"):
            client.call("rpc", b"bad", timeout=BOUND)
        assert client.call("rpc", b"good", timeout=BOUND) == b"ok"  # the server lives on
        assert stored(db_path, "rpc") == 0
    assert calls == [b"bad", b"good"]  # handled once: acked, never redelivered
    assert server.errors == []


def test_a_handler_returning_no_body_is_an_error_reply_and_the_server_lives_on(
        db_path: str, conn: litemq.Connection) -> None:
    def forgetful(request: litemq.Delivery) -> Any:
        return None if request.body == b"forgot" else b"ok"

    client = litemq.RpcClient(conn)
    with serving(db_path, forgetful) as server:
        with pytest.raises(litemq.RpcError, match="TypeError: the handler returned NoneType, not a reply body"):
            client.call("rpc", b"forgot", timeout=BOUND)
        assert client.call("rpc", b"next", timeout=BOUND) == b"ok"
        assert stored(db_path, "rpc") == 0
    assert server.errors == []


@pytest.mark.parametrize("timeout", ["1", float("nan"), -1, True])
def test_a_bad_call_timeout_is_refused_before_the_request_is_sent(conn: litemq.Connection, timeout: Any) -> None:
    conn.declare_queue("rpc")
    client = litemq.RpcClient(conn)
    with pytest.raises(ValueError, match="timeout must be a number of seconds"):
        client.call("rpc", b"charge the card", timeout=timeout)
    assert conn.declare_queue("rpc", passive=True).message_count == 0


def test_a_call_without_a_timeout_waits_for_its_reply(db_path: str, conn: litemq.Connection) -> None:
    with serving(db_path, echo):
        assert litemq.RpcClient(conn).call("rpc", b"ping", timeout=None) == b"echo:ping"


def test_a_request_without_reply_to_is_acked_without_a_reply(
        db_path: str, conn: litemq.Connection, other: litemq.Connection) -> None:
    server = litemq.RpcServer(other, "rpc", echo)
    conn.publish("", "rpc", b"fire and forget")
    assert server.serve(limit=1, inactivity_timeout=BOUND) == 1
    assert stored(db_path, "rpc") == 0


# ---------------------------------------------------------------------------------------------------------------
# Exactly once: the reply and the ack are one transaction
# ---------------------------------------------------------------------------------------------------------------



def answer_once(db_path: str) -> list[tuple[bytes, bool]]:
    """Serve one request from a fresh connection; returns what the handler saw (body, redelivered)."""
    seen: list[tuple[bytes, bool]] = []

    def handler(request: litemq.Delivery) -> bytes:
        seen.append((request.body, request.redelivered))
        return b"answered by the survivor"

    with litemq.connect(db_path) as survivor:
        server = litemq.RpcServer(survivor, "rpc", handler, declare=False)
        assert server.serve(limit=1, inactivity_timeout=BOUND) == 1
        assert server.serve(inactivity_timeout=0.1) == 0  # and nothing else is left to answer
    return seen


def test_a_server_killed_while_its_handler_runs_leaves_the_request_to_another_server_which_answers_once(
        db_path: str, conn: litemq.Connection, tmp_path: Path, subprocess_env: dict[str, str],
        popen: list[subprocess.Popen]) -> None:
    conn.declare_queue("rpc")
    conn.declare_queue("replies")
    request(conn, b"job", "c1")
    doomed = start_python(f"w.serve_until_killed({db_path!r}, 'rpc', {str(tmp_path)!r})", subprocess_env, popen)
    assert wait_for_file_from(doomed, tmp_path / "started") == "job"
    os.kill(doomed.pid, signal.SIGKILL)
    assert doomed.wait(BOUND) == -signal.SIGKILL
    assert answer_once(db_path) == [(b"job", True)]  # it came back, redelivered
    replies = take_all(db_path, "replies")
    assert [(r.body, r.properties.correlation_id) for r in replies] == [(b"answered by the survivor", "c1")]
    assert stored(db_path, "rpc") == 0
    assert workers.worker_errors(tmp_path) == {}


@pytest.mark.parametrize("when, verb", [("before", "ack"), ("after", "ack"), ("before", "insert_message"),
                                       ("after", "insert_message")])
def test_a_server_dying_between_its_reply_and_its_ack_sends_no_reply_and_the_request_comes_back(
        db_path: str, conn: litemq.Connection, tmp_path: Path, subprocess_env: dict[str, str],
        popen: list[subprocess.Popen], when: str, verb: str) -> None:
    """The server kills itself before or after the store acks the request, or inserts the reply: had the two
    been separate commits, one of these points would leave a reply with the request back in the queue (answered
    twice), or the request acked with no reply (never answered)."""
    conn.declare_queue("rpc")
    conn.declare_queue("replies")
    request(conn, b"job", "c1")
    doomed = start_python(f"w.die_inside_the_reply_transaction({db_path!r}, 'rpc', {str(tmp_path)!r}, "
                          f"{verb!r}, {when!r})", subprocess_env, popen)
    try:
        code = doomed.wait(START_SECONDS)
    except subprocess.TimeoutExpired:
        raise AssertionError("the server never reached its reply transaction") from None
    assert code == -signal.SIGKILL, doomed.communicate()[1]
    assert (tmp_path / "dying").read_text() == f"{when} {verb} in_transaction=True"
    assert stored(db_path, "replies") == 0
    assert answer_once(db_path) == [(b"job", True)]
    replies = take_all(db_path, "replies")
    assert [(r.body, r.properties.correlation_id) for r in replies] == [(b"answered by the survivor", "c1")]
    assert stored(db_path, "rpc") == 0
    assert workers.worker_errors(tmp_path) == {}


def test_a_server_whose_lease_expired_while_its_handler_ran_sends_no_reply_and_the_new_holder_answers_once(
        db_path: str, conn: litemq.Connection) -> None:
    conn.declare_queue("rpc")
    conn.declare_queue("replies")
    request(conn, b"job", "c1")
    started, release = threading.Event(), threading.Event()
    outcome: list[object] = []

    def stale_handler(request: litemq.Delivery) -> bytes:
        started.set()
        release.wait(BOUND * 2)  # until the other server took the request over and answered it
        return b"stale answer"

    stale_connection = litemq.connect(db_path, lease_seconds=0.2, renew_leases=False)
    fresh_connection = litemq.connect(db_path)
    try:
        stale = litemq.RpcServer(stale_connection, "rpc", stale_handler, declare=False)

        def run_stale() -> None:
            try:
                outcome.append(stale.serve(limit=1, inactivity_timeout=BOUND))
            except BaseException as exc:
                outcome.append(exc)

        thread = threading.Thread(target=run_stale, daemon=True)
        thread.start()
        assert started.wait(BOUND)
        seen: list[bool] = []
        fresh = litemq.RpcServer(fresh_connection, "rpc",
                                 lambda request: seen.append(request.redelivered) or b"fresh answer", declare=False)
        assert fresh.serve(limit=1, inactivity_timeout=BOUND) == 1  # it gets the request once the lease lapses
        assert seen == [True]
        release.set()
        thread.join(BOUND)
        assert len(outcome) == 1 and isinstance(outcome[0], litemq.LeaseExpired), outcome
    finally:
        release.set()
        stale_connection.close()
        fresh_connection.close()
    replies = take_all(db_path, "replies")
    assert [(r.body, r.properties.correlation_id) for r in replies] == [(b"fresh answer", "c1")]
    assert stored(db_path, "rpc") == 0
