"""Agreement with math-verify's own test cases (../shared/data/verifier_tests/math_verify_cases.jsonl).

Each case is run the way phaserl runs a response: extract_answer(pred), then the verifier. The recorded
verdicts are that library's behaviour, not ground truth; every case where phaserl decides differently on
purpose is listed below with the reason, and the test fails if the set of disagreements changes.
"""

import json
import math
from pathlib import Path

import pytest

from phaserl.rewards.choice import letter_of
from phaserl.rewards.extract import extract_answer
from phaserl.rewards.verify import Verifier

CASES = Path(__file__).resolve().parents[3] / "shared" / "data" / "verifier_tests" / "math_verify_cases.jsonl"
pytestmark = pytest.mark.skipif(not CASES.exists(), reason="../shared/data is not present")

# Two cases build their strings with Python f-strings; these are their values (nothing is evaluated).
SOURCES = {
    'f"{math.sqrt(17):.15f}"': f"{math.sqrt(17):.15f}",
    'f"$\\\\sqrt{{17}}$"': "$\\sqrt{17}$",
}

LAST_BOX_ONLY = (
    "extract_answer reads the last box and the boxes listed right before it (joined by commas "
    "or 'and'); boxes separated by prose are not merged, so boxing several candidates gains nothing"
)
DELIBERATE = {
    ("test_set_rel_assymetry", 3): (
        "gold x in [-2,7], pred -2 <= x <= 7: the same set, which a careful grader accepts; math-verify "
        "refuses unless allow_set_relation_comp, phaserl always allows it"
    ),
    ("test_strict_variable_comparison", 1): (
        "f(x) vs f(y) with strict=False: phaserl is always strict, the variable is part of the answer"
    ),
    ("test_boxed", 0): (
        "the gold '\\boxed{35 cm} ++++++ \\boxed{4}' is read like a response: its answer is the last box "
        "(4), since '++++++' is not a list separator; " + LAST_BOX_ONLY
    ),
    ("test_open_thoughts", 27): (
        "the gold '\\boxed{1} papers and \\boxed{2} bins' has prose between its boxes, so its answer is 2; "
        + LAST_BOX_ONLY
    ),
    ("test_open_thoughts", 14): "pred '\\boxed{(3, 3)} \\text{ for part (a) and } \\boxed{(1, 1)}': "
    + LAST_BOX_ONLY,
    ("test_open_thoughts", 24): "pred '\\boxed{..} \\) and \\( y_2 = \\boxed{..}': " + LAST_BOX_ONLY,
}
DELIBERATE_LETTERS = {
    ("test_string_extraction", 6): (
        "'Because B is valid' names no option: a letter mentioned in prose is not an answer"
    ),
}


def _value(field):
    if isinstance(field, dict):
        return SOURCES[field["__source__"]]  # an unknown source fails loudly (KeyError)
    return field


def _load():
    return [json.loads(line) for line in CASES.read_text().splitlines() if line.strip()]


def _item(case: dict) -> dict:
    precision = case.get("precision")
    return {
        "gold": _value(case["gold"]),
        "pred": extract_answer(_value(case["pred"])) or "",
        "tolerance": 0.5 * 10.0**-precision if precision else None,
    }


def test_verdicts_agree_except_where_deliberate():
    cases = [c for c in _load() if c["comparison"] != "parse_only"]
    with Verifier(workers=2, timeout=10.0) as verifier:
        verdicts = verifier.check_many([_item(c) for c in cases])
    differ = {(c["test"], c["index"]): v for c, v in zip(cases, verdicts) if v is not bool(c["expected"])}
    agree = len(cases) - len(differ)
    print(f"\nmath-verify cases: {agree}/{len(cases)} agree; {len(differ)} differ on purpose")
    assert None not in differ.values(), f"undecided cases: {[k for k, v in differ.items() if v is None]}"
    assert set(differ) == set(DELIBERATE), (
        f"unexpected: {sorted(set(differ) - set(DELIBERATE))}; now agreeing: {sorted(set(DELIBERATE) - set(differ))}"
    )


def test_option_letters_agree_except_where_deliberate():
    cases = [c for c in _load() if c["comparison"] == "parse_only"]
    assert cases
    differ = set()
    for c in cases:
        want = c["expected"][1] if c["expected"] else None
        if letter_of(extract_answer(c["pred"]) or "") != want:
            differ.add((c["test"], c["index"]))
    assert differ == set(DELIBERATE_LETTERS)
