"""Idle asyncio consumers: waiting on the event loop, with no thread and no polling.

The idle consumers of one connection wait together, as a ``ConsumerSet`` does in a thread: one ``Waiter`` for all
of them, its steps (the reads, and the writes of what falls due) on the connection's worker thread, its naps on
the loop (``loop.add_reader`` on the doorbells and hang-up watches, ``call_later`` for the timer). So a thousand
idle consumers cost one timer a second between them, not a thousand. When the waiter finds work, only the
consumers that have some are woken. Where doorbells have no socket, the nap polls the store's change counter
with backoff, as the blocking waiter does.

A doorbell that rings while the worker is idle is answered on the loop's thread at once, where the store lets a
write go without waiting (``Worker.here``): its queue's ready count read and, when it shows messages, a claim for
its consumer, which is woken with them. The ring then costs one wake-up, as a blocking consumer's does, rather
than three (the loop, the worker, the loop). Two rings in a row that find nothing (the first may be late news of
a message claimed already) turn this off until the waiter next finds work, so that a flood of rings meets the
waiter's hush.
"""

from __future__ import annotations

import asyncio
import socket
import time
from operator import attrgetter
from typing import TYPE_CHECKING, Any, Generator, Optional, Union

from ..consumer import Consumer, Nap, Waiter, claim_found_work
from ..log import logger
from ..store.waiting import POLL_MAX_SECONDS, POLL_MIN_SECONDS, POLLED, drain
from .worker import Worker

if TYPE_CHECKING:
    from ..session import Session

Steps = Generator[Nap, Optional[socket.socket], Optional[socket.socket]]


class _Done:
    """A step's answer when the waiter's wait ended: these consumers may have work (claimed for them already, or
    the error their claim met)."""

    def __init__(self, ready: list[Consumer], failed: dict[Consumer, BaseException]) -> None:
        self.ready = ready
        self.failed = failed


STEP_HERE_MOST = 4
"""Most consumers whose waiter's step runs on the loop's thread: a step reads a few rows per consumer (a thousand
would hold the loop for a millisecond)."""

_RESTART = object()
"""What a nap returns when the set of idle consumers changed: the waiter starts over with the new set."""


class Idle:
    """Where the idle consumers of one connection wait (see the module's docstring).

    A waiting consumer's doorbell is watched by the loop from when it starts waiting until it stops, not nap by
    nap: a nap that ends every second (the waiter's timer) then costs no ``add_reader``/``remove_reader`` per idle
    consumer. A ring is drained when it comes; one that comes between naps ends the next nap at once."""

    def __init__(self, session: "Session", worker: Worker) -> None:
        self._session = session
        self._worker = worker
        self._waiter = Waiter(session)
        self._waiting: dict[Consumer, "asyncio.Future[None]"] = {}
        self._watched: dict[Consumer, int] = {}
        """The waiting consumers whose doorbell the loop watches: its descriptor."""
        self._restart: Optional["asyncio.Future[None]"] = None
        self._task: Optional["asyncio.Task[None]"] = None
        self._woke: Optional["asyncio.Future[Any]"] = None
        """The nap under way that hears doorbells (none while the waiter hushes them)."""
        self._rang: Optional[socket.socket] = None
        """A doorbell that rang when no nap heard it."""
        self._futile = False
        """A ring answered on the loop found nothing: until the waiter finds work, rings go to the waiter."""
        self._stale = True
        """The next ring that finds nothing may be late news (a publish whose message was claimed before its ring
        was read): it does not set ``_futile``; a second in a row does."""
        self._socketed: list[Any] = []
        """The doorbells of the nap before, each with a socket: a nap on the same list need not look again."""
        self.closed = False

    async def wait(self, consumers: list[Consumer], timeout: Optional[float]) -> None:
        """Until one of the consumers may have work (a claim will tell), ``timeout`` seconds pass, or ``wake`` is
        called for one of them."""
        if self.closed or not consumers:
            return
        loop = asyncio.get_running_loop()
        future: "asyncio.Future[None]" = loop.create_future()
        for consumer in consumers:
            self._waiting[consumer] = future
            consumer.waiting = True  # an ack on the worker that claims for it rings its doorbell
            self._watch(consumer, future)
        timer = None if timeout is None else loop.call_later(max(0.0, timeout), _settle, future)
        self._changed()
        try:
            await future
        finally:
            if timer is not None:
                timer.cancel()
            for consumer in consumers:
                consumer.waiting = False
                if self._waiting.get(consumer) is future:
                    self._release(consumer)

    def wake(self, consumer: Consumer) -> None:
        """End the consumer's wait now (it is finishing)."""
        if consumer in self._waiting:
            self._release(consumer)
            self._changed()

    async def leave(self, consumer: Consumer) -> None:
        """End the consumer's wait; the loop no longer watches its doorbell, which may then close (a descriptor
        closed while the loop watches it could be reused and mistaken)."""
        self.wake(consumer)

    def unwatch(self, channel: object) -> list[Consumer]:
        """Stop watching the doorbells of the channel's waiting consumers (it is about to close them); which they
        are, for ``wake`` once it has."""
        consumers = [consumer for consumer in self._waiting if consumer.channel is channel]
        for consumer in consumers:
            self._unwatch(consumer)
        return consumers

    async def close(self) -> None:
        """End every wait and the waiting itself (the connection closes)."""
        self.closed = True
        for consumer in list(self._waiting):
            await self.leave(consumer)
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait([task])

    def _watch(self, consumer: Consumer, future: "asyncio.Future[None]") -> None:
        sock = consumer.doorbell.socket
        if sock is None or consumer in self._watched:
            return  # no socket here: the naps poll
        try:
            asyncio.get_running_loop().add_reader(sock.fileno(), self._ring, sock, consumer)
        except (OSError, ValueError):  # closed meanwhile (the consumer stopped): let it look
            _settle(future)
            return
        self._watched[consumer] = sock.fileno()

    def _unwatch(self, consumer: Consumer) -> None:
        fd = self._watched.pop(consumer, None)
        if fd is not None:
            asyncio.get_running_loop().remove_reader(fd)

    def _release(self, consumer: Consumer, error: Optional[BaseException] = None) -> None:
        self._unwatch(consumer)
        future = self._waiting.pop(consumer, None)
        if future is not None and not future.done():
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)

    def _ring(self, sock: socket.socket, consumer: Consumer) -> None:
        drain(sock)
        if self._claimed_here(consumer):
            return
        if self._woke is not None and not self._woke.done():
            self._woke.set_result(sock)
        else:
            self._rang = sock

    def _claimed_here(self, consumer: Consumer) -> bool:
        """Whether the ring was answered on the loop's thread: a claim made for the consumer (or the error its
        claim met), which is woken (see the module's docstring)."""
        if self._futile or consumer.finishing or not consumer.active or consumer._buffer or consumer._room() <= 0 \
                or self._waiting.get(consumer) is None:
            return False
        error: Optional[Exception] = None
        try:
            done, claimed = self._worker.here(consumer._store, _claim_if_ready, consumer)
        except Exception as exc:  # its claim's error (a storage error, ...) is its consumer's, as in a step
            done, claimed, error = True, True, exc
        if not done:
            return False
        if not claimed:
            self._futile = not self._stale
            self._stale = False
            return False
        self._stale = True
        self._release(consumer, error)
        self._changed()  # the waiter starts over without it
        return True

    def _changed(self) -> None:
        if self._restart is not None:
            _settle(self._restart)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        try:
            await self._serve()
        except Exception:
            # The store failed under the waiter (a server gone, a full disk): every waiting consumer claims, and
            # meets the error itself.
            logger().exception("litemq: waiting for messages in %s failed", self._session.path)
            for consumer in list(self._waiting):
                self._release(consumer)

    async def _serve(self) -> None:
        while self._waiting:
            self._restart = asyncio.get_running_loop().create_future()
            restart = self._restart
            # Consumers that are finishing or cancelled end their wait at once; a waiter given them would too.
            for consumer in [c for c in self._waiting if c.finishing or not c.active]:
                self._release(consumer)
            consumers = list(self._waiting)
            if not consumers:
                return
            steps = self._waiter.waiting(consumers, None, told=True)  # wake() and _changed() tell it
            steps, answer = await self._stepped(steps, None, consumers)
            while isinstance(answer, Nap):
                woke = await self._nap(answer, restart)
                if woke is _RESTART:
                    break
                steps, answer = await self._stepped(steps, woke, consumers)
            if isinstance(answer, _Done):
                self._futile, self._stale = False, True
                for consumer in answer.ready:
                    self._release(consumer, answer.failed.get(consumer))

    async def _stepped(self, steps: Steps, woke: Optional[socket.socket], consumers: list[Consumer]
                       ) -> tuple[Steps, Union[Nap, _Done]]:
        """A step of the waiter: for a few consumers on the loop's thread where its writes (rare: what fell due, a
        dead connection's cleanup) would not wait (``Worker.here``), sparing two thread wake-ups a wait; else on
        the worker. A step abandoned at a write that would have waited is started afresh on the worker."""
        if len(consumers) <= STEP_HERE_MOST:
            done, answer = self._worker.here(self._session.store, _step, steps, woke, consumers)
            if done:
                return steps, answer  # type: ignore[return-value]
            if steps.gi_frame is None:  # it ended at that write: nothing of it done
                self._waiter.forget_seen()
                steps, woke = self._waiter.waiting(consumers, None, told=True), None
        return steps, await self._worker.run(_step, steps, woke, consumers)

    async def _nap(self, nap: Nap, restart: "asyncio.Future[None]") -> Any:
        """Until a doorbell of the nap rings, a socket of the nap is readable (it), its timeout, or ``restart``."""
        if nap.doorbells is not self._socketed:  # a waiter told of changes naps again on the same list
            if None in map(_socket, nap.doorbells):
                return await self._poll(nap, restart)
            self._socketed = nap.doorbells
        if nap.doorbells and self._rang is not None:
            rang, self._rang = self._rang, None
            return rang
        loop = asyncio.get_running_loop()
        woke: "asyncio.Future[Any]" = loop.create_future()
        if nap.doorbells:
            self._woke = woke
        watched: list[int] = []
        for sock in nap.sockets:  # hang-up watches: few, and they come and go with other connections
            try:
                loop.add_reader(sock.fileno(), _settle, woke, sock)
                watched.append(sock.fileno())
            except (OSError, ValueError):  # a hang-up watch closed meanwhile: look now
                _settle(woke, sock)
        timer = loop.call_later(max(0.0, nap.timeout), _settle, woke, None)

        def restarted(_: object) -> None:
            _settle(woke, _RESTART)

        restart.add_done_callback(restarted)
        try:
            return await woke
        finally:
            self._woke = None
            timer.cancel()
            restart.remove_done_callback(restarted)
            for fd in watched:
                loop.remove_reader(fd)
    async def _poll(self, nap: Nap, restart: "asyncio.Future[None]") -> Any:
        # No doorbell sockets here: look at the store's change counter (on the worker) with backoff.
        deadline = time.monotonic() + nap.timeout
        pause = POLL_MIN_SECONDS
        while not restart.done():
            readable = [sock for sock in nap.sockets if _readable(sock)]
            if readable:
                return readable[0]
            if await self._worker.run(self._waiter._file_unseen):
                return POLLED
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            await asyncio.wait([restart], timeout=min(pause, left))
            pause = min(pause * 2, POLL_MAX_SECONDS)
        return _RESTART


_socket = attrgetter("socket")


def _step(steps: Steps, woke: Optional[socket.socket], consumers: list[Consumer]) -> Union[Nap, _Done]:
    """One step of the waiter, on the worker thread; when its wait ends, which consumers may have work."""
    try:
        return steps.send(woke)
    except StopIteration:
        pass
    ready, failed = claim_found_work(consumers)
    return _Done(ready, failed)


def _claim_if_ready(consumer: Consumer) -> bool:
    """A claim for the consumer when its queue's ready count shows messages it may take; whether it got some. Not
    where the queue is gone: that claim cancels the consumer, closing the doorbell the loop watches."""
    return bool(consumer.ready_to_take()) and consumer._fill()


def _settle(future: "asyncio.Future[Any]", result: Any = None) -> None:
    if not future.done():
        future.set_result(result)


def _readable(sock: socket.socket) -> bool:
    import select

    try:
        return bool(select.select([sock], [], [], 0)[0])
    except (OSError, ValueError):  # closed meanwhile: its connection's death is looked for anyway
        return True
