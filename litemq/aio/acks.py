"""Acks of an asyncio channel, pipelined: ``await delivery.ack()`` checks the delivery and queues the ack on the
connection's worker thread without waiting for its commit, so a consumer hands out its next delivery meanwhile; acks
queued one after another with nothing between them are committed in one transaction. When nothing is queued and the
store can commit without waiting (``Worker.here``), and the delivery's consumer has no more claimed deliveries in
hand (no batch to gain), the ack commits at once on the loop's thread instead: no hop.

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
from functools import partial
from typing import Optional

from ..broker import Channel, _check_tag
from ..store.contract import WouldWait
from .worker import Worker


class Acks:
    """The pipelined acks of one channel (see the module's docstring)."""

    def __init__(self, channel: Channel, worker: Worker) -> None:
        self._channel = channel
        self._worker = worker
        self._lock = threading.Lock()
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
        if self._open is None and not getattr(channel._unacked[delivery_tag].consumer, "_buffer", None):
            # Its consumer has nothing more in hand (it claims or waits next): no batch to gain by waiting.
            done, _ = self._worker.here(channel._store, self._commit_here, delivery_tag)
            if done:
                return
        self._settling.add(delivery_tag)
        with self._lock:
            if self._open is not None and self._open_job == self._worker.submitted:
                self._open.append(delivery_tag)
                return
            batch = self._open = [delivery_tag]
            future = self._worker.submit(self._commit, batch)
            self._open_job = self._worker.submitted
        self._committing.add(future)
        future.add_done_callback(partial(self._committed, batch))

    async def settled(self) -> None:
        """Once the acks queued so far are committed: raise what one of them met."""
        while self._committing:
            await asyncio.wait(list(self._committing))
        self.raise_failure()

    def raise_failure(self) -> None:
        """Raise what a queued ack met at its commit, once."""
        failure, self._failure = self._failure, None
        if failure is not None:
            raise failure

    def _commit_here(self, delivery_tag: int) -> None:
        # Committed at once (``Worker.here``): what its commit meets is raised by the next call all the same.
        try:
            self._channel._ack_each([delivery_tag])
        except WouldWait:
            raise  # nothing done: it is queued instead
        except Exception as exc:
            if self._failure is None:
                self._failure = exc

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
