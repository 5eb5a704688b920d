"""The mini curriculum's problems as a data source for recipes, and the answer-only format check.

Recipes name the generator by import path, so nothing is imported until a recipe asks for it:

    data:
      - {generator: "phaserl.minivlm.data:mini_tasks", generator_args: {n: 600, split: train, seed: 1}}

`phaserl.data.generators.generate` resolves "module:function" names the first time they are used.

One generated list serves every view: the stage's `view` decides what the model sees (`render` uses
`meta["text_question"]` for the text view), so the same test items are scored text / image+caption / image.
"""

from __future__ import annotations

import re

from phaserl.data.schema import Example
from phaserl.minivlm.tasks import KINDS, MIN_CELLS, make_split

GENERATOR = "phaserl.minivlm.data:mini_tasks"
ANSWER_ONLY = "phaserl.minivlm.data:answer_only"

# A bare integer, optionally in $...$ and/or followed by a full stop: what "Answer with just the number."
# asks for. Anything else (a sentence, a second number, working) is not answer-only.
_ANSWER_ONLY_RE = re.compile(r"\$?\s*-?\d+\s*\$?\.?")


def mini_tasks(
    n: int = 600,
    split: str = "train",
    seed: int = 0,
    kinds: list[str] | tuple[str, ...] = KINDS,
    cells: int = MIN_CELLS,
    cell_px: int = 16,
) -> list[Example]:
    """n distinct problems of one split (train and test never share a problem, whatever the seeds).

    cells * cell_px must be the mini VLM's image size for one character per vision patch (12 * 16 = 192
    for the default build); the processor resizes anything else, blurring glyphs across patches.
    """
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise ValueError(f"unknown kinds {unknown}; choose from {KINDS}")
    return make_split(split, n, seed=seed, cells=cells, cell_px=cell_px, kinds=tuple(kinds))


def answer_only(text: str, example=None) -> float:
    """1.0 iff the response is just the number (the `number` template's contract), else 0.0.

    A reward with weight 0 still logs its rate, which is how the experiment reports a format rate for a
    template whose answer is a bare number (the tag formats do not apply to it).
    """
    return 1.0 if _ANSWER_ONLY_RE.fullmatch(text.strip()) else 0.0
