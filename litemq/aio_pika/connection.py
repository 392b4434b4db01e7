"""aio-pika's ``connect`` and ``connect_robust`` over ``litemq.aio``.

Host, port, login, password, virtual host, SSL and the other network arguments are accepted and ignored, and so is
an ``amqp://`` URL: litemq opens ``$LITEMQ_URL``, else ``litemq.db`` in the working directory. A ``sqlite:///`` or
``postgresql://`` URL (or a plain path) names the store instead. A litemq connection does not drop, so the robust
one is the same connection."""

from __future__ import annotations

from typing import Any, Optional

from .. import aio
from .channel import Connection


async def connect(url: Optional[str] = None, *, host: str = "localhost", port: int = 5672, login: str = "guest",
                  password: str = "guest", virtualhost: str = "/", ssl: bool = False, loop: Any = None,
                  ssl_options: Any = None, timeout: Any = None, client_properties: Any = None,
                  connection_class: Any = None, **kwargs: Any) -> Connection:
    if url is not None and not isinstance(url, str):
        url = str(url)  # a yarl.URL, as aio-pika takes
    store = None if url is None or url.startswith(("amqp://", "amqps://")) else url
    return Connection(await aio.connect(store))


connect_robust = connect
