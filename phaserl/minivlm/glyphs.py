"""Glyph grids: images in which every character sits in its own vision patch.

The mini VLM's vision tower cuts an image into `cells x cells` patches of `cell_px` pixels. We draw each
character inside one cell (with jitter, size, weight, colour and noise so that reading it is not trivial),
so every patch has a label: the character drawn in it, or " " for a blank cell (blank cells may carry
diagram strokes, e.g. the sides of a rectangle). The labels are what the alignment trains the patch features
to look like (the LM's embedding of that character's token), and what perception accuracy is measured against.

Patch order is row-major (SigLIP flattens its patch grid row by row): label index = row * cells + col.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

# Every character a grid may show. One character = one token of SmolLM2's tokenizer (checked in build.py).
DIGITS = "0123456789"
LETTERS = "abcdefghijklmnopqrstuvwxyz"
SYMBOLS = "+-*/=()?:,."
CHARSET = DIGITS + LETTERS + SYMBOLS
BLANK = " "


@dataclass
class Grid:
    """What to draw: text runs at cell positions and strokes through cell centres."""

    cells: int
    text: dict[tuple[int, int], str] = field(default_factory=dict)  # (row, col) -> one character
    strokes: list[tuple[tuple[int, int], tuple[int, int]]] = field(default_factory=list)  # cell -> cell

    def put(self, row: int, col: int, run: str) -> None:
        """Write a run of characters from (row, col) to the right; spaces leave cells blank."""
        if not 0 <= row < self.cells or col < 0 or col + len(run) > self.cells:
            raise ValueError(f"run {run!r} at ({row}, {col}) does not fit a {self.cells}x{self.cells} grid")
        for i, ch in enumerate(run):
            if ch == BLANK:
                continue
            if ch not in CHARSET:
                raise ValueError(f"character {ch!r} is not drawable; allowed: {CHARSET!r}")
            self.text[(row, col + i)] = ch

    def labels(self) -> list[str]:
        """[cells*cells] the character in each patch, row-major; blank cells are " "."""
        return [self.text.get((r, c), BLANK) for r in range(self.cells) for c in range(self.cells)]

    def rows(self) -> list[str]:
        """The grid as text lines (trailing blanks stripped), for captions and debugging."""
        lines = [
            "".join(self.text.get((r, c), BLANK) for c in range(self.cells)).rstrip()
            for r in range(self.cells)
        ]
        return lines


@lru_cache(maxsize=16)
def _font(size: int) -> ImageFont.FreeTypeFont:
    # Pillow's embedded font: identical on every machine with the same Pillow, so images are reproducible.
    return ImageFont.load_default(size=size)


@lru_cache(maxsize=4096)
def glyph_mask(ch: str, size: int) -> np.ndarray:
    """[h, w] ink coverage in [0, 1] of one character, cropped to its ink box. Cached: the alignment draws
    millions of glyphs, and compositing cached masks is far faster than asking FreeType every time."""
    font = _font(size)
    left, top, right, bottom = font.getbbox(ch)
    canvas = Image.new("L", (max(1, right - left), max(1, bottom - top)), 0)
    ImageDraw.Draw(canvas).text((-left, -top), ch, font=font, fill=255)
    return np.asarray(canvas, dtype=np.float32) / 255.0


@lru_cache(maxsize=2)
def _noise_bank(side: int) -> np.ndarray:
    """[side, side, 3] standard normal pixels; images take a random window (much cheaper than fresh noise)."""
    return np.random.default_rng(0).standard_normal((side, side, 3)).astype(np.float32)


def _style(rng: random.Random, invert: float = 0.0) -> dict:
    """Random but readable colours: a light paper of any tint with an ink of any dark hue (or, with
    probability `invert`, the reverse; off by default: it doubles what the small tower must learn)."""
    light = [rng.randint(185, 255) for _ in range(3)]
    dark = [rng.randint(0, 100) for _ in range(3)]
    if invert and rng.random() < invert:
        light, dark = dark, light
    return {
        "bg": np.array(light, np.float32),
        "ink": np.array(dark, np.float32),
        "noise": rng.uniform(0.0, 18.0),
    }


def draw_grid(grid: Grid, cell_px: int, rng: random.Random, *, jitter: int = 2) -> Image.Image:
    """Render a grid as an RGB image (see render_array)."""
    return Image.fromarray(render_array(grid, cell_px, rng, jitter=jitter))


def render_array(grid: Grid, cell_px: int, rng: random.Random, *, jitter: int = 2) -> np.ndarray:
    """[H, W, 3] uint8. Jitter moves each glyph up to `jitter` px off its cell centre, never out of its cell."""
    size = grid.cells * cell_px
    style = _style(rng)
    strokes = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(strokes)
    for a, b in grid.strokes:
        ends = [((p[1] + 0.5) * cell_px, (p[0] + 0.5) * cell_px) for p in (a, b)]
        draw.line(ends, fill=255, width=rng.choice((1, 2)))
    ink = np.asarray(strokes, dtype=np.float32) / 255.0  # [H, W] ink coverage
    for (row, col), ch in grid.text.items():
        mask = glyph_mask(ch, rng.randint(max(8, cell_px - 5), max(9, cell_px - 2)))
        h, w = min(mask.shape[0], cell_px), min(mask.shape[1], cell_px)
        # Centre the ink box in the cell, then jitter within the slack that keeps it inside the cell.
        dy = (cell_px - h) // 2 + rng.randint(
            -min(jitter, (cell_px - h) // 2), min(jitter, (cell_px - h) // 2)
        )
        dx = (cell_px - w) // 2 + rng.randint(
            -min(jitter, (cell_px - w) // 2), min(jitter, (cell_px - w) // 2)
        )
        y, x = row * cell_px + dy, col * cell_px + dx
        np.maximum(ink[y : y + h, x : x + w], mask[:h, :w], out=ink[y : y + h, x : x + w])
    arr = style["bg"] + (style["ink"] - style["bg"]) * ink[:, :, None]  # [H, W, 3]
    if style["noise"] > 0:
        bank = _noise_bank(max(512, size + 1))
        y, x = rng.randrange(bank.shape[0] - size), rng.randrange(bank.shape[1] - size)
        arr = arr + style["noise"] * bank[y : y + size, x : x + size]
    return np.clip(arr, 0, 255).astype(np.uint8)


# Words that appear in the generated problems' images; random grids use them too so the alignment sees
# letters in the combinations it will meet.
WORDS = (
    "has",
    "buys",
    "gets",
    "gives",
    "eats",
    "bags",
    "boxes",
    "each",
    "left",
    "total",
    "apples",
    "pens",
    "cards",
    "area",
    "sides",
    "angle",
    "rect",
    "square",
    "tri",
    "perim",
    "x",
    "cost",
    "sum",
)


def random_run(rng: random.Random, max_len: int) -> str:
    """A short run of characters: a number, an expression, a word, or random characters."""
    kind = rng.random()
    if kind < 0.3:
        run = str(rng.randint(0, 999))
    elif kind < 0.55:
        ops = "+-*/="
        run = "".join(str(rng.randint(1, 99)) + rng.choice(ops) for _ in range(rng.randint(1, 3))) + "?"
    elif kind < 0.8:
        run = rng.choice(WORDS) + rng.choice(("", " ", ":", "=")) + str(rng.randint(1, 50))
    else:
        run = "".join(rng.choice(CHARSET) for _ in range(rng.randint(1, max_len)))
    return run[:max_len]


def random_grid(cells: int, rng: random.Random, *, fill: float = 0.6) -> Grid:
    """A grid with random runs on some rows and, sometimes, a few strokes (so strokes read as blank)."""
    grid = Grid(cells)
    for row in range(cells):
        if rng.random() > fill:
            continue
        run = random_run(rng, cells)
        col = rng.randint(0, cells - len(run))
        grid.put(row, col, run)
    if rng.random() < 0.3:
        free = [(r, c) for r in range(cells) for c in range(cells) if (r, c) not in grid.text]
        for _ in range(rng.randint(1, 3)):
            a = rng.choice(free)
            b = (a[0], rng.randrange(cells)) if rng.random() < 0.5 else (rng.randrange(cells), a[1])
            if _segment_is_free(grid, a, b):
                grid.strokes.append((a, b))
    return grid


def _segment_is_free(grid: Grid, a: tuple[int, int], b: tuple[int, int]) -> bool:
    """True when a horizontal/vertical stroke from a to b crosses no text cell (strokes must stay blank)."""
    rows = range(min(a[0], b[0]), max(a[0], b[0]) + 1)
    cols = range(min(a[1], b[1]), max(a[1], b[1]) + 1)
    return all((r, c) not in grid.text for r in rows for c in cols)


# The image processor's normalisation. Centred on the paper colour (not the usual 0.5 / 0.5): blank paper
# then maps near 0 and ink far from it, which lets a tiny tower trained for minutes learn much faster
# than with inputs that share a large common offset.
PIXEL_MEAN = 0.86
PIXEL_STD = 0.25


def to_pixels(images: list) -> torch.Tensor:
    """[n, 3, H, W] float32 from PIL images or [H, W, 3] uint8 arrays: what the mini VLM's
    SiglipImageProcessor gives for an image already at the model's size. The alignment loop uses this
    because it is far faster than the processor (a test checks that the two agree)."""
    arr = np.stack(
        [np.asarray(img.convert("RGB") if isinstance(img, Image.Image) else img) for img in images]
    )
    pixels = torch.from_numpy(arr).permute(0, 3, 1, 2).float()  # [n, 3, H, W]
    return (pixels / 255.0 - PIXEL_MEAN) / PIXEL_STD
