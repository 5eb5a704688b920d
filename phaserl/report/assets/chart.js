// The SVG line chart: lines, p10-p90 bands, stage boundaries, hover values, smoothing.
// ---- line chart ---------------------------------------------------------------------------------
// lines: [{label, color, dash, pts: [[x, y], ...], markers}]; bands: [{color, pts: [[x, lo, hi]]}];
// marks: [{x, label}] vertical stage boundaries.
function chart(title, lines, bands, marks, xlabel) {
  const W = 420, H = 230, L = 52, R = 12, T = 26, B = 34;
  const xs = [], ys = [];
  for (const s of lines) for (const [x, y] of s.pts) { xs.push(x); ys.push(y); }
  for (const b of bands) for (const [x, lo, hi] of b.pts) { xs.push(x); ys.push(lo, hi); }
  const box = el("div", {cls: "chart-box"});
  const root = svg("svg", {viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "aria-label": title});
  box.append(root);
  const t = svg("text", {x: L, y: 15, class: "chart-title"});
  t.textContent = title;
  root.append(t);
  if (!xs.length) return box;
  let x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
  if (x1 === x0) { x0 -= 1; x1 += 1; }
  if (y1 === y0) { const d = Math.abs(y0) * 0.1 || 1; y0 -= d; y1 += d; }
  const pad = (y1 - y0) * 0.06; y0 -= pad; y1 += pad;
  const X = x => L + (x - x0) / (x1 - x0) * (W - L - R), Y = y => H - B - (y - y0) / (y1 - y0) * (H - T - B);
  const yt = niceTicks(y0, y1, 4), xt = niceTicks(x0, x1, 5);
  for (const ty of yt) {
    root.append(svg("line", {x1: L, x2: W - R, y1: Y(ty), y2: Y(ty), class: "grid"}));
    const lab = svg("text", {x: L - 5, y: Y(ty) + 3, class: "tick", "text-anchor": "end"});
    lab.textContent = tickText(ty, yt.length > 1 ? yt[1] - yt[0] : 1);
    root.append(lab);
  }
  for (const tx of xt) {
    const lab = svg("text", {x: X(tx), y: H - B + 14, class: "tick", "text-anchor": "middle"});
    lab.textContent = tickText(tx, xt.length > 1 ? xt[1] - xt[0] : 1);
    root.append(lab);
  }
  const xl = svg("text", {x: (L + W - R) / 2, y: H - 4, class: "axis-label", "text-anchor": "middle"});
  xl.textContent = xlabel;
  root.append(xl);
  for (const m of marks) {
    if (m.x < x0 || m.x > x1) continue;
    root.append(svg("line", {x1: X(m.x), x2: X(m.x), y1: T, y2: H - B, class: "boundary"}));
    const lab = svg("text", {x: X(m.x) + 3, y: T + 9, class: "boundary-label"});
    lab.textContent = m.label;
    root.append(lab);
  }
  for (const b of bands) {
    if (!b.pts.length) continue;
    const up = b.pts.map(([x, , hi]) => `${X(x)},${Y(hi)}`), down = b.pts.slice().reverse().map(([x, lo]) => `${X(x)},${Y(lo)}`);
    root.append(svg("polygon", {points: up.concat(down).join(" "), fill: b.color, opacity: 0.15, stroke: "none"}));
  }
  const pathOf = pts => pts.map(([x, y], i) => `${i ? "L" : "M"}${X(x).toFixed(1)},${Y(y).toFixed(1)}`).join("");
  for (const s of lines) {
    if (!s.pts.length) continue;
    const smooth = s.smooth ? ema(s.pts, s.smooth) : null;
    root.append(svg("path", {d: pathOf(s.pts), fill: "none", stroke: s.color, "stroke-width": smooth ? 1 : 1.6,
                             opacity: smooth ? 0.25 : 1, "stroke-dasharray": s.dash || "", class: "series"}));
    if (smooth) root.append(svg("path", {d: pathOf(smooth), fill: "none", stroke: s.color, "stroke-width": 1.8,
                                         "stroke-dasharray": s.dash || "", class: "series smoothed"}));
    if (s.markers || s.pts.length === 1)
      for (const [x, y] of s.pts) root.append(svg("circle", {cx: X(x), cy: Y(y), r: 2.6, fill: s.color}));
  }
  // hover: a crosshair at the nearest x, values of every line there
  const cross = svg("line", {y1: T, y2: H - B, class: "cross", visibility: "hidden"});
  root.append(cross);
  const tip = el("div", {cls: "tip"});
  box.append(tip);
  const allX = Array.from(new Set(xs)).sort((a, b) => a - b);
  root.addEventListener("mousemove", ev => {
    const r = root.getBoundingClientRect();
    const px = (ev.clientX - r.left) / r.width * W;
    const xv = x0 + (px - L) / (W - L - R) * (x1 - x0);
    let best = allX[0];
    for (const x of allX) if (Math.abs(x - xv) < Math.abs(best - xv)) best = x;
    cross.setAttribute("x1", X(best)); cross.setAttribute("x2", X(best));
    cross.setAttribute("visibility", "visible");
    const vals = lines.map(s => [s, s.pts.find(p => p[0] === best)]).filter(([, p]) => p);
    tip.replaceChildren(el("b", {text: `${xlabel} ${fmt(best)}`}),
      ...vals.map(([s, p]) => el("div", {}, el("span", {cls: "sw", style: `background:${s.color}`}), `${s.label}: ${fmt(p[1])}`)));
    tip.style.display = "block";
    tip.style.left = Math.min(r.width - 150, Math.max(0, ev.clientX - r.left + 12)) + "px";
  });
  root.addEventListener("mouseleave", () => { cross.setAttribute("visibility", "hidden"); tip.style.display = "none"; });
  return box;
}

function ema(pts, a) {
  // exponential moving average, debiased like tensorboard's so the first points are not pulled to zero
  let m = 0, w = 0;
  return pts.map(([x, y]) => { m = a * m + (1 - a) * y; w = a * w + (1 - a); return [x, m / w]; });
}

function legend(items) {
  return el("div", {cls: "legend"}, items.map(([label, color, dash]) =>
    el("span", {cls: "legend-item"}, el("span", {cls: "sw" + (dash ? " dashed" : ""), style: `background:${color}`}), label)));
}

