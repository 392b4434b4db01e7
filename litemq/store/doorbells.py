"""The SQLite store's wake-ups across processes, without busy polling.

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

import _socket
import errno
import sys
from contextlib import suppress

from ..log import logger

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    from typing import Iterable, Optional

# socket itself (its enums and selectors) is imported only where a doorbell or a bell is made: a process that
# publishes to queues nobody consumes from never needs it.
ABSTRACT_SOCKETS = sys.platform.startswith("linux") and hasattr(_socket, "AF_UNIX")


ADDRESSES_KEPT = 1024
"""Doorbell addresses a process keeps once computed (a publish rings the same consumers again and again)."""
_addresses: dict[tuple[str, int, str], bytes] = {}


def doorbell_address(connection_id: str, channel: int, consumer_tag: str) -> bytes:
    address = _addresses.get((connection_id, channel, consumer_tag))
    if address is None:
        import hashlib  # here: a process that only publishes to queues nobody consumes never needs it

        digest = hashlib.blake2b(f"{connection_id}/{channel}/{consumer_tag}".encode("utf-8"), digest_size=16)
        address = b"\0litemq-" + digest.hexdigest().encode("ascii")
        if len(_addresses) >= ADDRESSES_KEPT:
            _addresses.clear()
        _addresses[connection_id, channel, consumer_tag] = address
    return address


class Doorbell:
    """What one consumer sleeps on (None as ``socket`` when this platform cannot have one): ``contract.Doorbell``."""

    def __init__(self, address: bytes, owner: str = "a consumer") -> None:
        self.address = address
        self.socket: Optional[socket.socket] = None
        if ABSTRACT_SOCKETS:
            import socket

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

    def ring(self) -> None:
        """Wake it from this process (any thread, or a signal handler): its own socket sends to itself."""
        sock = self.socket  # another thread may close it meanwhile: then there is no one to wake
        if sock is not None:
            with suppress(OSError):  # closed meanwhile, or full (the waiter is awake anyway)
                sock.sendto(b"!", self.address)

    def close(self) -> None:
        if self.socket is not None:
            self.socket.close()
            self.socket = None


class Bell:
    """What a connection rings doorbells with."""

    def __init__(self) -> None:
        self._socket: Optional[socket.socket] = None
        if ABSTRACT_SOCKETS:
            import socket

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
