"""Dynamic-sampling, overlong and accuracy-band filters against hand values."""

import pytest
import torch

from phaserl.algo.advantages import grpo
from phaserl.algo.filters import (
    accuracy_band,
    expand_to_samples,
    group_pass_rate,
    overlong_mask,
    zero_variance_groups,
)


def test_zero_variance_groups_hand_values():
    # [1,0,0,1] has spread 1 -> keep; [1,1,1,1] spread 0 -> drop
    keep = zero_variance_groups(torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0]), 4)
    assert keep.tolist() == [True, False]
    # G=3: [0,0,0] drop; [0,0,0.001] keep; float noise 1e-10 is below tol -> drop
    r = torch.tensor([0.0, 0.0, 0.0, 0.0, 0.0, 1e-3, 0.5, 0.5 + 1e-10, 0.5], dtype=torch.float64)
    assert zero_variance_groups(r, 3).tolist() == [False, True, False]


def test_zero_variance_groups_are_those_with_zero_advantage():
    r = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0])
    keep = expand_to_samples(zero_variance_groups(r, 3), 3)
    adv = grpo(r, 3)
    assert (adv[~keep] == 0).all() and (adv[keep] != 0).all()


def test_zero_variance_groups_checks_layout():
    with pytest.raises(ValueError, match="multiple"):
        zero_variance_groups(torch.zeros(5), 2)


def test_overlong_mask_hand_values():
    assert overlong_mask(torch.tensor([False, True, False])).tolist() == [1.0, 0.0, 1.0]
    assert overlong_mask(torch.tensor([0, 1])).dtype == torch.float32
    # used as a token-mask multiplier
    mask = torch.ones(3, 2) * overlong_mask(torch.tensor([False, True, False]))[:, None]
    assert mask.tolist() == [[1.0, 1.0], [0.0, 0.0], [1.0, 1.0]]
    with pytest.raises(ValueError, match="flat"):
        overlong_mask(torch.zeros(2, 2, dtype=torch.bool))


def test_accuracy_band_hand_values_bounds_inclusive():
    rate = torch.tensor([0.0, 0.1, 0.5, 0.9, 1.0])
    assert accuracy_band(rate, 0.1, 0.9).tolist() == [False, True, True, True, False]
    assert accuracy_band(rate, 0.0, 1.0).all()
    with pytest.raises(ValueError, match="low"):
        accuracy_band(rate, 0.9, 0.1)
    with pytest.raises(ValueError):
        accuracy_band(rate, -0.1, 0.5)


def test_group_pass_rate_and_expand():
    # [1,0,0,1] -> 2/4; [1,1,1,0.5] with threshold 1 -> 3/4, with threshold 0.5 -> 4/4
    r = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.5])
    assert group_pass_rate(r, 4).tolist() == [0.5, 0.75]
    assert group_pass_rate(r, 4, threshold=0.5).tolist() == [0.5, 1.0]
    per_sample = expand_to_samples(torch.tensor([True, False]), 3)
    assert per_sample.tolist() == [True, True, True, False, False, False]
