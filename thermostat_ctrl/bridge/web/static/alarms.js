// The alarm banner of the live view: the active alarms, from the "alarms"
// events live.js receives on its stream (window event "thermostat-alarms"),
// with Acknowledge and Silence buttons.  Those need the bridge's token: the
// page asks for it once and keeps it for this tab only (sessionStorage),
// and sends it as "Authorization: Bearer", never in a URL.  Loaded after
// live.js, whose el() it uses.
"use strict";

(() => {
  const TOKEN_KEY = "thermostat-bridge-token";
  const SILENCE_S = 3600;
  const $ = (selector) => document.querySelector(selector);

  const { el } = window.livePage;

  const since = (ms) => {
    const s = Math.max(0, (Date.now() - ms) / 1000);
    return s < 120 ? Math.round(s) + " s" : s < 7200 ? Math.round(s / 60) + " min"
      : (s / 3600).toFixed(1) + " h";
  };

  function token() {
    let value = sessionStorage.getItem(TOKEN_KEY);
    if (!value) {
      value = window.prompt("Acknowledging and silencing alarms need the bridge's token" +
                            " (kept in this tab only):");
      if (value) sessionStorage.setItem(TOKEN_KEY, value.trim());
    }
    return value ? value.trim() : null;
  }

  async function post(url, body, method = "POST") {
    const secret = token();
    if (!secret) return;
    const response = await fetch(url, {
      method, headers: { "Content-Type": "application/json", Authorization: "Bearer " + secret },
      body: body == null ? undefined : JSON.stringify(body) });
    if (response.status === 401) sessionStorage.removeItem(TOKEN_KEY);
    if (!response.ok) {
      let detail = "HTTP " + response.status;
      try { detail = (await response.json()).detail || detail; } catch (e) { /* not JSON */ }
      show(null, typeof detail === "string" ? detail : JSON.stringify(detail));
    }
  }

  let alarms = [];

  function show(list, problem) {
    if (list) alarms = list;
    const banner = $("#alarms");
    const loud = alarms.filter((a) => !a.silenced);
    const quiet = alarms.length - loud.length;
    banner.hidden = alarms.length === 0 && !problem;
    banner.className = "alarms " + (loud.some((a) => a.severity === "critical") ? "critical"
      : loud.length ? "warning" : "quiet");
    const items = loud.map((a) => el("li", { "data-rule": a.rule, "data-id": String(a.id) },
      el("span", { class: "severity " + a.severity }, a.severity.toUpperCase()), " ",
      el("span", { class: "message" }, a.message), " ",
      el("span", { class: "age" }, "since " + since(a.first_seen) +
         (a.acknowledged_by ? " · acknowledged by " + a.acknowledged_by : "")),
      a.acknowledged_by ? "" : button("Acknowledge", () => post("alarms/" + a.id + "/ack",
                                                                 { by: "page" })),
      button("Silence 1 h", () => post("alarms/silences", {
        duration_s: SILENCE_S, device: a.device, channel: a.channel, rule: a.rule,
        by: "page", comment: "from the live view" }))));
    banner.replaceChildren(
      el("strong", {}, loud.length ? loud.length + " active alarm" + (loud.length > 1 ? "s" : "")
                                   : "no unsilenced alarm"),
      quiet ? el("span", { class: "quiet" }, " (" + quiet + " silenced)") : "",
      el("ul", {}, ...items),
      problem ? el("p", { class: "problem" }, problem) : "");
  }

  function button(text, action) {
    const b = el("button", { type: "button" }, text);
    b.addEventListener("click", (e) => { e.preventDefault(); action(); });
    return b;
  }

  window.addEventListener("thermostat-alarms", (e) => show(e.detail));
  setInterval(() => { if (alarms.length) show(); }, 5000);  // the "since" ages
})();
