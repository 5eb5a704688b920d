"""MATH-500 (Lightman et al. 2023, the PRM800K test split of MATH): 500 competition problems.

Sample row of math500/test.jsonl:
    {"problem": "Convert the point $(0,3)$ in rectangular coordinates to polar coordinates. ...",
     "solution": "... $\\\\boxed{\\\\left( 3, \\\\frac{\\\\pi}{2} \\\\right)}.$",
     "answer": "\\\\left( 3, \\\\frac{\\\\pi}{2} \\\\right)", "subject": "Precalculus", "level": 2,
     "unique_id": "test/precalculus/807.json"}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from phaserl.data.schema import Example
from phaserl.eval.loaders._io import answer_text, limit_rows, need, read_rows


def row_to_example(row: dict[str, Any], path: Path, line: int) -> Example:
    return Example(
        id=str(row.get("unique_id") or line),
        question=str(need(row, "problem", path, line)),
        answer=answer_text(need(row, "answer", path, line)),
        answer_type="math",
        source="math500",
        meta={"subject": row.get("subject"), "level": row.get("level")},
    )


def load_math500(path: Path, *, limit: int | None = None, **_: Any) -> list[Example]:
    path = Path(path)
    return limit_rows([row_to_example(row, path, line) for line, row in read_rows(path)], limit)
