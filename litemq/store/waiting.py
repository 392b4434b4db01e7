"""How a waiting consumer sleeps on what its store gives it, whatever the engine: the doorbells' sockets and any
others (hang-up watches, a wake-up pipe), or, where a doorbell has no socket, polling a cheap "did anything
change" test with backoff."""

from __future__ import annotations

import select
import socket
import time

from .contract import Doorbell

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Optional, Sequence

POLL_MIN_SECONDS = 0.0005
POLL_MAX_SECONDS = 0.01


def sleep(doorbells: Sequence[Doorbell], others: Sequence[socket.socket], timeout: float,
          changed: Callable[[], bool]) -> Optional[socket.socket]:
    """Sleep up to ``timeout`` seconds on the doorbells and the other sockets.

    Returns the first readable socket (a rung doorbell is drained first), the stand-in ``POLLED`` when a waiter
    without doorbell sockets saw ``changed()``, or None on timeout."""
    bells = [bell.socket for bell in doorbells if bell.socket is not None]
    if len(bells) < len(doorbells):
        return _poll(others, timeout, changed)
    ready, _, _ = select.select([*bells, *others], [], [], max(0.0, timeout))
    for sock in ready:
        if sock in bells:
            drain(sock)
            return sock
    return ready[0] if ready else None


class _Polled:
    """What ``sleep`` returns when polling saw a change (no socket was involved)."""


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


def drain(sock: socket.socket, at_most: int = DRAIN_AT_MOST) -> None:
    """Read the rings a doorbell holds (at most DRAIN_AT_MOST)."""
    try:
        for _ in range(at_most):
            sock.recv(64)
    except (BlockingIOError, InterruptedError):
        pass
