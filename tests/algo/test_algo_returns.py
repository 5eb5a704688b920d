"""Per-token rewards, reward-to-go, GAE, whitening, REINFORCE++-baseline (OpenRLHF form), value loss,
overlong shaping and low-variance KL against values worked out by hand."""

import math

import pytest
import torch

from phaserl.algo import (
    gae,
    gae_advantages,
    kl_k3,
    kl_low_var,
    masked_whiten,
    overlong_penalty,
    reinforce_pp_baseline,
    reinforce_pp_baseline_tokens,
    reward_to_go,
    standardize,
    token_rewards,
    value_loss,
)


def close(a: torch.Tensor, b, tol: float = 1e-5) -> bool:
    return torch.allclose(a.float(), torch.tensor(b, dtype=torch.float32), atol=tol)


MASK = torch.tensor([[1, 1, 1], [1, 1, 0]], dtype=torch.float32)  # row 0: 3 tokens, row 1: 2 tokens


def test_token_rewards_put_reward_on_last_real_token_and_kl_on_every_token():
    kl = torch.tensor([[0.1, 0.2, 0.3], [0.4, 0.5, 99.0]])  # padding holds junk
    tok = token_rewards(torch.tensor([1.0, -1.0]), MASK, kl, kl_coef=0.5)
    # row 0: [-0.05, -0.1, 1 - 0.15]; row 1: [-0.2, -1 - 0.25, 0 (padding)]
    assert close(tok, [[-0.05, -0.1, 0.85], [-0.2, -1.25, 0.0]])
    assert close(token_rewards(torch.tensor([1.0, -1.0]), MASK), [[0, 0, 1], [0, -1, 0]])


def test_reward_to_go_hand_values():
    tok = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 7.0]])
    # gamma 1: suffix sums; row 1 padding (7) is ignored
    assert close(reward_to_go(tok, MASK), [[6, 5, 3], [9, 5, 0]])
    # gamma 0.5: row 0: G2 = 3, G1 = 2 + 1.5 = 3.5, G0 = 1 + 1.75 = 2.75
    assert close(reward_to_go(tok, MASK, gamma=0.5), [[2.75, 3.5, 3.0], [6.5, 5.0, 0.0]])


def test_gae_three_token_example_worked_by_hand():
    # Row 0, 3 tokens, reward 1 on the last, values V = [0.5, 0.6, 0.8], gamma = 1, lam = 0.5:
    #   delta_2 = r_2 + V_3 - V_2 = 1 + 0 - 0.8 = 0.2       A_2 = 0.2
    #   delta_1 = 0 + 0.8 - 0.6 = 0.2                        A_1 = 0.2 + 0.5 * 0.2 = 0.3
    #   delta_0 = 0 + 0.6 - 0.5 = 0.1                        A_0 = 0.1 + 0.5 * 0.3 = 0.25
    #   returns = A + V = [0.75, 0.9, 1.0]
    # Row 1, 2 tokens + padding (value 9 there must not leak), reward -1, V = [0.2, 0.4]:
    #   delta_1 = -1 + 0 - 0.4 = -1.4                        A_1 = -1.4
    #   delta_0 = 0 + 0.4 - 0.2 = 0.2                        A_0 = 0.2 + 0.5 * (-1.4) = -0.5
    #   returns = [-0.3, -1.0, 0]
    tok = token_rewards(torch.tensor([1.0, -1.0]), MASK)
    values = torch.tensor([[0.5, 0.6, 0.8], [0.2, 0.4, 9.0]])
    adv, ret = gae(tok, values, MASK, gamma=1.0, lam=0.5)
    assert close(adv, [[0.25, 0.3, 0.2], [-0.5, -1.4, 0.0]])
    assert close(ret, [[0.75, 0.9, 1.0], [-0.3, -1.0, 0.0]])
    # gamma = lam = 1 (LMM-R1 FRE-Text): A_t = (rewards from t on) - V_t, returns = the reward-to-go
    adv1, ret1 = gae(tok, values, MASK)
    assert close(adv1, [[0.5, 0.4, 0.2], [-1.2, -1.4, 0.0]])
    assert close(ret1, reward_to_go(tok, MASK).tolist())


def test_gae_discount_gamma():
    # one token-row of 2 with gamma = 0.5, lam = 1, r = [0, 1], V = [0, 0]: A_1 = 1, A_0 = 0 + 0.5 * 1 = 0.5
    adv, _ = gae(torch.tensor([[0.0, 1.0]]), torch.zeros(1, 2), torch.ones(1, 2), gamma=0.5, lam=1.0)
    assert close(adv, [[0.5, 1.0]])


def test_masked_whiten_uses_real_tokens_and_population_std():
    x = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 100.0]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    # real values 1,2,3,4: mean 2.5, population var = (2.25 + .25 + .25 + 2.25) / 4 = 1.25
    s = math.sqrt(1.25)
    assert close(masked_whiten(x, mask), [[-1.5 / s, -0.5 / s, 0.5 / s], [1.5 / s, 0, 0]])
    assert torch.isfinite(masked_whiten(torch.ones(2, 3), mask)).all()  # equal values: 0, not NaN


def test_reinforce_pp_tokens_hand_values():
    # B = 1, G = 2, rewards [1, 0] -> centred [0.5, -0.5]; lengths 3 and 2; no KL.
    # returns (gamma 1): row 0 [0.5, 0.5, 0.5], row 1 [-0.5, -0.5]; over 5 tokens mean = 0.5 / 5 = 0.1,
    # deviations [0.4 x3, -0.6 x2], population var = (3 * 0.16 + 2 * 0.36) / 5 = 0.24
    s = math.sqrt(0.24)
    adv = reinforce_pp_baseline_tokens(torch.tensor([1.0, 0.0]), 2, MASK)
    assert close(adv, [[0.4 / s] * 3, [-0.6 / s, -0.6 / s, 0.0]])


def test_reinforce_pp_tokens_kl_is_outside_the_baseline():
    # KL enters per token after the group mean of the *raw* reward: with equal raw rewards the advantages
    # come from the KL alone, and a token's advantage sums the KL from it to the end.
    mask = torch.ones(2, 2)
    kl = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    adv = reinforce_pp_baseline_tokens(torch.tensor([1.0, 1.0]), 2, mask, kl=kl, kl_coef=0.1)
    # returns: row 0 [-0.1, 0], row 1 [0, 0]; mean -0.025; deviations [-0.075, .025, .025, .025]
    dev = torch.tensor([[-0.075, 0.025], [0.025, 0.025]])
    assert close(adv, (dev / dev.pow(2).mean().sqrt()).tolist())


def test_reinforce_pp_sequence_form_equals_token_form_for_equal_lengths():
    r = torch.rand(12, generator=torch.Generator().manual_seed(1))
    tok = reinforce_pp_baseline_tokens(r, 4, torch.ones(12, 5))
    seq = reinforce_pp_baseline(r, 4)
    assert torch.allclose(tok, seq[:, None].expand(12, 5), atol=1e-5)


def test_normalize_reward_rescales_against_kl_only():
    r = torch.tensor([3.0, 1.0, 5.0, 5.0])
    mask = torch.ones(4, 3)
    assert torch.allclose(standardize(r).mean(), torch.tensor(0.0), atol=1e-6)
    assert torch.allclose(standardize(r).pow(2).mean(), torch.tensor(1.0), atol=1e-5)
    # without KL, the whitening removes the scale again
    a = reinforce_pp_baseline_tokens(r, 2, mask)
    b = reinforce_pp_baseline_tokens(r, 2, mask, normalize_reward=True)
    assert torch.allclose(a, b, atol=1e-5)
    kl = torch.rand(4, 3, generator=torch.Generator().manual_seed(0))
    a = reinforce_pp_baseline_tokens(r, 2, mask, kl, 0.5)
    b = reinforce_pp_baseline_tokens(r, 2, mask, kl, 0.5, normalize_reward=True)
    assert not torch.allclose(a, b, atol=1e-3)


def test_gae_advantages_whitens_advantages_not_returns():
    tok_r = torch.tensor([1.0, -1.0])
    values = torch.tensor([[0.5, 0.6, 0.8], [0.2, 0.4, 0.0]])
    adv, ret = gae_advantages(tok_r, values, MASK, 1.0, 0.5)
    raw, raw_ret = gae(token_rewards(tok_r, MASK), values, MASK, 1.0, 0.5)
    assert torch.equal(ret, raw_ret)
    assert torch.allclose(adv, masked_whiten(raw, MASK))
    assert abs(float(adv.sum())) < 1e-5  # mean 0 over the 5 real tokens


def test_value_loss_clipping_hand_values():
    # old V = 0.5, clip 0.2, return 1.0; 0.5 * max((V - R)^2, (V_clip - R)^2):
    #   V = 0.9: unclipped 0.01, V_clip = 0.7 -> 0.09  -> 0.045, clipped (no gradient)
    #   V = 0.6: inside the range, both 0.16        -> 0.08,  not clipped
    #   V = 0.1: unclipped 0.81, V_clip = 0.3 -> 0.49 -> 0.405, not clipped (moving back is not limited)
    #   V = 1.2: unclipped 0.04, V_clip = 0.7 -> 0.09 -> 0.045, clipped
    v = torch.tensor([[0.9, 0.6, 0.1, 1.2]], requires_grad=True)
    old = torch.full((1, 4), 0.5)
    ret = torch.ones(1, 4)
    loss, clipped = value_loss(v, old, ret, clip=0.2)
    assert close(loss, [[0.045, 0.08, 0.405, 0.045]])
    assert clipped.tolist() == [[True, False, False, True]]
    loss.sum().backward()
    # d/dV of 0.5 (V - R)^2 is V - R where the unclipped term wins, 0 where the clipped one does
    assert close(v.grad, [[0.0, -0.4, -0.9, 0.0]])
    plain, none_clipped = value_loss(v.detach(), old, ret, clip=None)
    assert close(plain, [[0.005, 0.08, 0.405, 0.02]]) and not none_clipped.any()
    with pytest.raises(ValueError, match="value clip"):
        value_loss(v, old, ret, clip=-1.0)


def test_overlong_penalty_hand_values():
    # max_len 10, buffer 4: free up to 6 tokens, then -1/4 per token, capped at -factor
    lengths = torch.tensor([3, 6, 7, 9, 10, 12])
    assert close(overlong_penalty(lengths, 10, 4), [0, 0, -0.25, -0.75, -1.0, -1.0])
    assert close(overlong_penalty(lengths, 10, 4, factor=0.5), [0, 0, -0.125, -0.375, -0.5, -0.5])
    with pytest.raises(ValueError, match="buffer"):
        overlong_penalty(lengths, 10, 0)
    with pytest.raises(ValueError, match="buffer"):
        overlong_penalty(lengths, 10, 11)


def test_low_var_kl_is_k3_with_clamps():
    logp = torch.tensor([[-1.0, -2.0, -30.0]])
    ref = torch.tensor([[-1.5, -1.0, -1.0]])
    k3 = kl_k3(logp, ref)
    lv = kl_low_var(logp, ref)
    assert torch.allclose(lv[:, :2], k3[:, :2])  # moderate log-ratios: identical
    assert float(lv[0, 2]) == 10.0 and float(k3[0, 2]) > 1e6  # runaway token: capped at 10


def test_shapes_are_checked():
    with pytest.raises(ValueError, match="values must be"):
        gae(torch.zeros(2, 3), torch.zeros(2, 4), MASK)
    with pytest.raises(ValueError, match="rewards must be"):
        token_rewards(torch.zeros(3), MASK)
