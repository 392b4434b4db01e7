// litemq web: keeps the server-rendered page current by polling the JSON API, draws the charts as SVG, sorts and
// filters the queues table, and posts the action forms. Everything from the broker goes in with textContent.
"use strict";
(function () {
  const meta = (name) => document.querySelector(`meta[name="${name}"]`).content;
  const base = meta("litemq-base");
  const csrf = meta("litemq-csrf");
  const body = document.body;
  const page = body.dataset.page;
  const POLL_MS = Math.max(250, parseInt(meta("litemq-poll"), 10) || 5000);
  const COLORS = { ready: "#2f6fb3", unacked: "#d9822b", delayed: "#8a63b8",
    published: "#2f6fb3", delivered: "#22863a", redelivered: "#c0392b", acked: "#d9822b" };
  const KINDS = { depths: ["ready", "unacked", "delayed"], rates: ["published", "delivered", "redelivered", "acked"] };
  const RATE_NAMES = KINDS.rates;

  function api(path, params) {
    const query = params ? "?" + new URLSearchParams(params).toString() : "";
    return fetch(base + path + query, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then((r) => r.json().then((v) => (r.ok ? v : Promise.reject(new Error(v.error || r.statusText)))));
  }

  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }

  function rate(v, signed) {
    return v === null || v === undefined ? "" : (signed && v >= 0 ? "+" : "") + v.toFixed(1) + "/s";
  }

  function rateCells(rates) {
    const r = rates || {};
    return [rate(r.published), rate(r.delivered), rate(r.acked), rate(r.net, true)];
  }

  function setRates(rates) {
    const r = rates || {};
    setAll("rate", Object.fromEntries(RATE_NAMES.map((n) => [n + "/s", rate(r[n])])));
  }

  function drawCharts(series) {
    for (const kind of Object.keys(KINDS)) {
      const svg = document.querySelector(`[data-chart="${kind}"]`);
      if (svg) drawChart(svg, series, KINDS[kind]);
    }
  }

  function setAll(attr, values) {
    for (const [k, v] of Object.entries(values)) {
      document.querySelectorAll(`[data-${attr}="${CSS.escape(k)}"]`).forEach((e) => { e.textContent = v; });
    }
  }

  // --- charts: depths or rates against time, one polyline each (a gap where a rate is unknown)
  function drawChart(svg, series, names) {
    const NS = "http://www.w3.org/2000/svg";
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    const W = Math.max(300, Math.round(svg.getBoundingClientRect().width)) || 600, H = 160, L = 44, B = 18;
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    const times = series.times;
    const top = Math.max(1, ...names.flatMap((n) => series[n].filter((v) => v !== null)).map(Math.ceil));
    const t0 = times.length ? times[0] : 0, t1 = times.length ? times[times.length - 1] : 1;
    const x = (t) => L + ((t - t0) / Math.max(1e-9, t1 - t0)) * (W - L - 4);
    const y = (v) => 4 + (1 - v / top) * (H - B - 8);
    const add = (tag, attrs, text) => {
      const e = document.createElementNS(NS, tag);
      for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
      if (text !== undefined) e.textContent = text;
      svg.appendChild(e);
      return e;
    };
    add("line", { x1: L, y1: y(0), x2: W - 4, y2: y(0), class: "axis" });
    add("line", { x1: L, y1: y(top), x2: W - 4, y2: y(top), class: "grid" });
    add("text", { x: L - 4, y: y(top) + 4, "text-anchor": "end" }, String(top));
    add("text", { x: L - 4, y: y(0) + 4, "text-anchor": "end" }, "0");
    if (times.length < 2) {
      add("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "note" },
        "collecting samples" + (times.length ? "…" : ""));
      return;
    }
    add("text", { x: L, y: H - 2 }, `${Math.round(t1 - t0)} s ago`);
    add("text", { x: W - 4, y: H - 2, "text-anchor": "end" }, "now");
    for (const n of names) {
      const points = times.map((t, i) => series[n][i] === null ? null : `${x(t).toFixed(1)},${y(series[n][i]).toFixed(1)}`)
        .filter((p) => p !== null).join(" ");
      add("polyline", { points, fill: "none", stroke: COLORS[n], "stroke-width": 2, "data-series": n });
    }
  }

  // --- the pages
  function refreshOverview() {
    return api("/api/overview").then((data) => {
      setAll("total", data.totals);
      setRates(data.rates);
      document.querySelector('[data-field="net_rate"]').textContent = rate(data.rates.net, true);
      document.querySelector('[data-field="sizes"]').textContent = Object.entries(data.sizes)
        .map(([k, v]) => `${k.replace("_", " ")} ${v.toLocaleString("en")}`).join(", ");
      drawCharts(data.series);
    });
  }

  function queueLink(name) {
    const a = el("a", name);
    a.href = base + "/queue?" + new URLSearchParams({ name }).toString();
    return a;
  }

  let sortColumn = 0, sortDescending = false;
  function refreshQueues() {
    return api("/api/queues").then((queues) => {
      const tbody = document.querySelector("#queues tbody");
      const rows = queues.map((q) => {
        const tr = el("tr");
        const name = el("td"); name.appendChild(queueLink(q.name)); tr.appendChild(name);
        const features = el("td");
        q.badges.forEach((b, i) => {
          if (i) features.appendChild(document.createTextNode(" "));
          features.appendChild(el("span", b, "badge"));
        });
        tr.appendChild(features);
        for (const v of [q.ready, q.unacked, q.delayed, q.consumers, ...rateCells(q.rates)]) tr.appendChild(el("td", v));
        return tr;
      });
      tbody.replaceChildren(...rows);
      sortTable(); filterTable();
    });
  }

  function cellValue(tr, i) {
    const text = tr.children[i].textContent;
    const n = parseFloat(text);
    return i >= 2 && !isNaN(n) ? n : text.toLowerCase();
  }

  function sortTable() {
    const tbody = document.querySelector("#queues tbody");
    const rows = Array.from(tbody.children);
    rows.sort((a, b) => {
      const p = cellValue(a, sortColumn), q = cellValue(b, sortColumn);
      return (p < q ? -1 : p > q ? 1 : 0) * (sortDescending ? -1 : 1);
    });
    tbody.replaceChildren(...rows);
  }

  function filterTable() {
    const filter = document.getElementById("filter");
    const text = filter ? filter.value.toLowerCase() : "";
    document.querySelectorAll("#queues tbody tr").forEach((tr) => {
      tr.hidden = text !== "" && !tr.children[0].textContent.toLowerCase().includes(text);
    });
  }

  function setUpQueues() {
    document.querySelectorAll("#queues th").forEach((th, i) => {
      th.addEventListener("click", () => {
        sortDescending = sortColumn === i ? !sortDescending : i >= 2;
        sortColumn = i;
        document.querySelectorAll("#queues th").forEach((o) => o.removeAttribute("aria-sort"));
        th.setAttribute("aria-sort", sortDescending ? "descending" : "ascending");
        sortTable();
      });
    });
    document.getElementById("filter").addEventListener("input", filterTable);
  }

  function refreshQueue() {
    return api("/api/queue", { name: body.dataset.queue }).then((q) => {
      setAll("count", { ready: q.ready, unacked: q.unacked, delayed: q.delayed, consumers: q.consumers });
      setRates(q.rates);
      drawCharts(q.series);
    });
  }

  // --- actions: posted as forms, answered in JSON, shown beside the form
  function showMessages(output, messages) {
    const list = el("ol", null, "got");
    for (const m of messages) {
      const item = el("li");
      item.appendChild(el("code", m.routing_key));
      item.appendChild(el("pre", m.body, "body " + m.body_encoding));
      if (Object.keys(m.properties).length) item.appendChild(el("pre", JSON.stringify(m.properties)));
      list.appendChild(item);
    }
    output.appendChild(list);
  }

  function setUpActions() {
    document.querySelectorAll("form.action").forEach((form) => {
      form.addEventListener("submit", (event) => {
        event.preventDefault();
        const output = form.querySelector("output");
        if (form.dataset.confirm && !window.confirm(form.dataset.confirm + "?")) return;
        const data = new URLSearchParams(new FormData(form));
        fetch(form.action, {
          method: "POST", body: data, credentials: "same-origin",
          headers: { Accept: "application/json", "X-CSRF-Token": csrf },
        }).then((r) => r.json().then((v) => ({ ok: r.ok, v }))).then(({ ok, v }) => {
          output.replaceChildren();
          output.className = ok ? "ok" : "bad";
          if (!ok) { output.textContent = v.error; return; }
          const said = "routed" in v ? `published to ${v.routed} queue(s)`
            : "messages" in v ? `got ${v.messages.length} message(s), ${v.ackmode}`
            : "moved" in v ? `moved ${v.moved} message(s)`
            : "purged" in v ? `purged ${v.purged} message(s)`
            : `deleted, with ${v.deleted} message(s)`;
          output.appendChild(el("span", said));
          if ("messages" in v) showMessages(output, v.messages);
          if ("deleted" in v) window.location.href = base + "/queues";
          else poll();
        }).catch((e) => { output.className = "bad"; output.textContent = String(e); });
      });
    });
  }

  const refresh = { overview: refreshOverview, queues: refreshQueues, queue: refreshQueue }[page];
  let waiting = false;
  function poll() {
    // One request at a time: a slow answer delays the next poll instead of piling requests up.
    if (!refresh || waiting) return;
    waiting = true;
    refresh().catch(() => {}).finally(() => { waiting = false; });
  }

  if (page === "queues") setUpQueues();
  setUpActions();
  poll();
  if (refresh) window.setInterval(poll, POLL_MS);
})();
