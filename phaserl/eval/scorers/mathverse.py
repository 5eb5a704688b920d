"""MathVerse's rule path: exact string match of the extracted answer with the gold.

Officially a GPT model extracts the answer and a GPT model judges it 0/1; the only rule is that an
extraction identical to the gold is correct. Without an LLM this scorer is therefore a lower bound on the
official number (`2191.7` does not match the gold `2191.7 metres`); configure an LLM extractor and judge
(`llm_judge`) for the official way, or score with the `verifier` scorer for a symbolic comparison.

Rule extraction: phaserl's answer extraction, narrowed to the stated option letter for multiple choice.
A few golds are written `(C)` rather than `C`; for multiple choice both sides compare as letters, so the
dressing of the gold does not decide the verdict.
"""

from __future__ import annotations

from phaserl.data.schema import Example
from phaserl.eval.scorers.base import PerItemJudge
from phaserl.rewards.choice import letter_of
from phaserl.rewards.extract import extract_answer


class MathVerseScorer(PerItemJudge):
    name = "mathverse_exact"
    version = "MathVerse@937b090 exact-match rule path, rule extraction (phaserl 1)"

    def __init__(self, judge=None):
        self.llm_judge = judge  # optional llm_judge.LLMJudge, asked when the exact match fails
        if judge is not None:
            self.name = "mathverse_llm_judge"
            self.version = f"{self.version}; judge {getattr(judge, 'method', type(judge).__name__)}"

    def extract(self, response: str, example: Example) -> str | None:
        answer = extract_answer(response)
        if answer is not None and example.meta.get("question_type") == "multi-choice":
            letter = letter_of(answer)
            return letter if letter is not None else answer
        return answer

    def judge(self, extraction: str | None, example: Example) -> bool | None:
        if extraction is None:
            return False
        gold = str(example.answer).strip()
        if example.meta.get("question_type") == "multi-choice":
            gold = letter_of(gold) or gold
        if extraction.strip() == gold:
            return True
        if self.llm_judge is not None:
            return self.llm_judge(extraction, example)
        return False
