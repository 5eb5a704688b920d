"""MathVision (MATH-V, Wang et al. 2024): competition problems with one figure each; test 3040, testmini 304.

Sample row of data/test.jsonl (images/<id>.jpg lives next to the jsonl):
    {"id": "6", "question": "Misty the cat has five kittens ... of different colour?\\n<image1>",
     "options": ["A", "B", "C", "D", "E"], "answer": "D", "solution": null, "level": 3,
     "subject": "logic", "image": "images/6.jpg"}

Multiple-choice answers are letters A-E; 384 items have options that are only the letters (the choices are
drawn in the figure). The official scorer also accepts the option text, so `choices` keeps the options.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from phaserl.data.schema import DataError, Example
from phaserl.eval.loaders._images import attach_images
from phaserl.eval.loaders._io import answer_text, limit_rows, need, read_rows

_IMAGE_TAG_RE = re.compile(r"\s*<image\d+>\s*")


def row_to_example(row: dict[str, Any], path: Path, line: int) -> tuple[Example, list[str]]:
    """One MathVision row -> (Example without images yet, the relative image names it needs)."""
    options = row.get("options") or []
    if not isinstance(options, list):
        raise DataError("options must be a list", path=str(path), line=line, field="options")
    answer = answer_text(need(row, "answer", path, line))
    if options and not (len(answer) == 1 and 0 <= ord(answer) - ord("A") < len(options)):
        raise DataError(
            f"answer {answer!r} is not a letter of the {len(options)} options",
            path=str(path),
            line=line,
            field="answer",
        )
    # The placeholder marks where the figure goes; our renderer always puts images before the text.
    question = _IMAGE_TAG_RE.sub(" ", str(need(row, "question", path, line))).strip()
    example = Example(
        id=str(need(row, "id", path, line)),
        question=question,
        answer=answer,
        answer_type="choice" if options else "auto",
        choices=[str(o) for o in options] or None,
        source="mathvision",
        meta={"subject": row.get("subject"), "level": row.get("level")},
    )
    image = row.get("image")
    return example, [str(image)] if image else []


def load_mathvision(
    path: Path, *, image_dir: Path | None = None, missing_images: str = "error", limit: int | None = None
) -> list[Example]:
    """Load test.jsonl / testmini.jsonl; images resolve under `image_dir`, else next to the jsonl."""
    path = Path(path)
    pairs = limit_rows([row_to_example(row, path, line) for line, row in read_rows(path)], limit)
    roots = [Path(image_dir)] if image_dir else [path.parent]
    return attach_images(pairs, roots, missing_images, f"MathVision ({path})")
