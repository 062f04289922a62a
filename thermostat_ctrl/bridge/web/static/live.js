// The bridge's live view: an overview of every device and, per device, plots
// of both channels on one time axis, fed by /series (history) and /stream
// (Server-Sent Events).  Read-only: it only ever GETs from this origin (the
// alarm buttons of alarms.js are the page's only writes).
"use strict";

(() => {
  const RANGES = { "1h": 3600e3, "24h": 86400e3, "7d": 7 * 86400e3, "30d": 30 * 86400e3 };
  const COLORS = { temperature: "#0550ae", setpoint: "#cf222e", measured: "#0550ae",
                   set: "#8250df", limit: "#9a6700", band: "#8c959f", pid: "#116329" };
  const PLOT_HEIGHT = 180;
  // Time ticks are never closer than a second (seconds).
  const TIME_INCRS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800,
                      21600, 43200, 86400, 2 * 86400, 7 * 86400, 14 * 86400, 30 * 86400];
  // uPlot's date templates, in 24-hour time and ISO dates.
  const fmtDate = (template) => uPlot.fmtDate(template
    .replace("{M}/{D}/{YY}", "{YYYY}-{MM}-{DD}").replace("{M}/{D}", "{MM}-{DD}")
    .replace("{h}:{mm}:{ss}{aa}", "{HH}:{mm}:{ss}").replace("{h}:{mm}{aa}", "{HH}:{mm}")
    .replace("{h}{aa}", "{HH}:00").replace("{aa}", ""));
  const $ = (selector, root = document) => root.querySelector(selector);
  // Other scripts of the page (settings.js) follow the view through these events.
  const emit = (kind, detail) => document.dispatchEvent(new CustomEvent("thermostat:" + kind, { detail }));

  // ------------------------------------------------------------ formatting

  const fixed = (v, digits) => (v == null || !isFinite(v) ? "—" : v.toFixed(digits));
  const signed = (v, digits) => (v == null || !isFinite(v) ? "—" : (v >= 0 ? "+" : "") + v.toFixed(digits));
  const clock = (ms) => new Date(ms).toLocaleTimeString([], { hour12: false });
  const stamp = (ms) => new Date(ms).toLocaleString([], { hour12: false });

  function duration(s) {
    if (s == null || !isFinite(s)) return "—";
    if (s < 10) return s.toFixed(1) + " s";
    if (s < 120) return Math.round(s) + " s";
    if (s < 7200) return Math.floor(s / 60) + " min " + Math.round(s % 60) + " s";
    if (s < 172800) return Math.floor(s / 3600) + " h " + Math.round((s % 3600) / 60) + " min";
    return (s / 86400).toFixed(1) + " d";
  }

  function el(tag, attributes = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attributes)) {
      if (key === "class") node.className = value;
      else node.setAttribute(key, value);
    }
    for (const child of children) node.append(child);
    return node;
  }

  async function getJSON(url) {
    const response = await fetch(url, { headers: { Accept: "application/json" } });
    if (!response.ok) throw new Error(url + ": HTTP " + response.status);
    return response.json();
  }

  // ------------------------------------------------------ device state words

  // A channel's regulation state (the bridge's status snapshot) as a badge.
  const REGULATION = { in_band: "IN BAND", settling: "SETTLING", out_of_band: "OUT OF BAND",
                       off: "PID OFF", fault: "FAULT" };
  function badge(channel) {
    const state = channel && channel.state;
    return el("span", { class: "badge " + (state || "unknown"), title: state && channel.since_ts
                          ? "since " + new Date(channel.since_ts).toLocaleString([], { hour12: false }) : "" },
              state ? REGULATION[state] || state : "NO DATA");
  }

  // The alarm banner (alarms.js) listens to the stream's "alarms" events.
  function forwardAlarms(stream) {
    stream.addEventListener("alarms", (e) =>
      window.dispatchEvent(new CustomEvent("thermostat-alarms", { detail: JSON.parse(e.data) })));
  }

  // The state in words, from the bridge's thresholds and the sample age
  // extrapolated since the status arrived.
  function stateOf(status, receivedAt) {
    if (!status) return { word: "unknown", css: "nodata", age: null };
    if (status.error) return { word: "failed", css: "failed", age: null };
    if (status.sample_age_s == null) return { word: "no data", css: "nodata", age: null };
    const age = status.sample_age_s + (performance.now() - receivedAt) / 1000;
    if (age <= status.stale_after_s) return { word: "live", css: "live", age };
    if (age <= status.disconnected_after_s) return { word: "stale", css: "stale", age };
    return { word: "disconnected", css: "disconnected", age };
  }

  function errorsText(errors) {
    const parts = Object.entries(errors || {}).filter(([, n]) => n > 0).map(([r, n]) => r + " " + n);
    return parts.length ? parts.join(", ") : "none";
  }

  // ----------------------------------------------------------------- table

  // Rows in columns: ts (epoch ms, ascending) and one array per column.
  class Table {
    constructor() { this.ts = []; this.cols = {}; }

    static from(rows) {
      const table = new Table();
      for (const row of rows) table.push(row);
      return table;
    }

    get last() { return this.ts.length ? this.ts[this.ts.length - 1] : null; }

    push(row) {
      const n = this.ts.length;
      this.ts.push(row.ts);
      for (const [name, value] of Object.entries(row)) {
        if (name === "ts" || name === "time") continue;
        if (!(name in this.cols)) this.cols[name] = new Array(n).fill(null);
        this.cols[name].push(value);
      }
      for (const values of Object.values(this.cols)) if (values.length === n) values.push(null);
    }

    dropBefore(ts) {
      let i = 0;
      while (i < this.ts.length && this.ts[i] < ts) i++;
      if (i === 0) return;
      this.ts.splice(0, i);
      for (const values of Object.values(this.cols)) values.splice(0, i);
    }

    col(name) { return this.cols[name] || new Array(this.ts.length).fill(null); }
  }

  // ------------------------------------------------------------ the plots

  // Per channel: [title, unit, series]; a series is [label, value(c, i), colour, dash, role].
  // c is the channel's row accessor; "limit" and "band" series do not set the y range.
  function plotSpecs(ch) {
    const t = "temperature_ch" + ch;
    // The setpoint (and the error) only where the PID is engaged: with the PID
    // off the output is a constant current and the stored target means nothing.
    const setpoint = (c, i) => (c("pid_engaged_ch" + ch, i) === 0 ? null : c("target_ch" + ch, i));
    return [
      ["Temperature", "°C", [
        ["temperature", (c, i) => c(t, i), COLORS.temperature, null, "trace", 4],
        ["setpoint", setpoint, COLORS.setpoint, [6, 4], "trace", 4]]],
      ["Error: temperature − setpoint", "mK", [
        ["error", (c, i) => diff(c(t, i), setpoint(c, i), 1000), COLORS.temperature, null, "trace", 2],
        ["+tolerance", (c, i) => c.tol, COLORS.band, [3, 3], "band", 2],
        ["−tolerance", (c, i) => -c.tol, COLORS.band, [3, 3], "band", 2]]],
      ["TEC current", "A", [
        ["measured", (c, i) => c("tec_i_ch" + ch, i), COLORS.measured, null, "trace", 4],
        ["set", (c, i) => c("i_set_ch" + ch, i), COLORS.set, [6, 4], "trace", 4],
        ["+limit", (c, i) => c.limit("max_i_pos", 1), COLORS.limit, [2, 4], "limit", 3],
        ["−limit", (c, i) => c.limit("max_i_neg", -1), COLORS.limit, [2, 4], "limit", 3]]],
      ["TEC voltage", "V", [
        ["measured", (c, i) => c("tec_u_meas_ch" + ch, i), COLORS.measured, null, "trace", 3],
        ["+limit", (c, i) => c.limit("max_v", 1), COLORS.limit, [2, 4], "limit", 2],
        ["−limit", (c, i) => c.limit("max_v", -1), COLORS.limit, [2, 4], "limit", 2]]],
      ["PID output", "A", [
        ["output", (c, i) => c("pid_output_ch" + ch, i), COLORS.pid, null, "trace", 4]]],
    ];
  }

  const diff = (a, b, scale) => (a == null || b == null ? null : (a - b) * scale);

  const pad2 = (n) => String(n).padStart(2, "0");

  // One time per tick (seconds only when ticks are less than a minute
  // apart), and the date under the first tick and wherever the day changes.
  function timeValues(u, splits, axis, space, incr) {
    let lastDay = null;
    return splits.map((t) => {
      const d = new Date(t * 1000);
      const day = d.getFullYear() + "-" + pad2(d.getMonth() + 1) + "-" + pad2(d.getDate());
      const time = incr >= 86400 ? "" : pad2(d.getHours()) + ":" + pad2(d.getMinutes()) +
                   (incr < 60 ? ":" + pad2(d.getSeconds()) : "");
      const label = day === lastDay ? time : (time ? time + "\n" + day : day);
      lastDay = day;
      return label;
    });
  }

  // A step of 1, 2, 2.5 or 5 times a power of ten giving at least three
  // ticks across [min, max], whatever the range.
  function niceStep(span) {
    const raw = span / 6;
    const mag = 10 ** Math.floor(Math.log10(raw));
    return [1, 2, 2.5, 5, 10].map((m) => m * mag).find((step) => step >= raw);
  }

  function ySplits(u, axis, min, max) {
    if (!(max > min)) return [min];
    const step = niceStep(max - min);
    const out = [];
    for (let k = Math.ceil(min / step); k * step <= max; k++) out.push(k * step);
    return out;
  }

  // Tick labels with their unit, with the decimals the step needs.
  const decimals = (step) => {
    for (let d = 0; d < 10; d++) if (Math.abs(Math.round(step * 10 ** d) - step * 10 ** d) < 1e-6) return d;
    return 10;
  };
  const yValues = (unit) => (u, splits) => {
    const digits = decimals(splits.length > 1 ? splits[1] - splits[0] : 1);
    return splits.map((v) => (Math.abs(v) < 1e-12 ? 0 : v).toFixed(digits) + " " + unit);
  };

  // The y range covers the traces; a limit or tolerance line only when it is
  // near them (within a quarter of their magnitude), so small signals stay readable.
  function yRange(roles) {
    return (u) => {
      let lo = Infinity, hi = -Infinity;
      u.data.forEach((values, s) => {
        if (s === 0 || roles[s] !== "trace") return;
        for (const v of values) if (v != null) { if (v < lo) lo = v; if (v > hi) hi = v; }
      });
      if (lo === Infinity) return [0, 1];
      const reach = Math.max(Math.abs(lo), Math.abs(hi)) * 1.25;
      u.data.forEach((values, s) => {
        if (s === 0 || roles[s] === "trace") return;
        const v = values.find((x) => x != null);
        if (v != null && Math.abs(v) <= reach) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
      });
      const pad = hi > lo ? (hi - lo) * 0.08 : Math.max(Math.abs(hi) * 1e-4, 1e-3);
      return [lo - pad, hi + pad];
    };
  }

  // ------------------------------------------------------------ device view

  class DeviceView {
    constructor(app, info) {
      this.app = app;
      this.name = info.name;
      this.period = info.poll_period_s;
      this.live = new Table();       // the memory window, kept up to date by the stream
      this.shown = null;             // the table on the plots (live or fetched history)
      this.view = { kind: "live" };  // or { kind: "range", from, to, label }
      this.history = [];             // views to go back to
      this.status = null;
      this.statusAt = 0;
      this.plots = [];
      this.stream = null;
      this.pending = false;
      this.fetching = 0;
    }

    async open() {
      $("#tz").textContent = Intl.DateTimeFormat().resolvedOptions().timeZone || "local time";
      const rows = await getJSON("series?device=" + encodeURIComponent(this.name));
      // Without a stored setpoint column the setpoint is known from the stream only.
      this.storedSetpoint = rows.length > 0 && "target_ch0" in rows[0];
      this.buildPlots();
      this.live = Table.from(rows);
      this.shown = this.live;
      this.connect();
      this.render();
    }

    close() {
      if (this.stream) this.stream.close();
      for (const p of this.plots) p.u.destroy();
      this.plots = [];
    }

    connect() {
      const url = "stream?device=" + encodeURIComponent(this.name) + "&after=" + (this.live.last ?? 0);
      const stream = this.stream = new EventSource(url);
      stream.addEventListener("open", () => this.app.bridgeUp(true));
      stream.addEventListener("error", () => this.app.bridgeUp(false));
      stream.addEventListener("sample", (e) => this.onSample(JSON.parse(e.data)));
      forwardAlarms(stream);
      stream.addEventListener("status", (e) => {
        this.status = JSON.parse(e.data);
        this.statusAt = performance.now();
        this.app.bridgeUp(true);
        this.renderStatus();
        emit("status", { name: this.name, status: this.status });
      });
      stream.addEventListener("procedure", (e) => emit("procedure", { name: this.name, jobs: JSON.parse(e.data) }));
    }

    onSample(row) {
      if (this.live.last != null && row.ts <= this.live.last) return;
      const targets = this.status && this.status.targets;
      for (let ch = 0; ch < 2; ch++) {
        // The stored rows carry no setpoint: the poller's current target is the best known.
        if (!(("target_ch" + ch) in row) && targets) row["target_ch" + ch] = targets[ch];
      }
      this.live.push(row);
      const memory = this.status ? this.status.memory_s * 1000 : null;
      if (memory) this.live.dropBefore(row.ts - memory);
      if (this.view.kind === "live") this.schedule();
      else this.renderNow();
    }

    schedule() {
      if (this.pending) return;
      this.pending = true;
      requestAnimationFrame(() => { this.pending = false; this.render(); });
    }

    plotWidth() {
      const box = $(".channel .plots");
      return Math.max(300, Math.floor(box.getBoundingClientRect().width));
    }

    buildPlots() {
      const width = this.plotWidth();
      document.querySelectorAll(".channel").forEach((article) => {
        const ch = Number(article.dataset.channel);
        const box = $(".plots", article);
        box.replaceChildren();
        for (const [title, unit, series] of plotSpecs(ch)) {
          const roles = [null, ...series.map((s) => s[4])];
          const opts = {
            title: title + " (" + unit + ")", width, height: PLOT_HEIGHT, fmtDate,
            cursor: { sync: { key: "thermostat-x" }, drag: { x: true, y: false, setScale: false },
                      bind: { dblclick: () => () => { this.back(); return null; } } },
            scales: { x: { time: true, range: (u, lo, hi) => this.xRange(lo, hi) },
                      y: { range: yRange(roles) } },
            axes: [{ values: timeValues, incrs: TIME_INCRS, space: 70, size: 44 },
                   { size: 84, splits: ySplits, values: yValues(unit) }],
            series: [{ value: (u, v) => (v == null ? "—" : stamp(v * 1000)) },
                     ...series.map(([label, , stroke, dash, , digits]) => ({
                       label: label === "setpoint" && !this.storedSetpoint
                         ? "setpoint (known since this page opened)" : label,
                       stroke, dash: dash || undefined, width: 1.5, spanGaps: false,
                       points: { show: false },
                       value: (u, v) => (v == null ? "—" : v.toFixed(digits)) }))],
          };
          const u = new uPlot(opts, [[], ...series.map(() => [])], box);
          // uPlot reports the selection while it is dragged: zoom once the button is released.
          u.over.addEventListener("mousedown", () => {
            const released = () => {
              document.removeEventListener("mouseup", released);
              setTimeout(() => this.onSelect(u), 0);
            };
            document.addEventListener("mouseup", released);
          });
          this.plots.push({ channel: ch, title, series, u });
        }
      });
    }

    resize() {
      const width = this.plotWidth();
      for (const p of this.plots) p.u.setSize({ width, height: PLOT_HEIGHT });
    }

    xRange(lo, hi) {
      if (this.view.kind === "range") return [this.view.from / 1000, this.view.to / 1000];
      return lo == null || lo === hi ? [Date.now() / 1000 - 60, Date.now() / 1000] : [lo, hi];
    }

    // The visible window in epoch ms.
    window() {
      if (this.view.kind === "range") return { from: this.view.from, to: this.view.to };
      const ts = this.shown.ts;
      return ts.length ? { from: ts[0], to: ts[ts.length - 1] } : null;
    }

    tolerance() {
      const v = Number($("#tolerance").value);
      return isFinite(v) && v >= 0 ? v : 0;
    }

    // Row indices to plot, with -1 where a gap (no poll for 3 row spacings) is drawn.
    indices(table) {
      const spacing = this.view.kind === "range"
        ? Math.max(this.period * 1000, 2 * (this.view.to - this.view.from) / this.view.maxPoints)
        : this.period * 1000;
      const out = [];
      for (let i = 0; i < table.ts.length; i++) {
        if (i > 0 && table.ts[i] - table.ts[i - 1] > 3 * spacing) out.push(-1);
        out.push(i);
      }
      return out;
    }

    render() {
      const table = this.shown;
      const idx = this.indices(table);
      const x = idx.map((i, k) => (i >= 0 ? table.ts[i] / 1000
                                  : (table.ts[idx[k - 1]] + table.ts[idx[k + 1]]) / 2000));
      const limits = this.status && this.status.limits;
      const tol = this.tolerance();
      for (const p of this.plots) {
        const c = (name, i) => { const v = table.cols[name]; return v ? v[i] : null; };
        c.tol = tol;
        c.limit = (key, sign) => {
          const l = limits && limits[p.channel] && limits[p.channel][key];
          return l == null ? null : sign * l;
        };
        const data = [x, ...p.series.map(([, value]) => idx.map((i) => (i < 0 ? null : value(c, i))))];
        p.u.setData(data, true);
      }
      this.renderStats();
      this.renderNow();
      this.renderToolbar();
    }

    renderNow() {
      const table = this.live;
      const n = table.ts.length;
      // A device that stopped answering: its last values greyed, with their age.
      const state = stateOf(this.status, this.statusAt);
      const gone = state.css === "stale" || state.css === "disconnected";
      $(".channels").classList.toggle("gone", gone);
      document.querySelectorAll(".channel").forEach((article) => {
        const ch = Number(article.dataset.channel);
        const last = (name) => (n ? table.col(name)[n - 1] : null);
        const t = last("temperature_ch" + ch), sp = last("target_ch" + ch);
        const channel = this.status && this.status.channels ? this.status.channels[ch] : null;
        const off = last("pid_engaged_ch" + ch) === 0;
        $("h2", article).replaceChildren("Channel " + ch + " ", badge(channel));
        $(".now", article).replaceChildren(
          el("span", { class: "temperature" }, fixed(t, 4) + " °C"),
          ...(off ? [el("span", {}, "PID off: constant current " + fixed(last("i_set_ch" + ch), 3) + " A")]
                  : [el("span", {}, "setpoint " + fixed(sp, 3) + " °C"),
                     el("span", {}, "error " + signed(diff(t, sp, 1000), 2) + " mK")]),
          el("span", {}, "TEC " + fixed(last("tec_i_ch" + ch), 3) + " A, " +
                         fixed(last("tec_u_meas_ch" + ch), 3) + " V"),
          el("span", {}, off ? "" : "PID on"),
          ...(gone ? [el("span", { class: "seen" }, "last seen " + duration(state.age) + " ago")] : []));
      });
    }

    // Statistics of each channel's temperature over the visible window.
    stats() {
      const w = this.window();
      const table = this.shown;
      const tol = this.tolerance() / 1000;
      return [0, 1].map((ch) => {
        const engaged = table.col("pid_engaged_ch" + ch);
        const t = table.col("temperature_ch" + ch);
        const sp = table.col("target_ch" + ch).map((v, i) => (engaged[i] === 0 ? null : v));
        let n = 0, sum = 0, min = Infinity, max = -Infinity;
        const inWindow = [];
        for (let i = 0; i < table.ts.length; i++) {
          if (!w || table.ts[i] < w.from || table.ts[i] > w.to) continue;
          inWindow.push(i);
          const v = t[i];
          if (v == null) continue;
          n++; sum += v; if (v < min) min = v; if (v > max) max = v;
        }
        const mean = n ? sum / n : null;
        let squares = 0;
        for (const i of inWindow) if (t[i] != null) squares += (t[i] - mean) ** 2;
        // Time within tolerance: from the first row after the last excursion
        // (or a row without a reading) to the end of the window.
        let withSetpoint = 0, inside = 0, since = null, broken = false;
        for (let k = inWindow.length - 1; k >= 0; k--) {
          const i = inWindow[k];
          if (sp[i] == null) continue;
          withSetpoint++;
          const ok = t[i] != null && Math.abs(t[i] - sp[i]) <= tol;
          if (ok) inside++;
          if (!broken) { if (ok) since = table.ts[i]; else broken = true; }
        }
        const end = inWindow.length ? table.ts[inWindow[inWindow.length - 1]] : null;
        return {
          channel: ch, n, mean, min: n ? min : null, max: n ? max : null,
          std: n ? Math.sqrt(squares / n) : null, p2p: n ? max - min : null,
          within_s: withSetpoint ? (since == null ? 0 : (end - since) / 1000) : null,
          within_whole: withSetpoint > 0 && !broken,
          within_fraction: withSetpoint ? inside / withSetpoint : null,
        };
      });
    }

    renderStats() {
      const tol = this.tolerance();
      for (const s of this.stats()) {
        const table = $(`.channel[data-channel="${s.channel}"] .stats`);
        const within = s.within_s == null ? "no setpoint known in this window"
          : duration(s.within_s) + (s.within_whole ? " (the whole window)" : "") +
            ", " + fixed(100 * s.within_fraction, 0) + " % of samples";
        table.replaceChildren(
          el("tr", {}, el("th", {}, "mean"), el("td", {}, fixed(s.mean, 4) + " °C"),
             el("th", {}, "std"), el("td", {}, fixed(s.std * 1000, 2) + " mK"),
             el("th", {}, "peak-to-peak"), el("td", {}, fixed(s.p2p * 1000, 2) + " mK")),
          el("tr", {}, el("th", {}, "min"), el("td", {}, fixed(s.min, 4) + " °C"),
             el("th", {}, "max"), el("td", {}, fixed(s.max, 4) + " °C"),
             el("th", {}, "samples"), el("td", {}, String(s.n))),
          el("tr", {}, el("th", { colspan: "2" }, "within ±" + tol + " mK of setpoint for"),
             el("td", { colspan: "4" }, within)));
      }
    }

    renderToolbar() {
      document.querySelectorAll("[data-range]").forEach((b) => {
        b.classList.toggle("current", this.view.kind === "live" ? b.dataset.range === "live"
                                                                  : b.dataset.range === this.view.label);
      });
      $("#back").disabled = this.history.length === 0;
      const w = this.window();
      // For the panels of other scripts (stability.js): the visible window.
      document.dispatchEvent(new CustomEvent("liveview:window",
        { detail: { device: this.name, window: w, live: this.view.kind === "live" } }));
      let label = this.view.kind === "live"
        ? (this.status ? "live: the last " + duration(this.status.memory_s) + " in memory" : "live")
        : stamp(this.view.from) + " → " + stamp(this.view.to);
      if (this.fetching) label += " (loading…)";
      $("#view-label").textContent = label;
      const csv = $("#csv");
      csv.href = "data.csv?device=" + encodeURIComponent(this.name) +
                 (w ? "&from=" + Math.floor(w.from) + "&to=" + Math.ceil(w.to) : "");
      csv.download = this.name + (w ? "-" + new Date(w.from).toISOString().replace(/[:.]/g, "") : "") + ".csv";
    }

    renderStatus() {
      const s = this.status;
      if (!s) return;
      const state = stateOf(s, this.statusAt);
      const errors = errorsText(s.poll_errors);
      $("#strip").replaceChildren(
        el("span", { class: "name" }, this.name),
        el("span", { class: "state " + state.css }, state.word.toUpperCase()),
        el("span", {}, "device connection: " + (s.connected ? "open" : "closed")),
        el("span", {}, "last sample " + (state.age == null ? "never" : duration(state.age) + " ago")),
        el("span", {}, "firmware " + (s.firmware || "?") + ", hardware " + (s.hwrev || "?")),
        el("span", { class: "errors" + (errors === "none" ? "" : " some") }, "poll errors: " + errors),
        el("span", {}, s.polls_ok + " polls, every " + s.poll_period_s + " s"),
        el("span", {}, (s.simulation ? "simulated at " : "at ") + (s.address || "?")),
        ...(s.error ? [el("span", { class: "errors some" }, s.error)] : []),
        ...(s.last_error && state.word !== "live" ? [el("span", {}, "last error: " + s.last_error)] : []));
    }

    // ------------------------------------------------------------ ranges

    async setView(view, remember = true) {
      if (remember) this.history.push(this.view);
      this.view = view;
      if (view.kind === "live") {
        this.shown = this.live;
        this.render();
        return;
      }
      view.maxPoints = this.plotWidth();
      this.fetching++;
      this.renderToolbar();
      try {
        const query = "series?device=" + encodeURIComponent(this.name) + "&from=" + Math.floor(view.from) +
                      "&to=" + Math.ceil(view.to) + "&max_points=" + view.maxPoints;
        const rows = await getJSON(query);
        if (this.view !== view) return;  // another view was chosen meanwhile
        this.shown = Table.from(rows);
        this.shownQuery = query;
      } finally {
        this.fetching--;
      }
      this.render();
    }

    range(key) {
      if (key === "live") { if (this.view.kind !== "live") this.setView({ kind: "live" }); return; }
      const to = Date.now();
      this.setView({ kind: "range", from: to - RANGES[key], to, label: key });
    }

    onSelect(u) {
      if (u.select.width < 5) return;
      const from = u.posToVal(u.select.left, "x") * 1000;
      const to = u.posToVal(u.select.left + u.select.width, "x") * 1000;
      u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
      this.setView({ kind: "range", from, to, label: "zoom" });
    }

    back() {
      if (!this.history.length) return;
      this.setView(this.history.pop(), false);
    }

    tick() {
      this.renderStatus();
      // Without samples nothing else redraws the readings: keep their age current.
      if (this.status && stateOf(this.status, this.statusAt).css !== "live") this.renderNow();
    }
  }

  // ------------------------------------------------------------- overview

  class Overview {
    constructor(app) { this.app = app; this.stream = null; this.states = null; this.at = 0; }

    open() {
      const stream = this.stream = new EventSource("stream/devices");
      forwardAlarms(stream);
      stream.addEventListener("open", () => this.app.bridgeUp(true));
      stream.addEventListener("error", () => this.app.bridgeUp(false));
      stream.addEventListener("devices", (e) => {
        this.states = JSON.parse(e.data);
        this.at = performance.now();
        this.app.bridgeUp(true);
        this.render();
      });
    }

    close() { if (this.stream) this.stream.close(); }

    render() {
      if (!this.states) return;
      $("#cards").replaceChildren(...this.states.map((s) => {
        const state = stateOf(s, this.at);
        const row = s.latest || {};
        const rows = [0, 1].map((ch) => {
          const t = row["temperature_ch" + ch];
          const sp = row["target_ch" + ch] ?? (s.targets ? s.targets[ch] : null);
          const off = row["pid_engaged_ch" + ch] === 0;
          return el("tr", {}, el("th", {}, "ch" + ch),
                    el("td", { class: "big" }, fixed(t, 4) + " °C"),
                    el("td", {}, badge(s.channels ? s.channels[ch] : null)),
                    ...(off ? [el("td", { colspan: "2" }, "constant " + fixed(row["i_set_ch" + ch], 3) + " A")]
                            : [el("td", {}, "set " + fixed(sp, 3)),
                               el("td", {}, signed(diff(t, sp, 1000), 2) + " mK")]),
                    el("td", {}, fixed(row["tec_i_ch" + ch], 3) + " A"));
        });
        return el("a", { class: "card", href: "#device=" + encodeURIComponent(s.name), "data-device": s.name },
          el("h2", {}, s.name, el("span", { class: "state " + state.css }, state.word.toUpperCase())),
          el("table", {}, ...rows),
          el("div", { class: "meta" },
             "last sample " + (state.age == null ? "never" : duration(state.age) + " ago") +
             " · firmware " + (s.firmware || "?") + ", hardware " + (s.hwrev || "?") +
             " · poll errors: " + errorsText(s.poll_errors)));
      }));
      emit("overview", { states: this.states });
    }

    tick() { this.render(); }
  }

  // ------------------------------------------------------------------ app

  class App {
    constructor() { this.devices = []; this.page = null; }

    async start() {
      this.devices = await getJSON("devices");
      document.querySelectorAll("[data-range]").forEach((b) =>
        b.addEventListener("click", () => this.page && this.page.range && this.page.range(b.dataset.range)));
      $("#back").addEventListener("click", () => this.page && this.page.back && this.page.back());
      $("#tolerance").addEventListener("input", () => this.page && this.page.render && this.page.render());
      let resizing = null;
      window.addEventListener("resize", () => {
        clearTimeout(resizing);
        resizing = setTimeout(() => this.page && this.page.resize && this.page.resize(), 150);
      });
      window.addEventListener("hashchange", () => this.route());
      setInterval(() => this.page && this.page.tick(), 250);
      this.route();
    }

    route() {
      const match = /^#device=(.+)$/.exec(location.hash);
      const wanted = match ? decodeURIComponent(match[1]) : null;
      const info = this.devices.find((d) => d.name === wanted) ||
                   (this.devices.length === 1 ? this.devices[0] : null);
      if (this.page) this.page.close();
      $("#overview").hidden = !!info;
      $("#device").hidden = !info;
      this.renderTabs(info ? info.name : null);
      this.page = info ? new DeviceView(this, info) : new Overview(this);
      document.title = (info ? info.name : "Overview") + " · Thermostats";
      window.liveView = this.page;
      this.page.open();
      emit("route", { name: info ? info.name : null });
    }

    renderTabs(current) {
      const tabs = [];
      if (this.devices.length > 1) tabs.push(["#", "Overview", current === null]);
      for (const d of this.devices) tabs.push(["#device=" + encodeURIComponent(d.name), d.name, d.name === current]);
      $("#tabs").replaceChildren(...tabs.map(([href, text, on]) =>
        el("a", { href, class: on ? "current" : "" }, text)));
    }

    bridgeUp(up) {
      const link = $("#link");
      link.textContent = up ? "connected to the bridge" : "BRIDGE UNREACHABLE: reconnecting…";
      link.classList.toggle("down", !up);
    }
  }

  const app = new App();
  window.liveApp = app;
  window.livePage = { el };  // shared with alarms.js
  app.start().catch((e) => {
    $("#link").textContent = "cannot load the devices: " + e.message;
    $("#link").classList.add("down");
  });
})();
