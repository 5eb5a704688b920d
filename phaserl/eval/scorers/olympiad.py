"""OlympiadBench's rule-based judge (OpenBMB/OlympiadBench `eval/auto_scoring_judge.py`), rule for rule.

Re-implemented from reading the official code (none of it is copied); tests/eval/test_eval_olympiad_judge.py has
one test per rule with hand-written cases, and docs/scorers.md lists the rules and every difference.

Extraction (`extract`): the official pipeline first keeps what follows the last "So the final answer is"
(to the end of that line), else the whole response. Then every `\\boxed{` content (braces counted raw, a
box never closed makes the whole item wrong) is joined with commas; without a box, the `$...$` spans of the
last line; else the whole text. `clean` then keeps the text after the first `\\in `, applies the special
symbol map (`\\left`/`\\right`/`$` dropped, `\\approx`/`\\simeq`/`\\sim` to `=`, primes to `'`, `^\\circ`
and `%` dropped), strips punctuation at both ends and unwraps `\\mathrm{x}` / `\\mathbf{x}`.

Judgement (`judge_answers`, gold first): identical strings match; else both lose CJK characters, split on
top-level commas (only ( and [ nest), `\\pm` expands into a + and a - copy, and the lists must pair off
greedily in the official order. `element_equal` tries, in order: string equality; intervals (brackets equal,
`\\cup` pieces and end points as expressions; an unparsable end point ends the element as unequal);
numbers that Python's float() reads, within 1.01 x the tolerance of gold, gold / 100 or gold x 100;
expressions (the part after the first `=`, unless both sides are equations): structurally equal, else
constants within 1.01 x the tolerance, else a symbolic difference that vanishes; equations `lhs = rhs`
whose lhs - rhs are an integer multiple (either way round) of each other.

Deliberate differences, all about safety or the parser: LaTeX is parsed with latex2sympy2_extended (the
official sympy `parse_latex` needs an antlr runtime this environment cannot share), results that are neither
scalar expressions nor relations (sets, tuples, intervals, matrices) count as unparsable, as for `parse_latex`;
every step runs under `run_bounded` and the size guard `too_big_to_evaluate`, and `simplify` is replaced by
evaluation at random points, so no item can hang; a tolerance list shorter than the answers is padded with
the default instead of raising IndexError.
"""

from __future__ import annotations

import random
import re

from phaserl.data.schema import Example
from phaserl.eval.scorers._bounded import run_bounded, too_big_to_evaluate
from phaserl.eval.scorers.base import PerItemJudge

DEFAULT_TOLERANCE = 1e-8
SLACK = 1.01  # the official judge accepts |a - b| <= tolerance * 1.01
SYMBOLIC_ZERO = 1e-3  # a symbolic difference that simplifies to a constant below this is zero, officially
MAX_CHARS = 500
TIME_LIMIT_S = 3.0
MAX_POWER_EXPONENT = 1000  # the official can_compute_power threshold on a top-level power
_SPECIAL = (("\\left", ""), ("\\right", ""), ("∶", ":"), ("，", ","), ("$", ""), ("\\approx", "="),
            ("\\simeq", "="), ("\\sim", "="), ("^\\prime", "'"), ("^{\\prime}", "'"), ("^\\circ", ""), ("%", ""))
_STRIP_CHARS = "\n$,.:;^_=+`!@#$%^&*~，。"
_FONT_RE = re.compile(r"\\(?:mathrm|mathbf)\{~?([^}]*)\}")
_DOLLAR_RE = re.compile(r"\$(.*?)\$")
_CJK_RE = re.compile(r"[\u4e00-\u9fff]+")
_FINAL_ANSWER_RE = re.compile(r"So the final answer is (.*)")
_BOX_OPEN = "\\boxed{"
_CIRC_RE = re.compile(r"\\circ(?![A-Za-z])")
# Commands sympy's parse_latex reads as plain symbols but latex2sympy2_extended rejects (R_\odot, M_\oplus).
_SYMBOL_COMMAND_RE = re.compile(r"\\(odot|oplus|otimes|star|ast|bullet|dagger|ddagger|diamond|natural|flat|sharp)(?![A-Za-z])")


class UnclosedBox(ValueError):
    """A `\\boxed{` whose brace never closes: the official judge calls the whole item wrong."""


class _Unparsable(Exception):
    """An end point or expression the LaTeX parser cannot read as a scalar expression."""


# ---- extraction ---------------------------------------------------------------------------------------

def final_answer_text(response: str) -> str:
    """What follows the last "So the final answer is" (the prompt's requested ending), else the response."""
    found = _FINAL_ANSWER_RE.findall(response)
    return found[-1].strip() if found else response


def _boxed_contents(text: str) -> list[str]:
    """Every `\\boxed{...}` content, braces counted raw (an escaped `\\{` counts too, as officially)."""
    contents, start = [], text.find(_BOX_OPEN)
    while start >= 0:
        i, depth = start + len(_BOX_OPEN), 1
        while depth and i < len(text):
            depth += (text[i] == "{") - (text[i] == "}")
            i += 1
        if depth:
            raise UnclosedBox(text[start:start + 40])
        contents.append(text[start + len(_BOX_OPEN):i - 1])
        start = text.find(_BOX_OPEN, start + len(_BOX_OPEN))  # nested boxes are found again, as officially
    return contents


def extract(text: str) -> str:
    """All boxed answers, each followed by a comma; else the $...$ spans of the last line; else the text."""
    boxed = _boxed_contents(text)
    if boxed:
        return "".join(f"{b}," for b in boxed)
    found = _DOLLAR_RE.findall(text.strip().split("\n")[-1])
    return "".join(f"{a}," for a in found) if found else text


def clean(expr: str) -> str:
    """The official special-symbol replacement applied to an extracted answer."""
    if "\\in " in expr:
        expr = expr.split("\\in ")[1]
    for old, new in _SPECIAL:
        expr = expr.replace(old, new)
    expr = expr.strip(_STRIP_CHARS)
    return _FONT_RE.sub(r"\1", expr)


def preprocess(text: str) -> str:
    """extract + clean; raises UnclosedBox like the official preprocessing."""
    return clean(extract(text))


# ---- splitting ----------------------------------------------------------------------------------------

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
    """`a \\pm b` is two answers, `a + b` and `a - b` (every \\pm in an item flips together)."""
    out = []
    for item in items:
        out.extend([item.replace("\\pm", "+"), item.replace("\\pm", "-")] if "\\pm" in item else [item])
    return out


# ---- element comparisons ------------------------------------------------------------------------------

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

    return latex2sympy(_CIRC_RE.sub(r"\\text{circ}", text),
                       normalization_config=NormalizationConfig(boxed="none"),
                       conversion_config=ConversionConfig(lowercase_symbols=False))


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
    return any(isinstance(node, kinds) and not node.free_symbols and too_big_to_evaluate(node)
               for node in sympy.preorder_traversal(expr))


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


def _tolerance_list(tolerances: list[float] | None, n: int) -> list[float]:
    """One tolerance per gold answer: a single value is repeated; a short list is padded with the default."""
    tols = list(tolerances) if tolerances else [DEFAULT_TOLERANCE]
    if len(tols) <= 1:
        tols = tols * n
    return tols + [DEFAULT_TOLERANCE] * (n - len(tols))


def judge_answers(gold: str, pred: str, tolerances: list[float] | None = None) -> bool:
    """The official judge on two preprocessed answers: a multiset match, greedy, in the official order.

    The official loop visits gold answers at a cursor that advances by one after each match (so with
    three answers the order is 1st, 3rd, 2nd), pairs each with the first equal prediction left, and
    removes both (list.remove semantics: the first equal string).
    """
    if gold == pred:
        return True
    gold_items = expand_pm(split_top_level(_CJK_RE.sub("", gold)))
    pred_items = expand_pm(split_top_level(_CJK_RE.sub("", pred)))
    tols = _tolerance_list(tolerances, len(gold_items))
    if len(gold_items) != len(pred_items):
        return False
    cursor = -1
    while gold_items:
        cursor = (cursor + 1) % len(gold_items)
        item, tol = gold_items[cursor], tols[cursor]
        match = next((p for p in pred_items if element_equal(item, p, tol)), None)
        if match is None:
            return False
        gold_items.remove(item)
        pred_items.remove(match)
        tols.remove(tol)
    return True


def judge(gold: str, response: str, tolerances: float | list[float] | None = None) -> bool:
    """The official `judge(ground_truth, model_output, precision)`: preprocess both, then judge_answers.

    `tolerances`: one value for every answer, or one per gold answer (None: the default 1e-8).
    """
    if isinstance(tolerances, (int, float)):
        tolerances = [float(tolerances)]
    try:
        return judge_answers(preprocess(gold), preprocess(response), tolerances)
    except UnclosedBox:
        return False


class OlympiadScorer(PerItemJudge):
    name = "olympiadbench_judge"
    version = "OlympiadBench auto_scoring_judge rules, re-implemented (phaserl 2)"

    def extract(self, response: str, example: Example) -> str | None:
        try:
            return preprocess(final_answer_text(response))
        except UnclosedBox:
            return None  # the official judge calls such an item wrong

    def judge(self, extraction: str | None, example: Example) -> bool:
        if not extraction or example.answer is None:
            return False
        try:
            gold = preprocess(str(example.answer))
        except UnclosedBox:
            return False
        return judge_answers(gold, extraction, item_tolerances(example))


def item_tolerances(example: Example) -> list[float] | None:
    """The item's `error` as the official pipeline passes it: none at all for Tuple items (inference/judge.py
    judges those with the default), else one value or one per answer."""
    if "Tuple" in str(example.meta.get("answer_type") or ""):
        return None
    return example.meta.get("error") or ([example.tolerance] if example.tolerance else None)
