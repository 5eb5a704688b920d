"""GSM8K (Cobbe et al. 2021): grade-school word problems; the gold is the number after `#### `.

Sample row of gsm8k/test.jsonl:
    {"question": "Janet's ducks lay 16 eggs per day. ... How much in dollars does she make every day?",
     "answer": "Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.\\n... \\n#### 18"}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from phaserl.data.schema import DataError, Example
from phaserl.eval.loaders._io import limit_rows, need, read_rows


def gold_number(solution: str) -> str | None:
    """The text after the last `#### ` with thousands separators dropped ("1,000" -> "1000")."""
    head, sep, tail = solution.rpartition("####")
    if not sep:
        return None
    value = tail.strip().replace(",", "")
    return value or None


def row_to_example(row: dict[str, Any], path: Path, line: int) -> Example:
    solution = str(need(row, "answer", path, line))
    gold = gold_number(solution)
    if gold is None:
        raise DataError("no '#### <number>' final answer", path=str(path), line=line, field="answer")
    return Example(
        id=str(row.get("id", line - 1)),
        question=str(need(row, "question", path, line)),
        answer=gold,
        answer_type="number",
        source="gsm8k",
    )


def load_gsm8k(path: Path, *, limit: int | None = None, **_: Any) -> list[Example]:
    path = Path(path)
    return limit_rows([row_to_example(row, path, line) for line, row in read_rows(path)], limit)
