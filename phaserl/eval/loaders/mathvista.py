"""MathVista (Lu et al. 2024) testmini: 1000 visual math questions, a dict pid -> item.

Sample item of data/testmini.json (its images are on the hub only: pass the folder holding images/<pid>.jpg):
    {"question": "Find $m\\\\angle H$", "image": "images/5.jpg", "choices": ["97", "102", "107", "122"],
     "unit": null, "precision": null, "answer": "97", "question_type": "multi_choice", "answer_type": "text",
     "pid": "5", "metadata": {"split": "testmini", "language": "english", "source": "Geometry3K",
     "category": "math-targeted-vqa", "task": "geometry problem solving", "context": "geometry diagram",
     "grade": "high school", "skills": ["geometry reasoning", "algebraic reasoning"], ...}}

The gold `answer` of a multiple-choice item is the option *text* (the official scorer compares texts).
query.json beside the file holds the official prompt ("Hint: ... Question: ... Choices: ..."); when it is
there the question becomes that prompt minus its choices block (the renderer adds the choices back).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from phaserl.data.schema import DataError, Example
from phaserl.eval.loaders._images import attach_images
from phaserl.eval.loaders._io import answer_text, limit_rows, need, read_json, read_rows

META_FIELDS = ("language", "source", "category", "task", "context", "grade", "skills")
_CHOICES_RE = re.compile(r"\nChoices:\n.*\Z", re.S)
_ANSWER_TYPES = {"integer": "number", "float": "number", "list": "string"}


def row_to_example(
    row: dict[str, Any], path: Path, line: int, query: str | None = None
) -> tuple[Example, list[str]]:
    """One MathVista item -> (Example, [relative image name])."""
    qtype = str(need(row, "question_type", path, line))
    choices = row.get("choices") or None
    answer = answer_text(need(row, "answer", path, line))
    if qtype == "multi_choice" and not choices:
        raise DataError("multi_choice item without choices", path=str(path), line=line, field="choices")
    question = str(need(row, "question", path, line))
    if query:
        question = _CHOICES_RE.sub("", query).strip()
    metadata = row.get("metadata") or {}
    meta = {
        "question_type": qtype,
        "answer_type": row.get("answer_type"),
        "precision": row.get("precision"),
        "unit": row.get("unit"),
    }
    meta.update({k: metadata.get(k) for k in META_FIELDS})
    example = Example(
        id=str(need(row, "pid", path, line)),
        question=question,
        answer=answer,
        answer_type="choice"
        if qtype == "multi_choice"
        else _ANSWER_TYPES.get(row.get("answer_type"), "auto"),
        choices=[str(c) for c in choices] if choices else None,
        source="mathvista",
        meta=meta,
    )
    image = row.get("image")
    return example, [str(image)] if image else []


def load_mathvista(
    path: Path,
    *,
    image_dir: Path | None = None,
    missing_images: str = "error",
    limit: int | None = None,
    official_prompt: bool = True,
) -> list[Example]:
    """Load testmini.json. Images resolve under `image_dir` (then next to the file); see `attach_images`."""
    path = Path(path)
    query_path = path.parent / "query.json"
    queries = read_json(query_path) if official_prompt and query_path.is_file() else {}
    pairs = [
        row_to_example(row, path, line, queries.get(str(row.get("pid")))) for line, row in read_rows(path)
    ]
    roots = [Path(image_dir)] if image_dir else []
    roots.append(path.parent)
    return attach_images(limit_rows(pairs, limit), roots, missing_images, f"MathVista ({path.name})")
