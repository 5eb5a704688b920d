"""The number a LaTeX string denotes, computed without eval: the safe stand-in for MATH-V's
`eval(str(latex2sympy(s)))` (run there with `from math import *` in scope).

We parse with latex2sympy2_extended (it builds the expression tree directly) and evaluate with sympy's
evalf, and we refuse exactly what the official eval would fail on: free symbols (other than `e`, which
`math.e` supplies), functions whose printed name is not in Python's math module (Abs, binomial, ceiling,
...), relations, sets, tuples, complex and infinite values. Integers stay ints (the official code formats
tuple entries with `str(round(x, 2))`, so `1` and `1.0` differ there).
"""

from __future__ import annotations

import math
import re
from functools import lru_cache

from phaserl.eval.scorers._bounded import run_bounded, too_big_to_evaluate

# What the official parser (latex2sympy2, whose grammar has no end-of-input rule) does before parsing, and
# what it rejects that latex2sympy2_extended would accept.
_PRE_SPACE = ("$", "\\displaystyle", "\\qquad", "\\quad", "~", "\\,")
_PRE_REPLACE = (("\\dfrac", "\\frac"), ("\\tfrac", "\\frac"), ("\\left(", "("), ("\\right)", ")"))
_REJECT = ("\\circ", "%", ",")  # degrees and % are not in its grammar; `1,000` parses there as a list
_INT_RE = re.compile(r"[+-]?\d+")
_DECIMAL_RE = re.compile(r"[+-]?(?:\d+\.\d*|\.\d+)")
_COMMAND_RE = re.compile(r"\\[A-Za-z]+")
_FREE_LETTER_RE = re.compile(r"[A-DF-Za-df-z]")  # any letter but e (math.e) names an unknown symbol
MAX_CHARS = 300  # longer "numbers" are prose; parsing them costs time and never matches a gold value
TIME_LIMIT_S = 2.0
_MATH_NAMES = frozenset(dir(math))


def _parse(text: str):
    from latex2sympy2_extended.latex2sympy2 import ConversionConfig, latex2sympy

    # The official latex2sympy2 reads `2\frac{1}{2}` as a product, not a mixed number.
    return latex2sympy(
        text,
        normalization_config=None,
        conversion_config=ConversionConfig(interpret_as_mixed_fractions=False),
    )


def _math_module_can_print(expr) -> bool:
    """True when str(expr) would evaluate under `from math import *` (no unknown names)."""
    import sympy

    if expr.free_symbols - {sympy.Symbol("e")}:
        return False
    return all(type(f).__name__ in _MATH_NAMES for f in expr.atoms(sympy.Function))


def _evaluate(text: str) -> int | float | None:
    import sympy

    expr = _parse(text)
    if not isinstance(expr, sympy.Expr) or isinstance(expr, sympy.Tuple) or not _math_module_can_print(expr):
        return None
    if too_big_to_evaluate(expr):
        return None
    expr = expr.subs(sympy.Symbol("e"), sympy.E)
    value = sympy.N(expr, 30)
    if not value.is_real:
        return None
    as_float = float(value)
    if not math.isfinite(as_float):
        return None
    if not expr.has(sympy.Float) and expr.is_integer is True and abs(as_float) < 1e15:
        return int(sympy.Integer(round(value)))
    return as_float


def _cut_at_stray_brace(text: str) -> str:
    """The prefix before the first unmatched `}`: the official parser stops there and keeps what it read
    (so `\\frac{11}{2}}.theansweris:\\frac{11}{2` is 11/2 officially)."""
    depth = 0
    for i, ch in enumerate(text):
        depth += (ch == "{") - (ch == "}")
        if depth < 0:
            return text[:i]
    return text


def official_form(text: str) -> str | None:
    """`text` as the official parser would see it, or None when that parser rejects it."""
    text = _cut_at_stray_brace(text)
    for token in _PRE_SPACE:
        text = text.replace(token, " ")
    for old, new in _PRE_REPLACE:
        text = text.replace(old, new)
    if any(token in text for token in _REJECT):
        return None
    return text.strip() or None


def _fast_value(text: str) -> tuple[bool, int | float | None]:
    """(decided, value) for the common shapes, skipping the parser (slow, and not needed for them)."""
    if _INT_RE.fullmatch(text):
        return True, int(text)
    if _DECIMAL_RE.fullmatch(text):
        return True, float(text)
    if _FREE_LETTER_RE.search(_COMMAND_RE.sub(" ", text)):  # e.g. prose run together: a product of symbols
        return True, None
    return False, None


@lru_cache(maxsize=8192)
def latex_value(text: str) -> int | float | None:
    """The real number `text` denotes, or None when it denotes none (or takes too long to tell)."""
    if len(text) > MAX_CHARS:
        return None
    form = official_form(text)
    if form is None:
        return None
    decided, value = _fast_value(form)
    if decided:
        return value
    return run_bounded(lambda: _evaluate(form), TIME_LIMIT_S, None)
