// The device page's controls: per channel the device's settings (read from
// the device) and forms that change them through the bridge's write API, the
// procedures (autotune, step test, ramp) with their progress, the write-token
// prompt and the device's audit trail.  live.js tells this script which device
// is shown ("thermostat:route") and passes on the stream's status and procedure
// events.
//
// A write carries the token in its Authorization header only; the token is
// kept in this tab's sessionStorage (gone when the tab closes), never in a
// URL, a cookie or the page.  Every write says which value it replaces
// (expect), so a change made meanwhile elsewhere is answered with 409 and
// shown, never overwritten.
"use strict";

(() => {
  const TOKEN_KEY = "thermostat-write-token";
  const TARGET_JUMP_K = 2;        // a larger target change asks for confirmation
  const AUDIT_EVERY_MS = 2000;
  const AUDIT_ROWS = 50;
  const $ = (selector, root = document) => root.querySelector(selector);

  // [key, title, fields [name, label, unit], settings -> {name: value}, API path]
  const GROUPS = [
    ["target", "Target", [["value", "target", "°C"]], (s) => ({ value: s.target }), "target"],
    ["pid", "PID", [["kp", "kp", ""], ["ki", "ki", ""], ["kd", "kd", ""],
                    ["output_min", "output min", "A"], ["output_max", "output max", "A"]],
     (s) => s.pid, "pid"],
    ["limits", "Output limits", [["max_i_pos", "max I cooling", "A"], ["max_i_neg", "max I heating", "A"],
                                 ["max_v", "max V", "V"]], (s) => s.limits, "limits"],
    ["b_parameter", "Thermistor", [["t0", "t0", "°C"], ["r0", "r0", "Ω"], ["b", "B", "K"]],
     (s) => s.b_parameter, "b_parameter"],
  ];

  function el(tag, attributes = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attributes)) {
      if (value === false || value == null) continue;
      if (key === "class") node.className = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children) if (child != null) node.append(child);
    return node;
  }

  const show = (v) => (v == null ? "—" : typeof v === "number" ? String(+v.toPrecision(7))
    : typeof v === "object" ? Object.entries(v).map(([k, x]) => k + " " + show(x)).join(", ") : String(v));
  const pad = (n) => String(n).padStart(2, "0");
  const localTime = (ms) => {
    const d = new Date(ms);
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " +
           pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
  };

  // ------------------------------------------------------------------ API

  const token = () => sessionStorage.getItem(TOKEN_KEY);

  // One request; `auth` is the write token to send (writes only).
  async function call(method, path, body, auth = null) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (auth) headers.Authorization = "Bearer " + auth;
    let response;
    try {
      response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body),
                                     credentials: "same-origin", cache: "no-store" });
    } catch (e) {
      return { ok: false, status: 0, data: { detail: "the bridge does not answer" } };
    }
    let data = null;
    try { data = await response.json(); } catch (e) { data = null; }
    return { ok: response.ok, status: response.status, data };
  }

  // The reason of a failed call, in words.
  function reason(r) {
    const d = r.data && r.data.detail;
    if (Array.isArray(d)) return d.map((e) => (e.loc ? e.loc[e.loc.length - 1] + ": " : "") + e.msg).join("; ");
    return (d || "HTTP " + r.status) + (r.status === 503 ? " (the device does not answer)" : "");
  }

  // -------------------------------------------------------------- panels

  class Controls {
    constructor() {
      this.access = null;          // {writable, reason}
      this.who = null;             // the token's name once checked
      this.device = null;          // the device shown, or null
      this.settings = [null, null];
      this.reads = { running: [null, null], again: [false, false] };
      this.jobs = {};
      this.auditTimer = null;
      this.lastAudit = "";
    }

    async start() {
      const r = await call("GET", "access", undefined);
      this.access = r.ok ? r.data : { writable: false, reason: "cannot ask the bridge: " + reason(r) };
      if (this.access.writable && token()) await this.unlock(token(), true);
      document.addEventListener("thermostat:route", (e) => this.route(e.detail.name));
      document.addEventListener("thermostat:status", (e) => this.onStatus(e.detail));
      document.addEventListener("thermostat:procedure", (e) => this.onProcedure(e.detail));
      if (window.liveView && window.liveView.name) this.route(window.liveView.name);
    }

    get canWrite() { return !!(this.access && this.access.writable && this.who); }

    base(ch) {
      const d = "devices/" + encodeURIComponent(this.device);
      return ch == null ? d : d + "/channels/" + ch + "/";
    }

    route(name) {
      this.device = name;
      this.settings = [null, null];
      this.reads = { running: [null, null], again: [false, false] };
      this.jobs = {};
      clearInterval(this.auditTimer);
      if (!name) return;
      this.renderAccess();
      this.snapshot = null;
      this.renderSnapshots();
      for (const ch of [0, 1]) this.load(ch);
      this.refreshAudit();
      this.auditTimer = setInterval(() => document.hidden || this.refreshAudit(), AUDIT_EVERY_MS);
    }

    // ------------------------------------------------------------ token

    async unlock(value, quiet = false) {
      const check = await call("POST", "access", undefined, value);
      if (check.ok) {
        sessionStorage.setItem(TOKEN_KEY, value);
        this.who = check.data.name;
        this.accessMessage = null;
      } else {
        sessionStorage.removeItem(TOKEN_KEY);
        this.who = null;
        this.accessMessage = quiet ? null : "token refused: " + reason(check);
      }
      this.renderAccess();
      this.renderAll();
      this.renderSnapshots();
    }

    lock() {
      sessionStorage.removeItem(TOKEN_KEY);
      this.who = null;
      this.renderAccess();
      this.renderAll();
      this.renderSnapshots();
    }

    renderAccess() {
      const box = $("#access");
      const mode = $("#mode");
      if (!this.access || !this.access.writable) {
        box.replaceChildren(el("span", { class: "badge readonly" }, "READ-ONLY"),
                            el("span", {}, (this.access && this.access.reason) || "this bridge is read-only"));
        if (mode) mode.textContent = "Settings: read-only (no write tokens).";
        return;
      }
      if (this.who) {
        box.replaceChildren(el("span", { class: "badge writer" }, "CHANGES ENABLED"),
                            el("span", {}, "changing as "), el("strong", { class: "who" }, this.who),
                            el("span", { class: "muted" }, " (every change is read back and listed in the audit trail below)"),
                            el("button", { type: "button", class: "lock", onclick: () => this.lock() }, "Lock"));
        if (mode) mode.textContent = "Settings: changes enabled as " + this.who + ".";
        return;
      }
      const input = el("input", { type: "password", id: "write-token", autocomplete: "off", spellcheck: "false",
                                  placeholder: "write token", "aria-label": "write token" });
      const form = el("form", { class: "unlock", onsubmit: (e) => { e.preventDefault(); if (input.value) this.unlock(input.value.trim()); } },
                      el("span", { class: "badge" }, "LOCKED"),
                      el("label", { for: "write-token" }, "To change settings, enter your write token:"), input,
                      el("button", { type: "submit" }, "Unlock"),
                      this.accessMessage ? el("span", { class: "error" }, this.accessMessage) : null);
      box.replaceChildren(form);
      if (mode) mode.textContent = "Settings: changes need a write token.";
    }

    // --------------------------------------------------------- settings

    // Read channel ch's settings from the device.  One read per channel at a
    // time: a call while one runs (a status event comes every poll) asks for
    // one more read after it, and its promise settles when that one has.
    load(ch) {
      const reads = this.reads;
      reads.again[ch] = true;
      if (!reads.running[ch]) reads.running[ch] = this.readWhileAsked(ch, reads);
      return reads.running[ch];
    }

    async readWhileAsked(ch, reads) {
      const device = this.device;
      try {
        while (reads.again[ch] && device === this.device) {
          reads.again[ch] = false;
          const r = await call("GET", this.base(ch) + "settings", undefined);
          if (device !== this.device) break;
          this.settings[ch] = r.ok ? r.data : { error: reason(r) };
          this.render(ch);
        }
      } finally {
        reads.running[ch] = null;
      }
    }

    onStatus({ name, status }) {
      if (name !== this.device) return;
      // A target, gain or limit seen changed (by anyone): read the settings again.
      for (const ch of [0, 1]) {
        const s = this.settings[ch];
        // (a running procedure moves the target itself; its end reads them again)
        if (this.jobs[ch] && this.jobs[ch].running) continue;
        if (!s || s.error || this.busy === ch) {
          if (s && s.error && status.status === "ok") this.load(ch);
          continue;
        }
        const polled = { target: status.targets && status.targets[ch],
                         gains: status.gains && status.gains[ch], limits: status.limits && status.limits[ch] };
        const differs = (polled.target != null && polled.target !== s.target) ||
          (polled.gains && ["kp", "ki", "kd", "output_min", "output_max"].some((k) => polled.gains[k] !== s.pid[k])) ||
          (polled.limits && ["max_i_pos", "max_i_neg", "max_v"].some((k) => polled.limits[k] !== s.limits[k]));
        const engaged = status.latest && status.latest["pid_engaged_ch" + ch];
        if (differs || (engaged != null && !!engaged !== s.pid_engaged)) this.load(ch);
      }
    }

    renderAll() { for (const ch of [0, 1]) this.render(ch); }

    render(ch) {
      const box = $(`.channel[data-channel="${ch}"] .settings`);
      if (!box) return;
      const s = this.settings[ch];
      const shown = box.querySelector("details");
      const open = shown ? shown.open : false;
      const messages = this.messages || (this.messages = {});
      if (!s) { box.replaceChildren(el("p", { class: "muted" }, "reading the settings…")); return; }
      const why = !this.access || !this.access.writable ? "Read-only bridge: the settings are shown, not changed."
        : !this.who ? "Locked: enter a write token above to change these settings." : null;
      const body = [];
      if (s.error) {
        body.push(el("p", { class: "error" }, "Cannot read the settings: " + s.error));
      } else {
        if (why) body.push(el("p", { class: "why" }, why));
        const grid = el("div", { class: "groups" });
        for (const group of GROUPS) grid.append(this.groupForm(ch, s, group, messages));
        grid.append(this.postfilterForm(ch, s, messages), this.modeForm(ch, s, messages));
        body.push(grid, this.autotuneForm(ch, s, messages));
      }
      const details = el("details", { class: "panel", open },
                         el("summary", {}, "Settings of channel " + ch,
                            s.error ? null : el("span", { class: "summary muted" },
                              " · target " + show(s.target) + " °C · PID " + (s.pid_engaged ? "on" : "off") +
                              " · limits " + show(s.limits.max_i_pos) + "/" + show(s.limits.max_i_neg) + " A, " + show(s.limits.max_v) + " V")),
                         ...body);
      box.replaceChildren(details);
      if (!this.canWrite) box.querySelectorAll("input, select, button.write").forEach((n) => { n.disabled = true; });
    }

    message(messages, key, ch) {
      const m = messages[key + ch];
      if (!m) return el("div", { class: "message" });
      if (m.confirm) {
        return el("div", { class: "message confirm", role: "alert" }, m.text + " ",
                  el("button", { type: "button", class: "write danger", onclick: m.confirm }, "Confirm"),
                  el("button", { type: "button", onclick: () => { delete messages[key + ch]; this.render(ch); } }, "Cancel"));
      }
      return el("div", { class: "message " + (m.ok ? "ok" : "error"), role: m.ok ? "status" : "alert" }, m.text);
    }

    groupForm(ch, s, [key, title, fields, read, path], messages) {
      const now = read(s);
      const inputs = {};
      const form = el("form", { class: "group", "data-group": key,
                                onsubmit: (e) => { e.preventDefault(); this.submitGroup(ch, key, fields, now, inputs, path); } },
                      el("h3", {}, title));
      for (const [name, label, unit] of fields) {
        const input = el("input", { type: "number", step: "any", name, value: now[name] == null ? "" : show(now[name]),
                                    "aria-label": title + " " + label, inputmode: "decimal" });
        inputs[name] = input;
        form.append(el("label", { class: "field" }, el("span", { class: "label" }, label), input,
                       el("span", { class: "unit" }, unit)));
      }
      if (key === "target") {
        // Empty: the target is set at once; a rate: the bridge ramps it there.
        inputs.ramp = el("input", { type: "number", step: "any", min: "0", name: "ramp", placeholder: "at once",
                                    "aria-label": "Target ramp rate", inputmode: "decimal" });
        form.append(el("label", { class: "field" }, el("span", { class: "label" }, "ramp"), inputs.ramp,
                       el("span", { class: "unit" }, "K/s")));
      }
      form.append(el("div", { class: "actions" }, el("button", { type: "submit", class: "write" }, key === "target" ? "Set" : "Apply")),
                  this.message(messages, key, ch));
      return form;
    }

    // Risky changes ask first: limits raised, a large target jump, the PID off.
    risks(key, now, values) {
      const out = [];
      if (key === "limits") {
        for (const [k, v] of Object.entries(values)) if (now[k] != null && v > now[k]) out.push(k + " raised from " + show(now[k]) + " to " + show(v));
      }
      if (key === "target" && now.value != null && Math.abs(values.value - now.value) > TARGET_JUMP_K) {
        out.push("target jumps by " + show(values.value - now.value) + " K");
      }
      return out;
    }

    submitGroup(ch, key, fields, now, inputs, path) {
      const values = {};
      for (const [name] of fields) {
        const text = inputs[name].value.trim();
        // Only what was edited is sent (the shown value is rounded to 7 digits).
        if (text === "" || text === inputs[name].getAttribute("value")) continue;
        const v = Number(text);
        if (!Number.isFinite(v)) { this.say(ch, key, false, name + ": not a number"); return; }
        values[name] = v;
      }
      if (!Object.keys(values).length) { this.say(ch, key, false, "nothing changed"); return; }
      const rampText = inputs.ramp ? inputs.ramp.value.trim() : "";
      if (rampText !== "") {
        const rate = Number(rampText);
        if (!(rate > 0) || !Number.isFinite(rate)) { this.say(ch, key, false, "ramp: a rate above 0 K/s, or empty to set the target at once"); return; }
        this.write(ch, key, "POST", "ramp", { target: values.value, rate, expect: now.value });
        return;
      }
      const expect = {};
      for (const k of Object.keys(values)) expect[k] = now[k];
      const body = key === "target" ? { value: values.value, expect: now.value } : { ...values, expect };
      const send = () => this.write(ch, key, "PUT", path, body);
      const risks = this.risks(key, now, values);
      if (risks.length) this.ask(ch, key, "Really? " + risks.join("; ") + ".", send);
      else send();
    }

    postfilterForm(ch, s, messages) {
      const select = el("select", { name: "rate", "aria-label": "postfilter" },
                        el("option", { value: "off", selected: s.postfilter == null }, "off"),
                        ...s.postfilter_rates.map((r) => el("option", { value: String(r), selected: s.postfilter != null && Math.abs(s.postfilter - r) < 0.01 }, r + " Hz")));
      return el("form", { class: "group", "data-group": "postfilter",
                          onsubmit: (e) => {
                            e.preventDefault();
                            const rate = select.value === "off" ? null : Number(select.value);
                            this.write(ch, "postfilter", "PUT", "postfilter", { rate });
                          } },
                el("h3", {}, "Postfilter"), el("label", { class: "field" }, el("span", { class: "label" }, "rate"), select),
                el("div", { class: "actions" }, el("button", { type: "submit", class: "write" }, "Apply")),
                this.message(messages, "postfilter", ch));
    }

    modeForm(ch, s, messages) {
      const current = el("input", { type: "number", step: "any", name: "current", value: show(s.i_set), "aria-label": "constant current", inputmode: "decimal" });
      const form = el("form", { class: "group mode", "data-group": "mode", onsubmit: (e) => e.preventDefault() },
                      el("h3", {}, "Output"),
                      el("p", { class: "mode-now" }, s.pid_engaged ? "PID regulates (on)" : "Constant current " + show(s.i_set) + " A (PID off)"));
      if (!s.pid_engaged) {
        form.append(el("div", { class: "actions" },
                       el("button", { type: "button", class: "write", onclick: () => this.write(ch, "mode", "POST", "engage") }, "Engage PID")));
      }
      form.append(el("label", { class: "field" }, el("span", { class: "label" }, "constant I"), current, el("span", { class: "unit" }, "A")),
                  el("div", { class: "actions" },
                     el("button", { type: "button", class: "write", onclick: () => {
                       const v = Number(current.value);
                       if (current.value.trim() === "" || !Number.isFinite(v)) { this.say(ch, "mode", false, "constant I: not a number"); return; }
                       const send = () => this.write(ch, "mode", "PUT", "current", { value: v });
                       if (s.pid_engaged) this.ask(ch, "mode", "Really switch the PID off and drive " + show(v) + " A?", send);
                       else send();
                     } }, s.pid_engaged ? "PID off, drive this current" : "Set current")),
                  this.message(messages, "mode", ch));
      return form;
    }

    autotuneForm(ch, s, messages) {
      const job = this.jobs[ch];
      const running = job && job.running;
      const target = el("input", { type: "number", step: "any", name: "target", value: show(s.target), "aria-label": "autotune target", inputmode: "decimal" });
      const delta = el("input", { type: "number", step: "any", name: "delta", value: "0.5", "aria-label": "step test delta", inputmode: "decimal" });
      const rule = el("select", { name: "rule", "aria-label": "autotune rule" },
                      ...s.autotune_rules.map((r) => el("option", { value: r }, r)));
      const form = el("form", { class: "group autotune", "data-group": "autotune",
                                onsubmit: (e) => {
                                  e.preventDefault();
                                  const t = Number(target.value);
                                  this.ask(ch, "autotune", "The autotune drives the channel with a relay around " + show(t) +
                                           " °C for several minutes, then puts it back. Start?",
                                           () => this.write(ch, "autotune", "POST", "autotune", { target: t, rule: rule.value }));
                                } },
                      el("h3", {}, "Procedures"),
                      el("label", { class: "field" }, el("span", { class: "label" }, "at"), target, el("span", { class: "unit" }, "°C")),
                      el("label", { class: "field" }, el("span", { class: "label" }, "rule"), rule),
                      el("div", { class: "actions" },
                         el("button", { type: "submit", class: "write start", disabled: running }, "Start autotune"),
                         el("button", { type: "button", class: "write danger abort", disabled: !running,
                                        onclick: () => this.write(ch, "autotune", "POST", "abort") }, "Abort")),
                      el("label", { class: "field" }, el("span", { class: "label" }, "step test"), delta, el("span", { class: "unit" }, "K")),
                      el("div", { class: "actions" },
                         el("button", { type: "button", class: "write start step", disabled: running || !s.pid_engaged,
                                        onclick: () => {
                                          const d = Number(delta.value);
                                          this.ask(ch, "autotune", "The step test moves the target by " + show(d) + " K and back. Start?",
                                                   () => this.write(ch, "autotune", "POST", "step_test", { delta: d }));
                                        } }, "Start step test")),
                      el("div", { class: "job-slot" }, job ? this.jobView(ch, job) : null));
      form.append(this.message(messages, "autotune", ch));
      return form;
    }

    // The procedure's progress, updated in place (the forms keep what is typed).
    renderJob(ch) {
      const form = $(`.channel[data-channel="${ch}"] form.autotune`);
      if (!form) { this.render(ch); return; }
      const job = this.jobs[ch];
      $(".job-slot", form).replaceChildren(...(job ? [this.jobView(ch, job)] : []));
      if (this.canWrite) {
        form.querySelectorAll("button.start").forEach((n) => { n.disabled = !!(job && job.running); });
        $("button.abort", form).disabled = !(job && job.running);
      } else {
        form.querySelectorAll("button.write").forEach((n) => { n.disabled = true; });
      }
    }

    jobView(ch, job) {
      const p = job.progress || {};
      const parts = [job.procedure + " by " + job.who + ": " + (p.state || "starting")];
      if (p.cycles != null) parts.push(p.cycles + " cycles");
      if (p.amplitude != null) parts.push("amplitude " + show(p.amplitude) + " K");
      if (p.period != null) parts.push("period " + show(p.period) + " s");
      if (p.setpoint != null) parts.push("target " + p.setpoint.toFixed(3) + " °C, to " + show(p.target) + " °C at " + show(p.rate) + " K/s");
      if (p.remaining_s != null && job.running) parts.push("about " + Math.round(p.remaining_s) + " s left");
      const view = el("div", { class: "job" + (job.running ? " running" : ""), role: "status" },
                      el("progress", job.running ? {} : { value: 1, max: 1 }), el("span", { class: "job-state" }, parts.join(" · ")));
      if (job.error) view.append(el("div", { class: "error" }, job.error));
      const r = job.result;
      if (r && r.up) {
        const figures = (f) => (f ? "rise " + show(f.rise_time_s) + " s, overshoot " + show(f.overshoot_k) + " K, settled " +
                                    (f.settling_time_s == null ? "not within the time allowed" : "in " + show(f.settling_time_s) + " s") : "—");
        view.append(el("div", { class: "result step-result" }, "up: " + figures(r.up) + " · down: " + figures(r.down)));
      }
      const g = job.result && job.result.gains;
      if (g && !job.applied) {
        const apply = { kp: g.kp, ki: g.ki, kd: g.kd };
        if (job.result.output_min != null) { apply.output_min = job.result.output_min; apply.output_max = job.result.output_max; }
        view.append(el("div", { class: "result" },
          el("span", {}, "found (" + job.result.rule + "): kp " + show(g.kp) + ", ki " + show(g.ki) + ", kd " + show(g.kd) +
                         (job.result.ku != null ? " · Ku " + show(job.result.ku) + ", Pu " + show(job.result.pu) + " s" : "")),
          el("button", { type: "button", class: "write", onclick: async () => {
            if (await this.write(ch, "autotune", "PUT", "pid", apply)) { job.applied = true; this.render(ch); }
          } }, "Apply these gains"),
          el("button", { type: "button", class: "write", onclick: () => { job.applied = true; this.say(ch, "autotune", true, "result discarded"); } }, "Discard")));
      }
      return view;
    }

    onProcedure({ name, jobs }) {
      if (name !== this.device) return;
      for (const ch of [0, 1]) {
        const job = jobs[ch];
        if (!job) continue;
        const old = this.jobs[ch];
        if (old && old.applied && !job.running && old.result) job.applied = true;
        this.jobs[ch] = job;
        if (old && old.running && !job.running) this.load(ch);
        else this.renderJob(ch);
      }
    }

    // ------------------------------------------------------------ writes

    say(ch, key, ok, text) { this.messages[key + ch] = { ok, text }; this.render(ch); }

    ask(ch, key, text, confirm) {
      this.messages[key + ch] = { text, confirm: () => { delete this.messages[key + ch]; confirm(); } };
      this.render(ch);
    }

    async write(ch, key, method, path, body) {
      if (!this.canWrite) return false;
      const r = await call(method, this.base(ch) + path, body, token());
      if (r.ok) {
        const started = ["autotune", "step_test", "ramp"].includes(path);
        const aborted = path === "abort" && this.jobs[ch];
        if (started) this.jobs[ch] = r.data;
        this.say(ch, key, true, started ? path.replace("_", " ") + " started" + (path === "ramp" ? "; its progress and Abort are under Procedures" : "")
                 : aborted ? (aborted.procedure === "ramp" ? "aborting: the target stays where the ramp has brought it" : "aborting: the channel is being restored")
                 : "done; the device now has " + Object.entries(r.data).map(([k, v]) => k + " " + show(v)).join(", "));
        this.refreshAudit();
        if (!started && path !== "abort") await this.load(ch);
        return true;
      }
      if (r.status === 409 && r.data && r.data.current) {
        this.say(ch, key, false, "not changed: someone changed it meanwhile; the device now has " +
                 Object.entries(r.data.current).map(([k, v]) => k + " " + show(v)).join(", ") + " (shown above)");
        await this.load(ch);
      } else if (r.status === 401 || r.status === 403) {
        this.lock();
        this.say(ch, key, false, "not changed: " + reason(r));
      } else {
        this.say(ch, key, false, "not changed: " + reason(r));
      }
      this.refreshAudit();
      return false;
    }

    // --------------------------------------------------------- snapshots

    // Download this device's settings; compare a snapshot file with the
    // device now and restore it (onto this device, whichever it came from).
    renderSnapshots() {
      const box = $("#snapshots");
      if (!box || !this.device) return;
      const file = el("input", { type: "file", accept: ".json,application/json", id: "snapshot-file", "aria-label": "snapshot file",
                                 onchange: () => file.files[0] && this.compareFile(file.files[0]) });
      const snap = this.snapshot;
      const parts = [
        el("h2", {}, "Settings snapshot"),
        el("div", { class: "snapshot-actions" },
           el("a", { class: "button", id: "snapshot-download", href: this.base() + "/snapshot", download: this.device + ".thermostat.json" },
              "Download the settings of " + this.device),
           el("label", { for: "snapshot-file" }, "Compare a snapshot file with the device now:"), file)];
      if (snap) {
        parts.push(el("p", {}, "File: " + snap.name + " (" + snap.data.device + ", firmware " + snap.data.firmware + ", taken " + snap.data.taken + ")"));
        if (snap.error) parts.push(el("p", { class: "error" }, snap.error));
        else if (snap.diff) {
          parts.push(snap.diff.length
            ? el("table", { class: "audit-table snapshot-diff" },
                 el("thead", {}, el("tr", {}, el("th", {}, "setting"), el("th", {}, "in the file"), el("th", {}, "on " + this.device + " now"))),
                 el("tbody", {}, ...snap.diff.map((d) => el("tr", {}, el("td", {}, d.setting), el("td", {}, show(d.a)), el("td", {}, show(d.b))))))
            : el("p", { class: "ok" }, "The device has the file's settings."));
        }
        const restore = el("button", { type: "button", class: "write danger", id: "snapshot-restore", disabled: !this.canWrite,
                                       onclick: () => this.askRestore() }, "Restore the file onto " + this.device);
        parts.push(el("div", { class: "snapshot-actions" }, restore,
                      this.canWrite ? null : el("span", { class: "why" }, "(needs a write token)")));
        if (snap.message) parts.push(el("p", { class: snap.message.ok ? "ok" : snap.message.confirm ? "confirm" : "error", role: "status" },
                                        snap.message.text, ...(snap.message.confirm ? [" ",
                                        el("button", { type: "button", class: "write danger", onclick: snap.message.confirm }, "Confirm"),
                                        el("button", { type: "button", onclick: () => { snap.message = null; this.renderSnapshots(); } }, "Cancel")] : [])));
      }
      box.replaceChildren(...parts);
    }

    async compareFile(blob) {
      let data;
      try { data = JSON.parse(await blob.text()); } catch (e) { data = null; }
      if (!data || !Array.isArray(data.channels)) {
        this.snapshot = { name: blob.name, data: {}, error: "not a snapshot file" };
        this.renderSnapshots();
        return;
      }
      this.snapshot = { name: blob.name, data };
      await this.refreshDiff();
    }

    async refreshDiff() {
      const snap = this.snapshot;
      const r = await call("POST", "snapshots/diff", { a: snap.data, device: this.device });
      snap.diff = r.ok ? r.data : null;
      snap.error = r.ok ? null : "cannot compare: " + reason(r);
      this.renderSnapshots();
    }

    askRestore() {
      const snap = this.snapshot;
      const n = snap.diff ? snap.diff.length : "the";
      snap.message = { text: "Write " + n + " setting(s) of " + snap.data.device + " (firmware " + snap.data.firmware + ") onto " +
                             this.device + "? Each is checked first and read back.",
                       confirm: () => this.restoreFile() };
      this.renderSnapshots();
    }

    async restoreFile() {
      const snap = this.snapshot;
      const r = await call("PUT", this.base() + "/snapshot", snap.data, token());
      snap.message = r.ok ? { ok: true, text: "restored: " + r.data.restored.length + " settings written and read back" }
                          : { ok: false, text: "not restored: " + reason(r) };
      await this.refreshDiff();
      for (const ch of [0, 1]) this.load(ch);
      this.refreshAudit();
    }

    // ------------------------------------------------------------- audit

    async refreshAudit() {
      const device = this.device;
      if (!device) return;
      const r = await call("GET", "audit?device=" + encodeURIComponent(device), undefined);
      if (device !== this.device || !r.ok) return;
      const key = JSON.stringify(r.data.slice(-AUDIT_ROWS));
      if (key === this.lastAudit) return;
      this.lastAudit = key;
      const rows = r.data.slice(-AUDIT_ROWS).reverse().map((e) => el("tr", { class: "result-" + e.result.replace(/ /g, "-") + (e.who === "outside the bridge" ? " outside" : "") },
        el("td", {}, localTime(e.ts)), el("td", {}, e.channel == null ? "device" : "ch" + e.channel),
        el("td", {}, e.what), el("td", { class: "who" }, e.who),
        el("td", {}, change(e)), el("td", {}, e.result + (e.detail && e.result !== "ok" ? ": " + e.detail : ""))));
      $("#audit").replaceChildren(
        el("h2", {}, "Audit trail of " + device),
        el("p", { class: "hint" }, "Every change made through this bridge (by the write token's name) and every change of a target, PID or limit seen on the device that this bridge did not make (\u201coutside the bridge\u201d), newest first. As JSON: ",
           el("a", { href: "audit?device=" + encodeURIComponent(device) }, "audit"), "."),
        rows.length ? el("table", { class: "audit-table" },
                         el("thead", {}, el("tr", {}, ...["time", "channel", "what", "who", "before → after (read back)", "result"].map((h) => el("th", {}, h)))),
                         el("tbody", {}, ...rows))
          : el("p", { class: "muted" }, "No changes recorded yet."));
    }
  }

  function change(e) {
    const fmt = (o) => (o == null ? "—" : Object.entries(o).map(([k, v]) => k + " " + show(v)).join(", "));
    if (e.before == null && e.after == null) return e.requested ? "asked: " + fmt(e.requested) : "";
    return fmt(e.before) + " → " + fmt(e.after);
  }

  const controls = new Controls();
  window.thermostatControls = controls;
  controls.start();
})();
