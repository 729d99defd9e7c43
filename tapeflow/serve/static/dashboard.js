// tapeflow dashboard: history from /api/v1 (the lake or ClickHouse), live rows from /ws/live (the
// flow's publisher relayed by the server). Prices and sizes arrive as 1e-9 integers.
"use strict";
const NANO = 1e9;
const LC = window.LightweightCharts;
const TIME_INTERVAL = /^[0-9]+[smhd]$/;
const MAX_PAGES = 10;
const HEATMAP_SNAPSHOTS = 300;  // five minutes of the 1 s grid

const S = {
  token: null, instruments: [], sel: null, interval: "1m", live: false, relayUp: false,
  inst: {},  // key -> per-instrument view state
  chart: null, candles: null, volume: null, cvd: null, markers: null,
};

function tokenInit() {
  const m = location.hash.match(/token=([^&]+)/);
  if (m) { sessionStorage.setItem("tapeflow-token", decodeURIComponent(m[1])); history.replaceState(null, "", location.pathname); }
  S.token = sessionStorage.getItem("tapeflow-token");
}
function headers() { return S.token ? { Authorization: "Bearer " + S.token } : {}; }
async function api(path, params) {
  const url = new URL("/api/v1/" + path, location.origin);
  for (const [k, v] of Object.entries(params || {})) if (v !== undefined && v !== null) url.searchParams.set(k, v);
  const r = await fetch(url, { headers: headers() });
  if (!r.ok) throw new Error(path + ": " + r.status + " " + (await r.text()));
  return r.json();
}
async function pages(path, params) {
  let rows = [], cursor = null;
  for (let i = 0; i < MAX_PAGES; i++) {
    const page = await api(path, { ...params, cursor, limit: 10000 });
    rows = rows.concat(page.rows);
    cursor = page.next_cursor;
    if (!cursor) break;
  }
  return rows;
}

const key = (venue, symbol) => venue + "|" + symbol;
const UNDEF = 9e18;  // UNDEF_PRICE (int64 max) after JSON.parse
const px = (n) => (n === null || n === undefined || n >= UNDEF) ? "-" : (n / NANO).toLocaleString(undefined, { maximumFractionDigits: 6 });
const sz = (n) => (n / NANO).toLocaleString(undefined, { maximumFractionDigits: 4 });
const hms = (ns) => new Date(Math.floor(ns / 1e6)).toISOString().slice(11, 23);
const el = (id) => document.getElementById(id);
function text(tag, value, cls) { const e = document.createElement(tag); e.textContent = value; if (cls) e.className = cls; return e; }

function view(k) {
  if (!S.inst[k]) S.inst[k] = { bars: new Map(), barRows: {}, snapshot: null, snaps: [], trades: [], tradeIds: new Set(), metric: null, cvd: new Map(),
    signals: new Map(), state: null, stateCounts: {}, rejects: {}, lastPubNs: null, source: "history" };
  return S.inst[k];
}
// the whole row: ns times lose their last bits as JS numbers, so two signals close in time and alike in
// kind, side and price would otherwise collide; history and stream carry the same columns in one order
function signalKey(r) { return JSON.stringify(r); }

// ---- applying rows (history and live take the same path)
function applyRow(table, r, live) {
  const k = key(r.venue, r.symbol);
  const v = view(k);
  if (k === S.sel && (table === "bar" || table === "metric" || table === "signal")) S.chartDirty = true;
  if (live) v.source = "live";
  if (table === "book_snapshot") {
    if (!v.snapshot || r.ts_event_ns >= v.snapshot.ts_event_ns) v.snapshot = r;
    const last = v.snaps[v.snaps.length - 1];
    if (!last || r.ts_event_ns > last.ts_event_ns) { v.snaps.push(r); if (v.snaps.length > HEATMAP_SNAPSHOTS) v.snaps.shift(); }
    else if (r.ts_event_ns < v.snaps[0].ts_event_ns || !v.snaps.some((x) => x.ts_event_ns === r.ts_event_ns)) {
      v.snaps.push(r); v.snaps.sort((a, b) => a.ts_event_ns - b.ts_event_ns);
      if (v.snaps.length > HEATMAP_SNAPSHOTS) v.snaps.splice(0, v.snaps.length - HEATMAP_SNAPSHOTS);
    }
    if (k === S.sel) S.heatDirty = true;
  }
  else if (table === "bar") {
    const byInterval = v.barRows[r.interval] || (v.barRows[r.interval] = new Map());
    const old = byInterval.get(r.ts_event_ns);
    if (!old || r.revision >= old.revision) byInterval.set(r.ts_event_ns, r);
  } else if (table === "trade") {
    const id = [r.ts_recv_ns, r.sequence, r.trade_id, r.price_nanos, r.size_nanos].join("|");
    if (v.tradeIds.has(id)) return;  // history reloaded over what the live stream already showed
    v.tradeIds.add(id); v.trades.push(r);
    if (v.trades.length > 200) for (const t of v.trades.splice(0, v.trades.length - 200))
      v.tradeIds.delete([t.ts_recv_ns, t.sequence, t.trade_id, t.price_nanos, t.size_nanos].join("|"));
  }
  else if (table === "metric") { if (!v.metric || r.ts_event_ns >= v.metric.ts_event_ns) v.metric = r; v.cvd.set(Math.floor(r.ts_event_ns / NANO), r.cvd_nanos / NANO); }
  else if (table === "signal") v.signals.set(signalKey(r), r);
  else if (table === "status") { v.state = { state: r.state, since_ns: r.ts_event_ns, detail: r.detail }; v.stateCounts[r.state] = (v.stateCounts[r.state] || 0) + 1; }
  else if (table === "rejected") v.rejects[r.reason] = (v.rejects[r.reason] || 0) + 1;
}

function applyHello(state) {
  for (const [k, s] of Object.entries(state.instruments || {})) {
    const [venue, symbol] = k.split("|");
    if (!S.instruments.find((i) => i.venue === venue && i.symbol === symbol)) S.instruments.push({ venue, symbol, datasets: [], live: true });
    const v = view(k);
    v.source = "live";
    if (s.snapshot) applyRow("book_snapshot", s.snapshot, true);
    for (const b of Object.values(s.bars || {})) applyRow("bar", b, true);
    for (const t of s.trades || []) applyRow("trade", t, true);
    if (s.metric) applyRow("metric", s.metric, true);
    for (const g of s.signals || []) applyRow("signal", g, true);
    if (s.state) v.state = s.state;
    v.stateCounts = { ...s.state_counts }; v.rejects = { ...s.rejects };
  }
  S.feed = state.feed || {};
}

// ---- the live stream
function connect() {
  const url = new URL("/ws/live", location.origin);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  if (S.token) url.searchParams.set("token", S.token);
  const ws = new WebSocket(url);
  ws.onmessage = (ev) => {
    const m = JSON.parse(ev.data);
    if (m.type === "hello") {
      S.live = m.live; if (m.live) { S.relayUp = m.state.connected; applyHello(m.state); fillSelectors(); liveAlerts(m.state.alerts || []); }
    } else if (m.type === "relay") {
      S.relayUp = m.connected; S.feedEnded = !m.connected;
      // the flow stopped (or the relay lost it): its lake now holds what the stream may have missed
      if (!m.connected && S.sel) loadHistory(S.sel).catch(showError);
    }
    else if (m.type === "rows" && m.table === "alert") {
      liveAlerts(m.rows);
    }
    else if (m.type === "rows") {
      S.relayUp = true; S.feedEnded = false;
      for (const r of m.rows) {
        if (!S.instruments.find((i) => i.venue === r.venue && i.symbol === r.symbol)) {
          S.instruments.push({ venue: r.venue, symbol: r.symbol, datasets: [], live: true }); fillSelectors();
        }
        applyRow(m.table, r, true);
      }
      const k = m.rows.length ? key(m.rows[0].venue, m.rows[0].symbol) : null;
      if (k) view(k).lastPubNs = m.pub_ns;
      window.__tapeflowMessages = (window.__tapeflowMessages || 0) + 1;
      window.__tapeflowLastPubNs = m.pub_ns;
      if (window.__tapeflowOnMessage) window.__tapeflowOnMessage(m);
    }
    schedule();
  };
  ws.onclose = () => { S.relayUp = false; schedule(); setTimeout(connect, 2000); };
}

// at most one render per RENDER_MS: at 10k rows/s a render per message would starve the socket
const RENDER_MS = 200;
let pending = false;
function schedule() {
  if (!pending) { pending = true; setTimeout(() => requestAnimationFrame(() => { pending = false; render(); }), RENDER_MS); }
}

// ---- history for the selected instrument
async function loadHistory(k) {
  let inst = S.instruments.find((i) => key(i.venue, i.symbol) === k);
  if (inst && !inst.last_date) {  // known from the stream only: ask the history store where it starts
    const found = (await api("instruments")).instruments.find((i) => key(i.venue, i.symbol) === k);
    if (found) Object.assign(inst, found);
  }
  if (!inst || !inst.last_date) return;
  const base = { venue: inst.venue, symbol: inst.symbol };
  const dayStart = inst.last_date + "T00:00:00Z";
  const bars = await pages("bars", { ...base, start: dayStart });
  for (const r of bars) applyRow("bar", r, false);
  const lastOpen = bars.length ? bars[bars.length - 1].ts_event_ns : null;
  const recent = lastOpen ? String(BigInt(Math.floor(lastOpen)) - 5000000000n) : dayStart;
  const heatStart = lastOpen ? String(BigInt(Math.floor(lastOpen)) - 300000000000n) : dayStart;
  for (const r of await pages("snapshots", { ...base, start: heatStart })) applyRow("book_snapshot", r, false);
  for (const r of (await api("trades", { ...base, start: recent, limit: 10000 })).rows) applyRow("trade", r, false);
  for (const r of await pages("metrics", { ...base, start: dayStart })) applyRow("metric", r, false);
  for (const r of await pages("signals", { ...base, start: dayStart })) applyRow("signal", r, false);
  const feed = await api("feed", base);
  const f = feed.feeds[0];
  const v = view(k);
  if (f && !v.state) { v.state = { state: f.state, since_ns: f.since_ns, detail: f.detail }; v.stateCounts = f.counts || {}; }
  if (!S.live) v.source = "history";
  fillSelectors();
  schedule();
  window.__tapeflowHistoryLoads = (window.__tapeflowHistoryLoads || 0) + 1;
}

// the alert feed: the delivery ledger (history) merged with the alerts the flow publishes live
const ALERTS = new Map();

function liveAlerts(payloads) {
  for (const a of payloads) {
    const had = ALERTS.get(a.alert_id) || {};
    ALERTS.set(a.alert_id, { ...had, alert_id: a.alert_id, at: a.created_ns, severity: a.severity, rule: a.rule,
      symbol: a.symbol, what: a.title + (a.suppressed ? ` (+${a.suppressed} suppressed)` : ""), live: true });
  }
  window.__tapeflowAlerts = [...ALERTS.values()].filter((a) => a.live).length;
  renderAlerts();
}

async function loadAlerts() {
  try {
    const page = await api("alerts", { limit: 200 });
    for (const r of page.rows) {
      const had = ALERTS.get(r.alert_id) || {};
      ALERTS.set(r.alert_id, { at: r.ts_recv_ns, what: "", live: false, ...had, alert_id: r.alert_id,
        severity: r.severity, rule: r.rule, symbol: r.symbol, outcome: `${r.channel}: ${r.outcome}` });
    }
    renderAlerts();
  } catch (e) { el("alerts").replaceChildren(text("li", String(e), "muted")); }
}

function renderAlerts() {
  const ul = el("alerts"); ul.replaceChildren();
  if (!ALERTS.size) ul.append(text("li", "no alerts in the delivery ledger", "muted"));
  for (const r of [...ALERTS.values()].sort((a, b) => b.at - a.at)) {
    const li = text("li", `${r.live ? "LIVE " : ""}${hms(r.at)} ${r.severity} ${r.rule} ${r.symbol} ` +
      `${r.what}${r.outcome ? ` (${r.outcome})` : ""} `);
    li.dataset.alertId = r.alert_id; li.dataset.live = String(r.live);
    const b = text("button", "ack");
    b.onclick = async (ev) => {
      ev.stopPropagation();
      const res = await fetch(`/api/v1/alerts/${encodeURIComponent(r.alert_id)}/ack`, { method: "POST",
        headers: { ...headers(), "Content-Type": "application/json" }, body: JSON.stringify({ by: "dashboard" }) });
      b.textContent = res.ok ? "acknowledged" : "ack failed";
    };
    li.append(b); ul.append(li);
  }
}

// the latest IV surface of every underlying (rows of one snapshot time), and the cross-strike signals
async function loadSurfaces() {
  const body = el("surfaces").querySelector("tbody");
  try {
    const rows = await pages("surfaces", {});
    const latest = new Map();
    for (const r of rows) {
      const k = key(r.venue, r.symbol);
      if (!latest.has(k) || r.ts_event_ns > latest.get(k)) latest.set(k, r.ts_event_ns);
    }
    const vol = (x) => (x === null || x === undefined) ? "-" : (100 * x).toFixed(2) + "%";
    body.replaceChildren();
    for (const r of rows.filter((r) => latest.get(key(r.venue, r.symbol)) === r.ts_event_ns)) {
      const tr = document.createElement("tr");
      for (const v of [r.venue + " " + r.symbol, hms(r.ts_event_ns), new Date(r.expiry_ns / 1e6).toISOString().slice(0, 10),
                       vol(r.atm_iv), vol(r.rr25), vol(r.bf25), r.n_strikes, r.reasons]) tr.append(text("td", String(v)));
      body.append(tr);
    }
    if (!rows.length) body.append(text("tr", "no option surfaces in the lake", "muted"));
    const flows = await api("signals", { kind: "cross_strike", limit: 1000 });
    el("cross-strike").textContent = `cross-strike signals: ${flows.rows.length}` +
      (flows.rows.length ? ` (latest ${hms(flows.rows[flows.rows.length - 1].ts_event_ns)} ` +
        `${flows.rows[flows.rows.length - 1].symbol}, conf ${Math.round(100 * flows.rows[flows.rows.length - 1].confidence)}%)` : "");
  } catch (e) { body.replaceChildren(text("tr", String(e), "muted")); }
}

// ---- rendering
function fillSelectors() {
  const sel = el("instrument");
  const keys = S.instruments.map((i) => key(i.venue, i.symbol));
  if (sel.options.length !== keys.length) {
    sel.replaceChildren(...keys.map((k) => { const o = text("option", k.replace("|", " ")); o.value = k; return o; }));
  }
  if (!S.sel && keys.length) S.sel = keys[0];
  sel.value = S.sel;
  const intervals = new Set();
  for (const v of Object.values(S.inst)) for (const i of Object.keys(v.barRows)) if (TIME_INTERVAL.test(i)) intervals.add(i);
  const iv = el("interval");
  const list = [...intervals].sort((a, b) => seconds(a) - seconds(b));
  if (iv.options.length !== list.length) iv.replaceChildren(...list.map((i) => { const o = text("option", i); o.value = i; return o; }));
  if (list.length && !list.includes(S.interval)) S.interval = list.includes("1m") ? "1m" : list[0];
  iv.value = S.interval;
}
function seconds(i) { const n = parseInt(i, 10); return n * { s: 1, m: 60, h: 3600, d: 86400 }[i.slice(-1)]; }

function lastBar(v) {
  const m = v.barRows[S.interval];
  if (!m || !m.size) return null;
  let best = null;
  for (const r of m.values()) if (!best || r.ts_event_ns > best.ts_event_ns) best = r;
  return best;
}

function feedState(k) {
  const v = view(k);
  if (S.live && S.feed && S.feed[k] && !v.state) return S.feedEnded ? "ended" : (S.relayUp ? "streaming" : "ended");
  if (v.state) return v.state.state;
  if (S.live && v.source === "live") return S.relayUp && !S.feedEnded ? "streaming" : "ended";
  return "no status rows";
}

function render() {
  const live = S.live && S.relayUp;
  el("mode").textContent = S.live ? (live ? "LIVE" : "LIVE: flow stopped") : "HISTORICAL";
  el("mode").className = "badge " + (live ? "live" : "historical");
  el("relay").textContent = S.live ? (S.relayUp ? "relaying the flow" : "last state shown; waiting for the flow's publisher")
    : "no live relay: history only";
  renderOverview();
  if (!S.sel) return;
  const v = view(S.sel);
  el("title").textContent = S.sel.replace("|", " ");
  el("chart-source").textContent = v.source === "live" ? "live + history" : "history";
  el("chart-source").className = "badge " + (v.source === "live" ? "live" : "historical");
  const snap = v.snapshot;
  const bid = snap && snap.bid_price_nanos.length ? snap.bid_price_nanos[0] : null;
  const ask = snap && snap.ask_price_nanos.length ? snap.ask_price_nanos[0] : null;
  el("best-bid").textContent = px(bid); el("best-bid").dataset.nanos = bid === null ? "" : String(bid);
  el("best-ask").textContent = px(ask); el("best-ask").dataset.nanos = ask === null ? "" : String(ask);
  el("best-bid-size").textContent = bid === null ? "-" : sz(snap.bid_size_nanos[0]);
  el("best-ask-size").textContent = ask === null ? "-" : sz(snap.ask_size_nanos[0]);
  const b = lastBar(v);
  const lb = el("last-bar");
  if (b) {
    lb.textContent = `last ${S.interval} bar ${hms(b.ts_event_ns)}  O ${px(b.open_price_nanos)} H ${px(b.high_price_nanos)} ` +
      `L ${px(b.low_price_nanos)} C ${px(b.close_price_nanos)} V ${sz(b.volume_nanos)}`;
    Object.assign(lb.dataset, { open: b.open_price_nanos, high: b.high_price_nanos, low: b.low_price_nanos,
      close: b.close_price_nanos, volume: b.volume_nanos, interval: S.interval, ts: b.ts_event_ns });
  }
  renderChart(v); renderLadder(snap); renderHeatmap(v); renderTape(v); renderFeed(v); renderSignals(v);
}

function renderOverview() {
  const tb = el("overview").querySelector("tbody");
  tb.replaceChildren();
  for (const i of S.instruments) {
    const k = key(i.venue, i.symbol), v = view(k), s = v.snapshot, m = v.metric;
    const last = v.trades.length ? v.trades[v.trades.length - 1].price_nanos : (lastBar(v) || {}).close_price_nanos;
    const tr = document.createElement("tr");
    tr.dataset.key = k; if (k === S.sel) tr.className = "selected";
    tr.append(text("td", k.replace("|", " ")), text("td", v.source === "live" ? "live" : "history"), text("td", px(last)),
      text("td", px(s && s.bid_price_nanos[0])), text("td", px(s && s.ask_price_nanos[0])),
      text("td", m && m.spread_bps !== null ? m.spread_bps.toFixed(2) : "-"), text("td", m ? sz(m.cvd_nanos) : "-"),
      text("td", String(v.signals.size)), text("td", feedState(k)));
    tr.onclick = () => select(k);
    tb.append(tr);
  }
}

function ensureChart() {
  if (S.chart) return;
  S.chart = LC.createChart(el("chart"), { layout: { background: { color: "#161c22" }, textColor: "#d8dee4" },
    grid: { vertLines: { color: "#1f272f" }, horzLines: { color: "#1f272f" } },
    timeScale: { timeVisible: true, secondsVisible: true }, autoSize: true });
  S.candles = S.chart.addSeries(LC.CandlestickSeries, {});
  S.volume = S.chart.addSeries(LC.HistogramSeries, { priceFormat: { type: "volume" }, priceScaleId: "vol" }, 0);
  S.volume.priceScale().applyOptions({ scaleMargins: { top: 0.8, bottom: 0 } });
  S.cvd = S.chart.addSeries(LC.LineSeries, { color: "#e0b000", lineWidth: 1, title: "CVD" }, 1);
  S.markers = LC.createSeriesMarkers(S.candles, []);
}

// lightweight-charts takes only strictly ascending times and finite values: anything else (a null, an
// unordered or repeated time) fails later inside its render loop with a bare "Value is null"
function chartPoints(points, fields) {
  const ok = points.filter((p) => Number.isFinite(p.time) && fields.every((f) => Number.isFinite(p[f])));
  ok.sort((a, b) => a.time - b.time);
  const out = [];
  for (const p of ok) {
    if (out.length && out[out.length - 1].time === p.time) out[out.length - 1] = p;  // the later row wins
    else out.push(p);
  }
  if (out.length < points.length) {
    window.__tapeflowChartDropped = (window.__tapeflowChartDropped || 0) + points.length - out.length;
    console.warn(`chart: ${points.length - out.length} points not drawn (a value that is not a number, or a repeated time)`);
  }
  return out;
}

function renderChart(v) {
  ensureChart();
  if (!S.chartDirty && S.chartFor === S.sel + S.interval) return;
  S.chartDirty = false; S.chartFor = S.sel + S.interval;
  const m = v.barRows[S.interval] || new Map();
  const rows = [...m.values()].sort((a, b) => a.ts_event_ns - b.ts_event_ns);
  const t = (r) => Math.floor(r.ts_event_ns / NANO);
  S.candles.setData(chartPoints(rows.map((r) => ({ time: t(r), open: r.open_price_nanos / NANO,
    high: r.high_price_nanos / NANO, low: r.low_price_nanos / NANO, close: r.close_price_nanos / NANO })),
  ["open", "high", "low", "close"]));
  S.volume.setData(chartPoints(rows.map((r) => ({ time: t(r), value: r.volume_nanos / NANO,
    color: r.buy_volume_nanos >= r.sell_volume_nanos ? "#2a9d5c80" : "#b23a4880" })), ["value"]));
  S.cvd.setData(chartPoints([...v.cvd.entries()].map(([time, value]) => ({ time, value })), ["value"]));
  const step = seconds(S.interval);
  S.markers.setMarkers([...v.signals.values()].map((g) => ({
    time: Math.floor(g.ts_event_ns / NANO / step) * step, position: g.side < 0 ? "aboveBar" : "belowBar",
    color: g.side < 0 ? "#ef6f7d" : "#4fd18b", shape: g.side < 0 ? "arrowDown" : "arrowUp",
    text: `${g.kind} ${(g.confidence * 100).toFixed(0)}%` })).filter((g) => Number.isFinite(g.time))
    .sort((a, b) => a.time - b.time));
}

function renderLadder(snap) {
  const tb = el("ladder").querySelector("tbody");
  tb.replaceChildren();
  if (!snap) { tb.append(Object.assign(document.createElement("tr"), { innerHTML: "<td>no snapshot yet</td>" })); return; }
  el("ladder-time").textContent = hms(snap.ts_event_ns);
  const sizes = snap.bid_size_nanos.concat(snap.ask_size_nanos);
  const max = Math.max(1, ...sizes);
  const row = (side, p, s) => {
    const tr = document.createElement("tr"); tr.className = side;
    const bar = document.createElement("td"); bar.className = "bar";
    const fill = document.createElement("div"); fill.className = "sizebar"; fill.style.width = (100 * s / max).toFixed(1) + "%";
    bar.append(fill);
    const cells = [text("td", px(p), "px"), text("td", sz(s))];
    tr.append(...(side === "ask" ? [...cells, bar] : [...cells, bar]));
    tb.append(tr);
  };
  for (let i = snap.ask_price_nanos.length - 1; i >= 0; i--) row("ask", snap.ask_price_nanos[i], snap.ask_size_nanos[i]);
  for (let i = 0; i < snap.bid_price_nanos.length; i++) row("bid", snap.bid_price_nanos[i], snap.bid_size_nanos[i]);
}

function renderHeatmap(v) {
  if (!S.heatDirty && S.heatFor === S.sel) return;
  S.heatDirty = false; S.heatFor = S.sel;
  const canvas = el("heatmap"), ctx = canvas.getContext("2d");
  canvas.width = canvas.clientWidth || 400;
  const W = canvas.width, H = canvas.height, snaps = v.snaps;
  ctx.clearRect(0, 0, W, H);
  if (!snaps.length) return;
  let lo = Infinity, hi = -Infinity, top = 1;
  for (const s of snaps) {
    for (const p of s.bid_price_nanos.concat(s.ask_price_nanos)) { lo = Math.min(lo, p); hi = Math.max(hi, p); }
    for (const q of s.bid_size_nanos.concat(s.ask_size_nanos)) top = Math.max(top, q);
  }
  const span = Math.max(hi - lo, 1), colW = Math.max(1, W / snaps.length), rowH = Math.max(2, H / 40);
  const y = (p) => H - rowH - (p - lo) / span * (H - rowH);
  snaps.forEach((s, i) => {
    const x = i * colW;
    const side = (prices, sizes, rgb) => prices.forEach((p, j) => {
      ctx.fillStyle = `rgba(${rgb},${(0.15 + 0.85 * Math.sqrt(sizes[j] / top)).toFixed(3)})`;
      ctx.fillRect(x, y(p), Math.ceil(colW), rowH);
    });
    side(s.bid_price_nanos, s.bid_size_nanos, "42,157,92");
    side(s.ask_price_nanos, s.ask_size_nanos, "178,58,72");
  });
  ctx.fillStyle = "#9fb0c0"; ctx.font = "10px sans-serif";
  ctx.fillText(px(hi), 2, 10); ctx.fillText(px(lo), 2, H - 2);
}

function renderTape(v) {
  const tb = el("tape").querySelector("tbody");
  tb.replaceChildren();
  const trades = v.trades.slice(-60).reverse();
  const sorted = v.trades.map((t) => t.size_nanos).sort((a, b) => a - b);
  const q = (f) => sorted.length ? sorted[Math.floor(f * (sorted.length - 1))] : 0;
  const p50 = q(0.5), p90 = q(0.9);
  for (const t of trades) {
    const side = t.aggressor_side === 66 ? "buy" : (t.aggressor_side === 65 ? "sell" : "");  // 'B' / 'A'

    const cls = t.size_nanos >= p90 ? "size-l" : (t.size_nanos >= p50 ? "size-m" : "size-s");
    const tr = document.createElement("tr"); tr.className = cls;
    tr.append(text("td", hms(t.ts_event_ns)), text("td", px(t.price_nanos), side), text("td", sz(t.size_nanos)), text("td", side));
    tb.append(tr);
  }
}

function renderFeed(v) {
  const state = feedState(S.sel);
  const fs = el("feed-state");
  fs.textContent = state;
  fs.className = ["connected", "synced", "recovered", "streaming"].includes(state) ? "state-ok"
    : (["disconnected", "resyncing", "stale", "degraded", "gap", "skew", "checksum_mismatch"].includes(state) ? "state-bad" : "");
  el("feed-since").textContent = v.state && v.state.since_ns ? "since " + hms(v.state.since_ns) : "";
  el("feed-detail").textContent = v.state ? v.state.detail || "" : "";
  el("feed-lag").textContent = v.lastPubNs ? `${Math.max(0, Date.now() - v.lastPubNs / 1e6).toFixed(0)} ms since the flow published` : "-";
  el("feed-counts").textContent = "events: " + (Object.entries(v.stateCounts).map(([s, n]) => `${s} ${n}`).join(", ") || "none");
  el("feed-rejects").textContent = "rejects: " + (Object.entries(v.rejects).map(([s, n]) => `${s} ${n}`).join(", ") || "none");
}

function renderSignals(v) {
  el("signal-count").textContent = String(v.signals.size);
  const ul = el("signals"); ul.replaceChildren();
  for (const g of [...v.signals.values()].sort((a, b) => b.ts_event_ns - a.ts_event_ns).slice(0, 100)) {
    const li = text("li", `${hms(g.ts_event_ns)} ${g.kind} ${g.side > 0 ? "bid" : g.side < 0 ? "ask" : ""} ` +
      `${px(g.price_nanos)} conf ${(g.confidence * 100).toFixed(0)}%`);
    li.onclick = () => {
      let ev = g.evidence; try { ev = JSON.stringify(JSON.parse(g.evidence), null, 1); } catch (e) { /* shown as sent */ }
      el("evidence").textContent = `${g.kind} (${g.detector}) score ${g.score}\n${ev}`;
    };
    ul.append(li);
  }
}

function select(k) { S.sel = k; schedule(); loadHistory(k).catch(showError); }
function showError(e) { el("relay").textContent = String(e); }

async function main() {
  tokenInit();
  el("instrument").onchange = (e) => select(e.target.value);
  el("interval").onchange = (e) => { S.interval = e.target.value; schedule(); };
  try {
    const found = await api("instruments");
    S.instruments = found.instruments;
    fillSelectors();
    if (S.sel) await loadHistory(S.sel);
    for (const i of S.instruments.slice(0, 50)) { const k = key(i.venue, i.symbol); if (k !== S.sel) loadHistory(k).catch(showError); }
  } catch (e) { showError(e); }
  loadAlerts();
  loadSurfaces();
  connect();
  schedule();
  window.__tapeflowReady = true;
}
main();
