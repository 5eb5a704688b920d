"""OlympiadBench (He et al. 2024): olympiad problems with final answers, scored by the official sympy judge.

Sample row of OE_TO_maths_en_COMP.jsonl (open-ended, text-only, maths, English, competition):
    {"id": 1606, "subfield": "Combinatorics", "context": null, "question": "Xenia and Sergey play ...",
     "solution": ["Sergey can determine ..."], "final_answer": ["2"], "is_multiple_answer": false,
     "unit": null, "answer_type": "Numerical", "error": null}

The general format (other OlympiadBench splits) has the same fields plus question_type, subject, language
and, for multimodal items, images (`image_1` ... `image_5` columns, or an `images` list). `error` is the
item's absolute tolerance ("1e-1", or one value per answer joined by commas). Theorem-proving items have no
final answer and cannot be scored by rules: they are skipped, with a log line saying how many.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from phaserl.data.schema import DataError, Example
from phaserl.eval.loaders._images import attach_images
from phaserl.eval.loaders._io import limit_rows, need, read_rows

log = logging.getLogger(__name__)
_IMAGE_TAG_RE = re.compile(r"<image_\d+>")


def parse_error(value: Any, path: Path, line: int) -> list[float] | None:
    """The `error` field as a list of tolerances (one per answer, or one for all), None when absent."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    parts = value if isinstance(value, list) else str(value).split(",")
    try:
        return [float(p) for p in parts]
    except (TypeError, ValueError) as e:
        raise DataError(
            f"not a number or comma-separated numbers: {value!r}", path=str(path), line=line, field="error"
        ) from e


def _image_refs(row: dict[str, Any]) -> list[Any]:
    refs = list(row.get("images") or [])
    refs += [row[f"image_{i}"] for i in range(1, 6) if row.get(f"image_{i}") is not None]
    return refs


def row_to_example(row: dict[str, Any], path: Path, line: int) -> tuple[Example, list[Any]] | None:
    """One OlympiadBench row -> (Example, image refs); None for an item without a final answer (a proof)."""
    finals = row.get("final_answer")
    if not finals:
        return None
    if not isinstance(finals, list):
        finals = [finals]
    question = str(need(row, "question", path, line))
    if row.get("context"):
        question = f"{row['context']}\n{question}"
    question = _IMAGE_TAG_RE.sub("", question).strip()
    error = parse_error(row.get("error"), path, line)
    example = Example(
        id=str(need(row, "id", path, line)),
        question=question,
        answer=",".join(str(f) for f in finals),
        answer_type="math",
        source="olympiadbench",
        tolerance=error[0] if error and len(error) == 1 else None,
        meta={
            "subfield": row.get("subfield"),
            "answer_type": row.get("answer_type"),
            "unit": row.get("unit"),
            "is_multiple_answer": bool(row.get("is_multiple_answer")),
            "error": error,
            "subject": row.get("subject"),
            "language": row.get("language"),
        },
    )
    return example, _image_refs(row)


def load_olympiadbench(
    path: Path, *, image_dir: Path | None = None, missing_images: str = "error", limit: int | None = None
) -> list[Example]:
    """Load an OlympiadBench .jsonl/.json file; path-valued images resolve under `image_dir` or the file's folder."""
    path = Path(path)
    converted = [row_to_example(row, path, line) for line, row in read_rows(path)]
    pairs = [p for p in converted if p is not None]
    if len(pairs) < len(converted):
        log.info(
            "OlympiadBench %s: skipped %d items without a final answer (theorem proving)",
            path.name,
            len(converted) - len(pairs),
        )
    roots = [Path(image_dir)] if image_dir else []
    roots.append(path.parent)
    return attach_images(limit_rows(pairs, limit), roots, missing_images, f"OlympiadBench ({path.name})")
