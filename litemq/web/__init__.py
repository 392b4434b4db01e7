"""``litemq web``: a management page like RabbitMQ's for a litemq file or PostgreSQL schema, a JSON API, and
``/metrics`` for Prometheus, as one WSGI app (``management_app``) that the standard library serves
(``litemq web``, ``serve``) or an application mounts (``mount`` for a WSGI one without its own dispatcher)."""

from .app import ManagementApp, management_app
from .serve import mount, serve

__all__ = ["ManagementApp", "management_app", "mount", "serve"]
