"""The fraud team's page, served by the worker at /fraud: one HTML document with a little vanilla JS.

The page itself holds no data: the person enters their token once (kept in the tab's
sessionStorage, sent as `Authorization: Bearer` like any API client), and the script reads and
writes through the same routes and roles as the HTTP API (/v1/review-cases, /v1/reviews,
/v1/review-assignments, /v1/policy, /v1/backtests, /v1/shadow, /v1/rankings). Every value from the server is
put on the page as text (textContent), never as HTML. No framework, no build step.
"""

from __future__ import annotations

# Only this document's own script and style, and requests to this worker.
CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                           "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
                           "frame-ancestors 'none'")

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Remedy Ledger: fraud team</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 1em 2em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.6em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: .4em 0; } td, th { padding: 2px 8px; border-bottom: 1px solid #eee; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
.error { color: #b00020; font-weight: bold; } .ok { color: #006400; font-weight: bold; }
fieldset { border: 1px solid #ddd; margin: .4em 0; } label { margin-right: .8em; }
textarea { font-family: monospace; } #case { background: #fafafa; padding: .4em 1em; }
nav a { margin-right: 1em; }
</style>
</head>
<body>
<h1>Remedy Ledger: fraud team</h1>
<form id="signin" onsubmit="return false">
  <label>Token <input id="token" type="password" autocomplete="off" size="40"></label>
  <button id="signin-button" type="button">Use this token</button>
  <span id="signin-status"></span>
</form>
<nav><a href="#queue">Review queue</a><a href="#policy">Policy</a><a href="#backtest">Backtest</a>
<a href="#shadow">Shadow</a><a href="#rankings">Households and associates</a></nav>

<h2 id="queue">Review queue</h2>
<fieldset>
  <label>Kind <select id="f-kind"><option value="">any</option><option>CREDIT</option><option>REFUND</option>
    <option>RESHIP</option><option>SHIPPING_UPGRADE</option><option>GIFT_WRAP</option></select></label>
  <label>Reason <input id="f-reason" size="22"></label>
  <label>Customer <input id="f-customer" size="14"></label>
  <label>Household <input id="f-household" size="14"></label>
  <label>Associate <input id="f-associate" size="12"></label>
  <label>Assigned to <input id="f-assigned_to" size="12"></label>
  <label>Older than (h) <input id="f-older_than_hours" size="4"></label>
  <label>Sort <select id="f-sort"><option>age</option><option>amount</option><option>customer</option>
    <option>kind</option></select></label>
  <button id="queue-refresh" type="button">Show</button>
</fieldset>
<div id="queue-message"></div>
<table id="queue-table"><thead><tr><th>request</th><th>customer</th><th>kind</th><th>amount</th><th>age (h)</th>
<th>asked by</th><th>assigned</th><th>reasons</th><th></th></tr></thead><tbody></tbody></table>
<div id="case" hidden>
  <h3 id="case-title"></h3>
  <div id="case-summary"></div>
  <h4>Why it waits for a person</h4><ul id="case-reasons"></ul>
  <h4>What the decision saw</h4><ul id="case-inputs"></ul>
  <h4>What the customer has now</h4><ul id="case-now"></ul>
  <h4>Recent history</h4><div id="case-history"></div>
  <p><label>Assign to <input id="assign-to" size="14"></label><button id="assign-button" type="button">Assign</button></p>
  <p><label>Note (required) <br><textarea id="review-note" rows="2" cols="70"></textarea></label></p>
  <button id="approve-button" type="button">Approve</button> <button id="deny-button" type="button">Deny</button>
  <div id="review-message"></div>
</div>

<h2 id="policy">Policy in force</h2>
<button id="policy-refresh" type="button">Show</button>
<div id="policy-message"></div>
<div id="policy-current"></div>
<h3>History (each version against the one before it)</h3>
<table id="policy-history"><thead><tr><th>offset</th><th>version</th><th>by</th><th>why</th><th>changes</th></tr></thead>
<tbody></tbody></table>

<h2 id="backtest">Backtest a policy change on the recorded log</h2>
<p>A full or partial policy document (thresholds left out keep their defaults, as <code>policy apply</code> reads it).</p>
<textarea id="backtest-policy" rows="5" cols="90">{"household_incident_claims_max_90d": {"STOLEN_AFTER_DELIVERY": 1}}</textarea><br>
<label>Since <input id="backtest-since" size="12" placeholder="YYYY-MM-DD"></label>
<label>Until <input id="backtest-until" size="12" placeholder="YYYY-MM-DD"></label>
<button id="backtest-run" type="button">Run backtest</button>
<div id="backtest-message"></div>
<div id="backtest-result" hidden>
  <p id="backtest-summary"></p>
  <table id="backtest-transitions"><thead><tr><th>transition</th><th>decisions</th></tr></thead><tbody></tbody></table>
  <table id="backtest-granted"><thead><tr><th>currency</th><th>granted before</th><th>granted after</th></tr></thead><tbody></tbody></table>
  <h4>Daily effect: granted per day, before (grey) and after (red)</h4>
  <div id="backtest-chart"></div>
</div>

<h2 id="shadow">Shadow policy</h2>
<p>Started with <code>remedy-ledger policy shadow FILE</code>: decided beside the live policy, never in the ledger.</p>
<button id="shadow-refresh" type="button">Shadow report</button>
<div id="shadow-message"></div>
<p id="shadow-summary"></p>
<table id="shadow-transitions"><thead><tr><th>live -> shadow</th><th>decisions</th></tr></thead><tbody></tbody></table>
<table id="shadow-granted"><thead><tr><th>currency</th><th>granted live</th><th>granted in shadow</th></tr></thead>
<tbody></tbody></table>

<h2 id="rankings">Households and associates by claims</h2>
<label>Since <input id="rank-since" size="12" placeholder="YYYY-MM-DD"></label>
<label>Until <input id="rank-until" size="12" placeholder="YYYY-MM-DD"></label>
<button id="rank-refresh" type="button">Rank</button>
<div id="rank-message"></div>
<h3>Households</h3>
<table id="rank-households"><thead><tr><th>household</th><th>claims</th><th>granted</th><th>denied</th><th>escalated</th>
<th>granted cents</th></tr></thead><tbody></tbody></table>
<h3>Associates</h3>
<table id="rank-associates"><thead><tr><th>associate</th><th>claims</th><th>granted</th><th>denied</th><th>escalated</th>
<th>granted cents</th></tr></thead><tbody></tbody></table>

<script>
"use strict";
const $ = (id) => document.getElementById(id);
function el(tag, text, attrs) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
  return node;
}
function row(cells, numeric) {
  const tr = el("tr");
  cells.forEach((cell, i) => {
    const td = cell instanceof Node ? el("td") : el("td", cell, (numeric || []).includes(i) ? {class: "n"} : {});
    if (cell instanceof Node) td.appendChild(cell);
    tr.appendChild(td);
  });
  return tr;
}
function fill(tableId, rows) {
  const body = $(tableId).querySelector("tbody");
  body.replaceChildren(...rows);
}
function say(id, text, ok) {
  const box = $(id);
  box.textContent = text;
  box.className = ok ? "ok" : "error";
}
function cents(perCurrency) {
  const parts = Object.entries(perCurrency || {}).sort().map(([c, v]) => (v / 100).toFixed(2) + " " + c);
  return parts.length ? parts.join(", ") : "0";
}
async function api(path, method, body) {
  const token = sessionStorage.getItem("remedy-token") || "";
  const headers = {"Authorization": "Bearer " + token};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {method: method || "GET", headers,
                                      body: body === undefined ? undefined : JSON.stringify(body)});
  let data = {};
  try { data = await response.json(); } catch (e) { data = {error: "the worker answered " + response.status}; }
  if (!response.ok) throw new Error(data.error || ("HTTP " + response.status));
  return data;
}

$("signin-button").addEventListener("click", () => {
  sessionStorage.setItem("remedy-token", $("token").value.trim());
  $("token").value = "";
  say("signin-status", "token set for this tab", true);
  loadQueue();
});

let currentCase = null;
async function loadQueue() {
  const query = new URLSearchParams();
  for (const name of ["kind", "reason", "customer", "household", "associate", "assigned_to", "older_than_hours", "sort"]) {
    const value = $("f-" + name).value.trim();
    if (value) query.set(name, value);
  }
  say("queue-message", "loading...", true);
  try {
    const data = await api("/v1/review-cases?" + query.toString());
    fill("queue-table", data.cases.map((c) => {
      const open = el("button", "Open", {type: "button", "data-request": c.request_id, class: "open-case"});
      open.addEventListener("click", () => openCase(c.request_id));
      return row([c.request_id, c.customer_id, c.kind, c.amount, c.age_hours, c.requested_by, c.assigned_to || "-",
                  c.reason_codes.join(", "), open], [4]);
    }));
    say("queue-message", data.count + " waiting", true);
  } catch (error) { say("queue-message", error.message); }
}
$("queue-refresh").addEventListener("click", loadQueue);

async function openCase(requestId) {
  currentCase = null;  // no review goes out for a case still loading
  $("case-title").textContent = "loading";
  try {
    const c = await api("/v1/review-cases/" + encodeURIComponent(requestId));
    currentCase = c;
    $("case").hidden = false;
    $("case-title").textContent = c.request_id + ": " + c.outcome + " (" + c.decided_by + ")";
    $("case-summary").textContent = c.kind + " " + c.amount + " for customer " + c.customer_id + ", asked by " +
      c.requested_by + " " + c.age_hours + " h ago; household " + (c.household_id || "none") + "; assigned to " +
      (c.assigned_to || "nobody") + "; policy " + c.policy_version;
    $("case-reasons").replaceChildren(...c.reasons.map((r) => el("li", r.code + ": " + r.meaning)));
    $("case-inputs").replaceChildren(...c.inputs_in_words.map((line) => el("li", line)));
    $("case-now").replaceChildren(...c.now_in_words.map((line) => el("li", line)));
    const history = [];
    for (const [scope, rows] of Object.entries(c.history)) {
      history.push(el("h5", "this " + scope + ": " + (rows.length ? rows.length + " recent decisions" : "no others")));
      if (rows.length) {
        const table = el("table");
        rows.forEach((h) => table.appendChild(row([h.request_id, h.customer_id, h.kind, h.amount, h.outcome,
                                                   h.reason_codes.join(", ")])));
        history.push(table);
      }
    }
    $("case-history").replaceChildren(...history);
    $("review-note").value = "";  // a note belongs to one case
    say("review-message", "", true);
  } catch (error) { say("queue-message", error.message); }
}

async function review(verdict) {
  if (!currentCase) return;
  say("review-message", "sending...", true);
  try {
    const answer = await api("/v1/reviews", "POST", {request_id: currentCase.request_id, verdict,
                                                     note: $("review-note").value});
    say("review-message", (verdict === "APPROVE" ? "approved " : "denied ") + answer.request_id + " as " +
        answer.reviewed_by + "; the worker records the decision", true);
  } catch (error) { say("review-message", error.message); }
}
$("approve-button").addEventListener("click", () => review("APPROVE"));
$("deny-button").addEventListener("click", () => review("DENY"));
$("assign-button").addEventListener("click", async () => {
  if (!currentCase) return;
  try {
    const answer = await api("/v1/review-assignments", "POST", {request_id: currentCase.request_id,
                                                                assigned_to: $("assign-to").value});
    say("review-message", "assigned to " + answer.assigned_to + " by " + answer.assigned_by, true);
  } catch (error) { say("review-message", error.message); }
});

$("policy-refresh").addEventListener("click", async () => {
  try {
    const p = await api("/v1/policy");
    $("policy-current").textContent = "version " + p.version + (p.applied_by ? " applied by " + p.applied_by + ": " +
      p.reason : " (the configured default)");
    fill("policy-history", p.history.map((h) => h.rejected ? row([h.offset, "rejected", "", h.rejected, ""]) :
      row([h.offset, h.version, h.author, h.reason,
           h.changes.length ? h.changes.map((c) => c.threshold + " " + JSON.stringify(c.before) + " -> " +
                                                   JSON.stringify(c.after)).join("; ") : "no threshold changes"])));
    say("policy-message", "", true);
  } catch (error) { say("policy-message", error.message); }
});

function chart(daily) {
  // One currency per chart: the first that has any grant (cents are never added across currencies).
  const currencies = [...new Set(daily.flatMap((d) => [...Object.keys(d.granted_cents_before),
                                                      ...Object.keys(d.granted_cents_after)]))].sort();
  const currency = currencies[0];
  const ns = "http://www.w3.org/2000/svg";
  const width = 720, height = 200, pad = 30;
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("width", width); svg.setAttribute("height", height); svg.setAttribute("id", "backtest-svg");
  if (!currency || !daily.length) return svg;
  const before = daily.map((d) => d.granted_cents_before[currency] || 0);
  const after = daily.map((d) => d.granted_cents_after[currency] || 0);
  const top = Math.max(1, ...before, ...after);
  const x = (i) => pad + (daily.length === 1 ? 0 : i * (width - 2 * pad) / (daily.length - 1));
  const y = (v) => height - pad - v * (height - 2 * pad) / top;
  for (const [values, colour, name] of [[before, "#999", "before"], [after, "#c00", "after"]]) {
    const line = document.createElementNS(ns, "polyline");
    line.setAttribute("points", values.map((v, i) => x(i) + "," + y(v)).join(" "));
    line.setAttribute("fill", "none"); line.setAttribute("stroke", colour); line.setAttribute("stroke-width", "2");
    line.setAttribute("class", "series-" + name);
    svg.appendChild(line);
  }
  const label = document.createElementNS(ns, "text");
  label.setAttribute("x", pad); label.setAttribute("y", 14);
  label.textContent = currency + ", most in a day " + (top / 100).toFixed(2) + "; " + daily[0].day + " to " +
                      daily[daily.length - 1].day;
  svg.appendChild(label);
  return svg;
}

$("backtest-run").addEventListener("click", async () => {
  let document_;
  try { document_ = JSON.parse($("backtest-policy").value || "{}"); }
  catch (error) { say("backtest-message", "the policy document is not valid JSON: " + error.message); return; }
  say("backtest-message", "running: the worker replays the log twice...", true);
  try {
    const r = await api("/v1/backtests", "POST", {policy: document_, since: $("backtest-since").value.trim() || null,
                                                  until: $("backtest-until").value.trim() || null});
    $("backtest-result").hidden = false;
    const reproduced = (r.reproduced_share * 100).toFixed(2) + "%";
    $("backtest-summary").textContent = r.candidate + " against " + r.policy_in_force + ": " + r.decisions +
      " decisions, " + r.changed + " changed; replay reproduced " + reproduced + " of the recorded decisions" +
      (r.reproduction.differing_count ? " (DEFECT: " + r.reproduction.differing_count + " differ)" : "");
    fill("backtest-transitions", Object.entries(r.transitions).map(([name, n]) => row([name, n], [1])));
    fill("backtest-granted", grantedRows(r.granted_cents_before, r.granted_cents_after));
    $("backtest-chart").replaceChildren(chart(r.daily));
    say("backtest-message", "done in " + r.replay_seconds + " s", !r.reproduction.differing_count);
  } catch (error) { say("backtest-message", error.message); }
});

function grantedRows(before, after) {
  const currencies = [...new Set([...Object.keys(before), ...Object.keys(after)])].sort();
  return currencies.map((c) => row([c, cents({[c]: before[c] || 0}), cents({[c]: after[c] || 0})]));
}

$("shadow-refresh").addEventListener("click", async () => {
  try {
    const r = await api("/v1/shadow");
    $("shadow-summary").textContent = "shadow " + r.shadow_version + " (" + r.state + ", started by " + r.started_by +
      "): " + r.shadow_decisions + " shadow decisions, " + r.changed + " differ from live" +
      (r.clickhouse_shadow_decisions === undefined ? "" : "; " + r.clickhouse_shadow_decisions +
       " in ClickHouse's shadow table");
    fill("shadow-transitions", Object.entries(r.transitions).map(([name, n]) => row([name, n], [1])));
    fill("shadow-granted", grantedRows(r.granted_cents_before, r.granted_cents_after));
    say("shadow-message", "", true);
  } catch (error) { say("shadow-message", error.message); }
});

$("rank-refresh").addEventListener("click", async () => {
  const query = new URLSearchParams();
  if ($("rank-since").value.trim()) query.set("since", $("rank-since").value.trim());
  if ($("rank-until").value.trim()) query.set("until", $("rank-until").value.trim());
  try {
    const r = await api("/v1/rankings?" + query.toString());
    for (const group of ["households", "associates"]) {
      fill("rank-" + group, r[group].map((g) => row([g.key, g.claims, g.granted, g.denied, g.escalated,
                                                       cents(g.granted_cents)], [1, 2, 3, 4])));
    }
    say("rank-message", "", true);
  } catch (error) { say("rank-message", error.message); }
});

if (sessionStorage.getItem("remedy-token")) { say("signin-status", "token set for this tab", true); }
</script>
</body>
</html>
"""
