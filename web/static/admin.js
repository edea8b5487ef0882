// The admin dashboard: live streams with ten-minute graphs drawn as SVG (no library, no CDN),
// kick and ban buttons, and users with key rotation. Every call goes to /api/admin/ with the
// session cookie and, for changes, the page's CSRF token in X-CSRF-Token.
"use strict";

(() => {
  const csrf = document.querySelector("meta[name=csrf-token]").content;
  const SVG = "http://www.w3.org/2000/svg";
  const WINDOW = 600; // seconds on a graph's x axis
  const W = 300, H = 80; // the graphs' viewBox
  const CHARTS = [
    { field: "kbps", label: "ingest bitrate", unit: "kb/s" },
    { field: "fps", label: "frame rate", unit: "fps" },
    { field: "keyframe_interval", label: "keyframe interval", unit: "s", limit: "fragment" },
    { field: "segment_lag", label: "segment lag", unit: "s" },
  ];
  const problem = document.getElementById("problem");

  async function api(method, path, body) {
    const init = { method, credentials: "same-origin", headers: {} };
    if (method !== "GET") init.headers["X-CSRF-Token"] = csrf;
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(`/api/admin/${path}`, init);
    if (response.status === 401) {
      location.reload(); // signed out (token removed, session expired): the sign-in form
      throw new Error("signed out");
    }
    const data = response.status === 204 ? null : await response.json();
    if (!response.ok) throw new Error(data && data.error ? data.error : `HTTP ${response.status}`);
    return data;
  }

  function say(text) {
    problem.textContent = text || "";
    problem.hidden = !text;
  }

  function el(tag, attrs = {}, text = "") {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text) node.textContent = text;
    return node;
  }

  function svgEl(tag, attrs = {}) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
    return node;
  }

  function fmt(value, unit) {
    if (value === null || value === undefined) return "–";
    const digits = Math.abs(value) >= 100 ? 0 : 1;
    return `${value.toFixed(digits)} ${unit}`;
  }

  // -- graphs -------------------------------------------------------------------------------

  function newChart(spec) {
    const figure = el("figure", { class: "chart", "data-chart": spec.field });
    const caption = el("figcaption");
    caption.append(el("span", {}, spec.label), el("span", { "data-field": "now" }, "–"));
    const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none",
                               role: "img", "aria-label": spec.label });
    svg.append(svgEl("line", { class: "limit", x1: 0, x2: W, y1: -1, y2: -1 }),
               svgEl("polyline", { class: "line", points: "" }));
    figure.append(caption, svg);
    return figure;
  }

  function draw(figure, spec, samples, fragment) {
    const svg = figure.querySelector("svg");
    const end = samples.length ? samples[samples.length - 1].t : Date.now() / 1000;
    const points = samples.filter((s) => s[spec.field] !== null && s.t > end - WINDOW);
    const limit = spec.limit === "fragment" ? fragment : null;
    let top = Math.max(1e-9, ...points.map((s) => s[spec.field]), limit || 0) * 1.15;
    const y = (v) => (H - 2 - (v / top) * (H - 4)).toFixed(1);
    const x = (t) => (((t - (end - WINDOW)) / WINDOW) * W).toFixed(1);
    svg.querySelector(".line").setAttribute("points",
      points.map((s) => `${x(s.t)},${y(s[spec.field])}`).join(" "));
    const line = svg.querySelector(".limit");
    line.setAttribute("y1", limit ? y(limit) : -1);
    line.setAttribute("y2", limit ? y(limit) : -1);
    svg.dataset.samples = String(points.length);
    svg.dataset.last = points.length ? String(points[points.length - 1].t) : "";
    const latest = points.length ? points[points.length - 1][spec.field] : null;
    figure.querySelector("[data-field=now]").textContent = fmt(latest, spec.unit);
  }

  // -- live streams -------------------------------------------------------------------------

  const streams = document.getElementById("streams");

  function newStream(name) {
    const card = el("article", { class: "stream", "data-name": name });
    const title = el("h3");
    const actions = el("span", { class: "actions" });
    const kick = el("button", { type: "button", "data-action": "kick" }, "Kick");
    const ban = el("button", { type: "button", "data-action": "ban" }, "Ban");
    kick.addEventListener("click", () => act("DELETE", `publishes/${name}`));
    ban.addEventListener("click", () => {
      if (confirm(`Ban ${name}? Their stream stops and their key is refused.`)) {
        act("POST", `users/${name}/ban`);
      }
    });
    actions.append(kick, ban);
    title.append(el("span", {}, name), el("span", { class: "meta", "data-field": "about" }), actions);
    const charts = el("div", { class: "charts" });
    for (const spec of CHARTS) charts.append(newChart(spec));
    card.append(title, el("ul", { class: "warnings" }), charts);
    return card;
  }

  async function refreshStreams() {
    const { publishes, unanswered_workers: missing } = await api("GET", "publishes");
    document.getElementById("no-live").hidden = publishes.length > 0 || missing.length > 0;
    const unanswered = document.getElementById("unanswered");
    unanswered.hidden = missing.length === 0;
    unanswered.textContent = `Worker ${missing.join(", ")} did not answer: its streams are not listed.`;
    const seen = new Set();
    for (const live of publishes) {
      seen.add(live.name);
      let card = streams.querySelector(`[data-name="${CSS.escape(live.name)}"]`);
      if (!card) streams.append((card = newStream(live.name)));
      const video = live.video ? ` · ${live.video.width}×${live.video.height}` : "";
      const worker = live.worker ? ` · worker ${live.worker}` : "";
      card.querySelector("[data-field=about]").textContent =
        `from ${live.peer} since ${new Date(live.since).toLocaleTimeString()}${video}${worker}`;
      const list = card.querySelector(".warnings");
      list.replaceChildren(...live.warnings.map((w) => el("li", {}, w)));
      const health = await api("GET", `publishes/${live.name}/health`);
      const fragment = live.fragment;
      card.querySelectorAll(".chart").forEach((figure, i) =>
        draw(figure, CHARTS[i], health.samples, fragment));
    }
    for (const card of [...streams.children]) {
      if (!seen.has(card.dataset.name)) card.remove();
    }
  }

  // -- users --------------------------------------------------------------------------------

  const rows = document.querySelector("#users tbody");
  const newKey = document.getElementById("new-key");

  function showKey(answer) {
    newKey.querySelector("[data-field=who]").textContent = answer.user.name;
    newKey.querySelector("[data-field=key]").textContent = answer.key;
    newKey.hidden = false;
  }

  newKey.querySelector("[data-action=hide-key]").addEventListener("click", () => {
    newKey.querySelector("[data-field=key]").textContent = "";
    newKey.hidden = true;
  });

  function userRow(user) {
    const row = el("tr", { "data-name": user.name });
    const since = user.live_since ? new Date(user.live_since).toLocaleString() : "–";
    row.append(el("td", {}, user.name), el("td", {}, user.active ? "active" : "banned"),
               el("td", {}, since));
    const cell = el("td");
    const toggle = el("button", { type: "button", "data-action": user.active ? "ban" : "unban" },
                      user.active ? "Ban" : "Unban");
    toggle.addEventListener("click", () =>
      act("POST", `users/${user.name}/${user.active ? "ban" : "unban"}`));
    const rotate = el("button", { type: "button", "data-action": "rotate" }, "Rotate key");
    rotate.addEventListener("click", async () => {
      if (!confirm(`New key for ${user.name}? The old one stops working at once.`)) return;
      try {
        showKey(await api("POST", `users/${user.name}/rotate-key`));
      } catch (err) { say(err.message); }
    });
    cell.append(toggle, " ", rotate);
    row.append(cell);
    return row;
  }

  async function refreshUsers() {
    const { users } = await api("GET", "users");
    rows.replaceChildren(...users.map(userRow));
  }

  document.getElementById("add-user").addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = event.target.elements.name;
    try {
      showKey(await api("POST", "users", { name: input.value }));
      input.value = "";
      say("");
      await refreshUsers();
    } catch (err) { say(err.message); }
  });

  async function act(method, path) {
    try {
      await api(method, path);
      say("");
      await Promise.all([refreshStreams(), refreshUsers()]);
    } catch (err) { say(err.message); }
  }

  async function loop(refresh, every) {
    try { await refresh(); } catch (err) { say(err.message); }
    setTimeout(() => loop(refresh, every), every);
  }

  loop(refreshStreams, 2000);
  loop(refreshUsers, 5000);
})();
