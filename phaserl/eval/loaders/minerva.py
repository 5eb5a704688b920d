"""Minerva Math (Lewkowycz et al. 2022): 272 undergraduate science problems (OCWCourses).

Sample row of minerva_math/test.jsonl (the gold is the last \\boxed{} of the solution):
    {"problem": "Each of the two Magellan telescopes has a diameter of $6.5 \\\\mathrm{~m}$. ...",
     "solution": "... s=\\\\frac{45}{3600} \\\\frac{\\\\pi}{180} 7200=\\\\boxed{1.6} \\\\mathrm{~cm} ...",
     "type": "Introduction to Astronomy (8.282J Spring 2006)", "idx": 0}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from phaserl.data.schema import DataError, Example
from phaserl.eval.loaders._io import limit_rows, need, read_rows
from phaserl.rewards.extract import last_boxed


def row_to_example(row: dict[str, Any], path: Path, line: int) -> Example:
    gold = row.get("answer") or last_boxed(str(need(row, "solution", path, line)))
    if not gold:
        raise DataError("solution has no \\boxed{} answer", path=str(path), line=line, field="solution")
    return Example(
        id=str(row.get("idx", line - 1)),
        question=str(need(row, "problem", path, line)),
        answer=str(gold).strip(),
        answer_type="math",
        source="minerva_math",
        meta={"type": row.get("type")},
    )


def load_minerva(path: Path, *, limit: int | None = None, **_: Any) -> list[Example]:
    path = Path(path)
    return limit_rows([row_to_example(row, path, line) for line, row in read_rows(path)], limit)
