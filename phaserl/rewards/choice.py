"""Multiple choice: read a letter in its usual dressings, or map the option text back to its letter.

A letter only counts when the answer *is* the letter (`B`, `(B)`, `B.`, `B) 12`, `The answer is B`),
not when a letter is merely mentioned ("Because B is valid"): a hedging answer ("A or B") picks nothing.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

from phaserl.rewards.numbers import numbers_equal, parse_number

_MAX_TEXT = 2_000
_WRAP_RE = re.compile(r"\\(?:text|textbf|mathrm|mathbf|textnormal|boxed|fbox)\s*\{([^{}]*)\}")
_LETTER_RES = [
    re.compile(r"\(?([A-Z])\)?[.:]?"),  # B  (B)  B.  B:  (B).
    re.compile(r"\[([A-Z])\]\.?"),  # [B]
    re.compile(r"\(([A-Z])\)\s+\S.*"),  # (B) 12
    re.compile(r"([A-Z])[.):]\s+\S.*"),  # B. 12   B) 12   B: 12
    re.compile(
        r"(?:the\s+)?(?:correct\s+|final\s+)?(?:answer|option|choice)\s*(?:is|:)?\s*:?\s*"
        r"(?:option\s+|choice\s+)?\(?((?-i:[A-Z]))\)?(?:[.:)]?(?:\s.*)?)",
        re.IGNORECASE,
    ),
    re.compile(r"(?:option|choice)\s+\(?((?-i:[A-Z]))\)?\.?", re.IGNORECASE),
    # a sentence that ends by naming the option: "So the card for Michael must be A."
    re.compile(r"(?:.*\s)?(?:is|be)\s+(?:option\s+|choice\s+)?\(?((?-i:[A-Z]))\)?\.?", re.IGNORECASE),
]
# "A or B", "(A) and (B)", "A, B": a hedge names no option.
_HEDGE_RE = re.compile(r"(?:\b(?:or|and)\s+|,\s*)\(?[A-Z]\)?(?![A-Za-z])")
_BARE_RE = re.compile(r"\(?[A-Z]\)?\.?")
_LOWER_RE = re.compile(r"\(?([a-z])\)?[.:]?")  # a lone lower-case letter, only when options exist


def _plain(text: str) -> str:
    """Drop $, \\text{}, **bold** and surrounding white space; NFKC so full-width Ｂ reads as B."""
    s = unicodedata.normalize("NFKC", text)
    for _ in range(3):  # \boxed{\text{(C)}} is two wrappers deep
        s = _WRAP_RE.sub(lambda m: m.group(1), s)
    for mark in ("$", "**", "\\(", "\\)", "\\[", "\\]", "\\displaystyle"):
        s = s.replace(mark, "")
    return " ".join(s.split())


def letter_of(text: str, n_choices: int | None = None) -> str | None:
    """The option letter that `text` states, upper case, or None ("A or B" and prose name none)."""
    if len(text) > _MAX_TEXT:
        return None
    s = _plain(text)
    if _HEDGE_RE.search(s):
        return None
    for pattern in _LETTER_RES:
        m = pattern.fullmatch(s)
        if m is not None:
            return m.group(1).upper()
    if n_choices:
        m = _LOWER_RE.fullmatch(s)
        if m is not None and ord(m.group(1)) - ord("a") < n_choices:
            return m.group(1).upper()
    return None


def is_bare_letter(text: str) -> bool:
    """True for a lone capital in light dressing: `C`, `(C)`, `C.`, `\\text{C}`."""
    return len(text) <= 64 and _BARE_RE.fullmatch(_plain(text)) is not None


def normalize_option(text: str) -> str:
    """Case-, space- and dressing-insensitive form of an option text, for text-to-option matching."""
    return "".join(_plain(text).casefold().rstrip(".").split())


def option_index(text: str, choices: list[str]) -> int | None:
    """Index of the one option whose text `text` is (normalised, or numerically equal); else None."""
    if len(text) > _MAX_TEXT:
        return None
    want = normalize_option(text)
    if not want:
        return None
    hits = [i for i, c in enumerate(choices) if normalize_option(c) == want]
    if not hits:
        num = parse_number(text)
        if num is not None:
            nums = [parse_number(c) for c in choices]
            hits = [i for i, c in enumerate(nums) if c is not None and numbers_equal(c, num)]
    return hits[0] if len(hits) == 1 else None


def resolve_letter(
    text: str, choices: list[str] | None, same: Callable[[str, str], bool | None] | None = None
) -> str | None:
    """The option `text` picks: a stated letter, else the option whose text it is, else (when `same`
    is given) the one option it equals mathematically, e.g. "\\frac{1}{4}" for the option "1:4".
    """
    n = len(choices) if choices else None
    letter = letter_of(text, n)
    if letter is not None:
        return letter
    if not choices:
        return None
    idx = option_index(text, choices)
    if idx is None and same is not None and text.strip():
        hits = [i for i, c in enumerate(choices) if same(c, text)]
        idx = hits[0] if len(hits) == 1 else None
    return None if idx is None else chr(ord("A") + idx)


def choice_equal(
    gold: str, pred: str, choices: list[str] | None, same: Callable[[str, str], bool | None] | None = None
) -> bool | None:
    """True/False when the gold names an option, None when it names none (an unparseable gold)."""
    gold_letter = resolve_letter(gold, choices)
    if gold_letter is None:
        return None
    if choices and ord(gold_letter) - ord("A") >= len(choices):
        return None
    return resolve_letter(pred, choices, same) == gold_letter
