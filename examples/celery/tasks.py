"""A Celery app on litemq: the broker is a file, ./celery.db (or the URL in $CELERY_BROKER_URL).

Start a worker in this directory, then send it tasks from another terminal:

    celery -A tasks worker --loglevel=INFO                  # terminal 1 (add -c 4 for four processes)
    python -c "import tasks; print(tasks.add.delay(2, 3).get(timeout=10))"      # terminal 2: prints 5
"""

import os
import time

import litemq.kombu  # noqa: F401  (lets kombu and Celery open litemq:// URLs)
from celery import Celery

app = Celery("tasks",
             broker=os.environ.get("CELERY_BROKER_URL", "litemq:///celery.db"),
             # Results come back as messages on the same broker (a reply queue per client). For results that
             # outlive the client, use a database backend: "db+sqlite:///celery-results.db" (pip install sqlalchemy).
             backend="rpc://")
app.conf.task_acks_late = True  # a task whose worker dies is run again by another worker


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task(bind=True, max_retries=3)
def fetch(self, url: str) -> str:
    """A task that retries after 2 seconds when it fails, up to three times."""
    try:
        if url.startswith("flaky:") and self.request.retries < 2:
            raise ConnectionError(url)
        return f"fetched {url}"
    except ConnectionError as exc:
        raise self.retry(exc=exc, countdown=2)


@app.task
def remind(text: str) -> str:
    """Send it with a countdown: remind.apply_async(("tea",), countdown=60) runs once, a minute later."""
    return f"{time.strftime('%H:%M:%S')} {text}"
