"""The per-step metrics row written to metrics.jsonl (one place, so every stage logs the same keys)."""

from __future__ import annotations

import statistics

import torch


def _mean(values) -> float | None:
    vals = [v for v in values if v is not None]
    return float(statistics.fmean(vals)) if vals else None


def step_metrics(stage, step: int, r, adv: torch.Tensor, upd: dict, t_logp: float, step_time: float,
                 scheduler, accelerator) -> dict:
    lengths = [len(c) for c in r.completions.completion_ids]
    gen_tokens = sum(lengths)
    row = {
        "stage": stage.name, "stage_index": stage.index, "step": step,
        "reward/mean": _mean(r.rewards.total),
        "reward/std": float(torch.tensor(r.rewards.total).std()) if len(r.rewards.total) > 1 else 0.0,
        **{f"reward/{k}": _mean(v) for k, v in r.rewards.components.items()},
        **{f"reward/{k}_none": sum(x is None for x in v) for k, v in r.rewards.components.items()},
        "adv/mean": float(adv.mean()) if len(adv) else 0.0,
        "adv/std": float(adv.std()) if len(adv) > 1 else 0.0,
        "adv/nonzero_frac": float((adv.abs() > 1e-8).float().mean()) if len(adv) else 0.0,
        "response_length/mean": _mean(lengths),
        "response_length/max": max(lengths) if lengths else 0,
        "truncated_frac": _mean([float(t) for t in r.completions.truncated]),
        "groups/dropped": r.dropped_groups,
        "lr": scheduler.get_last_lr()[0],
        "time/generate": r.times.get("generate", 0.0),
        "time/score": r.times.get("score", 0.0),
        "time/logp": t_logp,
        "time/update": upd.pop("time/update", 0.0),
        "time/step": step_time,
        "tokens_per_s": gen_tokens / max(r.times.get("generate", 0.0), 1e-9),
    }
    row.update({k if "/" in k else k: v for k, v in upd.items()})
    if accelerator.num_processes > 1:
        keys = [k for k, v in row.items() if isinstance(v, float)]
        vals = torch.tensor([row[k] for k in keys], device=accelerator.device)
        vals = accelerator.reduce(vals, reduction="mean")
        row.update({k: float(v) for k, v in zip(keys, vals.tolist())})
    return row
