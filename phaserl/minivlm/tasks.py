"""Generated problems for the mini curriculum, each seen three ways (text, image+caption, image).

Three kinds, sized for a 135M language model: one-operation arithmetic, small word problems, simple
geometry with numbers (areas, perimeters, lengths). The default mini VLM answers 34% of 100 test problems
greedily in the text view within 48 new tokens, 10% with image+caption, 4% from the image alone: room to
learn in every view. Every problem has
  - a text question that holds all the information (view `text`),
  - a glyph-grid image that shows the problem, one character per vision patch (see glyphs.py),
  - a caption that describes the image in words (view `image+caption`),
  - an integer answer (answer_type "number"), so the rewards can verify it.

One Example list, not two: `question` holds the image-view question ("Solve the problem shown in the
image.") and `meta["text_question"]` the text one, which `render(example, "text")` uses. One list keeps
one id per problem across all three views, which is what a curriculum comparison needs (the same test item
scored text / image+caption / image), and the split is decided once. `for_view(examples, "text")` gives
text-only copies (text question, no image) for code that looks at `images` rather than at the view.

Splits: a problem's identity is its `key` (kind and numbers, not the names or wording that the image does
not show). A hash of the key puts each problem in train or test for ever, so the splits never overlap
whatever the seed or size, and `make_split` asserts it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass

from phaserl.data.schema import Example
from phaserl.minivlm.glyphs import Grid, draw_grid

KINDS = ("arith", "word", "geometry")
# Bumped whenever the problems change: the default mini VLM is aligned on train problem images, so its cache
# key (benchmarks/curriculum_mini.py) includes this. 2: one-operation problems (version 1's two- and
# three-step ones left SmolLM2-135M at 0-10%, too few successes for GRPO groups to learn from).
TASKS_VERSION = 2
SPLITS = ("train", "test")
TEST_SHARE = 5  # one problem in TEST_SHARE (by key hash) belongs to the test split

IMAGE_QUESTIONS = {
    "arith": "Compute the value of the expression shown in the image.",
    "word": "Solve the word problem written in the image.",
    "geometry": "Solve the geometry problem shown in the image.",
}


@dataclass
class Problem:
    kind: str
    key: str  # identity for dedup and splits: kind + numbers
    text_question: str
    caption: str
    answer: int
    grid: Grid  # layout only; colours, jitter and noise are drawn at render time


def split_of(key: str) -> str:
    """The split a problem belongs to, fixed by its key (never by the seed)."""
    bucket = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % TEST_SHARE
    return "test" if bucket == 0 else "train"


# ---------------------------------------------------------------- arithmetic

# (pattern, how to compute, range of each number): one operation, small numbers, as a 135M LM can do some
ARITH_FORMS = (
    ("{}+{}", lambda a, b: a + b, (1, 9), (1, 9)),
    ("{}+{}", lambda a, b: a + b, (10, 30), (1, 9)),
    ("{}-{}", lambda a, b: a - b, (5, 20), (1, 9)),
    ("{}*{}", lambda a, b: a * b, (2, 9), (2, 5)),
)


def gen_arith(rng: random.Random, cells: int) -> Problem:
    """One operation on small numbers; the answer is never negative."""
    while True:
        pattern, fn, ra, rb = rng.choice(ARITH_FORMS)
        nums = [rng.randint(*ra), rng.randint(*rb)]
        answer = fn(*nums)
        if answer >= 0:
            break
    expr = pattern.format(*nums)
    spaced = expr.replace("+", " + ").replace("-", " - ").replace("*", " * ")
    line = expr + "=?"
    grid = Grid(cells)
    grid.put(rng.randrange(cells), rng.randint(0, cells - len(line)), line)
    return Problem(
        "arith",
        f"arith:{expr}",
        f"Compute {spaced}.",
        f"The image shows the expression {spaced} = ? written on one line.",
        answer,
        grid,
    )


# ---------------------------------------------------------------- word problems

NAMES = ("Sam", "Ana", "Tom", "Mia", "Leo", "Zoe")
ITEMS = ("pens", "cards", "eggs", "cups", "toys", "books")


def _word_story(rng: random.Random) -> tuple[str, str, list[str], int]:
    """(key part, text question, image lines, answer) for one of three one-operation story shapes."""
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    shape = rng.randrange(3)
    if shape == 0:
        a, b = rng.randint(2, 20), rng.randint(1, 9)
        return (
            f"more:{item}:{a}:{b}",
            f"{name} has {a} {item} and buys {b} more. How many {item} does {name} have now?",
            [f"has {a} {item}", f"buys {b}", "total=?"],
            a + b,
        )
    if shape == 1:
        a = rng.randint(5, 20)
        b = rng.randint(1, min(9, a - 1))
        return (
            f"gives:{item}:{a}:{b}",
            f"{name} has {a} {item} and gives away {b}. How many {item} are left?",
            [f"has {a} {item}", f"gives {b}", "left=?"],
            a - b,
        )
    price, count = rng.randint(2, 9), rng.randint(2, 5)
    return (
        f"cost:{price}:{count}",
        f"One pen costs {price} dollars. {name} buys {count} pens. How many dollars does that cost?",
        [f"pen costs {price}", f"buys {count} pens", "cost=?"],
        price * count,
    )


def gen_word(rng: random.Random, cells: int) -> Problem:
    """A two- or three-line note; the names in the text question are not in the image, so not in the key."""
    key, text, lines, answer = _word_story(rng)
    grid = Grid(cells)
    width = max(len(line) for line in lines)
    top = rng.randint(0, cells - len(lines))
    col = rng.randint(0, cells - width)
    for i, line in enumerate(lines):
        grid.put(top + i, col, line)
    quoted = ", ".join(f'"{line}"' for line in lines[:-1]) + f' and "{lines[-1]}"'
    caption = f"The image shows a note with {len(lines)} lines of text: {quoted}."
    return Problem("word", f"word:{key}", text, caption, answer, grid)


# ---------------------------------------------------------------- geometry
# Each shape is drawn with strokes through cell centres; number labels sit in cells no stroke crosses.


def _quad(grid: Grid, rng: random.Random, square: bool) -> tuple[str, str, str, int, str]:
    """Rectangle or square: width under the bottom side, height (rectangle only) right of the right side."""
    cells = grid.cells
    top, left = rng.randint(2, 3), rng.randint(0, 2)
    bottom, right = rng.randint(top + 3, cells - 3), rng.randint(left + 4, cells - 4)
    corners = [(top, left), (top, right), (bottom, right), (bottom, left)]
    grid.strokes += list(zip(corners, corners[1:] + corners[:1]))
    w = rng.randint(2, 12)
    h = w if square else rng.randint(2, 9)
    grid.put(bottom + 1, (left + right) // 2, str(w))
    if not square:
        grid.put((top + bottom) // 2, right + 1, str(h))
    ask = rng.choice(("area", "perim")) if square else "area"  # a rectangle's perimeter takes two operations
    answer = w * h if ask == "area" else 2 * (w + h)
    what = "area" if ask == "area" else "perimeter"
    if square:
        text = f"A square has side {w}. What is its {what}?"
        caption = f"The image shows a square whose bottom side is labelled {w}."
    else:
        text = f"A rectangle has width {w} and height {h}. What is its {what}?"
        caption = f"The image shows a rectangle whose bottom side is labelled {w} and right side {h}."
    name = "square" if square else "rectangle"
    return f"{name}:{ask}:{w}:{h}", text, caption, answer, ask


def _segment(grid: Grid, rng: random.Random) -> tuple[str, str, str, int, str]:
    """A line split in two by a tick, each part's length written above it; the whole length is asked for."""
    cells = grid.cells
    row, c0 = rng.randint(4, cells - 3), rng.randint(0, 2)
    c2 = rng.randint(c0 + 8, cells - 1)
    c1 = (c0 + c2) // 2
    grid.strokes += [((row, c0), (row, c2)), ((row, c1), (row + 1, c1))]
    a, b = rng.randint(2, 30), rng.randint(1, 9)
    grid.put(row - 1, c0 + (c1 - c0 - len(str(a))) // 2 + 1, str(a))
    grid.put(row - 1, c1 + (c2 - c1 - len(str(b))) // 2 + 1, str(b))
    text = f"A line segment is made of two parts of lengths {a} and {b}. What is its total length?"
    caption = f"The image shows a line segment split into two parts labelled {a} and {b}."
    return f"segment:length:{a}:{b}", text, caption, a + b, "length"


def gen_geometry(rng: random.Random, cells: int) -> Problem:
    """A rectangle, square or split line segment drawn with strokes, its numbers beside it, the ask on top."""
    grid = Grid(cells)
    shape = rng.randrange(3)
    if shape < 2:
        key, text, caption, answer, ask = _quad(grid, rng, square=shape == 1)
    else:
        key, text, caption, answer, ask = _segment(grid, rng)
    line = f"{ask}=?"
    grid.put(0, rng.randint(0, cells - len(line)), line)
    caption += f' Above it is written "{line}".'
    return Problem("geometry", f"geometry:{key}", text, caption, answer, grid)


GENERATORS: dict[str, Callable[[random.Random, int], Problem]] = {
    "arith": gen_arith,
    "word": gen_word,
    "geometry": gen_geometry,
}


# ---------------------------------------------------------------- examples and splits

MIN_CELLS = 12  # the longest image line ("pen costs 9", "has 15 cards") needs 12 cells


def generate_problems(
    split: str, n: int, *, seed: int = 0, cells: int = MIN_CELLS, kinds: tuple[str, ...] = KINDS
) -> list[Problem]:
    """n distinct problems of `split`, kinds in turn. Deterministic in (split, n, seed, cells, kinds)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose from {SPLITS}")
    if cells < MIN_CELLS:
        raise ValueError(f"cells={cells}: the problems need a grid of at least {MIN_CELLS} cells a side")
    rng = random.Random(f"minivlm:{split}:{seed}")
    seen: set[str] = set()
    out: list[Problem] = []
    max_draws = 200 * n + 1000
    for _ in range(max_draws):
        if len(out) == n:
            return out
        problem = GENERATORS[kinds[len(out) % len(kinds)]](rng, cells)
        if problem.key not in seen and split_of(problem.key) == split:
            seen.add(problem.key)
            out.append(problem)
    if len(out) < n:
        raise ValueError(
            f"could only find {len(out)} distinct {split} problems of kinds {kinds} "
            f"in {max_draws} draws; ask for fewer"
        )
    return out


def to_example(problem: Problem, split: str, *, seed: int = 0, cell_px: int = 16) -> Example:
    """Render the problem's image (style drawn from a seed of its own, so an item looks the same every time)."""
    image = draw_grid(problem.grid, cell_px, random.Random(f"minivlm:style:{seed}:{problem.key}"))
    digest = hashlib.sha256(problem.key.encode()).hexdigest()[:10]
    return Example(
        id=f"minivlm-{problem.kind}-{digest}",
        question=IMAGE_QUESTIONS[problem.kind],
        answer=str(problem.answer),
        images=[image],
        caption=problem.caption,
        answer_type="number",
        source=f"minivlm/{problem.kind}",
        meta={
            "text_question": problem.text_question,
            "kind": problem.kind,
            "key": problem.key,
            "split": split,
            "cell_labels": "".join(problem.grid.labels()),
            "image_lines": problem.grid.rows(),
        },
    )


def make_split(
    split: str,
    n: int,
    *,
    seed: int = 0,
    cells: int = MIN_CELLS,
    cell_px: int = 16,
    kinds: tuple[str, ...] = KINDS,
) -> list[Example]:
    """n Examples of one split (image-view question in `question`; see the module docstring)."""
    problems = generate_problems(split, n, seed=seed, cells=cells, kinds=kinds)
    return [to_example(p, split, seed=seed, cell_px=cell_px) for p in problems]


def make_splits(
    n_train: int, n_test: int, *, seed: int = 0, cells: int = MIN_CELLS, cell_px: int = 16
) -> tuple[list[Example], list[Example]]:
    """Train and test Examples, checked to share no problem."""
    train = make_split("train", n_train, seed=seed, cells=cells, cell_px=cell_px)
    test = make_split("test", n_test, seed=seed, cells=cells, cell_px=cell_px)
    assert_disjoint(train, test)
    return train, test


def assert_disjoint(a: list[Example], b: list[Example]) -> None:
    """Raise if any problem (by key, by id or by text question) is in both lists."""
    for field_of in (lambda e: e.meta["key"], lambda e: e.id, lambda e: e.meta["text_question"]):
        shared = {field_of(e) for e in a} & {field_of(e) for e in b}
        if shared:
            raise AssertionError(f"{len(shared)} problems are in both splits, e.g. {sorted(shared)[:3]}")


def for_view(examples: list[Example], view: str) -> list[Example]:
    """The Examples to render in `view`: for "text" the text question and no image, else unchanged."""
    if view != "text":
        return list(examples)
    return [
        dataclasses.replace(
            e, question=e.meta["text_question"], images=[], caption=None, meta={**e.meta, "view": "text"}
        )
        for e in examples
    ]


def train_grid_sampler(cells: int = MIN_CELLS, seed: int = 0) -> Callable[[random.Random], Grid]:
    """Layouts of train-split problems, for the alignment to see real problem images (never test ones)."""
    pool = [p.grid for p in generate_problems("train", 600, seed=seed + 1, cells=cells)]
    return lambda rng: rng.choice(pool)
