"""litemq's logger, "litemq". The logging module is imported when something is first logged: most processes never
log, and importing it costs each of them milliseconds."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import logging


def logger() -> "logging.Logger":
    import logging

    return logging.getLogger("litemq")
