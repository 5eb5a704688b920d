"""What the run report shows, gathered from an output folder: curves, evaluation rows, sample rows.

Inputs: OUTPUT/metrics.jsonl (one row per step, plus evaluation rows), OUTPUT/samples/<stage>.jsonl
(phaserl.samples rows) and OUTPUT/samples/thumbs/. The result is one JSON-able payload for page.render_page.

Size: a run of 1000 steps logs up to 100k samples; the page keeps whole steps, chosen per stage in
bisection order (last, first, middle, quarters, ...) round-robin over stages until a byte budget is spent,
so every stage is covered evenly at any budget. Thumbnails are embedded once per distinct image.
"""

from __future__ import annotations

import base64
import json
from collections import deque
from pathlib import Path

from phaserl.logs import read_metrics
from phaserl.samples import CORRECTNESS

SAMPLE_BUDGET_BYTES = 14_000_000  # sample rows + thumbnails; curves and page code come on top (~1 MB)
MAX_COMPLETION_CHARS = 4000  # per completion shown; the cut is marked
MAX_PROMPT_CHARS = 2000

# Curve panels: (title, keys plotted together, optional (low, high) keys drawn as a band). A panel whose
# keys never appear is left out, so a metric missing from a run is simply absent from the page.
PANELS: list[tuple[str, list[str], tuple[str, str] | None]] = [
    ("reward (total)", ["reward/mean"], None),
    ("accuracy", ["reward/accuracy"], None),
    ("format", ["reward/format"], None),
    (
        "response length (tokens)",
        ["response_length/mean", "response_length/p50", "response_length/min", "response_length/max"],
        ("response_length/p10", "response_length/p90"),
    ),
    ("truncated share", ["truncated_frac"], None),
    ("share of groups with zero reward variance", ["groups/zero_var_frac"], None),
    ("clip fraction", ["clip_frac"], None),
    ("KL to reference", ["kl"], None),
    ("entropy (mean per token)", ["entropy/mean"], None),
    ("loss", ["loss"], None),
    ("grad norm", ["grad_norm"], None),
    ("advantage std / non-zero share", ["adv/std", "adv/nonzero_frac"], None),
    ("learning rate", ["lr"], None),
    ("generated tokens / s", ["tokens_per_s"], None),
    ("time per phase (s)", ["time/generate", "time/score", "time/logp", "time/update", "time/step"], None),
]
SKIP_PREFIXES = ("eval/",)
SKIP_KEYS = {"step", "stage_index", "global_step", "final", "replicas", "replicas_identical"}


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def curve_panels(rows: list[dict]) -> list[dict]:
    """The PANELS present in `rows`, then one panel per other reward component, then the remaining keys."""
    present = {k for r in rows for k, v in r.items() if _num(v)}
    panels, used = [], set()
    for title, keys, band in PANELS:
        keys = [k for k in keys if k in present]
        if keys:
            p = {"title": title, "keys": keys}
            if band and band[0] in present and band[1] in present:
                p["band"] = list(band)
            panels.append(p)
            used.update(keys)
            used.update(band or ())
    for k in sorted(present - used - SKIP_KEYS):
        if k.startswith(SKIP_PREFIXES) or k.endswith("_none") or k == "reward/std":
            continue
        panels.append({"title": k, "keys": [k]})
    return panels


def stage_table(rows: list[dict]) -> list[dict]:
    """One entry per stage in run order: name, index, steps logged, global-step span, first/last 5-step means."""
    out = []
    for name in dict.fromkeys(r["stage"] for r in rows):
        rs = [r for r in rows if r["stage"] == name]
        gs = [r["global_step"] for r in rs if "global_step" in r]
        entry = {
            "name": name,
            "index": rs[0].get("stage_index", 0),
            "steps": len(rs),
            "first_global_step": min(gs) if gs else None,
            "last_global_step": max(gs) if gs else None,
        }
        acc = next((f"reward/{k}" for k in CORRECTNESS if any(_num(r.get(f"reward/{k}")) for r in rs)), None)
        for key, name in (
            ("reward/mean", "reward"),
            (acc, "accuracy"),
            ("response_length/mean", "length"),
            ("time/step", "time/step"),
        ):
            vals = [r[key] for r in rs if _num(r.get(key))] if key else []
            if vals:
                k = max(1, min(5, len(vals) // 2 or 1))
                entry[name] = [sum(vals[:k]) / k, sum(vals[-k:]) / k]
        entry["accuracy_key"] = acc
        out.append(entry)
    return out


def split_rows(metrics: list[dict]) -> tuple[list[dict], list[dict]]:
    """(training step rows, evaluation rows): evaluation rows are any row with an eval/ key (before-training,
    every-N-steps and final ones); a step row with an eval doubles as both."""
    steps = [r for r in metrics if not r.get("final") and r.get("step", 0) > 0 and "stage" in r]
    evals = [r for r in metrics if any(k.startswith("eval/") for k in r)]
    return steps, evals


def series(rows: list[dict]) -> dict:
    """Column form of the step rows: x (global step), step, stage index, and one value list per numeric key."""
    keys = sorted({k for r in rows for k, v in r.items() if _num(v)} - SKIP_KEYS)
    keys = [k for k in keys if not k.startswith(SKIP_PREFIXES)]
    return {
        "global_step": [r.get("global_step", i + 1) for i, r in enumerate(rows)],
        "step": [r.get("step") for r in rows],
        "stage": [r.get("stage_index", 0) for r in rows],
        "values": {k: [r[k] if _num(r.get(k)) else None for r in rows] for k in keys},
    }


def eval_block(evals: list[dict]) -> dict:
    """Evaluation rows (table and curves): keys eval/<view>/<metric>, point x = global step."""
    keys = sorted({k for r in evals for k, v in r.items() if k.startswith("eval/") and _num(v)})
    rows = [
        {
            "stage": r.get("stage"),
            "stage_index": r.get("stage_index", 0),
            "step": r.get("step"),
            "global_step": r.get("global_step", 0),
            "final": bool(r.get("final")),
            **{k: r.get(k) for k in keys},
        }
        for r in evals
    ]
    return {"keys": keys, "rows": rows}


# --- samples -------------------------------------------------------------------------------------------


def scan_sample_file(path: Path):
    """Yield (epoch, row) for each readable row of one samples/<stage>.jsonl (a torn line is skipped).

    The epoch grows whenever the step goes back (a resumed run redoing steps after its last checkpoint, in runs
    logged before MetricsLog cut redone samples itself); a step's rows count from the last epoch holding it."""
    epoch, last = 0, None
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            try:
                r = json.loads(line)
            except json.JSONDecodeError:
                continue
            step = r.get("step", 0)
            if last is not None and step < last:
                epoch += 1
            last = step
            yield epoch, r


class StepCost:
    """What one step's rows would add to the page: bytes of text, thumbnails referenced, row count."""

    __slots__ = ("epoch", "bytes", "images", "rows")

    def __init__(self, epoch: int):
        self.epoch, self.bytes, self.images, self.rows = epoch, 0, set(), 0

    def add(self, r: dict) -> None:
        over = sum(
            max(0, len(r.get(k) or "") - cap)
            for k, cap in (("completion", MAX_COMPLETION_CHARS), ("prompt", MAX_PROMPT_CHARS))
        )
        self.bytes += len(json.dumps(r)) - over + 40
        self.images.update(r.get("images") or [])
        self.rows += 1


def step_costs(path: Path) -> dict[int, StepCost]:
    """Pass 1 over a samples file: {step: StepCost} of the rows that count (see scan_sample_file)."""
    costs: dict[int, StepCost] = {}
    for epoch, r in scan_sample_file(path):
        step = r.get("step", 0)
        if step not in costs or costs[step].epoch != epoch:
            costs[step] = StepCost(epoch)  # a newer epoch replaces the step's rows
        costs[step].add(r)
    # A step logged before a resume went back below it, and never redone, no longer counts: drop step s of
    # epoch e when a later epoch holds a smaller step.
    first: dict[int, int] = {}  # epoch -> smallest step it holds
    for step, c in costs.items():
        first[c.epoch] = min(step, first.get(c.epoch, step))
    later_min: dict[int, float] = {}  # epoch -> smallest step of any later epoch
    low = float("inf")
    for e in sorted(first, reverse=True):
        later_min[e] = low
        low = min(low, first[e])
    return {step: c for step, c in costs.items() if later_min[c.epoch] > step}


def bisection_order(n: int) -> list[int]:
    """0..n-1 ordered last, first, then midpoints level by level, so any prefix spreads over the range."""
    if n <= 0:
        return []
    order, seen = [n - 1], {n - 1}
    if 0 not in seen:
        order.append(0)
        seen.add(0)
    queue = deque([(0, n - 1)])
    while queue:
        lo, hi = queue.popleft()
        if hi - lo < 2:
            continue
        mid = (lo + hi) // 2
        if mid not in seen:
            order.append(mid)
            seen.add(mid)
        queue.append((lo, mid))
        queue.append((mid, hi))
    return order


def clip(text: str | None, limit: int) -> str | None:
    if text is None or len(text) <= limit:
        return text
    return text[:limit] + f"\n[... {len(text) - limit} more characters not shown in the report]"


def browser_row(r: dict, strings: dict[str, int]) -> dict:
    """A sample row in the browser's form: prompt and system text as indexes into a shared string table."""

    def intern(s):
        if s is None:
            return None
        return strings.setdefault(s, len(strings))

    comps = {k[7:]: v for k, v in r.items() if k.startswith("reward/") and not k.endswith("_none")}
    correct = r.get("correct")
    if "correct" not in r:  # rows logged before samples.py
        score = next((comps[k] for k in CORRECTNESS if comps.get(k) is not None), None)
        correct = None if score is None else score >= 1.0
    return {
        "group": r.get("stage"),
        "step": r.get("step"),
        "pg": r.get("group"),
        "id": r.get("id"),
        "view": r.get("view"),
        "prompt": intern(clip(r.get("prompt"), MAX_PROMPT_CHARS)),
        "system": intern(r.get("system")),
        "caption": r.get("caption"),
        "images": r.get("images") or [],
        "completion": clip(r.get("completion") or "", MAX_COMPLETION_CHARS),
        "extracted": r.get("extracted"),
        "gold": r.get("answer"),
        "correct": None if correct is None else bool(correct),
        "truncated": r.get("truncated"),
        "reward": r.get("reward"),
        "components": comps,
        "tokens": r.get("completion_tokens"),
        "entropy": r.get("entropy"),
    }


def choose_steps(stages: dict[str, dict[int, StepCost]], thumb_size, budget: int) -> dict[str, set[int]]:
    """Whole steps per stage, round-robin over stages in bisection order, until `budget` bytes are spent."""
    orders = {s: [sorted(steps)[i] for i in bisection_order(len(steps))] for s, steps in stages.items()}
    chosen: dict[str, set[int]] = {s: set() for s in stages}
    thumbs: set[str] = set()
    spent = 0
    active = set(stages)
    while active:
        for s in list(orders):
            if s not in active:
                continue
            if not orders[s]:
                active.discard(s)
                continue
            step = orders[s][0]
            cost = stages[s][step]
            new = cost.images - thumbs
            nbytes = cost.bytes + sum(thumb_size(t) for t in new)
            if spent + nbytes > budget and any(chosen.values()):
                active.discard(s)
                continue
            orders[s].pop(0)
            chosen[s].add(step)
            thumbs |= new
            spent += nbytes
    return chosen


def load_samples(out_dir: Path, budget: int = SAMPLE_BUDGET_BYTES) -> dict:
    """{"rows", "strings", "thumbs", "total", "shown", "note"} for the rollout browser.

    Two passes over each samples file, so memory holds only the rows shown, however many were logged."""
    sdir = Path(out_dir) / "samples"
    files = sorted(sdir.glob("*.jsonl")) if sdir.is_dir() else []
    stages = {f.stem: step_costs(f) for f in files}
    total = sum(c.rows for steps in stages.values() for c in steps.values())
    sizes: dict[str, int] = {}

    def thumb_size(rel: str) -> int:
        if rel not in sizes:
            p = sdir / rel
            sizes[rel] = int(p.stat().st_size * 4 / 3) + 60 if p.exists() else 0
        return sizes[rel]

    chosen = choose_steps(stages, thumb_size, budget)
    strings: dict[str, int] = {}
    rows, thumbs = [], {}
    for f in files:
        costs, keep = stages[f.stem], chosen[f.stem]
        for epoch, r in scan_sample_file(f):
            step = r.get("step", 0)
            if step not in keep or costs[step].epoch != epoch:
                continue
            r.setdefault("stage", f.stem)
            row = browser_row(r, strings)
            for rel in row["images"]:
                if rel not in thumbs:
                    thumbs[rel] = _data_uri(sdir / rel) if not rel.startswith("data:") else rel
            row["images"] = [rel for rel in row["images"] if thumbs.get(rel)]
            rows.append(row)
    rows.sort(key=lambda r: (r["group"], r["step"]))  # steps in order even where a resume rewrote them
    shown_steps = sum(len(v) for v in chosen.values())
    all_steps = sum(len(v) for v in stages.values())
    note = (
        f"all {total} logged samples"
        if len(rows) == total
        else f"{len(rows)} of {total} logged samples: {shown_steps} of {all_steps} steps, spread evenly over each "
        "stage (the page is kept under its size budget)"
    )
    return {
        "rows": rows,
        "strings": list(strings),
        "thumbs": {k: v for k, v in thumbs.items() if v},
        "total": total,
        "shown": len(rows),
        "note": note,
    }


def _data_uri(path: Path) -> str | None:
    if not path.exists():
        return None
    mime = "image/png" if path.suffix == ".png" else "image/jpeg"
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def run_payload(out_dir: Path, watch: float | None = None, budget: int = SAMPLE_BUDGET_BYTES) -> dict:
    """Everything the run page shows, as one JSON-able dict."""
    out_dir = Path(out_dir)
    steps, evals = split_rows(read_metrics(out_dir))
    return {
        "kind": "run",
        "title": f"phaserl run: {out_dir.resolve().name}",
        "source": str(out_dir.resolve()),
        "watch": watch,
        "stages": stage_table(steps),
        "panels": curve_panels(steps),
        "series": series(steps),
        "eval": eval_block(evals),
        "samples": load_samples(out_dir, budget),
    }
