"""The last_number reward: only the final committed number counts (what the demo and mini curriculum train on)."""

import pytest

from phaserl.data.schema import Example
from phaserl.rewards.combine import RewardSpec, compute_rewards
from phaserl.rewards.last_number import last_number_reward


def _ex(answer, **kw):
    return Example(id="x", question="What is 1 + 4?", answer=answer, **kw)


@pytest.mark.parametrize(
    "text,score",
    [
        ("5", 1.0),
        (
            "1 + 4 is 5",
            1.0,
        ),  # the verifier-based accuracy reward scores this 0 (it reads "1 + 4 is 5" as math)
        ("1 + 4 equals 5.", 1.0),
        ("1 + 4 = 5\nHope this helps!", 1.0),  # last line has no number: the whole response's last number
        ("The answer to what is 1 + 4 is simply 4, of course", 0.0),  # restating the question does not score
        ("1 + 4 = 5\nSecond: (5 + 4) = 9", 0.0),
        ("\\boxed{5} and then 7 more", 1.0),  # a marked answer wins over later numbers
        ("<think>it is 7</think><answer>5</answer>", 1.0),
        ("<think>it is 5</think><answer>seven</answer>", 0.0),  # marked answer without a number: no fallback
        ("<think>5 is unfinished", 0.0),
        ("", 0.0),
        ("15", 0.0),
        ("5.0", 1.0),
    ],
)
def test_last_number(text, score):
    assert last_number_reward(text, _ex("5")) == score


def test_not_applicable():
    assert last_number_reward("5", _ex(None)) is None
    assert last_number_reward("x+1", _ex("x + 1")) is None  # a non-numeric gold: another reward's job


def test_tolerance_and_registry():
    assert last_number_reward("it is 3.14", _ex("3.1416", tolerance=0.01)) == 1.0
    out = compute_rewards(["1 + 4 is 5", "4"], [_ex("5"), _ex("5")], [RewardSpec(name="last_number")])
    assert out.components["last_number"] == [1.0, 0.0]
