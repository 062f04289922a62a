// The overview's sparklines: per device and channel the temperature (and the
// setpoint, dashed) of the last minutes, for a lab's wall screen.  The first
// minutes come from /series, then each "devices" event of the overview's
// stream adds its rows (live.js passes them on as "thermostat:overview").
"use strict";

(() => {
  const WINDOW_MS = 10 * 60e3;
  const POINTS = 300;
  const HEIGHT = 96;
  const STYLE = { temperature: "#0550ae", setpoint: "#cf222e", grey: "#8c959f", text: "#59636e" };
  const traces = {};   // device -> [{ts, t: [ch0, ch1], sp: [ch0, ch1]}], oldest first
  const asked = new Set();
  window.sparklines = traces;

  const rowOf = (row, targets) => ({
    ts: row.ts, t: [row.temperature_ch0, row.temperature_ch1],
    sp: [0, 1].map((ch) => row["target_ch" + ch] ?? (targets ? targets[ch] : null)) });

  function add(name, row) {
    const rows = traces[name] || (traces[name] = []);
    if (rows.length && row.ts <= rows[rows.length - 1].ts) return;
    rows.push(row);
    while (rows.length && rows[0].ts < row.ts - WINDOW_MS) rows.shift();
  }

  async function history(name) {
    asked.add(name);
    try {
      const r = await fetch("series?device=" + encodeURIComponent(name) + "&from=" +
                            Math.floor(Date.now() - WINDOW_MS) + "&max_points=" + POINTS,
                            { headers: { Accept: "application/json" } });
      if (!r.ok) throw new Error("HTTP " + r.status);
      const rows = await r.json();
      const later = traces[name] || [];
      traces[name] = [];
      for (const row of rows) add(name, rowOf(row, null));
      for (const row of later) add(name, row);
    } catch (e) {
      asked.delete(name);  // asked again with the next event
    }
  }

  function draw(canvas, rows, ch, live) {
    const width = canvas.clientWidth;
    const scale = window.devicePixelRatio || 1;
    canvas.width = width * scale;
    canvas.height = HEIGHT * scale;
    const ctx = canvas.getContext("2d");
    ctx.scale(scale, scale);
    let lo = Infinity, hi = -Infinity;
    for (const r of rows) for (const v of [r.t[ch], r.sp[ch]]) if (v != null) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
    if (lo === Infinity) return;
    if (hi - lo < 0.01) { const mid = (hi + lo) / 2; lo = mid - 0.005; hi = mid + 0.005; }
    // The last minutes, or as many as there are since the bridge started.
    const end = rows[rows.length - 1].ts, start = Math.max(end - WINDOW_MS, rows[0].ts);
    const span = Math.max(end - start, 1);
    const left = 58;
    const x = (ts) => left + ((ts - start) / span) * (width - left - 2);
    const y = (v) => HEIGHT - 4 - ((v - lo) / (hi - lo)) * (HEIGHT - 8);
    for (const [key, dash] of [["sp", [4, 3]], ["t", []]]) {
      ctx.beginPath();
      ctx.setLineDash(dash);
      ctx.strokeStyle = !live ? STYLE.grey : key === "t" ? STYLE.temperature : STYLE.setpoint;
      ctx.lineWidth = 1.5;
      let pen = false;
      for (const r of rows) {
        const v = r[key][ch];
        if (v == null) { pen = false; continue; }
        if (pen) ctx.lineTo(x(r.ts), y(v)); else ctx.moveTo(x(r.ts), y(v));
        pen = true;
      }
      ctx.stroke();
    }
    ctx.setLineDash([]);
    ctx.fillStyle = STYLE.text;
    ctx.font = "11px system-ui, sans-serif";
    ctx.fillText(hi.toFixed(2) + " °C", 0, 11);
    ctx.fillText(lo.toFixed(2) + " °C", 0, HEIGHT - 3);
    const minutes = span / 60e3;
    ctx.fillText("ch" + ch + " · " + (minutes >= 1 ? Math.round(minutes) + " min" : Math.round(span / 1e3) + " s"),
                 0, HEIGHT / 2 + 4);
  }

  document.addEventListener("thermostat:overview", (e) => {
    for (const s of e.detail.states) {
      if (!asked.has(s.name)) history(s.name);
      if (s.latest) add(s.name, rowOf(s.latest, s.targets));
      const card = document.querySelector(`.card[data-device="${CSS.escape(s.name)}"]`);
      const rows = traces[s.name];
      if (!card || !rows || !rows.length) continue;
      const live = s.status === "ok";
      card.classList.toggle("gone", !live);
      const box = document.createElement("div");
      box.className = "sparks";
      card.querySelector("table").after(box);
      for (const ch of [0, 1]) {
        const canvas = document.createElement("canvas");
        canvas.className = "spark";
        canvas.setAttribute("role", "img");
        canvas.setAttribute("aria-label", "channel " + ch + ": temperature and setpoint of the last minutes");
        box.append(canvas);
        draw(canvas, rows, ch, live);
      }
    }
  });
})();
