"""phaserl's verifier against the benchmarks' own judges, case by case, beside plain math-verify.

References: MATH's `is_equiv` (re-implemented in tests/math_is_equiv.py, with its own tests) for MATH-style
pairs, and OlympiadBench's official judge (phaserl.eval.scorers.olympiad, tested rule by rule in
test_eval_olympiad_judge.py) with each item's tolerance for OlympiadBench pairs. For every pair three
verdicts are taken: the reference's, plain math-verify's (tests/judge_pairs.py: parse + verify with the
library's defaults) and phaserl's (extract_answer, then the Verifier). phaserl must agree with the reference
at least as often as math-verify does, and every case where phaserl differs from the reference is listed
below with the reason; a change in that set fails the test.

The default tests use hand-written pairs; the slow ones rewrite every gold answer of MATH-500 and of
OlympiadBench (OE_TO_maths_en_COMP) in the ways judge_pairs.py lists, from ../shared/data.
"""

from __future__ import annotations

import pytest
from judge_pairs import (
    SHARED,
    Pair,
    math500_pairs,
    math_reference,
    olympiad_pairs,
    olympiad_reference,
    phaserl_verdicts,
    plain_math_verify,
    respond,
)

from phaserl.rewards.compare import quiet_math_verify
from phaserl.rewards.verify import Verifier

quiet_math_verify()

# Reasons, each used by several cases below.
SAME_NUMBER = (
    "the same number written differently (1.500 is 3/2, 1.250 is 1.25): MATH's is_equiv compares "
    "normalised strings and says no; phaserl compares values"
)
REORDERED = (
    "a list in another order is the same answer: MATH's is_equiv compares strings; OlympiadBench's own "
    "judge and phaserl match lists as multisets"
)
NO_BARE_PERCENT = (
    "OlympiadBench's judge accepts gold x 100 and gold / 100 for any number (60 for 0.6); as a "
    "reward that pays for the wrong magnitude (50 for a probability 0.5), so phaserl accepts the "
    "percentage reading only when a % sign is written (60% for 0.6)"
)
PERCENT_SIGN = (
    "OlympiadBench's judge removes '%' but leaves the backslash of '\\%', so '84\\%' can never "
    "match (its quirk); phaserl reads 84\\% as 84 percent, MATH's is_equiv drops it too"
)
INTEGER_FACTOR = (
    "equations: OlympiadBench's judge needs the quotient of lhs - rhs to be an integer (2x+2y=3 "
    "and 3x+3y=4.5 differ by 3/2); phaserl (math-verify) accepts any nonzero factor: same solutions"
)
ZIP_TUPLES = (
    "OlympiadBench's judge pairs tuple elements with zip, so (1,2,3) matches (1,2); phaserl needs the "
    "whole tuple"
)
SET_NOT_MULTISET = (
    "a repeated answer leaves the set unchanged: phaserl accepts it like math-verify; "
    "OlympiadBench's multiset does not"
)
UNION_SPACING = (
    "OlympiadBench's judge compares union pieces unstripped, so spacing around \\cup decides; "
    "phaserl compares the sets"
)

# ---- hand-written MATH-style pairs (gold, answer the response boxes) ------------------------------------

MATH_CASES = {
    "same": ("\\frac{3}{4}", "\\frac{3}{4}"),
    "dfrac": ("\\frac{3}{4}", "\\dfrac{3}{4}"),
    "frac_shorthand": ("\\frac{3}{4}", "\\frac34"),
    "slash": ("\\frac{3}{4}", "3/4"),
    "half_decimal": ("\\frac{1}{2}", "0.5"),
    "quarter_decimal": ("\\frac{1}{4}", "0.25"),
    "third_rounded": ("\\frac{1}{3}", "0.333"),
    "left_right": ("(1, 2)", "\\left(1,2\\right)"),
    "degrees": ("90^\\circ", "90"),
    "dollars": ("\\$18.90", "18.90"),
    "percent": ("25\\%", "25"),
    "unit": ("12", "12 \\text{ cm}"),
    "k_equals": ("7", "k = 7"),
    "sqrt_shorthand": ("2\\sqrt{3}", "2\\sqrt3"),
    "reordered_roots": ("-2, 5", "5, -2"),
    "sum_order": ("x+1", "1+x"),
    "wrong_number": ("14", "15"),
    "wrong_fraction": ("\\frac{2}{3}", "\\frac{3}{2}"),
    "large_integer_off_by_one": ("3986729", "3986730"),
    "interval": ("[-2, 7]", "[-2,7]"),
    "wrong_interval": ("[-2, 7]", "(-2, 7]"),
    "trailing_zero": ("1.25", "1.250"),
}
DELIBERATE_MATH = {
    "quarter_decimal": SAME_NUMBER,
    "reordered_roots": REORDERED,
    "sum_order": "x+1 and 1+x are the same expression: MATH's is_equiv compares strings",
    "trailing_zero": SAME_NUMBER,
}

# ---- hand-written OlympiadBench pairs (gold, answer the response boxes, tolerance) ----------------------

OLYMPIAD_CASES = {
    "same": ("$\\frac{1}{2}$", "\\frac{1}{2}", None),
    "decimal": ("$\\frac{1}{2}$", "0.5", None),
    "equation_prefix": ("$3$", "n = 3", None),
    "gold_equation": ("$a_{n}=2n+1$", "2n+1", None),
    "reordered": ("$69$, $84$", "84, 69", None),
    "pm": ("$\\sqrt{2}$, $-\\sqrt{2}$", "\\pm \\sqrt{2}", None),
    "tuples_reordered": ("$(2,1),(3,1)$", "(3,1),(2,1)", None),
    "interval_union": ("$(-\\infty,1]\\cup[10,+\\infty)$", "(-\\infty, 1]\\cup[10,+\\infty)", None),
    "union_spacing": ("$(0,1] \\cup [2,3)$", "(0,1]\\cup[2,3)", None),
    "tolerance_in": ("$4.2$", "4.3", 0.1),
    "tolerance_out": ("$4.2$", "4.35", 0.1),
    "tolerance_expression": ("$\\cos^{10}(\\frac{\\pi}{10})$", "0.6054", 1e-4),
    "default_tolerance": ("$\\cos^{10}(\\frac{\\pi}{10})$", "0.6054", None),
    "times_100": ("$0.6$", "60", None),
    "percent_sign": ("$0.6$", "60\\%", None),
    "equation_factor_2": ("$x^2+y^2=1$", "2x^2+2y^2=2", None),
    "equation_factor_3_2": ("$2x+2y=3$", "3x+3y=4.5", None),
    "equation_different": ("$x^2+y^2=1$", "x^2-y^2=1", None),
    "unit_symbol": ("$0.64N$", "\\frac{16}{25}N", None),
    "unit_missing": ("$0.64N$", "0.64", None),
    "degrees_braced": ("$30^{\\circ}$", "30", None),
    "tuple_shorter": ("$(1,2,3)$", "(1,2)", None),
    "repeated_answer": ("$1$, $2$", "1, 2, 2", None),
    "wrong": ("$2^{1009}$", "2^{1008}", None),
}
DELIBERATE_OLYMPIAD = {
    "union_spacing": UNION_SPACING,
    "times_100": NO_BARE_PERCENT,
    "percent_sign": PERCENT_SIGN,
    "equation_factor_3_2": INTEGER_FACTOR,
    "tuple_shorter": ZIP_TUPLES,
    "repeated_answer": SET_NOT_MULTISET,
    "degrees_braced": (
        "OlympiadBench's judge drops ^\\circ but keeps ^{\\circ}, which then parses as a power "
        "of a symbol; phaserl drops degrees in either spelling"
    ),
    "unit_missing": (
        "phaserl reads a number with a unit as the number (12 cm is 12, 0.64 N is 0.64); the "
        "official judge parses N as a symbol that must then be on both sides"
    ),
}

# ---- the generated pairs (slow): whole rules, then single items ---------------------------------------

DELIBERATE_MATH500_VARIANTS = {"decimal_3": SAME_NUMBER, "leading_zero_dropped": SAME_NUMBER}
DELIBERATE_MATH500_ITEMS: dict[tuple[str, str], str] = {}
DELIBERATE_OLYMPIAD_VARIANTS = {
    "times_100": NO_BARE_PERCENT,
    "over_100": NO_BARE_PERCENT,
    "with_percent": PERCENT_SIGN,
}
DELIBERATE_OLYMPIAD_ITEMS = {
    ("1965", "same"): (
        "the gold is prose with several $...$ spans; the official judge reads those spans from "
        "the gold but the box from the response, so even the same text differs"
    ),
    ("2276", "prefix_x"): "gold '8 \\%': " + PERCENT_SIGN,
    ("1964", "prefix_x"): (
        "gold 'k \\geqslant 2', response 'x = k \\geqslant 2': the official judge compares the "
        "part after '=' and accepts; phaserl (like math-verify) reads the chained relation "
        "as written, which is not the inequality k >= 2"
    ),
}


def _compare(pairs: list[Pair], reference) -> tuple[list[bool], list[bool], list[bool]]:
    ref = [reference(p) for p in pairs]
    mv = [plain_math_verify(p) for p in pairs]
    with Verifier(workers=2, timeout=10.0) as verifier:
        px = phaserl_verdicts(pairs, verifier)
    return ref, mv, px


def _check(
    name: str, pairs: list[Pair], reference, deliberate_items: dict, deliberate_variants: dict
) -> None:
    ref, mv, px = _compare(pairs, reference)
    by_rule = {p.key for p in pairs if p.key[1] in deliberate_variants}
    differ = {p.key for p, r, x in zip(pairs, ref, px) if r != x}
    agree_mv = sum(r == m for r, m in zip(ref, mv))
    agree_px = sum(r == x for r, x in zip(ref, px))
    rest = [i for i, p in enumerate(pairs) if p.key not in by_rule]
    rest_mv = sum(ref[i] == mv[i] for i in rest)
    rest_px = sum(ref[i] == px[i] for i in rest)
    print(
        f"\n{name}: {len(pairs)} pairs, reference true {sum(ref)}; agree with the reference: math-verify "
        f"{agree_mv}, phaserl {agree_px}; outside the whole-rule differences ({len(rest)} pairs): "
        f"math-verify {rest_mv}, phaserl {rest_px}; phaserl differs on {len(differ)} "
        f"({len(differ & by_rule)} by rule, {len(differ - by_rule)} listed)"
    )
    unexplained = differ - by_rule
    assert unexplained == set(deliberate_items), (
        f"unexpected: {sorted(unexplained - set(deliberate_items))}; "
        f"now agreeing: {sorted(set(deliberate_items) - unexplained)}"
    )
    assert rest_px >= rest_mv


def _hand_pairs(cases: dict) -> list[Pair]:
    return [
        Pair((name, "hand"), case[0], respond(case[1]), case[2] if len(case) > 2 else None)
        for name, case in cases.items()
    ]


def test_math_pairs_agree_with_is_equiv_at_least_as_often_as_math_verify():
    _check(
        "MATH hand pairs",
        _hand_pairs(MATH_CASES),
        math_reference,
        {(k, "hand"): v for k, v in DELIBERATE_MATH.items()},
        {},
    )


def test_olympiad_pairs_agree_with_the_official_judge_at_least_as_often_as_math_verify():
    _check(
        "OlympiadBench hand pairs",
        _hand_pairs(OLYMPIAD_CASES),
        olympiad_reference,
        {(k, "hand"): v for k, v in DELIBERATE_OLYMPIAD.items()},
        {},
    )


@pytest.mark.slow
def test_math500_rewrites_agree_with_is_equiv():
    if not (SHARED / "math500").exists():
        pytest.skip("../shared/data is not present")
    _check(
        "MATH-500 rewrites",
        math500_pairs(),
        math_reference,
        DELIBERATE_MATH500_ITEMS,
        DELIBERATE_MATH500_VARIANTS,
    )


@pytest.mark.slow
def test_olympiadbench_rewrites_agree_with_the_official_judge():
    if not (SHARED / "olympiadbench").exists():
        pytest.skip("../shared/data is not present")
    _check(
        "OlympiadBench rewrites",
        olympiad_pairs(),
        olympiad_reference,
        DELIBERATE_OLYMPIAD_ITEMS,
        DELIBERATE_OLYMPIAD_VARIANTS,
    )
