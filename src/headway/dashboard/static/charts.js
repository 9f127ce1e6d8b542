// Small inline SVG line charts: no library, no build. A chart is a list of series over time.
// series: {name, color, points: [{t: Date|string, y: number|null, lo?: number, hi?: number, bad?: bool}], step?: bool, band?: bool}
"use strict";
const Charts = (() => {
  const W = 560, H = 180, L = 44, R = 10, T = 10, B = 24;
  const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
  const fmt = (v) => Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 1 ? v.toFixed(1) : v.toPrecision(2);

  function line(series, opts = {}) {
    const all = series.flatMap((s) => s.points.filter((p) => p.y !== null && p.y !== undefined));
    if (!all.length) return `<p class="muted">${esc(opts.empty || "no data yet")}</p>`;
    const ts = all.map((p) => +new Date(p.t));
    const log = !!opts.log;
    const usable = (v) => v !== undefined && v !== null && isFinite(v) && (!log || v > 0);
    const ys = all.flatMap((p) => [p.y, p.lo, p.hi].filter(usable));
    let t0 = Math.min(...ts), t1 = Math.max(...ts);
    if (t1 === t0) t1 = t0 + 1000;
    const tr = (v) => (log ? Math.log10(Math.max(v, 1e-6)) : v);
    let y0 = opts.min !== undefined ? tr(opts.min) : Math.min(...ys.map(tr));
    let y1 = opts.max !== undefined ? tr(opts.max) : Math.max(...ys.map(tr));
    if (opts.ref !== undefined) { y0 = Math.min(y0, tr(opts.ref)); y1 = Math.max(y1, tr(opts.ref)); }
    if (y1 === y0) { y1 = y0 + 1; if (!log && opts.min === undefined) y0 = Math.min(0, y0); }
    const x = (t) => L + ((+new Date(t) - t0) / (t1 - t0)) * (W - L - R);
    const y = (v) => T + (1 - (tr(v) - y0) / (y1 - y0)) * (H - T - B);
    const parts = [`<svg class="chart" viewBox="0 0 ${W} ${H}" role="img" aria-label="${esc(opts.label || "chart")}">`];
    for (let i = 0; i <= 4; i++) {
      const v = y0 + ((y1 - y0) * i) / 4, yy = T + (1 - i / 4) * (H - T - B), shown = log ? Math.pow(10, v) : v;
      parts.push(`<line x1="${L}" x2="${W - R}" y1="${yy}" y2="${yy}" stroke="#eef0f3"/>`);
      parts.push(`<text x="${L - 4}" y="${yy + 3}" text-anchor="end">${fmt(shown)}${opts.unit || ""}</text>`);
    }
    const span = (t1 - t0) / 1000;
    parts.push(`<text x="${L}" y="${H - 6}">0 s</text><text x="${W - R}" y="${H - 6}" text-anchor="end">${fmt(span)} s</text>`);
    if (opts.ref !== undefined) {
      parts.push(`<line x1="${L}" x2="${W - R}" y1="${y(opts.ref)}" y2="${y(opts.ref)}" stroke="#9ca3af" stroke-dasharray="4 3"/>`);
    }
    for (const s of series) {
      const pts = s.points.filter((p) => p.y !== null && p.y !== undefined);
      if (!pts.length) continue;
      if (s.band) {
        // An unknown bound (null: unbounded so far) is drawn at the chart's edge.
        const edge = (v, fallback) => (usable(v) ? y(v) : fallback);
        const upper = pts.map((p) => `${x(p.t)},${edge(p.hi, T)}`), lower = pts.slice().reverse().map((p) => `${x(p.t)},${edge(p.lo, H - B)}`);
        parts.push(`<polygon points="${upper.concat(lower).join(" ")}" fill="${s.color}" opacity="0.15"/>`);
      }
      let d = "";
      pts.forEach((p, i) => {
        const px = x(p.t), py = y(p.y);
        if (i === 0) d += `M${px},${py}`;
        else d += s.step ? `H${px}V${py}` : `L${px},${py}`;
      });
      if (s.step && opts.until) d += `H${x(opts.until)}`;
      parts.push(`<path d="${d}" fill="none" stroke="${s.color}" stroke-width="2"${s.dash ? ' stroke-dasharray="5 3"' : ""}/>`);
      // A point with a verdict against it (a failed or errored measurement) is marked, so the chart says which.
      for (const p of pts.filter((q) => q.bad)) parts.push(`<circle class="bad" cx="${x(p.t)}" cy="${y(p.y)}" r="3.5" fill="#dc2626"/>`);
    }
    let lx = L + 4;
    for (const s of series) {
      parts.push(`<rect x="${lx}" y="${T}" width="10" height="3" fill="${s.color}"/><text x="${lx + 14}" y="${T + 5}">${esc(s.name)}</text>`);
      lx += 22 + 6 * s.name.length;
    }
    parts.push("</svg>");
    return parts.join("");
  }
  return { line, esc };
})();
