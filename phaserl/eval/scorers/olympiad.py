"""OlympiadBench's rule-based judge (the official `MathJudger`), re-implemented without eval.

Extraction: every \\boxed{} content, joined by commas; without a box, the $...$ spans of the last line;
else the whole text. Both sides then lose `\\left`/`\\right`, `$`, degrees, `%`, primes become `'`,
`\\approx`/`\\sim` become `=`, `\\mathrm{x}`/`\\mathbf{x}` become x, and a leading `... \\in ` is dropped.

Judgement: identical strings match; else both split on top-level commas (only ( and [ nest, as
officially), `\\pm` expands into + and -, and the two lists must match as a multiset, element by element:
string equality; intervals (same brackets, `\\cup` pieces, end points equal as expressions); numbers
within the item's absolute tolerance (`error`, default 1e-8, times 1.01), also accepting gold x 100 and
gold / 100; expressions (after any `lhs =`): structurally equal, or numerically within the tolerance when
both are constants, or symbolically equal through the rewards' bounded verifier; equations: lhs - rhs of one
is a nonzero constant multiple of the other's.

Model output is parsed with latex2sympy2_extended (a grammar, no eval) inside `run_bounded`; the
symbolic expression check runs in the rewards' killable verifier pool; the equation check evaluates at
random points instead of calling simplify, so no step can run away.
"""

from __future__ import annotations

import random
import re

from phaserl.data.schema import Example
from phaserl.eval.scorers._bounded import run_bounded, too_big_to_evaluate
from phaserl.eval.scorers.base import PerItemJudge
from phaserl.rewards.extract import boxed_spans

DEFAULT_TOLERANCE = 1e-8
MAX_CHARS = 500
TIME_LIMIT_S = 3.0
_SPECIAL = (("\\left", ""), ("\\right", ""), ("∶", ":"), ("，", ","), ("$", ""), ("\\approx", "="),
            ("\\simeq", "="), ("\\sim", "="), ("^\\prime", "'"), ("^{\\prime}", "'"), ("^\\circ", ""), ("%", ""))
_STRIP_CHARS = "\n$,.:;^_=+`!@#$%^&*~，。"
_FONT_RE = re.compile(r"\\(?:mathrm|mathbf)\{~?([^}]*)\}")
_DOLLAR_RE = re.compile(r"\$(.*?)\$")
_CJK_RE = re.compile(r"[\u4e00-\u9fff]+")


def extract(text: str) -> str:
    """All boxed answers joined by commas; else the $...$ spans of the last line; else the text."""
    spans = boxed_spans(text)
    if spans:
        return ",".join(text[s:e] for s, e in spans) + ","
    last_line = text.strip().split("\n")[-1]
    found = _DOLLAR_RE.findall(last_line)
    return "".join(f"{a}," for a in found) if found else text


def clean(expr: str) -> str:
    """The official special-symbol replacement applied to an extracted answer."""
    if "\\in " in expr:
        expr = expr.split("\\in ")[1]
    for old, new in _SPECIAL:
        expr = expr.replace(old, new)
    expr = expr.strip(_STRIP_CHARS)
    return _FONT_RE.sub(r"\1", expr)


def split_top_level(expr: str) -> list[str]:
    """Split on commas outside ( ) and [ ] (braces do not nest here, as in the official judge)."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(expr):
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(expr[start:i].strip())
            start = i + 1
    if start < len(expr):
        parts.append(expr[start:].strip())
    return parts


def expand_pm(items: list[str]) -> list[str]:
    out = []
    for item in items:
        out.extend([item.replace("\\pm", "+"), item.replace("\\pm", "-")] if "\\pm" in item else [item])
    return out


def _parse(text: str):
    from latex2sympy2_extended import latex2sympy

    return latex2sympy(text)


def numeric_equal(gold: str, pred: str, tolerance: float) -> bool:
    """Plain numbers only (Python float() reads them; LaTeX goes to the expression check)."""
    try:
        ref, val = float(gold), float(pred)
    except ValueError:
        return False
    return any(abs(g - val) <= tolerance * 1.01 for g in (ref / 100, ref, ref * 100))


def _constant_close(a, b, tolerance: float) -> bool:
    if too_big_to_evaluate(a) or too_big_to_evaluate(b):
        return False
    diff = complex((a - b).evalf())
    return abs(diff) <= tolerance * 1.01


def expression_equal(gold: str, pred: str, tolerance: float, verifier=None) -> bool:
    """Equal as expressions: the part after any `=`, parsed; constants within tolerance; else symbolic."""
    gold, pred = (s.split("=")[1].strip() if "=" in s else s.strip() for s in (gold, pred))
    if not gold or not pred or len(gold) > MAX_CHARS or len(pred) > MAX_CHARS:
        return False

    def local() -> bool | None:
        a, b = _parse(gold), _parse(pred)
        if a == b:
            return True
        a_free, b_free = bool(getattr(a, "free_symbols", None)), bool(getattr(b, "free_symbols", None))
        if a_free != b_free:
            return False
        if not a_free:
            return _constant_close(a, b, tolerance)
        return None  # symbolic: decided by the bounded verifier below

    verdict = run_bounded(local, TIME_LIMIT_S, False)
    if verdict is not None:
        return verdict
    from phaserl.rewards.verify import get_verifier

    return bool((verifier or get_verifier()).check(gold, pred, answer_type="math"))


def _side_difference(equation: str):
    lhs, rhs = equation.split("=")
    return _parse(lhs) - _parse(rhs)


def equation_equal(gold: str, pred: str, points: int = 5, seed: int = 0) -> bool:
    """Both `lhs = rhs` with lhs - rhs of one a nonzero constant multiple of the other's, checked at random
    points (a polynomial identity test; no simplify, so it cannot run away)."""
    if gold.count("=") != 1 or pred.count("=") != 1 or max(len(gold), len(pred)) > MAX_CHARS:
        return False

    def check() -> bool:
        f, g = _side_difference(gold), _side_difference(pred)
        if too_big_to_evaluate(f) or too_big_to_evaluate(g):
            return False
        symbols = sorted(f.free_symbols | g.free_symbols, key=str)
        rng = random.Random(seed)
        ratios = []
        for _ in range(points):
            at = {s: rng.uniform(0.5, 2.5) for s in symbols}
            fv, gv = complex(f.evalf(subs=at)), complex(g.evalf(subs=at))
            if abs(gv) < 1e-12:
                return False
            ratios.append(fv / gv)
        first = ratios[0]
        return abs(first) > 1e-9 and all(abs(r - first) <= 1e-6 * max(1.0, abs(first)) for r in ratios)

    return run_bounded(check, TIME_LIMIT_S, False)


def _is_interval(expr: str) -> bool:
    return expr.startswith(("(", "[")) and expr.endswith((")", "]"))


def interval_equal(gold: str, pred: str, tolerance: float, verifier=None) -> bool:
    if gold == pred:
        return True
    pieces_g, pieces_p = gold.split("\\cup"), pred.split("\\cup")
    if len(pieces_g) != len(pieces_p):
        return False
    for a, b in zip(pieces_g, pieces_p):
        a, b = a.strip(), b.strip()
        if not a or not b or a[0] != b[0] or a[-1] != b[-1]:
            return False
        ends_a, ends_b = a.strip("[]()").split(","), b.strip("[]()").split(",")
        if len(ends_a) != len(ends_b):
            return False
        if not all(expression_equal(x, y, tolerance, verifier) for x, y in zip(ends_a, ends_b)):
            return False
    return True


def element_equal(gold: str, pred: str, tolerance: float, verifier=None) -> bool:
    if gold == pred and gold:
        return True
    if _is_interval(gold) and _is_interval(pred):
        return interval_equal(gold, pred, tolerance, verifier)
    if numeric_equal(gold, pred, tolerance):
        return True
    if not ("=" in gold and "=" in pred) and expression_equal(gold, pred, tolerance, verifier):
        return True
    return equation_equal(gold, pred)


def judge_answers(gold: str, pred: str, tolerances: list[float] | None = None, verifier=None) -> bool:
    """The official judge on two already-extracted, cleaned answers."""
    if gold == pred:
        return True
    gold_items = expand_pm(split_top_level(_CJK_RE.sub("", gold)))
    pred_items = expand_pm(split_top_level(_CJK_RE.sub("", pred)))
    if len(gold_items) != len(pred_items):
        return False
    tols = list(tolerances or [DEFAULT_TOLERANCE])
    if len(tols) < len(gold_items):
        tols = tols[:1] * len(gold_items)
    remaining = list(pred_items)
    for item, tol in zip(gold_items, tols):
        match = next((i for i, p in enumerate(remaining) if element_equal(item, p, tol, verifier)), None)
        if match is None:
            return False
        remaining.pop(match)
    return True


class OlympiadScorer(PerItemJudge):
    name = "olympiadbench_judge"
    version = "OlympiadBench MathJudger rules, re-implemented (phaserl 1)"

    def __init__(self, verifier=None):
        self._verifier = verifier

    def extract(self, response: str, example: Example) -> str | None:
        return clean(extract(response))

    def judge(self, extraction: str | None, example: Example) -> bool:
        if not extraction or example.answer is None:
            return False
        gold = clean(extract(str(example.answer)))
        tolerances = example.meta.get("error") or ([example.tolerance] if example.tolerance else None)
        return judge_answers(gold, extraction, tolerances, self._verifier)
