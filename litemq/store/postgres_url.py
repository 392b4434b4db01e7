"""A PostgreSQL server as a URL names it: ``postgresql://user:password@host:port/db?schema=NAME`` (or
``postgresql+psycopg://``, ``postgres://``). ``schema`` names the schema holding litemq's tables (``litemq`` by
default) and ``listen=0`` makes waiting consumers poll (the PostgreSQL store's option); both are taken out before the
rest goes to libpq, whose parameters the other query items are. What messages name is the URL without its password,
with the schema: never the password, wherever the URL carried it."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NamedTuple
else:
    from ..runtime_types import NamedTuple

SCHEMES = ("postgresql://", "postgresql+psycopg://", "postgres://")
LITEMQ_OPTIONS = ("schema", "listen")
DEFAULT_SCHEMA = "litemq"
MAX_IDENTIFIER_BYTES = 63  # PostgreSQL cuts longer names short (NAMEDATALEN - 1), and would use another schema


class ServerURL(NamedTuple):
    conninfo: str
    """For psycopg: the URL as libpq reads it (``postgresql://``, no ``schema``)."""
    schema: str
    where: str
    """For people: the server's URL without its password, and the schema."""
    listen: bool = True
    """Whether waiting consumers LISTEN (``listen=0``: they poll, as behind PgBouncer in transaction mode)."""


def is_postgresql(url: str) -> bool:
    return url.startswith(SCHEMES)


def parse(url: str) -> ServerURL:
    """The server and schema a ``postgresql://`` URL names; ValueError for a schema that cannot be one."""
    if not is_postgresql(url):
        raise ValueError(f"not a PostgreSQL URL: {url!r}")
    import urllib.parse  # here: every connection imports this module for SCHEMES, few parse a server's URL

    rest = url.split("://", 1)[1]
    parts = urllib.parse.urlsplit("postgresql://" + rest)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    schemas = [value for key, value in query if key == "schema"]
    if len(schemas) > 1:
        raise ValueError(f"the URL names the schema {len(schemas)} times: give schema= once")
    schema = schemas[0] if schemas else DEFAULT_SCHEMA
    if not schema or "\0" in schema or len(schema.encode("utf-8")) > MAX_IDENTIFIER_BYTES:
        raise ValueError(f"schema {schema!r} cannot be a PostgreSQL schema's name (1 to {MAX_IDENTIFIER_BYTES} bytes, "
                         "no NUL)")
    listen = dict(query).get("listen", "1").lower() not in ("0", "false", "no", "off")
    libpq = [(key, value) for key, value in query if key not in LITEMQ_OPTIONS]
    userinfo, _, host = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    shown = [(key, value) for key, value in libpq if key != "password"] + [("schema", schema)]
    return ServerURL(_url(parts.netloc, parts.path, libpq), schema, _url(f"{user}@{host}" if user else host,
                                                                       parts.path, shown), listen)


def _url(netloc: str, path: str, query: list[tuple[str, str]]) -> str:
    # Built by hand: urlunsplit drops the ``//`` of an empty host (``postgresql:///db``), which libpq needs.
    import urllib.parse

    encoded = urllib.parse.urlencode(query, quote_via=urllib.parse.quote, safe="/")
    return f"postgresql://{netloc}{path}" + (f"?{encoded}" if encoded else "")
