"""Last-number reward: 1.0 when the last number the response commits to equals the gold number (GSM8K's rule).

Stricter than `accuracy` on free-form text: the verifier evaluates arithmetic it finds in an answer, so a
response that restates the question ("what is 2 + 1 is simply 2") can verify as 3 and score, and one that
says "1 + 4 is 5" can fail. Here only the final number counts. Where the response marks an answer
(<answer>, \\boxed{}, "the answer is"), that answer's last number; otherwise the whole response's.
"""

from __future__ import annotations

from phaserl.rewards.extract import extract_answer, last_boxed
from phaserl.rewards.numbers import last_number, numbers_equal, parse_number


def _marked(text: str) -> bool:
    """The response uses a structure (think/answer tags, a box) whose answer region alone counts."""
    return "<think>" in text or "<answer>" in text or last_boxed(text) is not None


def last_number_reward(text: str, example) -> float | None:
    """1.0 / 0.0; None when the example has no gold answer or the gold is not a single number."""
    if example.answer is None:
        return None
    gold = parse_number(str(example.answer))
    if gold is None:
        return None
    answer = extract_answer(text) or ""
    pred = last_number(answer)
    if pred is None and not _marked(text):  # a plain response whose last line holds no number
        pred = last_number(text)
    if pred is None:
        return 0.0
    return float(numbers_equal(gold, pred, example.tolerance, example.rel_tolerance))
