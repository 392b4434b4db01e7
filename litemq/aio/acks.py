"""Acks of an asyncio channel, pipelined: ``await delivery.ack()`` checks the delivery and returns without waiting
for its commit, so a consumer hands out its next delivery meanwhile. While the delivery's consumer has more claimed
deliveries in hand, the ack is held on the loop and joins the acks after it: the batch commits in one transaction
(with the claim that refills the consumer) once the last delivery in hand is acked, when the task next lets the loop
turn, after HOLD_SECONDS, or before any other call of the connection. A batch commits on the loop's thread where the
store can commit without waiting (``Worker.here``: no hop); otherwise it is queued on the connection's worker thread,
where acks queued one after another with nothing between them are committed in one transaction.

Order is kept: the worker runs calls in the order they were made, and an ack joins a queued batch only when no
other call was queued after it (an ack made after a publish never commits before that publish). What the blocking
``ack`` raises at once, this raises at once too: TypeError for a tag that is not an int, ChannelClosed, and
DeliveryError for a tag unknown on the channel or acked already. What only the commit can tell (LeaseExpired: the
lease ran out and the message went back; StorageError) is raised by the channel's next call: any call but an ack
or a consumer's next delivery first waits for the acks queued before it, so it raises what they met rather than
run; a consumer's next delivery raises it once it is known; ``close()`` closes, then raises it. Acks still queued
when the program exits are committed first (``worker``).
"""

from __future__ import annotations

import asyncio
import threading
import time
from functools import partial
from typing import Optional

from ..broker import Channel, _check_tag
from ..consumer import CLAIM_BATCH
from ..store.contract import WouldWait
from .worker import Worker

HOLD_SECONDS = 0.02
"""Longest an ack is held on the loop (while its task keeps the loop from turning) before it commits."""


class Acks:
    """The pipelined acks of one channel (see the module's docstring)."""

    def __init__(self, channel: Channel, worker: Worker) -> None:
        self._channel = channel
        self._worker = worker
        self._lock = threading.Lock()
        self._held: list[int] = []
        """Acks held on the loop, not yet committed nor queued."""
        self._held_since = 0.0
        self._open: Optional[list[int]] = None
        """The batch queued last, while the worker has not yet taken it: a later ack may join it."""
        self._open_job = 0
        """``worker.submitted`` once that batch was queued: joining is allowed while it is still the last call."""
        self._settling: set[int] = set()
        self._committing: set["asyncio.Future[None]"] = set()
        self._failure: Optional[BaseException] = None

    def ack(self, delivery_tag: int) -> None:
        self.raise_failure()
        channel = self._channel
        _check_tag(delivery_tag)
        channel._check_open()
        if delivery_tag in self._settling or delivery_tag not in channel._unacked:
            raise channel._unknown_tag(delivery_tag)
        self._settling.add(delivery_tag)
        held = self._held
        if not held:
            if self._joined(delivery_tag):
                return
            self._held_since = time.monotonic()
            self._worker.hold(self.flush)
            asyncio.get_running_loop().call_soon(self.flush)  # once the task lets the loop turn
        held.append(delivery_tag)
        # Held while its consumer has more in hand (the next ack joins it), else committed now with its refill.
        if not getattr(channel._unacked[delivery_tag].consumer, "_buffer", None) or len(held) >= CLAIM_BATCH \
                or time.monotonic() - self._held_since >= HOLD_SECONDS:
            self.flush()

    def flush(self) -> None:
        """Commit the acks held on the loop: here where that never waits, else queued on the worker."""
        batch = self._held
        if not batch:
            return
        self._held = []
        worker = self._worker
        worker.unhold(self.flush)
        if worker.stopped:  # at exit, the loop gone (``worker``): on this thread, waiting as it must
            self._commit_here(batch)
            return
        done, _ = worker.here(self._channel._store, self._commit_here, batch)
        if not done:
            self._queue(batch)

    def _joined(self, delivery_tag: int) -> bool:
        """Whether the ack joined the batch queued last on the worker, still the last call there."""
        with self._lock:
            if self._open is not None and self._open_job == self._worker.submitted:
                self._open.append(delivery_tag)
                return True
        return False

    def _queue(self, batch: list[int]) -> None:
        with self._lock:
            if self._open is not None and self._open_job == self._worker.submitted:
                self._open.extend(batch)
                return
            self._open = batch
            future = self._worker.submit(self._commit, batch)
            self._open_job = self._worker.submitted
        self._committing.add(future)
        future.add_done_callback(partial(self._committed, batch))

    async def settled(self) -> None:
        """Once the acks made so far are committed: raise what one of them met."""
        self.flush()
        while self._committing:
            await asyncio.wait(list(self._committing))
        self.raise_failure()

    @property
    def idle(self) -> bool:
        """No ack held or queued, nor a failure to raise: a call need not wait for acks."""
        return not self._held and not self._committing and self._failure is None

    def raise_failure(self) -> None:
        """Raise what a queued ack met at its commit, once."""
        failure, self._failure = self._failure, None
        if failure is not None:
            raise failure

    def _commit_here(self, batch: list[int]) -> None:
        # Committed at once (``Worker.here``): what its commit meets is raised by the next call all the same.
        try:
            self._channel._ack_each(batch)
        except WouldWait:
            raise  # nothing done: it is queued instead
        except Exception as exc:
            if self._failure is None:
                self._failure = exc
        self._settling.difference_update(batch)

    def _commit(self, batch: list[int]) -> None:
        # On the worker thread: the batch closes to later acks before it is read.
        with self._lock:
            if self._open is batch:
                self._open = None
            tags = list(batch)
        self._channel._ack_each(tags)

    def _committed(self, batch: list[int], future: "asyncio.Future[None]") -> None:
        self._settling.difference_update(batch)
        self._committing.discard(future)
        if not future.cancelled() and future.exception() is not None and self._failure is None:
            self._failure = future.exception()
