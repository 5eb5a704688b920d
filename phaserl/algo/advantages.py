"""Advantage estimators: short pure functions from a flat reward vector to one advantage per sample.

Every estimator takes `rewards` [N] (N = B * G, the G samples of a prompt contiguous, sample i belongs
to prompt i // G) and returns `adv` [N]. The advantage is per sequence; the policy loss broadcasts it
over the sequence's tokens. Rewards carry no gradient, so neither do the advantages.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor


def group_view(rewards: Tensor, G: int) -> Tensor:
    """Reshape rewards [N] to [B, G] after checking the layout, so every estimator fails the same way.

    G = 1 is refused: each estimator below compares a sample with its own group, so a group of one
    yields an advantage that is identically 0 (or NaN for an unbiased std) and training silently stops.
    """
    if rewards.dim() != 1:
        raise ValueError(f"rewards must be a flat [N] tensor, got shape {tuple(rewards.shape)}")
    if G < 2:
        raise ValueError(f"group-relative advantages need G >= 2 samples per prompt, got G={G}")
    N = rewards.shape[0]
    if N == 0 or N % G != 0:
        raise ValueError(f"number of rewards N={N} is not a positive multiple of the group size G={G}")
    if not rewards.is_floating_point():
        rewards = rewards.float()
    return rewards.detach().view(N // G, G)  # [B, G]


def grpo(rewards: Tensor, G: int, eps: float = 1e-6) -> Tensor:
    """GRPO outcome advantage (DeepSeekMath, Shao et al. 2024, sec. 4.1.2): (r - mean_g) / (std_g + eps).

    The paper writes std(r) without saying which; we use the unbiased (Bessel, G - 1) estimate, torch's
    default and what TRL, verl and OpenRLHF compute, so advantages match those codebases number for
    number. A group whose rewards are all equal has std 0 and gets advantage 0 (no NaN) thanks to eps.
    """
    r = group_view(rewards, G)  # [B, G]
    mean = r.mean(dim=1, keepdim=True)  # [B, 1]
    std = r.std(dim=1, keepdim=True)  # [B, 1], unbiased
    return ((r - mean) / (std + eps)).view(-1)  # [N]


def dr_grpo(rewards: Tensor, G: int) -> Tensor:
    """Dr.GRPO (Liu et al. 2025, "Understanding R1-Zero-like training", arXiv 2503.20783): r - mean_g.

    Dividing by the group std up-weights prompts that are nearly always solved or nearly always failed
    (small std); Dr.GRPO drops it to remove that difficulty bias.
    """
    r = group_view(rewards, G)  # [B, G]
    return (r - r.mean(dim=1, keepdim=True)).view(-1)  # [N]


def rloo(rewards: Tensor, G: int) -> Tensor:
    """RLOO (Ahmadian et al. 2024, "Back to basics", arXiv 2402.14740): r_i - mean of the other G - 1.

    Leaving the sample out keeps its own reward out of its baseline, so the estimator is unbiased.
    """
    r = group_view(rewards, G)  # [B, G]
    others_mean = (r.sum(dim=1, keepdim=True) - r) / (G - 1)  # [B, G]
    return (r - others_mean).view(-1)  # [N]


def reinforce_pp_baseline(rewards: Tensor, G: int, eps: float = 1e-8) -> Tensor:
    """REINFORCE++-baseline (Hu et al. 2025, arXiv 2501.03262; OpenRLHF `reinforce_baseline`), one number per
    sequence.

    Subtract the group mean, then whiten over the whole batch (global normalisation) rather than per group,
    which the paper argues is less biased than GRPO's per-prompt std. This is OpenRLHF's per-token form
    (`returns.reinforce_pp_baseline_tokens`) in the case it reduces to a sequence number: no KL in the reward
    and every completion of the same length. Otherwise OpenRLHF whitens over tokens, so longer completions
    weigh more in the mean and std; use the token form (which the trainer does when it has the masks).
    Population variance clamped at eps, as OpenRLHF.
    """
    centred = dr_grpo(rewards, G)  # [N]
    shifted = centred - centred.mean()  # [N], 0 up to rounding
    return shifted * shifted.pow(2).mean().clamp(min=eps).rsqrt()  # [N]


AdvantageFn = Callable[[Tensor, int], Tensor]

ADVANTAGES: dict[str, AdvantageFn] = {
    "grpo": grpo,
    "dr_grpo": dr_grpo,
    "rloo": rloo,
    "reinforce_pp_baseline": reinforce_pp_baseline,
}


def compute_advantages(name: str, rewards: Tensor, G: int) -> Tensor:
    """Look up an estimator by its config name and apply it; an unknown name lists the valid ones."""
    try:
        fn = ADVANTAGES[name]
    except KeyError:
        valid = ", ".join(sorted(ADVANTAGES))
        raise ValueError(f"unknown advantage estimator {name!r}; valid names: {valid}") from None
    return fn(rewards, G)
