// tdhook inspector: the list of requests (live, through Server-Sent Events), their detail and
// the actions on them. Plain JavaScript, no library; text from requests only ever goes into the
// page as text (textContent), never as HTML.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const state = {
    info: null,
    rows: new Map(),   // id -> summary
    order: [],         // ids, newest first
    selected: null,    // id of the open detail
    detail: null,      // the open detail's JSON
    oldest: null,      // id of the oldest row listed (for "older")
    reloadTimer: null,
    source: null,
  };
  const PAGE = 100;

  // --- small helpers ---------------------------------------------------------------------------

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("data-")) node.setAttribute(key, String(value));
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  async function api(path, options) {
    const res = await fetch(path, Object.assign({ credentials: "same-origin" }, options || {}));
    if (res.status === 401) {
      window.location.href = "/login";
      throw new Error("unauthorized");
    }
    let body = null;
    try { body = await res.json(); } catch (e) { body = null; }
    if (!res.ok) {
      const message = body && body.message ? body.message : "HTTP " + res.status;
      const error = new Error(message);
      error.status = res.status;
      error.body = body;
      throw error;
    }
    return body;
  }

  function localTime(iso) {
    if (!iso) return "";
    const d = new Date(iso);
    if (isNaN(d)) return iso;
    const pad = (n, w) => String(n).padStart(w || 2, "0");
    return pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds()) + "." + pad(d.getMilliseconds(), 3);
  }

  function shellQuote(text) {
    return "'" + String(text).replace(/'/g, "'\\''") + "'";
  }

  // Event patterns as the receiver has them: literal segments, "*" (one segment), a final "**".
  function patternMatches(patterns, event) {
    const list = patterns.split(",").map((p) => p.trim()).filter(Boolean);
    if (list.length === 0) return true;
    const segments = (event || "").split(".");
    return list.some((pattern) => {
      const parts = pattern.split(".");
      for (let i = 0; i < parts.length; i++) {
        if (parts[i] === "**") return i === parts.length - 1 && segments.length > i;
        if (i >= segments.length) return false;
        if (parts[i] !== "*" && parts[i] !== segments[i]) return false;
      }
      return segments.length === parts.length;
    });
  }

  // --- the list --------------------------------------------------------------------------------

  function outcomeText(s) {
    switch (s.outcome) {
      case "stored": return "stored";
      case "duplicate": return "duplicate";
      case "filtered": return "filtered out";
      case "no_sink": return "no sink";
      default: return (s.reason || "refused") + " " + s.status;
    }
  }

  function sinkState(p) {
    let text = p.state;
    if (p.state === "delivered" && typeof p.latency_ms === "number") text += " " + p.latency_ms + " ms";
    if (p.state === "retrying") text += " (attempt " + p.attempts + ")";
    return text;
  }

  // A sink's short name: "file:/var/log/td/events.ndjson" -> "file:events.ndjson".
  function sinkLabel(name) {
    const m = /^([a-z-]+):(.*)$/.exec(name);
    if (!m) return name;
    const rest = m[2].replace(/[?#].*$/, "");
    const last = rest.split("/").filter(Boolean).pop() || rest;
    return m[1] + ":" + last;
  }

  // An event name that may wrap after its dots, as text.
  function eventText(name) {
    const span = el("span");
    const parts = name.split(".");
    parts.forEach((part, i) => {
      span.append(document.createTextNode(part + (i < parts.length - 1 ? "." : "")));
      if (i < parts.length - 1) span.append(el("wbr"));
    });
    return span;
  }

  function deliveriesCell(s) {
    const cell = el("td", { class: "sinks" });
    if (s.outcome === "duplicate" && s.delivery_id) {
      cell.append(el("span", { class: "muted", text: "duplicate of " + s.delivery_id.slice(0, 13) + "…" }));
    }
    const sinks = s.sinks || [];
    for (const p of sinks) {
      const title = p.last_error ? "last error: " + p.last_error : (p.next_attempt_at ? "next attempt " + p.next_attempt_at : "");
      // One sink: its state says enough (its name is in the title); several: each is named.
      cell.append(el("span", { class: "sink", "data-sink": p.sink, "data-state": p.state, title: p.sink + (title ? " · " + title : "") },
        sinks.length > 1 ? el("span", { class: "sink-name", text: sinkLabel(p.sink) + " " }) : null, sinkState(p)));
    }
    return cell;
  }

  function rowFor(s) {
    const eventCell = el("td", { class: "event" });
    if (s.event) {
      eventCell.append(el("span", { class: s.claimed ? "claimed" : null, title: s.claimed ? "what the body claims: not verified" : null }, eventText(s.event)));
    } else {
      eventCell.append(el("span", { class: "muted", text: s.method ? s.method + " " + s.target : "(no request line)" }));
    }
    if (s.replay_of) eventCell.append(el("span", { class: "tag", text: "replay" }));
    if (s.from_store) eventCell.append(el("span", { class: "tag", text: "from the store" }));
    const row = el("tr", {
      class: "row",
      "data-request-id": s.id,
      "data-outcome": s.outcome,
      "data-reason": s.reason,
      "data-status": s.status,
      "data-event": s.event || "",
      "data-delivery-id": s.delivery_id || "",
      tabindex: "0",
    },
      el("td", { class: "time", title: s.time, text: localTime(s.time) }),
      eventCell,
      el("td", { class: "project", title: s.project_id || null, text: s.project_id || "" }),
      el("td", { class: "outcome" }, el("span", { class: "badge", "data-outcome": s.outcome, "data-reason": s.reason, title: s.detail || null, text: outcomeText(s) })),
      deliveriesCell(s));
    if (String(s.id) === String(state.selected)) row.classList.add("selected");
    row.addEventListener("click", () => openDetail(s.id));
    row.addEventListener("keydown", (e) => { if (e.key === "Enter") openDetail(s.id); });
    return row;
  }

  function renderEmpty() {
    const empty = state.order.length === 0;
    $("empty").hidden = !empty;
    if (empty && state.info) {
      const file = state.info.secret_file || "SECRET_FILE";
      $("empty-hint").textContent = "tdhook send --to " + shellQuote(state.info.receiver_url) + " --sample lead.create --secret-file " + shellQuote(file);
    }
  }

  function filters() {
    return {
      event: $("filter-event").value.trim(),
      outcome: $("filter-outcome").value,
      q: $("filter-text").value.trim(),
    };
  }

  function filtering() {
    const f = filters();
    return f.event !== "" || f.outcome !== "" || f.q !== "";
  }

  async function loadList(append) {
    const f = filters();
    const params = new URLSearchParams();
    if (f.event) params.set("event", f.event);
    if (f.outcome) params.set("outcome", f.outcome);
    if (f.q) params.set("q", f.q);
    params.set("limit", String(PAGE));
    if (append && state.oldest) params.set("before", state.oldest);
    let body;
    try {
      body = await api("/api/requests?" + params.toString());
      $("filter-error").textContent = "";
    } catch (e) {
      $("filter-error").textContent = e.message;
      return;
    }
    const tbody = $("rows");
    if (!append) {
      state.rows.clear();
      state.order = [];
      tbody.replaceChildren();
    }
    for (const s of body.requests) {
      if (state.rows.has(String(s.id))) continue;
      state.rows.set(String(s.id), s);
      state.order.push(String(s.id));
      tbody.append(rowFor(s));
    }
    state.oldest = state.order.length ? state.order[state.order.length - 1] : null;
    $("more").hidden = body.requests.length < PAGE;
    renderEmpty();
  }

  function scheduleReload() {
    clearTimeout(state.reloadTimer);
    state.reloadTimer = setTimeout(() => loadList(false), 250);
  }

  function addLive(s) {
    const id = String(s.id);
    if (state.rows.has(id)) return updateLive(s);
    if (filtering()) {
      // The server filters (the text search reads bodies): ask it again.
      const f = filters();
      if (f.event && !patternMatches(f.event, s.event)) return;
      if (f.outcome && f.outcome !== s.outcome && f.outcome !== s.reason) return;
      return scheduleReload();
    }
    state.rows.set(id, s);
    state.order.unshift(id);
    const row = rowFor(s);
    row.classList.add("fresh");
    $("rows").prepend(row);
    renderEmpty();
  }

  function updateLive(s) {
    const id = String(s.id);
    if (!state.rows.has(id)) return;
    state.rows.set(id, s);
    const old = document.querySelector('#rows tr[data-request-id="' + CSS.escape(id) + '"]');
    if (old) old.replaceWith(rowFor(s));
    if (state.selected === id) refreshDetail();
  }

  // --- live updates ----------------------------------------------------------------------------

  function setLive(kind, text) {
    $("live").dataset.state = kind;
    $("live").textContent = text;
  }

  function connect() {
    const source = new EventSource("/api/stream");
    state.source = source;
    source.addEventListener("hello", () => {
      setLive("live", "live");
      loadList(false);  // whatever happened while not connected
    });
    source.addEventListener("request", (e) => addLive(JSON.parse(e.data)));
    source.addEventListener("update", (e) => updateLive(JSON.parse(e.data)));
    source.addEventListener("reset", () => loadList(false));
    source.addEventListener("error", () => setLive("reconnecting", "reconnecting…"));
  }

  // --- the detail ------------------------------------------------------------------------------

  function fillChecks(d) {
    const list = $("checks");
    list.replaceChildren();
    for (const c of d.checks || []) {
      const item = el("li", { class: "check", "data-check": c.id, "data-state": c.state },
        el("span", { class: "title", text: c.title }),
        el("span", { class: "state", text: c.state.replace("_", " ") }));
      if (c.explanation) item.append(el("p", { class: "why", text: c.explanation }));
      list.append(item);
    }
    const box = $("explanation");
    if (d.explanation) {
      box.hidden = false;
      box.textContent = d.explanation;
      box.dataset.check = d.failed_check || "";
      const outcome = d.summary ? d.summary.outcome : "";
      box.dataset.kind = outcome === "refused" ? "bad" : outcome === "duplicate" ? "info" : "warn";
    } else {
      box.hidden = true;
      box.textContent = "";
    }
  }

  function fillRequest(d) {
    const r = d.request || {};
    const s = d.summary || {};
    let line = r.line || "";
    if (!line && d.replay_of) line = "(a replay of " + d.replay_of + " made from the inspector)";
    if (!line && !r.available) line = "(the request is no longer in memory: the event record is from the store)";
    $("request-line").textContent = line;
    const meta = [];
    if (r.received_at) meta.push("received " + r.received_at);
    if (r.remote) meta.push("from " + r.remote);
    if (s.status) meta.push("answered " + s.status + " " + s.reason);
    if (d.detail) meta.push(d.detail);
    $("request-meta").textContent = meta.join(" · ");
    const tbody = $("headers").tBodies[0];
    tbody.replaceChildren();
    for (const [name, value] of r.headers || []) {
      const masked = /^\(hidden, \d+ characters\)$/.test(value);
      tbody.append(el("tr", { "data-header": name.toLowerCase(), class: masked ? "masked" : null },
        el("th", { text: name }), el("td", { text: value })));
    }
    const body = r.body || {};
    $("body").textContent = body.read === false ? "(the body was not read)" : (body.text || "(empty)");
    const bits = [];
    if (typeof body.size === "number") bits.push(body.size + " bytes");
    if (body.truncated) bits.push("only the first " + body.kept + " kept");
    if (body.read && !body.json && body.size) bits.push("not JSON");
    $("body-meta").textContent = bits.join(", ");
  }

  function fillToken(d) {
    const t = d.token;
    $("token-none").hidden = !!t;
    $("token-parts").hidden = !t;
    if (!t) return;
    $("token-signature").textContent = t.signature || "not checked";
    const meta = [];
    if (t.length) meta.push(t.length + " characters, not shown");
    if (t.iat_time) meta.push("issued " + t.iat_time);
    if (t.error) meta.push(t.error);
    $("token-meta").textContent = meta.join(" · ");
    $("token-header").textContent = t.header ? JSON.stringify(t.header, null, 2) : "";
    $("token-claims").textContent = t.claims ? JSON.stringify(t.claims, null, 2) : "";
  }

  function fillRecord(d) {
    $("record").textContent = d.record || "";
    $("record").hidden = !d.record;
    const none = $("record-none");
    none.hidden = !!d.record;
    none.textContent = d.store_error ? d.store_error : "No event record: the request was not stored.";
  }

  function fillDeliveries(d) {
    const dt = $("deliveries").tBodies[0];
    dt.replaceChildren();
    for (const p of d.deliveries || []) {
      dt.append(el("tr", { "data-sink": p.sink, "data-state": p.state },
        el("td", { text: p.sink }),
        el("td", { class: p.state === "delivered" ? "ok" : p.state === "dead" ? "bad" : null, text: p.state + (p.next_attempt_at ? " (next " + localTime(p.next_attempt_at) + ")" : "") }),
        el("td", { text: p.attempts }),
        el("td", { text: typeof p.latency_ms === "number" ? p.latency_ms + " ms" : "" }),
        el("td", { text: p.last_error || "" })));
    }
    const at = $("attempts").tBodies[0];
    at.replaceChildren();
    for (const a of d.attempts || []) {
      const result = el("td", { class: a.ok ? "ok" : "bad", text: a.ok ? "delivered" : (a.error || "failed") });
      if (a.output) result.append(el("pre", { text: a.output }));
      at.append(el("tr", { "data-sink": a.sink, "data-ok": a.ok ? "true" : "false" },
        el("td", { text: a.sink }), el("td", { text: a.number }),
        el("td", { title: a.started_at, text: localTime(a.started_at) }),
        el("td", { text: a.duration_ms + " ms" }), result));
    }
  }

  function fillDetail(d) {
    state.detail = d;
    const s = d.summary || {};
    $("detail").dataset.requestId = d.id;
    $("detail").dataset.outcome = s.outcome || "";
    $("detail").dataset.reason = s.reason || "";
    $("detail-title").textContent = "#" + d.id + " · " + (s.event || "(no event)") + " · " + outcomeText(s);
    $("replay").disabled = !d.can_replay;
    $("download-raw").href = "/api/requests/" + encodeURIComponent(d.id) + "/raw";
    fillChecks(d);
    fillRequest(d);
    fillToken(d);
    fillRecord(d);
    fillDeliveries(d);
  }

  async function openDetail(id) {
    id = String(id);
    state.selected = id;
    for (const row of document.querySelectorAll("#rows tr.selected")) row.classList.remove("selected");
    const row = document.querySelector('#rows tr[data-request-id="' + CSS.escape(id) + '"]');
    if (row) row.classList.add("selected");
    $("detail").hidden = false;
    $("panes").classList.add("with-detail");
    $("action-result").textContent = "";
    $("copy-text").hidden = true;
    if (window.location.hash !== "#/requests/" + id) history.replaceState(null, "", "#/requests/" + id);
    try {
      fillDetail(await api("/api/requests/" + encodeURIComponent(id)));
    } catch (e) {
      $("detail-title").textContent = "#" + id + ": " + e.message;
    }
  }

  async function refreshDetail() {
    if (!state.selected) return;
    try {
      fillDetail(await api("/api/requests/" + encodeURIComponent(state.selected)));
    } catch (e) { /* it stays as it was */ }
  }

  function closeDetail() {
    state.selected = null;
    $("detail").hidden = true;
    $("panes").classList.remove("with-detail");
    for (const row of document.querySelectorAll("#rows tr.selected")) row.classList.remove("selected");
    history.replaceState(null, "", window.location.pathname);
  }

  // --- actions ---------------------------------------------------------------------------------

  async function replay() {
    if (!state.detail) return;
    const button = $("replay");
    button.disabled = true;
    try {
      const r = await api("/api/requests/" + encodeURIComponent(state.detail.id) + "/replay", { method: "POST" });
      const result = $("action-result");
      result.textContent = "Replayed as #" + r.id + " (delivery " + r.delivery_id + ").";
      result.dataset.replayId = r.id;
      result.dataset.deliveryId = r.delivery_id;
    } catch (e) {
      $("action-result").textContent = "Replay failed: " + e.message;
    } finally {
      button.disabled = !(state.detail && state.detail.can_replay);
    }
  }

  function receiverUrlFor(d) {
    const base = (d.copy && d.copy.receiver_url) || (state.info && state.info.receiver_url) || "http://127.0.0.1:8080/";
    const target = d.request && d.request.target;
    try { return target ? new URL(target, base).toString() : base; } catch (e) { return base; }
  }

  function secretFile(d) {
    return (d.copy && d.copy.secret_file) || "SECRET_FILE";
  }

  function curlText(d) {
    const skip = new Set(["host", "content-length", "connection", "transfer-encoding", "accept-encoding"]);
    const lines = [
      "# The inspector never shows the token: this body carries a placeholder, which a receiver",
      "# that checks tokens refuses (\"Copy as tdhook send\" signs a new notification).",
      "curl -sS -X " + ((d.request && d.request.method) || "POST") + " " + shellQuote(receiverUrlFor(d)) + " \\",
    ];
    for (const [name, value] of (d.request && d.request.headers) || []) {
      const lower = name.toLowerCase();
      if (skip.has(lower)) continue;
      if (lower === "x-hook-secret") {
        lines.push("  -H \"" + name + ": $(head -n1 " + shellQuote(secretFile(d)) + ")\" \\");
      } else if (lower === "authorization" || lower === "cookie") {
        continue;
      } else {
        lines.push("  -H " + shellQuote(name + ": " + value) + " \\");
      }
    }
    const body = d.request && d.request.body ? d.request.body.raw || "" : "";
    lines.push("  --data-binary @- <<'TDHOOK_BODY'");
    lines.push(body);
    lines.push("TDHOOK_BODY");
    return lines.join("\n");
  }

  function sendText(d) {
    const c = d.copy || {};
    const lines = [];
    const args = ["tdhook send --to " + shellQuote(receiverUrlFor(d)), "--secret-file " + shellQuote(secretFile(d))];
    if (c.event) args.push("--event " + shellQuote(c.event));
    if (c.payload) {
      lines.push("cat > payload.json <<'TDHOOK_PAYLOAD'", c.payload, "TDHOOK_PAYLOAD");
      args.push("--payload payload.json");
    }
    if (c.subscription_id) args.push("--subscription-id " + shellQuote(c.subscription_id));
    if (c.project_id) args.push("--project-id " + shellQuote(c.project_id));
    if (c.target) args.push("--target " + shellQuote(c.target));
    lines.push(args.join(" \\\n  "));
    return lines.join("\n");
  }

  async function copy(kind) {
    if (!state.detail) return;
    const text = kind === "curl" ? curlText(state.detail) : sendText(state.detail);
    const area = $("copy-text");
    area.value = text;
    area.hidden = false;
    area.dataset.kind = kind;
    let copied = false;
    try {
      if (navigator.clipboard && window.isSecureContext) {
        await navigator.clipboard.writeText(text);
        copied = true;
      }
    } catch (e) { copied = false; }
    if (!copied) {
      area.focus();
      area.select();
      try { copied = document.execCommand("copy"); } catch (e) { copied = false; }
    }
    $("action-result").textContent = copied ? "Copied to the clipboard." : "Select the text below and copy it.";
  }

  // --- start -----------------------------------------------------------------------------------

  async function start() {
    try {
      state.info = await api("/api/info");
      $("receiver").textContent = "receiver " + state.info.receiver_url;
    } catch (e) {
      $("receiver").textContent = e.message;
    }
    for (const id of ["filter-event", "filter-text"]) $(id).addEventListener("input", scheduleReload);
    $("filter-outcome").addEventListener("change", () => loadList(false));
    $("filters").addEventListener("submit", (e) => { e.preventDefault(); loadList(false); });
    $("more").addEventListener("click", () => loadList(true));
    $("close-detail").addEventListener("click", closeDetail);
    $("replay").addEventListener("click", replay);
    $("copy-curl").addEventListener("click", () => copy("curl"));
    $("copy-send").addEventListener("click", () => copy("send"));
    document.addEventListener("keydown", (e) => { if (e.key === "Escape" && state.selected) closeDetail(); });
    await loadList(false);
    connect();
    const fromHash = () => {
      const m = /^#\/requests\/([^/]+)$/.exec(window.location.hash);
      if (m && decodeURIComponent(m[1]) !== state.selected) openDetail(decodeURIComponent(m[1]));
    };
    window.addEventListener("hashchange", fromHash);
    fromHash();
  }

  start();
})();
