"""`phaserl data inspect`: what a data file holds and how its prompts will look, before a run uses it.

CLI wanted (lead wires it):
    phaserl data inspect FILE [--adapter generic] [--field question=problem ...] [--image-root DIR]
        [--show 3] [--template plain] [--json]
    -> report = phaserl.data.tools.inspect.inspect_command(FILE, adapter, fields, image_root, n_show=show,
           template=template); print(json.dumps(report) if json else format_report(report))

Loads with bad rows skipped (and counted) and image files checked without failing, so one look shows
everything that is wrong with a file.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from phaserl.data.render import render
from phaserl.data.schema import VIEWS, DataError, Example
from phaserl.data.tools._io import load_input

_NUMBER = re.compile(r"[-+]?(\d+(,\d{3})*(\.\d*)?|\.\d+)(e[-+]?\d+)?")


def detected_type(ex: Example) -> str:
    """What 'auto' will most likely resolve to (the verifier decides for real): for the counts only."""
    if ex.answer_type != "auto":
        return ex.answer_type
    if ex.choices:
        return "choice"
    answer = (ex.answer or "").strip().strip("$")
    return "number" if _NUMBER.fullmatch(answer) else "math"


def image_counts(examples: list[Example]) -> dict:
    missing_ids, missing, in_memory, refs = [], 0, 0, 0
    for ex in examples:
        for ref in ex.images:
            refs += 1
            if isinstance(ref, str):
                if not Path(ref).is_file():
                    missing += 1
                    if len(missing_ids) < 10 and ex.id not in missing_ids:
                        missing_ids.append(ex.id)
            else:
                in_memory += 1
    with_images = sum(1 for ex in examples if ex.images)
    return {
        "with_images": with_images,
        "text_only": len(examples) - with_images,
        "image_refs": refs,
        "missing": missing,
        "missing_ids": missing_ids,
        "in_memory": in_memory,
    }


def caption_counts(examples: list[Example]) -> dict:
    with_images = [ex for ex in examples if ex.images]
    captioned = sum(1 for ex in with_images if ex.caption)
    return {
        "with_caption": sum(1 for ex in examples if ex.caption),
        "images_with_caption": captioned,
        "coverage": round(captioned / len(with_images), 4) if with_images else None,
    }


def _fits(ex: Example, view: str) -> bool:
    return view == "text" or (bool(ex.images) and (view == "image" or bool(ex.caption)))


def sample_prompts(examples: list[Example], n_show: int, template: str = "plain") -> list[dict]:
    """Up to n_show rendered prompts per view, from examples the view applies to (image views need images)."""
    out = []
    for view in VIEWS:
        chosen = [ex for ex in examples if _fits(ex, view)][:n_show]
        if not chosen:
            out.append({"view": view, "id": None, "error": "no example fits this view"})
        for ex in chosen:
            try:
                prompt = render(ex, view, template)
                out.append(
                    {
                        "view": view,
                        "id": ex.id,
                        "messages": prompt.messages,
                        "images": len(prompt.images),
                        "answer": ex.answer,
                    }
                )
            except DataError as e:
                out.append({"view": view, "id": ex.id, "error": str(e)})
    return out


def inspect_command(
    path: str,
    adapter: str = "generic",
    fields: dict[str, str] | None = None,
    image_root: str | None = None,
    n_show: int = 3,
    *,
    template: str = "plain",
) -> dict:
    """Counts by source and answer type, images present/missing, captions, bad rows, sample prompts."""
    messages: list[str] = []
    examples = load_input(
        path, adapter, fields, image_root, skip_bad_rows=True, check_images=False, log=messages.append
    )
    bad = [m for m in messages if m.startswith("skipping bad row")]
    lengths = [len(ex.question) for ex in examples]
    return {
        "path": str(path),
        "adapter": adapter,
        "examples": len(examples),
        "bad_rows": len(bad),
        "bad_row_messages": bad[:10],
        "by_source": dict(Counter(ex.source for ex in examples).most_common()),
        "by_answer_type": dict(Counter(ex.answer_type for ex in examples).most_common()),
        "by_detected_type": dict(Counter(detected_type(ex) for ex in examples).most_common()),
        "with_choices": sum(1 for ex in examples if ex.choices),
        "images": image_counts(examples),
        "captions": caption_counts(examples),
        "question_chars": {
            "mean": round(sum(lengths) / len(lengths), 1) if lengths else 0,
            "max": max(lengths, default=0),
        },
        "samples": sample_prompts(examples, n_show, template),
    }


def format_report(report: dict) -> str:
    """The report as readable text for a terminal."""
    img, cap = report["images"], report["captions"]
    lines = [
        f"{report['path']} (adapter {report['adapter']}): {report['examples']} examples, "
        f"{report['bad_rows']} bad rows skipped",
        *[f"  bad: {m}" for m in report["bad_row_messages"]],
        f"sources:      {_counts(report['by_source'])}",
        f"answer types: {_counts(report['by_answer_type'])} (likely: {_counts(report['by_detected_type'])})",
        f"images:       {img['with_images']} examples with images, {img['text_only']} text-only, "
        f"{img['image_refs']} references, {img['missing']} missing"
        + (f" (e.g. {', '.join(img['missing_ids'])})" if img["missing_ids"] else ""),
        f"captions:     {cap['images_with_caption']} of {img['with_images']} image examples"
        + (f" ({cap['coverage']:.0%})" if cap["coverage"] is not None else ""),
        f"questions:    {report['question_chars']['mean']} characters on average, "
        f"longest {report['question_chars']['max']}",
    ]
    for s in report["samples"]:
        lines.append(f"--- view {s['view']}" + (f", example {s['id']}" if s["id"] is not None else ""))
        if "error" in s:
            lines.append(f"  ({s['error']})")
            continue
        for m in s["messages"]:
            content = (
                m["content"]
                if isinstance(m["content"], str)
                else " ".join("<image>" if p["type"] == "image" else p.get("text", "") for p in m["content"])
            )
            lines.append(f"  [{m['role']}] {content}")
        lines.append(f"  [gold] {s['answer']}")
    return "\n".join(lines)


def _counts(counter: dict) -> str:
    return ", ".join(f"{k or '?'}: {v}" for k, v in counter.items()) or "none"
