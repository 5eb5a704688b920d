"""Slow: the verifier against the official MathVision verdicts on two published models' outputs.

Each response goes through extract_answer and the verifier exactly as `phaserl verify` does. The
official scorer is rule-based and brittle (it reads `\\textbf{A}` as "bfa", misses "11" for the option
"11 m"), so full agreement is not the goal; a careful grader's verdict is. Inspected disagreements are
almost all official misses; the floor below guards against regressions.
"""

import json
from pathlib import Path

import pytest

from phaserl.rewards.extract import extract_answer
from phaserl.rewards.verify import Verifier

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
MODELS = ["Gemini-Pro-CoT", "InternLM-XComposer2-VL-CoT"]
AGREEMENT_FLOOR = 0.97

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (DATA / "official_outputs").exists(), reason="../shared/data is not present"),
]


def _questions() -> dict:
    path = DATA / "benchmarks" / "mathvision" / "test.jsonl"
    return {q["id"]: q for q in map(json.loads, path.read_text().splitlines())}


@pytest.mark.parametrize("model", MODELS)
def test_agreement_with_official_mathvision_verdicts(model):
    questions = _questions()
    rows = [json.loads(line) for line in (DATA / "official_outputs" / "mathvision" / f"{model}.jsonl").open()]
    items = [
        {
            "gold": questions[r["id"]]["answer"],
            "pred": extract_answer(r["response"] or "") or "",
            "choices": questions[r["id"]]["options"] or None,
        }
        for r in rows
    ]
    with Verifier(workers=2, timeout=5.0) as verifier:
        verdicts = verifier.check_many(items)
    agree = sum((v is True) == r["correct"] for v, r in zip(verdicts, rows))
    print(f"\n{model}: {agree}/{len(rows)} agree with the official verdicts")
    assert agree >= AGREEMENT_FLOOR * len(rows)
