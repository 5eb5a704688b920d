"""Advantage estimators against values worked out by hand (B=2 prompts)."""

import math

import pytest
import torch

from phaserl.algo.advantages import ADVANTAGES, compute_advantages, dr_grpo, grpo, reinforce_pp_baseline, rloo

# B=2, G=4: one mixed group, one group where every sample is right.
R4 = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0])
# B=2, G=3.
R3 = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 1.0])


def close(a: torch.Tensor, b: list[float], tol: float = 1e-5) -> bool:
    return torch.allclose(a, torch.tensor(b), atol=tol)


def test_grpo_hand_values_g4():
    # group 1: mean 0.5, deviations +-0.5, unbiased var = 4 * 0.25 / 3 = 1/3, std = 0.57735
    # adv = +-0.5 / 0.57735 = +-0.866025 (sqrt(3)/2); group 2: all equal -> 0 / (0 + eps) = 0
    a = 0.5 / math.sqrt(1 / 3)
    assert close(grpo(R4, 4), [a, -a, -a, a, 0, 0, 0, 0])


def test_grpo_hand_values_g3():
    # group [1,0,0]: mean 1/3, deviations [2/3, -1/3, -1/3], var = (4/9 + 1/9 + 1/9) / 2 = 1/3
    # adv = [2/3, -1/3, -1/3] / 0.57735 = [1.154701, -0.577350, -0.577350]; group [0,1,1] mirrors it
    assert close(grpo(R3, 3), [1.154701, -0.577350, -0.577350, -1.154701, 0.577350, 0.577350])


def test_dr_grpo_hand_values():
    # r - group mean, no std: group 1 mean 0.5, group 2 mean 1
    assert close(dr_grpo(R4, 4), [0.5, -0.5, -0.5, 0.5, 0, 0, 0, 0])
    # group [1,0,0]: mean 1/3; group [0,1,1]: mean 2/3
    assert close(dr_grpo(R3, 3), [2 / 3, -1 / 3, -1 / 3, -2 / 3, 1 / 3, 1 / 3])


def test_rloo_hand_values():
    # r=1 in [1,0,0,1]: others (0,0,1) mean 1/3 -> 2/3; r=0: others (1,0,1) mean 2/3 -> -2/3
    assert close(rloo(R4, 4), [2 / 3, -2 / 3, -2 / 3, 2 / 3, 0, 0, 0, 0])
    # G=3, [1,0,0]: 1 - mean(0,0) = 1; 0 - mean(1,0) = -0.5; [0,1,1]: 0 - 1 = -1; 1 - mean(0,1) = 0.5
    assert close(rloo(R3, 3), [1.0, -0.5, -0.5, -1.0, 0.5, 0.5])


def test_rloo_is_scaled_dr_grpo():
    # r_i - (S - r_i)/(G-1) = G/(G-1) * (r_i - S/G): a second, independent route to the same numbers
    r = torch.rand(12, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(rloo(r, 4), dr_grpo(r, 4) * 4 / 3, atol=1e-6)


def test_reinforce_pp_baseline_hand_values():
    # centred = [0.5,-0.5,-0.5,0.5, 0,0,0,0], batch mean 0, population var over N=8 (OpenRLHF's
    # whitening): 4 * 0.25 / 8 = 1/8, std = 0.353553, adv = +-0.5 / 0.353553 = +-1.414214 (sqrt(2));
    # the all-equal group stays 0
    a = 0.5 / math.sqrt(1 / 8)
    assert close(reinforce_pp_baseline(R4, 4), [a, -a, -a, a, 0, 0, 0, 0])


def test_reinforce_pp_uses_batch_std_not_group_std():
    # groups with different spreads keep their relative scale: [0,2] and [0,1] -> centred [-1,1,-.5,.5]
    # population std over 4 = sqrt((1+1+.25+.25)/4) = sqrt(0.625) = 0.790569
    s = math.sqrt(2.5 / 4)
    adv = reinforce_pp_baseline(torch.tensor([0.0, 2.0, 0.0, 1.0]), 2)
    assert close(adv, [-1 / s, 1 / s, -0.5 / s, 0.5 / s])
    # whereas GRPO rescales each group to the same size
    g = grpo(torch.tensor([0.0, 2.0, 0.0, 1.0]), 2)
    assert torch.allclose(g[:2].abs(), g[2:].abs(), atol=1e-5)


@pytest.mark.parametrize("name", sorted(ADVANTAGES))
def test_all_equal_rewards_give_zero_not_nan(name):
    adv = compute_advantages(name, torch.full((6,), 0.7), 3)
    assert torch.isfinite(adv).all()
    assert torch.allclose(adv, torch.zeros(6), atol=1e-6)  # 0 up to float rounding of the mean


@pytest.mark.parametrize("name", sorted(ADVANTAGES))
def test_group_size_one_raises(name):
    with pytest.raises(ValueError, match="G >= 2"):
        compute_advantages(name, torch.tensor([1.0, 0.0]), 1)


@pytest.mark.parametrize("name", sorted(ADVANTAGES))
def test_n_not_divisible_by_g_raises(name):
    with pytest.raises(ValueError, match="not a positive multiple"):
        compute_advantages(name, torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0]), 2)


@pytest.mark.parametrize("name", sorted(ADVANTAGES))
def test_advantages_sum_to_zero_per_group_and_keep_shape(name):
    r = torch.rand(15, generator=torch.Generator().manual_seed(1))
    adv = compute_advantages(name, r, 5)
    assert adv.shape == (15,)
    assert torch.allclose(adv.view(3, 5).sum(dim=1), torch.zeros(3), atol=1e-5)


def test_integer_rewards_are_accepted_and_2d_rejected():
    assert close(dr_grpo(torch.tensor([1, 0, 0, 1]), 2), [0.5, -0.5, -0.5, 0.5])
    with pytest.raises(ValueError, match="flat"):
        grpo(R4.view(2, 4), 4)


def test_compute_advantages_dispatches_and_lists_names():
    assert torch.equal(compute_advantages("rloo", R4, 4), rloo(R4, 4))
    with pytest.raises(ValueError, match="dr_grpo, grpo, reinforce_pp_baseline, rloo"):
        compute_advantages("ppo", R4, 4)
