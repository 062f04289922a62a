// The stability panel of each channel: /stability of the visible window
// (temperature and error spread, drift, time in band) and a log-log plot of
// its Allan deviation, with links to the JSON and to the CSV table.
// live.js announces the visible window with a "liveview:window" event.
"use strict";

(() => {
  const LIVE_REFRESH_MS = 15000;  // the live window moves with every sample: refetch this often
  const PLOT_HEIGHT = 180;
  const $ = (selector, root = document) => root.querySelector(selector);
  const fixed = (v, digits) => (v == null || !isFinite(v) ? "—" : v.toFixed(digits));
  const mk = (k, digits = 3) => (k == null ? "—" : fixed(k * 1000, digits) + " mK");
  const percent = (f) => (f == null ? "—" : fixed(100 * f, 2) + " %");

  function el(tag, attributes = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
    for (const child of children) node.append(child);
    return node;
  }

  class Panel {
    constructor(article) {
      this.channel = Number(article.dataset.channel);
      this.box = el("section", { class: "stability", "aria-label": "stability of channel " + this.channel });
      this.title = el("h3", {}, "Stability of this view");
      this.links = el("span", { class: "stability-links" });
      this.figures = el("table", { class: "stability-figures" });
      this.note = el("p", { class: "stability-note", role: "status" });
      this.plotBox = el("div", { class: "allan-plot" });
      this.box.append(el("div", { class: "stability-head" }, this.title, this.links),
                      this.figures, this.note, this.plotBox);
      article.append(this.box);  // after the time plots, which the page's own code addresses
      this.plot = null;
    }

    query(device, w, bandMk) {
      return "device=" + encodeURIComponent(device) + "&channel=" + this.channel +
             "&from=" + Math.floor(w.from) + "&to=" + Math.ceil(w.to) + "&band_mk=" + bandMk;
    }

    // current(): false once a newer window is asked for (its answer must not be overwritten).
    async load(device, w, bandMk, current) {
      const query = this.query(device, w, bandMk);
      this.links.replaceChildren(
        el("a", { href: "stability?" + query, class: "stability-json" }, "JSON"), " · ",
        el("a", { href: "stability.csv?" + query, class: "stability-csv",
                  download: device + "-ch" + this.channel + "-stability.csv" }, "CSV"));
      const response = await fetch("stability?" + query, { headers: { Accept: "application/json" } });
      const body = await response.json();
      if (!current()) return;
      if (!response.ok) {
        const detail = Array.isArray(body.detail) ? body.detail.map((d) => d.msg).join("; ") : body.detail;
        this.show(null, "no stability figures: " + detail);
        return;
      }
      this.show(body, body.notes.join("; "));
    }

    show(s, note) {
      this.note.textContent = note || "";
      if (!s) { this.figures.replaceChildren(); this.draw([]); return; }
      const e = s.error || {};
      const row = (...cells) => el("tr", {}, ...cells.map((c, i) => el(i % 2 ? "td" : "th", {}, c)));
      this.figures.replaceChildren(
        row("std", mk(s.std), "peak-to-peak", mk(s.p2p),
            "drift", s.drift_k_per_h == null ? "—" : fixed(s.drift_k_per_h * 1000, 3) + " mK/h"),
        row("error std", mk(e.std), "error p2p", mk(e.p2p),
            "within ±" + s.band_mk + " mK", percent(s.in_band_fraction)),
        row("samples", s.n + " in " + s.segments + " segment" + (s.segments === 1 ? "" : "s"),
            "every", s.period_s + " s",
            "ADEV(" + (s.allan.length ? s.allan[0].tau_s : "—") + " s)",
            s.allan.length ? mk(s.allan[0].adev_k, 4) : "—"));
      this.draw(s.allan);
    }

    draw(points) {
      const data = [points.map((p) => p.tau_s), points.map((p) => p.adev_k * 1000),
                    points.map((p) => (p.lo_k == null ? null : p.lo_k * 1000)),
                    points.map((p) => (p.hi_k == null ? null : p.hi_k * 1000))];
      if (this.plot) { this.plot.setData(data); return; }
      const width = Math.max(300, Math.floor(this.box.getBoundingClientRect().width));
      this.plot = new uPlot({
        title: "Allan deviation (σ in mK against τ in s)", width, height: PLOT_HEIGHT,
        scales: { x: { time: false, distr: 3, log: 10 }, y: { distr: 3, log: 10 } },
        axes: [{ label: "τ (s)" }, { size: 64, label: "σ (mK)" }],
        series: [{ label: "τ (s)" },
                 { label: "ADEV", stroke: "#0550ae", width: 1.5, points: { show: true, size: 5 },
                   value: (u, v) => fixed(v, 4) },
                 { label: "−1σ", stroke: "#8c959f", dash: [3, 3], value: (u, v) => fixed(v, 4) },
                 { label: "+1σ", stroke: "#8c959f", dash: [3, 3], value: (u, v) => fixed(v, 4) }],
      }, data, this.plotBox);
    }

    resize() {
      if (this.plot) this.plot.setSize({ width: Math.max(300, Math.floor(this.box.getBoundingClientRect().width)),
                                         height: PLOT_HEIGHT });
    }
  }

  const panels = [...document.querySelectorAll(".channel")].map((article) => new Panel(article));
  let last = { key: null, at: 0 };

  document.addEventListener("liveview:window", (event) => {
    const { device, window: w, live } = event.detail;
    if (!w) return;
    const bandMk = Math.max(0, Number($("#tolerance").value) || 0);
    const key = device + "|" + bandMk + "|" + (live ? "live" : Math.floor(w.from) + "-" + Math.ceil(w.to));
    const now = performance.now();
    if (key === last.key && (!live || now - last.at < LIVE_REFRESH_MS)) return;
    last = { key, at: now };
    loadAll(device, w, bandMk);
  });

  // One channel after the other: a long range's answer takes the bridge a
  // second and a few hundred MB, so the two never run at once.
  let generation = 0;
  async function loadAll(device, w, bandMk) {
    const mine = ++generation;
    const current = () => mine === generation;
    for (const panel of panels) {
      if (!current()) return;
      await panel.load(device, w, bandMk, current).catch((e) => {
        if (current()) panel.show(null, "no stability figures: " + e.message);
      });
    }
  }
  window.addEventListener("resize", () => panels.forEach((p) => p.resize()));
})();
