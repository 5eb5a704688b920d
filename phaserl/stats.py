"""The per-step metrics row written to metrics.jsonl (one place, so every stage logs the same keys)."""

from __future__ import annotations

import statistics

import torch


def _mean(values) -> float | None:
    vals = [v for v in values if v is not None]
    return float(statistics.fmean(vals)) if vals else None


def length_quantiles(lengths: list[int]) -> dict:
    """min, p10, p50, p90 of completion lengths (nearest rank), for the report's length-distribution band."""
    if not lengths:
        return {}
    xs = sorted(lengths)
    at = lambda q: float(xs[min(len(xs) - 1, int(q * len(xs)))])  # noqa: E731
    return {
        "response_length/min": float(xs[0]),
        "response_length/p10": at(0.1),
        "response_length/p50": at(0.5),
        "response_length/p90": at(0.9),
    }


def _all_equal(components: dict[str, list], lo: int, hi: int, tol: float = 1e-8) -> bool:
    """Every reward component equal over rows lo..hi-1 (one group). Components, not total rewards: with
    KL-in-reward the total carries a per-sample penalty that would hide a group with no learning signal."""
    for values in components.values():
        group = values[lo:hi]
        if any(v is None for v in group):
            if not all(v is None for v in group):
                return False
        elif group and max(group) - min(group) > tol:
            return False
    return True


def zero_var_share(r, dynamic_sampling: bool) -> float:
    """Share of the step's generated groups whose G rewards are all equal (no gradient under group baselines).

    Without dynamic sampling that is the batch's own share. With it, the batch keeps only varied groups and
    tops up from dropped ones, so the share is dropped / generated, generated = varied kept + dropped.
    """
    B = len(r.examples)
    zero = sum(_all_equal(r.rewards.components, b * r.G, (b + 1) * r.G) for b in range(B))
    if not dynamic_sampling:
        return zero / B if B else 0.0
    generated = B - zero + r.dropped_groups
    return r.dropped_groups / generated if generated else 0.0


def step_metrics(
    stage, step: int, r, adv: torch.Tensor, upd: dict, t_logp: float, step_time: float, accelerator
) -> dict:
    """The step's metrics row: rewards, advantages, lengths, filters, times, and the update's stats `upd`
    (loss, clip_frac, kl, grad_norm, lr: the rate the update used; critic/* with a critic), averaged over ranks."""
    lengths = [len(c) for c in r.completions.completion_ids]
    gen_tokens = sum(lengths)
    row = {
        "stage": stage.name,
        "stage_index": stage.index,
        "step": step,
        "reward/mean": _mean(r.rewards.total),
        "reward/std": float(torch.tensor(r.rewards.total).std()) if len(r.rewards.total) > 1 else 0.0,
        **{f"reward/{k}": _mean(v) for k, v in r.rewards.components.items()},
        **{f"reward/{k}_none": sum(x is None for x in v) for k, v in r.rewards.components.items()},
        "adv/mean": float(adv.mean()) if len(adv) else 0.0,
        "adv/std": float(adv.std()) if len(adv) > 1 else 0.0,
        "adv/nonzero_frac": float((adv.abs() > 1e-8).float().mean()) if len(adv) else 0.0,
        "response_length/mean": _mean(lengths),
        "response_length/max": max(lengths) if lengths else 0,
        **length_quantiles(lengths),
        "truncated_frac": _mean([float(t) for t in r.completions.truncated]),
        "groups/dropped": r.dropped_groups,
        "groups/dropped_band": getattr(r, "dropped_band", 0),
        "groups/filler": getattr(r, "filler_groups", 0),
        "prompts/dropped_too_long": getattr(r, "dropped_long_prompts", 0),
        "samples/skipped": sum(r.skipped_rows()) if hasattr(r, "skipped_rows") else 0,
        "groups/zero_var_frac": zero_var_share(r, stage.algo.dynamic_sampling),
        "time/generate": r.times.get("generate", 0.0),
        "time/score": r.times.get("score", 0.0),
        "time/logp": t_logp,
        "time/update": upd.pop("time/update", 0.0),
        "time/step": step_time,
        "tokens_per_s": gen_tokens / max(r.times.get("generate", 0.0), 1e-9),
    }
    entropy = getattr(r.completions, "entropy", None)  # [N] mean token entropy; None when the engine has none
    if entropy is not None:
        row["entropy/mean"] = _mean(entropy)
    row.update({k if "/" in k else k: v for k, v in upd.items()})
    if accelerator.num_processes > 1:
        keys = [k for k, v in row.items() if isinstance(v, float)]
        vals = torch.tensor([row[k] for k in keys], device=accelerator.device)
        vals = accelerator.reduce(vals, reduction="mean")
        row.update({k: float(v) for k, v in zip(keys, vals.tolist())})
    return row
