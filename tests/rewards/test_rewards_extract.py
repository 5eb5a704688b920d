"""Answer extraction on literal responses, including the tricks a policy learns."""

import time

import pytest

from phaserl.rewards.extract import (
    answer_block,
    answer_is,
    boxed_group,
    extract_answer,
    final_line,
    last_boxed,
)


@pytest.mark.parametrize(
    "text, want",
    [
        (r"so \boxed{7}", "7"),
        (r"\boxed{1} then \boxed{2}", "2"),
        (r"\boxed{\frac{1}{2}}", r"\frac{1}{2}"),
        (r"\boxed{\{1, 2\}}", r"\{1, 2\}"),  # escaped braces are not groups
        (r"\fbox{x+1}", "x+1"),
        (r"\boxed 5$", "5"),
        (r"\boxed{7} and \boxed{8", "7"),  # the last box is unclosed: the last complete one counts
        ("no box here", None),
        (r"\boxedfoo{3}", None),  # another command, not a box
    ],
)
def test_last_boxed(text, want):
    assert last_boxed(text) == want


def test_last_boxed_deep_nesting_is_linear():
    text = r"\boxed{" * 10_000 + "1" + "}" * 10_000
    t0 = time.perf_counter()
    got = last_boxed(text)
    assert got == "1"
    assert time.perf_counter() - t0 < 1.0


def test_boxed_group_joins_listed_boxes_only():
    assert boxed_group(r"\boxed{1}, \boxed{2} and \boxed{3}")[1] == "1, 2, 3"
    assert boxed_group(r"\boxed{-2} \quad \text{and} \quad \boxed{1}.")[1] == "-2, 1"
    assert boxed_group(r"\boxed{3} or \boxed{4}")[1] == "4"  # a hedge is not a list
    assert boxed_group(r"\boxed{5} then more reasoning \boxed{6}")[1] == "6"


@pytest.mark.parametrize(
    "text, want",
    [
        ("<answer>7</answer>", "7"),
        ("<answer> 7 </answer> <answer>8</answer>", "8"),
        ("<answer></answer>", ""),
        ("<answer>7", None),
        ("no block", None),
    ],
)
def test_answer_block(text, want):
    assert answer_block(text) == want


@pytest.mark.parametrize(
    "text, want",
    [
        ("The answer is 7.", "7"),
        ("Final Answer: The final answer is $10,455$. I hope it is correct.", "$10,455$"),
        ("answer: (B)", "(B)"),
        ("the answer is 3.5 apples", "3.5 apples"),
        ("The answer is 2. Then again the answer is 3.", "3"),
        ("so the answer should be (D).", "(D)"),
        ("nothing stated", None),
    ],
)
def test_answer_is(text, want):
    assert answer_is(text) == want


def test_final_line_extends_over_a_split_display():
    assert final_line("Answer $$ \n 9 \n $$") == "Answer $$ \n 9 \n $$"
    assert final_line("work\n\n 42 \n") == "42"
    assert final_line("  \n ") is None


@pytest.mark.parametrize(
    "text, want",
    [
        # the answer block wins, boxed inside it first
        (r"<think>try \boxed{5}</think><answer>\boxed{7}</answer>", "7"),
        ("<think>x</think><answer>The answer is 7.</answer>", "7"),
        ("<think>x</think><answer>  seven </answer>", "seven"),
        # plain responses: the last box, or "the answer is", whichever comes later
        (r"3 + 4 = 7, so \boxed{7}.", "7"),
        (r"First \boxed{200}. Final Answer: The final answer is $10,455$. I hope it is correct.", "$10,455$"),
        (r"The answer is: \boxed{7}.", "7"),
        (r"\boxed{1} and \boxed{2}", "1, 2"),
        ("3 + 4 = 7", "3 + 4 = 7"),  # a bare final line
        ("work...\n7", "7"),
        ("The answer is 7", "7"),
        # R1-style responses: only what follows </think> counts
        (r"reasoning \boxed{5}</think> so it is 7", "so it is 7"),
    ],
)
def test_extract_answer(text, want):
    assert extract_answer(text) == want


@pytest.mark.parametrize(
    "text",
    [
        "<think>the answer is 7</think><answer></answer>",  # empty answer: gold hidden in the reasoning
        r"<think>\boxed{7}</think><answer>   </answer>",
        r"<think>so \boxed{7} and the answer is 7",  # never finished thinking
        r"<think>x</think><answer>\boxed{}</answer>",  # empty box
        "",
        "   \n  ",
    ],
)
def test_extract_answer_gives_none_for_no_answer(text):
    assert extract_answer(text) is None


def test_truncated_answer_block_does_not_fall_back_to_reasoning():
    text = r"I think \boxed{7} <answer> I am not sure"
    assert extract_answer(text) == "I am not sure"


def test_extract_answer_on_a_megabyte_is_fast():
    text = ("la " * 350_000) + r"\boxed{" * 5_000 + "\n the answer is 7"
    t0 = time.perf_counter()
    assert extract_answer(text) == "7"
    assert time.perf_counter() - t0 < 2.0
