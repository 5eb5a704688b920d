// phaserl report page: draws the curves (SVG), the evaluation tables and the rollout browser from the
// JSON payload embedded in the page. No library, no network: the file opens anywhere with a double click.
"use strict";
(function () {
  const P = JSON.parse(document.getElementById("payload").textContent);
  const app = document.getElementById("app");
  const SVGNS = "http://www.w3.org/2000/svg";
  const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2",
                  "#7f7f7f", "#bcbd22"];
  const PAGE_SIZE = 20;

  // ---- small helpers ------------------------------------------------------------------------------
  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "text") e.textContent = v;
      else if (k === "cls") e.className = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v);
    }
    for (const k of kids.flat()) {
      if (k === null || k === undefined || k === false) continue;
      e.append(k instanceof Node ? k : document.createTextNode(String(k)));
    }
    return e;
  }
  function svg(tag, attrs) {
    const e = document.createElementNS(SVGNS, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    return e;
  }
  function fmt(v, digits) {
    if (v === null || v === undefined || Number.isNaN(v)) return "–";
    if (typeof v !== "number") return String(v);
    if (Number.isInteger(v) && Math.abs(v) < 1e6) return String(v);
    const a = Math.abs(v);
    if (a !== 0 && (a < 1e-3 || a >= 1e5)) return v.toExponential(2);
    return v.toFixed(digits === undefined ? (a < 1 ? 3 : a < 100 ? 2 : 1) : digits);
  }
  function tickText(v, step) {
    // as many decimals as the tick spacing needs (0.25 -> 2), so neighbouring ticks never read the same
    const a = Math.abs(v);
    if (a >= 1e6 || (step < 1e-4 && a !== 0)) return v.toExponential(2);
    let d = 0;
    while (d < 8 && Math.abs(Math.round(step * 10 ** d) - step * 10 ** d) > 1e-6 * 10 ** d) d++;
    return v.toFixed(d);
  }
  function pct(v) { return v === null || v === undefined ? "–" : (100 * v).toFixed(1) + "%"; }
  function section(id, title, ...kids) {
    return el("section", {id: id}, el("h2", {text: title}), ...kids);
  }
  function niceTicks(lo, hi, n) {
    if (!(hi > lo)) { hi = lo + 1; lo = lo - (lo === 0 ? 0 : 1); }
    const raw = (hi - lo) / n, mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 2.5, 5, 10].map(m => m * mag).find(s => s >= raw) || 10 * mag;
    const out = [];
    for (let t = Math.ceil(lo / step) * step; t <= hi + 1e-9 * step; t += step) out.push(+t.toPrecision(12));
    return out;
  }

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

  // ---- run report: stages, curves, evaluation -----------------------------------------------------
  function stageColor(i) { return COLORS[i % COLORS.length]; }

  function stageSection() {
    const st = P.stages || [];
    const head = el("tr", {}, ["stage", "steps", "global steps", "reward first → last", "accuracy first → last",
      "length first → last", "s/step"].map(h => el("th", {text: h})));
    const pair = v => v ? `${fmt(v[0])} → ${fmt(v[1])}` : "–";
    const rows = st.map(s => el("tr", {},
      el("td", {}, el("span", {cls: "sw", style: `background:${stageColor(s.index)}`}), s.name),
      el("td", {text: s.steps}), el("td", {text: `${fmt(s.first_global_step)}–${fmt(s.last_global_step)}`}),
      el("td", {text: pair(s["reward/mean"])}), el("td", {text: pair(s["reward/accuracy"])}),
      el("td", {text: pair(s["response_length/mean"])}),
      el("td", {text: s["time/step"] ? fmt((s["time/step"][0] + s["time/step"][1]) / 2) : "–"})));
    return section("stages", "Stages", el("table", {cls: "data"}, el("thead", {}, head), el("tbody", {}, rows)),
      el("p", {cls: "note", text: "first / last: mean of the first / last 5 steps of each stage."}));
  }

  function stageMarks() {
    return (P.stages || []).filter((s, i) => i > 0 && s.first_global_step !== null)
      .map(s => ({x: s.first_global_step - 0.5, label: s.name}));
  }

  function curvesSection() {
    const S = P.series;
    const grid = el("div", {cls: "charts"});
    const toggle = el("select", {id: "x-axis", onchange: () => draw()},
      el("option", {value: "global", text: "global step (whole curriculum)"}),
      el("option", {value: "stage", text: "step within each stage"}));
    const smoothSel = el("select", {id: "smoothing", onchange: () => draw()},
      [["0", "none"], ["0.6", "0.6"], ["0.9", "0.9"], ["0.97", "0.97"]].map(([v, t]) => el("option", {value: v, text: t})));
    if (S.global_step.length > 50) smoothSel.value = "0.6";
    const stageNames = {};
    for (const s of P.stages || []) stageNames[s.index] = s.name;
    function draw() {
      const local = toggle.value === "stage";
      const xOf = i => local ? S.step[i] : S.global_step[i];
      grid.replaceChildren();
      const stages = Array.from(new Set(S.stage));
      for (const panel of P.panels) {
        const lines = [], bands = [];
        panel.keys.forEach((key, ki) => {
          for (const st of stages) {
            const pts = [];
            S.values[key].forEach((v, i) => { if (v !== null && S.stage[i] === st) pts.push([xOf(i), v]); });
            const multi = panel.keys.length > 1;
            lines.push({label: (multi ? key : "") + (multi && stages.length > 1 ? " · " : "") +
                          (stages.length > 1 || !multi ? stageNames[st] || st : ""),
                        color: multi ? COLORS[ki % COLORS.length] : stageColor(st),
                        dash: multi && local && st !== stages[0] ? "4 3" : "", pts, smooth: +smoothSel.value});
          }
        });
        if (panel.band) {
          for (const st of stages) {
            const pts = [];
            S.values[panel.band[0]].forEach((lo, i) => {
              const hi = S.values[panel.band[1]][i];
              if (lo !== null && hi !== null && S.stage[i] === st) pts.push([xOf(i), lo, hi]);
            });
            bands.push({color: panel.keys.length > 1 ? COLORS[0] : stageColor(st), pts});
          }
        }
        const box = chart(panel.title, lines, bands, local ? [] : stageMarks(), local ? "stage step" : "global step");
        if (panel.keys.length > 1 || panel.band) {
          const items = panel.keys.length > 1 ? panel.keys.map((k, i) => [k, COLORS[i % COLORS.length]]) : [];
          if (panel.band) items.push([`band: ${panel.band[0]} – ${panel.band[1]}`, "#c9d6e8"]);
          box.append(legend(items));
        }
        grid.append(box);
      }
    }
    draw();
    const stLegend = legend((P.stages || []).map(s => [s.name, stageColor(s.index)]));
    return section("curves", "Training curves",
      el("div", {cls: "controls"}, el("label", {}, "x axis ", toggle), el("label", {}, "smoothing ", smoothSel), stLegend), grid,
      el("p", {cls: "note", text: "Dashed vertical lines mark stage boundaries. Hover a chart for (raw) values. Smoothing: an exponential " +
        "moving average per stage, drawn over the faded raw curve. Panels with several metrics colour by metric; " +
        "single-metric panels colour by stage."}));
  }

  function evalSection() {
    const E = P.eval;
    if (!E || !E.rows.length) return section("eval", "Evaluation during training",
      el("p", {cls: "note", text: "No evaluation rows in metrics.jsonl (set stages.*.eval.data to evaluate)."}));
    const head = el("tr", {}, ["stage", "step", "global step", ...E.keys.map(k => k.slice(5))].map(h => el("th", {text: h})));
    const rows = E.rows.map(r => el("tr", {}, el("td", {text: r.stage + (r.final ? " (final)" : "")}),
      el("td", {text: r.step}), el("td", {text: r.global_step}), E.keys.map(k => el("td", {text: fmt(r[k])}))));
    const grid = el("div", {cls: "charts"});
    for (const k of E.keys.filter(k => !k.endsWith("/n"))) {
      const byStage = {};
      for (const r of E.rows) if (r[k] !== null && r[k] !== undefined) (byStage[r.stage_index] = byStage[r.stage_index] || []).push([r.global_step, r[k]]);
      const lines = Object.entries(byStage).map(([st, pts]) => ({label: (P.stages.find(s => s.index === +st) || {}).name || st,
        color: stageColor(+st), pts, markers: true}));
      grid.append(chart(k.slice(5), lines, [], stageMarks(), "global step"));
    }
    return section("eval", "Evaluation during training", grid,
      el("div", {cls: "scroll"}, el("table", {cls: "data"}, el("thead", {}, head), el("tbody", {}, rows))));
  }

  // ---- evaluation page: scores, breakdowns ---------------------------------------------------------
  function scoresSection() {
    const head = el("tr", {}, ["benchmark", "scorer", "items", "samples", "accuracy", "correct / total", "pass@k",
      "format", "truncated", "extraction"].map(h => el("th", {text: h})));
    const rows = P.benchmarks.map(b => el("tr", {},
      el("td", {}, el("a", {href: "#bench-" + b.slug, text: b.name})), el("td", {text: `${b.scorer} (${b.scorer_version || "?"})`}),
      el("td", {text: b.items}), el("td", {text: b.samples_per_item || 1}),
      el("td", {cls: "num big", text: pct(b.accuracy)}), el("td", {text: `${b.correct} / ${b.total}`}),
      el("td", {text: b.pass_k || "–"}), el("td", {text: pct(b.format_rate)}), el("td", {text: pct(b.truncated_rate)}),
      el("td", {text: Object.entries(b.extraction || {}).map(([m, n]) => `${m}: ${n}`).join(", ")})));
    return section("scores", "Scores", el("div", {cls: "scroll"}, el("table", {cls: "data"}, el("thead", {}, head), el("tbody", {}, rows))),
      P.config ? el("p", {cls: "note", text: P.config}) : null);
  }

  function breakdownSection() {
    const blocks = [];
    for (const b of P.benchmarks) {
      const fields = Object.entries(b.breakdown || {});
      const cards = fields.map(([field, cells]) => el("div", {cls: "bd"}, el("h4", {text: field}),
        Object.entries(cells).map(([value, c]) => el("div", {cls: "bar-row", title: `${c.correct}/${c.total}`},
          el("span", {cls: "bar-label", text: `${value} (n=${c.total})`}),
          el("span", {cls: "bar"}, el("span", {cls: "bar-fill", style: `width:${(100 * c.accuracy).toFixed(1)}%`})),
          el("span", {cls: "bar-val", text: pct(c.accuracy)})))));
      blocks.push(el("div", {id: "bench-" + b.slug, cls: "bench"}, el("h3", {text: `${b.name}: ${pct(b.accuracy)}`}),
        cards.length ? el("div", {cls: "bds"}, cards) : el("p", {cls: "note", text: "no per-category fields for this benchmark"})));
    }
    return section("breakdown", "Per-category accuracy", blocks);
  }

  // ---- rollout / item browser ----------------------------------------------------------------------
  function completionView(text) {
    // <think> and <answer> blocks as boxes, their tags kept visible; an unclosed block runs to the end.
    const root = el("div", {cls: "completion"});
    const stack = [root];
    for (const part of String(text).split(/(<\/?(?:think|answer)>)/)) {
      const m = part.match(/^<(\/?)(think|answer)>$/);
      const top = stack[stack.length - 1];
      if (!m) { if (part) top.append(document.createTextNode(part)); continue; }
      if (!m[1]) {
        const box = el("span", {cls: "blk blk-" + m[2]}, el("span", {cls: "tag", text: part}));
        top.append(box);
        stack.push(box);
      } else {
        if (stack.length > 1 && top.classList.contains("blk-" + m[2])) {
          top.append(el("span", {cls: "tag", text: part}));
          stack.pop();
        } else top.append(el("span", {cls: "tag stray", text: part}));
      }
    }
    return root;
  }

  function promptView(r, S) {
    const text = r.prompt === null || r.prompt === undefined ? "" : S.strings[r.prompt];
    const box = el("div", {cls: "prompt"});
    const imgs = (r.images || []).map(k => S.thumbs[k]).filter(Boolean);
    if (imgs.length) box.append(el("div", {cls: "thumbs"}, imgs.map(u => el("img", {src: u, cls: "thumb", alt: "prompt image"}))));
    if (r.caption) box.append(el("div", {cls: "caption"}, el("b", {text: "caption "}), r.caption));
    box.append(el("div", {cls: "ptext"}, text.split("<image>").flatMap((s, i) => i ? [el("span", {cls: "imgtag", text: "image"}), s] : [s])));
    if (r.system !== null && r.system !== undefined)
      box.append(el("details", {}, el("summary", {text: "system prompt"}), el("div", {cls: "ptext", text: S.strings[r.system]})));
    return box;
  }

  function verdict(c) {
    if (c === true) return el("span", {cls: "badge ok", text: "correct"});
    if (c === false) return el("span", {cls: "badge bad", text: "incorrect"});
    return el("span", {cls: "badge na", text: "n/a"});
  }

  function browserSection(id, title, groupLabel) {
    const S = P.samples;
    const rows = S.rows;
    const groups = Array.from(new Set(rows.map(r => r.group)));
    const tags = Array.from(new Set(rows.flatMap(r => r.tags || []))).sort();
    const hasStep = rows.some(r => r.step !== null && r.step !== undefined);
    const hasReward = rows.some(r => typeof r.reward === "number");
    const state = {group: "", smin: "", smax: "", rmin: "", rmax: "", correct: "any", trunc: "any", tag: "", q: "", page: 0};
    try { // filters survive a --watch reload through the URL fragment
      const h = new URLSearchParams(location.hash.slice(1));
      for (const k of Object.keys(state)) if (h.has(k)) state[k] = k === "page" ? +h.get(k) : h.get(k);
    } catch (e) { /* a hand-edited fragment: start unfiltered */ }
    const input = (key, attrs) => el("input", Object.assign({value: state[key], oninput: e => { state[key] = e.target.value; state.page = 0; update(); }}, attrs));
    const select = (key, idAttr, opts) => {
      const s = el("select", {id: idAttr, onchange: e => { state[key] = e.target.value; state.page = 0; update(); }},
        opts.map(([v, t]) => el("option", {value: v, text: t})));
      s.value = state[key];
      return s;
    };
    const filters = el("div", {cls: "filters"},
      el("label", {}, groupLabel + " ", select("group", "f-group", [["", "all"], ...groups.map(g => [g, g])])),
      hasStep ? el("label", {}, "step ", input("smin", {id: "f-step-min", type: "number", placeholder: "min", size: 5}), "–",
        input("smax", {id: "f-step-max", type: "number", placeholder: "max", size: 5})) : null,
      hasReward ? el("label", {}, "reward ", input("rmin", {id: "f-reward-min", type: "number", step: "any", placeholder: "min", size: 5}), "–",
        input("rmax", {id: "f-reward-max", type: "number", step: "any", placeholder: "max", size: 5})) : null,
      el("label", {}, "answer ", select("correct", "f-correct", [["any", "any"], ["correct", "correct"], ["incorrect", "incorrect"], ["na", "not scored"]])),
      el("label", {}, "truncated ", select("trunc", "f-truncated", [["any", "any"], ["yes", "truncated"], ["no", "finished"]])),
      tags.length ? el("label", {}, "category ", select("tag", "f-tag", [["", "all"], ...tags.map(t => [t, t])])) : null,
      el("label", {}, "search ", input("q", {id: "f-search", type: "search", placeholder: "id, text, answer"})));
    const count = el("span", {id: "match-count", cls: "count"});
    const pager = el("span", {cls: "pager"});
    const tbody = el("tbody");
    const table = el("table", {id: "rollouts", cls: "rollouts"}, el("thead", {}, el("tr", {},
      ["", "prompt", "completion", "answer", "reward"].map(h => el("th", {text: h})))), tbody);
    const num = s => s === "" || s === null ? null : Number(s);
    function keep(r) {
      if (state.group && r.group !== state.group) return false;
      const smin = num(state.smin), smax = num(state.smax), rmin = num(state.rmin), rmax = num(state.rmax);
      if (smin !== null && !(r.step >= smin)) return false;
      if (smax !== null && !(r.step <= smax)) return false;
      if (rmin !== null && !(r.reward >= rmin)) return false;
      if (rmax !== null && !(r.reward <= rmax)) return false;
      if (state.correct === "correct" && r.correct !== true) return false;
      if (state.correct === "incorrect" && r.correct !== false) return false;
      if (state.correct === "na" && (r.correct === true || r.correct === false)) return false;
      if (state.trunc === "yes" && !r.truncated) return false;
      if (state.trunc === "no" && r.truncated) return false;
      if (state.tag && !(r.tags || []).includes(state.tag)) return false;
      if (state.q) {
        const q = state.q.toLowerCase();
        const hay = [r.id, r.completion, r.extracted, r.gold, r.prompt !== null && r.prompt !== undefined ? S.strings[r.prompt] : ""].join("\n").toLowerCase();
        if (!hay.includes(q)) return false;
      }
      return true;
    }
    function rowView(r) {
      const comps = Object.entries(r.components || {});
      return el("tr", {cls: "rollout", "data-correct": r.correct === true ? "1" : r.correct === false ? "0" : "na",
                       "data-truncated": r.truncated ? "1" : "0", "data-group": r.group},
        el("td", {cls: "meta"}, el("div", {cls: "grp", text: r.group}),
          r.step !== null && r.step !== undefined ? el("div", {text: "step " + r.step}) : null,
          el("div", {cls: "id", text: r.id}), r.view ? el("div", {cls: "view", text: r.view}) : null,
          r.tokens !== null && r.tokens !== undefined ? el("div", {text: r.tokens + " tokens"}) : null,
          r.truncated ? el("span", {cls: "badge warn", text: "truncated"}) : null,
          (r.tags || []).length ? el("div", {cls: "tags"}, r.tags.map(t => el("span", {cls: "chip", text: t}))) : null),
        el("td", {cls: "pcell"}, promptView(r, S)),
        el("td", {cls: "ccell"}, completionView(r.completion || "")),
        el("td", {cls: "acell"}, verdict(r.correct),
          el("div", {}, el("span", {cls: "k", text: "extracted "}), el("code", {text: r.extracted === null || r.extracted === undefined ? "(none)" : r.extracted})),
          el("div", {}, el("span", {cls: "k", text: "gold "}), el("code", {text: r.gold === null || r.gold === undefined ? "(none)" : r.gold})),
          r.method ? el("div", {cls: "k", text: "by " + r.method}) : null),
        el("td", {cls: "rcell"}, hasReward ? el("div", {cls: "total", text: fmt(r.reward)}) : null,
          comps.length ? el("table", {cls: "comps"}, comps.map(([k, v]) => el("tr", {}, el("td", {text: k.split(/[:.]/).pop(), title: k}), el("td", {text: fmt(v)})))) : null,
          typeof r.entropy === "number" ? el("div", {cls: "k", text: "entropy " + fmt(r.entropy)}) : null));
    }
    function update() {
      const hit = rows.filter(keep);
      const pages = Math.max(1, Math.ceil(hit.length / PAGE_SIZE));
      state.page = Math.min(Math.max(0, state.page), pages - 1);
      tbody.replaceChildren(...hit.slice(state.page * PAGE_SIZE, (state.page + 1) * PAGE_SIZE).map(rowView));
      count.textContent = `${hit.length} of ${rows.length} match`;
      count.setAttribute("data-count", hit.length);
      pager.replaceChildren(
        el("button", {id: "page-prev", disabled: state.page === 0 ? "disabled" : null, onclick: () => { state.page--; update(); }, text: "‹ prev"}),
        ` page ${state.page + 1} of ${pages} `,
        el("button", {id: "page-next", disabled: state.page >= pages - 1 ? "disabled" : null, onclick: () => { state.page++; update(); }, text: "next ›"}));
      const h = new URLSearchParams();
      for (const [k, v] of Object.entries(state)) if (v !== "" && v !== "any" && !(k === "page" && v === 0)) h.set(k, v);
      const frag = h.toString();
      if (frag !== location.hash.slice(1)) history.replaceState(null, "", frag ? "#" + frag : location.pathname + location.search);
    }
    update();
    return section(id, title, el("p", {cls: "note", text: S.note}), filters,
      el("div", {cls: "controls"}, count, pager), el("div", {cls: "scroll"}, table));
  }

  // ---- page --------------------------------------------------------------------------------------
  function header(links) {
    const when = P.generated ? `generated ${P.generated}` : "";
    return el("header", {}, el("h1", {text: P.title}),
      el("div", {cls: "sub"}, P.source ? el("code", {text: P.source}) : null, " ", when,
        P.watch ? ` · reloads every ${P.watch} s (--watch)` : ""),
      el("nav", {}, links.map(([id, t]) => el("a", {href: "#" + id, onclick: e => { e.preventDefault(); document.getElementById(id).scrollIntoView(); }, text: t}))));
  }

  function main() {
    const parts = [];
    if (P.kind === "eval") {
      parts.push(header([["scores", "scores"], ["breakdown", "categories"], ["items", "items"]]),
        scoresSection(), breakdownSection(), browserSection("items", "Items and responses", "benchmark"));
    } else {
      if (!P.stages.length) parts.push(header([]), el("p", {cls: "note", text: "No metrics yet: rerun once the first step is logged."}));
      else parts.push(header([["stages", "stages"], ["curves", "curves"], ["eval", "evaluation"], ["rollouts", "rollouts"]]),
        stageSection(), curvesSection(), evalSection(), browserSection("rollouts", "Rollouts", "stage"));
    }
    app.replaceChildren(...parts);
  }
  main();
})();
