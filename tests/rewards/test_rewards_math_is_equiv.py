"""The tests' re-implementation of MATH's is_equiv (tests/math_is_equiv.py), on hand-written cases.

Each case states what the original hendrycks/math `is_equiv` answers, worked out by following its steps.
"""

import pytest
from math_is_equiv import Malformed, is_equiv, last_boxed, strip_string


@pytest.mark.parametrize(
    "a, b, equal",
    [
        ("\\dfrac{3}{4}", "\\tfrac34", True),  # dfrac/tfrac are frac; \frac34 gains braces
        ("\\frac{1}{2}", "0.5", True),  # the one decimal it knows
        ("\\frac{1}{4}", "0.25", False),
        ("3/4", "\\frac{3}{4}", True),  # a/b of integers
        ("x/4", "\\frac{x}{4}", False),
        ("\\left( 1, 2 \\right)", "(1,2)", True),  # \left, \right and spaces go
        ("1, 2", "2, 1", False),  # order matters: strings
        ("90^\\circ", "90", True),
        ("\\$5", "5", True),
        ("50\\%", "50", True),
        ("12 \\text{ cm}", "12", True),  # a unit written \text{ ...} with its space
        ("12\\text{cm}", "12", False),  # without the space it stays
        (".5", "0.5", True),
        ("k = 7", "7", True),  # a left side of at most two characters is cut
        ("abc = 7", "7", False),
        ("\\sqrt3", "\\sqrt{3}", True),
        ("2\\sqrt{2}", "2\\sqrt2", True),
        ("2\\sqrt{2}", "2 \\sqrt 2", False),  # the sqrt fix runs before spaces go: \sqrt{ }2
        ("x+1", "1+x", False),  # no algebra at all
        ("\\frac{2}{4}", "\\frac{1}{2}", False),
    ],
)
def test_is_equiv(a, b, equal):
    assert is_equiv(a, b) is equal
    assert is_equiv(b, a) is equal


def test_normalisation_errors_fall_back_to_raw_strings():
    with pytest.raises(Malformed):
        strip_string("1\\text{ m} + 2\\text{ m}")  # two units: the original asserts one
    assert is_equiv("1\\text{ m} + 2\\text{ m}", "1\\text{ m} + 2\\text{ m}") is True
    assert is_equiv("1\\text{ m} + 2\\text{ m}", "1\\text{ m}+2\\text{ m}") is False  # raw strings differ
    assert is_equiv("x\\sqrt", "x \\sqrt") is False  # \sqrt at the end is an error: raw comparison
    assert is_equiv(None, None) is True and is_equiv("1", None) is False


def test_last_boxed():
    assert last_boxed("so \\boxed{1} then \\boxed{\\frac{1}{2}}.") == "\\frac{1}{2}"
    assert last_boxed("\\boxed{x") is None
    assert last_boxed("\\fbox{3}") is None  # found, but only \boxed{...} is unwrapped
    assert last_boxed("no box") is None
