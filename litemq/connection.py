"""Opening a broker (a file, or a PostgreSQL server): a ``Connection`` is its session for this process and also its
first channel."""

from __future__ import annotations

import atexit
import os
import weakref

from .broker import Channel
from .errors import StorageError
from .log import debug, logger
from .session import Session
from .store import open_store
from .timing import check_seconds

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Literal, Union


DEFAULT_LEASE_SECONDS = 60.0
DEFAULT_CONSUMER_TIMEOUT = 1800.0  # RabbitMQ's delivery acknowledgement timeout
DEFAULT_MAX_MESSAGE_BYTES = 128 * 1024 * 1024  # RabbitMQ's default max_message_size
if TYPE_CHECKING:
    Synchronous = Literal["NORMAL", "FULL"]
    """How hard a commit is: ``"NORMAL"`` survives a process crash, ``"FULL"`` (an fsync per commit) a power
    loss."""
MAX_BUSY_TIMEOUT = (2 ** 31 - 1) // 1000  # SQLite's busy timeout is an int of milliseconds
SQLITE_MAX_VALUE_BYTES = 1_000_000_000  # SQLite's default SQLITE_MAX_LENGTH: no body can be stored past it


class Connection(Channel):
    """An open litemq broker. It is also its own first channel; ``channel()`` opens more.

    ``url`` is a path or ``sqlite:///path`` (a file), or ``postgresql://...`` (a server); by default
    ``$LITEMQ_URL``, else ``litemq.db`` in the working directory. Unacked deliveries are leased for
    ``lease_seconds`` and renewed in the background while this process lives (``renew_leases``), up to
    ``consumer_timeout`` seconds after delivery.

    A file's own settings (SQLite only): ``synchronous`` is ``"NORMAL"`` (the default) or ``"FULL"`` (an fsync at
    every commit); ``busy_timeout`` is how long a writer waits for the file's lock. A new file is private to its
    owner (0600); ``share_with_group`` creates it group-writable (0660) instead, for the users of its group (an
    existing file's own mode decides: see README, Permissions and sharing).
    """

    def __init__(self, url: Union[str, "os.PathLike[str]", None] = None, *, synchronous: Synchronous = "NORMAL",
                 lease_seconds: float = DEFAULT_LEASE_SECONDS, consumer_timeout: float = DEFAULT_CONSUMER_TIMEOUT,
                 renew_leases: bool = True, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
                 busy_timeout: float = 60.0, share_with_group: bool = False) -> None:
        check_seconds("lease_seconds", lease_seconds, positive=True)
        check_seconds("consumer_timeout", consumer_timeout, positive=True, forever=True)
        check_seconds("busy_timeout", busy_timeout)
        if busy_timeout > MAX_BUSY_TIMEOUT:  # SQLite would take the milliseconds past 32 bits as "do not wait"
            raise ValueError(f"busy_timeout must be at most {MAX_BUSY_TIMEOUT:,} seconds, got {busy_timeout!r}")
        if isinstance(max_message_bytes, bool) or not isinstance(max_message_bytes, int) \
                or not 0 < max_message_bytes <= SQLITE_MAX_VALUE_BYTES:
            raise ValueError(f"max_message_bytes must be a positive int up to {SQLITE_MAX_VALUE_BYTES:,} (the most "
                             f"SQLite stores in one value), got {max_message_bytes!r}")
        store = open_store(url, synchronous=synchronous, busy_timeout=busy_timeout,
                           share_with_group=bool(share_with_group))
        try:
            session = Session(store, lease_seconds=float(lease_seconds), max_message_bytes=max_message_bytes,
                              consumer_timeout=float(consumer_timeout), renew_leases=bool(renew_leases))
        except BaseException:
            store.close()
            raise
        super().__init__(session)
        _open_connections.add(self)
        debug("litemq: connection %s opened %s (pid %d, synchronous %s, lease %s s)", session.connection_id,
              store.path, store.pid, synchronous, lease_seconds)

    def channel(self) -> Channel:
        """Open another channel on this connection."""
        self._check_open()
        self._store.check_process()
        return Channel(self._session)

    @property
    def is_open(self) -> bool:
        return not self._session.closed

    def close(self) -> None:
        """Close every channel (returning unacked deliveries), delete this connection's exclusive queues. Always lets
        go of the file: when that cannot be written (a full disk), other connections tidy up as after a crash."""
        session = self._session
        if session.closed:
            return
        if os.getpid() != self._store.pid:
            # Inherited through fork(): the parent's connection, still open there. The child only lets go of its
            # copy, touching neither the file nor locks that a thread of the parent may have held at the fork.
            session.closed = True
            _open_connections.discard(self)
            return
        registered = True
        try:
            with self._store.write_exclusive() as store:
                for channel in list(session.channels.values()):
                    channel._close_in(store)
                for queue in store.owned_queues(session.connection_id):
                    session.delete_queue(store, queue)
                store.unregister_connection(session.connection_id)
            registered = False
        except StorageError as exc:
            # A full disk or a file gone: the tidying could not be written, but nothing is lost. Letting go of the
            # liveness lock below marks this connection dead, and the next connection to look returns its
            # deliveries and deletes its exclusive queues, as after a crash.
            logger().warning("litemq: closed %s without tidying up (%s); other connections will return its "
                             "deliveries as if it had died", self.path, exc)
        finally:
            # Nothing from here on raises: the connection's row is gone (or its leases expire, if that failed).
            session.close(registered)
            for channel in list(session.channels.values()):
                channel._closed = True
            session.channels.clear()
            try:
                self._store.close()
            except Exception:
                logger().exception("litemq: closing %s failed after the connection was released", self.path)
            _open_connections.discard(self)
            debug("litemq: connection %s to %s closed", session.connection_id, session.path)

    def __enter__(self) -> "Connection":
        return self

    def __del__(self) -> None:
        # A connection dropped without close() returns what it holds when it is collected, as a dropped
        # pika connection's socket makes RabbitMQ requeue.
        session = getattr(self, "_session", None)
        if session is not None and not session.closed and os.getpid() == session.store.pid:
            try:
                self.close()
            except Exception:
                logger().exception("litemq: closing a collected connection to %s failed", session.path)


def connect(url: Union[str, "os.PathLike[str]", None] = None, *, synchronous: Synchronous = "NORMAL",
            lease_seconds: float = DEFAULT_LEASE_SECONDS, consumer_timeout: float = DEFAULT_CONSUMER_TIMEOUT,
            renew_leases: bool = True, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
            busy_timeout: float = 60.0, share_with_group: bool = False) -> Connection:
    """Open a litemq broker: a file, or a PostgreSQL server (see ``Connection``)."""
    return Connection(url, synchronous=synchronous, lease_seconds=lease_seconds, consumer_timeout=consumer_timeout,
                      renew_leases=renew_leases, max_message_bytes=max_message_bytes, busy_timeout=busy_timeout,
                      share_with_group=share_with_group)


# Connections still open at interpreter exit are closed, so a script that forgets returns its unacked
# deliveries and drops its exclusive queues at once rather than at lease expiry.
_open_connections: "weakref.WeakSet[Connection]" = weakref.WeakSet()


@atexit.register
def _close_open_connections() -> None:
    for connection in list(_open_connections):
        try:
            connection.close()
        except Exception:  # exit must go on; the leases expire anyway
            logger().exception("litemq: closing %s at exit failed", connection.path)
