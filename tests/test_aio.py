"""litemq.aio: the native API as coroutines, on every engine. Statements leave the loop; an idle consumer holds no
thread and is woken by a publish, a lease that expires or a delayed message falling due; cancelling an await
loses nothing; process() settles as aio-pika's does."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from typing import Any, Awaitable, Callable, Iterator, TypeVar

import pytest

import litemq
import litemq.aio
from litemq.aio import AsyncConnection, AsyncRpcClient, AsyncRpcServer

T = TypeVar("T")
BOUND = 10.0  # the longest any awaited thing may take here; a bound, never a speed assertion


def run(db_path: str, body: Callable[[AsyncConnection], Awaitable[T]], **options: Any) -> T:
    """``body(conn)`` on a new event loop with a connection of its own, closed at the end."""
    async def main() -> T:
        async with litemq.aio.connect(db_path, **options) as conn:
            return await asyncio.wait_for(body(conn), BOUND)

    return asyncio.run(main())


def test_publish_get_and_settle_as_the_blocking_api_does(db_path):
    async def body(conn):
        await conn.declare_queue("jobs")
        assert await conn.publish("", "jobs", b"one") == 1
        assert await conn.publish_many("", "jobs", [b"two", "three"]) == 1
        first = await conn.get("jobs")
        assert (first.body, first.message_count, first.redelivered) == (b"one", 2, False)
        await first.nack(requeue=True)
        again = await conn.get("jobs")
        assert (again.body, again.redelivered) == (b"one", True)
        await again.ack()
        second = await conn.get("jobs", auto_ack=True)
        with pytest.raises(ValueError):
            await second.ack()
        third = await conn.get("jobs")
        await third.reject(requeue=False)
        return await conn.get("jobs"), await conn.declare_queue("jobs", passive=True)

    left, info = run(db_path, body)
    assert left is None and info.message_count == 0


def test_errors_are_the_blocking_apis(db_path):
    async def body(conn):
        await conn.declare_queue("jobs", durable=True)
        errors = []
        for call in (lambda: conn.declare_queue("jobs"), lambda: conn.get("missing"),
                     lambda: conn.declare_queue("amq.mine"), lambda: conn.publish("nowhere", "k", b"x"),
                     lambda: conn.publish("", "missing", b"x", mandatory=True), lambda: conn.ack(99)):
            with pytest.raises(litemq.LiteMQError) as raised:
                await call()
            errors.append(type(raised.value))
        with pytest.raises(litemq.QueueNotFound):
            await conn.consume("missing").get(timeout=1)
        return errors

    assert run(db_path, body) == [litemq.PreconditionFailed, litemq.QueueNotFound, litemq.AccessRefused,
                                  litemq.ExchangeNotFound, litemq.Unroutable, litemq.DeliveryError]


def test_async_for_consumes_with_a_prefetch_and_topology_calls_route(db_path):
    async def body(conn):
        channel = await conn.channel()
        await channel.declare_exchange("logs", "topic")
        await channel.declare_queue("errors")
        await channel.bind_queue("errors", "logs", "*.error")
        for key in ("app.error", "app.info", "db.error"):
            await channel.publish("logs", key, key)
        received = []
        async with channel.consume("errors", prefetch=10, inactivity_timeout=0.2) as consumer:
            async for delivery in consumer:
                async with delivery.process():
                    received.append(delivery.routing_key)
        await channel.unbind_queue("errors", "logs", "*.error")
        assert await channel.publish("logs", "x.error", b"lost") == 0
        assert await channel.purge_queue("errors") == 0
        assert await channel.delete_queue("errors") == 0
        await channel.delete_exchange("logs")
        await channel.close()
        return received

    assert run(db_path, body) == ["app.error", "db.error"]


def test_process_acks_on_success_and_rejects_on_an_exception_as_aio_pika_does(db_path):
    async def failing(delivery, **options):
        try:
            async with delivery.process(**options):
                raise RuntimeError("failed")
        except RuntimeError:
            pass

    async def body(conn):
        await conn.declare_queue("q")
        await conn.publish_many("", "q", [b"ok", b"drop", b"requeue", b"by hand"])
        consumer = conn.consume("q", prefetch=1)
        ok = await consumer.get(timeout=5)
        async with ok.process():
            pass
        await failing(await consumer.get(timeout=5))  # requeue=False by default: dropped
        first = await consumer.get(timeout=5)
        await failing(first, requeue=True, reject_on_redelivered=True)  # back to its place
        second = await consumer.get(timeout=5)
        await failing(second, requeue=True, reject_on_redelivered=True)  # redelivered now: dropped
        by_hand = await consumer.get(timeout=5)
        async with by_hand.process(ignore_processed=True):
            await by_hand.reject(requeue=True)  # settled in the block: process() leaves it alone
        back = await consumer.get(timeout=5)
        await back.ack()
        await consumer.cancel()
        return ([(d.body, d.redelivered, d.processed) for d in (ok, first, second, by_hand, back)],
                (await conn.declare_queue("q", passive=True)).message_count)

    settled, left = run(db_path, body)
    assert settled == [(b"ok", False, True), (b"requeue", False, True), (b"requeue", True, True),
                       (b"by hand", False, True), (b"by hand", True, True)]
    assert left == 0


def test_cancelling_an_await_keeps_the_iterator_and_loses_no_message(db_path):
    async def body(conn):
        await conn.declare_queue("q")
        consumer = conn.consume("q", prefetch=5)
        iterator = consumer.__aiter__()
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(iterator.__anext__(), 0.1)
        await conn.publish("", "q", b"after the timeout")
        delivery = await asyncio.wait_for(iterator.__anext__(), 5)
        await delivery.ack()
        # Claimed (prefetch 5) and fetched for an await that was cancelled: all go back unmarked on cancel.
        await conn.publish_many("", "q", [b"a", b"b", b"c"])
        handed = await iterator.__anext__()
        # b is in hand already and would be handed out at once, with no await to cancel: another thread holding
        # the connection makes the next await fetch it on the worker, in a task of its own, and wait for it.
        with held_elsewhere(conn.connection._store.lock):
            waiting = asyncio.ensure_future(iterator.__anext__())
            await asyncio.sleep(0)  # it started the fetch of b, and waits for it
            waiting.cancel()
        await asyncio.sleep(0.05)  # b fetched meanwhile, for no one
        assert waiting.cancelled()
        assert await consumer.cancel() == []
        await handed.ack()
        left = []
        while (message := await conn.get("q")) is not None:
            left.append((message.body, message.redelivered))
            await message.ack()
        return delivery.body, handed.body, left

    assert run(db_path, body) == (b"after the timeout", b"a", [(b"b", False), (b"c", False)])


@contextmanager
def held_elsewhere(lock: Any) -> Iterator[None]:
    """``lock`` held by another thread for the block."""
    taken, done = threading.Event(), threading.Event()

    def hold() -> None:
        with lock:
            taken.set()
            done.wait(BOUND)

    thread = threading.Thread(target=hold)
    thread.start()
    assert taken.wait(BOUND)
    try:
        yield
    finally:
        done.set()
        thread.join(BOUND)


def test_idle_consumers_hold_no_thread_and_wake_on_a_publish_from_another_connection(db_path):
    publisher = litemq.connect(db_path)

    async def body(conn):
        names = [f"q{n}" for n in range(20)]
        for name in names:
            await conn.declare_queue(name)
        consumers = [await conn.consume(name).start() for name in names]
        fetches = [asyncio.ensure_future(consumer.get()) for consumer in consumers]
        await asyncio.sleep(0.2)
        threads = threading.active_count()
        assert not any(fetch.done() for fetch in fetches)
        await asyncio.to_thread(publisher.publish, "", "q7", b"wake")
        done, _ = await asyncio.wait(fetches, return_when=asyncio.FIRST_COMPLETED, timeout=5)
        woken = [fetch.result().queue for fetch in done]
        for consumer in consumers:
            await consumer.cancel()
        return threads, woken

    before = threading.active_count()
    try:
        threads, woken = run(db_path, body)
    finally:
        publisher.close()
    # The async connection adds its worker and the blocking connection's own background thread; no thread per
    # consumer.
    assert threads <= before + 3
    assert woken == ["q7"]


def test_an_expired_lease_and_a_delayed_message_wake_an_idle_consumer(db_path):
    holder = litemq.connect(db_path, renew_leases=False)
    holder.declare_queue("q")
    holder.publish("", "q", b"leased")
    assert holder.get("q", lease_seconds=0.3) is not None  # held, never acked, not renewed

    async def body(conn):
        consumer = conn.consume("q")
        started = time.monotonic()
        returned = await consumer.get(timeout=5)
        await returned.ack()
        await conn.publish("", "q", b"later", delay=0.3)
        due = await consumer.get(timeout=5)
        await due.ack()
        return returned.body, returned.redelivered, due.body, time.monotonic() - started

    try:
        leased, redelivered, later, took = run(db_path, body)
    finally:
        holder.close()
    assert (leased, redelivered, later) == (b"leased", True, b"later")
    assert took >= 0.3


def test_acks_are_pipelined_in_order_and_what_their_commit_meets_is_raised_by_the_next_call(db_path):
    async def body(conn):
        await conn.declare_queue("jobs")
        await conn.publish_many("", "jobs", [b"1", b"2", b"3", b"stale"])
        channel = await conn.channel()
        taken = [await channel.get("jobs") for _ in range(3)]
        for delivery in taken:
            await delivery.ack()  # queued, one transaction for the three
        with pytest.raises(litemq.DeliveryError):
            await taken[0].ack()  # acked already: at once, as the blocking ack raises it
        await channel.close()  # after the acks: nothing of theirs goes back
        stale = await conn.get("jobs", lease_seconds=0.2)
        await asyncio.sleep(0.4)
        again = await conn.get("jobs")  # its lease ran out: the message went back, and here it is again
        await stale.ack()  # queued; only its commit finds the lease gone
        with pytest.raises(litemq.LeaseExpired):
            await conn.declare_queue("jobs", passive=True)
        info = await conn.declare_queue("jobs", passive=True)  # raised once
        await again.ack()
        return again.body, again.redelivered, info.message_count

    assert run(db_path, body, renew_leases=False) == (b"stale", True, 0)
    with litemq.connect(db_path) as conn:
        assert conn.get("jobs") is None


def test_acks_held_on_the_loop_commit_together_once_the_last_in_hand_is_acked_or_the_loop_turns(db_path):
    # While its consumer has more deliveries in hand, an ack waits on the loop for the next ones: the batch commits
    # in one transaction (with the claim that refills the consumer) when the last in hand is acked, when the task
    # lets the loop turn, or before any other call, which then runs after it.
    async def body(conn):
        store = conn._channel._store
        await conn.declare_queue("jobs")
        await conn.publish_many("", "jobs", [b"1", b"2", b"3", b"4", b"5", b"6"])
        consumer = conn.consume("jobs", prefetch=3)
        first = await consumer.get(timeout=BOUND)  # three claimed: two more in hand
        commits = store.commits
        await first.ack()
        held = (list(conn._acks._held) == [first.delivery_tag], store.commits - commits)
        await asyncio.sleep(0)  # the loop turns: committed, or queued on the worker where it would wait
        turned = list(conn._acks._held)
        await conn._acks.settled()
        commits = store.commits
        second = await consumer.get(timeout=BOUND)
        await second.ack()  # held: the third is in hand
        third = await consumer.get(timeout=BOUND)
        await third.ack()  # the last in hand: both go now, with the claim that refills the consumer
        last = list(conn._acks._held)
        await conn._acks.settled()
        transactions = store.commits - commits
        fourth = await consumer.get(timeout=BOUND)
        await fourth.ack()
        await conn.publish("", "jobs", b"7")  # the held ack commits first, then the publish
        await consumer.cancel()
        return held, turned, last, transactions, [d.body for d in (first, second, third, fourth)]

    assert run(db_path, body) == ((True, 0), [], [], 1, [b"1", b"2", b"3", b"4"])
    with litemq.connect(db_path) as conn:
        assert sorted(conn.get("jobs", auto_ack=True).body for _ in range(3)) == [b"5", b"6", b"7"]
        assert conn.get("jobs") is None


@pytest.mark.parametrize("acked", [20, 10], ids=["all-acked", "acks-held"])
def test_acks_queued_or_held_when_a_program_ends_without_closing_still_commit(db_path, subprocess_env, acked):
    # All twenty acked: the last ack goes at once. Ten acked with ten more in hand: they are held on the loop.
    program = """
import asyncio, sys
import litemq.aio

async def main():
    conn = await litemq.aio.connect(sys.argv[1])  # never closed
    await conn.declare_queue("jobs")
    await conn.publish_many("", "jobs", [str(n).encode() for n in range(20)])
    async for delivery in conn.consume("jobs", prefetch=20):
        await delivery.ack()
        if int(delivery.body) == int(sys.argv[2]) - 1:
            break

asyncio.run(main())
"""
    done = subprocess.run([sys.executable, "-c", program, db_path, str(acked)], env=subprocess_env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    with litemq.connect(db_path) as conn:
        back = []
        deadline = time.monotonic() + BOUND
        while len(back) < 20 - acked and time.monotonic() < deadline:  # the unacked, once their holder is dead
            delivery = conn.get("jobs", auto_ack=True)
            if delivery is None:
                time.sleep(0.05)
            else:
                back.append(int(delivery.body))
        assert sorted(back) == list(range(acked, 20))
        assert conn.declare_queue("jobs", passive=True).message_count == 0 and conn.get("jobs") is None


def test_consume_many_takes_turns_waits_on_every_queue_and_outlives_a_deleted_one(db_path, caplog):
    async def body(conn):
        for name in ("a", "b", "c"):
            await conn.declare_queue(name)
        await conn.publish_many("", "a", [b"a1", b"a2", b"a3", b"a4"])
        await conn.publish_many("", "b", [b"b1", b"b2"])
        await conn.publish("", "c", b"c1")
        got = []
        async with conn.consume_many(["a", "b", "c"], prefetch=10, inactivity_timeout=0.2) as first:
            async for delivery in first:
                got.append(delivery.body)
                await delivery.ack()
        consumers = conn.consume_many(["a", "b", "c"])
        assert await consumers.get(0.05) is None
        waiting = asyncio.ensure_future(consumers.get(BOUND))
        await asyncio.sleep(0.05)
        with litemq.connect(db_path) as other:
            other.publish("", "c", b"late")  # wakes the one wait of all three
            woken = await waiting
            await woken.ack()
            other.delete_queue("b")
            other.publish("", "a", b"after")
        after = await consumers.get(BOUND)  # b's consumer is cancelled when its claim finds the queue gone
        await after.ack()
        await consumers.cancel()
        return got, woken.body, after.body

    got, woken, after = run(db_path, body)
    assert got == [b"a1", b"b1", b"c1", b"a2", b"b2", b"a3", b"a4"]
    assert (woken, after) == (b"late", b"after")


@pytest.mark.sqlite_only
def test_without_doorbell_sockets_an_idle_consumer_polls(db_path, monkeypatch):
    monkeypatch.setattr(litemq.store.doorbells, "ABSTRACT_SOCKETS", False)
    publisher = litemq.connect(db_path)

    async def body(conn):
        await conn.declare_queue("q")
        fetch = asyncio.ensure_future(conn.consume("q").get(timeout=5))
        await asyncio.sleep(0.1)
        await asyncio.to_thread(publisher.publish, "", "q", b"polled")
        return (await fetch).body

    try:
        assert run(db_path, body) == b"polled"
    finally:
        publisher.close()


@pytest.mark.sqlite_only
def test_a_publish_waiting_for_the_files_lock_does_not_block_the_loop(db_path):
    locker = sqlite3.connect(db_path, isolation_level=None)

    async def body(conn):
        await conn.declare_queue("q")
        locker.execute("BEGIN IMMEDIATE")  # another process's long write transaction
        ticks = 0

        async def tick():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticker = asyncio.ensure_future(tick())
        publish = asyncio.ensure_future(conn.publish("", "q", b"x"))
        await asyncio.sleep(0.3)
        waited = not publish.done()
        locker.execute("COMMIT")
        await publish
        ticker.cancel()
        return waited, ticks

    try:
        waited, ticks = run(db_path, body)
    finally:
        locker.close()
    assert waited and ticks >= 10


@pytest.mark.sqlite_only
def test_a_write_the_loop_found_the_lock_taken_for_is_tried_again_without_waiting_before_it_waits(db_path,
                                                                                                 monkeypatch):
    # On the worker, a publish the loop could not make tries again without waiting after short pauses (SQLite's
    # busy handler would first sleep a millisecond, then longer), and only then waits as any write does. Here the
    # pauses are long and the wait short: the publish lands through a retry, after the wait alone would have
    # given up.
    import litemq.aio.worker

    monkeypatch.setattr(litemq.aio.worker, "RETRY_PAUSES", (0.05,) * 10)
    locker = sqlite3.connect(db_path, isolation_level=None)

    async def body(conn):
        await conn.declare_queue("q")
        locker.execute("BEGIN IMMEDIATE")
        publish = asyncio.ensure_future(conn.publish("", "q", b"x"))
        await asyncio.sleep(0.2)  # longer than the busy timeout: only a retry can store it
        locker.execute("COMMIT")
        return await publish, conn._worker.submitted

    try:
        reached, hops = run(db_path, body, busy_timeout=0.05)
    finally:
        locker.close()
    assert reached == 1 and hops >= 1
    with litemq.connect(db_path) as conn:
        assert conn.get("q", auto_ack=True).body == b"x"


def test_where_no_write_goes_without_waiting_the_worker_waits_at_once(monkeypatch):
    # PostgreSQL, or SQLite with synchronous=FULL: a retry without waiting could never succeed, so none is made.
    import litemq.aio.worker

    class Store:
        writes_without_waiting = False

        def without_waiting(self):
            raise AssertionError("tried without waiting")

    slept: list[float] = []
    monkeypatch.setattr(litemq.aio.worker.time, "sleep", slept.append)
    assert litemq.aio.worker._retried(Store(), lambda *args: args, (1, 2)) == (1, 2)
    assert slept == []


def test_ack_and_publish_and_rpc(db_path):
    async def body(conn):
        await conn.declare_queue("in")
        await conn.declare_queue("out")
        await conn.publish("", "in", b"job")
        job = await conn.get("in")
        await conn.ack_and_publish(job.delivery_tag, "", "out", b"result")

        async def double(request):
            if request.body == b"boom":
                raise ValueError("no")
            return str(2 * int(request.body))

        server = AsyncRpcServer(conn, "rpc", double)
        serving = asyncio.ensure_future(server.serve(limit=2))
        async with AsyncRpcClient(conn) as client:
            answer = await client.call("rpc", b"21", timeout=5)
            with pytest.raises(litemq.RpcError, match="ValueError: no"):
                await client.call("rpc", b"boom", timeout=5)
            with pytest.raises(litemq.Unroutable):
                await client.call("nobody", b"x", timeout=5)
        assert await serving == 2
        await server.close()
        return (await conn.get("in")), (await conn.get("out", auto_ack=True)).body, answer

    assert run(db_path, body) == (None, b"result", b"42")


def test_a_finished_consumer_ends_its_iteration_and_returns_what_it_claimed(db_path):
    async def body(conn):
        await conn.declare_queue("q")
        await conn.publish_many("", "q", [b"1", b"2", b"3"])
        consumer = conn.consume("q", prefetch=3)
        seen = []
        async for delivery in consumer:
            seen.append(delivery.body)
            await delivery.ack()
            consumer.finish()
        info = await conn.declare_queue("q", passive=True)
        first_left = await conn.get("q")
        return seen, info.message_count, first_left.redelivered

    assert run(db_path, body) == ([b"1"], 2, False)


@pytest.mark.parametrize("pamqp", [True, False])
def test_aio_pikas_publish_returns_a_publisher_confirm_with_the_channels_next_tag(db_path, monkeypatch, pamqp):
    from litemq import aio_pika
    from litemq.aio_pika import exchange

    if not pamqp:
        monkeypatch.setitem(sys.modules, "pamqp.commands", None)  # an import of it raises ImportError
    exchange._ack_class.cache_clear()  # (and again at the end, below: pamqp's class for the tests after)

    async def main() -> list[Any]:
        async with await aio_pika.connect(db_path) as connection:
            channel = await connection.channel()
            queue = await channel.declare_queue("q")
            return [await channel.default_exchange.publish(aio_pika.Message(b"m"), routing_key=queue.name)
                    for _ in range(2)]

    try:
        confirms = asyncio.run(main())
    finally:
        exchange._ack_class.cache_clear()
    assert [(c.name, c.delivery_tag) for c in confirms] == [("Basic.Ack", 1), ("Basic.Ack", 2)]
    assert (type(confirms[0]).__module__ == exchange.__name__) is not pamqp


def test_publish_claim_and_ack_run_on_the_loops_thread_only_where_that_never_waits(db_path, engine):
    # SQLite with synchronous=NORMAL commits without syncing: there a publish, the claim a ring calls for and the
    # ack of a consumer's last delivery in hand take no hop to the worker thread. PostgreSQL's commit waits for
    # the server, and so does SQLite's with FULL: there everything runs on the worker.
    async def body(conn):
        await conn.declare_queue("q")
        consumer = conn.consume("q", prefetch=10)
        await consumer.start()
        fetch = asyncio.ensure_future(consumer.get(timeout=5))
        await asyncio.sleep(0.1)  # waiting, its first claim and its waiter's first steps done
        before = conn._worker.submitted
        await conn.publish("", "q", b"x")
        delivery = await fetch
        await delivery.ack()
        hops = conn._worker.submitted - before
        await asyncio.sleep(0.1)
        return delivery.body, hops, await conn.get("q")

    on_loop = engine == "sqlite"
    body_, hops, left = run(db_path, body)
    assert (body_, left) == (b"x", None)
    assert (hops == 0) == on_loop
    if on_loop:
        _, hops, _ = run(db_path, body, synchronous="FULL")
        assert hops > 0


@pytest.mark.sqlite_only
def test_a_write_that_may_not_wait_finds_the_files_lock_taken_and_does_nothing(db_path):
    from litemq.store.contract import WouldWait

    with litemq.connect(db_path) as conn:
        conn.declare_queue("q")
        locker = sqlite3.connect(db_path, isolation_level=None)
        try:
            locker.execute("BEGIN IMMEDIATE")  # another process's write transaction
            started = time.monotonic()
            with pytest.raises(WouldWait):
                with conn._store.without_waiting():
                    conn.publish("", "q", b"x")
            assert time.monotonic() - started < BOUND / 2  # refused at once, not after the busy timeout
            locker.execute("COMMIT")
        finally:
            locker.close()
        assert conn.get("q") is None  # nothing was stored
        with conn._store.without_waiting():  # free now: it runs, and a second write in the block may wait
            conn.publish("", "q", b"y")
            conn.publish("", "q", b"z")
        assert [conn.get("q", auto_ack=True).body for _ in range(2)] == [b"y", b"z"]


@pytest.mark.sqlite_only
def test_a_publish_that_may_not_wait_to_a_plain_queue_is_one_statement_and_refused_whole_when_the_lock_is_taken(
        db_path):
    # An event loop's publish takes the blocking publish's path: its INSERT alone, no BEGIN and COMMIT around it.
    from litemq.store.contract import WouldWait

    with litemq.connect(db_path) as conn:
        conn.declare_queue("q")
        statements: list[str] = []
        conn._store._db.set_trace_callback(statements.append)
        with conn._store.without_waiting():
            conn.publish("", "q", b"x")
        kinds = {sql.split()[0] for sql in statements if not sql.startswith("PRAGMA")}
        assert kinds == {"INSERT"}  # (its trigger programs are traced with its text)
        locker = sqlite3.connect(db_path, isolation_level=None)
        try:
            locker.execute("BEGIN IMMEDIATE")
            with pytest.raises(WouldWait):
                with conn._store.without_waiting():
                    conn.publish("", "q", b"y")
            locker.execute("COMMIT")
        finally:
            locker.close()
        conn._store._db.set_trace_callback(None)
        assert [conn.get("q", auto_ack=True).body, conn.get("q")] == [b"x", None]


@pytest.mark.sqlite_only
def test_a_write_that_may_wait_after_writes_that_might_not_still_waits_for_the_files_lock(db_path):
    # Writes that may not wait leave SQLite's busy timeout at 0 between them; any other use gives it back first.
    with litemq.connect(db_path) as conn:
        conn.declare_queue("q")
        with conn._store.without_waiting():
            conn.publish("", "q", b"x")
        locker = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
        try:
            locker.execute("BEGIN IMMEDIATE")  # another process's write transaction, for a moment
            release = threading.Timer(0.3, locker.execute, ("COMMIT",))
            release.start()
            conn.publish("", "q", b"y")  # waits for it, as before, rather than failing as busy
            release.join(BOUND)
        finally:
            locker.close()
        assert [conn.get("q", auto_ack=True).body for _ in range(2)] == [b"x", b"y"]


@pytest.mark.sqlite_only
def test_reads_inside_writes_that_may_not_wait_leave_the_busy_timeout_off_until_another_use(db_path):
    # A claim reads inside its write (its lock held, nothing to wait for) and a waiter's step on the loop reads
    # the file's version: neither gives the busy timeout back between an event loop's writes.
    def busy_timeout(conn: litemq.Connection) -> int:
        return int(conn._store._db.execute("PRAGMA busy_timeout").fetchone()[0])

    with litemq.connect(db_path) as conn:
        conn.declare_queue("q")
        conn.publish("", "q", b"x")
        consumer = conn.consume("q", prefetch=10)
        with conn._store.without_waiting():
            assert consumer._fill()  # a claim: BEGIN IMMEDIATE with the timeout off, then reads inside it
        assert busy_timeout(conn) == 0
        with conn._store.without_waiting():
            conn._store.data_version()
        assert busy_timeout(conn) == 0
        conn._store.data_version()  # a read outside such a block gives it back
        assert busy_timeout(conn) == 60000


@pytest.mark.sqlite_only
def test_a_consumer_whose_acks_refill_found_nothing_waits_without_claiming_again_and_gets_what_comes_next(db_path):
    # The ack's transaction claimed for it (its refill) and found nothing: a claim right after would find nothing
    # either, so the consumer goes straight to its wait; a message published next still comes (its ring).
    async def body(conn):
        await conn.declare_queue("q")
        writes = []
        conn.connection._store._db.set_trace_callback(
            lambda sql: writes.append(sql) if sql.startswith("BEGIN IMMEDIATE") else None)
        consumer = conn.consume("q", prefetch=10)
        with litemq.connect(db_path) as publisher:
            publisher.publish("", "q", b"one")
            first = await consumer.get(BOUND)
            await first.ack()  # committed with its refill, which found nothing
            writes.clear()
            waiting = asyncio.ensure_future(consumer.get(BOUND))
            while not consumer._consumer.waiting:
                await asyncio.sleep(0)
            claims_before_waiting = len(writes)
            publisher.publish("", "q", b"two")
            second = await waiting
        await consumer.cancel()
        return first.body, claims_before_waiting, second.body

    assert run(db_path, body) == (b"one", 0, b"two")


@pytest.mark.parametrize("told", [True, False])
def test_an_idle_waiter_told_of_changes_looks_at_no_consumer_when_its_timer_wakes_it_to_an_unchanged_file(
        db_path, told):
    # What keeps the step of a thousand idle async consumers short (it holds the GIL the loop needs): their
    # waiter is told when one stops or finishes, and a delivery claimed for one rings its doorbell.
    from litemq.consumer import Waiter

    class Looked:
        def __init__(self, consumer: Any, looks: list[str]) -> None:
            object.__setattr__(self, "_consumer", consumer)
            object.__setattr__(self, "_looks", looks)

        def __getattr__(self, name: str) -> Any:
            self._looks.append(name)
            return getattr(self._consumer, name)

    with litemq.connect(db_path) as conn:
        conn.declare_queue("q")
        consumer = conn.consume("q")
        looks: list[str] = []
        steps = Waiter(consumer._session).waiting([Looked(consumer, looks)], None, told=told)
        next(steps)  # the first look
        looks.clear()
        steps.send(None)  # the timer
        timer_looks = bool(looks)
        consumer.finishing = True
        try:
            steps.send(consumer.doorbell.socket)  # a ring: the consumers are looked at again
            ended = False
        except StopIteration:
            ended = True
        consumer.finishing = False
    assert (timer_looks, ended) == (not told, True)


def test_an_idle_consumers_waiter_steps_on_the_loops_thread_only_where_that_never_waits(db_path, engine,
                                                                                        monkeypatch):
    # One consumer's waiter reads a few rows a step: on SQLite with synchronous=NORMAL its steps (the first look,
    # the timer's wakes, a ring's) take no hop to the worker thread (unless the lock is busy at that moment, with
    # a lease renewal, say); where a commit waits, they all run there.
    import litemq.aio.idle

    threads: list[bool] = []
    step = litemq.aio.idle._step

    def recorded(*args: Any) -> Any:
        threads.append(threading.current_thread() is threading.main_thread())
        return step(*args)

    monkeypatch.setattr(litemq.aio.idle, "_step", recorded)

    async def body(conn):
        await conn.declare_queue("q")
        consumer = conn.consume("q")
        fetch = asyncio.ensure_future(consumer.get(timeout=BOUND))
        await asyncio.sleep(1.5)  # waiting: its first look and a wake of its timer
        async with litemq.aio.connect(db_path) as other:
            await other.publish("", "q", b"x")
        delivery = await fetch
        await delivery.ack()
        return delivery.body

    assert run(db_path, body) == b"x"
    on_loop = engine == "sqlite"
    assert len(threads) >= 2 and (threads.count(True) > len(threads) // 2 if on_loop else not any(threads))


@pytest.mark.sqlite_only
def test_a_waiters_step_that_would_wait_for_the_files_lock_runs_on_the_worker_and_the_loop_goes_on(db_path):
    # A delayed message falls due while another process holds the write lock: the step on the loop's thread that
    # would move it stops at that write, and the waiter does it again on the worker, which waits.
    locker = sqlite3.connect(db_path, isolation_level=None)

    async def body(conn):
        await conn.declare_queue("q")
        consumer = conn.consume("q")
        await consumer.start()
        await conn.publish("", "q", b"later", delay=0.3)
        fetch = asyncio.ensure_future(consumer.get(timeout=BOUND))
        await asyncio.sleep(0.1)
        locker.execute("BEGIN IMMEDIATE")  # another process's long write transaction, past the delay
        await asyncio.sleep(0.5)  # the loop turns meanwhile (a step waiting on its thread would hang the test)
        waited = not fetch.done()
        locker.execute("COMMIT")
        delivery = await fetch
        await delivery.ack()
        return waited, delivery.body

    try:
        assert run(db_path, body) == (True, b"later")
    finally:
        locker.close()


@pytest.mark.sqlite_only
def test_a_ring_that_finds_nothing_once_is_late_news_and_the_next_ring_is_still_answered_on_the_loop(db_path):
    # A publish's ring may be read after its message was claimed: it finds nothing, and the next ring still
    # claims on the loop at once; a second ring in a row that finds nothing sends rings to the waiter (its hush).
    async def body(conn):
        await conn.declare_queue("q")
        consumer = conn.consume("q")
        fetch = asyncio.ensure_future(consumer.get(timeout=BOUND))
        await asyncio.sleep(0.2)  # waiting
        member = consumer._consumer
        member.doorbell.ring()  # nothing published
        await asyncio.sleep(0.2)
        after_one = conn._idle._futile
        member.doorbell.ring()
        await asyncio.sleep(0.2)
        after_two = conn._idle._futile
        await conn.publish("", "q", b"x")
        delivery = await fetch
        await delivery.ack()
        return after_one, after_two, delivery.body

    assert run(db_path, body) == (False, True, b"x")


def test_a_ring_answered_on_the_loop_reads_its_queue_once_before_the_claim(db_path, engine):
    # A priority-0 consumer's ring: its queue's count and whether a consumer of higher priority has room in one
    # read, as the blocking waiter's, then the claim; no separate look at the consumers' ranking. (On PostgreSQL no
    # ring is answered on the loop: every statement waits for the server, so the worker runs them.)
    publisher = litemq.connect(db_path)

    async def body(conn):
        await conn.declare_queue("q")
        consumer = conn.consume("q")
        fetch = asyncio.ensure_future(consumer.get(timeout=BOUND))
        await asyncio.sleep(0.2)  # waiting
        store, reads = consumer._consumer._store, []
        for name in ("ready_count", "ready_count_ranked", "consumer_ranking"):
            def counted(*args, _read=getattr(store, name), _name=name):
                if threading.current_thread() is threading.main_thread():
                    reads.append(_name)
                return _read(*args)
            setattr(store, name, counted)
        await asyncio.to_thread(publisher.publish, "", "q", b"x")
        delivery = await fetch
        await delivery.ack()
        for name in ("ready_count", "ready_count_ranked", "consumer_ranking"):
            delattr(store, name)
        return delivery.body, reads

    try:
        assert run(db_path, body) == (b"x", ["ready_count_ranked"] if engine == "sqlite" else [])
    finally:
        publisher.close()


def test_on_uvloops_event_loop_consumers_wake_on_publishes_and_rpc_answers(db_path):
    # uvicorn runs FastAPI services on uvloop when it is installed: the doorbells (add_reader), the worker thread's
    # hand-backs and the timers must work on its loop as on asyncio's.
    uvloop = pytest.importorskip("uvloop", reason="uvloop is not installed (the test extra installs it)")
    publisher = litemq.connect(db_path)

    async def body(conn):
        assert type(asyncio.get_running_loop()).__module__.startswith("uvloop")
        await conn.declare_queue("jobs")
        received = []

        async def consume():
            async for delivery in conn.consume("jobs", prefetch=2):
                received.append(delivery.body)
                await delivery.ack()
                if len(received) == 3:
                    return

        consuming = asyncio.ensure_future(consume())
        await asyncio.sleep(0.1)  # waiting, on the loop
        for body in (b"1", b"2", b"3"):
            await asyncio.to_thread(publisher.publish, "", "jobs", body)
        await asyncio.wait_for(consuming, BOUND)
        server = AsyncRpcServer(conn, "rpc", lambda request: request.body.upper())
        serving = asyncio.ensure_future(server.serve(limit=1))
        async with AsyncRpcClient(conn) as client:
            answer = await client.call("rpc", b"up", timeout=5)
        await serving
        await server.close()
        return received, answer

    async def main():
        async with litemq.aio.connect(db_path) as conn:
            return await asyncio.wait_for(body(conn), BOUND)

    try:
        assert uvloop.run(main()) == ([b"1", b"2", b"3"], b"UP")
    finally:
        publisher.close()
    with litemq.connect(db_path) as conn:
        assert conn.declare_queue("jobs", passive=True).message_count == 0
