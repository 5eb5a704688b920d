"""MathVerse (Zhang et al. 2024) testmini: each problem in up to six versions, from text-only to vision-only.

Sample row of data/testmini_text_only.json (the vision versions, testmini.json, have the same fields and an
image path; their images are on the hub only, so pass the folder holding them):
    {"sample_index": "1", "problem_index": "1", "problem_version": "Text Only",
     "question": "As shown in the figure, in triangle ABC, ... then the size of angle CED is ()\\nChoices:\\n
     A:40°\\nB:60°\\nC:120°\\nD:140°", "image": "", "answer": "D", "question_type": "multi-choice",
     "metadata": {"split": "testmini", "source": "GeoQA", "subject": "Plane Geometry", "subfield": "Angle"},
     "query_wo": "Please directly answer ...", "query_cot": "Please first conduct reasoning, ..."}

The choices are written inside the question, so `choices` stays None and the gold is the letter.
Vision-only items have an empty question: the official CoT prompt (query_cot) stands in for it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from phaserl.data.schema import Example
from phaserl.eval.loaders._images import attach_images
from phaserl.eval.loaders._io import answer_text, limit_rows, need, read_rows


def row_to_example(row: dict[str, Any], path: Path, line: int) -> tuple[Example, list[str]]:
    """One MathVerse row -> (Example, [relative image name] or [] for the text-only version)."""
    question = str(row.get("question") or "").strip() or str(need(row, "query_cot", path, line))
    qtype = str(need(row, "question_type", path, line))
    metadata = row.get("metadata") or {}
    example = Example(
        id=str(need(row, "sample_index", path, line)),
        question=question,
        answer=answer_text(need(row, "answer", path, line)),
        answer_type="choice" if qtype == "multi-choice" else "auto",
        source="mathverse",
        meta={
            "question_type": qtype,
            "problem_version": row.get("problem_version"),
            "problem_index": row.get("problem_index"),
            "subject": metadata.get("subject"),
            "subfield": metadata.get("subfield"),
            "source": metadata.get("source"),
            "query_cot": row.get("query_cot"),
        },
    )
    image = row.get("image")
    return example, [str(image)] if image else []


def load_mathverse(
    path: Path, *, image_dir: Path | None = None, missing_images: str = "error", limit: int | None = None
) -> list[Example]:
    """Load testmini_text_only.json (no images) or a vision version file (images under `image_dir`)."""
    path = Path(path)
    pairs = limit_rows([row_to_example(row, path, line) for line, row in read_rows(path)], limit)
    roots = [Path(image_dir)] if image_dir else []
    roots.append(path.parent)
    return attach_images(pairs, roots, missing_images, f"MathVerse ({path.name})")
