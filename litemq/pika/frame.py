"""pika's frame wrapper: synchronous calls return a ``Method`` frame whose ``method`` holds the reply."""

from __future__ import annotations

from typing import Generic, TypeVar

M = TypeVar("M")


class Method(Generic[M]):
    def __init__(self, channel_number: int, method: M) -> None:
        self.channel_number = channel_number
        self.method = method

    def __repr__(self) -> str:
        return f"<METHOD(['channel_number={self.channel_number}', 'frame_type=1', 'method={self.method!r}'])>"
