"""phaserl's algorithm math against its peers' code, on random inputs with ragged masks.

The peers are verl 0.9 (`verl.trainer.ppo.core_algos`) and OpenRLHF 0.11 (`openrlhf.models.utils`,
`openrlhf.models.loss`, the experience maker's advantage code), installed with `--no-deps` by
`make test-oracle` and loaded by tests/oracle/peers.py (which says what it stubs and why). Equal to float
tolerance unless a test names a deliberate difference and its reason:

- whitening: phaserl divides by the population std clamped at 1e-8 (OpenRLHF, which LMM-R1 ran on); verl
  by sqrt(unbiased var + 1e-8). The verl comparisons rescale by sqrt(n / (n - 1)) for n real tokens.
- GRPO's eps: phaserl and verl add 1e-6 to the group std, OpenRLHF's group_norm 1e-9.
- dual-clip PPO: verl always applies it to negative advantages (clip_ratio_c = 3), phaserl has none;
  ratios here stay below 3, where the two agree, and one test shows where they part.
- REINFORCE++-baseline with KL: OpenRLHF subtracts the group mean of the raw reward and puts the KL per
  token after it (phaserl's form); verl folds the KL into the token rewards before its estimator sums them,
  so its baseline includes the KL. They agree without KL, which is what the verl comparison uses.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import peers  # noqa: E402

from phaserl.algo import (  # noqa: E402
    aggregate,
    dr_grpo,
    gae,
    gae_advantages,
    grpo,
    kl_k1,
    kl_k3,
    kl_low_var,
    masked_whiten,
    overlong_penalty,
    ppo_clip,
    reinforce_pp_baseline_tokens,
    rloo,
    token_ratio,
    token_rewards,
    value_loss,
)

pytestmark = pytest.mark.oracle

N, G, T = 12, 4, 9


@pytest.fixture(scope="module")
def verl():
    mod = peers.verl_core_algos()
    if mod is None:
        pytest.skip("verl is not installed (make test-oracle installs it)")
    return mod


@pytest.fixture(scope="module")
def orl():
    mods = peers.openrlhf_modules()
    exp = peers.openrlhf_experience()
    if mods is None or exp is None:
        pytest.skip("openrlhf is not installed (make test-oracle installs it)")
    return SimpleNamespace(utils=mods[0], loss=mods[1], length=mods[2], exp=exp)


def batch(seed: int):
    """Random rewards (with ties, as rule rewards have), ragged right-padded masks, log-probs, values."""
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, T + 1, (N,), generator=gen)
    mask = (torch.arange(T)[None, :] < lengths[:, None]).float()  # [N, T]
    rewards = torch.randint(0, 3, (N,), generator=gen).float() * 0.5  # [N] in {0, .5, 1}
    logp = -torch.rand(N, T, generator=gen) * 3  # [N, T]
    old = logp + (torch.rand(N, T, generator=gen) - 0.5) * 0.6  # |log ratio| < 0.3
    ref = logp + (torch.rand(N, T, generator=gen) - 0.5)
    values = torch.randn(N, T, generator=gen)
    return SimpleNamespace(
        lengths=lengths,
        mask=mask,
        rewards=rewards,
        logp=logp,
        old=old,
        ref=ref,
        values=values,
        index=np.repeat(np.arange(N // G), G),
        gen=gen,
    )


def bessel(mask: torch.Tensor) -> float:
    n = float(mask.sum())
    return math.sqrt(n / (n - 1))


def real(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return torch.where(mask.bool(), x, torch.zeros_like(x))


SEEDS = [0, 1, 2]


# ---- group estimators -----------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_grpo_dr_grpo_rloo_match_verl(verl, seed):
    b = batch(seed)
    tok = token_rewards(b.rewards, b.mask)
    theirs, _ = verl.compute_grpo_outcome_advantage(tok.clone(), b.mask, b.index, epsilon=1e-6)
    assert torch.allclose(grpo(b.rewards, G)[:, None] * b.mask, theirs, atol=1e-5)
    theirs, _ = verl.compute_grpo_outcome_advantage(
        tok.clone(), b.mask, b.index, norm_adv_by_std_in_grpo=False
    )
    assert torch.allclose(dr_grpo(b.rewards, G)[:, None] * b.mask, theirs, atol=1e-6)
    theirs, _ = verl.compute_rloo_outcome_advantage(tok.clone(), b.mask, b.index)
    assert torch.allclose(rloo(b.rewards, G)[:, None] * b.mask, theirs, atol=1e-6)


def _openrlhf_advantages(
    orl, b, estimator: str, kl=None, kl_coef=0.0, values=None, gamma=1.0, lambd=1.0, overlong=None
):
    """Run OpenRLHF's compute_advantages_and_returns on one experience holding the whole batch."""
    args = SimpleNamespace(
        rollout=SimpleNamespace(n_samples_per_prompt=G, max_new_tokens=T),
        algo=SimpleNamespace(
            advantage=SimpleNamespace(estimator=estimator, gamma=gamma, lambd=lambd, no_std_norm=False)
        ),
        reward=SimpleNamespace(
            clip_range=None,
            overlong_buffer_len=None if overlong is None else overlong[0],
            overlong_penalty_factor=1.0 if overlong is None else overlong[1],
            stop_properly_penalty_coef=None,
        ),
        data=SimpleNamespace(max_len=None),
    )
    me = SimpleNamespace(
        strategy=SimpleNamespace(args=args),
        kl_ctl=SimpleNamespace(value=kl_coef),
        advantage_estimator=estimator,
    )
    me.get_advantages_and_returns = lambda *a: orl.exp["get_advantages_and_returns"](me, *a)
    me.get_cumulative_returns = lambda *a: orl.exp["get_cumulative_returns"](me, *a)
    exp = SimpleNamespace(
        index=list(range(N)),
        rewards=b.rewards.clone(),
        action_mask=b.mask.bool(),
        kl=torch.zeros(N, T) if kl is None else kl.clone(),
        values=values,
        info={},
        response_length=b.mask.sum(-1),
        advantages=None,
        returns=None,
    )
    orl.exp["compute_advantages_and_returns"](me, [exp])
    return exp


@pytest.mark.parametrize("seed", SEEDS)
def test_group_estimators_match_openrlhf(orl, seed):
    b = batch(seed)
    exp = _openrlhf_advantages(orl, b, "dr_grpo")
    assert torch.allclose(dr_grpo(b.rewards, G)[:, None] * b.mask, real(exp.advantages, b.mask), atol=1e-6)
    exp = _openrlhf_advantages(orl, b, "rloo")
    assert torch.allclose(rloo(b.rewards, G)[:, None] * b.mask, real(exp.advantages, b.mask), atol=1e-6)
    # group_norm is GRPO with eps 1e-9 instead of 1e-6 (tolerance covers it; all-equal groups are 0 in both)
    exp = _openrlhf_advantages(orl, b, "group_norm")
    assert torch.allclose(grpo(b.rewards, G)[:, None] * b.mask, real(exp.advantages, b.mask), atol=1e-4)


# ---- REINFORCE++-baseline ------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("estimator", ["k1", "k3"])
def test_reinforce_pp_baseline_matches_openrlhf_with_kl_in_reward(orl, seed, estimator):
    b = batch(seed)
    kl = orl.utils.compute_approx_kl(b.old, b.ref, kl_estimator=estimator)  # [N, T]
    ours_kl = (kl_k1 if estimator == "k1" else kl_k3)(b.old, b.ref)
    assert torch.allclose(real(ours_kl, b.mask), real(kl, b.mask), atol=1e-6)
    exp = _openrlhf_advantages(orl, b, "reinforce_baseline", kl=kl, kl_coef=0.05)
    ours = reinforce_pp_baseline_tokens(b.rewards, G, b.mask, ours_kl, kl_coef=0.05)
    assert torch.allclose(ours, real(exp.advantages, b.mask), atol=1e-5)


@pytest.mark.parametrize("seed", SEEDS)
def test_reinforce_pp_baseline_matches_verl_without_kl(verl, seed):
    b = batch(seed)
    theirs, _ = verl.compute_reinforce_plus_plus_baseline_outcome_advantage(
        token_rewards(b.rewards, b.mask), b.mask, b.index
    )
    ours = reinforce_pp_baseline_tokens(b.rewards, G, b.mask)
    # verl whitens with the unbiased variance (see the module docstring)
    assert torch.allclose(ours / bessel(b.mask), theirs, atol=1e-5)


# ---- GAE -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(("gamma", "lam"), [(1.0, 1.0), (0.99, 0.95), (0.9, 0.5)])
def test_gae_matches_verl_and_openrlhf(verl, orl, seed, gamma, lam):
    b = batch(seed)
    tok = token_rewards(b.rewards, b.mask, kl_k1(b.old, b.ref), kl_coef=0.1)
    adv, ret = gae(tok, b.values, b.mask, gamma, lam)
    # OpenRLHF's raw GAE (before its batch whitening)
    o_adv, o_ret = orl.exp["get_advantages_and_returns"](None, b.values, tok, b.mask, gamma, lam)
    assert torch.allclose(adv, real(o_adv, b.mask), atol=1e-5)
    assert torch.allclose(ret, real(o_ret, b.mask), atol=1e-5)
    # verl returns raw returns and whitened advantages (unbiased variance)
    v_adv, v_ret = verl.compute_gae_advantage_return(tok, b.values, b.mask, gamma, lam)
    assert torch.allclose(ret, real(v_ret, b.mask), atol=1e-5)
    assert torch.allclose(masked_whiten(adv, b.mask) / bessel(b.mask), real(v_adv, b.mask), atol=1e-4)


@pytest.mark.parametrize("seed", SEEDS)
def test_gae_pipeline_matches_openrlhf_experience_maker(orl, seed):
    b = batch(seed)
    kl = orl.utils.compute_approx_kl(b.old, b.ref, kl_estimator="k1")
    exp = _openrlhf_advantages(orl, b, "gae", kl=kl, kl_coef=0.02, values=b.values, gamma=1.0, lambd=0.95)
    adv, ret = gae_advantages(b.rewards, b.values, b.mask, 1.0, 0.95, kl=kl_k1(b.old, b.ref), kl_coef=0.02)
    assert torch.allclose(adv, real(exp.advantages, b.mask), atol=1e-5)
    assert torch.allclose(ret, real(exp.returns, b.mask), atol=1e-5)


# ---- policy loss ---------------------------------------------------------------------------------------


def _verl_actor_cfg(low: float, high: float):
    return SimpleNamespace(
        clip_ratio=low,
        clip_ratio_low=low,
        clip_ratio_high=high,
        global_batch_info={},
        get=lambda key, default=None: default,
    )


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(("low", "high"), [(0.2, 0.2), (0.2, 0.28)])
@pytest.mark.parametrize(
    ("ours_mode", "verl_mode", "orl_token"),
    [("token-mean", "token-mean", True), ("seq-mean", "seq-mean-token-mean", False)],
)
def test_ppo_clip_loss_and_gradient_match_peers(verl, orl, seed, low, high, ours_mode, verl_mode, orl_token):
    b = batch(seed)
    adv = torch.randn(N, T, generator=b.gen) * b.mask
    losses = {}
    for who in ("ours", "verl", "openrlhf"):
        logp = b.logp.clone().requires_grad_(True)
        if who == "ours":
            pg, _ = ppo_clip(token_ratio(logp, b.old), adv, low, high)
            loss = aggregate(pg, b.mask, ours_mode)
        elif who == "verl":
            loss, _ = verl.compute_policy_loss_vanilla(
                b.old, logp, adv, b.mask, verl_mode, _verl_actor_cfg(low, high)
            )
        else:
            fn = orl.loss.PolicyLoss(clip_eps_low=low, clip_eps_high=high, token_level_loss=orl_token)
            loss = fn(logp, b.old, adv, action_mask=b.mask)[0]
        loss.backward()
        losses[who] = (loss.detach(), logp.grad)
    for who in ("verl", "openrlhf"):
        assert torch.allclose(losses["ours"][0], losses[who][0], atol=1e-6), who
        assert torch.allclose(losses["ours"][1], losses[who][1], atol=1e-6), who


def test_dual_clip_is_the_one_policy_loss_difference(verl):
    # ratio 5 on a negative advantage: PPO's max(-A r, -A clip(r)) = 5, verl's dual clip caps it at -A * 3 = 3
    logp, old, adv, mask = (
        torch.tensor([[math.log(5.0)]]),
        torch.zeros(1, 1),
        torch.tensor([[-1.0]]),
        torch.ones(1, 1),
    )
    ours = aggregate(ppo_clip(token_ratio(logp, old), adv)[0], mask)
    theirs, _ = verl.compute_policy_loss_vanilla(
        old, logp, adv, mask, "token-mean", _verl_actor_cfg(0.2, 0.2)
    )
    assert float(ours) == pytest.approx(5.0) and float(theirs) == pytest.approx(3.0)


# ---- value loss ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("clip", [0.2, 0.5])
def test_value_loss_matches_verl_and_openrlhf(verl, orl, seed, clip):
    b = batch(seed)
    returns = torch.randn(N, T, generator=b.gen)
    grads = {}
    for who in ("ours", "verl", "openrlhf"):
        v = (
            b.values + torch.randn(N, T, generator=torch.Generator().manual_seed(seed)) * 0.4
        ).requires_grad_(True)
        if who == "ours":
            per_tok, clipped = value_loss(v, b.values, returns, clip)
            loss = aggregate(per_tok, b.mask, "token-mean")
            frac = (clipped.float() * b.mask).sum() / b.mask.sum()
        elif who == "verl":
            loss, frac = verl.compute_value_loss(v, returns, b.values, b.mask, clip, "token-mean")
        else:
            loss = orl.loss.ValueLoss(clip_eps=clip)(v, b.values, returns, action_mask=b.mask)
            frac = None
        loss.backward()
        grads[who] = (loss.detach(), v.grad, frac)
    for who in ("verl", "openrlhf"):
        assert torch.allclose(grads["ours"][0], grads[who][0], atol=1e-6), who
        assert torch.allclose(grads["ours"][1], grads[who][1], atol=1e-7), who
    assert torch.allclose(grads["ours"][2], grads["verl"][2])
    assert 0 < float(grads["ours"][2]) < 1  # the clip bites on some tokens and not on others


# ---- KL estimators -------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_kl_estimators_match_peers(verl, orl, seed):
    b = batch(seed)
    assert torch.allclose(kl_k1(b.logp, b.ref), verl.kl_penalty(b.logp, b.ref, "k1"), atol=1e-6)
    assert torch.allclose(kl_low_var(b.logp, b.ref), verl.kl_penalty(b.logp, b.ref, "low_var_kl"), atol=1e-6)
    assert torch.allclose(kl_k3(b.logp, b.ref), verl.kl_penalty(b.logp, b.ref, "k3"), atol=1e-6)
    assert torch.allclose(kl_k1(b.logp, b.ref), orl.utils.compute_approx_kl(b.logp, b.ref, kl_estimator="k1"))
    assert torch.allclose(
        kl_k3(b.logp, b.ref), orl.utils.compute_approx_kl(b.logp, b.ref, kl_estimator="k3"), atol=1e-6
    )
    # far from the reference the guards of low_var_kl (verl) and OpenRLHF's k3 agree with each other
    far = b.logp - 30.0
    assert torch.allclose(kl_low_var(far, b.ref), orl.utils.compute_approx_kl(far, b.ref, kl_estimator="k3"))


# ---- DAPO overlong shaping -----------------------------------------------------------------------------


@pytest.mark.parametrize(("buffer", "factor"), [(4, 1.0), (3, 0.5), (9, 2.0)])
def test_overlong_penalty_matches_openrlhf(orl, buffer, factor):
    lengths = torch.arange(0, T + 1)
    exp = SimpleNamespace(response_length=lengths, rewards=torch.zeros(len(lengths)))
    orl.length.apply_overlong_penalty(
        [exp], max_new_tokens=T, overlong_buffer_len=buffer, overlong_penalty_factor=factor
    )
    assert torch.allclose(overlong_penalty(lengths, T, buffer, factor), exp.rewards, atol=1e-6)
