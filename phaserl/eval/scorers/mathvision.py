"""MathVision's official rule-based scorer (MATH-V `evaluation/evaluate.py` + `utils.py`), re-implemented.

Extraction: a response that ends in ` C.` / ` (C).` or starts with `C\\n` / `(C)\\n` / `(C) C\\n` is that
letter; a response whose text after the last "is " is a number is that number; without a \\boxed{}, the text
after the last "the answer is" (and three variants) up to the end of its line and sentence; with several
boxes the last wins. Then `find_math_answer`: lower-case, take the (greedy) boxed content, keep what follows
the last `=` / `\\approx`, drop spaces, `\\text`, `\\left/\\right`, degrees and a few units, and apply the MATH
normalisation (`math_strip.strip_string`).

Comparison (`is_equal`): case-insensitive string equality; else tuples `(a,b)` / lists `[a,b]` with each entry
evaluated and rounded to 2 decimals; else both sides evaluated as numbers and rounded to 2 decimals. The
response is compared with the gold letter/value and, for multiple choice, also with the option text.

Where the official code calls `eval(str(latex2sympy(x)))` we call `numeric.latex_value`, which computes the
same number without eval and refuses what that eval would fail on.
"""

from __future__ import annotations

import re

from phaserl.data.schema import Example
from phaserl.eval.scorers.base import PerItemJudge
from phaserl.eval.scorers.math_strip import strip_string
from phaserl.eval.scorers.numeric import latex_value

_ANSWER_FLAGS = ("the final answer is", "the answer is", "the correct answer is", "the answer should be")
_GREEDY_BOX_RE = re.compile(r"oxed{(.*)}", re.S)
_FIND_REPLACE = (  # find_math_answer's clean-up, in its order
    (" ", ""),
    ("\\,", ""),
    ("∞", "\\infty"),
    ("+\\infty", "\\infty"),
    ("\\\\", "\\"),
    ("\n", ""),
    ("\\text", ""),
    ("\\mbox", ""),
    ("bmatrix", "pmatrix"),
    ("\\left", ""),
    ("\\right", ""),
    ("^{\\circ}", ""),
    ("^\\circ", ""),
    ("{m}^3", ""),
    ("m^3", ""),
    ("{units}", ""),
    ("units", ""),
    ("{km}", ""),
    ("km", ""),
)
_OPTION_WRAPPERS = tuple((f"({c})", c) for c in "abcde") + tuple((f"{{{c}}}", c) for c in "abcde")


def is_number(s: str) -> bool:
    """Python float() accepts it (so ' 12 ', '1e3', 'inf' and '1_000' count, as in the official code)."""
    try:
        float(s)
    except ValueError:
        return False
    return True


def _letter_shortcut(answer: str) -> str:
    for c in "ABCDE":
        if answer.endswith((f" {c}.", f" ({c}).")) or answer.startswith(
            (f"{c}\n", f"({c})\n", f"({c}) {c}\n")
        ):
            answer = c
    return answer


def _after_flags(answer: str) -> str:
    """Cut at each "the answer is"-like phrase (lower- then capitalised), keeping that line's first sentence."""
    for flag in _ANSWER_FLAGS:
        for variant in (flag, flag.replace("the", "The")):
            found = variant in answer
            answer = answer.split(variant)[-1].strip()
            if found:
                answer = answer.split("\n")[0].split(". ")[0]
    return answer


def find_math_answer(s: str) -> str:
    """The boxed (or whole) answer, cleaned and MATH-normalised, lower-cased."""
    s = s.lower().replace("{}", "")
    boxed = _GREEDY_BOX_RE.findall(s)
    ans = boxed[-1] if boxed else s
    close, open_ = ans.find("}"), ans.find("{")
    if close != -1 and (open_ == -1 or close < open_):  # a stray `}` ends the answer
        ans = ans.split("}")[0]
    ans = ans.split("=")[-1].split("\\approx")[-1]
    for old, new in _FIND_REPLACE:
        ans = ans.replace(old, new)
    return strip_string(ans)


def extract(response: str) -> str:
    """The official `model_answer` for a response (may be '' when nothing is left)."""
    answer = _letter_shortcut(response.strip())
    tail = answer.split("is ")[-1].rstrip(".")
    if is_number(tail):
        answer = tail
    if "oxed{" not in answer:
        answer = _after_flags(answer)
    elif answer.count("oxed{") > 1:
        answer = "\\boxed{" + answer.split("oxed{")[-1]
    answer = find_math_answer(answer)
    for old, new in _OPTION_WRAPPERS:
        answer = answer.replace(old, new)
    return answer.rstrip(".").lstrip(":").strip()


def _round2(value: int | float) -> int | float:
    return round(value, 2)


def eval_tuple(s: str) -> str:
    """`(a,b,...)` / `[a,b,...]` with every entry evaluated and rounded to 2 decimals; else s unchanged.

    Entries containing `infty`, and the bare symbols `a` / `-a`, are kept as text (as officially).
    """
    if len(s) < 2 or (s[0], s[-1]) not in (("(", ")"), ("[", "]")):
        return s
    parts = s[1:-1].split(",")
    if len(parts) < 2:
        return s
    out = []
    for part in parts:
        if "infty" in part or part in ("a", "-a"):
            out.append(part)
            continue
        value = latex_value(part)
        if value is None:
            return s
        out.append(str(_round2(value)))
    return s[0] + ",".join(out) + s[-1]


def is_equal(pred: str, gold: str) -> bool:
    """MATH-V's is_equal: string, then tuple, then 2-decimal numeric equality."""
    pred, gold = pred.lower(), gold.lower()
    if not pred.replace(" ", "") or not gold.replace(" ", ""):
        return False
    if pred.strip() == gold.strip():
        return True
    pred_t, gold_t = eval_tuple(pred), eval_tuple(gold)
    if pred_t == gold_t:
        return True
    a, b = latex_value(gold_t), latex_value(pred_t)
    return a is not None and b is not None and _round2(a) == _round2(b)


class MathVisionScorer(PerItemJudge):
    """The official MathVision scorer; `extraction` is the official `model_answer`."""

    name = "mathvision_official"
    version = "MATH-V@a1f5cc3 evaluate.py rules, re-implemented (phaserl 1)"

    def extract(self, response: str, example: Example) -> str | None:
        return extract(response)

    def judge(self, extraction: str | None, example: Example) -> bool:
        if extraction is None or example.answer is None:
            return False
        gold = str(example.answer)
        option = ""
        if example.choices and len(gold) == 1 and 0 <= ord(gold) - ord("A") < len(example.choices):
            option = example.choices[ord(gold) - ord("A")]
        return is_equal(extraction, gold) or is_equal(extraction, option)
