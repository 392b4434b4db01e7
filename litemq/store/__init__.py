"""Storage: the only place SQL exists. ``contract`` is what the broker may ask of a store; ``open_store`` picks the
engine a URL names (``sqlite``, the stdlib-driver store of a file; ``postgres``, a PostgreSQL server); ``schema``
and ``migrate`` are the SQLAlchemy and Alembic side, imported only when a schema needs creating or upgrading."""

VERSION_TABLE = "litemq_alembic_version"
SCHEMA_REVISION = "0013"
"""The Alembic head this litemq writes; a file at this revision opens without importing SQLAlchemy."""

QUEUE_HINTS_KEPT = 1024
"""How many queues each of a store's hints holds (queues seen with arguments, with consumers ...)."""


def remember(hints: dict[str, None], queue: str) -> None:
    """Add ``queue`` to one of a store's hints, which starts again when full: a hint only spares a try."""
    if len(hints) >= QUEUE_HINTS_KEPT:
        hints.clear()
    hints[queue] = None


from .url import locate, open_store, resolve_path  # noqa: E402  (after the names the engines import from here)

__all__ = ["SCHEMA_REVISION", "VERSION_TABLE", "locate", "open_store", "resolve_path"]
