"""The management app: one WSGI callable serving the pages, the JSON API, ``/metrics`` and its own script and
style sheet. ``litemq web`` serves it with the standard library; an application mounts it as any WSGI app.

Safety, in the order a request meets it: the Host header (when ``allowed_hosts`` is set: ``litemq web`` on a
loopback address without a token, so a web page elsewhere cannot reach it by DNS rebinding); the token (when set:
``Authorization: Bearer TOKEN``, or HTTP basic auth with the token as password, which a browser asks for);
actions are POSTs only, refused in read-only mode, and carry the CSRF token (a form field, or the
``X-CSRF-Token`` header) with an Origin, when a browser sends one, of this host. Pages escape everything they show
and forbid inline script (Content-Security-Policy), so a queue named ``<script>`` is text.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
import urllib.parse
from importlib import resources
from typing import Any, Callable, Iterable, Optional

from ..errors import AccessRefused, LiteMQError, NotFound, PreconditionFailed, ResourceLocked, StorageError
from . import actions, metrics, pages
from .rates import Rates, Sample, counts_of
from .source import Source

StartResponse = Callable[..., Any]
Environ = dict[str, Any]

SECURITY_HEADERS = [
    ("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                                "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"),
    ("X-Content-Type-Options", "nosniff"),
    # same-origin, not no-referrer: under no-referrer a browser's form post says "Origin: null", which the check of
    # an action's origin must refuse.
    ("Referrer-Policy", "same-origin"),
    ("Cache-Control", "no-store"),
]
STATIC = {"app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"}
MAX_BODY = 1 << 20
MAX_BROWSE = 200
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")


class HTTPError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


REASONS = {200: "OK", 204: "No Content", 303: "See Other", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
           404: "Not Found", 405: "Method Not Allowed", 409: "Conflict", 413: "Payload Too Large",
           421: "Misdirected Request", 503: "Service Unavailable"}


class ManagementApp:
    """``management_app(url)``: the page for the broker at ``url`` (a file's path, ``sqlite:///path`` or a
    ``postgresql://`` URL; default ``$LITEMQ_URL``, else litemq.db).

    ``read_only`` serves no action; ``token`` makes every request prove it; ``secret`` keys the CSRF token (give
    the same one to every worker process of a server that runs several; by default the token, else random);
    ``allowed_hosts`` are the Host names it answers (None: any, for an app mounted behind another's checks)."""

    def __init__(self, url: Optional[str] = None, *, read_only: bool = False, token: Optional[str] = None,
                 secret: Optional[str] = None, allowed_hosts: Optional[Iterable[str]] = None,
                 sample_seconds: float = 5.0) -> None:
        self.source = Source(url)
        self.read_only = read_only
        self.token = token or None
        key = (secret or token or secrets.token_urlsafe(32)).encode("utf-8")
        self.csrf = hmac.new(key, b"litemq web csrf", hashlib.sha256).hexdigest()
        self.allowed_hosts = None if allowed_hosts is None else {h.lower() for h in allowed_hosts}
        self.rates = Rates(self._sample, interval=sample_seconds)

    def _sample(self) -> Sample:
        queues, connections, consumers, _ = self.source.snapshot()
        return Sample(time.time(), {q["name"]: counts_of(q) for q in queues}, connections, len(consumers))

    # --- WSGI
    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        base = environ.get("SCRIPT_NAME", "").rstrip("/")
        path = environ.get("PATH_INFO", "") or "/"
        query = dict(urllib.parse.parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True))
        accepts_json = "application/json" in environ.get("HTTP_ACCEPT", "")
        form_post = environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded")
        wants_json = accepts_json or (path.startswith("/api/") and not form_post)  # a form posted by hand: a page
        try:
            self._check_host(environ)
            self._check_token(environ)
            self.rates.start()
            if environ.get("REQUEST_METHOD", "GET") == "POST":
                return self._post(environ, start_response, path, query, base)
            if environ.get("REQUEST_METHOD", "GET") not in ("GET", "HEAD"):
                raise HTTPError(405, "only GET and POST")
            return self._get(start_response, path, query, base)
        except HTTPError as exc:
            headers = [("WWW-Authenticate", 'Basic realm="litemq", charset="UTF-8"')] if exc.status == 401 else []
            return self._error(start_response, exc.status, str(exc), wants_json, base, headers)
        except (ValueError, TypeError) as exc:
            return self._error(start_response, 400, str(exc), wants_json, base)
        except LiteMQError as exc:
            return self._error(start_response, _status_of(exc), str(exc), wants_json, base)

    def _check_host(self, environ: Environ) -> None:
        if self.allowed_hosts is None:
            return
        host = environ.get("HTTP_HOST", "")
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        if name.lower() not in self.allowed_hosts:
            raise HTTPError(421, f"this page answers to {', '.join(sorted(self.allowed_hosts))}, not {host!r}")

    def _check_token(self, environ: Environ) -> None:
        if self.token is None:
            return
        given = environ.get("HTTP_AUTHORIZATION", "")
        scheme, _, value = given.partition(" ")
        presented = ""
        if scheme.lower() == "bearer":
            presented = value.strip()
        elif scheme.lower() == "basic":
            try:
                presented = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")[2]
            except (ValueError, UnicodeDecodeError):
                presented = ""
        if not hmac.compare_digest(presented.encode("utf-8"), self.token.encode("utf-8")):
            raise HTTPError(401, "this page needs its token: as the password of basic auth, or a bearer token")

    # --- reads
    def _get(self, start_response: StartResponse, path: str, query: dict[str, str], base: str) -> Iterable[bytes]:
        if path.startswith("/static/"):
            name = path[len("/static/"):]
            if name not in STATIC:
                raise HTTPError(404, "no such file")
            data = resources.files(__package__).joinpath("static", name).read_bytes()
            return self._respond(start_response, 200, STATIC[name], data)
        if path == "/favicon.ico":
            return self._respond(start_response, 204, "image/x-icon", b"")
        if path == "/metrics":
            return self._respond(start_response, 200, metrics.CONTENT_TYPE, self.metrics().encode("utf-8"))
        api = API_READS.get(path)
        if api is not None:
            return self._json(start_response, 200, api(self, query))
        page = pages.PAGES.get(path)
        if page is None:
            raise HTTPError(404, f"no page {path!r}")
        html = page(self, query, self._frame(base))
        return self._respond(start_response, 200, "text/html; charset=utf-8", html.encode("utf-8"))

    def _frame(self, base: str) -> pages.Frame:
        poll_ms = int(min(5.0, max(0.25, self.rates.interval)) * 1000)
        return pages.Frame(base=base, csrf=self.csrf, read_only=self.read_only, where=self.source.where,
                           poll_ms=poll_ms)

    def overview(self, query: dict[str, str]) -> dict[str, Any]:
        queues, connections, consumers, sizes = self.source.snapshot(sizes=True)
        totals = {"queues": len(queues), "ready": sum(q["ready"] for q in queues),
                  "unacked": sum(q["unacked"] for q in queues), "delayed": sum(q["delayed"] for q in queues),
                  "connections": connections, "consumers": len(consumers)}
        return {"where": self.source.where, "engine": self.source.engine, "read_only": self.read_only,
                "totals": totals, "sizes": sizes, "series": self.rates.series(),
                "rates": self.rates.total_rates()}

    def queues(self, query: dict[str, str]) -> list[dict[str, Any]]:
        rates = self.rates.latest()
        return [{**q, "badges": pages.badges(q), "rates": rates.get(q["name"])} for q in self.source.queues()]

    def queue(self, query: dict[str, str]) -> dict[str, Any]:
        name = _required(query, "name")
        browse = _number(query, "browse", 0, MAX_BROWSE)
        found = self.source.queue(name, browse)
        found["badges"] = pages.badges(found)
        found["rates"] = self.rates.latest().get(name)
        found["series"] = self.rates.series(name)
        return found

    def route(self, query: dict[str, str]) -> dict[str, Any]:
        headers = json.loads(query["headers"]) if query.get("headers") else None
        if headers is not None and not isinstance(headers, dict):
            raise ValueError("headers must be a JSON object")
        exchange = query.get("exchange", "")
        exchange = "" if exchange == "amq.default" else exchange
        return {"exchange": exchange, "routing_key": query.get("routing_key", ""),
                "queues": self.source.route(exchange, query.get("routing_key", ""), headers)}

    def metrics(self) -> str:
        queues, connections, consumers, sizes = self.source.snapshot(sizes=True)
        return metrics.render(queues, connections, len(consumers), sizes)

    # --- actions
    def _post(self, environ: Environ, start_response: StartResponse, path: str, query: dict[str, str],
              base: str) -> Iterable[bytes]:
        action = API_ACTIONS.get(path)
        if action is None:
            raise HTTPError(404, f"no action {path!r}")
        if self.read_only:
            raise HTTPError(403, "this page is read-only (--read-only): it takes no action")
        form, is_form = _body(environ)
        presented = environ.get("HTTP_X_CSRF_TOKEN") or form.get("csrf") or ""
        if not isinstance(presented, str) or not hmac.compare_digest(presented.encode(), self.csrf.encode()):
            raise HTTPError(403, "the CSRF token is missing or wrong: reload the page")
        origin = environ.get("HTTP_ORIGIN")
        if origin and urllib.parse.urlsplit(origin).netloc != environ.get("HTTP_HOST"):
            raise HTTPError(403, f"an action from another site ({origin}) is refused")
        if is_form and path in CONFIRMED and form.get("confirm") not in ("yes", "on"):
            raise HTTPError(400, "tick the box to confirm: this cannot be undone")
        result = action(self, query, form)
        if is_form and "application/json" not in environ.get("HTTP_ACCEPT", ""):
            # a form posted without JavaScript: the outcome as a page
            html = pages.outcome(path, query, result, self._frame(base))
            return self._respond(start_response, 200, "text/html; charset=utf-8", html.encode("utf-8"))
        return self._json(start_response, 200, result)

    # --- responses
    def _respond(self, start_response: StartResponse, status: int, content_type: str, data: bytes,
                 extra: Iterable[tuple[str, str]] = ()) -> list[bytes]:
        start_response(f"{status} {REASONS.get(status, '')}",
                       [("Content-Type", content_type), ("Content-Length", str(len(data))), *SECURITY_HEADERS,
                        *extra])
        return [data]

    def _json(self, start_response: StartResponse, status: int, value: Any) -> list[bytes]:
        data = json.dumps(value, default=str, ensure_ascii=True).encode("ascii")
        return self._respond(start_response, status, "application/json", data)

    def _error(self, start_response: StartResponse, status: int, message: str, wants_json: bool, base: str,
               extra: Iterable[tuple[str, str]] = ()) -> list[bytes]:
        if wants_json:
            data = json.dumps({"error": message, "status": status}).encode("ascii")
            return self._respond(start_response, status, "application/json", data, extra)
        html = pages.error_page(status, message, base)
        return self._respond(start_response, status, "text/html; charset=utf-8", html.encode("utf-8"), extra)


def _status_of(exc: LiteMQError) -> int:
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, AccessRefused):
        return 403
    if isinstance(exc, (ResourceLocked, PreconditionFailed)):
        return 409
    if isinstance(exc, StorageError):
        return 503
    return 400


def _required(query: dict[str, Any], key: str) -> str:
    value = query.get(key)
    if not isinstance(value, str):
        raise ValueError(f"{key} is missing")
    return value


def _number(query: dict[str, str], key: str, default: int, most: int) -> int:
    text = query.get(key)
    if not text:
        return default
    if not text.isdigit():
        raise ValueError(f"{key} must be a whole number")
    return min(int(text), most)


def _body(environ: Environ) -> tuple[dict[str, Any], bool]:
    """The posted fields, and whether they came from a form (rather than JSON)."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise HTTPError(400, "bad Content-Length") from None
    if length > MAX_BODY:
        raise HTTPError(413, f"at most {MAX_BODY} bytes")
    data = environ["wsgi.input"].read(length) if length else b""
    kind = environ.get("CONTENT_TYPE", "").split(";")[0].strip().lower()
    if kind == "application/json":
        value = json.loads(data or b"{}")
        if not isinstance(value, dict):
            raise ValueError("the body must be a JSON object")
        return value, False
    if kind in ("application/x-www-form-urlencoded", ""):
        return dict(urllib.parse.parse_qsl(data.decode("utf-8"), keep_blank_values=True)), kind != ""
    raise HTTPError(400, f"post JSON or a form, not {kind}")


def _in_queue(action: Callable[..., dict[str, Any]]) -> Callable[[ManagementApp, dict[str, str], dict[str, Any]],
                                                                   dict[str, Any]]:
    def run(app: ManagementApp, query: dict[str, str], form: dict[str, Any]) -> dict[str, Any]:
        return action(app.source, _required(query, "name"), form)
    return run


API_READS: dict[str, Callable[[ManagementApp, dict[str, str]], Any]] = {
    "/api/overview": ManagementApp.overview,
    "/api/queues": ManagementApp.queues,
    "/api/queue": ManagementApp.queue,
    "/api/exchanges": lambda app, query: app.source.exchanges(),
    "/api/connections": lambda app, query: app.source.connections(),
    "/api/route": ManagementApp.route,
}
API_ACTIONS: dict[str, Callable[[ManagementApp, dict[str, str], dict[str, Any]], dict[str, Any]]] = {
    "/api/publish": lambda app, query, form: actions.publish(app.source, form),
    "/api/queue/get": _in_queue(actions.get),
    "/api/queue/move": _in_queue(actions.move),
    "/api/queue/purge": _in_queue(lambda source, name, form: actions.purge(source, name)),
    "/api/queue/delete": _in_queue(actions.delete),
}
CONFIRMED = ("/api/queue/move", "/api/queue/purge", "/api/queue/delete")


def management_app(url: Optional[str] = None, **options: Any) -> ManagementApp:
    """The management page for the broker at ``url`` as a WSGI app (see ManagementApp for the options)."""
    return ManagementApp(url, **options)
