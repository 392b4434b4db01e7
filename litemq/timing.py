"""Time in litemq: the one wall clock, durations checked at the API's edge, and how often a waiter looks by itself
for what nothing announced."""

from __future__ import annotations

import math
import time

SWEEP_SECONDS = 0.025
"""How often a waiting connection checks whether the other connections live when it cannot watch them all."""
RECHECK_SECONDS = 1.0
"""How often a waiting consumer looks at the broker anyway, for what no doorbell or watch announced."""


def clock() -> float:
    """Now, in UTC seconds: the one place litemq reads wall time (freezegun moves it in tests)."""
    return time.time()


def check_seconds(what: str, value: object, *, positive: bool = False, forever: bool = False) -> None:
    """A number of seconds, or None for the caller's default: not NaN, not negative (nor 0 when ``positive``), and
    infinite only where that means waiting forever (a timeout; never a lease or a delay, which would not end)."""
    if value is None:
        return
    seconds = value if not isinstance(value, bool) and isinstance(value, (int, float)) else math.nan
    if not (seconds > 0 if positive else seconds >= 0) or (seconds == math.inf and not forever):
        kind = "a positive number of seconds" if positive else "a number of seconds, 0 or more"
        raise ValueError(f"{what} must be {kind}{'' if forever else ' (finite)'}, got {value!r}")
