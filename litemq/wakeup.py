"""Wake-ups across processes without busy polling.

A waiting consumer sleeps on a datagram socket of its own (its doorbell), named after the consumer, in Linux's
abstract socket namespace: no file, gone when its last descriptor closes. Whoever makes messages ready in a queue
(a publish, a requeue, a dead connection's leases coming back) rings the doorbell of each consumer of that queue
after the commit. A lost ring costs latency, never a message: the waiter also wakes on a timer and checks the file.
Where abstract sockets are not available, waiters poll the file's change counter instead.

Anyone on the machine can send a datagram to any abstract socket (their names are listed in /proc/net/unix), so a
ring is only a hint: the waiter looks at the file's change counter, and a ring that finds the file unchanged costs
that read and nothing more.
"""

from __future__ import annotations

import errno
import select
import socket
import sys
import time
from contextlib import suppress
from typing import Callable, Iterable, Optional, Sequence

from .log import logger

ABSTRACT_SOCKETS = sys.platform.startswith("linux") and hasattr(socket, "AF_UNIX")
POLL_MIN_SECONDS = 0.0005
POLL_MAX_SECONDS = 0.01


def doorbell_address(connection_id: str, channel: int, consumer_tag: str) -> bytes:
    import hashlib  # here: a process that only publishes to queues nobody consumes never needs it

    digest = hashlib.blake2b(f"{connection_id}/{channel}/{consumer_tag}".encode("utf-8"), digest_size=16)
    return b"\0litemq-" + digest.hexdigest().encode("ascii")


class Doorbell:
    """What one consumer sleeps on (None as ``socket`` when this platform cannot have one)."""

    def __init__(self, address: bytes, owner: str = "a consumer") -> None:
        self.address = address
        self.socket: Optional[socket.socket] = None
        if ABSTRACT_SOCKETS:
            try:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            except OSError:  # e.g. a sandbox without unix sockets: poll instead
                return
            try:
                sock.bind(address)
                sock.setblocking(False)
                self.socket = sock
            except OSError as exc:
                sock.close()
                if exc.errno == errno.EADDRINUSE:
                    # Its name derives from a connection id that only the file holds: someone who read the file
                    # (or a bug) took it. Publishers would ring that socket, so this consumer polls the file.
                    logger().warning("litemq: the doorbell of %s is taken by another socket (%r); it polls the "
                                     "file instead, at a cost in CPU and latency", owner, address)

    def close(self) -> None:
        if self.socket is not None:
            self.socket.close()
            self.socket = None


def sleep(doorbells: Sequence[Doorbell], others: Sequence[socket.socket], timeout: float,
          changed: Callable[[], bool]) -> Optional[socket.socket]:
    """Sleep up to ``timeout`` seconds on the doorbells and the other sockets.

    Returns the first readable socket (a rung doorbell is drained first), a doorbell's address family stand-in
    ``POLLED`` when a doorbell-less waiter saw the file change, or None on timeout."""
    bells = [bell.socket for bell in doorbells if bell.socket is not None]
    if len(bells) < len(doorbells):
        return _poll(others, timeout, changed)
    ready, _, _ = select.select([*bells, *others], [], [], max(0.0, timeout))
    for sock in ready:
        if sock in bells:
            _drain(sock)
            return sock
    return ready[0] if ready else None


class _Polled:
    """What ``sleep`` returns when polling saw the file change (no socket was involved)."""


POLLED = _Polled()


def _poll(others: Sequence[socket.socket], timeout: float, changed: Callable[[], bool]) -> Optional[socket.socket]:
    deadline = time.monotonic() + timeout
    pause = POLL_MIN_SECONDS
    while True:
        if others:
            ready, _, _ = select.select(list(others), [], [], 0)
            if ready:
                return ready[0]
        if changed():
            return POLLED  # type: ignore[return-value]
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        time.sleep(min(pause, left))
        pause = min(pause * 2, POLL_MAX_SECONDS)


DRAIN_AT_MOST = 16
"""Rings read at once: a flood from another core must not keep a waiter reading its doorbell for ever."""


def _drain(sock: socket.socket) -> None:
    try:
        for _ in range(DRAIN_AT_MOST):
            sock.recv(64)
    except (BlockingIOError, InterruptedError):
        pass


class Bell:
    """What a connection rings doorbells with."""

    def __init__(self) -> None:
        self._socket: Optional[socket.socket] = None
        if ABSTRACT_SOCKETS:
            try:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._socket.setblocking(False)
            except OSError:
                self._socket = None

    def ring(self, addresses: Iterable[bytes]) -> None:
        if self._socket is None:
            return
        for address in addresses:
            # No doorbell there now, or a full one (that consumer is awake anyway): nothing to ring.
            with suppress(OSError):
                self._socket.sendto(b"!", address)

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
