"""Hang-up watches: each open connection listens on a stream socket in Linux's abstract namespace, and a waiting
connection connects to every other one's and never reads. When a process dies, the kernel closes its listening
socket and resets the connections waiting on it: the watcher's socket becomes readable within a millisecond, and
the watcher then tests the dead connection's proof of life (a flock, an advisory lock). Where that is not possible
(another OS, another network namespace, another machine), waiters test on a short timer instead. Every local user
can list abstract socket names (/proc/net/unix), so a listener is named after half of its connection id only.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import weakref
from typing import Iterable, Optional

from ..log import logger

WATCHABLE = sys.platform.startswith("linux") and hasattr(socket, "AF_UNIX")


def _listen_address(connection_id: str) -> bytes:
    return b"\0litemq-live-" + connection_id[:16].encode("ascii")


class HangupWatch:
    """This connection's listener, and its watches on the others'."""

    def __init__(self, connection_id: str, where: str) -> None:
        self.connection_id = connection_id
        self._lock = threading.RLock()
        self._watch_sockets: dict[str, socket.socket] = {}
        self._unwatchable: set[str] = set()
        self._listener: Optional[socket.socket] = None
        if WATCHABLE:
            listener = None
            try:
                listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                listener.bind(_listen_address(connection_id))
                listener.listen(4096)
                self._listener = listener
            except OSError as exc:
                if listener is not None:
                    listener.close()
                logger().warning("litemq: connection %s on %s cannot listen on its abstract socket (%s); other "
                                 "processes check its lock on a timer instead", connection_id, where, exc)
        _all.add(self)

    def watch(self, connection_ids: Iterable[str]) -> tuple[list[socket.socket], bool]:
        """Sockets that become readable when one of these connections' process dies, and whether every one of
        them is watched that way (if not, the caller must test them on a timer)."""
        listed = set(connection_ids)
        listed.discard(self.connection_id)
        with self._lock:
            for connection_id in listed - set(self._watch_sockets) - self._unwatchable:
                self._connect_watch(connection_id)
            for gone in set(self._watch_sockets) - listed:
                self._watch_sockets.pop(gone).close()
            self._unwatchable &= listed
            return list(self._watch_sockets.values()), not self._unwatchable

    def hung_up(self, sock: socket.socket) -> None:
        """A watched socket became readable, and its connection was not found dead: stop watching it, so it is
        tested on the timer instead of waking the waiter again at once."""
        with self._lock:
            for connection_id, watched in list(self._watch_sockets.items()):
                if watched is sock:
                    del self._watch_sockets[connection_id]
                    sock.close()
                    self._unwatchable.add(connection_id)

    def _connect_watch(self, connection_id: str) -> None:
        if not WATCHABLE:
            self._unwatchable.add(connection_id)
            return
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            sock.connect(_listen_address(connection_id))
        except OSError:
            # Gone already, or listening in another network namespace: tested on the timer.
            self._unwatchable.add(connection_id)
            sock.close()
            return
        self._watch_sockets[connection_id] = sock

    def forget(self, connection_id: str) -> None:
        """A dead connection is cleaned up: stop watching it."""
        with self._lock:
            watch = self._watch_sockets.pop(connection_id, None)
            if watch is not None:
                watch.close()
            self._unwatchable.discard(connection_id)

    def close(self) -> None:
        with self._lock:
            self._drop()
        _all.discard(self)

    def _drop(self) -> None:
        for sock in list(self._watch_sockets.values()) + ([self._listener] if self._listener else []):
            sock.close()
        self._watch_sockets.clear()
        self._listener = None


_all: "weakref.WeakSet[HangupWatch]" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # A forked child keeping the parent's listener open would hide the parent's death from every watcher.
    for watch in list(_all):
        watch._lock = threading.RLock()  # another thread of the parent may have held it at fork()
        watch._drop()
    _all.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
