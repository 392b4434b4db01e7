"""What asyncio consumers share (one queue's ``AsyncConsumer``, several queues' ``AsyncConsumerSet``): ``async for``,
and a warm shutdown on a signal (``stop_on``), as the blocking ``Consuming`` has them."""

from __future__ import annotations

import asyncio
import signal
from abc import ABC, abstractmethod
from typing import Any, Optional, TypeVar

from .delivery import AsyncDelivery

C = TypeVar("C", bound="AsyncConsuming")


class AsyncConsuming(ABC):
    inactivity_timeout: Optional[float]
    _stop_signals: tuple[int, ...] = ()
    _replaced: Optional[dict[int, Any]] = None
    """While iterating with ``stop_on``: the signal handlers it replaced, restored when iteration ends."""

    @abstractmethod
    async def get(self, timeout: Optional[float] = None) -> Optional[AsyncDelivery]:
        ...

    @abstractmethod
    async def cancel(self) -> list[AsyncDelivery]:
        ...

    @abstractmethod
    def finish(self) -> None:
        ...

    @property
    @abstractmethod
    def finishing(self) -> bool:
        ...

    def __aiter__(self: C) -> C:
        return self

    async def __anext__(self) -> AsyncDelivery:
        if self._stop_signals and self._replaced is None:
            self._replaced = _finish_on(self, self._stop_signals)
        delivery = await self.get(self.inactivity_timeout)
        if delivery is None:
            self._restore_signals()
            if self.finishing:
                await self.cancel()  # what was claimed and not handed out goes back unmarked
            raise StopAsyncIteration
        return delivery

    def stop_on(self: C, *signals: "signal.Signals | int") -> C:
        """While iterating (``async for``, in the main thread's loop), these signals ``finish()`` the consumer: the
        delivery in hand is the program's to finish and ack, then iteration ends without taking another and what
        was claimed and not handed out goes back unmarked. A second signal stops at once (SystemExit, or
        KeyboardInterrupt for SIGINT). The handlers before are restored when iteration ends or on ``cancel()``.
        Returns the consumer: ``async for delivery in consumer.stop_on(signal.SIGTERM):``."""
        self._stop_signals = tuple(signal.Signals(signum).value for signum in signals)
        return self

    def _restore_signals(self) -> None:
        replaced, self._replaced = self._replaced, None
        if replaced:
            loop = asyncio.get_running_loop()
            for signum, handler in replaced.items():
                loop.remove_signal_handler(signum)
                signal.signal(signum, signal.SIG_DFL if handler is None else handler)


def _finish_on(consuming: AsyncConsuming, signals: tuple[int, ...]) -> dict[int, Any]:
    def on_signal(signum: int) -> None:
        if consuming.finishing:  # asked twice: stop now
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            raise SystemExit(128 + signum)
        consuming.finish()

    loop = asyncio.get_running_loop()
    replaced = {}
    for signum in signals:
        replaced[signum] = signal.getsignal(signum)
        loop.add_signal_handler(signum, on_signal, signum)
    return replaced

