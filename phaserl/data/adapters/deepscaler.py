"""DeepScaleR-Preview (agentica-org): 40K text-only competition problems.

Sample row:

    {"problem": "Let $a$ and $b$ be positive reals with $a+b=1$. Find the minimum of $\\frac{1}{a}+\\frac{1}{b}$.",
     "answer": "4", "solution": "By AM-HM, ... so the minimum is $\\boxed{4}$."}

The worked solution is kept in meta["solution"] (the rewards never see it).
"""

from __future__ import annotations

from phaserl.data.adapters._common import require_text, row_id
from phaserl.data.schema import Example


def to_example(row: dict, idx: int, spec) -> Example:
    meta = {"solution": row["solution"]} if isinstance(row.get("solution"), str) else {}
    return Example(
        id=row_id(row, ("id", "uid"), spec, idx),
        question=require_text(row, ("problem", "question"), "question"),
        answer=require_text(row, ("answer",), "answer"),
        source="deepscaler",
        meta=meta,
    )
