"""Strict format rewards on literal strings, including reward-hacking attempts."""

import pytest

from phaserl.rewards.format import boxed_format, think_answer_format


@pytest.mark.parametrize(
    "text",
    [
        "<think>3 + 4 = 7</think><answer>7</answer>",
        "<think>\nreason\n</think>\n<answer>\n7\n</answer>\n",  # newlines a tokenizer adds are fine
        "<think></think><answer>7</answer>",
    ],
)
def test_think_answer_format_accepts(text):
    assert think_answer_format(text) == 1.0


@pytest.mark.parametrize(
    "text, why",
    [
        ("<think>a</think><answer>7</answer><answer>8</answer>", "two answer blocks (open-r1 #359)"),
        ("<think>a</think><answer>7</answer> and more", "text after </answer>"),
        ("Sure! <think>a</think><answer>7</answer>", "text before <think>"),
        ("<think>a</think><answer></answer>", "empty answer"),
        ("<think>a</think><answer>   </answer>", "blank answer"),
        ("<think>a</think>the answer is 7<answer>7</answer>", "text between the blocks"),
        ("<think>a<think>b</think><answer>7</answer>", "a nested second think"),
        ("<think>a</think><think>b</think><answer>7</answer>", "two think blocks"),
        ("<answer>7</answer>", "no think block"),
        ("<think>7</think>", "no answer block"),
        ("<think>a</answer><answer>7</think>", "tags out of order"),
        ("7", "plain answer"),
    ],
)
def test_think_answer_format_rejects(text, why):
    assert think_answer_format(text) == 0.0, why


@pytest.mark.parametrize(
    "text",
    [
        r"3 + 4 = 7, so the answer is \boxed{7}",
        r"so $\boxed{7}$.",
        r"\[\boxed{\frac{1}{2}}\]",
        r"<think>maybe \boxed{6}</think> it is \boxed{7}",  # boxes inside the reasoning do not count
        r"<think>x</think><answer>\boxed{7}</answer>",
    ],
)
def test_boxed_format_accepts(text):
    assert boxed_format(text) == 1.0


@pytest.mark.parametrize(
    "text, why",
    [
        (r"\boxed{6} or \boxed{7}", "two boxes"),
        (r"\boxed{7} because reasons", "text after the box"),
        (r"\boxed{}", "empty box"),
        (r"\boxed{7", "unclosed box"),
        ("the answer is 7", "no box"),
        (r"<think>so \boxed{7}", "box only in an unfinished reasoning"),
        (r"<think>\boxed{7}</think> it is seven", "box only in the reasoning"),
    ],
)
def test_boxed_format_rejects(text, why):
    assert boxed_format(text) == 0.0, why


def test_format_rewards_take_an_optional_example():
    assert think_answer_format("<think>a</think><answer>1</answer>", example=object()) == 1.0
    assert boxed_format(r"\boxed{1}", example=object()) == 1.0
