"""AIME 2024, AIME 2025 and AMC 2023: short-answer competition problems (answers are integers).

Sample rows (aime24/test.jsonl, aime25/test.jsonl, amc23/test.jsonl):
    {"id": 60, "problem": "Every morning Aya goes for a $9$-kilometer-long walk ...", "solution": "...",
     "answer": "204", "url": "https://artofproblemsolving.com/wiki/..."}
    {"problem": "Find the sum of all integer bases $b>9$ for which $17_b$ is a divisor of $97_b.$",
     "answer": "70", "id": "0"}
    {"id": 0, "problem": "Cities $A$ and $B$ are $45$ miles apart. ...", "answer": 27.0, "url": "...",
     "question": "(same as problem)"}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from phaserl.data.schema import DataError, Example
from phaserl.eval.loaders._io import answer_text, limit_rows, need, read_rows


def row_to_example(row: dict[str, Any], path: Path, line: int, source: str) -> Example:
    problem = row.get("problem") or row.get("question")
    if not problem:
        raise DataError("missing or empty", path=str(path), line=line, field="problem")
    return Example(
        id=str(row.get("id", line - 1)),
        question=str(problem),
        answer=answer_text(need(row, "answer", path, line)),
        answer_type="math",
        source=source,
        meta={"url": row.get("url")} if row.get("url") else {},
    )


def load_competition(
    path: Path, *, source: str = "aime24", limit: int | None = None, **_: Any
) -> list[Example]:
    path = Path(path)
    return limit_rows([row_to_example(row, path, line, source) for line, row in read_rows(path)], limit)
