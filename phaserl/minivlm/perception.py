"""How well the mini VLM's vision side reads: nearest-token accuracy of its patch features.

For each patch of an image, find the LM token whose input embedding is nearest (L2) to the patch's
projected feature, over the LM's whole vocabulary, and compare with the character drawn in that patch.
Measured on held-out images: random glyph grids from a seed the alignment never uses, and the images of
test-split problems (the alignment only ever sees train-split layouts).
"""

from __future__ import annotations

import random

import torch

from phaserl.minivlm.align import AlignConfig, make_batch, patch_features, sq_dist
from phaserl.minivlm.glyphs import BLANK, Grid, random_grid


@torch.no_grad()
def nearest_tokens(feats: torch.Tensor, embed: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """[M] index of the nearest row of embed [V, D] (L2) for each feature of feats [M, D]."""
    if len(feats) == 0:
        return torch.zeros(0, dtype=torch.long)
    return torch.cat([sq_dist(part, embed).argmin(-1) for part in feats.split(chunk)])


@torch.no_grad()
def perception_accuracy(
    model,
    grids: list[Grid],
    token_ids: dict[str, int],
    cfg: AlignConfig,
    rng: random.Random,
    blank_every: int = 8,
) -> dict[str, float]:
    """Nearest-token accuracy (full vocabulary) on the character cells of these grids and on every
    `blank_every`-th blank cell (the full-vocabulary search is the costly part; blanks are plentiful)."""
    embed = model.get_input_embeddings().weight  # [V, D]
    hits = {"char": 0, "blank": 0}
    totals = {"char": 0, "blank": 0}
    for i in range(0, len(grids), 16):
        pixels, targets = make_batch(grids[i : i + 16], token_ids, cfg, rng)
        feats = patch_features(model, pixels).flatten(0, 1)  # [n*P, D]
        t = targets.reshape(-1)  # [n*P]
        blank = t == token_ids[BLANK]
        for name, rows in (
            ("char", (~blank).nonzero().squeeze(1)),
            ("blank", blank.nonzero().squeeze(1)[::blank_every]),
        ):
            pred = nearest_tokens(feats[rows], embed)
            hits[name] += int((pred == t[rows]).sum())
            totals[name] += len(rows)
    return {
        "char_accuracy": hits["char"] / max(1, totals["char"]),
        "blank_accuracy": hits["blank"] / max(1, totals["blank"]),
        "chars": totals["char"],
    }


def perception_report(model, token_ids: dict[str, int], cfg: AlignConfig, n_images: int = 32) -> dict:
    """Perception on held-out random grids and on test-split problem images, with chance for reference
    (one over the number of drawable characters: a reader that knows only that a cell is not blank)."""
    from phaserl.minivlm.tasks import generate_problems

    rng = random.Random(f"minivlm:heldout:{cfg.seed}")
    grids = [random_grid(cfg.cells, rng) for _ in range(n_images)]
    held = perception_accuracy(model, grids, token_ids, cfg, rng)
    problems = [p.grid for p in generate_problems("test", n_images, seed=cfg.seed, cells=cfg.cells)]
    prob = perception_accuracy(model, problems, token_ids, cfg, rng)
    chance = 1 / (len(set(token_ids.values())) - 1)
    return {
        "perception_accuracy": held["char_accuracy"],
        "blank_accuracy": held["blank_accuracy"],
        "problem_char_accuracy": prob["char_accuracy"],
        "problem_blank_accuracy": prob["blank_accuracy"],
        "chance_accuracy": chance,
        "heldout_chars": held["chars"],
    }
