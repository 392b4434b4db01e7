"""litemq's logger, "litemq". The logging module is imported when something is first logged: most processes never
log, and importing it costs each of them milliseconds.

What litemq logs: at DEBUG, what a person debugging wants to follow (a connection opened and closed, a schema
created, a dead connection that held nothing cleaned up, leases that expired and went back); at INFO, a file's
schema upgraded, and a dead connection's deliveries returned to their queues; at WARNING, what needs attention (a
consumer cancelled because its queue was deleted, a request without reply_to): Python prints WARNING and above on
stderr when logging is not set up, so nothing that is part of normal operation goes there. At ERROR, failures in
background work and handlers. Nothing on the hot path (publish, claim, ack) logs.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False

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
