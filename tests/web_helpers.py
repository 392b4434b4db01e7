"""What the tests of ``litemq web`` share: calling the WSGI app in-process, and starting ``litemq web`` as a real
process on a free port (stopped by pid by the ``popen`` fixture)."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import time
import urllib.parse
from typing import Any, NamedTuple, Optional

START_SECONDS = 20.0


class Reply(NamedTuple):
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")


def call(app: Any, method: str, path: str, query: Optional[dict[str, Any]] = None, *, json_body: Any = None,
         form: Optional[dict[str, Any]] = None, headers: Optional[dict[str, str]] = None,
         script_name: str = "") -> Reply:
    """One request to the WSGI app, as a server would pass it."""
    data = b""
    environ: dict[str, Any] = {"REQUEST_METHOD": method, "SCRIPT_NAME": script_name, "PATH_INFO": path,
                               "QUERY_STRING": urllib.parse.urlencode(query or {}), "SERVER_NAME": "127.0.0.1",
                               "SERVER_PORT": "15672", "HTTP_HOST": "127.0.0.1:15672", "wsgi.url_scheme": "http"}
    if json_body is not None:
        data = json.dumps(json_body).encode()
        environ["CONTENT_TYPE"] = "application/json"
    elif form is not None:
        data = urllib.parse.urlencode(form).encode()
        environ["CONTENT_TYPE"] = "application/x-www-form-urlencoded"
    environ["CONTENT_LENGTH"] = str(len(data))
    environ["wsgi.input"] = io.BytesIO(data)
    for key, value in (headers or {}).items():
        environ["HTTP_" + key.upper().replace("-", "_")] = value
    started: list[Any] = []
    chunks = app(environ, lambda status, response_headers, exc_info=None: started.append((status, response_headers)))
    body = b"".join(chunks)
    status, response_headers = started[0]
    return Reply(int(status.split()[0]), dict(response_headers), body)


def csrf_of(app: Any) -> dict[str, str]:
    """The header an action needs, as the page's script sends it."""
    return {"X-CSRF-Token": app.csrf}


def start_web(popen: list[subprocess.Popen], env: dict[str, str], db: str, *options: str) -> str:
    """``litemq --db DB web --port 0 OPTIONS`` in a process of its own; its base URL once it serves."""
    process = subprocess.Popen([sys.executable, "-m", "litemq", "--db", db, "web", "--port", "0", *options],
                               env=env, stderr=subprocess.PIPE, text=True)
    popen.append(process)
    deadline = time.monotonic() + START_SECONDS
    assert process.stderr is not None
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        found = re.search(r"serving on (http://\S+/)", line)
        if found:
            return found.group(1).rstrip("/")
        if not line and process.poll() is not None:
            raise AssertionError(f"litemq web exited with {process.returncode} before serving")
    raise AssertionError(f"litemq web did not serve within {START_SECONDS} s")


def wait_until(condition: Any, timeout: float, what: str) -> Any:
    """Poll ``condition()`` until it returns something true, for at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what} (last: {value!r})")
        time.sleep(0.05)


def publish_redeliver_and_ack(conn: Any, queue: str) -> None:
    """One publish, then the queue's head delivered, nacked back, delivered again (a redelivery) and acked: what
    the migration tests of the queues' totals count (published 1, delivered 2, redelivered 1, acked 1)."""
    conn.publish("", queue, b"three")
    first = conn.get(queue)
    assert first is not None
    first.nack(requeue=True)
    again = conn.get(queue)
    assert again is not None and again.redelivered
    again.ack()
