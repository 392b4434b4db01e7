"""Storage: the only place SQL exists. ``contract`` is what the broker may ask of a store; ``open_store`` picks the
engine a URL names (``sqlite``, the stdlib-driver store of a file; ``postgres``, a PostgreSQL server); ``schema``
and ``migrate`` are the SQLAlchemy and Alembic side, imported only when a schema needs creating or upgrading."""

VERSION_TABLE = "litemq_alembic_version"
SCHEMA_REVISION = "0011"
"""The Alembic head this litemq writes; a file at this revision opens without importing SQLAlchemy."""

from .url import locate, open_store, resolve_path  # noqa: E402  (after the names the engines import from here)

__all__ = ["SCHEMA_REVISION", "VERSION_TABLE", "locate", "open_store", "resolve_path"]
