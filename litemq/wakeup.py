"""Wake-ups across processes without busy polling.

A waiting consumer sleeps on a datagram socket of its own (its doorbell), named after the consumer, in Linux's
abstract socket namespace: no file, gone when its last descriptor closes. Whoever makes messages ready in a queue
(a publish, a requeue, a dead connection's leases coming back) rings the doorbell of each consumer of that queue
after the commit. A lost ring costs latency, never a message: the waiter also wakes on a timer and checks the file.
Where abstract sockets are not available, the doorbell falls back to polling the file's change counter.
"""

from __future__ import annotations

import hashlib
import select
import socket
import sys
import time
from typing import Callable, Iterable, Optional, Sequence

ABSTRACT_SOCKETS = sys.platform.startswith("linux") and hasattr(socket, "AF_UNIX")
POLL_MIN_SECONDS = 0.0005
POLL_MAX_SECONDS = 0.01


def doorbell_address(connection_id: str, channel: int, consumer_tag: str) -> bytes:
    digest = hashlib.blake2b(f"{connection_id}/{channel}/{consumer_tag}".encode("utf-8"), digest_size=16)
    return b"\0litemq-" + digest.hexdigest().encode("ascii")


class Doorbell:
    """What one consumer sleeps on."""

    def __init__(self, address: bytes, changed: Callable[[], bool]) -> None:
        self._changed = changed
        self._socket: Optional[socket.socket] = None
        if ABSTRACT_SOCKETS:
            try:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                sock.bind(address)
                sock.setblocking(False)
                self._socket = sock
            except OSError:  # e.g. a sandbox without unix sockets: poll instead
                self._socket = None

    def wait(self, timeout: float, watch: Sequence[socket.socket] = ()) -> str:
        """Sleep up to ``timeout`` seconds. Returns "rung" (or, when polling, the file changed), "watch" when one
        of the ``watch`` sockets became readable, or "" on timeout."""
        if self._socket is None:
            if watch and select.select(watch, [], [], 0)[0]:
                return "watch"
            return "rung" if self._poll(timeout) else ""
        ready, _, _ = select.select([self._socket, *watch], [], [], max(0.0, timeout))
        if not ready:
            return ""
        if self._socket in ready:
            self._drain()
            return "rung"
        return "watch"

    def _drain(self) -> None:
        assert self._socket is not None
        try:
            while True:
                self._socket.recv(64)
        except (BlockingIOError, InterruptedError):
            pass

    def _poll(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        pause = POLL_MIN_SECONDS
        while True:
            if self._changed():
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(pause, left))
            pause = min(pause * 2, POLL_MAX_SECONDS)

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


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
            try:
                self._socket.sendto(b"!", address)
            except OSError:
                pass  # nobody waiting there now, or its doorbell is full: it is awake anyway

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
