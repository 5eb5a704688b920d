"""Step 4 of a training step: the policy update over one rollout batch.

ppo_epochs passes; each pass splits the N samples into mini_batches optimizer steps; each optimizer step
accumulates gradients over micro-batches of micro_batch_size samples. Aggregation over tokens is exact across
micro-batches: each micro-batch's aggregate is rescaled by its share of the mini-batch's count.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

import torch

from phaserl.algo import (
    aggregate,
    aggregation_count,
    kl_estimator,
    overlong_mask,
    ppo_clip,
    sequence_ratio,
    token_ratio,
)
from phaserl.policy import Policy, pad_rows, vision_context
from phaserl.update_speed import rows_with_gradient, weight_cast_cache, zero_grads

__all__ = [
    "UpdateInputs",
    "micro_loss",
    "update_policy",
    "vision_context",
]  # vision_context: stage_critic's import


@dataclass
class UpdateInputs:
    prompts: list  # [N] Prompt per row
    completion_ids: list[list[int]]  # [N]
    adv: torch.Tensor | None  # [N], or [N, T] per-token advantages (GAE, REINFORCE++-baseline)
    truncated: list[bool]  # [N]
    old_logp: list[torch.Tensor] | None = (
        None  # [N][T_i], None: on-policy single update (old = logp.detach())
    )
    ref_logp: list[torch.Tensor] | None = None  # [N][T_i], when KL is in the loss


def micro_loss(
    policy: Policy, inp: UpdateInputs, rows: list[int], algo, constant: float | None
) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Loss of one micro-batch (aggregated over its own tokens) and its mask, plus stats."""
    # Each distinct prompt of the micro-batch runs once; its rows share its KV cache (policy.rows_logp).
    logp, mask = policy.logp([inp.prompts[i] for i in rows], [inp.completion_ids[i] for i in rows])  # [m, T]
    mask = mask.to(logp.device)
    if algo.overlong_filter:
        mask = mask * overlong_mask(torch.tensor([inp.truncated[i] for i in rows]))[:, None].to(mask)
    T = logp.shape[1]
    old = pad_rows([inp.old_logp[i] for i in rows], T).to(logp) if inp.old_logp is not None else logp.detach()
    ratio = sequence_ratio(logp, old, mask) if algo.ratio == "sequence" else token_ratio(logp, old)
    adv = inp.adv[rows].to(logp)  # [m] or, per token (GAE, REINFORCE++), [m, T_max]
    if adv.dim() == 2:
        adv = adv[:, :T]
    loss_tok, clipped = ppo_clip(ratio, adv, algo.eps_low, algo.eps_high)  # [m, T]
    stats = {"clip_frac": float((clipped.float() * mask).sum() / mask.sum().clamp(min=1))}
    if inp.ref_logp is not None and algo.kl_coef > 0 and algo.kl_in == "loss":
        kl = kl_estimator(algo.kl_estimator)(logp, pad_rows([inp.ref_logp[i] for i in rows], T).to(logp))
        loss_tok = loss_tok + algo.kl_coef * kl
        stats["kl"] = float((kl.detach() * mask).sum() / mask.sum().clamp(min=1))
    loss = aggregate(loss_tok, mask, algo.aggregation, constant)
    return loss, mask, stats


def update_policy(
    accelerator,
    policy: Policy,
    optimizer,
    scheduler,
    inp: UpdateInputs,
    algo,
    optim,
    constant: float | None,
    seed: int,
) -> dict:
    """Run the update; returns mean stats (loss, clip_frac, kl, grad_norm) and its wall time."""
    t0 = time.perf_counter()
    N = len(inp.completion_ids)
    model = policy.model
    mb_size = max(1, N // algo.mini_batches)
    sums: dict[str, float] = {"loss": 0.0}
    n_stats = 0
    gen = torch.Generator().manual_seed(seed)
    for epoch in range(algo.ppo_epochs):
        order = (
            torch.randperm(N, generator=gen).tolist()
            if epoch > 0 or algo.mini_batches > 1
            else list(range(N))
        )
        for start in range(0, N, mb_size):
            mb = order[start : start + mb_size]
            # Counts for exact aggregation across micro-batches (token-mean: tokens; seq-mean: sequences).
            mb_mask_counts = _minibatch_count(inp, mb, algo)
            live = rows_with_gradient(inp, mb, algo, accelerator.num_processes)  # speed: skips adv-0 rows
            micro = [live[i : i + algo.micro_batch_size] for i in range(0, len(live), algo.micro_batch_size)]
            optimizer.zero_grad(set_to_none=True)
            if not micro:  # every row has advantage 0: AdamW still steps (momentum), on zero gradients
                zero_grads(model)
            with weight_cast_cache(accelerator, optim.bf16_autocast):  # speed: one bf16 cast per step
                for k, rows in enumerate(micro):
                    sync = k == len(micro) - 1
                    ctx = contextlib.nullcontext() if sync else accelerator.no_sync(model)
                    with ctx:
                        loss, mask, stats = micro_loss(policy, inp, rows, algo, constant)
                        share = aggregation_count(mask, algo.aggregation) / max(mb_mask_counts, 1e-8)
                        accelerator.backward(loss * share)
                    sums["loss"] = sums.get("loss", 0.0) + float(loss.detach()) * share
                    for key, v in stats.items():
                        sums[key] = sums.get(key, 0.0) + v * len(rows) / len(mb)
            grad_norm = None
            if optim.max_grad_norm:
                grad_norm = accelerator.clip_grad_norm_(model.parameters(), optim.max_grad_norm)
            optimizer.step()
            n_stats += 1
            if grad_norm is not None:
                sums["grad_norm"] = sums.get("grad_norm", 0.0) + float(grad_norm)
    lr = float(optimizer.param_groups[0]["lr"])  # the rate this update used (logged as `lr`)
    scheduler.step()
    out = {k: v / n_stats for k, v in sums.items()}
    out["lr"] = lr
    out["time/update"] = time.perf_counter() - t0
    return out


def _minibatch_count(inp: UpdateInputs, rows: list[int], algo) -> float:
    """aggregation_count of a mini-batch from its rows' token counts (overlong rows count 0 when masked)."""
    lengths = torch.tensor([len(inp.completion_ids[i]) for i in rows], dtype=torch.float32)
    if algo.overlong_filter:
        lengths = lengths * overlong_mask(torch.tensor([inp.truncated[i] for i in rows]))
    return aggregation_count(lengths[:, None], algo.aggregation)
