"""Which groups and samples are worth a gradient step: DAPO dynamic sampling, overlong masking, and
MM-EUREKA's accuracy band. Each returns a keep mask; the trainer decides how to refill or weight.
"""

from __future__ import annotations

from torch import Tensor

from phaserl.algo.advantages import group_view


def zero_variance_groups(rewards: Tensor, G: int, tol: float = 1e-8) -> Tensor:
    """Keep [B] bool: False for groups whose G rewards are all equal (DAPO dynamic sampling, sec. 3.2).

    Such groups get advantage 0 under every group-relative estimator, so they add no gradient, only
    dilute the batch; DAPO drops them and samples more prompts. `tol` absorbs float noise in rewards.
    """
    r = group_view(rewards, G)  # [B, G]
    spread = r.max(dim=1).values - r.min(dim=1).values  # [B]
    return spread > tol


def overlong_mask(truncated: Tensor) -> Tensor:
    """[N] float: 0.0 for samples cut off at max_new_tokens, 1.0 otherwise (DAPO sec. 3.4, overlong
    filtering).

    A truncated answer is penalised for its length rather than its reasoning; multiplying its token
    mask by 0 keeps that noise out of the loss. Multiply into the [N, T] mask as `mask * keep[:, None]`.
    """
    if truncated.dim() != 1:
        raise ValueError(f"truncated must be a flat [N] tensor, got shape {tuple(truncated.shape)}")
    return (~truncated.bool()).float()


def accuracy_band(pass_rate: Tensor, low: float, high: float) -> Tensor:
    """Keep [B] bool: prompts whose pass rate lies in [low, high], bounds included (MM-EUREKA uses
    [0.1, 0.9]): prompts always solved or never solved teach nothing at this point of training.
    """
    if not 0.0 <= low <= high <= 1.0:
        raise ValueError(f"need 0 <= low <= high <= 1 for an accuracy band, got low={low}, high={high}")
    return (pass_rate >= low) & (pass_rate <= high)


def group_pass_rate(rewards: Tensor, G: int, threshold: float = 1.0) -> Tensor:
    """[B] fraction of each prompt's G samples with reward >= threshold, the input of accuracy_band."""
    return (group_view(rewards, G) >= threshold).float().mean(dim=1)


def expand_to_samples(keep: Tensor, G: int) -> Tensor:
    """Repeat a per-prompt mask [B] to per-sample [N] (samples of a prompt are contiguous)."""
    return keep.repeat_interleave(G)
