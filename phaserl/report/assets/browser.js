// The rollout / item browser: filters (kept in the URL fragment), pagination, one table row per sample.
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
  function samePrompt(r, prev) {
    // another sample of the prompt in the row above (the G samples of a group, the K samples of an item)
    return prev && r.pg !== null && r.pg !== undefined && prev.pg === r.pg && prev.group === r.group &&
      prev.step === r.step && prev.prompt === r.prompt;
  }
  function rowView(r, i, page) {
    const same = samePrompt(r, page[i - 1]);
    const comps = Object.entries(r.components || {});
    return el("tr", {cls: same ? "rollout cont" : "rollout", "data-correct": r.correct === true ? "1" : r.correct === false ? "0" : "na",
                     "data-truncated": r.truncated ? "1" : "0", "data-group": r.group},
      el("td", {cls: "meta"}, el("div", {cls: "grp", text: r.group}),
        r.step !== null && r.step !== undefined ? el("div", {text: "step " + r.step}) : null,
        el("div", {cls: "id", text: r.id}), r.view ? el("div", {cls: "view", text: r.view}) : null,
        r.tokens !== null && r.tokens !== undefined ? el("div", {text: r.tokens + " tokens"}) : null,
        r.truncated ? el("span", {cls: "badge warn", text: "truncated"}) : null,
        (r.tags || []).length ? el("div", {cls: "tags"}, r.tags.map(t => el("span", {cls: "chip", text: t}))) : null),
      el("td", {cls: "pcell"}, same ? el("div", {cls: "same", text: "↑ same prompt as above"}) : promptView(r, S)),
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
    tbody.replaceChildren(...hit.slice(state.page * PAGE_SIZE, (state.page + 1) * PAGE_SIZE).map((r, i, page) => rowView(r, i, page)));
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

