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

from phaserl.algo import aggregate, kl_estimator, overlong_mask, ppo_clip, sequence_ratio, token_ratio
from phaserl.policy import autocast_context, rows_logp


@dataclass
class UpdateInputs:
    prompts: list  # [N] Prompt per row
    completion_ids: list[list[int]]  # [N]
    adv: torch.Tensor  # [N]
    truncated: list[bool]  # [N]
    old_logp: list[torch.Tensor] | None = None  # [N][T_i], None: on-policy single update (old = logp.detach())
    ref_logp: list[torch.Tensor] | None = None  # [N][T_i], when KL is in the loss
    dummy_vision: dict | None = None  # blank-image inputs: multi-process VLM runs (see micro_loss)


def _pad(rows: list[torch.Tensor], T: int) -> torch.Tensor:
    out = torch.zeros(len(rows), T)
    for j, r in enumerate(rows):
        out[j, :len(r)] = r[:T]
    return out


def _count(mask: torch.Tensor, mode: str) -> float:
    if mode == "token-mean":
        return float(mask.sum())
    if mode == "seq-mean":
        return float((mask.sum(1) > 0).sum())
    return float(mask.shape[0])


def micro_loss(model, processor, is_vlm, pad_id, inp: UpdateInputs, rows: list[int], algo, temperature,
               autocast, device, constant) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Loss of one micro-batch (aggregated over its own tokens) and its mask, plus stats."""
    # Each distinct prompt of the micro-batch runs once; its rows share its KV cache (policy.rows_logp).
    with vision_context(model, inp.dummy_vision, [inp.prompts[i] for i in rows]):
        logp, mask = rows_logp(model, processor, [inp.prompts[i] for i in rows],
                               [inp.completion_ids[i] for i in rows], is_vlm, pad_id, temperature, autocast,
                               device)  # [m, T], [m, T]
    mask = mask.to(logp.device)
    if algo.overlong_filter:
        mask = mask * overlong_mask(torch.tensor([inp.truncated[i] for i in rows]))[:, None].to(mask)
    T = logp.shape[1]
    old = _pad([inp.old_logp[i] for i in rows], T).to(logp) if inp.old_logp is not None else logp.detach()
    ratio = sequence_ratio(logp, old, mask) if algo.ratio == "sequence" else token_ratio(logp, old)
    adv = inp.adv[rows].to(logp)
    loss_tok, clipped = ppo_clip(ratio, adv, algo.eps_low, algo.eps_high)  # [m, T]
    stats = {"clip_frac": float((clipped.float() * mask).sum() / mask.sum().clamp(min=1))}
    if inp.ref_logp is not None and algo.kl_coef > 0 and algo.kl_in == "loss":
        kl = kl_estimator(algo.kl_estimator)(logp, _pad([inp.ref_logp[i] for i in rows], T).to(logp))
        loss_tok = loss_tok + algo.kl_coef * kl
        stats["kl"] = float((kl.detach() * mask).sum() / mask.sum().clamp(min=1))
    loss = aggregate(loss_tok, mask, algo.aggregation, constant)
    return loss, mask, stats


def vision_context(model, dummy_inputs: dict | None, prompts: list):
    """A text-only micro-batch on a multi-process VLM still runs the vision tower (on a blank image, weight 0)
    inside its forward, so every rank joins the same all-gathers / all-reduces (EasyR1 issue 468). A no-op when
    dummy_inputs is None (one process, or a text model) or when a prompt carries an image."""
    if dummy_inputs is None or any(p.images for p in prompts):
        return contextlib.nullcontext()
    from phaserl.distributed import dummy_vision

    return dummy_vision(model, dummy_inputs)


def update_policy(accelerator, model, optimizer, scheduler, processor, is_vlm, pad_id, inp: UpdateInputs,
                  algo, optim, temperature: float, constant: float | None, seed: int) -> dict:
    """Run the update; returns mean stats (loss, clip_frac, kl, grad_norm) and its wall time."""
    t0 = time.perf_counter()
    N = len(inp.completion_ids)
    device = accelerator.device
    mb_size = max(1, N // algo.mini_batches)
    sums: dict[str, float] = {"loss": 0.0}
    n_stats = 0
    gen = torch.Generator().manual_seed(seed)
    for epoch in range(algo.ppo_epochs):
        order = torch.randperm(N, generator=gen).tolist() if epoch > 0 or algo.mini_batches > 1 else list(range(N))
        for start in range(0, N, mb_size):
            mb = order[start:start + mb_size]
            # Counts for exact aggregation across micro-batches (token-mean: tokens; seq-mean: sequences).
            mb_mask_counts = _minibatch_count(inp, mb, algo)
            live = _rows_with_gradient(inp, mb, algo, accelerator.num_processes)
            micro = [live[i:i + algo.micro_batch_size] for i in range(0, len(live), algo.micro_batch_size)]
            optimizer.zero_grad(set_to_none=True)
            if not micro:  # every row has advantage 0: AdamW still steps (momentum), on zero gradients
                _zero_grads(model)
            with _weight_cast_cache(accelerator, optim.bf16_autocast):
                for k, rows in enumerate(micro):
                    sync = k == len(micro) - 1
                    ctx = contextlib.nullcontext() if sync else accelerator.no_sync(model)
                    with ctx:
                        loss, mask, stats = micro_loss(model, processor, is_vlm, pad_id, inp, rows, algo,
                                                       temperature, optim.bf16_autocast, device, constant)
                        share = _count(mask, algo.aggregation) / max(mb_mask_counts, 1e-8)
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
    scheduler.step()
    out = {k: v / n_stats for k, v in sums.items()}
    out["time/update"] = time.perf_counter() - t0
    return out


def memory_probe(accelerator, model, optimizer, processor, is_vlm, pad_id, prompt, algo, optim,
                 max_new_tokens: int, temperature: float, samples_per_step: int) -> tuple[int, int]:
    """Before a stage's first step: reach the update's peak memory once, with gradients discarded. An
    out-of-memory error then comes in the first seconds rather than after the first rollout, and the step's memory
    is page-faulted in here once instead of during the first updates.

    The peak of an update is in the second micro-batch of an optimizer step: the optimizer state, the gradients
    accumulated so far and one micro-batch's activations are all live. The probe gets there in order: one
    forward/backward of the largest micro-batch (min(micro_batch_size, samples of an optimizer step) rows of
    max_new_tokens tokens after `prompt`), the optimizer state, then a second forward/backward into the live
    gradients when an optimizer step (samples_per_step / algo.mini_batches samples) has more than one
    micro-batch. The second pass matters: after a one-pass probe the first real update still page-faults the
    second micro-batch's memory in (docs/performance.md).

    The state comes from one AdamW step at lr 0 on zero gradients, its step counters then reset: the moments are
    0 as a fresh state's, the weights unchanged (a step of 0 x 0 / eps), so the run learns exactly what it would
    without the probe (tests/test_speed_update.py). A resumed optimizer (state already loaded) is not stepped.
    Returns (rows of a micro-batch, forward/backward passes run)."""
    per_update = samples_per_step // algo.mini_batches  # samples of one optimizer step
    m = min(algo.micro_batch_size, per_update)
    rows = [prompt] * m
    completions = [[pad_id] * max_new_tokens for _ in rows]

    def forward_backward():
        logp, mask = rows_logp(model, processor, rows, completions, is_vlm, pad_id, temperature,
                               optim.bf16_autocast, accelerator.device)
        accelerator.backward((logp * mask).sum())

    with torch.random.fork_rng(), _weight_cast_cache(accelerator, optim.bf16_autocast):
        forward_backward()
        model.zero_grad(set_to_none=False)  # the probe's gradients, zeroed in place
        if not optimizer.state:
            _zero_grads(model)  # and zeros for any parameter the probe did not reach
            lrs = [group["lr"] for group in optimizer.param_groups]
            for group in optimizer.param_groups:
                group["lr"] = 0.0
            optimizer.step()  # lr 0 leaves the weights as they were, so the region's bf16 casts stay valid
            for group, lr in zip(optimizer.param_groups, lrs):
                group["lr"] = lr
            for state in optimizer.state.values():
                if torch.is_tensor(state.get("step")):
                    state["step"].zero_()
                elif "step" in state:
                    state["step"] = 0
        passes = 2 if per_update > m else 1
        if passes == 2:
            forward_backward()
    optimizer.zero_grad(set_to_none=True)
    model.zero_grad(set_to_none=True)
    return m, passes


def _weight_cast_cache(accelerator, bf16_autocast: bool):
    """One autocast region around a mini-batch's micro-batches, so each weight is cast to bf16 once per
    optimizer step instead of once per micro-batch: autocast caches casts of leaf parameters until its
    outermost region exits (here, before optimizer.step, so no stale cast survives an update). Gradients are
    bit-identical (tests/test_speed_update.py). Not under FSDP, whose parameters are gathered per forward and
    freed after it: a cache would hold a bf16 copy of the whole model on every rank."""
    sharded = getattr(accelerator, "distributed_type", None) in _SHARDED
    if not bf16_autocast or sharded:
        return contextlib.nullcontext()
    return autocast_context(True, accelerator.device)


_SHARDED = {"FSDP"}  # accelerate's DistributedType is a str enum: this compares equal

SKIP_ZERO_ADV = True  # benchmarks switch it off to measure what it saves


def _rows_with_gradient(inp: UpdateInputs, rows: list[int], algo, world: int) -> list[int]:
    """The rows whose loss can have a gradient. A row with advantage exactly 0 has policy loss -0 * ratio
    (clipped or not) = 0, so its forward/backward adds exactly nothing unless a KL term is in the loss: skip it.
    Aggregation stays exact because the denominators (_minibatch_count) still count every row. GRPO groups
    whose rewards are all equal (all wrong, all right) are such rows. Single process only: data-parallel
    ranks must run the same number of backward passes."""
    kl_in_loss = algo.kl_coef > 0 and algo.kl_in == "loss" and inp.ref_logp is not None
    if not SKIP_ZERO_ADV or kl_in_loss or world > 1:
        return rows
    return [i for i in rows if float(inp.adv[i]) != 0.0]


def _zero_grads(model) -> None:
    for p in model.parameters():
        if p.requires_grad and p.grad is None:
            p.grad = torch.zeros_like(p)


def _minibatch_count(inp: UpdateInputs, rows: list[int], algo) -> float:
    lengths = torch.tensor([len(inp.completion_ids[i]) for i in rows], dtype=torch.float32)
    if algo.overlong_filter:
        lengths = lengths * overlong_mask(torch.tensor([inp.truncated[i] for i in rows]))
    if algo.aggregation == "token-mean":
        return float(lengths.sum())
    if algo.aggregation == "seq-mean":
        return float((lengths > 0).sum())
    return float(len(rows))
