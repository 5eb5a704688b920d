"""Accuracy reward: 1.0 when the response's extracted answer is the gold answer, else 0.0.

The extraction (extract_answer) is the one evaluation uses too, and the comparison runs in the bounded
verifier pool, so a pathological response costs at most the verifier's timeout.
"""

from __future__ import annotations

from phaserl.rewards.extract import extract_answer
from phaserl.rewards.verify import Verifier, get_verifier


def check_item(text: str, example) -> dict:
    """The verifier request for one response to one example (answer extracted here, in the parent)."""
    return {
        "gold": example.answer,
        "pred": extract_answer(text) or "",
        "answer_type": example.answer_type,
        "choices": example.choices,
        "tolerance": example.tolerance,
        "rel_tolerance": example.rel_tolerance,
    }


def _score(verdict: bool | None) -> float | None:
    return None if verdict is None else float(verdict)


def accuracy(text: str, example, verifier: Verifier | None = None) -> float | None:
    """1.0 / 0.0; None when the example has no gold answer or the check is undecidable.

    A response with no answer (empty answer block, unclosed <think>) is checked as an empty answer:
    0.0, or None if the gold itself cannot be parsed.
    """
    if example.answer is None:
        return None
    verifier = verifier or get_verifier()
    return _score(verifier.check_many([check_item(text, example)])[0])


def accuracy_many(texts: list[str], examples: list, verifier: Verifier | None = None) -> list[float | None]:
    """accuracy() for N responses at once; the checks run in parallel across the verifier's pool."""
    scores: list[float | None] = [None] * len(texts)
    todo = [i for i, ex in enumerate(examples) if ex.answer is not None]
    if not todo:
        return scores
    verifier = verifier or get_verifier()
    verdicts = verifier.check_many([check_item(texts[i], examples[i]) for i in todo])
    for i, verdict in zip(todo, verdicts):
        scores[i] = _score(verdict)
    return scores
