"""Request and reply over litemq: a client that calls and waits, and a server that answers each request once.

The client has one exclusive, server-named reply queue and matches replies by ``correlation_id``; replies it no
longer waits for (late or stray) are dropped. The server publishes its reply and acks the request in one
transaction, so a request is answered exactly once even if the server dies in between, something a broker over
a network cannot promise. A handler that raises sends an error reply, which the client raises as ``RpcError``.
"""

from __future__ import annotations

import math
import os
import threading
import time
from typing import Any, Callable, Iterable, Optional, Union

from .connection import Connection
from .consumer import Signal
from .errors import LiteMQError, Unroutable
from .log import logger
from .message import Body, Delivery, Properties
from .timing import check_seconds


ERROR_HEADER = "x-rpc-error"
"""Header of an error reply: the handler's exception, as 'Type: message'."""


class RpcError(LiteMQError):
    """The server's handler raised; the message is the remote 'Type: message'."""


class RpcTimeout(LiteMQError):
    """No reply came within the timeout."""


class _Pending:
    __slots__ = ("reply",)

    def __init__(self) -> None:
        self.reply: Optional[Delivery] = None


class RpcClient:
    """Calls a server through a queue and waits for the reply. Safe to share between threads."""

    def __init__(self, connection: Connection, *, exchange: str = "") -> None:
        self._channel = connection.channel()
        self.exchange = exchange
        self.reply_queue = self._channel.declare_queue("", exclusive=True, auto_delete=True).queue
        self._consumer = self._channel.consume(self.reply_queue, auto_ack=True)
        self._pending: dict[str, _Pending] = {}
        self._condition = threading.Condition()
        self._reading = False

    def call(self, routing_key: str, body: Body, *, timeout: Optional[float] = 30.0,
             properties: Optional[Properties] = None) -> bytes:
        """Publish a request to ``routing_key`` and return the reply's body; RpcTimeout after ``timeout``
        seconds (None: wait as long as it takes), RpcError when the server's handler raised, Unroutable at once
        when the request reaches no queue."""
        check_seconds("timeout", timeout, forever=True)  # before the request is out, to be run by a server
        correlation_id, request = request_properties(properties, self.reply_queue)
        pending = _Pending()
        with self._condition:
            self._pending[correlation_id] = pending
        try:
            try:
                # Mandatory: a request that reaches no queue fails now, not at the timeout. One that reaches a
                # queue without a server waits there, as with RabbitMQ: a server may start within the timeout.
                self._channel.publish(self.exchange, routing_key, body, request, mandatory=True)
            except Unroutable:
                raise no_server(self.exchange, routing_key, self._channel.path) from None
            reply = self._wait(pending, math.inf if timeout is None else time.monotonic() + timeout)
        finally:
            with self._condition:
                self._pending.pop(correlation_id, None)
        return reply_body(reply, routing_key, timeout, self._channel.path)

    def _wait(self, pending: _Pending, deadline: float) -> Optional[Delivery]:
        # One waiting thread at a time reads the reply queue and hands each reply to its caller; the others sleep
        # on the condition until their reply arrives or the reader's turn passes to them.
        while True:
            with self._condition:
                while pending.reply is None and self._reading:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return None
                    self._condition.wait(left)
                if pending.reply is not None:
                    return pending.reply
                if deadline <= time.monotonic():
                    return None
                self._reading = True
            try:
                while pending.reply is None and (left := deadline - time.monotonic()) > 0:
                    delivery = self._consumer.get(min(left, 0.1))
                    if delivery is not None:
                        with self._condition:
                            waiting = self._pending.get(delivery.properties.correlation_id or "")
                            if waiting is not None:  # anything else is late or stray: dropped
                                waiting.reply = delivery
                                self._condition.notify_all()
            finally:
                with self._condition:
                    self._reading = False
                    self._condition.notify_all()

    def close(self) -> None:
        """Close the client's channel; its reply queue goes with the connection."""
        self._channel.close()

    def __enter__(self) -> "RpcClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


Handler = Callable[[Delivery], Body]


class RpcServer:
    """Serves ``handler(request) -> reply body`` on a queue, answering each request once."""

    def __init__(self, connection: Connection, queue: str, handler: Handler, *, prefetch: int = 1,
                 declare: bool = True) -> None:
        self._channel = connection.channel()
        if declare:
            self._channel.declare_queue(queue)
        self.queue = queue
        self._handler = handler
        self._consumer = self._channel.consume(queue, prefetch=prefetch)

    def serve(self, *, inactivity_timeout: Optional[float] = None, limit: Optional[int] = None,
              stop_on: Iterable[Signal] = ()) -> int:
        """Answer requests until stopped, idle for ``inactivity_timeout`` seconds, or ``limit`` are answered.
        Returns how many were answered. ``stop_on`` (e.g. ``(signal.SIGTERM,)``) is a warm shutdown: the request in
        hand is answered, then serve returns (see ``Consumer.run``)."""
        check_seconds("inactivity_timeout", inactivity_timeout, forever=True)
        self._consumer.inactivity_timeout = inactivity_timeout
        self._consumer.stop_on(*stop_on)
        answered = 0
        for request in self._consumer:
            self.answer(request)
            answered += 1
            if limit is not None and answered >= limit:
                break
        return answered

    def answer(self, request: Delivery) -> None:
        """Run the handler on one request and reply, atomically with the request's ack."""
        try:
            outcome: Union[Body, Exception] = self._handler(request)
        except Exception as exc:
            outcome = exc
        body, reply = reply_to(request, outcome, self.queue)
        if request.properties.reply_to:
            self._channel.ack_and_publish(request.delivery_tag, "", request.properties.reply_to, body, reply)
        else:
            request.ack()

    def stop(self) -> None:
        """Stop serving (callable from the handler); requests not yet answered go back to the queue."""
        self._consumer.cancel()

    def finish(self) -> None:
        """Warm shutdown, from any thread or a signal handler: serve returns once the request in hand is answered;
        requests not yet handed to the handler go back to the queue unmarked."""
        self._consumer.finish()

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "RpcServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def request_properties(properties: Optional[Properties], reply_queue: str) -> tuple[str, Properties]:
    """A new request's correlation id, and its properties: the caller's, with ``reply_to`` and that id."""
    correlation_id = os.urandom(16).hex()
    fields: dict[str, Any] = {**_fields(properties), "reply_to": reply_queue, "correlation_id": correlation_id}
    return correlation_id, Properties(**fields)


def no_server(exchange: str, routing_key: str, path: str) -> Unroutable:
    """The error of a request that reached no queue."""
    where = f"exchange {exchange!r} with routing key" if exchange else "queue"
    return Unroutable(f"the request to {where} {routing_key!r} reached no queue in {path}: no server has declared it",
                      exchange=exchange, routing_key=routing_key)


def reply_body(reply: Optional[Delivery], routing_key: str, timeout: Optional[float], path: str) -> bytes:
    """What a call returns: the reply's body; RpcTimeout when none came, RpcError when the handler failed."""
    if reply is None:
        raise RpcTimeout(f"no reply to the request to {routing_key!r} within {timeout} s (in {path})")
    error = (reply.properties.headers or {}).get(ERROR_HEADER)
    if error is not None:
        raise RpcError(f"the server of {routing_key!r} failed: {error}")
    return reply.body


def reply_to(request: Delivery, outcome: "Union[Body, Exception]", queue: str) -> tuple[Body, Properties]:
    """The reply to a request, from what its handler returned (a body) or raised: its body and properties."""
    correlation_id = request.properties.correlation_id
    if not isinstance(outcome, Exception) and not isinstance(outcome, (bytes, bytearray, memoryview, str)):
        outcome = TypeError(f"the handler returned {type(outcome).__name__}, not a reply body (bytes or str)")
    if isinstance(outcome, Exception):
        # Logged with the handler's traceback where there is one (it raised), as the caller's except block would.
        logger().error("litemq: the RPC handler for queue %r failed", queue, exc_info=outcome)
        body: Body = b""
        reply = Properties(correlation_id=correlation_id, headers={ERROR_HEADER: f"{type(outcome).__name__}: {outcome}"})
    else:
        body, reply = outcome, Properties(correlation_id=correlation_id)
    if not request.properties.reply_to:
        logger().warning("litemq: request on queue %r has no reply_to; acked without a reply", queue)
    return body, reply


def _fields(properties: Optional[Properties]) -> dict[str, object]:
    if properties is None:
        return {}
    return properties.set_fields()
