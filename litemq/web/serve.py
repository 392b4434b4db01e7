"""Serving the app with the standard library (a thread per request: a slow look never holds up the next), and
mounting it under a path of another WSGI application."""

from __future__ import annotations

import socketserver
import sys
from typing import Any, Callable, Iterable
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class QuietHandler(WSGIRequestHandler):
    """Logs errors only: the page polls every few seconds, and a line per poll would bury them."""

    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        if str(code).isdigit() and int(code) >= 400:
            super().log_request(code, size)


def make(app: WSGIApp, host: str, port: int) -> WSGIServer:
    return make_server(host, port, app, server_class=ThreadingServer, handler_class=QuietHandler)


def serve(app: WSGIApp, host: str = "127.0.0.1", port: int = 15672) -> None:
    """Serve until interrupted."""
    with make(app, host, port) as server:
        shown = f"[{host}]" if ":" in host else host
        print(f"litemq web: serving on http://{shown}:{server.server_port}/ (Ctrl-C stops)", file=sys.stderr,
              flush=True)
        server.serve_forever()


def mount(prefix: str, app: WSGIApp, fallback: WSGIApp) -> WSGIApp:
    """A WSGI app that sends requests under ``prefix`` (such as ``/litemq``) to ``app`` and the rest to
    ``fallback`` (a Django project's ``get_wsgi_application()``, say)."""
    prefix = "/" + prefix.strip("/")

    def dispatch(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == prefix or path.startswith(prefix + "/"):
            environ = dict(environ, SCRIPT_NAME=environ.get("SCRIPT_NAME", "") + prefix,
                           PATH_INFO=path[len(prefix):] or "/")
            return app(environ, start_response)
        return fallback(environ, start_response)

    return dispatch
