"""litemq's logger, "litemq". The logging module is imported when something is first logged: most processes never
log, and importing it costs each of them milliseconds.

What litemq logs: at DEBUG, what a person debugging wants to follow (a connection opened and closed, a schema
created or migrated, a dead connection cleaned up and what it held, leases that expired and went back); at INFO, a
file's schema upgraded; at WARNING, what needs attention (a dead connection's deliveries returned to be delivered
again, a request without reply_to); at ERROR, failures in background work and handlers. Nothing on the hot path
(publish, claim, ack) logs.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import logging


def logger() -> "logging.Logger":
    import logging

    return logging.getLogger("litemq")


def debug(message: str, *args: object) -> None:
    """Log at DEBUG without importing logging: a process that never imported it cannot have asked for DEBUG."""
    logging = sys.modules.get("logging")
    if logging is not None:
        log = logging.getLogger("litemq")
        if log.isEnabledFor(logging.DEBUG):
            log.debug(message, *args)
