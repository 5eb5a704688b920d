"""Geometry3K (Lu et al., Inter-GPS): 3,002 geometry problems with a diagram each.

Two shapes are accepted. The hub copy R1-style trainers use (hiyouga/geometry3k parquet: `images` is a list of
Image structs {bytes, path}, `answer` the value, `ground_truth` the letter of `choices`, both kept in meta):

    {"images": [{"bytes": b"\\x89PNG...", "path": null}], "problem": "<image>Find x. Round to the nearest tenth.",
     "answer": "7.6", "id": 2401, "choices": ["3.8", "5.2", "7.6", "9.1"], "ground_truth": "C"}

and the original per-problem `data.json` files, collected into JSONL (answer is a letter, the diagram is
`<id>/img_diagram.png` under image_root, i.e. the split folder):

    {"id": 2401, "problem_text": "Find x.", "choices": ["3", "5", "7", "9"], "answer": "B",
     "problem_type_graph": ["Triangle"], "problem_type_goal": ["Length"]}
"""

from __future__ import annotations

from phaserl.data.adapters._common import (
    choice_list,
    first_field,
    image_list,
    require_text,
    row_id,
    strip_image_tags,
)
from phaserl.data.schema import Example


def to_example(row: dict, idx: int, spec) -> Example:
    if "problem_text" in row:
        return _original(row, idx, spec)
    return Example(
        id=row_id(row, ("id",), spec, idx),
        question=strip_image_tags(require_text(row, ("problem", "question"), "question")),
        answer=require_text(row, ("answer",), "answer"),
        images=image_list(first_field(row, ("images", "image"))[1]),
        source="geometry3k",
        meta={k: row[k] for k in ("choices", "ground_truth") if row.get(k) is not None},
    )


def _original(row: dict, idx: int, spec) -> Example:
    ex_id = row_id(row, ("id",), spec, idx)
    images = image_list(first_field(row, ("image", "images"))[1]) or [f"{ex_id}/img_diagram.png"]
    choices = choice_list(row.get("choices"), "choices")
    meta = {k: row[k] for k in ("problem_type_graph", "problem_type_goal") if k in row}
    return Example(
        id=ex_id,
        question=require_text(row, ("problem_text",), "question"),
        answer=require_text(row, ("answer",), "answer"),
        images=images,
        choices=choices,
        answer_type="choice" if choices else "auto",
        source="geometry3k",
        meta=meta,
    )
