"""Accuracy reward and the weighted batch of components, with literal responses and reward hacks."""

import pydantic
import pytest

from phaserl.data.schema import Example
from phaserl.rewards.accuracy import accuracy, accuracy_many
from phaserl.rewards.combine import REWARDS, RewardSpec, compute_rewards, register_reward
from phaserl.rewards.verify import get_verifier


@pytest.fixture(scope="module")
def verifier():
    v = get_verifier()
    assert get_verifier() is v  # one pool per process
    return v


def ex(answer, **kw):
    return Example(id="e", question="3 + 4 = ?", answer=answer, **kw)


@pytest.mark.parametrize(
    "text, want",
    [
        ("<think>3 + 4 = 7</think><answer>7</answer>", 1.0),
        ("<think>3 + 4 = 7</think><answer>The answer is 7.</answer>", 1.0),
        (r"3 + 4 = 7, so \boxed{7}", 1.0),
        ("3 + 4 = 7", 1.0),
        ("<think>3 + 4 = 7</think><answer>8</answer>", 0.0),
        # reward hacks
        ("<think>the answer is 7</think><answer></answer>", 0.0),  # empty answer, gold in the reasoning
        (r"<think>\boxed{7}</think><answer>I am not sure</answer>", 0.0),  # gold only in the reasoning
        ("<think>it is 7", 0.0),  # never finished
        ("<think>x</think><answer>7</answer><answer>8</answer>", 0.0),  # the last block is the answer
        ("<think>x</think><answer>6 or 7 or 8</answer>", 0.0),  # hedging takes the last number, 8
    ],
)
def test_accuracy_on_literal_responses(verifier, text, want):
    assert accuracy(text, ex("7"), verifier) == want


def test_accuracy_is_none_without_gold_or_with_unparseable_gold(verifier):
    assert accuracy("<think>x</think><answer>7</answer>", ex(None), verifier) is None
    assert accuracy("<think>x</think><answer>7</answer>", ex("$$"), verifier) is None


def test_accuracy_uses_the_example_answer_type(verifier):
    mc = ex("B", choices=["5", "7", "9"], answer_type="choice")
    assert accuracy("<answer>(B)</answer>", mc, verifier) == 1.0
    assert accuracy("<answer>7</answer>", mc, verifier) == 1.0  # the option text
    assert accuracy("<answer>A or B</answer>", mc, verifier) == 0.0
    approx = ex("3.14", tolerance=0.01)
    assert accuracy(r"\boxed{3.1416}", approx, verifier) == 1.0


def test_accuracy_many_matches_single_calls(verifier):
    texts = ["<answer>7</answer>", "<answer>8</answer>", r"\boxed{7}", "nothing", "<answer>7</answer>"]
    examples = [ex("7"), ex("7"), ex("7"), ex("7"), ex(None)]
    assert accuracy_many(texts, examples, verifier) == [1.0, 0.0, 1.0, 0.0, None]
    assert accuracy_many(texts, examples, verifier) == [
        accuracy(t, e, verifier) for t, e in zip(texts, examples)
    ]


def test_compute_rewards_components_and_weighted_total(verifier):
    texts = [
        "<think>3 + 4 = 7</think><answer>7</answer>",  # format 1, accuracy 1
        "<think>3 + 4 = 8</think><answer>8</answer>",  # format 1, accuracy 0
        "7",  # format 0, accuracy 1
        "<think>x</think><answer>7</answer>",  # no gold: accuracy None
    ]
    examples = [ex("7"), ex("7"), ex("7"), ex(None)]
    specs = [RewardSpec(name="format", weight=0.5), RewardSpec(name="accuracy")]
    out = compute_rewards(texts, examples, specs, verifier)
    assert out.components == {"format": [1.0, 1.0, 0.0, 1.0], "accuracy": [1.0, 0.0, 1.0, None]}
    assert out.total == [1.5, 0.5, 1.0, 0.5]  # a None component counts 0


def test_unparseable_gold_policy(verifier):
    texts, examples = ["<answer>1</answer>", "<answer>1</answer>"], [ex("$$"), ex(None)]
    specs = [RewardSpec(name="accuracy")]
    assert compute_rewards(texts, examples, specs, verifier).components["accuracy"] == [None, None]
    zero = compute_rewards(texts, examples, specs, verifier, unparseable_gold="zero")
    assert zero.components["accuracy"] == [0.0, None]  # no gold at all still "does not apply"
    with pytest.raises(ValueError):
        compute_rewards(texts, examples, specs, verifier, unparseable_gold="one")


def test_boxed_format_component(verifier):
    out = compute_rewards(
        [r"so \boxed{7}", r"\boxed{6} or \boxed{7}"],
        [ex("7"), ex("7")],
        [RewardSpec(name="format_boxed"), RewardSpec(name="accuracy", weight=2.0)],
        verifier,
    )
    assert out.components["format_boxed"] == [1.0, 0.0]
    assert out.total == [3.0, 2.0]


def test_reward_spec_validation():
    with pytest.raises(pydantic.ValidationError):
        RewardSpec(name="acuracy")
    with pytest.raises(pydantic.ValidationError):
        RewardSpec(name="accuracy", wieght=2.0)
    assert RewardSpec(name="format").weight == 1.0


def test_compute_rewards_rejects_bad_batches(verifier):
    with pytest.raises(ValueError):
        compute_rewards(["a", "b"], [ex("1")], [RewardSpec(name="format")], verifier)
    with pytest.raises(ValueError):
        compute_rewards(["a"], [ex("1")], [RewardSpec(name="format"), RewardSpec(name="format")], verifier)


def test_a_registered_reward_joins_the_total():
    register_reward("short", lambda text, example=None: 1.0 if len(text) < 10 else 0.0)
    try:
        out = compute_rewards(["ok", "x" * 20], [ex("1"), ex("1")], [RewardSpec(name="short", weight=3.0)])
        assert out.components["short"] == [1.0, 0.0]
        assert out.total == [3.0, 0.0]
    finally:
        REWARDS.pop("short")
