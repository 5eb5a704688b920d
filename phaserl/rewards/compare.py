"""Is a predicted answer the gold answer? Dispatch on the answer type; symbolic work goes to math-verify.

This module runs inside the verifier's worker processes (verify.py), which bound its time and memory
from outside: nothing here has a timeout of its own, and math-verify's signal-based timeouts are off.
Untrusted text is never evaluated: math-verify parses LaTeX with a grammar (latex2sympy2) and hands
sympy's `parse_expr` only runs of digits and arithmetic signs, which cannot name anything.

Answers listed with commas ("69, 84", "x = \\pm 2") match as a multiset, element by element, and an
example's absolute tolerance is applied the way OlympiadBench's official judge applies its `error` field
(1.01 x the tolerance, also between constants written as expressions); docs/scorers.md lists the rules and
where the verifier departs from that judge on purpose.

Returns: True / False, or None when undecidable (the gold cannot be parsed, or the input is degenerate).
"""

from __future__ import annotations

import logging
import math
import re
from itertools import product

from phaserl.rewards.choice import choice_equal, is_bare_letter, normalize_option, resolve_letter
from phaserl.rewards.extract import boxed_group
from phaserl.rewards.numbers import last_number, numbers_equal, parse_number

_MAX_OPTION_MATH = 300  # a prediction longer than this is not compared symbolically with each option
_MAX_DEPTH = 200  # brace nesting no real answer reaches; deeper input is undecidable, not worth a worker
_DELIMITED_RE = re.compile(r"\$|\\\(|\\\[|\\boxed|\\fbox")
_PROSE_WORD_RE = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{2,}")
_TEXT_GROUP_RE = re.compile(r"\\(?:text|mbox|mathrm|textbf|operatorname)\s*\{[^{}]*\}")
_SPACE_RE = re.compile(r"\s+")
_SPACE_NEAR_SIGN_RE = re.compile(r"\s*([^\w\s])\s*")
_THOUSANDS_RE = re.compile(r"\s*[+-]?[0-9]{1,3}(?:,[0-9]{3})+(?:\.[0-9]+)?\s*")
_MAX_LIST = 16  # answers in a list matched element by element
TOLERANCE_SLACK = (
    1.01  # OlympiadBench's judge accepts |gold - pred| <= 1.01 x tolerance (absorbs 1e34's rounding)
)


class Undecidable(Exception):
    """The comparison cannot be decided (memory or recursion exhausted inside math-verify)."""


def gold_text(gold: str) -> str:
    """The gold answer itself: when the gold is a worked solution, its boxed answer (extracted like a pred's)."""
    group = boxed_group(gold)
    return group[1] if group is not None and group[1] else gold.strip()


def too_deep(text: str, limit: int = _MAX_DEPTH) -> bool:
    depth = 0
    for ch in text:
        if ch in "{([":
            depth += 1
            if depth > limit:
                return True
        elif ch in "})]":
            depth -= 1
    return False


def resolve_type(gold: str, answer_type: str, choices: list[str] | None) -> str:
    """`auto` becomes choice (gold names an option, or is a lone capital), number, or math."""
    if answer_type != "auto":
        return answer_type
    if choices and resolve_letter(gold, choices) is not None:
        return "choice"
    if is_bare_letter(gold):  # "C", "(C)", "\\text{C}": an option letter even without the options
        return "choice"
    if parse_number(gold) is not None:
        return "number"
    return "math"


def _latex_key(text: str) -> str:
    """A cheap normal form: identical keys are certainly equal, so math-verify can be skipped."""
    s = text.strip().strip("$").strip().rstrip(".")
    s = (
        s.replace("\\left", "")
        .replace("\\right", "")
        .replace("\\dfrac", "\\frac")
        .replace("\\tfrac", "\\frac")
    )
    s = _SPACE_NEAR_SIGN_RE.sub(r"\1", s)  # "x + 1" is "x+1", but "3 4" is not "34"
    return _SPACE_RE.sub(" ", s)


def _looks_like_prose(text: str) -> bool:
    """Several ordinary words outside \\text{}: let math-verify search the sentence instead of parsing it."""
    return len(_PROSE_WORD_RE.findall(_TEXT_GROUP_RE.sub(" ", text))) >= 2


def _wordy(text: str) -> bool:
    """Too long or too prose-like to be an option's math: not worth a symbolic check per option."""
    return len(text) > _MAX_OPTION_MATH or _looks_like_prose(text)


def _mv_parse(text: str) -> list:
    """math-verify's parse of an answer; a bare answer is wrapped in $...$ so LaTeX without delimiters parses."""
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse

    configs = [LatexExtractionConfig(), ExprExtractionConfig()]
    if _DELIMITED_RE.search(text):
        attempts = [text]
    elif _looks_like_prose(text):
        attempts = [text, f"${text}$"]
    else:
        attempts = [f"${text}$", text]
    for attempt in attempts:
        try:
            parsed = parse(attempt, extraction_config=configs, parsing_timeout=None, raise_on_error=True)
        except (MemoryError, RecursionError) as err:
            raise Undecidable(type(err).__name__) from err
        except Exception:  # a parse failure of untrusted text is just "no parse"
            parsed = []
        if parsed:
            return parsed
    return []


def split_answers(text: str) -> list[str]:
    """Top-level comma-separated answers; (), [] and {} nest (so tuples, intervals and sets stay whole),
    and `\\pm` makes two answers of one item, as in OlympiadBench's judge."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    parts.append(text[start:].strip())
    return expand_pm(parts)


def expand_pm(items: list[str]) -> list[str]:
    """`a \\pm b` is two answers, `a + b` and `a - b` (every \\pm in an item flips together)."""
    out = []
    for item in items:
        out.extend([item.replace("\\pm", "+"), item.replace("\\pm", "-")] if "\\pm" in item else [item])
    return out


def _constants_close(gold_parsed: list, pred_parsed: list, tolerance: float) -> bool:
    """Both sides constants (no free symbols) within the absolute tolerance: 0.6054 is cos^10(pi/10) at 1e-4."""
    import sympy

    g = next((x for x in gold_parsed if isinstance(x, sympy.Expr)), None)
    p = next((x for x in pred_parsed if isinstance(x, sympy.Expr)), None)
    if g is None or p is None or g.free_symbols or p.free_symbols:
        return False
    try:
        return bool(abs(complex((g - p).evalf())) <= tolerance)
    except (TypeError, ValueError, ArithmeticError):
        return False


def _rounding(tolerance: float | None) -> int:
    """math-verify rounds floats to this many decimals; an absolute tolerance t means about -log10(2t)."""
    if tolerance is None or tolerance <= 0:
        return 6
    return max(0, min(12, round(-math.log10(2 * tolerance))))


def _mv_verify(gold: list, pred: list, float_rounding: int) -> bool:
    from math_verify import verify

    undecided = False
    for g, p in product(gold, pred):
        try:
            if verify(
                g,
                p,
                float_rounding=float_rounding,
                strict=True,
                allow_set_relation_comp=True,
                timeout_seconds=None,
                raise_on_error=True,
            ):
                return True
        except (MemoryError, RecursionError):
            undecided = True
        except Exception:  # this pair is incomparable; other readings may still match
            continue
    if undecided:
        raise Undecidable("comparison exhausted memory or recursion")
    return False


def _math_verdict(gold: str, pred: str, tolerance: float | None) -> tuple[bool | None, bool]:
    """(verdict, whether pred had a mathematical reading) from math-verify."""
    if _latex_key(gold) and _latex_key(gold) == _latex_key(pred):
        return True, True
    gold_parsed = _mv_parse(gold)
    if all(isinstance(g, str) for g in gold_parsed):
        return None, False  # the gold has no mathematical reading: undecidable, never a silent 1.0
    pred_parsed = _mv_parse(pred) if pred.strip() else []
    if not pred_parsed:
        return False, False
    has_math = any(not isinstance(p, str) for p in pred_parsed)
    if tolerance is not None and _constants_close(gold_parsed, pred_parsed, tolerance):
        return True, True
    return _mv_verify(gold_parsed, pred_parsed, _rounding(tolerance)), has_math


def math_equal(gold: str, pred: str, tolerance: float | None = None) -> bool | None:
    """Symbolic equality (LaTeX, fractions, radicals, intervals, sets, tuples, equations, matrices)."""
    return _math_verdict(gold, pred, tolerance)[0]


def number_equal(
    gold: str, pred: str, tolerance: float | None = None, rel_tolerance: float | None = None
) -> bool | None:
    """Numeric equality. A prediction that is a statement rather than a value ("3 + 4 = 7", "It is 7
    apples") falls back to its last number; an expression such as \\frac{1+\\sqrt{5}}{2} does not.
    """
    g = parse_number(gold)
    if g is None:
        return math_equal(gold, pred, tolerance)
    p = parse_number(pred)
    if p is not None:
        return numbers_equal(g, p, tolerance, rel_tolerance)
    if not pred.strip():
        return False
    statement = "=" in pred or _looks_like_prose(pred)
    if statement:  # the cheap reading first: most statements end with their value
        p = last_number(pred)
        if p is not None and numbers_equal(g, p, tolerance, rel_tolerance):
            return True
    verdict, pred_is_math = _math_verdict(gold, pred, tolerance)
    if verdict or statement or pred_is_math:
        return bool(verdict)
    p = last_number(pred)  # no mathematical reading at all ("it's 7!!"): its last number
    return p is not None and numbers_equal(g, p, tolerance, rel_tolerance)


def _scalar_equal(gold: str, pred: str, tolerance: float | None, rel_tolerance: float | None) -> bool:
    if parse_number(gold) is not None:
        return bool(number_equal(gold, pred, tolerance, rel_tolerance))
    return bool(math_equal(gold, pred, tolerance))


def _undelimited(text: str) -> str | None:
    """The text inside one pair of outer math delimiters ($...$, \\(...\\), \\[...\\]); None if more remain."""
    s = text.strip()
    for left, right in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if s.startswith(left) and s.endswith(right) and len(s) >= len(left) + len(right):
            s = s[len(left) : len(s) - len(right)].strip()
            break
    return None if _DELIMITED_RE.search(s) else s


def list_equal(
    gold: str, pred: str, tolerance: float | None = None, rel_tolerance: float | None = None
) -> bool | None:
    """Comma-separated answers matched as a multiset (OlympiadBench's rule); None unless both are lists.

    Pairing is greedy in the official judge's order (gold answers 1st, 3rd, 2nd, ...), each with the first
    equal prediction left. A number with thousands separators (1,000) is one answer, not two. decide()
    only takes a True from here: two lists that do not pair off may still be the same set, or the same
    decimal-comma number, for the whole-text comparison.
    """
    gold, pred = _undelimited(gold), _undelimited(pred)
    if gold is None or pred is None or _THOUSANDS_RE.fullmatch(gold) or _THOUSANDS_RE.fullmatch(pred):
        return None
    gold_items, pred_items = split_answers(gold), split_answers(pred)
    if len(gold_items) < 2 or len(pred_items) < 2 or not all(gold_items) or not all(pred_items):
        return None
    if max(len(gold_items), len(pred_items)) > _MAX_LIST:
        return None  # up to n^2 element checks: a long list is left to math-verify's set comparison
    if len(gold_items) != len(pred_items):
        return False
    cursor = -1
    while gold_items:
        cursor = (cursor + 1) % len(gold_items)
        item = gold_items.pop(cursor)
        match = next(
            (i for i, p in enumerate(pred_items) if _scalar_equal(item, p, tolerance, rel_tolerance)), None
        )
        if match is None:
            return False
        pred_items.pop(match)  # the cursor then moves past the answer that slid into its place, as officially
    return True


def string_equal(gold: str, pred: str) -> bool | None:
    want = normalize_option(gold)
    if not want:
        return None
    return normalize_option(pred) == want


def decide(
    gold: str,
    pred: str,
    answer_type: str = "auto",
    choices: list[str] | None = None,
    tolerance: float | None = None,
    rel_tolerance: float | None = None,
) -> bool | None:
    """The verdict for one (gold, already-extracted pred) pair; None when undecidable."""
    gold = gold_text(gold)
    if not gold or too_deep(gold):
        return None
    if too_deep(pred):
        return None
    kind = resolve_type(gold, answer_type, choices)
    try:
        if kind == "choice":
            return choice_equal(gold, pred, choices, same=None if _wordy(pred) else math_equal)
        if tolerance is not None:
            tolerance *= TOLERANCE_SLACK
        if kind in ("number", "math") and list_equal(gold, pred, tolerance, rel_tolerance):
            return True
        if kind == "number":
            return number_equal(gold, pred, tolerance, rel_tolerance)
        if kind == "string":
            return string_equal(gold, pred)
        if kind == "math":
            g, p = parse_number(gold), parse_number(pred)
            if g is not None and p is not None:
                return numbers_equal(g, p, tolerance, rel_tolerance)
            return math_equal(gold, pred, tolerance)
    except Undecidable:
        return None
    raise ValueError(f"answer_type {kind!r} is not one of auto|math|number|choice|string")


def quiet_math_verify() -> None:
    """math-verify warns once that its timeout is off; that is deliberate here (the pool bounds time)."""
    for name in ("math_verify", "math_verify.parser", "math_verify.grader", "latex2sympy2_extended"):
        logging.getLogger(name).setLevel(logging.ERROR)
