"""Rates without an event log: the page samples what the store counts (per queue: ready, unacked, delayed,
consumers) every few seconds, in a background thread of its own, and keeps the last minutes of samples.

litemq keeps no cumulative published, delivered or acked counters, so what a sample can tell is how the depths
move: a queue's **net rate** (messages per second its ready + unacked + delayed changed by) and its depth over
time, which is what a stuck or draining queue shows. Memory is bounded (``KEEP`` samples, each of the queues there
were), and a restart of the page starts its charts afresh; the depths themselves are always the store's.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any, Callable, Optional

log = logging.getLogger("litemq.web")

INTERVAL = 5.0
"""Seconds between samples."""
KEEP = 120
"""Samples kept: ten minutes at the default interval."""


class Sample:
    __slots__ = ("at", "queues", "connections", "consumers")

    def __init__(self, at: float, queues: dict[str, tuple[int, int, int]], connections: int, consumers: int) -> None:
        self.at = at
        self.queues = queues  # name: (ready, unacked, delayed)
        self.connections = connections
        self.consumers = consumers


class Rates:
    """The samples, taken by a daemon thread started at the first look (so an app that is only imported or
    mounted and never asked starts nothing)."""

    def __init__(self, take: Callable[[], Sample], interval: float = INTERVAL, keep: int = KEEP) -> None:
        self._take = take
        self.interval = interval
        self._samples: deque[Sample] = deque(maxlen=keep)
        self._lock = threading.Lock()
        self._thread: Optional[threading.Thread] = None
        self._stop = threading.Event()

    def start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, name="litemq-web-rates", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self.sample()
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def sample(self) -> None:
        try:
            taken = self._take()
        except Exception as exc:  # a file briefly unreadable, a server restarting: the next sample tries again
            log.warning("litemq web: a sample failed: %s", exc)
            return
        with self._lock:
            self._samples.append(taken)

    def samples(self) -> list[Sample]:
        with self._lock:
            return list(self._samples)

    # --- what the pages show
    def net_rates(self) -> dict[str, float]:
        """Per queue, messages per second its depth changed by between the last two samples."""
        last = self.samples()[-2:]
        if len(last) < 2 or last[1].at <= last[0].at:
            return {}
        (before, after), elapsed = last, last[1].at - last[0].at
        return {name: (sum(now) - sum(before.queues.get(name, (0, 0, 0)))) / elapsed
                for name, now in after.queues.items()}

    def series(self, queue: Optional[str] = None) -> dict[str, Any]:
        """Times and ready, unacked, delayed over the kept samples: of one queue, or the totals."""
        samples = self.samples()
        times, ready, unacked, delayed = [], [], [], []
        for sample in samples:
            if queue is None:
                counts = [sum(column) for column in zip(*sample.queues.values())] or [0, 0, 0]
            elif queue in sample.queues:
                counts = list(sample.queues[queue])
            else:
                continue
            times.append(round(sample.at, 3))
            ready.append(counts[0])
            unacked.append(counts[1])
            delayed.append(counts[2])
        return {"interval": self.interval, "times": times, "ready": ready, "unacked": unacked, "delayed": delayed}
