"""Rates without an event log: the page samples what the store counts every few seconds, in a background thread of
its own, and keeps the last minutes of samples. Per queue a sample holds the depths (ready, unacked, delayed) and
the store's cumulative totals (published, delivered, redelivered, acked: migration 0010), so a rate is the change
of a total between two samples over the time between them, and a restart of the page loses nothing but the charts'
history. Memory is bounded (``KEEP`` samples, each of the queues there were).
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
DEPTHS = ("ready", "unacked", "delayed")
TOTALS = ("published", "delivered", "redelivered", "acked")
Counts = tuple[int, ...]  # DEPTHS then TOTALS


class Sample:
    __slots__ = ("at", "queues", "connections", "consumers")

    def __init__(self, at: float, queues: dict[str, Counts], connections: int, consumers: int) -> None:
        self.at = at
        self.queues = queues
        self.connections = connections
        self.consumers = consumers

    def counts(self, queue: Optional[str]) -> Optional[Counts]:
        """One queue's counts, or every queue's added up (None: no such queue in this sample)."""
        if queue is not None:
            return self.queues.get(queue)
        return tuple(sum(column) for column in zip(*self.queues.values())) or (0,) * (len(DEPTHS) + len(TOTALS))


def counts_of(queue: dict[str, Any]) -> Counts:
    """A queue as the source reads it, as a sample keeps it."""
    return (*(queue[name] for name in DEPTHS), *(queue["totals"][name] for name in TOTALS))


def _rates(before: Counts, after: Counts, seconds: float) -> dict[str, Optional[float]]:
    rates: dict[str, Optional[float]] = {}
    for i, name in enumerate(TOTALS, start=len(DEPTHS)):
        change = after[i] - before[i]
        rates[name] = change / seconds if change >= 0 else None  # the queue was deleted and declared again
    rates["net"] = (sum(after[:len(DEPTHS)]) - sum(before[:len(DEPTHS)])) / seconds
    return rates


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
    def latest(self) -> dict[str, dict[str, Optional[float]]]:
        """Per queue, its rates between the last two samples: published, delivered, redelivered, acked and net
        (how fast its depth grows), per second."""
        last = self.samples()[-2:]
        if len(last) < 2 or last[1].at <= last[0].at:
            return {}
        (before, after), seconds = last, last[1].at - last[0].at
        return {name: _rates(before.queues[name], now, seconds)
                for name, now in after.queues.items() if name in before.queues}

    def total_rates(self) -> dict[str, Optional[float]]:
        """The rates of all queues together (None when there are fewer than two samples)."""
        last = self.samples()[-2:]
        if len(last) < 2 or last[1].at <= last[0].at:
            return {name: None for name in (*TOTALS, "net")}
        before, after = (sample.counts(None) for sample in last)
        return _rates(before, after, last[1].at - last[0].at)  # type: ignore[arg-type]

    def series(self, queue: Optional[str] = None) -> dict[str, Any]:
        """Over the kept samples, of one queue or of all together: times, the depths at each, and each total's
        rate since the sample before (None for the first, or across a queue declared again)."""
        found: dict[str, list[Any]] = {name: [] for name in ("times", *DEPTHS, *TOTALS)}
        previous: Optional[tuple[float, Counts]] = None
        for sample in self.samples():
            counts = sample.counts(queue)
            if counts is None:
                previous = None
                continue
            found["times"].append(round(sample.at, 3))
            for i, name in enumerate(DEPTHS):
                found[name].append(counts[i])
            rates = _rates(previous[1], counts, sample.at - previous[0]) if previous and sample.at > previous[0] \
                else {}
            for name in TOTALS:
                value = rates.get(name)
                found[name].append(None if value is None else round(value, 2))
            previous = (sample.at, counts)
        return {"interval": self.interval, **found}
