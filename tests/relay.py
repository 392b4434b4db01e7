"""A TCP relay in the test process: it carries every connection made to its addresses to one upstream server
(the local PostgreSQL, which listens on 127.0.0.1 only), both ways, so machines in network namespaces reach it
without touching the server's configuration (see netns.py)."""

from __future__ import annotations

import socket
import threading
import time
from typing import Callable, Optional
from urllib.parse import urlsplit

from services import POSTGRESQL_URL

SERVER = (urlsplit(POSTGRESQL_URL).hostname or "127.0.0.1", urlsplit(POSTGRESQL_URL).port or 5432)
"""Where the relay carries connections: the local PostgreSQL server."""
RELAY_PORT = 5432


class Relay:
    """Carries every TCP connection made to one of its addresses to ``upstream``, both ways, one thread per
    direction. A close or reset on one side is passed on to the other; a cut link leaves both sockets open, as a
    partition leaves a server's socket.

    ``keepalive=(idle, interval, count)`` gives the machine-side sockets the TCP keepalive the server would give
    its own (PostgreSQL's ``tcp_keepalives_idle/interval/count``), and the ``tcp_user_timeout`` that goes with them
    (idle + interval x count): keepalive probes only a socket with nothing unacknowledged, so a cut that falls while
    a reply is on its way to the machine is found by the user timeout instead. Once it finds the machine gone, the
    relay closes the upstream socket, and the server ends that session as it would have on its own socket."""

    def __init__(self, upstream: tuple[str, int] = SERVER,
                 keepalive: Optional[tuple[int, int, int]] = None) -> None:
        self.upstream = upstream
        self.keepalive = keepalive
        self.relayed: list[Relayed] = []
        self._listeners: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._stopped = threading.Event()
        self._lock = threading.Lock()

    def listen(self, address: str, port: int = RELAY_PORT) -> None:
        listener = socket.create_server((address, port))
        listener.settimeout(0.1)  # the accept loop looks at _stopped this often
        self._listeners.append(listener)
        self._start(self._accept, listener, address)

    def connections(self, address: Optional[str] = None) -> list["Relayed"]:
        """The connections still relayed (from machines listening at ``address``, or all)."""
        with self._lock:
            return [r for r in self.relayed if not r.closed.is_set() and address in (None, r.address)]

    def close(self) -> None:
        self._stopped.set()
        for listener in self._listeners:
            listener.close()
        with self._lock:
            relayed = list(self.relayed)
        for connection in relayed:
            connection.close()
        for thread in self._threads:
            thread.join(timeout=5)

    def _start(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True, name=f"relay-{target.__name__}")
        self._threads.append(thread)
        thread.start()

    def _accept(self, listener: socket.socket, address: str) -> None:
        while not self._stopped.is_set():
            try:
                downstream, _ = listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return  # closed by close()
            downstream.settimeout(None)
            if self.keepalive is not None:
                idle, interval, count = self.keepalive
                downstream.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
                downstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle)
                downstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, interval)
                downstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, count)
                downstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, 1000 * (idle + interval * count))
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                downstream.close()
                continue
            upstream.settimeout(None)
            connection = Relayed(address, downstream, upstream)
            with self._lock:
                self.relayed.append(connection)
            if self._stopped.is_set():  # close() took its list of connections before this one was added
                connection.close()
                return
            self._start(connection.pump, downstream, upstream)
            self._start(connection.pump, upstream, downstream)


class Relayed:
    """One relayed connection: the machine's side (``downstream``) and the server's (``upstream``)."""

    def __init__(self, address: str, downstream: socket.socket, upstream: socket.socket) -> None:
        self.address = address
        self.downstream = downstream
        self.upstream = upstream
        self.upstream_port: int = upstream.getsockname()[1]
        """The port the server sees as this session's ``client_port`` in pg_stat_activity."""
        self.closed = threading.Event()
        self.closed_at: Optional[float] = None
        """``time.time()`` when the relay closed both sockets."""
        self.error: Optional[OSError] = None
        """What ended it, if not a close: a reset, or the keepalive's ETIMEDOUT."""
        self._ended = 0
        self._lock = threading.Lock()

    def pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
            sink.shutdown(socket.SHUT_WR)  # a half-close is passed on as one
        except OSError as exc:
            if not self.closed.is_set():
                self.error = exc
            self.close()
            return
        with self._lock:
            self._ended += 1
            both = self._ended == 2
        if both:
            self.close()

    def close(self) -> None:
        with self._lock:
            if self.closed.is_set():
                return
            self.closed_at = time.time()
            self.closed.set()
        for sock in (self.downstream, self.upstream):
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes the other pump, blocked in recv
            except OSError:
                pass
            sock.close()
