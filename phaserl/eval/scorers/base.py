"""What every benchmark scorer is: extract an answer from a response, then judge it against the gold.

Splitting the two steps lets a prediction file carry an already-extracted answer (`extraction`), lets an LLM
extractor (MathVista's and MathVerse's official way) replace the rule-based one, and lets every result record
exactly which scorer, version and extraction produced a number.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from phaserl.data.schema import Example


@dataclass
class Verdict:
    """The scoring of one response. `extraction` is what was compared with the gold (None = no answer)."""

    correct: bool
    extraction: str | None
    method: (
        str  # how the extraction was obtained: "rules", "given" (from the predictions file), "llm:<model>"
    )
    decided: bool = True  # False when the comparison could not be decided (counted as wrong)


class Scorer(Protocol):
    name: str
    version: str

    def extract(self, response: str, example: Example) -> str | None:
        """The answer a response gives, in the form `judge` expects."""
        ...

    def judge_many(self, extractions: list[str | None], examples: list[Example]) -> list[bool | None]:
        """For each pair: True when the extraction is the gold answer, None when undecidable."""
        ...


class Extractor(Protocol):
    """Something that turns a response into an answer string (rules, or an LLM through an endpoint)."""

    method: str

    def __call__(self, response: str, example: Example) -> str | None: ...


def score_many(
    scorer: Scorer,
    examples: list[Example],
    responses: list[str | None],
    extractions: list[str | None] | None = None,
    extractor: Extractor | None = None,
) -> list[Verdict]:
    """Score N predictions: a given extraction wins, else `extractor` (an LLM) or the scorer's own rules."""
    extractions = extractions if extractions is not None else [None] * len(examples)
    answers, methods = [], []
    for example, response, given in zip(examples, responses, extractions):
        if given is not None:
            answers.append(given)
            methods.append("given")
        elif response is None:
            raise ValueError(f"example {example.id}: a prediction needs a response or an extraction")
        elif extractor is not None:
            answers.append(extractor(response, example))
            methods.append(extractor.method)
        else:
            answers.append(scorer.extract(response, example))
            methods.append("rules")
    verdicts = scorer.judge_many(answers, examples)
    return [Verdict(bool(v), a, m, decided=v is not None) for v, a, m in zip(verdicts, answers, methods)]


def score_one(
    scorer: Scorer,
    example: Example,
    *,
    response: str | None = None,
    extraction: str | None = None,
    extractor: Extractor | None = None,
) -> Verdict:
    """score_many for one prediction."""
    return score_many(scorer, [example], [response], [extraction], extractor)[0]


class PerItemJudge:
    """Mixin: judge_many from a per-item `judge(extraction, example) -> bool | None`."""

    def judge_many(self, extractions: list[str | None], examples: list[Example]) -> list[bool | None]:
        return [self.judge(e, ex) for e, ex in zip(extractions, examples)]  # type: ignore[attr-defined]
