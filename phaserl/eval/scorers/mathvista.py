"""MathVista's rule-based normalisation after extraction (the official `normalize_extracted_answer` and
`safe_equal`, re-implemented), with a rule-based extraction standing in for the official GPT extractor.

Official pipeline: a GPT model extracts the answer; then, for multiple choice, `(X)` or a bare letter X maps
to the option text, anything else to the option nearest by Levenshtein distance (first on ties, case-
sensitive); an integer answer becomes str(int(float(x))); a float str(round(float(x), precision)); a list
str(x); finally the result must equal the gold `answer` string exactly (after strip).

Our extraction, used when no LLM extractor is configured: the official quick path (the response *is* one of
the choices, or an int/float for numeric answers), else phaserl's answer extraction (answer block, boxed,
"the answer is", last line), narrowed to the stated letter for multiple choice and to the last number for
numeric answers. Pass an LLM extractor (`llm_judge.LLMExtractor`) to follow the official way.
"""

from __future__ import annotations

import re

from phaserl.data.schema import Example
from phaserl.eval.scorers.base import PerItemJudge
from phaserl.rewards.choice import letter_of
from phaserl.rewards.extract import extract_answer

_PAREN_LETTER_RE = re.compile(r"\(([a-zA-Z])\)")
_NUMBER_RE = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?|-?\.\d+")


def levenshtein(a: str, b: str) -> int:
    """Edit distance (insert, delete, substitute each cost 1), two-row dynamic programme."""
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        cur = [i]
        for j, cb in enumerate(b, start=1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def nearest_choice(text: str, choices: list[str]) -> str:
    distances = [levenshtein(text, c) for c in choices]
    return choices[distances.index(min(distances))]


def normalize_extraction(extraction: str | None, example: Example) -> str | None:
    """The official normalisation: a choice text, a canonical int/float string, or the text itself."""
    meta = example.meta
    text = "" if extraction is None else str(extraction).strip()
    if meta.get("question_type") == "multi_choice":
        choices = example.choices or []
        letters = _PAREN_LETTER_RE.findall(text)
        if letters:
            text = letters[0].upper()
        options = [chr(ord("A") + i) for i in range(len(choices))]
        if text in options:
            return choices[options.index(text)]
        return nearest_choice(text, choices) if choices else None
    answer_type = meta.get("answer_type")
    try:
        if answer_type == "integer":
            return str(int(float(text)))
        if answer_type == "float":
            return str(round(float(text), int(meta.get("precision") or 0)))
    except (ValueError, OverflowError):
        return None
    return text


def _quick_extract(response: str, example: Example) -> str | None:
    """The official extractor's shortcuts, taken before any model is asked."""
    answer_type = example.meta.get("answer_type")
    if example.meta.get("question_type") == "multi_choice" and response in (example.choices or []):
        return response
    try:
        if answer_type == "integer":
            return str(int(response))
        if answer_type == "float":
            return str(float(response))
    except ValueError:
        return None
    return None


def rule_extract(response: str, example: Example) -> str | None:
    """Rule-based stand-in for the GPT extraction step."""
    quick = _quick_extract(response.strip(), example)
    if quick is not None:
        return quick
    answer = extract_answer(response)
    if answer is None:
        return None
    if example.meta.get("question_type") == "multi_choice":
        letter = letter_of(answer, len(example.choices or []))
        return letter if letter is not None else answer
    if example.meta.get("answer_type") in ("integer", "float"):
        numbers = _NUMBER_RE.findall(answer)
        return numbers[-1].replace(",", "") if numbers else answer
    return answer


class MathVistaScorer(PerItemJudge):
    name = "mathvista_rules"
    version = "MathVista@53d5258 normalize_extracted_answer + safe_equal, rule extraction (phaserl 1)"

    def extract(self, response: str, example: Example) -> str | None:
        return rule_extract(response, example)

    def judge(self, extraction: str | None, example: Example) -> bool:
        normalized = normalize_extraction(extraction, example)
        return normalized is not None and normalized.strip() == str(example.answer).strip()
