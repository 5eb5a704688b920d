"""OlympiadBench's judge, step 2: is one predicted answer equal to one gold answer (strings, intervals,
numbers, expressions, equations). The rules and the deliberate differences: phaserl/eval/scorers/olympiad.py."""

from __future__ import annotations

import random
import re

from phaserl.eval.scorers._bounded import run_bounded, too_big_to_evaluate

DEFAULT_TOLERANCE = 1e-8
SLACK = 1.01  # the official judge accepts |a - b| <= tolerance * 1.01
SYMBOLIC_ZERO = 1e-3  # a symbolic difference that simplifies to a constant below this is zero, officially
MAX_CHARS = 500
TIME_LIMIT_S = 3.0
MAX_POWER_EXPONENT = 1000  # the official can_compute_power threshold on a top-level power
_CIRC_RE = re.compile(r"\\circ(?![A-Za-z])")
# Commands sympy's parse_latex reads as plain symbols but latex2sympy2_extended rejects (R_\odot, M_\oplus).
_SYMBOL_COMMAND_RE = re.compile(
    r"\\(odot|oplus|otimes|star|ast|bullet|dagger|ddagger|diamond|natural|flat|sharp)(?![A-Za-z])"
)


class _Unparsable(Exception):
    """An end point or expression the LaTeX parser cannot read as a scalar expression."""


def _parse(text: str):
    """A scalar sympy expression or an inequality (what sympy's parse_latex reads), else _Unparsable:
    sets, tuples, intervals and matrices included."""
    import sympy

    if not text.strip() or len(text) > MAX_CHARS:
        raise _Unparsable(text[:40])
    try:
        expr = _latex_to_sympy(text)
    except Exception:
        named = _SYMBOL_COMMAND_RE.sub(r"\\text{\1}", text)
        if named == text:
            raise _Unparsable(text[:40]) from None
        try:
            expr = _latex_to_sympy(named)
        except Exception as err:  # a parser error on untrusted text is "cannot read", never a crash
            raise _Unparsable(text[:40]) from err
    if not isinstance(expr, (sympy.Expr, sympy.core.relational.Relational)):
        raise _Unparsable(text[:40])
    return _unknown_functions_as_symbols(expr)


def _unknown_functions_as_symbols(expr):
    """f(x) of an unnamed f becomes one symbol, so that evaluating at random points can proceed (sympy's
    simplify, which the official calls, treats it as an opaque value too)."""
    from sympy import Symbol
    from sympy.core.function import AppliedUndef

    applied = expr.atoms(AppliedUndef)
    return expr.xreplace({a: Symbol(f"_{a}") for a in applied}) if applied else expr


def _latex_to_sympy(text: str):
    """latex2sympy2_extended set to read like sympy's parse_latex: case-sensitive (N is not n), no box
    unwrapping, and `\\circ` a plain symbol (30^{\\circ} is 30 to the power circ there, not 30 degrees)."""
    from latex2sympy2_extended import latex2sympy
    from latex2sympy2_extended.latex2sympy2 import ConversionConfig
    from latex2sympy2_extended.math_normalization import NormalizationConfig

    return latex2sympy(
        _CIRC_RE.sub(r"\\text{circ}", text),
        normalization_config=NormalizationConfig(boxed="none"),
        conversion_config=ConversionConfig(lowercase_symbols=False),
    )


def numeric_equal(gold: str, pred: str, tolerance: float) -> bool:
    """Both read by Python's float(); pred within 1.01 x tolerance of gold, gold / 100 or gold x 100."""
    try:
        ref, val = float(gold), float(pred)
    except ValueError:
        return False
    return any(abs(g - val) <= tolerance * SLACK for g in (ref / 100, ref, ref * 100))


def _right_of_equals(text: str) -> str:
    """The answer part of `x = 5` (between the first and a second `=`, as officially)."""
    return (text.split("=")[1] if "=" in text else text).strip()


def _computable(expr) -> bool:
    """The official top-level power guard, plus the size guard on every node."""
    import sympy

    if isinstance(expr, sympy.Pow):
        base, exp = expr.as_base_exp()
        if not (base.is_number and exp.is_number) or abs(complex(exp.evalf())) > MAX_POWER_EXPONENT:
            return False
    return not too_big_to_evaluate(expr)


def _random_point(symbols: list, rng: random.Random) -> dict:
    """Values in [0.5, 2.5] for the symbols, as sympy Floats (evalf of floor() fails on Python floats)."""
    from sympy import Float

    return {s: Float(rng.uniform(0.5, 2.5)) for s in symbols}


def _too_big_constant_part(expr) -> bool:
    """The size guard on the parts without symbols, the only ones evaluated exactly: at random points a
    symbolic exp(-h nu / (k T)) is a float computation, but x + 9^{9^{9^{9}}} still holds an exact tower."""
    import sympy

    kinds = (sympy.Pow, sympy.exp, sympy.factorial, sympy.gamma)
    return any(
        isinstance(node, kinds) and not node.free_symbols and too_big_to_evaluate(node)
        for node in sympy.preorder_traversal(expr)
    )


def _vanishes(diff, points: int = 5, seed: int = 0) -> bool:
    """A symbolic difference that is zero: below SYMBOLIC_ZERO at random points (stands for simplify)."""
    if _too_big_constant_part(diff):
        return False
    symbols = sorted(diff.free_symbols, key=str)
    rng = random.Random(seed)
    for _ in range(points):
        value = complex(diff.evalf(subs=_random_point(symbols, rng)))
        if not abs(value) < SYMBOLIC_ZERO:  # nan fails too
            return False
    return True


def _expression_verdict(gold: str, pred: str, tolerance: float) -> bool:
    """The official expression comparison; raises _Unparsable when either side cannot be read."""
    a, b = _parse(_right_of_equals(gold)), _parse(_right_of_equals(pred))
    if a == b:
        return True
    a_free, b_free = bool(a.free_symbols), bool(b.free_symbols)
    if a_free != b_free:
        return False
    try:
        if not a_free:
            if not (_computable(a) and _computable(b)):
                return False
            return bool(abs(complex((a - b).evalf())) <= tolerance * SLACK)
        return _vanishes(a - b)
    except (TypeError, ValueError, ArithmeticError):
        return False


def expression_equal(gold: str, pred: str, tolerance: float = DEFAULT_TOLERANCE) -> bool:
    """Equal as expressions (the part after any `=`); unparsable means unequal."""

    def run() -> bool:
        try:
            return _expression_verdict(gold, pred, tolerance)
        except _Unparsable:
            return False

    return run_bounded(run, TIME_LIMIT_S, False)


def _side_difference(equation: str):
    lhs, rhs = equation.split("=")
    return _parse(lhs) - _parse(rhs)


def _is_integer_ratio(ratios: list[complex]) -> bool:
    """All ratios the same nonzero integer (the official test is `is_Integer and != 0`)."""
    first = ratios[0]
    if not all(abs(r - first) <= 1e-6 * max(1.0, abs(first)) for r in ratios):
        return False
    return abs(first.imag) < 1e-9 and round(first.real) != 0 and abs(first.real - round(first.real)) < 1e-6


def equation_equal(gold: str, pred: str, points: int = 5, seed: int = 0) -> bool:
    """Both exactly one `=`; (lhs - rhs) of one is a nonzero integer multiple of the other's, either way round.

    The official divides the simplified differences and asks sympy whether the quotient is an Integer; here
    the quotient is evaluated at random points (a polynomial identity test: no simplify, nothing runs away).
    """
    if gold.count("=") != 1 or pred.count("=") != 1 or max(len(gold), len(pred)) > MAX_CHARS:
        return False

    def check() -> bool:
        f, g = _side_difference(gold), _side_difference(pred)
        if f != 0 and (f == g or f == -g):
            return True  # the quotient is 1 or -1 without evaluating anything
        if _too_big_constant_part(f) or _too_big_constant_part(g):
            return False
        symbols = sorted(f.free_symbols | g.free_symbols, key=str)
        rng = random.Random(seed)
        ratios = []
        for _ in range(points):
            at = _random_point(symbols, rng)
            fv, gv = complex(f.evalf(subs=at)), complex(g.evalf(subs=at))
            if abs(gv) < 1e-12 or abs(fv) < 1e-12:
                return False  # an identity such as x = x: the official quotient is nan or 0
            ratios.append(fv / gv)
        return _is_integer_ratio(ratios) or _is_integer_ratio([1 / r for r in ratios])

    return run_bounded(check, TIME_LIMIT_S, False)


def is_interval(expr: str) -> bool:
    return expr.startswith(("(", "[")) and expr.endswith((")", "]"))


def interval_equal(gold: str, pred: str, tolerance: float = DEFAULT_TOLERANCE) -> bool | None:
    """Same number of `\\cup` pieces; per piece the same brackets and end points equal as expressions.

    Official details kept: pieces are not stripped (spacing around \\cup must agree), end points split on
    every comma and are paired with zip (a shorter side compares only its own end points). None when an end
    point cannot be parsed, which the official judge turns into "unequal" with no further check.
    """
    if gold == pred:
        return True
    pieces_g, pieces_p = gold.split("\\cup"), pred.split("\\cup")
    if len(pieces_g) != len(pieces_p):
        return False

    def run() -> bool | None:
        for a, b in zip(pieces_g, pieces_p):
            if not a or not b:
                return None  # the official indexing a[0] raises
            if a[0] != b[0] or a[-1] != b[-1]:
                return False
            ends_a, ends_b = a.strip("[]()").split(","), b.strip("[]()").split(",")
            try:
                if not all(_expression_verdict(x, y, tolerance) for x, y in zip(ends_a, ends_b)):
                    return False
            except _Unparsable:
                return None
        return True

    return run_bounded(run, TIME_LIMIT_S, None)


def element_equal(gold: str, pred: str, tolerance: float = DEFAULT_TOLERANCE) -> bool:
    """The official per-answer check: string, interval, number, expression, equation, in that order."""
    if gold == pred and gold:
        return True
    if is_interval(gold) and is_interval(pred):
        verdict = interval_equal(gold, pred, tolerance)
        if verdict is None:
            return False
        if verdict:
            return True
    if numeric_equal(gold, pred, tolerance):
        return True
    if not ("=" in gold and "=" in pred) and expression_equal(gold, pred, tolerance):
        return True
    return equation_equal(gold, pred)
