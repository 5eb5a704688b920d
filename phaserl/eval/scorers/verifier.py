"""The training verifier as a benchmark scorer (MATH-500, GSM8K, AIME, AMC, Minerva): phaserl's answer
extraction (answer block, last \\boxed{}, "the answer is", last line) and the rewards' bounded verifier
(math-verify symbolic equivalence in killable worker processes), so evaluation and reward agree exactly.
"""

from __future__ import annotations

from phaserl.data.schema import Example
from phaserl.rewards.extract import extract_answer


class VerifierScorer:
    name = "verifier"
    version = "phaserl rewards extract_answer + Verifier (math-verify 0.9.0)"

    def __init__(self, verifier=None):
        self._verifier = verifier  # default: the process-wide rewards verifier, created on first use

    def extract(self, response: str, example: Example) -> str | None:
        return extract_answer(response)

    def judge_many(self, extractions: list[str | None], examples: list[Example]) -> list[bool | None]:
        from phaserl.rewards.verify import get_verifier

        verifier = self._verifier or get_verifier()
        todo = [i for i, ex in enumerate(examples) if ex.answer is not None]
        out: list[bool | None] = [None] * len(examples)
        verdicts = (
            verifier.check_many(
                [
                    {
                        "gold": str(examples[i].answer),
                        "pred": extractions[i] or "",
                        "answer_type": examples[i].answer_type,
                        "choices": examples[i].choices,
                        "tolerance": examples[i].tolerance,
                        "rel_tolerance": examples[i].rel_tolerance,
                    }
                    for i in todo
                ]
            )
            if todo
            else []
        )
        for i, verdict in zip(todo, verdicts):
            out[i] = verdict
        return out
