"""Policy-loss pieces against values worked out by hand, plus their gradients via autograd."""

import math

import pytest
import torch

from phaserl.algo.losses import (
    KL_ESTIMATORS,
    aggregate,
    kl_k1,
    kl_k3,
    kl_low_var,
    kl_penalty_reward,
    ppo_clip,
    sequence_ratio,
    token_ratio,
)

LN2 = math.log(2.0)


def test_token_ratio_hand_values_and_old_logp_is_constant():
    # exp(ln .5 - ln .25) = 2, exp(ln .25 - ln .5) = 0.5, exp(0) = 1
    logp = torch.tensor([[math.log(0.5), math.log(0.25), 0.0]], requires_grad=True)
    old_logp = torch.tensor([[math.log(0.25), math.log(0.5), 0.0]], requires_grad=True)
    ratio = token_ratio(logp, old_logp)
    assert torch.allclose(ratio, torch.tensor([[2.0, 0.5, 1.0]]))
    ratio.sum().backward()
    assert torch.allclose(logp.grad, torch.tensor([[2.0, 0.5, 1.0]]))  # d exp(x)/dx = exp(x)
    assert old_logp.grad is None


# ratios [0.5, 0.9, 1.0, 1.1, 1.5] with eps_low 0.2, eps_high 0.28 clamp to [0.8, 0.9, 1.0, 1.1, 1.28]
# adv +1: pg1 = -ratio, pg2 = -clamped; max -> [-0.5, -0.9, -1.0, -1.1, -1.28], clipped only at 1.5
# adv -1: pg1 = ratio,  pg2 = clamped;  max -> [0.8, 0.9, 1.0, 1.1, 1.5],      clipped only at 0.5
RATIOS = [0.5, 0.9, 1.0, 1.1, 1.5]


def test_ppo_clip_hand_values_with_clip_higher():
    ratio = torch.tensor([RATIOS, RATIOS])
    loss, clipped = ppo_clip(ratio, torch.tensor([1.0, -1.0]), eps_low=0.2, eps_high=0.28)
    assert torch.allclose(loss, torch.tensor([[-0.5, -0.9, -1.0, -1.1, -1.28], [0.8, 0.9, 1.0, 1.1, 1.5]]))
    assert clipped.tolist() == [[False, False, False, False, True], [True, False, False, False, False]]


def test_ppo_clip_symmetric_default_and_token_level_adv():
    # eps 0.2 both sides: 1.5 clamps to 1.2; an [N, T] advantage is used as is
    loss, clipped = ppo_clip(torch.tensor([[1.5, 1.5]]), torch.tensor([[2.0, -2.0]]))
    assert torch.allclose(loss, torch.tensor([[-2.4, 3.0]]))  # max(-3, -2.4); max(3, 2.4)
    assert clipped.tolist() == [[True, False]]


def test_ppo_clip_gradient_is_zero_exactly_where_clipped():
    logp = torch.log(torch.tensor([RATIOS, RATIOS])).requires_grad_(True)
    old_logp = torch.zeros(2, 5)
    adv = torch.tensor([1.0, -1.0])
    loss, clipped = ppo_clip(token_ratio(logp, old_logp), adv, eps_low=0.2, eps_high=0.28)
    loss.sum().backward()
    # unclipped: d(-adv * exp(logp))/dlogp = -adv * ratio; clipped: 0
    expected = torch.where(clipped, torch.zeros(2, 5), -adv[:, None] * torch.tensor([RATIOS, RATIOS]))
    assert torch.allclose(logp.grad, expected)
    assert (logp.grad[clipped] == 0).all() and (logp.grad[~clipped] != 0).all()


def test_ppo_clip_rejects_bad_eps():
    with pytest.raises(ValueError):
        ppo_clip(torch.ones(1, 1), torch.ones(1), eps_low=1.0)
    with pytest.raises(ValueError):
        ppo_clip(torch.ones(1, 1), torch.ones(1), eps_high=-0.1)


def test_on_policy_loss_is_minus_adv_and_gradient_is_minus_adv_dlogp():
    # a tiny "policy": logits [N, T, V], logp of fixed sampled tokens; first epoch, old_logp == logp
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 5, generator=gen, requires_grad=True)
    tokens = torch.tensor([[1, 4, 0], [2, 2, 3]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    adv = torch.tensor([0.7, -1.3])

    def logp_of(lg):
        return torch.log_softmax(lg, dim=-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)  # [N, T]

    for ratio_fn, mode in ((token_ratio, "token-mean"), (sequence_ratio, "seq-mean")):
        logits.grad = None
        logp = logp_of(logits)
        args = (logp, logp.detach()) if ratio_fn is token_ratio else (logp, logp.detach(), mask)
        loss, clipped = ppo_clip(ratio_fn(*args), adv)
        assert torch.allclose(loss, -adv[:, None].expand(2, 3))
        assert not clipped.any()
        aggregate(loss, mask, mode).backward()
        got = logits.grad.clone()
        # reference: the plain policy-gradient surrogate -adv * logp with the same aggregation
        logits.grad = None
        aggregate(-adv[:, None] * logp_of(logits), mask, mode).backward()
        assert torch.allclose(got, logits.grad, atol=1e-6)


def test_sequence_ratio_value_ignores_padding():
    # row 0: diffs [0.2, 0.4] on real tokens (pad diff 5 ignored) -> s = exp(0.3) = 1.349859
    # row 1: diffs [0.1, 0.1, 0.1] -> s = exp(0.1) = 1.105171
    old_logp = torch.tensor([[-1.0, -1.0, -1.0], [-2.0, -2.0, -2.0]])
    logp = old_logp + torch.tensor([[0.2, 0.4, 5.0], [0.1, 0.1, 0.1]])
    mask = torch.tensor([[True, True, False], [True, True, True]])
    ratio = sequence_ratio(logp, old_logp, mask)
    assert ratio.shape == (2, 3)
    assert torch.allclose(ratio[0], torch.full((3,), 1.349859), atol=1e-5)
    assert torch.allclose(ratio[1], torch.full((3,), 1.105171), atol=1e-5)


def test_sequence_ratio_jacobian_is_gspo_token():
    # GSPO-token: d s_{i,t} / d logp_{i,t'} = s_i if t == t' (real token) else 0; so a per-token
    # weight w_{i,t} on the ratio gives gradient w_{i,t} * s_i, not the sequence form's mean over t
    old_logp = torch.zeros(2, 3)
    logp = torch.tensor([[0.2, 0.4, 5.0], [0.1, 0.1, 0.1]], requires_grad=True)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    w = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    (sequence_ratio(logp, old_logp, mask) * w).sum().backward()
    s = torch.tensor([[math.exp(0.3)], [math.exp(0.1)]])
    assert torch.allclose(logp.grad, w * s * mask, atol=1e-5)


def test_sequence_ratio_gradient_matches_gspo_formula():
    # GSPO: J = 1/N sum_i adv_i * s_i, s_i = exp(1/|y_i| sum_t (logp - old_logp)), so
    # dJ/dlogp_{i,t} = 1/N * adv_i * s_i / |y_i| on real tokens. Our loss is -J via "seq-mean".
    old_logp = torch.tensor([[-1.0, -1.0, -1.0], [-2.0, -2.0, -2.0]])
    logp = (old_logp + torch.tensor([[0.02, 0.04, 5.0], [0.01, 0.01, 0.01]])).requires_grad_(True)
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    adv = torch.tensor([1.5, -0.5])
    ratio = sequence_ratio(logp, old_logp, mask)
    loss, clipped = ppo_clip(ratio, adv)
    assert not clipped.any()  # s = exp(0.03), exp(0.01): inside [0.8, 1.2]
    aggregate(loss, mask, "seq-mean").backward()
    s = torch.tensor([math.exp(0.03), math.exp(0.01)])
    lengths = torch.tensor([2.0, 3.0])
    expected = -(adv * s / lengths)[:, None] * mask / 2  # N = 2
    assert torch.allclose(logp.grad, expected, atol=1e-6)
    # and the same numbers from autograd on the sequence-level form itself
    logp2 = logp.detach().clone().requires_grad_(True)
    s_seq = torch.exp(((logp2 - old_logp) * mask).sum(-1) / lengths)  # [N]
    (-(adv * s_seq).mean()).backward()
    assert torch.allclose(logp.grad, logp2.grad, atol=1e-6)


def test_kl_hand_values():
    # pi = 0.5, pi_ref = 0.25: k1 = ln 2 = 0.693147; k3 = 0.5 - ln 0.5 - 1 = 0.193147; equal -> 0
    logp = torch.tensor([[math.log(0.5), math.log(0.3)]])
    ref = torch.tensor([[math.log(0.25), math.log(0.3)]])
    assert torch.allclose(kl_k1(logp, ref), torch.tensor([[LN2, 0.0]]))
    assert torch.allclose(kl_k3(logp, ref), torch.tensor([[0.5 + LN2 - 1.0, 0.0]]), atol=1e-6)
    assert KL_ESTIMATORS == {"k1": kl_k1, "k3": kl_k3, "low_var_kl": kl_low_var}


def test_kl_estimators_are_unbiased_in_expectation_and_k3_nonnegative():
    # for categorical p, q: sum_x p(x) k(x) must equal KL(p || q) = sum_x p log(p/q), exactly
    gen = torch.Generator().manual_seed(0)
    p = torch.softmax(torch.randn(7, generator=gen), 0)
    q = torch.softmax(torch.randn(7, generator=gen), 0)
    kl = (p * (p.log() - q.log())).sum()
    for fn in (kl_k1, kl_k3):
        assert torch.allclose((p * fn(p.log(), q.log())).sum(), kl, atol=1e-6)
    assert (kl_k3(p.log(), q.log()) >= 0).all()


# values [[1,2,3,4],[10,20,pad,pad]]: token-mean 40/6 = 6.666667; seq-mean (10/4 + 30/2)/2 = 8.75;
# constant (T=4): 40/(2*4) = 5; constant=10: 40/20 = 2
VALUES = torch.tensor([[1.0, 2.0, 3.0, 4.0], [10.0, 20.0, 0.0, 0.0]])
MASK = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])


@pytest.mark.parametrize(
    ("mode", "constant", "expected"),
    [("token-mean", None, 40 / 6), ("seq-mean", None, 8.75), ("constant", None, 5.0), ("constant", 10, 2.0)],
)
def test_aggregate_hand_values(mode, constant, expected):
    assert aggregate(VALUES, MASK, mode, constant).item() == pytest.approx(expected)
    assert aggregate(VALUES, MASK.bool(), mode, constant).item() == pytest.approx(expected)
    # garbage in padded slots changes nothing
    dirty = VALUES.clone()
    dirty[1, 2:] = torch.tensor([float("inf"), float("nan")])
    assert aggregate(dirty, MASK, mode, constant).item() == pytest.approx(expected)


def test_aggregate_empty_sequences_and_empty_batch():
    values = torch.tensor([[1.0, 2.0], [5.0, 5.0]], requires_grad=True)
    mask = torch.tensor([[1, 1], [0, 0]])  # second sample fully masked (e.g. overlong)
    assert aggregate(values, mask, "seq-mean").item() == pytest.approx(1.5)  # not (1.5 + 0) / 2
    assert aggregate(values, mask, "token-mean").item() == pytest.approx(1.5)
    assert aggregate(values, mask, "constant").item() == pytest.approx(0.75)  # 3 / (2 * 2)
    for mode in ("token-mean", "seq-mean", "constant"):
        out = aggregate(values, torch.zeros(2, 2), mode)
        assert out.item() == 0.0
        out.backward()  # still connected to the graph, gradient 0
        assert torch.equal(values.grad, torch.zeros(2, 2))
        values.grad = None


def test_aggregate_bad_mode_and_constant():
    with pytest.raises(ValueError, match="token-mean, seq-mean, constant"):
        aggregate(VALUES, MASK, "sum")
    with pytest.raises(ValueError, match="> 0"):
        aggregate(VALUES, MASK, "constant", 0.0)


def test_kl_penalty_reward_hand_values():
    # old pi 0.5, ref 0.25 on each real token; row 1's second token is padding (values ignored)
    # k1: row 0 sum = ln2 + 0 = 0.693147, row 1 = ln2 -> rewards - 0.1 * ln2
    # k3: row 0 sum = 0.193147 (second token equal -> 0), row 1 = 0.193147
    old_logp = torch.tensor([[math.log(0.5), -1.0], [math.log(0.5), 3.0]], requires_grad=True)
    ref_logp = torch.tensor([[math.log(0.25), -1.0], [math.log(0.25), -9.0]])
    mask = torch.tensor([[1, 1], [1, 0]])
    rewards = torch.tensor([1.0, 0.0])
    out = kl_penalty_reward(rewards, old_logp, ref_logp, mask, beta=0.1)
    assert torch.allclose(out, torch.tensor([1 - 0.1 * LN2, -0.1 * LN2]))
    assert not out.requires_grad
    k3 = 0.5 + LN2 - 1.0
    out3 = kl_penalty_reward(rewards, old_logp, ref_logp, mask, beta=0.1, estimator="k3")
    assert torch.allclose(out3, torch.tensor([1 - 0.1 * k3, -0.1 * k3]), atol=1e-6)
    with pytest.raises(ValueError, match="k1, k3"):
        kl_penalty_reward(rewards, old_logp, ref_logp, mask, beta=0.1, estimator="k2")
