"""Per-token advantages: rewards placed on tokens, reward-to-go, GAE with a critic, batch whitening.

The group estimators of advantages.py give one number per sequence ([N]). PPO with a learned critic and
REINFORCE++ as OpenRLHF runs it work per token ([N, T]): the sequence reward sits on the last real token, a
per-token KL penalty may sit on every token, and each token's advantage looks only at what comes after it.

Shapes: mask [N, T] marks real completion tokens (right padding, bool or float); rewards [N]; values, kl,
token rewards, advantages and returns [N, T]. Padded positions of every output hold 0. Nothing here carries
gradient (these are targets and weights of the update, computed once per rollout batch).
"""

from __future__ import annotations

import torch
from torch import Tensor

from phaserl.algo.advantages import group_view
from phaserl.algo.shaping import standardize


def _check_tokens(name: str, x: Tensor, mask: Tensor) -> None:
    if x.shape != mask.shape or x.dim() != 2:
        raise ValueError(f"{name} must be [N, T] like mask {tuple(mask.shape)}, got {tuple(x.shape)}")


def last_token_index(mask: Tensor) -> Tensor:
    """[N] column of each row's last real token (0 for a row with no real token)."""
    real = mask.bool()  # [N, T]
    T = real.shape[1]
    cols = torch.arange(T, device=real.device).expand_as(real)  # [N, T]
    return torch.where(real, cols, torch.zeros_like(cols)).amax(dim=1)  # [N]


def token_rewards(rewards: Tensor, mask: Tensor, kl: Tensor | None = None, kl_coef: float = 0.0) -> Tensor:
    """[N, T] per-token rewards: the sequence reward on its last real token, minus kl_coef * KL_t on every
    real token (OpenRLHF `compute_reward`, the form LMM-R1 trains with: `--init_kl_coef` with the KL in the
    reward). kl [N, T] is a per-token estimate of KL(pi_old || pi_ref) (e.g. kl_k1(old_logp, ref_logp)).

    A row with no real token gets its reward on column 0 and the caller's mask drops it everywhere else.
    """
    if rewards.dim() != 1 or rewards.shape[0] != mask.shape[0]:
        raise ValueError(f"rewards must be [N] with N = {mask.shape[0]} rows, got {tuple(rewards.shape)}")
    real = mask.bool()  # [N, T]
    out = torch.zeros(mask.shape, dtype=torch.float32, device=mask.device)  # [N, T]
    out.scatter_(1, last_token_index(mask)[:, None], rewards.detach().float()[:, None])
    if kl is not None and kl_coef != 0.0:
        _check_tokens("kl", kl, mask)
        out = out - kl_coef * torch.where(real, kl.detach().float(), torch.zeros_like(out))
    return torch.where(real, out, torch.zeros_like(out))


def reward_to_go(tok_rewards: Tensor, mask: Tensor, gamma: float = 1.0) -> Tensor:
    """[N, T] discounted return from each token on: G_t = r_t + gamma * G_{t+1} (REINFORCE returns; OpenRLHF
    `get_cumulative_returns`). Padding contributes nothing."""
    _check_tokens("token rewards", tok_rewards, mask)
    r = torch.where(
        mask.bool(), tok_rewards.detach().float(), torch.zeros_like(tok_rewards, dtype=torch.float32)
    )
    out = torch.zeros_like(r)  # [N, T]
    running = torch.zeros(r.shape[0], dtype=r.dtype, device=r.device)  # [N]
    for t in reversed(range(r.shape[1])):
        running = r[:, t] + gamma * running
        out[:, t] = running
    return torch.where(mask.bool(), out, torch.zeros_like(out))


def gae(
    tok_rewards: Tensor, values: Tensor, mask: Tensor, gamma: float = 1.0, lam: float = 1.0
) -> tuple[Tensor, Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016, arXiv 1506.02438) -> (adv, returns), [N, T].

        delta_t = r_t + gamma * V_{t+1} - V_t        (V after the last real token is 0: the episode ended)
        A_t     = delta_t + gamma * lam * A_{t+1}
        returns = A_t + V_t                          (the critic's regression target)

    values [N, T] are the critic's per-token values of the sampling-time state (old values), one per
    completion position. LMM-R1 trains FRE-Text with gamma = lam = 1 (paper, Tab. A7), where
    A_t = (sum of rewards from t on) - V_t. Right padding only, so masking values and rewards to 0 makes
    every padded delta 0 and leaves the real tokens' recursion untouched (as OpenRLHF and verl do).
    Advantages are not whitened here; see `masked_whiten`.
    """
    _check_tokens("token rewards", tok_rewards, mask)
    _check_tokens("values", values, mask)
    real = mask.bool()
    zero = torch.zeros(mask.shape, dtype=torch.float32, device=mask.device)
    r = torch.where(real, tok_rewards.detach().float(), zero)  # [N, T]
    v = torch.where(real, values.detach().float(), zero)  # [N, T]
    adv = torch.zeros_like(r)  # [N, T]
    next_value = torch.zeros(r.shape[0], dtype=r.dtype, device=r.device)  # [N]
    running = torch.zeros_like(next_value)  # [N]
    for t in reversed(range(r.shape[1])):
        delta = r[:, t] + gamma * next_value - v[:, t]
        running = delta + gamma * lam * running
        adv[:, t] = running
        next_value = v[:, t]
    adv = torch.where(real, adv, zero)
    return adv, torch.where(real, adv + v, zero)


def masked_whiten(x: Tensor, mask: Tensor, shift_mean: bool = True, eps: float = 1e-8) -> Tensor:
    """[N, T] x standardised over all real tokens of the batch: (x - mean) / sqrt(var), var the population
    variance clamped at eps (OpenRLHF's advantage normalisation for gae / reinforce / reinforce_baseline).

    verl's `masked_whiten` uses the unbiased (n - 1) variance and adds eps instead of clamping; on a batch of
    n tokens the two differ by the factor sqrt(n / (n - 1)). phaserl follows OpenRLHF because LMM-R1 ran on
    it. shift_mean=False divides by the std but keeps the mean (OpenRLHF's `no_std_norm` is the opposite
    switch: keep the mean subtraction, skip the division; it is not offered here)."""
    _check_tokens("x", x, mask)
    real = mask.bool()
    zero = torch.zeros_like(x, dtype=torch.float32)
    xf = torch.where(real, x.detach().float(), zero)  # [N, T]
    n = real.sum().clamp(min=1).float()
    mean = xf.sum() / n
    var = (torch.where(real, xf - mean, zero) ** 2).sum() / n
    out = ((xf - mean) if shift_mean else xf) * var.clamp(min=eps).rsqrt()
    return torch.where(real, out, zero)


def reinforce_pp_baseline_tokens(
    rewards: Tensor,
    G: int,
    mask: Tensor,
    kl: Tensor | None = None,
    kl_coef: float = 0.0,
    normalize_reward: bool = False,
) -> Tensor:
    """REINFORCE++-baseline exactly as OpenRLHF computes it (`--advantage_estimator reinforce_baseline`,
    LMM-R1's scripts): [N, T] advantages.

    1. optionally standardise the raw rewards over the batch (`normalize_reward`, see below);
    2. subtract each group's mean of the raw reward (the KL penalty is not part of the baseline);
    3. put the centred reward on the last real token and -kl_coef * KL_t on every real token;
    4. reward-to-go with gamma = 1 (OpenRLHF forces gamma to 1 for this estimator);
    5. whiten over every real token of the batch (`masked_whiten`: mean removed, population std).

    Where phaserl departs from OpenRLHF, and why:
    - `normalize_reward`: in OpenRLHF the flag rescales a learned reward model's scalar head with the
      running mean/std stored in that model; with LMM-R1's rule-based (remote) rewards it has no statistics
      to apply. Rule rewards have no stored statistics here either, so phaserl's option standardises the
      batch's raw rewards (mean 0, std 1, population std, eps 1e-8) before the baseline. After step 2 this
      only rescales rewards relative to the KL penalty; with kl_coef = 0 step 5 removes the scale again.
    - OpenRLHF clamps rewards to `reward_clip_range` when set; LMM-R1 does not set it, phaserl has none.
    """
    r = group_view(rewards, G).reshape(-1)  # [N], checks layout and G >= 2
    if normalize_reward:
        r = standardize(r)
    centred = (r.view(-1, G) - r.view(-1, G).mean(dim=1, keepdim=True)).view(-1)  # [N]
    returns = reward_to_go(token_rewards(centred, mask, kl, kl_coef), mask, gamma=1.0)  # [N, T]
    return masked_whiten(returns, mask)


def gae_advantages(
    rewards: Tensor,
    values: Tensor,
    mask: Tensor,
    gamma: float = 1.0,
    lam: float = 1.0,
    kl: Tensor | None = None,
    kl_coef: float = 0.0,
    whiten: bool = True,
) -> tuple[Tensor, Tensor]:
    """PPO with a critic, OpenRLHF's order: token rewards (KL in the reward when kl_coef > 0), GAE, then
    advantages whitened over the batch's real tokens (returns are not whitened: they are the critic's
    targets). rewards [N], values/mask/kl [N, T] -> (adv [N, T], returns [N, T])."""
    adv, returns = gae(token_rewards(rewards, mask, kl, kl_coef), values, mask, gamma, lam)
    return (masked_whiten(adv, mask) if whiten else adv), returns
