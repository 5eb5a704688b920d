"""OlympiadBench's rule-based judge (OpenBMB/OlympiadBench `eval/auto_scoring_judge.py`), rule for rule.

Re-implemented from reading the official code (none of it is copied); tests/eval/test_eval_olympiad_judge.py has
one test per rule with hand-written cases, and docs/scorers.md lists the rules and every difference. Split by
step: olympiad_extract.py (extraction, cleaning, splitting), olympiad_compare.py (one answer against one), and
here the pairing of answer lists and the scorer.

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

import re

from phaserl.data.schema import Example
from phaserl.eval.scorers.base import PerItemJudge
from phaserl.eval.scorers.olympiad_compare import DEFAULT_TOLERANCE, element_equal
from phaserl.eval.scorers.olympiad_extract import UnclosedBox, final_answer_text, preprocess, split_top_level
from phaserl.rewards.compare import expand_pm

_CJK_RE = re.compile(r"[\u4e00-\u9fff]+")


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
