"""Hearing at once that a connection's process on this machine died, whatever the engine proves deaths with.

Each connection listens on a stream socket in Linux's abstract namespace, and a waiting connection connects to
every other one's and never reads. When a process dies, the kernel closes its listening socket and resets the
connections waiting on it: the watcher's socket becomes readable within a millisecond, and the watcher then asks the
engine's proof of life (a lock file, an advisory lock) whether it is dead. A hang-up only says "look": it is never
itself taken for a death. Where a connection cannot be watched (another OS, another machine, another network
namespace), the watcher checks on a timer instead. Every local user can list abstract socket names
(/proc/net/unix), so a listener is named after half of its connection id only: the whole id, from which other
names derive (the SQLite store's doorbells), stays in the database.
"""

from __future__ import annotations

import _socket
import os
import sys
import threading
import weakref

from ..log import logger

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    from typing import Iterable, Optional

WATCHABLE = sys.platform.startswith("linux") and hasattr(_socket, "AF_UNIX")


def _listen_address(connection_id: str) -> bytes:
    return b"\0litemq-live-" + connection_id[:16].encode("ascii")


class HangupWatch:
    """One connection's listener, and its watches of the others' (thread-safe)."""

    def __init__(self, connection_id: str, where: str) -> None:
        """Listen for this connection (``where``: what it is connected to, for the warning when it cannot)."""
        self.connection_id = connection_id
        self._lock = threading.Lock()
        self._sockets: dict[str, socket.socket] = {}
        self._unwatchable: set[str] = set()
        # The listener, which every connection opens, is the C module's socket: it only binds, listens and closes,
        # and importing socket.py (its enums and selectors) was an eighth of a one-shot publisher's instructions.
        # Watching others' listeners (``watch``) imports it.
        self._listener: Optional[_socket.socket] = None
        if WATCHABLE:
            listener = None
            try:
                listener = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
                listener.bind(_listen_address(connection_id))
                listener.listen(4096)
                self._listener = listener
            except OSError as exc:
                if listener is not None:
                    listener.close()
                logger().warning("litemq: connection %s on %s cannot listen on its abstract socket (%s); other "
                                 "processes check whether it lives on a timer instead", connection_id, where, exc)
        _all.add(self)

    def watch(self, connection_ids: Iterable[str]) -> tuple[list[socket.socket], bool]:
        """Sockets that become readable when one of these connections' process dies (this one's own left out), and
        whether every one of them is watched that way (if not, the caller must check them on a timer)."""
        listed = set(connection_ids)
        listed.discard(self.connection_id)
        with self._lock:
            for connection_id in listed - set(self._sockets) - self._unwatchable:
                self._connect(connection_id)
            for gone in set(self._sockets) - listed:
                self._sockets.pop(gone).close()
            self._unwatchable &= listed
            return list(self._sockets.values()), not self._unwatchable

    def hung_up(self, sock: socket.socket) -> None:
        """A watched socket became readable and its connection was not found dead: stop watching it, so it is
        checked on the timer instead of waking the waiter again at once."""
        with self._lock:
            for connection_id, watched in list(self._sockets.items()):
                if watched is sock:
                    del self._sockets[connection_id]
                    sock.close()
                    self._unwatchable.add(connection_id)

    def forget(self, connection_id: str) -> None:
        """The connection is dead and cleaned up: stop watching it."""
        with self._lock:
            watched = self._sockets.pop(connection_id, None)
            if watched is not None:
                watched.close()
            self._unwatchable.discard(connection_id)

    def close(self) -> None:
        """Stop listening and watching. Never raises."""
        with self._lock:
            for sock in self._sockets.values():
                sock.close()
            self._sockets.clear()
            if self._listener is not None:
                self._listener.close()
                self._listener = None
        _all.discard(self)

    def _connect(self, connection_id: str) -> None:
        if not WATCHABLE:
            self._unwatchable.add(connection_id)
            return
        import socket

        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            sock.connect(_listen_address(connection_id))
        except OSError:
            # Gone already, or listening in another network namespace: checked on the timer.
            self._unwatchable.add(connection_id)
            sock.close()
            return
        self._sockets[connection_id] = sock

    def _drop_in_child(self) -> None:
        # A forked child must not keep the parent's listener open after the parent dies: watchers would never hear
        # the hang-up. (Nor does it take the lock, which a thread of the parent may have held at the fork.)
        self._lock = threading.Lock()
        for sock in list(self._sockets.values()) + ([self._listener] if self._listener else []):
            sock.close()
        self._sockets.clear()
        self._listener = None


_all: "weakref.WeakSet[HangupWatch]" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for watch in list(_all):
        watch._drop_in_child()
    _all.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
