// gasmon dashboard: plain JavaScript, no build step. Reads the query API (GET series, devices,
// warnings, alerts, alarms) on its own origin with the API key kept in localStorage (given once, or
// by a `#key=` viewer link), and redraws every 10 seconds.
"use strict";

(() => {
  const REFRESH_MS = 10_000;
  // tick: the x-axis step, so labels fall on round times (quarter hours, hours, ...).
  const RANGES = {
    "1h": { ms: 3_600_000, interval: "1m", tick: 15 * 60_000 },
    "6h": { ms: 6 * 3_600_000, interval: "5m", tick: 3_600_000 },
    "24h": { ms: 24 * 3_600_000, interval: "15m", tick: 6 * 3_600_000 },
    "7d": { ms: 7 * 24 * 3_600_000, interval: "1h", tick: 24 * 3_600_000 },
  };
  const GAS_ORDER = ["no2", "co", "c2h5oh", "h2"];
  const GAS_LABELS = { no2: "NO₂", co: "CO", c2h5oh: "C₂H₅OH", h2: "H₂" };
  const WARNINGS_PAGE = 50;
  const ALARMS_PAGE = 20;
  const OPEN_ALARMS_MAX = 200;
  const KEY_STORE = "gasmon.apiKey";
  const RANGE_STORE = "gasmon.range";

  const $ = (selector) => document.querySelector(selector);
  const charts = new Map(); // gas -> { chart, card }
  const state = {
    range: RANGES[localStorage.getItem(RANGE_STORE)] ? localStorage.getItem(RANGE_STORE) : "24h",
    warningsWanted: WARNINGS_PAGE,
    alarmsWanted: ALARMS_PAGE,
    alarmsConfigured: null, // unknown until GET /alarms answers; false: show threshold warnings
    timer: null,
    running: false,
    again: false,
    refreshes: 0,
  };

  // ---- configuration: the API key, kept in this browser for this origin only ----
  // The API is always the page's own origin and path: the key is never sent anywhere else (the
  // CSP says `connect-src 'self'` too). An `?api=` base is no longer read, and one kept by an
  // older version of the page is forgotten.

  localStorage.removeItem("gasmon.apiBase");

  // A viewer link `https://<dashboard>/#key=<key>` hands the page its key: a fragment is never sent
  // over the network. The key is kept for this origin and the fragment leaves the address bar.
  function takeKeyFromFragment() {
    if (!location.hash.startsWith("#")) return false;
    const fragment = new URLSearchParams(location.hash.slice(1));
    const key = (fragment.get("key") || "").trim();
    if (!fragment.has("key")) return false;
    if (key) localStorage.setItem(KEY_STORE, key);
    history.replaceState(history.state, "", location.pathname + location.search);
    return Boolean(key);
  }
  takeKeyFromFragment();
  window.addEventListener("hashchange", () => {
    if (takeKeyFromFragment()) {
      const dialog = $("#settings");
      if (dialog.open) dialog.close();
      refreshSoon(0);
    }
  });

  function apiKey() {
    return localStorage.getItem(KEY_STORE) || "";
  }

  function apiBase() {
    return new URL(".", location.href);
  }

  function askForSettings(problem) {
    const dialog = $("#settings");
    $("#api-key").value = apiKey();
    const box = $("#settings-problem");
    box.textContent = problem || "";
    box.hidden = !problem;
    if (!dialog.open) dialog.showModal();
    $("#api-key").focus();
  }

  $("#settings-form").addEventListener("submit", () => {
    localStorage.setItem(KEY_STORE, $("#api-key").value.trim());
    refreshSoon(0);
  });
  $("#settings-button").addEventListener("click", () => askForSettings());

  // ---- the API ----

  class AuthError extends Error {}

  class ApiError extends Error {
    constructor(message, status) {
      super(message);
      this.status = status;
    }
  }

  async function api(path, query) {
    const url = new URL(path, apiBase());
    if (url.origin !== location.origin) throw new ApiError(`${path} is not on this site; not sent`, 0);
    for (const [name, value] of Object.entries(query || {})) {
      if (value !== undefined && value !== null && value !== "") url.searchParams.set(name, value);
    }
    const response = await fetch(url, { headers: { "x-api-key": apiKey(), accept: "application/json" } });
    if (response.status === 401 || response.status === 403) {
      throw new AuthError(`the API refused the key (HTTP ${response.status})`);
    }
    let body = null;
    try {
      body = await response.json();
    } catch {
      body = null;
    }
    if (!response.ok) {
      const detail = body && body.details && body.details.length
        ? `: ${body.details.map((d) => `${d.path} ${d.problem}`).join("; ")}`
        : "";
      throw new ApiError(
        `${path} answered ${response.status} ${(body && body.error) || response.statusText}${detail}`,
        response.status,
      );
    }
    return body;
  }

  async function allPages(path, query, key, maxItems) {
    const items = [];
    let cursor = null;
    let first = null;
    for (;;) {
      const page = await api(path, { ...query, cursor });
      first = first || page;
      items.push(...page[key]);
      cursor = page.next_cursor;
      if (!cursor || items.length >= maxItems) return { items, first, more: Boolean(cursor) };
    }
  }

  // ---- formatting ----

  const timeOnly = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
  const dayOnly = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric" });
  const dayTime = new Intl.DateTimeFormat(undefined, {
    month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", hourCycle: "h23",
  });
  const full = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });

  function duration(ms) {
    const minutes = Math.floor(Math.max(0, ms) / 60_000);
    if (minutes < 1) return `${Math.max(0, Math.round(ms / 1000))} s`;
    if (minutes < 60) return `${minutes} min`;
    if (minutes < 24 * 60) return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
    return `${Math.floor(minutes / 1440)} d ${Math.floor((minutes % 1440) / 60)} h`;
  }

  function ago(iso) {
    if (!iso) return "never";
    const seconds = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
    if (seconds < 60) return `${seconds} s ago`;
    if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
    if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
    return `${Math.floor(seconds / 86400)} d ago`;
  }

  function number(value) {
    if (value === null || value === undefined) return "–";
    return Math.abs(value) >= 100 ? value.toFixed(0) : value.toFixed(value % 1 ? 2 : 0);
  }

  function gasLabel(gas) {
    return GAS_LABELS[gas] || gas;
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (name === "class") node.className = value;
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function locationEl(device) {
    if (device.lat === null || device.lat === undefined) return device.gps || "–";
    const text = `${device.lat.toFixed(5)}, ${device.lon.toFixed(5)}`;
    const map = `https://www.openstreetmap.org/?mlat=${device.lat}&mlon=${device.lon}#map=16/${device.lat}/${device.lon}`;
    return el("a", { href: map, target: "_blank", rel: "noopener noreferrer", title: device.gps }, text);
  }

  function timeEl(iso) {
    if (!iso) return el("time", {}, "–");
    return el("time", { datetime: iso, title: full.format(new Date(iso)) }, dayTime.format(new Date(iso)));
  }

  // ---- charts ----

  function orderedGases(thresholds, devices) {
    const seen = new Set(Object.keys(thresholds || {}));
    for (const device of devices) for (const gas of Object.keys(device.values || {})) seen.add(gas);
    const known = GAS_ORDER.filter((gas) => seen.has(gas));
    return known.concat([...seen].filter((gas) => !GAS_ORDER.includes(gas)).sort());
  }

  function chartCard(gas) {
    if (charts.has(gas)) return charts.get(gas);
    const canvas = el("canvas", { "data-gas": gas, "aria-label": `${gasLabel(gas)} over time`, role: "img" });
    const empty = el("div", { class: "empty muted" }, "no readings in this range");
    const latest = el("span", { class: "latest muted" });
    const card = el(
      "article",
      { class: "chart", "data-gas": gas },
      el("header", {}, el("h3", {}, gasLabel(gas)), latest),
      el("div", { class: "canvas-box" }, canvas, empty),
    );
    $("#charts").append(card);
    const look = { sparse: true }; // few points: draw dots too, so a lone reading between gaps shows
    const band = "rgba(31, 111, 235, 0.14)";
    const edge = "rgba(31, 111, 235, 0.45)";
    const chart = new Chart(canvas, {
      type: "line",
      data: {
        datasets: [
          {
            label: "average", data: [], borderColor: "#1f6feb", backgroundColor: "#1f6feb", borderWidth: 2,
            spanGaps: false, pointRadius: () => (look.sparse ? 3 : 0),
          },
          {
            label: "max", data: [], borderColor: edge, borderWidth: 1, fill: false, backgroundColor: band,
            pointBackgroundColor: edge, pointRadius: () => (look.sparse ? 2 : 0),
          },
          {
            label: "min", data: [], borderColor: edge, borderWidth: 1, fill: "-1", backgroundColor: band,
            pointBackgroundColor: edge, pointRadius: () => (look.sparse ? 2 : 0),
          },
          { label: "threshold", data: [], borderColor: "#cf222e", borderDash: [6, 4], borderWidth: 1.5, pointRadius: 0 },
        ],
      },
      options: {
        animation: false,
        parsing: false,
        maintainAspectRatio: false,
        interaction: { mode: "nearest", axis: "x", intersect: false },
        scales: {
          x: {
            type: "linear",
            ticks: { maxRotation: 0, callback: (value) => tickLabel(value) },
            // Labels on round times (quarter hours, hours, ...) rather than wherever the range starts.
            afterBuildTicks: (scale) => {
              const step = RANGES[state.range].tick;
              const ticks = [];
              for (let value = Math.ceil(scale.min / step) * step; value <= scale.max; value += step) ticks.push({ value });
              scale.ticks = ticks;
            },
            grid: { display: false },
          },
          y: { beginAtZero: true, ticks: { maxTicksLimit: 5 } },
        },
        plugins: {
          legend: { display: false },
          tooltip: {
            filter: (item) => item.parsed.y !== null,
            callbacks: {
              title: (items) => (items.length ? full.format(new Date(items[0].parsed.x)) : ""),
              label: (item) => `${item.dataset.label}: ${number(item.parsed.y)}`,
            },
          },
        },
      },
    });
    const entry = { chart, card, canvas, empty, latest, look };
    charts.set(gas, entry);
    return entry;
  }

  function tickLabel(ms) {
    return RANGES[state.range].ms > 24 * 3_600_000 ? dayOnly.format(new Date(ms)) : timeOnly.format(new Date(ms));
  }

  function drawSeries(series, latestValue) {
    const entry = chartCard(series.gas);
    const points = series.points.map((p) => ({ x: Date.parse(p.start), p }));
    const filled = points.filter(({ p }) => p.count > 0);
    const [average, max, min, threshold] = entry.chart.data.datasets;
    average.data = points.map(({ x, p }) => ({ x, y: p.avg }));
    max.data = points.map(({ x, p }) => ({ x, y: p.max }));
    min.data = points.map(({ x, p }) => ({ x, y: p.min }));
    entry.look.sparse = filled.length < 30;
    const start = Date.parse(series.start);
    const end = Date.parse(series.end);
    threshold.data = series.threshold === null ? [] : [{ x: start, y: series.threshold }, { x: end, y: series.threshold }];
    const scales = entry.chart.options.scales;
    scales.x.min = start;
    scales.x.max = end;
    const peak = Math.max(0, ...filled.map(({ p }) => p.max));
    scales.y.suggestedMax = Math.max(peak, series.threshold || 0) * 1.08 || 1;
    entry.chart.update("none");

    entry.canvas.dataset.points = String(filled.length);
    entry.canvas.dataset.readings = String(filled.reduce((sum, { p }) => sum + p.count, 0));
    entry.empty.hidden = filled.length > 0;
    const over = latestValue !== undefined && series.threshold !== null && latestValue >= series.threshold;
    entry.latest.className = `latest ${over ? "over" : "muted"}`;
    entry.latest.textContent =
      (latestValue === undefined ? "" : `latest ${number(latestValue)}`) +
      (series.threshold === null ? "" : ` · threshold ${number(series.threshold)}`);
  }

  // ---- tables and lists ----

  function drawDevices(devices, thresholds) {
    const body = $("#devices tbody");
    body.replaceChildren(
      ...devices.map((device) => {
        const values = el(
          "div",
          { class: "values" },
          ...Object.entries(device.values || {})
            .sort(([a], [b]) => orderedGases(thresholds, []).indexOf(a) - orderedGases(thresholds, []).indexOf(b))
            .map(([gas, reading]) =>
              el(
                "span",
                {
                  class: device.over_threshold.includes(gas) ? "value over" : "value",
                  title: `${gasLabel(gas)} at ${full.format(new Date(reading.at))}, sensor ${reading.sensorid}`,
                },
                `${gasLabel(gas)} ${number(reading.value)}`,
              ),
            ),
        );
        const since = device.status_since ? ` since ${full.format(new Date(device.status_since))}` : "";
        const reason = device.disconnect_reason ? ` (${device.disconnect_reason})` : "";
        return el(
          "tr",
          { class: device.status, "data-device": device.device, "data-status": device.status },
          el("td", { "data-label": "Device" }, device.device),
          el(
            "td",
            { "data-label": "Status" },
            el("span", { class: `pill ${device.status}`, title: `${device.status}${since}${reason}` }, device.status),
          ),
          el(
            "td",
            { "data-label": "Last seen" },
            el("span", { title: device.last_seen ? full.format(new Date(device.last_seen)) : "" }, ago(device.last_seen)),
          ),
          el("td", { "data-label": "Last values" }, values),
          el("td", { "data-label": "Group" }, device.groupid || "–"),
          el("td", { "data-label": "Location" }, locationEl(device)),
        );
      }),
    );
    $("#devices-empty").hidden = devices.length > 0;
  }

  function drawWarnings(warnings, more) {
    $("#warnings").replaceChildren(
      ...warnings.map((w) =>
        el(
          "li",
          { "data-gas": w.gas, "data-device": w.device },
          timeEl(w.at),
          el(
            "span",
            { class: "what" },
            el("strong", {}, `${gasLabel(w.gas)} ${number(w.value)}`),
            ` ≥ ${number(w.threshold)} on ${w.device}`,
            w.groupid ? ` (group ${w.groupid})` : "",
          ),
        ),
      ),
    );
    $("#warnings-empty").hidden = warnings.length > 0;
    $("#warnings-more").hidden = !more;
  }

  // Open alarms: what is wrong now, with how long and how high. Closed: when, how long, how high.
  function alarmItem(a) {
    const start = Date.parse(a.started_at);
    const open = a.state === "open";
    const end = open ? Date.now() : Date.parse(a.ended_at);
    const level = a.level === "critical" && a.critical !== null && a.critical !== undefined
      ? `critical ≥ ${number(a.critical)}`
      : `warning ≥ ${number(a.threshold)}`;
    // The time column shows the start; the detail says how long, and until when once closed.
    const sameDay = new Date(start).toDateString() === new Date(end).toDateString();
    const when = open
      ? `open for ${duration(end - start)}`
      : `until ${(sameDay ? timeOnly : dayTime).format(new Date(end))} (${duration(end - start)})`;
    return el(
      "li",
      {
        class: `alarm ${a.state} ${a.level}`,
        "data-alarm": a.alarm_id,
        "data-state": a.state,
        "data-level": a.level,
        "data-gas": a.gas,
        "data-device": a.device,
      },
      timeEl(a.started_at),
      el(
        "span",
        { class: "what" },
        el("span", { class: `level ${a.level}` }, a.level),
        el("strong", {}, gasLabel(a.gas)),
        `on ${a.device}`,
        el("span", { class: "detail" }, `${when} · peak ${number(a.peak)} (${level})`),
      ),
    );
  }

  function drawAlarms(open, closed) {
    // Critical alarms above warnings; within a level, the API's order (newest first).
    const byLevel = [...open.items].sort((a, b) => (b.level === "critical") - (a.level === "critical"));
    $("#alarms-open").replaceChildren(...byLevel.map(alarmItem));
    $("#alarms-open-empty").hidden = open.items.length > 0;
    $("#alarms-closed").replaceChildren(...closed.items.map(alarmItem));
    const empty = $("#alarms-closed-empty");
    empty.textContent = `No alarm closed in the last ${state.range}.`;
    empty.hidden = closed.items.length > 0;
    $("#alarms-more").hidden = !closed.more;
    $("#alarms-title small").textContent = `open now, and closed ones started in the last ${state.range}`;
  }

  // Alarm history, or null when this API keeps none (no alarm table, or an API without the route).
  async function alarms(since) {
    try {
      const [open, closed] = await Promise.all([
        allPages("alarms", { state: "open", limit: OPEN_ALARMS_MAX }, "alarms", OPEN_ALARMS_MAX),
        allPages("alarms", { state: "closed", since, limit: ALARMS_PAGE }, "alarms", state.alarmsWanted),
      ]);
      return open.first.configured ? { open, closed } : null;
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) return null;
      throw error;
    }
  }

  function showAlarmsOrWarnings(configured) {
    state.alarmsConfigured = configured;
    $("#alarms-section").hidden = !configured;
    $("#warnings-section").hidden = configured;
  }

  function drawAlerts(page) {
    $("#alerts").replaceChildren(
      ...page.alerts.map((a) =>
        el(
          "li",
          { "data-device": a.client_id },
          timeEl(a.disconnected_at),
          el(
            "span",
            { class: "what" },
            el("strong", {}, a.client_id),
            ` disconnected${a.reason ? ` (${a.reason})` : ""}`,
            a.reconnected_at ? `, back ${dayTime.format(new Date(a.reconnected_at))}` : ", not back yet",
          ),
        ),
      ),
    );
    const empty = $("#alerts-empty");
    empty.textContent = page.presence
      ? "No disconnect alert in the last 7 days."
      : "Presence is not configured for this API: no disconnect alerts to show.";
    empty.hidden = page.alerts.length > 0;
  }

  // ---- refresh loop ----

  async function refresh() {
    if (!apiKey()) {
      askForSettings();
      return false;
    }
    const range = RANGES[state.range];
    const since = new Date(Date.now() - range.ms).toISOString();
    // With alarm history the warnings list is not shown; one warning still brings the thresholds.
    const warningsLimit = state.alarmsConfigured ? 1 : WARNINGS_PAGE;
    const [devices, warnings, alerts, history] = await Promise.all([
      allPages("devices", { limit: 200 }, "devices", 2000),
      allPages("warnings", { since, limit: warningsLimit }, "warnings", state.alarmsConfigured ? 1 : state.warningsWanted),
      api("alerts", { limit: 20 }),
      alarms(since),
    ]);
    const thresholds = warnings.first.thresholds || {};
    const latestByGas = {};
    for (const device of devices.items) {
      for (const [gas, reading] of Object.entries(device.values || {})) {
        if (!latestByGas[gas] || reading.at > latestByGas[gas].at) latestByGas[gas] = reading;
      }
    }
    const gases = orderedGases(thresholds, devices.items);
    const series = await Promise.all(gases.map((gas) => api("series", { gas, start: since, interval: range.interval })));
    series.forEach((s) => drawSeries(s, latestByGas[s.gas] && latestByGas[s.gas].value));
    drawDevices(devices.items, thresholds);
    if (history) drawAlarms(history.open, history.closed);
    else drawWarnings(warnings.items, warnings.more);
    const switched = state.alarmsConfigured !== null && state.alarmsConfigured !== Boolean(history);
    showAlarmsOrWarnings(Boolean(history));
    if (switched && !history) state.again = true; // alarms went away: fetch the full warnings list now
    drawAlerts(alerts);
    $("#warnings-title small").textContent = `readings at or above threshold, last ${state.range}`;
    return true;
  }

  async function cycle() {
    if (state.running) {
      state.again = true; // a range change during a refresh: run once more when it ends
      return;
    }
    state.running = true;
    state.again = false;
    clearTimeout(state.timer);
    try {
      if (await refresh()) {
        $("#error").hidden = true;
        $("#updated").textContent = `updated ${timeOnly.format(new Date())}`;
        state.refreshes += 1;
        document.body.dataset.refreshes = String(state.refreshes); // for people and tests alike
      }
    } catch (error) {
      if (error instanceof AuthError) {
        askForSettings(`${error.message}. Enter a valid API key.`);
      } else {
        const banner = $("#error");
        banner.textContent = `Could not refresh: ${error.message}. Showing the last data; retrying.`;
        banner.hidden = false;
      }
    } finally {
      state.running = false;
      state.timer = setTimeout(cycle, state.again ? 0 : REFRESH_MS);
    }
  }

  function refreshSoon(delay) {
    clearTimeout(state.timer);
    state.timer = setTimeout(cycle, delay);
  }

  for (const button of document.querySelectorAll("[data-range]")) {
    button.setAttribute("aria-pressed", String(button.dataset.range === state.range));
    button.addEventListener("click", () => {
      state.range = button.dataset.range;
      localStorage.setItem(RANGE_STORE, state.range);
      for (const other of document.querySelectorAll("[data-range]")) {
        other.setAttribute("aria-pressed", String(other === button));
      }
      refreshSoon(0);
    });
  }
  $("#alarms-more").addEventListener("click", () => {
    state.alarmsWanted += ALARMS_PAGE;
    refreshSoon(0);
  });
  $("#warnings-more").addEventListener("click", () => {
    state.warningsWanted += WARNINGS_PAGE;
    refreshSoon(0);
  });
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") refreshSoon(0);
  });

  refreshSoon(0);
})();
