"""``litemq web`` in a real browser: headless Chromium (Debian's ``chromium`` package, driven by Playwright for
Python) on the page that ``litemq web`` serves as a process of its own, with real producer and consumer processes
on the broker. Skipped when Chromium or Playwright is missing, failed instead under LITEMQ_REQUIRE_SERVICES=1 (CI
installs Chromium: .ci/run).

The pages run the same code on either engine (the JSON API under them is tested on both in test_web.py), and each
browser test costs seconds: they run on SQLite only, which keeps the suite's time down.

With LITEMQ_WEB_SCREENSHOTS=DIR, the screenshots of the overview and of a queue's page are written there (the
README's come from ``LITEMQ_WEB_SCREENSHOTS=docs``); they are always written to the test's tmp_path.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest

import litemq
from web_helpers import start_web, wait_until
from web_workers import ack_steadily, hold_deliveries, publish_steadily

pytestmark = pytest.mark.sqlite_only

CHROMIUM = "/usr/bin/chromium"
WAIT = 20.0
WAIT_MS = int(WAIT * 1000)


def _unavailable(reason: str) -> None:
    if os.environ.get("LITEMQ_REQUIRE_SERVICES") == "1":
        pytest.fail(f"LITEMQ_REQUIRE_SERVICES=1 but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("Playwright for Python is not installed (pip install playwright)")
    if not os.access(CHROMIUM, os.X_OK):
        _unavailable(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    # bypass_csp: the page forbids eval, which Playwright's wait_for_function uses. With it off, the test of a queue
    # named like a script shows escaping alone keeps it text (the CSP header is test_web.py's to check).
    context = browser.new_context(viewport={"width": 1100, "height": 800}, bypass_csp=True)
    opened = context.new_page()
    opened.set_default_timeout(WAIT_MS)
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    dialogs: list[str] = []

    def answer(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.accept()

    opened.on("dialog", answer)
    opened.errors, opened.dialogs = errors, dialogs
    yield opened
    context.close()
    assert errors == [], errors  # no script error on any page


def _screenshot(page: Any, tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=True)
    wanted = os.environ.get("LITEMQ_WEB_SCREENSHOTS")
    if wanted:
        Path(wanted).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(wanted) / name)


def _says(locator: Any, text: str) -> None:
    """Wait until the element says ``text`` (an action's answer comes back after the click)."""
    from playwright.sync_api import expect

    expect(locator).to_have_text(text, timeout=WAIT_MS)


def _number(page: Any, selector: str) -> int:
    return int(page.locator(selector).inner_text())


def _ready(tmp_path: Path, name: str) -> None:
    wait_until(lambda: (tmp_path / f"ready-{name}").exists() or (tmp_path / "errors").exists(), WAIT,
               f"the {name} process to start")
    assert not (tmp_path / "errors").exists(), list((tmp_path / "errors").iterdir())


def test_every_page_shows_the_broker_and_follows_a_producer(
        db_path: str, conn: litemq.Connection, page: Any, processes: Any, popen: list[subprocess.Popen],
        subprocess_env: dict[str, str], tmp_path: Path) -> None:
    conn.declare_exchange("dlx", "fanout")
    conn.declare_queue("dead", durable=True)
    conn.bind_queue("dead", "dlx")
    conn.declare_queue("jobs", durable=True, arguments={"x-dead-letter-exchange": "dlx", "x-max-priority": 5,
                                                        "x-message-ttl": 600_000})
    conn.declare_exchange("events", "topic", durable=True)
    conn.bind_queue("jobs", "events", "job.*")
    for n in range(5):
        conn.publish("events", "job.new", f"job {n}", litemq.Properties(headers={"n": n}))
    for n in range(2):
        conn.publish("dlx", "", f"dead {n}")
    consumer = processes.start(hold_deliveries, db_path, "jobs", 2, str(tmp_path))
    _ready(tmp_path, "consumer")
    conn.declare_queue("stream", durable=True)
    processes.start(publish_steadily, db_path, "stream", 50, str(tmp_path))
    _ready(tmp_path, "producer")
    processes.start(ack_steadily, db_path, "stream", 20, str(tmp_path))  # slower: the queue still grows
    _ready(tmp_path, "acker")
    base = start_web(popen, subprocess_env, db_path, "--sample-seconds", "0.3")

    # Overview: the totals are the file's, and the chart draws once samples come in.
    page.goto(base + "/")
    assert _number(page, '[data-total="queues"]') == 3
    # The consumer's two, and the acker's one when the page reads between its get and its ack.
    assert _number(page, '[data-total="unacked"]') in (2, 3)
    page.wait_for_function("document.querySelectorAll('[data-chart=depths] polyline').length === 3")
    assert _number(page, '[data-total="connections"]') == 4  # this test's, the two consumers', the producer's
    page.wait_for_function("document.querySelector('[data-field=net_rate]').textContent.startsWith('+')"
                           " && document.querySelector('[data-field=net_rate]').textContent !== '+0.0/s'")
    if os.environ.get("LITEMQ_WEB_SCREENSHOTS"):  # a chart with some history for the README
        page.wait_for_function("document.querySelector('[data-chart=depths] polyline')"
                               ".getAttribute('points').split(' ').length >= 40")
    _screenshot(page, tmp_path, "web-overview.png")

    # Queues: a row per queue with the file's counts and its arguments as badges; filter and sort.
    page.goto(base + "/queues")
    page.wait_for_selector("#queues tbody tr >> text=stream")
    jobs = page.locator("#queues tbody tr", has_text="jobs")
    cells = jobs.locator("td").all_inner_texts()
    assert cells[0] == "jobs" and cells[2:6] == ["3", "2", "0", "1"]
    assert jobs.locator("span.badge").all_inner_texts() == ["D", "DLX dlx", "priority 5", "TTL 600000 ms"]
    page.fill("#filter", "ead")
    assert page.locator("#queues tbody tr:visible").all_inner_texts()[0].startswith("dead")
    assert page.locator("#queues tbody tr:visible").count() == 1
    page.fill("#filter", "")
    page.click("#queues th:has-text('ready')")  # the deepest first
    page.wait_for_function("document.querySelector('#queues tbody tr td').textContent === 'stream'")

    # A queue: its depth grows while the producer runs, its rates follow the producer and the acker, and so does
    # the chart.
    page.goto(base + "/queue?name=stream")
    first = _number(page, '[data-count="ready"]')
    page.wait_for_function(f"+document.querySelector('[data-count=ready]').textContent > {first}")
    for name in ("published", "delivered", "acked"):
        page.wait_for_function(f"parseFloat(document.querySelector('[data-rate=\"{name}/s\"]').textContent) > 0")
    page.wait_for_function("document.querySelectorAll('[data-chart=depths] polyline').length === 3")

    # The consumer's queue: bindings, the consumer with its pid and what it holds, messages browsed in order.
    page.goto(base + "/queue?name=jobs")
    assert "events" in page.locator("h2:has-text('Bindings') + table").inner_text()
    consumers = page.locator("h2:has-text('Consumers') + table tbody tr td").all_inner_texts()
    assert consumers[0] == "holder" and consumers[2] == str(consumer.pid) and consumers[-2:] == ["2", "yes"]
    bodies = page.locator("table.messages pre.body").all_inner_texts()
    assert bodies == ["job 2", "job 3", "job 4"]
    page.wait_for_function("document.querySelectorAll('[data-chart=depths] polyline').length === 3")
    _screenshot(page, tmp_path, "web-queue.png")

    # Connections and exchanges.
    page.goto(base + "/connections")
    row = page.locator("tbody tr", has_text=str(consumer.pid))
    assert "yes" in row.inner_text() and "holder on jobs" in row.inner_text()
    page.goto(base + "/exchanges")
    page.fill("#route input[name=exchange]", "events")
    page.fill("#route input[name=routing_key]", "job.done")
    page.click("#route button")
    _says(page.locator("#routed"), "jobs")


def test_publish_get_move_purge_and_delete_through_the_page(
        db_path: str, conn: litemq.Connection, page: Any, popen: list[subprocess.Popen],
        subprocess_env: dict[str, str]) -> None:
    conn.declare_queue("work")
    conn.declare_queue("dead")
    for n in range(3):
        conn.publish("", "dead", f"dead {n}")
    base = start_web(popen, subprocess_env, db_path)

    def count(queue: str) -> int:
        return conn.declare_queue(queue, passive=True).message_count

    page.goto(base + "/queue?name=work")
    publish = page.locator("form.action", has=page.locator("textarea"))
    publish.locator("textarea").fill("from the page")
    publish.locator("input[name=headers]").fill('{"source": "browser"}')
    publish.locator("button").click()
    _says(publish.locator("output"), "published to 1 queue(s)")
    assert count("work") == 1

    get = page.locator("form.action", has=page.locator("select[name=ackmode]"))
    get.locator("select").select_option("ack")
    get.locator("button").click()
    _says(get.locator("output pre.body"), "from the page")
    assert "got 1 message(s), ack" in get.locator("output").inner_text()
    assert count("work") == 0

    page.goto(base + "/queue?name=dead")
    move = page.locator("form.action", has=page.locator("input[name=destination]"))
    move.locator("input[name=destination]").fill("work")
    move.locator("input[name=confirm]").check()
    move.locator("button").click()
    _says(move.locator("output"), "moved 3 message(s)")
    assert page.dialogs[-1].startswith("Move the ready messages")  # destructive: asked first
    assert (count("dead"), count("work")) == (0, 3)

    page.goto(base + "/queue?name=work")
    purge = page.locator("form.action:has(button:text('Purge'))")
    purge.locator("input[name=confirm]").check()
    purge.locator("button").click()
    _says(purge.locator("output"), "purged 3 message(s)")
    assert count("work") == 0

    delete = page.locator("form.action:has(button:text('Delete'))")
    delete.locator("input[name=confirm]").check()
    delete.locator("button").click()
    page.wait_for_url(base + "/queues")
    assert conn.route("", "work") == []
    page.wait_for_selector("#queues tbody tr >> text=dead")
    assert page.locator("#queues tbody tr").all_inner_texts()[0].startswith("dead")
    assert page.locator("#queues tbody tr").count() == 1


def test_a_queue_named_like_a_script_is_shown_as_text(db_path: str, conn: litemq.Connection, page: Any,
                                                      popen: list[subprocess.Popen],
                                                      subprocess_env: dict[str, str]) -> None:
    name = "<script>alert('name')</script><img src=x onerror=alert('img')>"
    conn.declare_queue(name)
    conn.publish("", name, name, litemq.Properties(headers={name: name}))
    base = start_web(popen, subprocess_env, db_path, "--read-only")
    for path in ("/", "/queues", "/connections", "/exchanges"):
        page.goto(base + path)
    page.goto(base + "/queues")
    page.wait_for_selector("#queues tbody tr a")
    assert page.locator("#queues tbody tr a").inner_text() == name
    page.click("#queues tbody tr a")
    assert page.locator("h1").inner_text() == f"Queue {name}"
    assert page.locator("table.messages pre.body").inner_text() == name
    assert page.locator("form[method=post]").count() == 0  # read-only
    page.wait_for_timeout(300)  # a poll's worth: anything that would run has run
    assert page.dialogs == []  # no alert ran


def test_with_javascript_off_the_pages_read_and_the_forms_work(db_path: str, conn: litemq.Connection,
                                                               browser: Any, popen: list[subprocess.Popen],
                                                               subprocess_env: dict[str, str]) -> None:
    conn.declare_queue("work", arguments={"x-max-length": 10})
    for n in range(3):
        conn.publish("", "work", f"w{n}")
    base = start_web(popen, subprocess_env, db_path)
    context = browser.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        page.goto(base + "/")
        assert _number(page, '[data-total="ready"]') == 3
        page.goto(base + "/queues")
        assert page.locator("#queues tbody tr td").all_inner_texts()[:3] == ["work", "max 10", "3"]
        page.click("text=work")
        assert page.locator("table.messages pre.body").all_inner_texts() == ["w0", "w1", "w2"]
        purge = page.locator("form.action:has(button:text('Purge'))")
        purge.locator("input[name=confirm]").check()
        purge.locator("button").click()
        assert page.locator("#outcome").inner_text() == "Purged 3 message(s)."
        assert conn.declare_queue("work", passive=True).message_count == 0
    finally:
        context.close()
