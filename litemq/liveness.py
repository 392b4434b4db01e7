"""Liveness: each open connection holds an OS lock on a file of its own, beside the database, for its whole life.

The kernel drops the lock the moment the process dies, however it dies, so any process can tell for certain that
a connection's owner is gone: it can take the lock. The lock is the truth; the pid and host stored with the
connection are for people. Locks are ``flock`` locks, which belong to an open file description, not to a
process: two connections in one process each hold their own, and closing one descriptor never drops another's
lock. The database's own files (``.db``, ``-wal``, ``-shm``) are never opened or locked here.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Iterable, Optional

try:
    import fcntl
except ImportError:  # not POSIX: no liveness locks; leases still expire
    fcntl = None  # type: ignore[assignment]

SUFFIX = ".lock"


def sidecar_directory(db_path: str) -> str:
    """The directory of liveness locks for a database file."""
    return db_path + "-litemq"


class Liveness:
    """This connection's own lock, and the checks of the others'."""

    def __init__(self, db_path: str, connection_id: str) -> None:
        self.connection_id = connection_id
        self.directory = sidecar_directory(db_path)
        self._watched: dict[str, int] = {}
        self._lock = threading.Lock()
        self._own_fd: Optional[int] = None
        if fcntl is None:
            return
        os.makedirs(self.directory, exist_ok=True)
        fd = os.open(self._path(connection_id), os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        self._own_fd = fd
        _all.add(self)

    @property
    def supported(self) -> bool:
        return self._own_fd is not None

    def _path(self, connection_id: str) -> str:
        return os.path.join(self.directory, connection_id + SUFFIX)

    def dead(self, connection_ids: Iterable[str]) -> list[str]:
        """The connections among these whose owner is gone. Their locks stay taken until ``forget``."""
        if not self.supported:
            return []
        listed = set(connection_ids)
        listed.discard(self.connection_id)
        found = []
        with self._lock:
            for connection_id in listed:
                if self._is_dead(connection_id):
                    found.append(connection_id)
            for gone in set(self._watched) - listed:
                os.close(self._watched.pop(gone))
        return found

    def is_dead(self, connection_id: str) -> bool:
        if not self.supported or connection_id == self.connection_id:
            return False
        with self._lock:
            return self._is_dead(connection_id)

    def _is_dead(self, connection_id: str) -> bool:
        assert fcntl is not None
        fd = self._watched.get(connection_id)
        if fd is None:
            try:
                fd = os.open(self._path(connection_id), os.O_RDWR)
            except FileNotFoundError:
                return True  # its lock was created before its row, so the connection is gone
            self._watched[connection_id] = fd
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True  # we hold its lock now: no other checker will reap it at the same time

    def forget(self, connection_id: str) -> None:
        """After the dead connection's state is cleaned up: remove its lock file."""
        with self._lock:
            fd = self._watched.pop(connection_id, None)
            try:
                os.unlink(self._path(connection_id))
            except FileNotFoundError:
                pass
            if fd is not None:
                os.close(fd)

    def remove_strays(self, registered: Iterable[str]) -> None:
        """Delete lock files of processes that died before registering (their lock can be taken)."""
        if not self.supported:
            return
        known = set(registered) | {self.connection_id}
        for name in os.listdir(self.directory):
            connection_id = name[:-len(SUFFIX)]
            if not name.endswith(SUFFIX) or connection_id in known:
                continue
            if self.is_dead(connection_id):
                self.forget(connection_id)

    def close(self) -> None:
        """Release this connection's lock (after its row is gone) and stop watching others."""
        with self._lock:
            for fd in self._watched.values():
                os.close(fd)
            self._watched.clear()
            if self._own_fd is not None:
                try:
                    os.unlink(self._path(self.connection_id))
                except FileNotFoundError:
                    pass
                os.close(self._own_fd)
                self._own_fd = None
        _all.discard(self)

    def _drop_in_child(self) -> None:
        # A forked child must not keep the parent's lock alive after the parent dies: close its copies. The
        # parent's descriptor still holds the lock, since a flock lock lives while any copy is open.
        for fd in list(self._watched.values()) + ([self._own_fd] if self._own_fd is not None else []):
            try:
                os.close(fd)
            except OSError:
                pass
        self._watched.clear()
        self._own_fd = None


_all: "weakref.WeakSet[Liveness]" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for liveness in list(_all):
        liveness._drop_in_child()
    _all.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
