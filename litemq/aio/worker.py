"""The thread an asyncio connection runs its statements on, so that no commit, lock wait or fsync blocks the loop.

One daemon thread per connection takes calls in order from a queue and resolves each caller's future on the
caller's loop. A call of one write transaction (a publish, a claim, an ack) runs on the loop's own thread instead
when that never waits (``run``'s ``store``): each hop between threads is a wake-up, which on a busy machine costs
more than the statement. Daemon, and stopped when its connection closes, so a program that forgets to close never hangs at
exit (aiosqlite's non-daemon thread did); at exit, what was queued and not yet run (a pipelined ack) still runs,
for up to EXIT_SECONDS. A call whose awaiting task was cancelled before the thread reached it is skipped: it never
started, as if it had not been made."""

from __future__ import annotations

import asyncio
import atexit
import queue
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any, Callable, Optional, TypeVar

from ..store.contract import WouldWait

if TYPE_CHECKING:
    from ..store.contract import Store

T = TypeVar("T")
EXIT_SECONDS = 10.0
"""How long a program's exit waits for the calls its workers still have queued."""
RETRY_PAUSES = (0.00005, 0.0001, 0.0002, 0.0004)
"""A write the loop found the file's lock taken for tries again on the worker without waiting, after each of these
pauses, before it waits as any other write does: SQLite's busy handler sleeps a millisecond at its first try and
longer after, while another process's write transaction (a consumer's ack and claim) holds the lock for about a
tenth of that."""

_Job = Optional[tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", Callable[..., Any], tuple[Any, ...],
                      Optional["Store"]]]


class Worker:
    def __init__(self, name: str) -> None:
        self._jobs: "queue.SimpleQueue[_Job]" = queue.SimpleQueue()
        self._stopped = False
        self.submitted = 0
        """How many calls were queued so far: a call may join one queued before only if nothing came between."""
        self._finished = 0
        """How many of them the thread has run (written by the thread alone, as ``submitted`` by the loop)."""
        self._held: list[Callable[[], None]] = []
        """Acks held on the loop (``acks``), each batch's flush: any call made through the worker flushes them
        first, so they commit before it, in the order they were made."""
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        _running.add(self)

    async def run(self, call: Callable[..., T], *args: Any, store: Optional["Store"] = None) -> T:
        """``call(*args)`` on the worker thread; its result or its exception here. With ``store``: at once on this
        thread instead if nothing is queued before it and its first write need not wait (``here``)."""
        if store is not None:
            done, result = self.here(store, call, *args)
            if done:
                return result  # type: ignore[return-value]
        return await self.submit(call, *args, store=store)

    def hold(self, flush: Callable[[], None]) -> None:
        """A batch of acks is held on the loop: ``flush`` commits (or queues) it, and runs before any later call."""
        self._held.append(flush)

    def unhold(self, flush: Callable[[], None]) -> None:
        if flush in self._held:
            self._held.remove(flush)

    def _flush_held(self) -> None:
        while self._held:
            self._held.pop(0)()

    def here(self, store: "Store", call: Callable[..., T], *args: Any, **kwargs: Any) -> tuple[bool, Optional[T]]:
        """``call(*args)`` on this (the loop's) thread, where that never waits: the worker idle (nothing queued
        before it), the store's lock free and its first write begun without waiting (``Store.without_waiting``),
        committed without waiting for the disk. The loop spends only the statements' CPU (a tenth of a
        millisecond for a publish or a claim). ``call`` must do nothing before its first write that it would
        not do again: when that write would wait, this returns (False, None) and the caller queues the call.
        Raises what ``call`` raises (``call(*args, **kwargs)``)."""
        if self._held:
            self._flush_held()
        if not store.writes_without_waiting or self._finished != self.submitted or self._stopped:
            return False, None
        return _tried(store, call, *args, **kwargs)

    @property
    def idle(self) -> bool:
        """Nothing queued or running."""
        return self._finished == self.submitted

    def submit(self, call: Callable[..., T], *args: Any, store: Optional["Store"] = None) -> "asyncio.Future[T]":
        """``call(*args)`` queued for the worker thread now (after every call queued before it); the future of its
        result. With ``store``: a write that ``here`` found the lock taken for (see RETRY_PAUSES)."""
        if self._stopped:
            raise RuntimeError("the connection's worker thread has stopped (the connection is closed)")
        if self._held:
            self._flush_held()
        loop = asyncio.get_running_loop()
        future: "asyncio.Future[T]" = loop.create_future()
        self._jobs.put((loop, future, call, args, store))
        self.submitted += 1
        return future

    @property
    def stopped(self) -> bool:
        return self._stopped

    def stop(self) -> None:
        """No more calls; the thread ends once those already queued are done."""
        if not self._stopped:
            self._stopped = True
            self._jobs.put(None)

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            loop, future, call, args, store = job
            if future.cancelled():
                self._finished += 1
                continue
            try:
                result = call(*args) if store is None else _retried(store, call, args)
            except BaseException as exc:  # handed to the caller, whatever it is
                self._finished += 1
                _resolve(loop, future, None, exc)
            else:
                self._finished += 1
                _resolve(loop, future, result, None)
            del job, future, call, args, store


def _retried(store: "Store", call: Callable[..., T], args: tuple[Any, ...]) -> T:
    """``call(*args)``, tried without waiting after each of RETRY_PAUSES before it may wait (at once where no write
    goes without waiting: PostgreSQL, SQLite with synchronous=FULL)."""
    for pause in RETRY_PAUSES if store.writes_without_waiting else ():
        time.sleep(pause)
        done, result = _tried(store, call, *args)
        if done:
            return result  # type: ignore[return-value]
    return call(*args)


def _tried(store: "Store", call: Callable[..., T], *args: Any, **kwargs: Any) -> tuple[bool, Optional[T]]:
    """(True, ``call(*args)``) where its first write need not wait; (False, None), having done nothing, where it
    would."""
    try:
        with store.without_waiting():
            return True, call(*args, **kwargs)
    except WouldWait:
        return False, None


def _resolve(loop: asyncio.AbstractEventLoop, future: "asyncio.Future[Any]", result: Any,
             error: Optional[BaseException]) -> None:
    def settle() -> None:
        if future.cancelled():
            return
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)

    try:
        loop.call_soon_threadsafe(settle)
    except RuntimeError:  # the loop closed meanwhile: no one is waiting any more
        pass


_running: "weakref.WeakSet[Worker]" = weakref.WeakSet()


@atexit.register
def _finish_queued() -> None:
    # Daemon threads are stopped where they stand once the interpreter finalizes: let the queued calls run first.
    for worker in list(_running):
        held, worker._held = worker._held, []
        worker.stop()
        worker._thread.join(EXIT_SECONDS)
        for flush in held:  # acks held on a loop that is gone: committed here, after what was queued before
            flush()
