// gasmon dashboard: plain JavaScript, no build step. Reads the query API (GET config, series,
// devices, warnings, alerts, alarms) on its own origin with the API key kept in localStorage (given
// once, or by a `#key=` viewer link), and redraws every 10 seconds.
"use strict";

(() => {
  const REFRESH_MS = 10_000;
  const HOUR = 3_600_000;
  const DAY = 24 * HOUR;
  const RANGES = {
    "data": { ms: 7 * DAY }, // from the first reading of the last 7 days: see dataRange()
    "1h": { ms: HOUR, interval: "1m" },
    "6h": { ms: 6 * HOUR, interval: "5m" },
    "24h": { ms: DAY, interval: "15m" },
    "7d": { ms: 7 * DAY, interval: "1h" },
  };
  // Bucket widths the "since first reading" range picks from: the smallest giving <= 120 buckets.
  const FIT_INTERVALS = [["10s", 10_000], ["30s", 30_000], ["1m", 60_000], ["5m", 300_000], ["15m", 900_000],
    ["30m", 1_800_000], ["1h", HOUR], ["3h", 3 * HOUR]];
  // x-axis label steps: the smallest giving at most 7 labels, on round times of the zone shown.
  const TICK_STEPS = [10_000, 30_000, 60_000, 300_000, 600_000, 900_000, 1_800_000, HOUR, 3 * HOUR, 6 * HOUR,
    12 * HOUR, DAY, 2 * DAY];
  const GAS_ORDER = ["no2", "co", "c2h5oh", "h2"];
  const GAS_LABELS = { no2: "NO₂", co: "CO", c2h5oh: "C₂H₅OH", h2: "H₂" };
  const DEVICE_COLORS = ["#1f6feb", "#8250df", "#1a7f37", "#bc4c00", "#0a7f8c", "#bf3989", "#57606a", "#6639ba"];
  const WARNING_COLOR = "#bf8700";
  const CRITICAL_COLOR = "#cf222e";
  const MAX_LINES = 8; // devices drawn per chart with "All devices": requests per refresh stay bounded
  const DATA_START_RECHECK_MS = 5 * 60_000;
  const WARNINGS_PAGE = 50;
  const ALARMS_PAGE = 20;
  const OPEN_ALARMS_MAX = 200;
  const KEY_STORE = "gasmon.apiKey";
  const RANGE_STORE = "gasmon.range";
  const ZONE_STORE = "gasmon.zone";
  const DEVICE_STORE = "gasmon.device";
  const NOTIFY_STORE = "gasmon.notify";

  const $ = (selector) => document.querySelector(selector);
  const charts = new Map(); // gas -> { chart, card, ... }
  const viewerZone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  const state = {
    range: RANGES[localStorage.getItem(RANGE_STORE)] ? localStorage.getItem(RANGE_STORE) : "data",
    zoneChoice: localStorage.getItem(ZONE_STORE) === "viewer" ? "viewer" : "site",
    device: localStorage.getItem(DEVICE_STORE) || "",
    notify: localStorage.getItem(NOTIFY_STORE) === "on",
    config: null, // GET /config: time zone, units, levels
    dataStart: null, // ms of the first reading in the last 7 days, once found
    dataStartCheckedAt: 0,
    openAlarms: null, // alarm ids open at the last refresh (null before the first)
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

  // The deployment's time zone, units and levels. An API without GET /config (an older deploy)
  // leaves the page in the viewer's zone with no units and the warning levels from /warnings.
  async function loadConfig() {
    if (state.config) return state.config;
    try {
      state.config = await api("config");
    } catch (error) {
      if (!(error instanceof ApiError && error.status === 404)) throw error;
      state.config = { local_timezone: null, gases: {}, alarms: null, missing: true };
    }
    setZone();
    return state.config;
  }

  // ---- time zone: the deployment's (LocalTimezone) by default, the viewer's on request ----

  let fmt = null; // formatters in the zone shown

  function shownZone() {
    const site = state.config && state.config.local_timezone;
    return state.zoneChoice === "viewer" || !site ? viewerZone : site;
  }

  function offsetName(zone) {
    const part = new Intl.DateTimeFormat("en-US", { timeZone: zone, timeZoneName: "shortOffset" })
      .formatToParts(new Date())
      .find((p) => p.type === "timeZoneName");
    return part ? part.value.replace("GMT", "UTC") : "";
  }

  // Milliseconds to add to a UTC time to get the wall time of `zone` at that moment.
  function zoneOffset(zone, ms) {
    const parts = Object.fromEntries(
      new Intl.DateTimeFormat("en-US", {
        timeZone: zone, hourCycle: "h23", year: "numeric", month: "2-digit", day: "2-digit",
        hour: "2-digit", minute: "2-digit", second: "2-digit",
      }).formatToParts(new Date(ms)).map((p) => [p.type, p.value]),
    );
    const wall = Date.UTC(+parts.year, +parts.month - 1, +parts.day, +parts.hour, +parts.minute, +parts.second);
    return wall - Math.floor(ms / 1000) * 1000;
  }

  function setZone() {
    const zone = shownZone();
    const site = state.config && state.config.local_timezone;
    const opts = { timeZone: zone };
    fmt = {
      zone,
      timeOnly: new Intl.DateTimeFormat(undefined, { ...opts, hour: "2-digit", minute: "2-digit", hourCycle: "h23" }),
      timeSeconds: new Intl.DateTimeFormat(undefined, {
        ...opts, hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23",
      }),
      dayOnly: new Intl.DateTimeFormat(undefined, { ...opts, month: "short", day: "numeric" }),
      dayTime: new Intl.DateTimeFormat(undefined, {
        ...opts, month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", hourCycle: "h23",
      }),
      full: new Intl.DateTimeFormat(undefined, { ...opts, dateStyle: "medium", timeStyle: "medium" }),
    };
    const label = $("#zone-label");
    label.textContent = `Times in ${zone} (${offsetName(zone)})`;
    label.title = site && zone === site ? "the deployment's time zone (LocalTimezone)" : "this browser's time zone";
    label.dataset.zone = zone;
    const toggle = $("#zone-toggle");
    toggle.hidden = !site || site === viewerZone;
    toggle.textContent = zone === site ? `Use my time (${viewerZone})` : `Use site time (${site})`;
  }
  setZone();

  $("#zone-toggle").addEventListener("click", () => {
    state.zoneChoice = state.zoneChoice === "viewer" ? "site" : "viewer";
    localStorage.setItem(ZONE_STORE, state.zoneChoice);
    setZone();
    refreshSoon(0);
  });

  // ---- formatting ----

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

  function gasInfo(gas) {
    return (state.config && state.config.gases && state.config.gases[gas]) || {};
  }

  function unit(gas) {
    return gasInfo(gas).unit || "";
  }

  // A value with its gas's unit: "240 ppm".
  function amount(gas, value) {
    const u = unit(gas);
    return u ? `${number(value)} ${u}` : number(value);
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
    return el("time", { datetime: iso, title: fmt.full.format(new Date(iso)) }, fmt.dayTime.format(new Date(iso)));
  }

  // ---- devices: the selector and one colour per device ----

  const colors = new Map(); // device -> colour, kept while the page is open

  function colorOf(device) {
    if (!colors.has(device)) colors.set(device, DEVICE_COLORS[colors.size % DEVICE_COLORS.length]);
    return colors.get(device);
  }

  function drawDeviceSelect(devices) {
    const select = $("#device-select");
    const names = devices.map((d) => d.device);
    if (state.device && !names.includes(state.device)) names.push(state.device); // kept until it returns
    const current = [...select.options].slice(1).map((o) => o.value);
    if (current.join("\u0000") !== names.join("\u0000")) {
      select.replaceChildren(
        el("option", { value: "" }, `All devices (${devices.length})`),
        ...names.map((name) => el("option", { value: name }, name)),
      );
    } else {
      select.options[0].textContent = `All devices (${devices.length})`;
    }
    select.value = state.device;
  }

  $("#device-select").addEventListener("change", (event) => {
    state.device = event.target.value;
    localStorage.setItem(DEVICE_STORE, state.device);
    refreshSoon(0);
  });

  // ---- charts ----

  function orderedGases(devices) {
    const seen = new Set(Object.keys((state.config && state.config.gases) || {}));
    for (const device of devices) for (const gas of Object.keys(device.values || {})) seen.add(gas);
    const known = GAS_ORDER.filter((gas) => seen.has(gas));
    return known.concat([...seen].filter((gas) => !GAS_ORDER.includes(gas)).sort());
  }

  function pickTickStep(span) {
    return TICK_STEPS.find((step) => span / step <= 7) || 7 * DAY;
  }

  function tickLabel(ms, step) {
    const format = step >= DAY ? fmt.dayOnly : step < 60_000 ? fmt.timeSeconds : fmt.timeOnly;
    return format.format(new Date(ms));
  }

  function chartCard(gas) {
    if (charts.has(gas)) return charts.get(gas);
    const canvas = el("canvas", { "data-gas": gas, "aria-label": `${gasLabel(gas)} over time`, role: "img" });
    const empty = el("div", { class: "empty muted" }, "no readings in this range");
    const latest = el("span", { class: "latest muted" });
    const unitEl = el("span", { class: "unit" });
    const levels = el("p", { class: "levels muted" });
    const card = el(
      "article",
      { class: "chart", "data-gas": gas },
      el("header", {}, el("h3", {}, gasLabel(gas), " ", unitEl), latest),
      levels,
      el("div", { class: "canvas-box" }, canvas, empty),
    );
    $("#charts").append(card);
    const look = { tickStep: HOUR };
    const chart = new Chart(canvas, {
      type: "line",
      data: { datasets: [] },
      options: {
        animation: false,
        parsing: false,
        maintainAspectRatio: false,
        interaction: { mode: "nearest", axis: "x", intersect: false },
        scales: {
          x: {
            type: "linear",
            ticks: { maxRotation: 0, callback: (value) => tickLabel(value, look.tickStep) },
            // Labels on round times (quarter hours, hours, days) of the zone shown, not wherever the range starts.
            afterBuildTicks: (scale) => {
              const step = look.tickStep;
              const offset = zoneOffset(fmt.zone, scale.min);
              const ticks = [];
              for (let value = Math.ceil((scale.min + offset) / step) * step - offset; value <= scale.max; value += step) {
                ticks.push({ value });
              }
              scale.ticks = ticks;
            },
            grid: { display: false },
          },
          y: { beginAtZero: true, ticks: { maxTicksLimit: 5 } },
        },
        plugins: {
          legend: { display: false },
          tooltip: {
            filter: (item) => item.parsed.y !== null && !item.dataset.level,
            callbacks: {
              title: (items) => (items.length ? fmt.full.format(new Date(items[0].parsed.x)) : ""),
              label: (item) => `${item.dataset.label}: ${amount(gas, item.parsed.y)}`,
            },
          },
        },
      },
    });
    const entry = { chart, card, canvas, empty, latest, unitEl, levels, look };
    charts.set(gas, entry);
    return entry;
  }

  // A device with few points gets dots too, so a lone reading between gaps shows.
  function lineDataset(device, points, sparse) {
    const color = colorOf(device);
    return {
      label: device, device, role: "device", data: points.map(({ x, p }) => ({ x, y: p.avg })),
      borderColor: color, backgroundColor: color, borderWidth: 2, spanGaps: false,
      pointRadius: sparse ? 3 : 0,
    };
  }

  function bandDatasets(device, points, sparse) {
    const band = "rgba(31, 111, 235, 0.14)";
    const edge = "rgba(31, 111, 235, 0.45)";
    const common = { device, borderColor: edge, borderWidth: 1, backgroundColor: band, pointBackgroundColor: edge };
    return [
      { ...common, label: `${device} max`, role: "max", fill: false, data: points.map(({ x, p }) => ({ x, y: p.max })),
        pointRadius: sparse ? 2 : 0 },
      { ...common, label: `${device} min`, role: "min", fill: "-1", data: points.map(({ x, p }) => ({ x, y: p.min })),
        pointRadius: sparse ? 2 : 0 },
    ];
  }

  function levelDataset(level, value, start, end) {
    return {
      label: level, level, role: level, data: [{ x: start, y: value }, { x: end, y: value }],
      borderColor: level === "critical" ? CRITICAL_COLOR : WARNING_COLOR, borderDash: [6, 4], borderWidth: 1.5,
      pointRadius: 0, fill: false,
    };
  }

  // One chart: a line per device, the min-max band when one device is shown, the warning and
  // critical levels dashed. The critical line is drawn when it lies within twice the highest of the
  // data and the warning level; further up it would flatten the data, so the header says where it is.
  function drawChart(gas, lines, range, latest, hiddenDevices) {
    const entry = chartCard(gas);
    const info = gasInfo(gas);
    entry.unitEl.textContent = info.unit ? `(${info.unit})` : "";
    const warning = info.warning ?? lines.find((l) => l.series.threshold !== null)?.series.threshold ?? null;
    const critical = info.critical ?? null;
    let readings = 0;
    let peak = 0;
    const datasets = [];
    for (const { device, series } of lines) {
      const points = series.points.map((p) => ({ x: Date.parse(p.start), p }));
      const filled = points.filter(({ p }) => p.count > 0);
      readings += filled.reduce((sum, { p }) => sum + p.count, 0);
      peak = Math.max(peak, ...filled.map(({ p }) => p.max));
      datasets.push(lineDataset(device, points, filled.length < 30));
      if (state.device) datasets.push(...bandDatasets(device, points, filled.length < 30));
    }
    entry.look.tickStep = pickTickStep(range.end - range.start);
    const top = Math.max(peak, warning || 0);
    const criticalShown = critical !== null && critical <= 2 * top;
    if (warning !== null) datasets.push(levelDataset("warning", warning, range.start, range.end));
    if (critical !== null) {
      const line = levelDataset("critical", critical, range.start, range.end);
      line.hidden = !criticalShown;
      datasets.push(line);
    }
    entry.chart.data.datasets = datasets;
    const scales = entry.chart.options.scales;
    scales.x.min = range.start;
    scales.x.max = range.end;
    scales.y.suggestedMax = Math.max(top, criticalShown ? critical : 0) * 1.08 || 1;
    entry.chart.update("none");

    entry.canvas.dataset.lines = String(lines.length);
    entry.canvas.dataset.readings = String(readings);
    entry.canvas.dataset.start = new Date(range.start).toISOString();
    entry.empty.hidden = readings > 0;
    entry.empty.textContent = lines.length || !state.device ? "no readings in this range" : `${state.device} sends no ${gasLabel(gas)}`;
    const levelText = [
      warning === null ? null : `warning ${amount(gas, warning)}`,
      critical === null ? null : `critical ${amount(gas, critical)}${criticalShown ? "" : " (above the chart)"}`,
      hiddenDevices ? `${hiddenDevices} more device${hiddenDevices > 1 ? "s" : ""}: pick one above` : null,
    ].filter(Boolean);
    entry.levels.textContent = levelText.join(" · ");
    const over = latest && warning !== null && latest.reading.value >= warning;
    entry.latest.className = `latest ${over ? "over" : "muted"}`;
    entry.latest.textContent = !latest
      ? ""
      : latest.of > 1
        ? `highest ${amount(gas, latest.reading.value)} (${latest.device})`
        : `latest ${amount(gas, latest.reading.value)}`;
    entry.latest.title = latest ? `at ${fmt.full.format(new Date(latest.reading.at))} on ${latest.device}` : "";
  }

  function drawLegend(shown) {
    const items = shown.map((device) =>
      el("span", { "data-device": device }, el("span", { class: "swatch", style: null }), device));
    items.forEach((item, i) => {
      item.firstChild.style.background = colorOf(shown[i]);
    });
    items.push(el("span", {}, el("span", { class: "swatch warning" }), "warning level"));
    const gases = Object.values((state.config && state.config.gases) || {});
    if (gases.some((g) => g.critical !== null && g.critical !== undefined)) {
      items.push(el("span", {}, el("span", { class: "swatch critical" }), "critical level"));
    }
    $("#legend").replaceChildren(...items);
  }

  // The time range shown: a preset, or from the first reading of the last 7 days until now.
  function currentRange(now) {
    if (state.range !== "data") {
      const r = RANGES[state.range];
      return { start: now - r.ms, end: now, interval: r.interval };
    }
    const earliest = now - RANGES.data.ms;
    const start = Math.max(state.dataStart ?? now - HOUR, earliest);
    const span = Math.max(now - start, 60_000);
    const [interval, width] = FIT_INTERVALS.find(([, ms]) => span / ms <= 120) || FIT_INTERVALS.at(-1);
    // Start on the bucket that holds the first reading, so the first point sits at the left edge.
    return { start: Math.floor(start / width) * width, end: now, interval };
  }

  // Where the data starts: the first hour of the last 7 days holding a reading of any gas, then
  // the first minute in it. Looked up again every few minutes (and on every refresh while none).
  async function findDataStart(gases, now) {
    if (state.dataStart !== null && now - state.dataStartCheckedAt < DATA_START_RECHECK_MS) return;
    const since = new Date(now - RANGES.data.ms).toISOString();
    const firstFilled = (s) => s.points.find((p) => p.count > 0);
    const hours = await Promise.all(gases.map((gas) => api("series", { gas, start: since, interval: "1h" })));
    const firstHours = hours.map(firstFilled).filter(Boolean).map((p) => Date.parse(p.start));
    if (!firstHours.length) {
      state.dataStart = null;
      return;
    }
    const hour = Math.min(...firstHours);
    const end = new Date(Math.min(hour + HOUR, now)).toISOString();
    const minutes = await Promise.all(
      gases.map((gas) => api("series", { gas, start: new Date(hour).toISOString(), end, interval: "1m" })),
    );
    const firstMinutes = minutes.map(firstFilled).filter(Boolean).map((p) => Date.parse(p.start));
    state.dataStart = firstMinutes.length ? Math.min(...firstMinutes) : hour;
    state.dataStartCheckedAt = now;
  }

  async function drawCharts(devices, now) {
    const gases = orderedGases(devices);
    if (state.range === "data") await findDataStart(gases, now);
    const range = currentRange(now);
    const shown = state.device ? devices.filter((d) => d.device === state.device) : devices;
    const start = new Date(range.start).toISOString();
    const plans = gases.map((gas) => {
      const senders = shown.filter((d) => d.values && d.values[gas]);
      return { gas, drawn: senders.slice(0, MAX_LINES), hidden: Math.max(0, senders.length - MAX_LINES) };
    });
    const answers = await Promise.all(
      plans.map(({ gas, drawn }) =>
        Promise.all(drawn.map((d) => api("series", { gas, device: d.device, start, interval: range.interval }))),
      ),
    );
    const legend = new Set();
    plans.forEach(({ gas, drawn, hidden }, i) => {
      const lines = drawn.map((d, j) => ({ device: d.device, series: answers[i][j] }));
      for (const d of drawn) legend.add(d.device);
      // The highest of the devices' latest values: the one a person watching gas must see first.
      const latest = drawn
        .map((d) => ({ device: d.device, reading: d.values[gas], of: drawn.length }))
        .sort((a, b) => b.reading.value - a.reading.value)[0];
      drawChart(gas, lines, range, latest, hidden);
    });
    drawLegend([...legend].sort());
    const note = $("#charts-note");
    note.textContent = state.device
      ? `${state.device}: average per interval, min–max band; warning and critical levels dashed`
      : "one line per device (average per interval); warning and critical levels dashed";
    document.body.dataset.rangeStart = start;
  }

  // ---- tables and lists ----

  function drawDevices(devices) {
    const body = $("#devices tbody");
    const order = orderedGases(devices);
    body.replaceChildren(
      ...devices.map((device) => {
        const values = el(
          "div",
          { class: "values" },
          ...Object.entries(device.values || {})
            .sort(([a], [b]) => order.indexOf(a) - order.indexOf(b))
            .map(([gas, reading]) =>
              el(
                "span",
                {
                  class: device.over_threshold.includes(gas) ? "value over" : "value",
                  title: `${gasLabel(gas)} at ${fmt.full.format(new Date(reading.at))}, sensor ${reading.sensorid}`,
                },
                `${gasLabel(gas)} ${amount(gas, reading.value)}`,
              ),
            ),
        );
        const since = device.status_since ? ` since ${fmt.full.format(new Date(device.status_since))}` : "";
        const reason = device.disconnect_reason ? ` (${device.disconnect_reason})` : "";
        const selected = state.device === device.device;
        return el(
          "tr",
          {
            class: `${device.status}${selected ? " selected" : ""}`,
            "data-device": device.device,
            "data-status": device.status,
          },
          el("td", { "data-label": "Device" }, device.device),
          el(
            "td",
            { "data-label": "Status" },
            el("span", { class: `pill ${device.status}`, title: `${device.status}${since}${reason}` }, device.status),
          ),
          el(
            "td",
            { "data-label": "Last seen" },
            el("span", { title: device.last_seen ? fmt.full.format(new Date(device.last_seen)) : "" }, ago(device.last_seen)),
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
            el("strong", {}, `${gasLabel(w.gas)} ${amount(w.gas, w.value)}`),
            ` ≥ ${amount(w.gas, w.threshold)} on ${w.device}`,
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
      ? `critical ≥ ${amount(a.gas, a.critical)}`
      : `warning ≥ ${amount(a.gas, a.threshold)}`;
    // The time column shows the start; the detail says how long, and until when once closed.
    const sameDay = fmt.dayOnly.format(new Date(start)) === fmt.dayOnly.format(new Date(end));
    const when = open
      ? `open for ${duration(end - start)}`
      : `until ${(sameDay ? fmt.timeOnly : fmt.dayTime).format(new Date(end))} (${duration(end - start)})`;
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
        el("span", { class: "detail" }, `${when} · peak ${amount(a.gas, a.peak)} (${level})`),
      ),
    );
  }

  function byLevel(alarms) {
    // Critical alarms above warnings; within a level, the API's order (newest first).
    return [...alarms].sort((a, b) => (b.level === "critical") - (a.level === "critical"));
  }

  function drawAlarms(open, closed) {
    $("#alarms-open").replaceChildren(...byLevel(open.items).map(alarmItem));
    $("#alarms-open-empty").hidden = open.items.length > 0;
    $("#alarms-closed").replaceChildren(...closed.items.map(alarmItem));
    const empty = $("#alarms-closed-empty");
    empty.textContent = `No alarm closed in this range.`;
    empty.hidden = closed.items.length > 0;
    $("#alarms-more").hidden = !closed.more;
    $("#alarms-title small").textContent = "open now, and closed ones started in the range shown";
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
            a.reconnected_at ? `, back ${fmt.dayTime.format(new Date(a.reconnected_at))}` : ", not back yet",
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

  // ---- what is wrong now: the status strip, the tab title, a notification ----

  function drawStatus(devices, presence, history, warnings) {
    const offline = devices.filter((d) => d.status === "offline");
    const online = devices.filter((d) => d.status === "online");
    const open = history ? byLevel(history.open.items) : [];
    const parts = [];
    if (!devices.length) parts.push("no device yet");
    else if (presence) parts.push(`${online.length} of ${devices.length} online`);
    else parts.push(`${devices.length} device${devices.length > 1 ? "s" : ""} (presence not configured)`);
    if (history) parts.push(open.length ? `${open.length} alarm${open.length > 1 ? "s" : ""} open` : "no alarm open");
    else parts.push(`${warnings.items.length}${warnings.more ? "+" : ""} warning${warnings.items.length === 1 ? "" : "s"} in range`);
    const details = [
      ...open.map((a) => `${gasLabel(a.gas)} ${a.level} on ${a.device} (${amount(a.gas, a.peak)})`),
      ...(offline.length ? [`offline: ${offline.map((d) => d.device).join(", ")}`] : []),
    ];
    const strip = $("#status");
    $("#status-summary").textContent = parts.join(" · ");
    $("#status-detail").textContent = details.join(" · ");
    const critical = open.some((a) => a.level === "critical");
    strip.dataset.state = critical ? "critical" : open.length ? "warning" : offline.length ? "offline" : "ok";
    strip.dataset.online = String(online.length);
    strip.dataset.devices = String(devices.length);
    strip.dataset.openAlarms = String(open.length);
    document.title = open.length
      ? `(${open.length}) ${gasLabel(open[0].gas)} ${open[0].level} on ${open[0].device} · gasmon`
      : offline.length
        ? `${offline.length} offline · gasmon`
        : "gasmon dashboard";
    notifyNewAlarms(open);
  }

  function notifyNewAlarms(open) {
    const known = state.openAlarms;
    state.openAlarms = new Set(open.map((a) => a.alarm_id));
    if (known === null || !state.notify || !("Notification" in window) || Notification.permission !== "granted") return;
    for (const a of open) {
      if (known.has(a.alarm_id)) continue;
      // One notification per alarm (tag): a reminder of the same alarm replaces it, never stacks.
      new Notification(`gasmon: ${gasLabel(a.gas)} ${a.level} on ${a.device}`, {
        body: `peak ${amount(a.gas, a.peak)} since ${fmt.timeOnly.format(new Date(a.started_at))}`,
        tag: a.alarm_id,
      });
    }
  }

  function drawNotifyButton() {
    const button = $("#notify-button");
    if (!("Notification" in window)) {
      button.hidden = true;
      return;
    }
    button.hidden = false;
    const permission = Notification.permission;
    button.textContent = permission === "denied"
      ? "Notifications blocked by this browser"
      : state.notify && permission === "granted" ? "Alarm notifications: on (turn off)" : "Notify me of new alarms";
    button.disabled = permission === "denied";
  }
  drawNotifyButton();

  // The browser asks for permission only here, on the user's own click.
  $("#notify-button").addEventListener("click", async () => {
    if (state.notify && Notification.permission === "granted") {
      state.notify = false;
    } else {
      const permission = Notification.permission === "granted" ? "granted" : await Notification.requestPermission();
      state.notify = permission === "granted";
    }
    localStorage.setItem(NOTIFY_STORE, state.notify ? "on" : "off");
    drawNotifyButton();
  });

  // ---- refresh loop ----

  async function refresh() {
    if (!apiKey()) {
      askForSettings();
      return false;
    }
    await loadConfig();
    const now = Date.now();
    // The lists cover the range shown: with "since first reading", from the first reading once known.
    const listFrom = state.range === "data"
      ? Math.max(state.dataStart ?? now - DAY, now - RANGES.data.ms)
      : now - RANGES[state.range].ms;
    const listSince = new Date(listFrom).toISOString();
    // With alarm history the warnings list is not shown; one warning still brings the thresholds.
    const warningsLimit = state.alarmsConfigured ? 1 : WARNINGS_PAGE;
    const [devices, warnings, alerts, history] = await Promise.all([
      allPages("devices", { limit: 200 }, "devices", 2000),
      allPages("warnings", { since: listSince, limit: warningsLimit }, "warnings", state.alarmsConfigured ? 1 : state.warningsWanted),
      api("alerts", { limit: 20 }),
      alarms(listSince),
    ]);
    if (state.config.missing) {
      for (const [gas, level] of Object.entries(warnings.first.thresholds || {})) {
        state.config.gases[gas] = { unit: "", warning: level, critical: null };
      }
    }
    drawDeviceSelect(devices.items);
    await drawCharts(devices.items, now);
    drawDevices(devices.items);
    if (history) drawAlarms(history.open, history.closed);
    else drawWarnings(warnings.items, warnings.more);
    const switched = state.alarmsConfigured !== null && state.alarmsConfigured !== Boolean(history);
    showAlarmsOrWarnings(Boolean(history));
    if (switched && !history) state.again = true; // alarms went away: fetch the full warnings list now
    drawAlerts(alerts);
    drawStatus(devices.items, devices.first.presence, history, warnings);
    const listRange = state.range === "data" ? "since the first reading" : `last ${state.range}`;
    $("#warnings-title small").textContent = `readings at or above threshold, ${listRange}`;
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
        $("#updated").textContent = `updated ${fmt.timeOnly.format(new Date())}`;
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
