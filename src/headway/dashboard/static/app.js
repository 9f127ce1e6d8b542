// The Headway dashboard page: reads /api/*, listens to /api/events (server-sent events), no framework.
"use strict";
(() => {
  const base = document.querySelector('meta[name="headway-base"]').content;
  const main = document.getElementById("main");
  const esc = Charts.esc;
  const route = location.pathname.slice(base.length).split("/").filter(Boolean);
  const current = route[0] === "rollouts" && route.length >= 3 ? { namespace: decodeURIComponent(route[1]), name: decodeURIComponent(route[2]) } : null;
  let filter = "";
  let readOnly = false;

  // A token in the URL fragment (#token=...) is kept for this tab and removed from the address bar.
  const fromHash = new URLSearchParams(location.hash.slice(1)).get("token");
  if (fromHash) { sessionStorage.setItem("headway-token", fromHash); history.replaceState(null, "", location.pathname); }
  const token = () => sessionStorage.getItem("headway-token") || "";

  async function getJSON(path) {
    const response = await fetch(base + path, { headers: token() ? { Authorization: "Bearer " + token() } : {} });
    if (!response.ok) throw new Error((await response.json().catch(() => ({}))).error || response.statusText);
    return response.json();
  }
  const phase = (p) => `<span class="phase ${esc(p || "Unknown")}">${esc(p || "Unknown")}</span>`;
  const stepText = (r) => (r.steps ? `${Math.min((r.step ?? 0) + (r.phase === "Healthy" ? 0 : 1), r.steps)}/${r.steps}` : "-");
  const weightText = (r) => `${r.canaryWeight}%` + (r.actualWeight !== null && r.actualWeight !== r.canaryWeight ? ` (actual ${r.actualWeight}%)` : "");

  // --- list page -----------------------------------------------------------------------------------------------
  async function renderList() {
    const data = await getJSON("api/rollouts");
    const counts = Object.entries(data.counts).map(([p, n]) => `<span class="count">${phase(p)} <b>${n}</b></span>`).join("");
    const q = filter.toLowerCase();
    const rows = data.rollouts.filter((r) => !q || `${r.namespace}/${r.name} ${r.phase} ${r.currentImage}`.toLowerCase().includes(q));
    const body = rows.map((r) => `<tr data-rollout="${esc(r.namespace)}/${esc(r.name)}">
        <td><a href="${base}rollouts/${encodeURIComponent(r.namespace)}/${encodeURIComponent(r.name)}">${esc(r.name)}</a></td>
        <td>${esc(r.namespace)}</td><td>${esc(r.strategy)}</td><td>${phase(r.phase)}</td><td>${stepText(r)}</td>
        <td class="weight-cell">${weightText(r)}</td><td>${esc(r.currentImage || "")}</td><td class="muted">${esc(r.message || "")}</td></tr>`).join("");
    const focused = document.activeElement && document.activeElement.id === "filter";
    main.innerHTML = `<h1>Rollouts</h1>
      <div class="counts" id="counts">${counts}<input id="filter" type="search" placeholder="filter: name, namespace, phase, image" value="${esc(filter)}"></div>
      <div class="card"><table><thead><tr><th>Name</th><th>Namespace</th><th>Strategy</th><th>Phase</th><th>Step</th><th>Weight</th><th>Image</th><th>Message</th></tr></thead>
      <tbody>${body || '<tr><td colspan="8" class="muted">no rollouts match</td></tr>'}</tbody></table></div>`;
    const input = document.getElementById("filter");
    input.addEventListener("input", () => { filter = input.value; renderList(); });
    if (focused) { input.focus(); input.setSelectionRange(filter.length, filter.length); }
  }

  // --- rollout page --------------------------------------------------------------------------------------------
  const ACTIONS = [
    ["promote", "Promote", "primary"], ["promote-full", "Promote full", ""], ["abort", "Abort", "danger"],
    ["retry", "Retry", ""], ["undo", "Undo", ""],
  ];
  let lastMessage = { text: "", kind: "" };

  async function renderRollout() {
    const r = await getJSON(`api/rollouts/${encodeURIComponent(current.namespace)}/${encodeURIComponent(current.name)}`);
    const steps = r.stepList.map((s, i) => {
      const cls = r.step === null ? "" : i < r.step || (r.phase === "Healthy" && i <= r.step) ? "done" : i === r.step ? "current" : "";
      return `<li class="${cls}">${esc(s)}</li>`;
    }).join("");
    const now = new Date().toISOString();
    const last = r.weightHistory.length ? r.weightHistory[r.weightHistory.length - 1].at : now;
    const weightChart = Charts.line([
      { name: "set weight", color: "#2563eb", step: true, points: r.weightHistory.map((p) => ({ t: p.at, y: p.set })) },
      { name: "actual", color: "#f59e0b", step: true, dash: true, points: r.weightHistory.map((p) => ({ t: p.at, y: p.actual })) },
    ], { min: 0, max: 100, unit: "%", label: "canary weight over time", until: last });
    const pods = (v) => (v.pods || []).map((p) => `<span class="pod ${esc(p.phase)}" title="${esc(p.phase)}, ready ${esc(p.ready)}${p.restarts ? `, ${p.restarts} restarts` : ""}">${esc(p.name)}</span>`).join(" ");
    const revisions = r.revisions.map((v) => `<tr><td>#${v.number}</td><td><code>${esc(v.hash)}</code>${v.role ? `<span class="tag ${esc(v.role)}">${esc(v.role)}</span>` : ""}</td>
        <td>${esc(v.image || "")}</td><td>${v.ready}/${v.replicas}</td><td class="pods">${pods(v)}</td></tr>`).join("");
    const runs = [...r.analysisRuns, ...(r.experiments || []).map((e) => ({ ...e, kind: e.kind || "experiment" }))]
      .map(runCard).join("") || '<p class="muted">no analysis runs</p>';
    const events = r.events.map((e) => `<div class="${esc(e.type)}"><span class="muted">${e.at ? new Date(e.at).toLocaleTimeString() : ""}</span> <b>${esc(e.reason)}</b> ${esc(e.message)}</div>`).join("");
    const buttons = readOnly ? '<p class="muted">read-only dashboard: actions are disabled</p>'
      : ACTIONS.map(([a, label, cls]) => `<button data-action="${a}" class="${cls}">${label}</button>`).join("");
    main.innerHTML = `<p><a href="${base}">← all rollouts</a></p>
      <h1>${esc(r.namespace)}/${esc(r.name)} <span id="phase">${phase(r.phase)}</span></h1>
      <p id="message" class="muted">${esc(r.message || "")}</p>
      <div class="actions" id="actions">${buttons}</div>
      <div id="action-result" class="result ${lastMessage.kind}">${esc(lastMessage.text)}</div>
      <div class="grid">
        <div class="card"><h2>Traffic</h2><div>canary <span class="weight" id="weight">${r.canaryWeight}%</span>
          <span class="muted" id="actual-weight">${r.actualWeight === null ? "actual unknown" : `actual ${r.actualWeight}%`}</span></div>${weightChart}</div>
        <div class="card"><h2>Steps <span class="muted" id="step">${stepText(r)}</span></h2><ol class="steps">${steps || "<li>blue/green: no steps</li>"}</ol>
          <p class="muted">strategy ${esc(r.strategy)} · stable ${esc(r.stableImage || "-")} · rolling out ${esc(r.currentImage || "-")}</p></div>
      </div>
      <div class="card"><h2>Revisions</h2><table><thead><tr><th>Revision</th><th>Hash</th><th>Image</th><th>Ready</th><th>Pods</th></tr></thead><tbody>${revisions}</tbody></table></div>
      <div class="card"><h2>Analysis</h2>${runs}</div>
      <div class="card"><h2>Events</h2><div class="events">${events || '<span class="muted">none</span>'}</div></div>`;
    for (const button of main.querySelectorAll("button[data-action]")) button.addEventListener("click", () => confirmAction(r, button.dataset.action));
  }

  const METRIC_COLORS = ["#7c3aed", "#0891b2", "#16a34a", "#ea580c", "#4b5563"];

  function runCard(run) {
    // One series per metric; the judge's own windows are charted with their bounds on the right instead.
    const byMetric = new Map();
    for (const m of run.measurements) {
      if (run.judge && run.judge.metric && m.metric === run.judge.metric) continue;
      if (!byMetric.has(m.metric)) byMetric.set(m.metric, []);
      byMetric.get(m.metric).push({ t: m.at, y: m.value, bad: m.phase === "Failed" || m.phase === "Error" });
    }
    const series = [...byMetric].map(([name, points], i) => ({ name, color: METRIC_COLORS[i % METRIC_COLORS.length], points }));
    const measured = series.length || !run.judge
      ? Charts.line(series, { min: 0, label: `${run.name} measurements`, empty: "no measurements yet" }) : "";
    let judge = "";
    if (run.judge) {
      const j = run.judge;
      const bound = (v, none) => (v === null || v === undefined ? none : v.toPrecision(3));
      judge = `<div class="judge">judge: canary/stable ratio <b>${j.ratio.toPrecision(3)}</b> [${bound(j.lower, "0")}, ${bound(j.upper, "∞")}],
        tolerated ${j.toleratedRatio}, p = ${j.pValue.toPrecision(2)}<br><span class="muted">${esc(j.verdict)}</span></div>` +
        Charts.line([{ name: "ratio (confidence bounds)", color: "#db2777", band: true, points: j.history.map((p) => ({ t: p.at, y: p.ratio, lo: p.lower, hi: p.upper })) }],
          { log: true, ref: j.toleratedRatio, label: `${run.name} judge ratio` });
    }
    return `<div class="run"><h3>${esc(run.name)} ${phase(run.phase === "Successful" ? "Healthy" : run.phase === "Running" ? "Progressing" : run.phase === "Inconclusive" ? "Paused" : "Degraded").replace(/>[^<]*</, `>${esc(run.phase)}<`)}
      <span class="muted">${esc(run.kind)}</span></h3><p class="muted">${esc(run.message)}</p><div class="grid"><div>${measured}</div><div>${judge}</div></div></div>`;
  }

  function confirmAction(r, action) {
    const dialog = document.getElementById("confirm");
    document.getElementById("confirm-title").textContent = `${action} ${r.namespace}/${r.name}?`;
    document.getElementById("confirm-text").textContent = {
      "promote": "Resume a pause or skip the current step.", "promote-full": "Skip every remaining step and analysis and go to 100%.",
      "abort": "Send all traffic back to stable and scale the canary down.", "retry": "Start the aborted update again from the first step.",
      "undo": "Roll back to the previous revision's template.",
    }[action];
    const input = document.getElementById("token");
    input.value = token();
    dialog.returnValue = "";
    dialog.onclose = async () => {
      if (dialog.returnValue !== "ok") return;
      if (input.value) sessionStorage.setItem("headway-token", input.value); else sessionStorage.removeItem("headway-token");
      await send(r, action, input.value);
    };
    dialog.showModal();
  }

  async function send(r, action, tok) {
    const url = `${base}api/rollouts/${encodeURIComponent(r.namespace)}/${encodeURIComponent(r.name)}/${encodeURIComponent(action)}`;
    const headers = { "Content-Type": "application/json" };
    if (tok) headers.Authorization = "Bearer " + tok;
    const response = await fetch(url, { method: "POST", headers, body: "{}" });
    const body = await response.json().catch(() => ({}));
    lastMessage = response.ok ? { text: body.message, kind: "ok" } : { text: `refused (${response.status}): ${body.error}`, kind: "error" };
    await refresh();
  }

  // --- live updates --------------------------------------------------------------------------------------------
  let scheduled = null;
  async function refresh() {
    try { await (current ? renderRollout() : renderList()); }
    catch (error) { main.innerHTML = `<div class="card result error">${esc(error.message)}</div>`; }
  }
  function soon() { if (!scheduled) scheduled = setTimeout(() => { scheduled = null; refresh(); }, 100); }

  function listen() {
    const live = document.getElementById("live");
    const events = new EventSource(base + "api/events");
    events.onopen = () => { live.textContent = "live"; live.classList.add("on"); };
    events.onerror = () => { live.textContent = "reconnecting…"; live.classList.remove("on"); };
    events.addEventListener("change", (e) => {
      const change = JSON.parse(e.data);
      if (!current || change.rollout === `${current.namespace}/${current.name}`) soon();
    });
  }

  getJSON("api/whoami").then((who) => { readOnly = who.readOnly; }).catch(() => {}).finally(() => { refresh(); listen(); });
})();
