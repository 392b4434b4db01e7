"""The SQLite store's liveness: each open connection holds an OS lock on a file of its own, beside the database,
for its whole life.

The kernel drops the lock the moment the process dies, however it dies, so any process can tell for certain that
a connection's owner is gone: it can take the lock. Only a lock that can be taken proves a death. A missing lock
file proves nothing (a cleanup script may have removed the directory): its owner, if alive, notices within half a
second (``keep``) and makes a new one; meanwhile the others leave it alone, and only once it has been missing for
``MISSING_GRACE_SECONDS`` do they ask the kernel whether the pid registered with it still runs the process that
registered it (leases expire in any case). Otherwise the pid and host stored with a connection are for people.
Locks are ``flock`` locks, which belong to an open file description, not to a process: two connections in one
process each hold their own, and closing one descriptor never drops another's lock. The database's own files
(``.db``, ``-wal``, ``-shm``) are never opened or locked here.

The directory and the lock files are private to the database file's owner, or shared with its group when the
database file is group-writable (mode and group follow the database file). Anyone who can open a lock file can hold
a lock on it and so keep a dead connection looking alive; nobody can make a live one look dead, since its owner
holds the lock. So a directory or lock file that someone outside that owner and group could have made is refused
with an error, and lock files are opened read-only to test them.

Waiters hear at once that a process died through its connection's hang-up watch (``hangup``), and then take its
lock; where a connection cannot be watched, they test its lock on a short timer instead.
"""

from __future__ import annotations

import contextlib
import os
import stat
import threading
import time
import weakref

from .. import timing
from ..errors import StorageError
from ..log import logger
from .contract import Registration, this_host
from .hangup import HangupWatch

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    from typing import Callable, Iterable, NamedTuple, Optional
else:
    from ..runtime_types import NamedTuple

try:
    import fcntl
except ImportError:  # not POSIX: no liveness locks; leases still expire
    fcntl = None  # type: ignore[assignment]

SUFFIX = ".lock"
PENDING_SUFFIX = ".opening"
STRAY_PENDING_SECONDS = 60.0
MISSING_GRACE_SECONDS = 5.0
"""How long another connection's lock file may be missing before its registered pid is consulted: ten times what
its owner, if alive, takes to make a new one (its background thread calls ``keep`` twice a second)."""
_OPEN_TO_TEST = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)


def sidecar_directory(db_path: str) -> str:
    """The directory of liveness locks for a database file."""
    return db_path + "-litemq"


def _lock_file(directory: str, connection_id: str) -> str:
    return os.path.join(directory, connection_id + SUFFIX)


class Access(NamedTuple):
    """Who may keep and test the liveness locks of a database: the owner of the database file, and its group when
    the file is group-writable (then the directory is setgid to that group, so every lock file joins it)."""

    uid: int
    gid: int
    shared: bool

    @classmethod
    def of(cls, db_path: str) -> "Access":
        found = os.stat(db_path)
        return cls(found.st_uid, found.st_gid, bool(found.st_mode & stat.S_IWGRP))

    @property
    def directory_mode(self) -> int:
        return 0o2770 if self.shared else 0o700

    @property
    def file_mode(self) -> int:
        return 0o640 if self.shared else 0o600  # testing a lock needs only to read it

    def trusts(self, found: os.stat_result) -> bool:
        """Whether a file or directory can only have been made by the database's owner or group (or root)."""
        if found.st_mode & stat.S_IWOTH:
            return False
        return found.st_uid in (self.uid, os.geteuid(), 0) or (self.shared and found.st_gid == self.gid)

    def describe(self) -> str:
        who = f"uid {self.uid}"
        return f"{who} or group {self.gid}" if self.shared else who

    def adopt(self, target: "int | str", found: os.stat_result, mode: int) -> None:
        """Give what this process made or owns (a descriptor, or a directory checked not to be a symlink) the
        database's owner or group, and the mode the rule gives it."""
        uid = self.uid if os.geteuid() == 0 else -1  # root makes it the database owner's, or they could not test it
        gid = self.gid if (self.shared or os.geteuid() == 0) else -1
        if (uid != -1 and found.st_uid != uid) or (gid != -1 and found.st_gid != gid):
            # Not a member of that group: the setgid directory has given it the group already, or nothing can.
            with contextlib.suppress(PermissionError):
                os.chown(target, uid, gid)
        if stat.S_IMODE(found.st_mode) != mode:
            os.chmod(target, mode)


class _Vanished(Exception):
    """The lock directory was removed while a lock file was being made in it (a cleanup at work): try again."""


def prepare_directory(directory: str, access: Access) -> None:
    """Make the lock directory (private to the database's owner and group), or check that the one there is theirs.

    Raises StorageError naming the directory when it cannot be made, written, or trusted."""
    try:
        os.mkdir(directory, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise StorageError(f"cannot create the liveness directory {directory}: {exc.strerror}") from exc
    try:
        found = os.lstat(directory)
    except FileNotFoundError as exc:
        raise _Vanished() from exc
    if not stat.S_ISDIR(found.st_mode):
        raise StorageError(f"{directory} is not a directory (litemq keeps its liveness locks there): remove it")
    if not access.trusts(found):
        raise StorageError(
            f"the liveness directory {directory} belongs to uid {found.st_uid} (group {found.st_gid}, mode "
            f"{stat.S_IMODE(found.st_mode):o}), not to the database's owner or group ({access.describe()}): anyone "
            f"who made it could fake which connections are alive; refusing to use it. Remove it")
    if found.st_uid == os.geteuid():
        try:
            access.adopt(directory, found, access.directory_mode)  # also tightens one an older litemq made 0755
        except FileNotFoundError as exc:
            raise _Vanished() from exc
        except OSError as exc:
            raise StorageError(f"cannot set the mode of the liveness directory {directory}: {exc.strerror}") from exc
    if not os.access(directory, os.W_OK | os.X_OK):
        raise StorageError(f"the liveness directory {directory} is not writable by uid {os.geteuid()}: litemq "
                           f"keeps a lock file there for each open connection")


def _open_to_test(path: str, access: Access) -> Optional[int]:
    """Open a lock file read-only (a lock can be taken through any descriptor), or None when there is none.

    Raises StorageError for a lock file the database's owner or group did not make."""
    try:
        fd = os.open(path, _OPEN_TO_TEST)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StorageError(f"cannot test the liveness lock {path}: {exc.strerror}") from exc
    found = os.fstat(fd)
    if not stat.S_ISREG(found.st_mode) or not access.trusts(found):
        os.close(fd)
        raise StorageError(
            f"the liveness lock {path} belongs to uid {found.st_uid} (group {found.st_gid}), not to the database's "
            f"owner or group ({access.describe()}): refusing to trust it. Remove it")
    return fd


def _is_current(fd: int, path: str) -> bool:
    """Whether the open lock file is still the one at its path (not removed, nor replaced by a new one)."""
    held = os.fstat(fd)
    if held.st_nlink == 0:
        return False
    try:
        there = os.stat(path)
    except OSError:  # gone, or its directory made unsearchable: either way not one others can test
        return False
    return (there.st_dev, there.st_ino) == (held.st_dev, held.st_ino)


def process_may_live(registration: Registration) -> bool:
    """Whether the process a connection registered may still be running: False only when this machine's kernel
    says that pid is free, a zombie, or a process started after the connection was opened."""
    if registration.host != this_host():
        return True  # another machine's: only its lease can tell
    try:
        os.kill(registration.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process, running
    except OSError:
        return True
    try:
        with open(f"/proc/{registration.pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        with open("/proc/stat", "rb") as f:
            boot = next(float(line.split()[1]) for line in f if line.startswith(b"btime "))
    except (OSError, IndexError, StopIteration, ValueError):
        return True
    if fields[0] in (b"Z", b"X"):
        return False
    started = boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    return started <= registration.started_at + 1.0  # btime is whole seconds


def is_alive(db_path: str, connection_id: str, registration: Optional[Registration] = None) -> bool:
    """Whether a connection's owner still holds its lock, checked without keeping anything (for a process with no
    connection of its own yet, such as one about to migrate the file). False where there are no locks. A missing
    lock file is judged by ``registration`` (its row): alive while this machine runs its process; dead without
    one, or from another machine (a file copied here with its rows)."""
    if fcntl is None:
        return False
    fd = _open_to_test(_lock_file(sidecar_directory(db_path), connection_id), Access.of(db_path))
    if fd is None:
        return (registration is not None and registration.host == this_host()
                and process_may_live(registration))
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # and with it the shared lock, if it was taken
    return False


class FlockLiveness:
    """This connection's own lock, and the checks of the others' (``contract.Liveness``)."""

    def __init__(self, db_path: str, connection_id: str, *,
                 registration: Optional[Callable[[str], Optional[Registration]]] = None,
                 lock: "Optional[threading.RLock]" = None) -> None:
        self.connection_id = connection_id
        self.directory = sidecar_directory(db_path)
        self._db_path = db_path
        self._registration = registration or (lambda connection_id: None)
        self._watched: dict[str, int] = {}
        self._missing_since: dict[str, float] = {}
        self._lock = lock if lock is not None else threading.RLock()
        self._own_fd: Optional[int] = None
        self._hangups: Optional[HangupWatch] = None
        self._keep_failed = False
        if fcntl is None:
            return
        self.access = Access.of(db_path)
        self._own_fd = self._lock_anew()
        self._hangups = HangupWatch(connection_id, db_path)
        _all.add(self)

    def _lock_anew(self, attempts: int = 10) -> int:
        """Make the directory if need be, and this connection's lock file in it, locked."""
        for _ in range(attempts):
            try:
                prepare_directory(self.directory, self.access)
                return self._make_own_lock()
            except _Vanished:
                continue
        raise StorageError(f"the liveness directory {self.directory} was removed {attempts} times in a row while a "
                           f"lock file was being made in it")

    def _make_own_lock(self) -> int:
        assert fcntl is not None
        # Locked under a temporary name, then renamed: a lock file is never seen unlocked under its real name,
        # where another opener would take it for a stray and a sweeper for a dead connection.
        pending = os.path.join(self.directory, f".{self.connection_id}{PENDING_SUFFIX}")
        try:
            fd = os.open(pending, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0),
                         0o600)
        except FileNotFoundError as exc:
            raise _Vanished() from exc
        except OSError as exc:
            raise StorageError(f"cannot create a liveness lock in {self.directory}: {exc.strerror}") from exc
        try:
            self.access.adopt(fd, os.fstat(fd), self.access.file_mode)
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.rename(pending, self._path(self.connection_id))
        except BaseException as exc:
            os.close(fd)
            try:
                os.unlink(pending)
            except OSError:
                pass
            if isinstance(exc, FileNotFoundError):
                raise _Vanished() from exc
            if isinstance(exc, OSError):
                raise StorageError(f"cannot create a liveness lock in {self.directory}: {exc.strerror}") from exc
            raise
        return fd

    @property
    def supported(self) -> bool:
        return self._own_fd is not None

    def _path(self, connection_id: str) -> str:
        return _lock_file(self.directory, connection_id)

    def keep(self) -> None:
        """Make a new lock file if this connection's was removed (a cleanup of the directory, say): without one,
        other processes cannot tell whether this connection lives. Called from the background thread."""
        with self._lock:
            if self._own_fd is None or _is_current(self._own_fd, self._path(self.connection_id)):
                return
            try:
                fd = self._lock_anew(3)
            except (StorageError, OSError) as exc:
                if not self._keep_failed:
                    self._keep_failed = True
                    logger().error("litemq: the lock file of connection %s was removed and cannot be made again "
                                   "(%s): other processes cannot tell that it lives, and its leases will expire "
                                   "if it stops renewing them; retrying", self.connection_id, exc)
                return
            # The old one's lock goes with it: whoever still has that file open sees it is no longer current.
            os.close(self._own_fd)
            self._own_fd = fd
            self._keep_failed = False
            logger().info("litemq: the lock file of connection %s on %s was removed; made a new one",
                          self.connection_id, self._db_path)

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
            for gone in set(self._missing_since) - listed:
                del self._missing_since[gone]
        return found

    def watch(self, connection_ids: Iterable[str]) -> tuple[list[socket.socket], float]:
        """Sockets that become readable when one of these connections' process dies, and how long a waiter may
        sleep before it tests the locks by hand: long when every one of them is watched that way."""
        if self._hangups is None:
            return [], timing.SWEEP_SECONDS
        with self._lock:
            sockets, complete = self._hangups.watch(connection_ids)
        return sockets, timing.RECHECK_SECONDS if complete else timing.SWEEP_SECONDS

    def hung_up(self, sock: socket.socket) -> None:
        """A watched socket became readable, and its connection was not found dead (its lock file is missing):
        stop watching it, so its lock is checked on the timer instead of waking the waiter again at once."""
        if self._hangups is not None:
            with self._lock:
                self._hangups.hung_up(sock)

    def is_dead(self, connection_id: str) -> bool:
        if not self.supported or connection_id == self.connection_id:
            return False
        with self._lock:
            return self._is_dead(connection_id)

    def _is_dead(self, connection_id: str) -> bool:
        assert fcntl is not None
        path = self._path(connection_id)
        for _ in range(2):
            fd = self._watched.get(connection_id)
            if fd is None:
                fd = _open_to_test(path, self.access)
                if fd is None:
                    return self._missing(connection_id)
                self._watched[connection_id] = fd
            self._missing_since.pop(connection_id, None)
            try:
                # Shared: a reader holding a shared lock of its own cannot make a dead connection look alive.
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            if _is_current(fd, path):
                return True  # and the lock stays taken until forget
            # Removed (with its directory, by a cleanup) while it was open here: if its owner lives, it has made a
            # new one, which is the one to test.
            os.close(self._watched.pop(connection_id))
        return False

    def _missing(self, connection_id: str) -> bool:
        """No lock file: dead if it was never registered (or no longer is), since the lock comes before the row
        and goes after it; otherwise unknown until the grace passes, then as the kernel knows its pid."""
        registration = self._registration(connection_id)
        if registration is None:
            return True
        now = time.monotonic()
        missing_for = now - self._missing_since.setdefault(connection_id, now)
        try:
            # Nothing was added to or removed from the directory since: so the file has been missing at least that
            # long, whoever looked before (this checker may be new).
            missing_for = max(missing_for, time.time() - os.stat(self.directory).st_mtime)
        except OSError:
            pass
        if missing_for < MISSING_GRACE_SECONDS:
            return False
        return not process_may_live(registration)

    def forget(self, connection_id: str) -> None:
        """After the dead connection's state is cleaned up: remove its lock file."""
        with self._lock:
            if self._hangups is not None:
                self._hangups.forget(connection_id)
            self._missing_since.pop(connection_id, None)
            fd = self._watched.pop(connection_id, None)
            try:
                os.unlink(self._path(connection_id))
            except OSError:
                pass  # gone already, or the directory went read-only: a stray for the next opener
            if fd is not None:
                os.close(fd)

    def remove_strays(self, registered: Iterable[str]) -> None:
        """Delete lock files of processes that died before registering (their lock can be taken)."""
        if not self.supported:
            return
        known = set(registered) | {self.connection_id}
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return  # removed meanwhile; this connection makes its own again
        for name in names:
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
            if time.time() - os.lstat(path).st_mtime < STRAY_PENDING_SECONDS:
                return
        except FileNotFoundError:
            return
        fd = _open_to_test(path, self.access)
        if fd is None:
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            os.unlink(path)
        except (BlockingIOError, FileNotFoundError):
            pass
        finally:
            os.close(fd)

    def close(self, registered: bool = False) -> None:
        """Release this connection's lock (after its row is gone) and stop watching others. Never raises: the
        connection is already gone from the file. A connection still ``registered`` (its row could not be
        deleted: a full disk) leaves its lock file, unlocked: the lock others can take is their proof that it died,
        where a missing file would only make them wait out its process."""
        with self._lock:
            for fd in self._watched.values():
                _close_quietly(fd)
            self._watched.clear()
            if self._hangups is not None:
                self._hangups.close()
            if self._own_fd is not None:
                try:
                    if not registered and _is_current(self._own_fd, self._path(self.connection_id)):
                        os.unlink(self._path(self.connection_id))
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    logger().warning("litemq: cannot remove the lock file of closed connection %s (%s); the next "
                                     "connection to open %s removes it", self.connection_id, exc, self._db_path)
                _close_quietly(self._own_fd)
                self._own_fd = None
        _all.discard(self)

    def _drop_in_child(self) -> None:
        # A forked child must not keep the parent's lock alive after the parent dies: close its copies. The
        # parent's descriptor still holds the lock, since a flock lock lives while any copy is open.
        for fd in list(self._watched.values()) + ([self._own_fd] if self._own_fd is not None else []):
            _close_quietly(fd)
        self._watched.clear()
        self._own_fd = None  # (its hang-up watch lets go of its sockets itself)


def _close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


_all: "weakref.WeakSet[FlockLiveness]" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for liveness in list(_all):
        liveness._drop_in_child()
    _all.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
