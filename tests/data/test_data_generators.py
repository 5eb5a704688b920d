"""Generated arithmetic tasks: determinism, held-out split, answers, and the VL variant's speed and images."""

import time

import pytest

from phaserl.data.generators import GENERATORS, arithmetic, arithmetic_vl, generate, sample_problems
from phaserl.data.render import render


def test_deterministic_from_seed():
    assert [e.question for e in arithmetic(50, seed=7)] == [e.question for e in arithmetic(50, seed=7)]
    assert [e.question for e in arithmetic(50, seed=7)] != [e.question for e in arithmetic(50, seed=8)]


def test_train_and_test_never_overlap_across_seeds():
    train = set()
    for seed in range(3):
        train |= set(sample_problems(500, digits=1, seed=seed, split="train"))
    test = set(sample_problems(40, digits=1, seed=11, split="test"))
    assert len(test) == 40 and not train & test
    # together the two splits cover the one-digit sums, and nothing else
    assert len(train | test) <= 100 and all(0 <= a <= 9 and 0 <= b <= 9 for a, _, b in train | test)


def test_test_split_unique_and_says_when_too_small():
    with pytest.raises(ValueError, match="distinct test problems"):
        sample_problems(99, split="test")  # about half of the 100 one-digit sums are held out
    assert len(sample_problems(64, split="test", test_fraction=0.7)) == 64
    assert len(sample_problems(99, split="test", unique=False)) == 99


@pytest.mark.parametrize("digits, ops", [(1, ["+"]), (2, ["+", "-"]), (4, ["*"])])
def test_answers_are_right(digits, ops):
    for ex in arithmetic(30, digits=digits, ops=ops, seed=1):
        a, op, b = ex.meta["a"], ex.meta["op"], ex.meta["b"]
        assert ex.question == f"What is {a} {op} {b}?"
        assert int(ex.answer) == {"+": a + b, "-": a - b, "*": a * b}[op] and int(ex.answer) >= 0
        assert ex.answer_type == "number"
        if digits > 1:
            assert len(str(a)) == digits and len(str(b)) == digits


def test_ids_unique_and_labelled():
    exs = arithmetic(200, split="train")
    assert len({e.id for e in exs}) == 200 and exs[0].source == "arithmetic"


def test_arithmetic_vl_image_caption_question():
    exs = arithmetic_vl(20, seed=2, image_size=(56, 56))
    ex = exs[0]
    expr = f"{ex.meta['a']} {ex.meta['op']} {ex.meta['b']}"
    assert ex.question == "What is the result of the expression in the image?" and expr not in ex.question
    assert ex.caption == f"An image showing the expression {expr} in black digits on white."
    img = ex.images[0]
    assert img.size == (56, 56)
    lo, hi = img.getextrema()
    assert lo < 100 and hi == 255  # dark digits drawn on white
    prompt = render(ex, "image+caption")
    assert prompt.images[0].mode == "RGB" and expr in prompt.messages[-1]["content"][-1]["text"]


def test_arithmetic_vl_same_problems_as_text():
    text = arithmetic(30, seed=4)
    vl = arithmetic_vl(30, seed=4)
    assert [t.answer for t in text] == [v.answer for v in vl]


def test_arithmetic_vl_fast():
    start = time.perf_counter()
    exs = arithmetic_vl(1000, digits=2, ops=["+", "-"], seed=5)
    assert len(exs) == 1000 and time.perf_counter() - start < 2.0


def test_registry():
    assert set(GENERATORS) >= {"arithmetic", "arithmetic_vl"}
    assert len(generate("arithmetic", n=3)) == 3
    with pytest.raises(ValueError, match="unknown generator"):
        generate("calculus")
    with pytest.raises(ValueError, match="ops"):
        arithmetic(3, ops=["/"])
