"""The pages, rendered on the server so they read with JavaScript off; the script (static/app.js) polls the JSON
API to keep the numbers and charts current. Every value from the broker goes through ``h`` (names, keys, bodies
and headers are whatever a publisher wrote). Each page takes the app (app.ManagementApp, which imports this
module: typed Any here), the query and the frame."""

from __future__ import annotations

import datetime
import html
import json
import urllib.parse
from typing import Any, Callable, Iterable, NamedTuple, Optional

from ..errors import LiteMQError
from .actions import ACK_MODES

BROWSE = 20


class Frame(NamedTuple):
    base: str
    csrf: str
    read_only: bool
    where: str
    poll_ms: int = 5000  # how often the script asks again: no more often than the samples change


def h(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def link(frame: Frame, path: str, **query: str) -> str:
    return h(frame.base + path + ("?" + urllib.parse.urlencode(query) if query else ""))


def shown_json(value: Any) -> str:
    return json.dumps(value, default=str, ensure_ascii=False, indent=1) if value else ""


def when(epoch: Any) -> str:
    if epoch is None:
        return ""
    if isinstance(epoch, str):
        return epoch
    return datetime.datetime.fromtimestamp(float(epoch), datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def badges(queue: dict[str, Any]) -> list[str]:
    """A queue's flags and arguments as short labels (RabbitMQ's 'Features' column)."""
    args = queue.get("arguments") or {}
    found = []
    for flag, text in (("durable", "D"), ("exclusive", "exclusive"), ("auto_delete", "auto-delete")):
        if queue.get(flag):
            found.append(text)
    labels = {"x-queue-type": lambda v: v if v != "classic" else None,
              "x-message-ttl": lambda v: f"TTL {v} ms", "x-expires": lambda v: f"expires {v} ms",
              "x-dead-letter-exchange": lambda v: f"DLX {v or '(default)'}",
              "x-dead-letter-routing-key": lambda v: f"DLK {v}",
              "x-max-length": lambda v: f"max {v}", "x-max-length-bytes": lambda v: f"max {v} B",
              "x-overflow": lambda v: v, "x-max-priority": lambda v: f"priority {v}",
              "x-delivery-limit": lambda v: f"delivery limit {v}",
              "x-single-active-consumer": lambda v: "SAC" if v else None}
    for key, value in args.items():
        label = labels.get(key, lambda v, key=key: f"{key}={v}")(value)
        if label:
            found.append(label)
    return found


def _badges(queue: dict[str, Any]) -> str:
    return " ".join(f'<span class="badge">{h(b)}</span>' for b in badges(queue))


RATES = ("published", "delivered", "redelivered", "acked")


def rate(value: Optional[float], signed: bool = False) -> str:
    return "" if value is None else (f"{value:+.1f}/s" if signed else f"{value:.1f}/s")


def rate_cells(rates: Optional[dict[str, Optional[float]]]) -> list[str]:
    """A queue's published, delivered and acked per second, and how fast its depth grows (net)."""
    rates = rates or {}
    return [h(rate(rates.get(name))) for name in ("published", "delivered", "acked")] + \
        [h(rate(rates.get("net"), signed=True))]


RATE_COLUMNS = ("published/s", "delivered/s", "acked/s", "net/s")


def layout(frame: Frame, title: str, active: str, body: str, page: str, data: Optional[dict[str, str]] = None
           ) -> str:
    nav = "".join(f'<a href="{link(frame, path)}"{" class=active" if path == active else ""}>{h(text)}</a>'
                  for path, text in (("/", "Overview"), ("/queues", "Queues"), ("/exchanges", "Exchanges"),
                                     ("/connections", "Connections")))
    attributes = "".join(f' data-{h(k)}="{h(v)}"' for k, v in (data or {}).items())
    mode = '<span class="badge ro">read-only</span>' if frame.read_only else ""
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{h(title)} · litemq</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<meta name="litemq-base" content="{h(frame.base)}"><meta name="litemq-csrf" content="{h(frame.csrf)}">'
            f'<meta name="litemq-poll" content="{frame.poll_ms}">'
            f'<link rel="stylesheet" href="{link(frame, "/static/style.css")}">'
            f'<script src="{link(frame, "/static/app.js")}" defer></script></head>'
            f'<body data-page="{h(page)}"{attributes}><header><strong>litemq</strong><nav>{nav}</nav>'
            f'<span class="where">{h(frame.where)} {mode}</span></header><main><h1>{h(title)}</h1>{body}</main>'
            f'<footer>Numbers refresh every few seconds with JavaScript on; reload the page otherwise.</footer>'
            f'</body></html>')


def table(headers: Iterable[str], rows: Iterable[Iterable[str]], attrs: str = "") -> str:
    names = list(headers)
    head = "".join(f"<th>{h(name)}</th>" for name in names)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    if not body and "sortable" not in attrs:  # (the queues table's script fills it in)
        body = f'<tr class="none"><td colspan="{len(names)}">none</td></tr>'
    return f"<table{attrs}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def cards(values: dict[str, Any], group: str) -> str:
    return '<div class="cards">' + "".join(
        f'<div class="card"><span class="value" data-{group}="{h(k)}">{h(v)}</span><span class="label">{h(k)}'
        f'</span></div>' for k, v in values.items()) + "</div>"


def chart(kind: str) -> str:
    """An empty chart the script draws: the depths (``depths``) or the rates (``rates``) over the samples."""
    names = ("ready", "unacked", "delayed") if kind == "depths" else RATES
    what = "messages" if kind == "depths" else "messages per second"
    keys = "".join(f'<span class="key {name}">{name}</span>' for name in names)
    return (f'<figure class="chart"><svg data-chart="{h(kind)}" viewBox="0 0 600 160" role="img" '
            f'aria-label="{h(", ".join(names))} over the last minutes"></svg><figcaption>{keys}'
            f'<span class="note">{what}, sampled by this page every few seconds</span></figcaption></figure>')


def rate_cards(rates: Optional[dict[str, Optional[float]]]) -> str:
    rates = rates or {}
    return cards({f"{name}/s": rate(rates.get(name)) for name in RATES}, "rate")


def sizes_text(sizes: dict[str, int]) -> str:
    return ", ".join(f"{key.replace('_', ' ')} {value:,}" for key, value in sizes.items())


# --- the pages

def overview(app: Any, query: dict[str, str], frame: Frame) -> str:
    data = app.overview(query)
    body = (cards(data["totals"], "total") + rate_cards(data["rates"])
            + '<div class="charts">' + chart("depths") + chart("rates") + "</div>"
            + f'<p>Net rate: <span data-field="net_rate">{h(rate(data["rates"]["net"], signed=True))}</span> '
            f'(how fast the queues grow, per second, over the last sample). Storage: '
            f'<span data-field="sizes">{h(sizes_text(data["sizes"]))}</span>.</p>')
    return layout(frame, "Overview", "/", body, "overview")


def queues(app: Any, query: dict[str, str], frame: Frame) -> str:
    rows = [[f'<a href="{link(frame, "/queue", name=q["name"])}">{h(q["name"])}</a>', _badges(q), h(q["ready"]),
             h(q["unacked"]), h(q["delayed"]), h(q["consumers"]), *rate_cells(q["rates"])]
            for q in app.queues(query)]
    body = ('<p><input type="search" id="filter" placeholder="filter by name" aria-label="filter queues"> '
            '<span class="note">click a column to sort</span></p>'
            + table(("name", "features", "ready", "unacked", "delayed", "consumers", *RATE_COLUMNS), rows,
                    ' id="queues" class="sortable"'))
    return layout(frame, "Queues", "/queues", body, "queues")


def queue(app: Any, query: dict[str, str], frame: Frame) -> str:
    name = query.get("name", "")
    browse = min(int(query["browse"]) if query.get("browse", "").isdigit() else BROWSE, 200)
    found = app.queue({"name": name, "browse": str(browse)})
    counts = {key: found[key] for key in ("ready", "unacked", "delayed", "consumers")}
    parts = [f'<p class="badges">{_badges(found)}</p>', cards(counts, "count"), rate_cards(found["rates"]),
             '<div class="charts">' + chart("depths") + chart("rates") + "</div>"]
    parts.append("<h2>Bindings</h2>" + table(
        ("exchange", "routing key", "arguments"),
        [[h(b["exchange"] or "(default)"), h(b["routing_key"]), h(shown_json(b["arguments"]))]
         for b in found["bindings"]]))
    parts.append("<h2>Consumers</h2>" + table(
        ("consumer tag", "connection", "pid", "host", "channel", "prefetch", "ack", "unacked", "alive"),
        [[h(c["consumer_tag"]), h(c["connection_id"]), h(c["pid"]), h(c["host"]), h(c["channel"]),
          h(c["prefetch_count"]), "auto" if c["auto_ack"] else "manual", h(c["unacked"]), _alive(c["alive"])]
         for c in found["consumer_details"]]))
    parts.append(f'<h2>Messages</h2><form method="get" action="{link(frame, "/queue")}" class="inline">'
                 f'<input type="hidden" name="name" value="{h(name)}">Browse the first '
                 f'<input type="number" name="browse" value="{browse}" min="1" max="200"> ready messages '
                 '<button>Browse</button> <span class="note">(a look: nothing is taken or leased)</span></form>'
                 + messages_table(found["messages"]))
    if not frame.read_only:
        parts.append(queue_actions(frame, name))
    return layout(frame, f"Queue {name}", "/queues", "".join(parts), "queue", {"queue": name})


def messages_table(messages: list[dict[str, Any]]) -> str:
    rows = []
    for m in messages:
        properties = dict(m["properties"])
        headers = properties.pop("headers", None)
        rows.append([h(m.get("exchange") or "(default)") + "<br>" + h(m["routing_key"]),
                     f'<pre class="body {h(m["body_encoding"])}">{h(m["body"])}</pre>'
                     f'<span class="note">{h(m["body_bytes"])} bytes, {h(m["body_encoding"])}</span>',
                     f"<pre>{h(shown_json(properties))}</pre>", f"<pre>{h(shown_json(headers))}</pre>",
                     h(m.get("delivery_count", "")) + (" (redelivered)" if m["redelivered"] else "")])
    return table(("exchange / routing key", "body", "properties", "headers", "deliveries"), rows,
                 ' class="messages"')


def _alive(alive: Optional[bool]) -> str:
    return {True: '<span class="ok">yes</span>', False: '<span class="bad">no</span>'}.get(alive, "unknown")  # type: ignore[arg-type]


def _form(frame: Frame, action: str, fields: str, button: str, name: Optional[str] = None,
          confirm: Optional[str] = None) -> str:
    target = link(frame, action, name=name) if name is not None else link(frame, action)
    check = (f'<label class="confirm"><input type="checkbox" name="confirm" value="yes" required> '
             f'{h(confirm)}</label>' if confirm else "")
    return (f'<form method="post" action="{target}" class="action"'
            f'{f" data-confirm={chr(34)}{h(confirm)}{chr(34)}" if confirm else ""}>'
            f'<input type="hidden" name="csrf" value="{h(frame.csrf)}">{fields}{check}'
            f'<button{" class=danger" if confirm else ""}>{h(button)}</button><output></output></form>')


def queue_actions(frame: Frame, name: str) -> str:
    modes = "".join(f'<option value="{h(mode)}">{h(mode)}: {h(text)}</option>' for mode, text in ACK_MODES.items())
    return ('<h2>Actions</h2><div class="actions">'
            + "<section><h3>Publish</h3>" + _form(
                frame, "/api/publish",
                f'<input type="hidden" name="exchange" value=""><input type="hidden" name="routing_key" '
                f'value="{h(name)}"><textarea name="body" rows="3" placeholder="body"></textarea>'
                '<input name="headers" placeholder=\'headers as JSON: {"k": "v"}\'>'
                '<input name="content_type" placeholder="content type">', "Publish") + "</section>"
            + "<section><h3>Get messages</h3>" + _form(
                frame, "/api/queue/get",
                f'<label>count <input type="number" name="count" value="1" min="1" max="100"></label>'
                f'<select name="ackmode">{modes}</select>', "Get", name) + "</section>"
            + "<section><h3>Move messages</h3>" + _form(
                frame, "/api/queue/move",
                '<input name="destination" placeholder="destination queue" required>'
                '<input type="number" name="limit" min="1" placeholder="how many (all)">', "Move", name,
                "Move the ready messages to the end of the destination queue") + "</section>"
            + "<section><h3>Purge</h3>" + _form(frame, "/api/queue/purge", "", "Purge", name,
                                                  "Delete every ready message of this queue") + "</section>"
            + "<section><h3>Delete</h3>" + _form(
                frame, "/api/queue/delete",
                '<label><input type="checkbox" name="if_unused" value="1"> only if unused</label>'
                '<label><input type="checkbox" name="if_empty" value="1"> only if empty</label>', "Delete", name,
                "Delete this queue and its messages") + "</section></div>")


def exchanges(app: Any, query: dict[str, str], frame: Frame) -> str:
    parts = ['<h2>Route (dry run)</h2><p class="note">Which queues a message would reach; nothing is published.'
             '</p>']
    exchange, key, headers = query.get("exchange", ""), query.get("routing_key", ""), query.get("headers", "")
    parts.append(f'<form method="get" action="{link(frame, "/exchanges")}" class="inline" id="route">'
                 f'<input name="exchange" value="{h(exchange)}" placeholder="exchange (empty: default)">'
                 f'<input name="routing_key" value="{h(key)}" placeholder="routing key">'
                 f'<input name="headers" value="{h(headers)}" placeholder=\'headers as JSON\'>'
                 '<button name="route" value="1">Route</button></form>')
    if "route" in query:
        try:
            reached = app.route(query)["queues"]
            parts.append('<p id="routed">' + (", ".join(
                f'<a href="{link(frame, "/queue", name=q)}">{h(q)}</a>' for q in reached) or "no queue")
                + "</p>")
        except (LiteMQError, ValueError) as exc:
            parts.append(f'<p id="routed" class="bad">{h(exc)}</p>')
    rows = []
    for e in app.source.exchanges():
        bound = "<br>".join(
            f'{h(b["routing_key"] or "(empty key)")} → '
            + (f'<a href="{link(frame, "/queue", name=b["destination"])}">{h(b["destination"])}</a>'
               if b["destination_kind"] == "queue" else f'exchange {h(b["destination"])}')
            + (f' {h(shown_json(b["arguments"]))}' if b["arguments"] else "")
            for b in e["bindings"])
        flags = [f for f in ("durable", "auto_delete", "internal") if e[f]]
        rows.append([h(e["name"] or "(default)"), h(e["type"]), h(" ".join(flags)),
                     h(shown_json(e["arguments"])), bound])
    parts.append("<h2>Exchanges</h2>" + table(("name", "type", "flags", "arguments", "bindings"), rows))
    if not frame.read_only:
        parts.append("<h2>Publish</h2>" + _form(
            frame, "/api/publish", '<input name="exchange" placeholder="exchange (empty: default)">'
            '<input name="routing_key" placeholder="routing key"><textarea name="body" rows="3" placeholder="body">'
            '</textarea><input name="headers" placeholder=\'headers as JSON: {"k": "v"}\'>', "Publish"))
    return layout(frame, "Exchanges", "/exchanges", "".join(parts), "exchanges")


def connections(app: Any, query: dict[str, str], frame: Frame) -> str:
    rows = [[h(c["connection_id"]), h(c["pid"]), h(c["host"]), h(when(c["started_at"])), _alive(c["alive"]),
             h(c["unacked"]), "<br>".join(
                 f'{h(x["consumer_tag"])} on <a href="{link(frame, "/queue", name=x["queue"])}">{h(x["queue"])}</a>'
                 f' (channel {h(x["channel"])}, prefetch {h(x["prefetch_count"])}, holds {h(x["unacked"])})'
                 for x in c["consumers"])]
            for c in app.source.connections()]
    body = ('<p class="note">A connection whose process died shows alive "no" until the next program that writes '
            'opens the broker and returns what it held (reaping).</p>'
            + table(("connection", "pid", "host", "started", "alive", "unacked", "consumers"), rows))
    return layout(frame, "Connections", "/connections", body, "connections")


def outcome(path: str, query: dict[str, str], result: dict[str, Any], frame: Frame) -> str:
    """What an action did, for a form posted without JavaScript."""
    name = query.get("name")
    said = {"/api/publish": lambda: f"Published to {result['routed']} queue(s).",
            "/api/queue/get": lambda: f"Got {len(result['messages'])} message(s), settled as {result['ackmode']}.",
            "/api/queue/move": lambda: f"Moved {result['moved']} message(s).",
            "/api/queue/purge": lambda: f"Purged {result['purged']} message(s).",
            "/api/queue/delete": lambda: f"Deleted the queue and its {result['deleted']} message(s)."}[path]()
    back = link(frame, "/queue", name=name) if name and path != "/api/queue/delete" else link(frame, "/queues")
    body = f'<p id="outcome">{h(said)}</p>'
    if path == "/api/queue/get":
        body += messages_table(result["messages"])
    return layout(frame, "Done", "", body + f'<p><a href="{back}">Back</a></p>', "outcome")


def error_page(status: int, message: str, base: str) -> str:
    frame = Frame(base=base, csrf="", read_only=False, where="")
    return layout(frame, f"Error {status}", "", f'<p class="bad" id="error">{h(message)}</p>', "error")


PAGES: dict[str, Callable[[Any, dict[str, str], Frame], str]] = {
    "/": overview, "/queues": queues, "/queue": queue, "/exchanges": exchanges, "/connections": connections,
}
