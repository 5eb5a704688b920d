"""The mini curriculum's generated data: glyph grids, problems, splits and views (no model needed)."""

from __future__ import annotations

import ast
import io
import random
import re

import numpy as np
import pytest

from phaserl.data.render import render
from phaserl.minivlm.glyphs import BLANK, Grid, render_array, to_pixels
from phaserl.minivlm.tasks import (
    KINDS,
    assert_disjoint,
    for_view,
    generate_problems,
    make_split,
    make_splits,
    split_of,
)


@pytest.fixture(scope="module")
def splits():
    return make_splits(90, 45, seed=3)


def _png(img) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _arith(expr: str) -> int:
    """Evaluate + - * and brackets on integers by walking the syntax tree (never eval)."""
    ops = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b}

    def walk(node):
        if isinstance(node, ast.BinOp) and type(node.op) in ops:
            return ops[type(node.op)](walk(node.left), walk(node.right))
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        raise ValueError(f"unexpected {ast.dump(node)}")

    return walk(ast.parse(expr, mode="eval").body)


def test_splits_are_deterministic(splits):
    train, test = make_splits(90, 45, seed=3)
    for a, b in ((train, splits[0]), (test, splits[1])):
        assert [e.id for e in a] == [e.id for e in b]
        assert [e.answer for e in a] == [e.answer for e in b]
        assert _png(a[0].images[0]) == _png(b[0].images[0])
    other = make_split("test", 45, seed=4)
    assert [e.id for e in other] != [e.id for e in test]


def test_splits_never_overlap(splits):
    train, test = splits
    assert_disjoint(train, test)  # also called inside make_splits
    assert all(split_of(e.meta["key"]) == "train" for e in train)
    assert all(split_of(e.meta["key"]) == "test" for e in test)
    # Other seeds draw other problems, yet still land on their own side of the fixed key split.
    more_train = make_split("train", 90, seed=11)
    assert_disjoint(more_train, test)
    with pytest.raises(AssertionError, match="both splits"):
        assert_disjoint(train, train[:5])


def test_every_kind_in_turn_and_ids_unique(splits):
    train, _ = splits
    assert [e.meta["kind"] for e in train[:6]] == list(KINDS) * 2
    assert len({e.id for e in train}) == len(train)
    assert len({e.meta["key"] for e in train}) == len(train)


def test_answers_are_right(splits):
    for e in splits[0] + splits[1]:
        assert e.answer_type == "number" and re.fullmatch(r"\d+", e.answer), e
        key = e.meta["key"]
        if e.meta["kind"] == "arith":
            assert _arith(key.split(":", 1)[1]) == int(e.answer)
        elif e.meta["kind"] == "geometry":
            _, shape, ask, a, b = key.split(":")
            a, b = int(a), int(b)
            want = {"area": a * b, "perim": 2 * (a + b), "length": a + b}[ask]
            assert want == int(e.answer), key
            assert shape in ("rectangle", "square", "segment") and (shape != "square" or a == b)


def test_problems_take_one_operation(splits):
    """Tasks version 2: one operation each, so the 135M base model solves some and GRPO groups have successes."""
    for e in splits[0] + splits[1]:
        if e.meta["kind"] == "arith":
            assert len(re.findall(r"[-+*]", e.meta["key"].split(":", 1)[1])) == 1, e.meta["key"]
    shapes = {e.meta["key"].split(":")[1] for e in splits[0] if e.meta["kind"] == "geometry"}
    assert shapes == {"rectangle", "square", "segment"}


def test_every_view_holds_the_numbers(splits):
    """Text question, caption and image all carry every number the problem needs."""
    for e in splits[1]:
        numbers = set(re.findall(r"\d+", e.meta["text_question"]))
        assert numbers <= set(re.findall(r"\d+", e.caption)), e
        drawn = " ".join(e.meta["image_lines"])
        assert numbers <= set(re.findall(r"\d+", drawn)), e
        assert "".join(e.meta["cell_labels"]).replace(BLANK, "") == drawn.replace(" ", "")


def test_rewards_verify_the_gold(splits):
    pytest.importorskip("phaserl.rewards.combine")
    from phaserl.rewards.combine import RewardSpec, compute_rewards

    items = splits[1][:6]
    texts = [f"The answer is {e.answer}." for e in items] + [
        f"The answer is {int(e.answer) + 1}." for e in items
    ]
    out = compute_rewards(texts, items + items, [RewardSpec(name="accuracy")])
    assert out.components["accuracy"] == [1.0] * 6 + [0.0] * 6


def test_views(splits):
    e = splits[1][0]
    text = render(for_view([e], "text")[0], "text", "number")
    assert text.images == [] and text.messages[-1]["content"].startswith(e.meta["text_question"])
    image = render(for_view([e], "image")[0], "image")
    assert len(image.images) == 1 and image.images[0].size == (192, 192)
    parts = image.messages[-1]["content"]
    assert parts[0] == {"type": "image"} and "Caption" not in parts[1]["text"]
    assert e.meta["text_question"] not in parts[1]["text"]  # the image view must be read from the image
    captioned = render(e, "image+caption")
    assert e.caption in captioned.messages[-1]["content"][1]["text"]


def test_each_glyph_stays_in_its_cell():
    """Ink of a character drawn at (row, col) falls in that patch only (the alignment relies on it)."""
    cell = 16
    for seed in range(20):
        rng = random.Random(seed)
        grid = Grid(12)
        row, col = rng.randrange(12), rng.randrange(12)
        grid.put(row, col, rng.choice("0123456789+=?abcdxyz"))
        arr = render_array(grid, cell, rng).astype(np.float32).mean(-1)  # [H, W]
        cells = arr.reshape(12, cell, 12, cell).mean(axis=(1, 3))  # [12, 12] mean brightness per patch
        others = np.delete(cells.reshape(-1), row * 12 + col)
        assert np.abs(others - np.median(others)).max() < 1.5, seed
        assert abs(cells[row, col] - np.median(others)) > 2.0, seed


def test_grid_rejects_what_it_cannot_draw():
    grid = Grid(12)
    with pytest.raises(ValueError, match="does not fit"):
        grid.put(0, 8, "12345")
    with pytest.raises(ValueError, match="not drawable"):
        grid.put(0, 0, "A")
    with pytest.raises(ValueError, match="at least 12"):
        generate_problems("train", 3, cells=8)


def test_to_pixels_is_centred_on_the_paper():
    rng = random.Random(0)
    pixels = to_pixels([render_array(Grid(12), 16, rng) for _ in range(8)])  # blank pages
    assert pixels.shape == (8, 3, 192, 192)
    assert abs(float(pixels.mean())) < 0.6
