"""Policy-loss pieces: importance ratios, PPO-clip, KL estimators and token aggregation.

Each piece is a small function so a loss reads like its paper, e.g. GRPO with DAPO's clip-higher:

    ratio = token_ratio(logp, old_logp)                      # [N, T]
    pg, clipped = ppo_clip(ratio, adv, 0.2, 0.28)            # [N, T]
    loss = aggregate(pg + beta * kl_k3(logp, ref_logp), mask, "token-mean")

Shapes: logp, old_logp, ref_logp, mask are [N, T] (completion tokens, right-padded; mask is 1/True on
real tokens, bool or float), adv is [N]. old_logp and ref_logp are treated as constants (detached):
gradients flow only through logp. Padded positions must hold finite numbers (0 is fine); aggregation
ignores their values.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def token_ratio(logp: Tensor, old_logp: Tensor) -> Tensor:
    """Per-token importance ratio pi_theta / pi_old (PPO, Schulman et al. 2017, r_t in eq. 6)."""
    return torch.exp(logp - old_logp.detach())  # [N, T]


def sequence_ratio(logp: Tensor, old_logp: Tensor, mask: Tensor) -> Tensor:
    """GSPO's sequence ratio (Zheng et al. 2025, arXiv 2507.18071), GSPO-token form, as [N, T].

    The value at every token of sequence i is s_i = exp(mean_t(logp - old_logp)) over its real tokens,
    the length-normalised sequence likelihood ratio. Gradients follow GSPO-token,
    s_i,t = sg[s_i] * pi(y_t) / sg[pi(y_t)], so d s_i,t / d logp_t = s_i: with one advantage per
    sequence and "seq-mean" aggregation this equals the gradient of the sequence-level GSPO objective,
    and clipping acts on s_i (whole sequences), as the paper prescribes.
    """
    real = mask.bool()  # [N, T]
    log_diff = torch.where(real, logp - old_logp.detach(), torch.zeros_like(logp))  # [N, T]
    lengths = real.sum(dim=-1).clamp(min=1).to(logp.dtype)  # [N]
    log_s = log_diff.sum(dim=-1) / lengths  # [N]
    # logp - sg[logp] is 0 in value and carries the per-token gradient; padding gets no gradient
    token_grad = torch.where(real, logp - logp.detach(), torch.zeros_like(logp))  # [N, T]
    return torch.exp(log_s.detach().unsqueeze(-1) + token_grad)  # [N, T]


def ppo_clip(
    ratio: Tensor, adv: Tensor, eps_low: float = 0.2, eps_high: float = 0.2
) -> tuple[Tensor, Tensor]:
    """Clipped surrogate loss per token (PPO eq. 7, negated to minimise) and where clipping bit.

    eps_high > eps_low is DAPO's clip-higher (Yu et al. 2025, arXiv 2503.14476, sec. 3.1): unlikely
    tokens may grow more before clipping, which keeps entropy from collapsing. `clipped` [N, T] marks
    tokens whose clipped term won the max, i.e. whose gradient is zero; its masked mean is the clip
    fraction.
    """
    if not 0.0 <= eps_low < 1.0 or eps_high < 0.0:
        raise ValueError(f"need 0 <= eps_low < 1 and eps_high >= 0, got {eps_low}, {eps_high}")
    adv = adv.unsqueeze(-1) if adv.dim() == 1 else adv  # [N, 1] broadcasts over T
    pg1 = -adv * ratio  # [N, T]
    pg2 = -adv * ratio.clamp(1.0 - eps_low, 1.0 + eps_high)  # [N, T]
    return torch.maximum(pg1, pg2), pg2 > pg1


def kl_k1(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """k1 = log(pi / pi_ref): unbiased per-token estimate of KL(pi || pi_ref) under samples of pi."""
    return logp - ref_logp.detach()  # [N, T]


def kl_k3(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """k3 = r - log r - 1 with r = pi_ref / pi (Schulman 2020, "Approximating KL divergence").

    Unbiased, always >= 0 and lower-variance than k1; GRPO's KL term (DeepSeekMath eq. 4), verl's
    "low_var_kl".
    """
    log_r = ref_logp.detach() - logp  # [N, T]
    return torch.exp(log_r) - log_r - 1.0  # [N, T]


def kl_low_var(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """verl's "low_var_kl": k3 with its guards, log(pi_ref / pi) clamped to [-20, 20] before exp() and the
    result clamped to [-10, 10]. Equal to k3 wherever |log r| is moderate; the clamps keep one runaway token
    (a huge exp) from dominating a batch."""
    log_r = (ref_logp.detach() - logp).clamp(min=-20.0, max=20.0)  # [N, T]
    return (torch.exp(log_r) - log_r - 1.0).clamp(min=-10.0, max=10.0)  # [N, T]


KL_ESTIMATORS: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "k1": kl_k1,
    "k3": kl_k3,
    "low_var_kl": kl_low_var,
}


def kl_estimator(name: str) -> Callable[[Tensor, Tensor], Tensor]:
    """Look up a KL estimator by config name; an unknown name lists the valid ones."""
    if name not in KL_ESTIMATORS:
        valid = ", ".join(sorted(KL_ESTIMATORS))
        raise ValueError(f"unknown KL estimator {name!r}; valid names: {valid}")
    return KL_ESTIMATORS[name]


AGGREGATION_MODES = ("token-mean", "seq-mean", "constant")


def aggregate(
    values: Tensor, mask: Tensor, mode: str = "token-mean", constant: float | None = None
) -> Tensor:
    """Reduce per-token values [N, T] to a scalar over real tokens; the choice changes the length bias.

    - "token-mean": sum / number of real tokens (DAPO sec. 3.3, token-level policy-gradient loss):
      every token weighs the same, so long sequences weigh more.
    - "seq-mean": mean over sequences of each sequence's token mean (GRPO, DeepSeekMath eq. 3): every
      sequence weighs the same. Sequences with no real token (e.g. masked overlong ones) are left out
      of the mean rather than counted as 0, so masking a sample does not shrink everyone else's step.
    - "constant": sum / (N * constant) (Dr.GRPO, Liu et al. 2025, arXiv 2503.20783): a fixed
      normaliser, no length bias; constant defaults to T = mask.shape[1] (pass max_new_tokens to keep
      it fixed across steps and micro-batches).
    Padded values are dropped with `where`, so inf/NaN padding cannot leak into the result.
    """
    real = mask.bool()  # [N, T]
    masked = torch.where(real, values, torch.zeros_like(values))  # [N, T]
    count = real.to(values.dtype)  # [N, T]
    if mode == "token-mean":
        return masked.sum() / count.sum().clamp(min=1.0)
    if mode == "seq-mean":
        tokens = count.sum(dim=-1)  # [N]
        per_seq = masked.sum(dim=-1) / tokens.clamp(min=1.0)  # [N], 0 for empty sequences
        return per_seq.sum() / (tokens > 0).sum().clamp(min=1).to(values.dtype)
    if mode == "constant":
        constant = float(mask.shape[-1]) if constant is None else float(constant)
        if constant <= 0:
            raise ValueError(f"aggregate constant must be > 0, got {constant}")
        return masked.sum() / (mask.shape[0] * constant)
    raise ValueError(f"unknown aggregation mode {mode!r}; valid modes: {', '.join(AGGREGATION_MODES)}")


def aggregation_count(mask: Tensor, mode: str = "token-mean") -> float:
    """What `aggregate(values, mask, mode)` divides by: real tokens (token-mean), sequences with a real token
    (seq-mean), rows (constant). An update that splits a mini-batch into micro-batches weighs each micro-batch's
    aggregate by count(micro) / count(mini-batch), which makes the sum equal to one aggregate over the
    mini-batch. `mask` is [N, T], or per-row token counts [N, 1]."""
    if mode == "token-mean":
        return float(mask.sum())
    if mode == "seq-mean":
        return float((mask.sum(-1) > 0).sum())
    return float(mask.shape[0])


def value_loss(
    values: Tensor, old_values: Tensor, returns: Tensor, clip: float | None = 0.2
) -> tuple[Tensor, Tensor]:
    """Clipped value loss per token, 0.5 * max((V - R)^2, (V_clip - R)^2) with V_clip = old_V + clamp(V - old_V,
    -clip, clip) (PPO2's value clipping as OpenRLHF `ValueLoss` and verl `compute_value_loss` write it), and
    where the clipped term won ([N, T] bool; its masked mean is the value clip fraction).

    values [N, T] are the critic's current predictions (with gradient), old_values the predictions at rollout
    time and returns the GAE targets (both constants). clip=None is the plain 0.5 * (V - R)^2. The critic may
    not move a value more than `clip` from where it was in one step unless that brings it closer to the target.
    Aggregate with `aggregate(loss, mask, "token-mean")` as both codebases do.
    """
    returns = returns.detach()
    unclipped = (values - returns) ** 2  # [N, T]
    if clip is None:
        return 0.5 * unclipped, torch.zeros_like(unclipped, dtype=torch.bool)
    if clip < 0:
        raise ValueError(f"value clip must be >= 0 or None, got {clip}")
    old_values = old_values.detach()
    clipped_values = old_values + (values - old_values).clamp(-clip, clip)  # [N, T]
    clipped = (clipped_values - returns) ** 2  # [N, T]
    return 0.5 * torch.maximum(unclipped, clipped), clipped > unclipped


def kl_penalty_reward(
    rewards: Tensor,
    old_logp: Tensor,
    ref_logp: Tensor,
    mask: Tensor,
    beta: float,
    estimator: str = "k1",
) -> Tensor:
    """KL in the reward (LMM-R1 / OpenRLHF, REINFORCE++): r_i - beta * sum_t KL_t over real tokens.

    Uses the sampling policy's old_logp, so the penalty is a fixed number per sample computed before
    advantages, not a loss term; nothing here carries gradient. rewards [N] -> [N].
    """
    kl = kl_estimator(estimator)(old_logp.detach(), ref_logp)  # [N, T]
    kl_sum = torch.where(mask.bool(), kl, torch.zeros_like(kl)).sum(dim=-1)  # [N]
    rewards = rewards if rewards.is_floating_point() else rewards.float()
    return rewards.detach() - beta * kl_sum.to(rewards.dtype)  # [N]
