"""Built-in generated tasks: deterministic from a seed, no files, instant. Registry `GENERATORS`.

arithmetic      "What is 3 + 4?" -> "7" (the CPU demo and the learning test)
arithmetic_vl   the same problems drawn as a small image, with a caption, for multimodal smoke runs

Train and test never share a problem: each problem (a, op, b) falls in the test split or not by a stable
hash of its text, independent of the seed, so a test set from any seed is held out from a train set from
any seed. With one-digit sums there are only 100 problems; test_fraction decides how many are held out.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from functools import lru_cache

from phaserl.data.schema import Example

Problem = tuple[int, str, int]  # (a, op, b)
_OPS: dict[str, Callable[[int, int], int]] = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
}
_ENUMERATE_BELOW = 200_000  # universes up to this size are listed; larger ones are sampled


def _operands(digits: int) -> range:
    """One-digit operands are 0..9; d digits (d > 1) are 10^(d-1)..10^d - 1 (e.g. two-digit: 10..99)."""
    if digits < 1:
        raise ValueError(f"digits must be >= 1, got {digits}")
    return range(0, 10) if digits == 1 else range(10 ** (digits - 1), 10**digits)


def _valid(a: int, op: str, b: int) -> bool:
    return not (op == "-" and a < b)  # no negative results: the small models' task stays "read the sum"


def in_test_split(problem: Problem, test_fraction: float) -> bool:
    """Stable across runs and machines (not Python's salted hash)."""
    a, op, b = problem
    digest = hashlib.blake2b(f"{a}{op}{b}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < test_fraction


def sample_problems(
    n: int,
    *,
    digits: int = 1,
    ops: list[str] | tuple[str, ...] = ("+",),
    seed: int = 0,
    split: str = "train",
    test_fraction: float = 0.5,
    unique: bool | None = None,
) -> list[Problem]:
    """n problems of one split. unique (default: True for test, False for train) forbids repeats; the
    train split repeats problems because one-digit sums offer only a few dozen."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    bad = [op for op in ops if op not in _OPS]
    if bad or not ops:
        raise ValueError(f"ops must be a non-empty subset of {list(_OPS)}, got {list(ops)}")
    unique = (split == "test") if unique is None else unique
    want_test = split == "test"
    rng = random.Random(f"arithmetic:{seed}:{split}")
    operands = _operands(digits)
    if len(operands) ** 2 * len(ops) <= _ENUMERATE_BELOW:
        pool = _pool(digits, tuple(ops), test_fraction, want_test)
        if unique and n > len(pool):
            raise ValueError(
                f"only {len(pool)} distinct {split} problems with digits={digits}, ops={list(ops)}, "
                f"test_fraction={test_fraction}; ask for fewer, or set unique=False"
            )
        if not pool:
            raise ValueError(f"the {split} split is empty with test_fraction={test_fraction}")
        return rng.sample(pool, n) if unique else [rng.choice(pool) for _ in range(n)]
    return _rejection_sample(n, operands, list(ops), rng, test_fraction, want_test, unique)


@lru_cache(maxsize=16)
def _pool(digits: int, ops: tuple[str, ...], test_fraction: float, want_test: bool) -> list[Problem]:
    operands = _operands(digits)
    return [
        (a, op, b)
        for op in ops
        for a in operands
        for b in operands
        if _valid(a, op, b) and in_test_split((a, op, b), test_fraction) == want_test
    ]


def _rejection_sample(
    n: int,
    operands: range,
    ops: list[str],
    rng: random.Random,
    test_fraction: float,
    want_test: bool,
    unique: bool,
) -> list[Problem]:
    out: list[Problem] = []
    seen: set[Problem] = set()
    while len(out) < n:
        p = (rng.choice(operands), rng.choice(ops), rng.choice(operands))
        if not _valid(*p) or in_test_split(p, test_fraction) != want_test or (unique and p in seen):
            continue
        seen.add(p)
        out.append(p)
    return out


def _expression(problem: Problem) -> str:
    a, op, b = problem
    return f"{a} {op} {b}"


def arithmetic(
    n: int = 1000,
    digits: int = 1,
    ops: list[str] | tuple[str, ...] = ("+",),
    seed: int = 0,
    split: str = "train",
    test_fraction: float = 0.5,
    unique: bool | None = None,
) -> list[Example]:
    """Text problems "What is a + b?" with a number answer."""
    problems = sample_problems(
        n, digits=digits, ops=ops, seed=seed, split=split, test_fraction=test_fraction, unique=unique
    )
    return [
        Example(
            id=f"arithmetic-{split}-s{seed}-{i:06d}",
            question=f"What is {_expression(p)}?",
            answer=str(_OPS[p[1]](p[0], p[2])),
            answer_type="number",
            source="arithmetic",
            meta={"a": p[0], "op": p[1], "b": p[2]},
        )
        for i, p in enumerate(problems)
    ]


@lru_cache(maxsize=4)
def _font(size: int):
    from PIL import ImageFont

    return ImageFont.load_default(size=size)


def draw_expression(text: str, size: tuple[int, int] = (112, 112), font_size: int | None = None):
    """Black text centred on white, greyscale ("L": a third of RGB's memory; the renderer converts)."""
    from PIL import Image, ImageDraw

    width, height = size
    image = Image.new("L", size, color=255)
    draw = ImageDraw.Draw(image)
    fs = font_size or max(8, min(height // 3, int(1.6 * width / max(len(text), 1))))
    font = _font(fs)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    draw.text(
        ((width - (right - left)) / 2 - left, (height - (bottom - top)) / 2 - top), text, fill=0, font=font
    )
    return image


def arithmetic_vl(
    n: int = 1000,
    digits: int = 1,
    ops: list[str] | tuple[str, ...] = ("+",),
    seed: int = 0,
    split: str = "train",
    test_fraction: float = 0.5,
    unique: bool | None = None,
    image_size: tuple[int, int] | list[int] = (112, 112),
) -> list[Example]:
    """The arithmetic problems shown only in an image; the caption says what the image shows (phase 2)."""
    problems = sample_problems(
        n, digits=digits, ops=ops, seed=seed, split=split, test_fraction=test_fraction, unique=unique
    )
    cache: dict[Problem, object] = {}  # repeated problems share one image object (read-only downstream)
    out = []
    for i, p in enumerate(problems):
        expr = _expression(p)
        if p not in cache:
            cache[p] = draw_expression(expr, tuple(image_size))
        out.append(
            Example(
                id=f"arithmetic_vl-{split}-s{seed}-{i:06d}",
                question="What is the result of the expression in the image?",
                answer=str(_OPS[p[1]](p[0], p[2])),
                images=[cache[p]],
                answer_type="number",
                caption=f"An image showing the expression {expr} in black digits on white.",
                source="arithmetic_vl",
                meta={"a": p[0], "op": p[1], "b": p[2]},
            )
        )
    return out


GENERATORS: dict[str, Callable[..., list[Example]]] = {
    "arithmetic": arithmetic,
    "arithmetic_vl": arithmetic_vl,
}


def generate(name: str, **kwargs) -> list[Example]:
    """A built-in by name, or "package.module:function" imported on first use (recipes name their own)."""
    if name not in GENERATORS and ":" in name:
        import importlib

        module, _, attr = name.partition(":")
        try:
            GENERATORS[name] = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as e:
            raise ValueError(f"generator {name!r}: cannot import it ({e})") from None
    if name not in GENERATORS:
        raise ValueError(f"unknown generator {name!r}; built-ins: {sorted(GENERATORS)}")
    return GENERATORS[name](**kwargs)
