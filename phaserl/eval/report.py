"""Reports of an evaluation run: a markdown table over benchmarks, a per-category accuracy plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

MAX_PLOTTED_FIELDS = 4
MAX_BARS = 30


def markdown_table(results: dict[str, dict[str, Any]]) -> str:
    """One row per benchmark naming its scorer and how answers were extracted, so no number travels alone."""
    lines = [
        "| benchmark | scorer | extraction | items | samples | accuracy | pass@k | format |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        k = r.get("samples_per_item", 1)
        pass_k = next(
            (f"{100 * v:.2f}% (pass@{key[5:]})" for key, v in r.items() if key.startswith("pass@")), "-"
        )
        extraction = ", ".join(f"{m}: {n}" for m, n in r.get("extraction", {}).items())
        fmt = f"{100 * r['format_rate']:.1f}%" if r.get("format_rate") is not None else "-"
        lines.append(
            f"| {name} | {r['scorer']} ({r['scorer_version']}) | {extraction} | {r['items']} | {k} | "
            f"{100 * r['accuracy']:.2f}% ({r['correct']}/{r['total']}) | {pass_k} | {fmt} |"
        )
    return "\n".join(lines) + "\n"


def plot_categories(result: dict[str, Any], path: Path) -> Path | None:
    """Horizontal bars of accuracy per category, one panel per breakdown field; None when there is none."""
    fields = [(name, cells) for name, cells in result.get("breakdown", {}).items() if cells][
        :MAX_PLOTTED_FIELDS
    ]
    if not fields:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    heights = [min(len(cells), MAX_BARS) for _, cells in fields]
    fig, axes = plt.subplots(
        len(fields),
        1,
        figsize=(8, 1.2 + 0.28 * sum(heights) + 0.6 * len(fields)),
        gridspec_kw={"height_ratios": heights},
        squeeze=False,
    )
    for ax, (name, cells) in zip(axes[:, 0], fields):
        items = list(cells.items())[:MAX_BARS]
        labels = [f"{value} (n={cell['total']})" for value, cell in items]
        ax.barh(labels, [100 * cell["accuracy"] for _, cell in items], color="#4c72b0")
        ax.set_xlim(0, 100)
        ax.invert_yaxis()
        ax.set_title(name, fontsize=10, loc="left")
        ax.tick_params(labelsize=8)
    axes[-1, 0].set_xlabel("accuracy (%)")
    fig.suptitle(
        f"{result['benchmark']}: {100 * result['accuracy']:.2f}% overall ({result['scorer']})", fontsize=11
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# --- the HTML page ------------------------------------------------------------------------------------

EVAL_BUDGET_BYTES = 15_000_000  # item rows + thumbnails over all benchmarks; the page says how many are shown


def _read_records(path: Path) -> list[dict]:
    """records.jsonl rows, the last one kept per (id, sample); a torn line is skipped."""
    import json

    done: dict[tuple, dict] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            done[(rec.get("id"), rec.get("sample", 0))] = rec
    return list(done.values())


def _tags(example, fields) -> list[str]:
    """'field: value' for each breakdown field the item has (lists, like MathVista's skills, give several)."""
    out = []
    for f in fields:
        v = example.meta.get(f) if example is not None else None
        for x in v if isinstance(v, (list, tuple)) else [v]:
            if x not in (None, ""):
                out.append(f"{f}: {x}")
    return out


def _examples(name: str, data_dir, image_dir, hub: bool = False) -> dict:
    """{id: Example} of a benchmark, for gold answers and categories; {} when it cannot be loaded here."""
    from phaserl.eval.registry import load_benchmark

    try:
        return {
            e.id: e
            for e in load_benchmark(name, data_dir, image_dir=image_dir, missing_images="ignore", hub=hub)
        }
    except Exception:  # the page still shows responses and verdicts without the data
        return {}


def item_rows(
    name: str, records: list[dict], examples: dict, fields, strings: dict, thumbs: dict, budget: int
) -> tuple[list[dict], int]:
    """Browser rows for one benchmark's records, in item order, until `budget` bytes; returns (rows, bytes)."""
    import json

    from phaserl.report.data import MAX_COMPLETION_CHARS, clip
    from phaserl.samples import prompt_text, thumbnail_uri

    rows, spent = [], 0
    for rec in records:
        ex = examples.get(rec.get("id"))
        text, system = prompt_text(rec["prompt"]) if rec.get("prompt") else ("", None)
        images = []
        for ref in rec.get("images") or []:
            if ref not in thumbs:
                uri = thumbnail_uri(ref, px=160)
                thumbs[ref] = uri
                spent += len(uri) if uri else 0
            if thumbs[ref]:
                images.append(ref)
        new_text = text not in strings
        row = {
            "group": name,
            "step": None,
            "pg": rec.get("id"),
            "id": rec.get("id"),
            "view": rec.get("view"),
            "prompt": strings.setdefault(text, len(strings)),
            "system": None if system is None else strings.setdefault(system, len(strings)),
            "caption": ex.caption if ex is not None and rec.get("view") == "image+caption" else None,
            "images": images,
            "completion": clip(rec.get("response") or "", MAX_COMPLETION_CHARS),
            "extracted": rec.get("extraction"),
            "gold": ex.answer if ex is not None else rec.get("gold"),
            "correct": rec.get("correct"),
            "truncated": rec.get("truncated"),
            "reward": None,
            "components": {"format": float(rec["format_ok"])} if "format_ok" in rec else {},
            "tokens": rec.get("completion_tokens"),
            "method": rec.get("method"),
            "tags": _tags(ex, fields),
        }
        if rec.get("sample"):
            row["id"] = f"{row['id']} #{rec['sample']}"
        spent += len(json.dumps(row)) + (len(text) if new_text else 0)
        if spent > budget and rows:
            break
        rows.append(row)
    return rows, spent


def eval_payload(
    output: Path, data_dir=None, image_dir=None, budget: int = EVAL_BUDGET_BYTES, hub: bool = False
) -> dict:
    """Everything the evaluation page shows: one entry per OUTPUT/<benchmark>/result.json, items from records."""
    import json
    import re

    output = Path(output)
    folders = sorted(p.parent for p in output.glob("*/result.json"))
    benches, rows, strings, thumbs = [], [], {}, {}
    total = 0
    for folder in folders:
        result = json.loads((folder / "result.json").read_text(encoding="utf-8"))
        name = result.get("benchmark", folder.name)
        fields = list(result.get("breakdown", {}))
        pass_k = next((f"{100 * v:.1f}% ({k})" for k, v in result.items() if k.startswith("pass@")), None)
        benches.append(
            {
                **{
                    k: result.get(k)
                    for k in (
                        "scorer",
                        "scorer_version",
                        "items",
                        "samples_per_item",
                        "accuracy",
                        "correct",
                        "total",
                        "format_rate",
                        "truncated_rate",
                        "extraction",
                        "breakdown",
                    )
                },
                "name": name,
                "slug": re.sub(r"[^A-Za-z0-9_-]", "_", name),
                "pass_k": pass_k,
            }
        )
        records = _read_records(folder / "records.jsonl")
        total += len(records)
        share = max(
            1,
            (budget - sum(len(v or "") for v in thumbs.values())) // max(1, len(folders) - len(benches) + 1),
        )
        got, _ = item_rows(
            name, records, _examples(name, data_dir, image_dir, hub), fields, strings, thumbs, share
        )
        rows += got
    config = (
        json.loads((folders[0] / "config.json").read_text())
        if folders and (folders[0] / "config.json").exists()
        else {}
    )
    note = ", ".join(
        f"{k}={config[k]}"
        for k in ("model", "template", "view", "max_new_tokens", "temperature", "samples")
        if config.get(k) is not None
    )
    shown = "all" if len(rows) == total else f"{len(rows)} of"
    return {
        "kind": "eval",
        "title": f"phaserl eval: {output.resolve().name}",
        "source": str(output.resolve()),
        "config": note and f"settings: {note}",
        "benchmarks": benches,
        "samples": {
            "rows": rows,
            "strings": list(strings),
            "thumbs": {k: v for k, v in thumbs.items() if v},
            "total": total,
            "shown": len(rows),
            "note": f"{shown} {total} responses (items in benchmark order"
            + ("" if len(rows) == total else "; the page is kept under its size budget")
            + ")",
        },
    }


def write_eval_report(
    output: Path, html: Path | None = None, data_dir=None, image_dir=None, hub: bool = False
) -> Path:
    """Write OUTPUT/report.html for a `phaserl eval` folder: scores, per-category accuracy, items."""
    from datetime import datetime, timezone

    from phaserl.report.page import write_page

    payload = eval_payload(output, data_dir, image_dir, hub=hub)
    if not payload["benchmarks"]:
        raise ValueError(f"{output}: no <benchmark>/result.json here; run `phaserl eval` first")
    payload["generated"] = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return write_page(payload, Path(html or Path(output) / "report.html"))
