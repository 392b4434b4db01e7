"""Waiting on kombu's event loop (the hub of a Celery worker), so a worker's consumers sleep in the same poll as
its pool and timers, with no thread and no blocking call.

The hub watches every consumer's doorbell for as long as the consumer lives. When one rings (or the transport rings
one itself to be called back), the waiting hands out what is ready, a few deliveries at a time, and then takes up
the connection's ``Waiter`` again: its naps become the hub's readers (other connections' hang-up watches) and one
timer; what woke a nap is sent back to the waiter's steps, as the asyncio consumers do (``litemq.aio.idle``). Where
doorbells have no socket, a nap polls the store's change counter on the hub's timer, with backoff.

A Celery worker acks on the hub's next turn (``call_soon``), not in the delivery's callback. So when a turn has
handed out what the consumers had room for, the waiter is not taken up at once: the hub's tick (``on_tick``, after
that next turn's acks, before it polls) commits the acks, which claim the room they free, and hands those out; only
a tick that finds nothing to hand out starts the nap. A busy worker thus writes once per prefetch's worth of tasks
and takes up no wait in between, and rings its own doorbell only to end the hub's poll after a tick handed out
tasks (their acks wait in the hub's ready list).

It needs of the hub only ``add_reader``, ``remove_reader``, ``readers`` and ``call_later`` (kombu's ``Hub``), and
``on_tick`` where it has one; it imports nothing of kombu.
"""

from __future__ import annotations

import select
import socket
import time
from typing import Any, Callable, Generator, Optional

from .consumer import Consumer, ConsumerSet, Nap, Waiter, claim_found_work
from .store.waiting import POLL_MAX_SECONDS, POLL_MIN_SECONDS, POLLED, drain

DISPATCH_BATCH = 8
"""Deliveries handed out per turn of the hub before it serves its other readers (a prefork pool's pipes, remote
control is one of the consumers): then a doorbell rung by the transport itself brings it back."""
LOOKS_BEFORE_NAP = 3
"""Times in a row the waiter may find work that no claim then delivers (a consumer without room, a queue deleted)
before the hub is given a turn."""

Steps = Generator[Nap, Optional[socket.socket], Optional[socket.socket]]


class HubWaiting:
    """The consumers of one kombu connection, waited for on ``hub``. ``consumers()`` is their current set (None:
    none); ``deliver(consumers)`` hands one ready delivery to its callback and says whether there was one;
    ``settle()`` commits the acks made meanwhile, after each batch (or on the hub's next turn: ``acked``)."""

    def __init__(self, hub: Any, consumers: Callable[[], Optional[ConsumerSet]],
                 deliver: Callable[[ConsumerSet], bool], settle: Callable[[], bool]) -> None:
        self.hub = hub
        self._consumers = consumers
        self._deliver = deliver
        self._settle = settle
        """Commits the acks the deliveries' callbacks made; whether there were any."""
        self._settling = False
        self._doorbells: dict[int, socket.socket] = {}
        """Doorbell sockets the hub watches, by descriptor."""
        self._others: dict[int, socket.socket] = {}
        """The nap's other sockets (hang-up watches) the hub watches, by descriptor."""
        self._steps: Optional[Steps] = None
        self._waiter: Optional[Waiter] = None
        """The waiter whose steps these are."""
        self._napping: list[Consumer] = []
        self._hearing = False
        """The nap under way hears doorbells (not while the waiter hushes them)."""
        self._rang: Optional[socket.socket] = None
        """A doorbell that rang while no nap heard it."""
        self._timer: Any = None
        self._serving = False
        self._again = False
        self._delivered = 0
        """Deliveries handed out, ever (a tick that hands some out ends the hub's next poll at once)."""
        self._nap_due = False
        """Serving found nothing more to hand out: the hub's tick starts the nap, after the turn's acks."""
        self._ticks: Optional[set[Callable[[], None]]] = getattr(hub, "on_tick", None)
        if self._ticks is not None:
            self._ticks.add(self._on_tick)
        self.closed = False

    # --- what the transport tells it
    def changed(self) -> None:
        """The consumers, or their room, changed (a consume, a cancel, a new prefetch): the nap under way ends,
        the hub watches the doorbells of the consumers there are now, and it looks again on its next turn."""
        if self.closed:
            return
        self._end_nap()
        consumers = self._consumers()
        active = [c for c in consumers.consumers if c.active] if consumers is not None else []
        self._watch(active)
        if self._serving:
            self._again = True
        elif active:
            self._call_back(active)

    def acked(self) -> None:
        """An ack was made outside a batch (a prefork pool's, from its result pipe, or Celery's own callbacks):
        commit it on the hub's next turn, with any others made meanwhile. A doorbell rung by this process wakes
        the hub's poll for that (a call_soon made from a callback of the hub's ready list would wait out the
        poll's timeout)."""
        if self._serving or self._settling:
            return
        self._settling = True
        if self._ticks is not None:
            return  # the hub's tick commits it, before its next poll
        consumers = self._consumers()
        for consumer in consumers.consumers if consumers is not None else []:
            if consumer.active and consumer.doorbell.socket is not None:
                consumer.doorbell.ring()
                return
        self.hub.call_later(0.0, self._settle_now)

    def _settle_now(self) -> None:
        """Commit pipelined acks (the waiter then sees the file changed, and the room their refills claimed)."""
        if self._settling:
            self._settling = False
            self._settle()

    def close(self) -> None:
        """Stop waiting: the hub watches nothing of this connection any more (its doorbells may then close)."""
        self.closed = True
        self._end_nap()
        for fd in list(self._others):
            self._unwatch_other(fd)
        self._watch([])
        if self._ticks is not None:
            self._ticks.discard(self._on_tick)

    # --- serving
    def serve(self) -> None:
        """Hand out what is ready (a batch at most), then wait on the hub."""
        if self.closed:
            return
        if self._serving:
            self._again = True
            return
        self._end_nap()
        self._serving = True
        try:
            for _ in range(LOOKS_BEFORE_NAP):
                self._again = False
                consumers = self._consumers()
                if consumers is None:
                    self._watch([])
                    return
                self._watch([c for c in consumers.consumers if c.active])
                for _ in range(DISPATCH_BATCH):
                    if not self._deliver(consumers):
                        break
                    self._delivered += 1
                else:
                    self._settle()
                    self._call_back(consumers.consumers)  # more may be ready: after the hub's other work
                    return
                if self._settle():
                    continue  # the acks' transaction claimed what their room allows
                consumers = self._consumers()
                active = [c for c in consumers.consumers if c.active] if consumers is not None else []
                self._watch(active)
                if not active:
                    return
                if self._again:
                    continue
                if self._ticks is not None and not self._nap_due:
                    self._nap_due = True  # the acks of what was handed out may come first (on the next turn)
                    return
                self._nap_due = False
                if self._nap(consumers, active):
                    return
            self._call_back(self._napping or [])
        finally:
            self._serving = False

    def _nap(self, consumers: ConsumerSet, active: list[Consumer]) -> bool:
        """Take up the waiter; False when it found work at once (it was claimed: serve again)."""
        self._napping = active
        for consumer in active:
            consumer.waiting = True  # an ack that claims for it (in another thread) rings its doorbell
        self._waiter = consumers._waiter
        self._steps = self._waiter.waiting(active, None)
        try:
            nap = next(self._steps)
        except StopIteration:
            self._found_work()
            return False
        self._take(nap)
        return True

    def _on_tick(self) -> None:
        """Each turn of the hub, before it polls: commit the acks made since the last tick; hand out what they
        claimed, or else start the nap that serving left due."""
        if self.closed or self._serving:
            return
        if self._settling:
            self._settling = False
            napping = self._napping
            for consumer in napping:
                consumer.waiting = False  # this thread claims for them: it looks at their buffers itself
            try:
                settled = self._settle()
            finally:
                for consumer in napping:
                    consumer.waiting = True
            if settled:
                consumers = self._consumers()
                if consumers is not None and any(c._buffer for c in consumers.consumers if c.active):
                    self._nap_due = False
                    delivered = self._delivered
                    self.serve()
                    if self._delivered != delivered and self._steps is None:
                        # Their callbacks may have left work in the hub's ready list (a Celery worker's acks): the
                        # poll ahead must not sleep on it.
                        self._call_back(consumers.consumers)
                    return
                if self._steps is not None:
                    self._advance(POLLED)  # type: ignore[arg-type]  # the waiter looks at what the acks changed
                    return
        if self._nap_due and self._steps is None and not self._serving:
            self.serve()  # with nothing new to hand out, it naps

    def _advance(self, woke: Optional[socket.socket]) -> None:
        """Send the waiter what ended its nap: it naps again, or its wait is over and the hub serves."""
        steps = self._steps
        self._end_nap(keep_steps=True)
        if steps is None:
            self.serve()
            return
        try:
            nap = steps.send(woke)
        except StopIteration:
            self._found_work()
            self.serve()
            return
        self._take(nap)

    def _found_work(self) -> None:
        """The waiter's wait ended: claim where it found work, so that serving hands it out without reading each
        queue again (a claim that failed is met again by the serving's own claim)."""
        napping = self._napping
        found = self._waiter.found if self._waiter is not None else None
        self._stop_steps()
        if napping:
            claim_found_work(napping, found)

    # --- naps
    def _take(self, nap: Nap) -> None:
        if any(bell.socket is None for bell in nap.doorbells):
            self._poll(nap, time.monotonic() + nap.timeout, POLL_MIN_SECONDS)
            return
        self._hearing = bool(nap.doorbells)
        if self._hearing and self._rang is not None:
            rang, self._rang = self._rang, None
            self._advance(rang)
            return
        wanted = {sock.fileno(): sock for sock in nap.sockets}
        for fd, sock in list(self._others.items()):
            if wanted.get(fd) is not sock:
                self._unwatch_other(fd)
        for fd, sock in wanted.items():
            if fd in self._others:
                continue
            try:
                self.hub.add_reader(fd, self._on_other, sock)
            except (OSError, ValueError):  # closed meanwhile: its connection is looked for at once
                self._advance(sock)
                return
            self._others[fd] = sock
        self._timer = self.hub.call_later(max(0.0, nap.timeout), self._on_timer)

    def _poll(self, nap: Nap, deadline: float, pause: float) -> None:
        # No doorbell sockets: look at the store's change counter on the hub's timer, backing off.
        readable = [sock for sock in nap.sockets if _readable(sock)]
        if readable:
            self._advance(readable[0])
            return
        if self._steps is not None and self._napping and self._changed():
            self._advance(POLLED)  # type: ignore[arg-type]
            return
        left = deadline - time.monotonic()
        if left <= 0:
            self._advance(None)
            return
        self._timer = self.hub.call_later(min(pause, left), self._on_poll, nap, deadline,
                                          min(2 * pause, POLL_MAX_SECONDS))

    def _changed(self) -> bool:
        consumers = self._consumers()
        return consumers is not None and consumers._waiter._file_unseen()

    def _end_nap(self, keep_steps: bool = False) -> None:
        # The other sockets stay watched: the next nap mostly watches the same ones, and unwatching them (a system
        # call each) came before the claim of a wake. One that is readable between naps is unwatched then.
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._hearing = False
        if not keep_steps:
            self._stop_steps()

    def _stop_steps(self) -> None:
        if self._steps is not None:
            self._steps.close()
            self._steps = None
        for consumer in self._napping:
            consumer.waiting = False
        self._napping = []

    # --- the hub's callbacks
    def _on_doorbell(self, sock: socket.socket) -> None:
        if self._hearing and self._steps is not None and not self._settling:
            # A nap that hears it, the wake a publish waits on: one ring read, not a second read that finds the
            # socket empty. Any more rings keep it readable for the hub's next turn, drained there.
            drain(sock, 1)
            self._advance(sock)
            return
        drain(sock)
        if self._nap_due and self._steps is None:
            return  # the hub's tick, before its next poll, hands out or naps (this may be the ring that ended one)
        self._settle_now()
        if self._steps is None:
            self.serve()
        elif self._hearing:
            self._advance(sock)
        else:
            self._rang = sock  # hushed: the next nap that hears doorbells hears this one

    def _on_other(self, sock: socket.socket) -> None:
        if self._steps is None:
            # Between naps (a connection hung up while this one served): the next nap watches it again, and hears
            # it at once.
            self._unwatch_other(sock.fileno())
        self._advance(sock)

    def _unwatch_other(self, fd: int) -> None:
        sock = self._others.pop(fd, None)
        if sock is not None:
            self._unwatch(fd, sock, self._on_other)

    def _on_timer(self) -> None:
        self._timer = None
        self._settle_now()
        self._advance(None)

    def _on_poll(self, nap: Nap, deadline: float, pause: float) -> None:
        self._timer = None
        self._poll(nap, deadline, pause)

    # --- the hub's readers
    def _watch(self, consumers: list[Consumer]) -> None:
        """The hub watches exactly these consumers' doorbells."""
        wanted: dict[int, socket.socket] = {}
        for consumer in consumers:
            sock = consumer.doorbell.socket
            if sock is not None and sock.fileno() >= 0:
                wanted[sock.fileno()] = sock
        for fd, sock in list(self._doorbells.items()):
            if wanted.get(fd) is not sock:
                self._unwatch(fd, sock, self._on_doorbell)
                del self._doorbells[fd]
        for fd, sock in wanted.items():
            if fd not in self._doorbells:
                self.hub.add_reader(fd, self._on_doorbell, sock)
                self._doorbells[fd] = sock

    def _unwatch(self, fd: int, sock: socket.socket, callback: Callable[..., None]) -> None:
        # Only while the hub still has this socket under this callback: a socket closed under the hub (a consumer
        # whose queue was deleted) may have left its descriptor to another reader since.
        if self.hub.readers.get(fd) == (callback, (sock,)):
            self.hub.remove_reader(fd)

    def _call_back(self, consumers: list[Consumer]) -> None:
        """Be called back on the hub's next turn: a doorbell rung by this process (the hub's poll then returns at
        once, after serving the other readers that are ready)."""
        for consumer in consumers:
            if consumer.active and consumer.doorbell.socket is not None:
                self._stop_steps()
                consumer.doorbell.ring()
                return
        self._timer = self.hub.call_later(0.0, self._on_timer)


def _readable(sock: socket.socket) -> bool:
    try:
        return bool(select.select([sock], [], [], 0)[0])
    except (OSError, ValueError):  # closed meanwhile: its connection's death is looked for anyway
        return True
