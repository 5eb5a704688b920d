"""Reward shaping applied to the scored rewards before advantages: DAPO's soft overlong penalty.

Beside overlong *masking* (filters.overlong_mask: a truncated answer is kept out of the loss), DAPO
(Yu et al. 2025, arXiv 2503.14476, sec. 3.4, eq. 13, "soft overlong punishment") also shapes the reward
of long answers so the model learns to stop before the limit:

    R_length(y) = 0                                   |y| <= L_max - L_cache
                  ((L_max - L_cache) - |y|) / L_cache  L_max - L_cache < |y| <= L_max
                  -1                                  |y| > L_max

times a penalty factor, added to the rule reward. Generation stops at L_max = max_new_tokens, so the last
case reads as "capped at -factor" (as OpenRLHF's `apply_overlong_penalty` and verl's DAPO reward manager do).
"""

from __future__ import annotations

from torch import Tensor


def overlong_penalty(lengths: Tensor, max_len: int, buffer: int, factor: float = 1.0) -> Tensor:
    """[N] penalty (<= 0) for completions of `lengths` [N] tokens: linear from 0 at max_len - buffer to
    -factor at max_len, -factor beyond."""
    if lengths.dim() != 1:
        raise ValueError(f"lengths must be a flat [N] tensor, got shape {tuple(lengths.shape)}")
    if not 0 < buffer <= max_len:
        raise ValueError(
            f"need 0 < buffer <= max_len for overlong shaping, got buffer={buffer}, max_len={max_len}"
        )
    exceed = (lengths.float() - (max_len - buffer)).clamp(min=0.0, max=float(buffer))  # [N]
    return -exceed / buffer * factor


def standardize(rewards: Tensor, eps: float = 1e-8) -> Tensor:
    """[N] rewards with batch mean 0 and (population) std 1; the std is clamped at sqrt(eps), so a batch of
    equal rewards becomes all zeros, never NaN."""
    r = rewards.detach().float()
    centred = r - r.mean()
    return centred * centred.pow(2).mean().clamp(min=eps).rsqrt()


__all__ = ["overlong_penalty", "standardize"]
