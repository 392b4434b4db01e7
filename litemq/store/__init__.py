"""Storage: the only place SQL exists. ``sqlite`` is the stdlib-driver store; ``schema`` and ``migrate`` are
the SQLAlchemy and Alembic side, imported only when a file needs creating or upgrading."""

VERSION_TABLE = "litemq_alembic_version"
SCHEMA_REVISION = "0008"
"""The Alembic head this litemq writes; a file at this revision opens without importing SQLAlchemy."""
