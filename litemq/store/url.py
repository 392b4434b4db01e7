"""Choosing the store from what a connection names: a path or ``sqlite:///path`` is an SQLite file, a
``postgresql://`` (or ``postgresql+psycopg://``) URL a PostgreSQL server. The engine's module is imported only
when it is chosen: opening a file never imports a PostgreSQL driver, nor SQLAlchemy.

Options by engine: ``synchronous``, ``busy_timeout`` and ``share_with_group`` are SQLite's (how hard a commit is,
how long a writer waits for the file's lock, the mode of a new file); the PostgreSQL store takes what it documents
(the server's URL says the rest: ``schema=NAME`` in its query names litemq's schema, ``litemq`` by default).
"""

from __future__ import annotations

import os

from .contract import Store
from .postgres_url import SCHEMES as POSTGRESQL_SCHEMES  # one list: the store, the command and this choice

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

Url = str | os.PathLike[str] | None


def locate(url: Url) -> str:
    """What a connection opens: the absolute path of a file, or a PostgreSQL server's URL as given; by default
    ``$LITEMQ_URL``, else litemq.db in the working directory."""
    url = _given(url)
    if url.startswith(POSTGRESQL_SCHEMES):
        return url
    return _path(url, "litemq opens SQLite files (a path or sqlite:///path) and PostgreSQL servers "
                      "(postgresql://...)")


def resolve_path(url: Url) -> str:
    """The file a connection opens: a plain path or ``sqlite:///path``; default ``$LITEMQ_URL``, else litemq.db.

    A path is a path: what follows ``sqlite:///`` is taken as it is (``sqlite:///rel.db`` is relative,
    ``sqlite:////abs.db`` absolute), and nothing in it is parsed as a URL: no ``?`` query, no ``%xx`` decoding."""
    return _path(_given(url), "litemq opens SQLite files (a path or sqlite:///path)")


def open_store(url: Url, **options: Any) -> Store:
    """Open the store ``url`` names (see ``locate``), with the options of its engine."""
    where = locate(url)
    if where.startswith(POSTGRESQL_SCHEMES):
        try:
            from .postgres import PostgresStore  # type: ignore[import-not-found, unused-ignore]
        except ImportError as exc:
            if exc.name is not None and exc.name.split(".")[0] == "psycopg":
                raise ImportError("litemq's PostgreSQL store needs psycopg: pip install 'litemq[postgresql]'",
                                  name=exc.name) from exc
            raise ImportError(f"this litemq cannot open {where.split('://')[0]}:// URLs: its PostgreSQL store "
                              f"did not load ({exc})", name=exc.name) from exc
        store: Store = PostgresStore(where, **options)
        return store
    from .sqlite import SQLiteStore

    return SQLiteStore(where, **options)


def _given(url: Url) -> str:
    if url is None:
        url = os.environ.get("LITEMQ_URL") or "litemq.db"
    if not isinstance(url, (str, os.PathLike)):
        raise TypeError(f"litemq opens a path or an sqlite:/// URL (a file), or a postgresql:// URL (a server), "
                        f"not {type(url).__name__}")
    return os.fspath(url)


def _path(url: str, what: str) -> str:
    if url.startswith("sqlite:///"):
        url = url[len("sqlite:///"):]
    elif "://" in url:
        raise ValueError(f"{what}, not {url!r}")
    if not url or url == ":memory:":
        raise ValueError("litemq needs a file that other processes can open, not an in-memory database")
    return os.path.abspath(url)
