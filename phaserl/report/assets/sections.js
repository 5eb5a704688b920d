// The page's sections: a run's stages, curves and evaluation; an evaluation's scores and categories.
// ---- run report: stages, curves, evaluation -----------------------------------------------------
function stageColor(i) { return COLORS[i % COLORS.length]; }

function stageSection() {
  const st = P.stages || [];
  if (!st.length) return section("stages", "Stages", el("p", {cls: "note", text: "No training step logged yet: " +
    "rerun `phaserl report` (or use --watch) once the first step is done."}));
  const accKeys = Array.from(new Set(st.map(s => s.accuracy_key).filter(Boolean))).map(k => k.slice(7));
  const head = el("tr", {}, ["stage", "steps", "global steps", "reward first → last",
    `${accKeys.join(" / ") || "accuracy"} first → last`, "length first → last", "s/step"].map(h => el("th", {text: h})));
  const pair = v => v ? `${fmt(v[0])} → ${fmt(v[1])}` : "–";
  const rows = st.map(s => el("tr", {},
    el("td", {}, el("span", {cls: "sw", style: `background:${stageColor(s.index)}`}), s.name),
    el("td", {text: s.steps}), el("td", {text: `${fmt(s.first_global_step)}–${fmt(s.last_global_step)}`}),
    el("td", {text: pair(s.reward)}), el("td", {text: pair(s.accuracy)}), el("td", {text: pair(s.length)}),
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
  if (!P.panels.length) return section("curves", "Training curves", el("p", {cls: "note", text: "No curves yet."}));
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
  const rows = E.rows.map(r => el("tr", {}, el("td", {text: r.stage + (r.final ? " (after training)" : r.step === 0 ? " (before training)" : "")}),
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
  const head = el("tr", {}, ["benchmark", "scorer (hover: version)", "items", "samples", "accuracy", "correct / total", "pass@k",
    "format", "truncated", "extraction"].map(h => el("th", {text: h})));
  const rows = P.benchmarks.map(b => el("tr", {},
    el("td", {}, el("a", {href: "#bench-" + b.slug, text: b.name})), el("td", {text: b.scorer, title: b.scorer_version || ""}),
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

