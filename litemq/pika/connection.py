"""pika's ``BlockingConnection`` and connection parameters, over a litemq file.

Host, port, credentials, virtual host, heartbeat and the other network settings are accepted and ignored:
litemq opens the file named by ``$LITEMQ_URL``, else ``litemq.db`` in the working directory, or the file an
``URLParameters('sqlite:///path')`` names."""

from __future__ import annotations

import heapq
import itertools
import select
import socket
import time
from collections import deque
from typing import Any, Callable, Optional, Sequence, Union

from ..connection import Connection
from ..consumer import Waiter
from ..store import locate
from . import exceptions
from .channel import BlockingChannel

_DEFAULT = object()
CHANNEL_MAX = 65535
"""pika's default channel_max: the most channels one connection has open."""


class PlainCredentials:
    """Accepted for compatibility; a file needs no credentials."""

    def __init__(self, username: str, password: str, erase_on_connect: bool = False) -> None:
        self.username = username
        self.password = password
        self.erase_on_connect = erase_on_connect


class ConnectionParameters:
    """pika's connection parameters. The network ones are ignored; the file is ``$LITEMQ_URL`` or litemq.db."""

    # pika's positional order after the first four (all accepted and ignored).
    _SETTINGS = ("channel_max", "frame_max", "heartbeat", "ssl_options", "connection_attempts", "retry_delay",
                 "socket_timeout", "stack_timeout", "locale", "blocked_connection_timeout", "client_properties",
                 "tcp_options")

    def __init__(self, host: Any = _DEFAULT, port: Any = _DEFAULT, virtual_host: Any = _DEFAULT,
                 credentials: Any = _DEFAULT, *settings_in_order: Any, **settings: Any) -> None:
        self.host = "localhost" if host is _DEFAULT else host
        self.port = 5672 if port is _DEFAULT else port
        self.virtual_host = "/" if virtual_host is _DEFAULT else virtual_host
        self.credentials = PlainCredentials("guest", "guest") if credentials is _DEFAULT else credentials
        if len(settings_in_order) > len(self._SETTINGS):
            raise TypeError(f"ConnectionParameters takes at most {4 + len(self._SETTINGS)} positional arguments")
        for name, value in zip(self._SETTINGS, settings_in_order):
            if name in settings:
                raise TypeError(f"ConnectionParameters got multiple values for argument {name!r}")
            settings[name] = value
        for name, value in settings.items():
            if value is not _DEFAULT:
                setattr(self, name, value)
        self.path = locate(None)


class URLParameters(ConnectionParameters):
    """``URLParameters('sqlite:///path/to/file.db')`` (or a plain path, or a ``postgresql://`` URL) names the
    broker to open."""

    def __init__(self, url: str) -> None:
        if not isinstance(url, str):
            raise TypeError(f"url must be a str, not {type(url).__name__}")
        if url.startswith(("amqp://", "amqps://")):
            raise ValueError(f"litemq opens SQLite files, not AMQP servers ({url!r}): give a path or "
                             f"'sqlite:///path', or use the real pika package to talk to a server")
        super().__init__()
        self.path = locate(url)


class BlockingConnection:
    """pika's blocking connection: channels, an event loop for consumers, timers and thread-safe callbacks."""

    def __init__(self, parameters: Union[ConnectionParameters, Sequence[ConnectionParameters], None] = None,
                 _impl_class: Any = None) -> None:
        if parameters is None:
            parameters = ConnectionParameters()
        if isinstance(parameters, Sequence):
            if not parameters:
                raise ValueError("parameters must not be an empty sequence")
            parameters = parameters[0]
        if not isinstance(parameters, ConnectionParameters):
            raise TypeError("parameters must be ConnectionParameters or URLParameters")
        self.params = parameters
        self._native = Connection(parameters.path)
        self._waiter = Waiter(self._native._session)
        self._channels: dict[int, BlockingChannel] = {}
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._timer_ids = itertools.count(1)
        self._cancelled_timers: set[int] = set()
        self._threadsafe: deque[Callable[[], None]] = deque()
        self._wake_read, self._wake_write = socket.socketpair()
        self._wake_read.setblocking(False)
        self._closed = False
        self._dispatch_depth = 0  # > 0 while a callback runs: pika never dispatches from inside one

    # --- state
    @property
    def is_open(self) -> bool:
        return not self._closed

    @property
    def is_closed(self) -> bool:
        return self._closed

    basic_nack_supported = True
    consumer_cancel_notify_supported = True
    exchange_exchange_bindings_supported = True
    publisher_confirms_supported = True

    def _check_open(self) -> None:
        if self._closed:
            raise exceptions.ConnectionWrongStateError("BlockingConnection.close(200, 'Normal shutdown') "
                                                       "was called or the connection is closed")

    # --- channels
    def channel(self, channel_number: Optional[int] = None) -> BlockingChannel:
        """Open a channel: the lowest free number, or ``channel_number``."""
        self._check_open()
        # As pika numbers them: the lowest number free, so a closed channel's number is given again.
        number = channel_number if channel_number is not None else next(
            n for n in range(1, len(self._channels) + 2) if n not in self._channels)
        if channel_number is None and number > CHANNEL_MAX:
            raise exceptions.NoFreeChannels()
        if number in self._channels:
            raise exceptions.InvalidChannelNumber(f"channel {number} is already open")
        channel = BlockingChannel(self, number, self._native.channel())
        self._channels[number] = channel
        return channel

    def _forget_channel(self, number: int) -> None:
        self._channels.pop(number, None)

    # --- closing
    def close(self, reply_code: int = 200, reply_text: str = "Normal shutdown") -> None:
        self._check_open()
        self._shut(reply_code, reply_text)

    def _shut(self, reply_code: int, reply_text: str) -> None:
        try:
            for channel in list(self._channels.values()):
                if channel.is_open:
                    channel._shut()
        finally:
            self._closed = True
            self._native.close()
            self._wake_read.close()
            self._wake_write.close()

    def __enter__(self) -> "BlockingConnection":
        return self

    def __exit__(self, *exc: object) -> None:
        if self.is_open:
            self.close()

    # --- the event loop
    def process_data_events(self, time_limit: Optional[float] = 0) -> None:
        """Dispatch what is ready (deliveries to callbacks, returns, cancels, timers, thread-safe callbacks),
        waiting up to ``time_limit`` seconds for something (forever when None)."""
        self._check_open()
        if self._dispatch_depth:
            # Called from inside a callback: like pika, wait without dispatching, so callbacks never nest.
            if time_limit:
                time.sleep(time_limit)
            return
        deadline = None if time_limit is None else time.monotonic() + max(0.0, time_limit)
        while True:
            if self._dispatch():
                return
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                return
            wait_until = deadline
            if self._timers:
                next_timer = now + max(0.0, self._timers[0][0] - time.time())
                wait_until = next_timer if wait_until is None else min(wait_until, next_timer)
            consumers = [c for channel in self._channels.values() for c in channel._callback_consumers()]
            if consumers:
                self._waiter.wait(consumers, wait_until, [self._wake_read])
            else:  # the waiter ends at once without consumers: wait for timers and other threads only
                select.select([self._wake_read], [], [],
                              None if wait_until is None else max(0.0, wait_until - time.monotonic()))

    def sleep(self, duration: float) -> None:
        """Sleep while still dispatching events, as pika's safer sleep does."""
        deadline = time.monotonic() + duration
        while (left := deadline - time.monotonic()) > 0:
            self.process_data_events(left)

    def _dispatch(self) -> bool:
        self._dispatch_depth += 1
        try:
            return self._dispatch_once()
        finally:
            self._dispatch_depth -= 1

    def _dispatch_once(self) -> bool:
        handled = False
        try:
            while True:
                self._wake_read.recv(64)
        except (BlockingIOError, OSError):
            pass
        while self._threadsafe:
            self._threadsafe.popleft()()
            handled = True
        while self._timers and self._timers[0][0] <= time.time():
            _, timer_id, callback = heapq.heappop(self._timers)
            if timer_id not in self._cancelled_timers:
                callback()
                handled = True
            self._cancelled_timers.discard(timer_id)
        progress = True
        while progress:
            progress = False
            for channel in list(self._channels.values()):
                if channel._dispatch_round():
                    handled = progress = True
        return handled

    def add_callback_threadsafe(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` in the thread running this connection's event loop (the only thread-safe method)."""
        if not callable(callback):
            raise TypeError("callback must be callable")
        if self._closed:
            raise exceptions.ConnectionWrongStateError("the connection is closed")
        self._threadsafe.append(callback)
        try:
            self._wake_write.send(b"!")
        except OSError:
            pass

    def call_later(self, delay: float, callback: Callable[[], None]) -> int:
        """Run ``callback`` from the event loop after ``delay`` seconds; returns an id for remove_timeout."""
        if not callable(callback):
            raise TypeError("callback must be callable")
        timer_id = next(self._timer_ids)
        heapq.heappush(self._timers, (time.time() + delay, timer_id, callback))
        return timer_id

    def remove_timeout(self, timeout_id: int) -> None:
        if any(timer_id == timeout_id for _, timer_id, _ in self._timers):
            self._cancelled_timers.add(timeout_id)

    def add_on_connection_blocked_callback(self, callback: Callable[..., None]) -> None:
        """Accepted for compatibility: a file never blocks publishers for lack of resources."""

    def add_on_connection_unblocked_callback(self, callback: Callable[..., None]) -> None:
        """Accepted for compatibility."""
