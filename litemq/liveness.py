"""Liveness: each open connection holds an OS lock on a file of its own, beside the database, for its whole life.

The kernel drops the lock the moment the process dies, however it dies, so any process can tell for certain that
a connection's owner is gone: it can take the lock. The lock is the truth; the pid and host stored with the
connection are for people. Locks are ``flock`` locks, which belong to an open file description, not to a
process: two connections in one process each hold their own, and closing one descriptor never drops another's
lock. The database's own files (``.db``, ``-wal``, ``-shm``) are never opened or locked here.

So that nobody has to poll those locks, each connection also listens on a stream socket in Linux's abstract
namespace, and a waiting connection connects to every other one's and never reads. When a process dies, the
kernel closes its listening socket and resets the connections waiting on it: the watcher's socket becomes readable
within a millisecond, and the watcher then checks the lock. Where that is not possible (another OS, another network
namespace), waiters check the locks on a short timer instead.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
import weakref
from typing import Iterable, Optional

try:
    import fcntl
except ImportError:  # not POSIX: no liveness locks; leases still expire
    fcntl = None  # type: ignore[assignment]

SUFFIX = ".lock"
PENDING_SUFFIX = ".opening"
STRAY_PENDING_SECONDS = 60.0
WATCHABLE = sys.platform.startswith("linux") and hasattr(socket, "AF_UNIX")


def _listen_address(connection_id: str) -> bytes:
    return b"\0litemq-live-" + connection_id.encode("ascii")


def sidecar_directory(db_path: str) -> str:
    """The directory of liveness locks for a database file."""
    return db_path + "-litemq"


def _lock_file(directory: str, connection_id: str) -> str:
    return os.path.join(directory, connection_id + SUFFIX)


def is_alive(db_path: str, connection_id: str) -> bool:
    """Whether a connection's owner still holds its lock, checked without keeping anything (for a process with no
    connection of its own yet, such as one about to migrate the file). False where there are no locks."""
    if fcntl is None:
        return False
    try:
        fd = os.open(_lock_file(sidecar_directory(db_path), connection_id), os.O_RDWR)
    except FileNotFoundError:
        return False  # its lock was created before its row, so the connection is gone
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # and with it the shared lock, if it was taken
    return False


class Liveness:
    """This connection's own lock, and the checks of the others'."""

    def __init__(self, db_path: str, connection_id: str) -> None:
        self.connection_id = connection_id
        self.directory = sidecar_directory(db_path)
        self._watched: dict[str, int] = {}
        self._watch_sockets: dict[str, socket.socket] = {}
        self._unwatchable: set[str] = set()
        self._lock = threading.Lock()
        self._own_fd: Optional[int] = None
        self._listener: Optional[socket.socket] = None
        if fcntl is None:
            return
        os.makedirs(self.directory, exist_ok=True)
        # Locked under a temporary name, then renamed: a lock file is never seen unlocked under its real name,
        # where another opener would take it for a stray and a sweeper for a dead connection.
        pending = os.path.join(self.directory, f".{connection_id}{PENDING_SUFFIX}")
        fd = os.open(pending, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.rename(pending, self._path(connection_id))
        self._own_fd = fd
        if WATCHABLE:
            try:
                listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                listener.bind(_listen_address(connection_id))
                listener.listen(4096)
                self._listener = listener
            except OSError:
                self._listener = None
        _all.add(self)

    @property
    def supported(self) -> bool:
        return self._own_fd is not None

    def _path(self, connection_id: str) -> str:
        return _lock_file(self.directory, connection_id)

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

    def watch(self, connection_ids: Iterable[str]) -> tuple[list[socket.socket], bool]:
        """Sockets that become readable when one of these connections' process dies, and whether every one of
        them is watched that way (if not, the caller must check the locks on a timer)."""
        if not self.supported:
            return [], False
        listed = set(connection_ids)
        listed.discard(self.connection_id)
        with self._lock:
            for connection_id in listed - set(self._watch_sockets) - self._unwatchable:
                self._connect_watch(connection_id)
            for gone in set(self._watch_sockets) - listed:
                self._watch_sockets.pop(gone).close()
            self._unwatchable &= listed
            return list(self._watch_sockets.values()), not self._unwatchable

    def _connect_watch(self, connection_id: str) -> None:
        if not WATCHABLE:
            self._unwatchable.add(connection_id)
            return
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            sock.connect(_listen_address(connection_id))
        except ConnectionRefusedError:
            # Gone already, or listening in another network namespace: readable at once, so the lock is checked.
            self._unwatchable.add(connection_id)
            sock.close()
            return
        except OSError:
            self._unwatchable.add(connection_id)
            sock.close()
            return
        self._watch_sockets[connection_id] = sock

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
            watch = self._watch_sockets.pop(connection_id, None)
            if watch is not None:
                watch.close()
            self._unwatchable.discard(connection_id)
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
            if name.endswith(PENDING_SUFFIX):
                self._remove_if_unlocked(os.path.join(self.directory, name))
                continue
            connection_id = name[:-len(SUFFIX)]
            if not name.endswith(SUFFIX) or connection_id in known:
                continue
            if self.is_dead(connection_id):
                self.forget(connection_id)

    def _remove_if_unlocked(self, path: str) -> None:
        # A process that died between creating and renaming its lock file leaves it behind, unlocked. A young one
        # may belong to a connection opening right now, before its flock: leave those alone.
        assert fcntl is not None
        try:
            if time.time() - os.stat(path).st_mtime < STRAY_PENDING_SECONDS:
                return
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.unlink(path)
        except (BlockingIOError, FileNotFoundError):
            pass
        finally:
            os.close(fd)

    def close(self) -> None:
        """Release this connection's lock (after its row is gone) and stop watching others."""
        with self._lock:
            for fd in self._watched.values():
                os.close(fd)
            self._watched.clear()
            for sock in self._watch_sockets.values():
                sock.close()
            self._watch_sockets.clear()
            if self._listener is not None:
                self._listener.close()
                self._listener = None
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
        for sock in list(self._watch_sockets.values()) + ([self._listener] if self._listener else []):
            sock.close()
        self._watch_sockets.clear()
        self._listener = None


_all: "weakref.WeakSet[Liveness]" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for liveness in list(_all):
        liveness._drop_in_child()
    _all.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
