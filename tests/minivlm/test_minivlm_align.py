"""Pure pieces of the mini VLM's alignment, with values worked out by hand (no model needed)."""

from __future__ import annotations

import random

import pytest
import torch

from phaserl.minivlm.align import AlignConfig, balanced_mean, lr_factor, make_batch, sample_grids, sq_dist
from phaserl.minivlm.glyphs import BLANK, CHARSET
from phaserl.minivlm.perception import nearest_tokens


def test_sq_dist_by_hand():
    f = torch.tensor([[0.0, 0.0], [1.0, 2.0]])  # [M=2, D=2]
    e = torch.tensor([[3.0, 4.0], [1.0, 0.0], [1.0, 2.0]])  # [K=3, D=2]
    # row 0: 9+16, 1, 1+4; row 1: 4+4, 0+4, 0
    assert sq_dist(f, e).tolist() == [[25.0, 1.0, 5.0], [8.0, 4.0, 0.0]]
    assert nearest_tokens(f, e).tolist() == [1, 2]


def test_balanced_mean_weights_blanks_and_characters_equally():
    per_patch = torch.tensor([1.0, 3.0, 10.0, 10.0, 10.0, 10.0])
    t = torch.tensor([5, 6, 0, 0, 0, 0])  # two character patches, four blank ones (blank id 0)
    # (mean(1, 3) + mean(10, 10, 10, 10)) = 2 + 10; a plain mean would be 44 / 6
    assert balanced_mean(per_patch, t, blank_id=0).item() == pytest.approx(12.0)
    # no blank patch at all: the character mean alone, on the same scale
    assert balanced_mean(per_patch[:2], t[:2], blank_id=0).item() == pytest.approx(4.0)


def test_lr_factor_warms_up_then_decays():
    steps = 100  # warm-up = 5 steps
    assert lr_factor(0, steps) == pytest.approx(0.2)
    assert lr_factor(4, steps) == pytest.approx(1.0)
    assert lr_factor(5, steps) == pytest.approx(1.0)
    assert lr_factor(100, steps) == pytest.approx(0.05)
    values = [lr_factor(s, steps) for s in range(5, 101)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_batches_label_every_patch():
    cfg = AlignConfig(batch_size=4)
    token_ids = {ch: i for i, ch in enumerate(CHARSET + BLANK)}
    rng = random.Random(0)
    grids = sample_grids(4, cfg, rng, problem_grids=None)
    pixels, targets = make_batch(grids, token_ids, cfg, rng)
    assert pixels.shape == (4, 3, 192, 192) and targets.shape == (4, 144)
    for grid, row in zip(grids, targets.tolist()):
        assert row == [token_ids[ch] for ch in grid.labels()]
    assert (targets != token_ids[BLANK]).any() and (targets == token_ids[BLANK]).any()
