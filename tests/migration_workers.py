"""Functions that spawned processes run for test_schema_and_migrations.py (spawn imports them by module name).

Each worker does its slow imports first, then waits at a barrier shared by all the workers, so that they reach the
file together and really race; it reports ("ok", value) or ("error", description) on the results queue.
"""

from __future__ import annotations

from typing import Any

BARRIER_TIMEOUT = 60.0


def upgrade_at_once(path: str, barrier: Any, results: Any) -> None:
    """Call migrate.upgrade(path) together with the other workers; report whether this call changed the file."""
    try:
        # Import everything upgrade() imports before the barrier, so the race is on the file, not on imports.
        import alembic.command  # noqa: F401
        import alembic.runtime.migration  # noqa: F401
        import alembic.script  # noqa: F401
        import sqlalchemy  # noqa: F401

        import litemq.store.schema  # noqa: F401
        from litemq.store import migrate

        barrier.wait(BARRIER_TIMEOUT)
        results.put(("ok", migrate.upgrade(path)))
    except BaseException as exc:  # reported to the test, which fails with it
        results.put(("error", f"{type(exc).__name__}: {exc}"))


def connect_at_once(path: str, barrier: Any, results: Any, index: int) -> None:
    """Open the file with litemq.connect together with the other workers, then publish one message and close."""
    try:
        import litemq

        barrier.wait(BARRIER_TIMEOUT)
        connection = litemq.connect(path)
        try:
            connection.declare_queue("race")
            reached = connection.publish("", "race", f"from worker {index}".encode())
        finally:
            connection.close()
        results.put(("ok", reached))
    except BaseException as exc:
        results.put(("error", f"{type(exc).__name__}: {exc}"))
