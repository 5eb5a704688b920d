"""The update's speed-only parts (phaserl/update.py calls each in one line): none changes what is learned.

- memory_probe: before a stage's first step, reach the update's peak memory once (an out-of-memory error comes
  early; the memory is page-faulted in once);
- weight_cast_cache: one bf16 autocast region per optimizer step, so each weight is cast once per step;
- rows_with_gradient: micro-batches skip rows whose loss is exactly 0 (SKIP_ZERO_ADV, the benchmarks' switch).
tests/test_speed_update.py checks that each leaves the gradients and the learned weights unchanged.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import torch

from phaserl.policy import autocast_context

if TYPE_CHECKING:
    from phaserl.policy import Policy
    from phaserl.update import UpdateInputs


def memory_probe(
    accelerator, policy: Policy, optimizer, prompt, algo, optim, max_new_tokens: int, samples_per_step: int
) -> tuple[int, int]:
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
    completions = [[policy.pad_id] * max_new_tokens for _ in rows]
    model = policy.model

    def forward_backward():
        logp, mask = policy.logp(rows, completions)
        accelerator.backward((logp * mask).sum())

    with torch.random.fork_rng(), weight_cast_cache(accelerator, optim.bf16_autocast):
        forward_backward()
        model.zero_grad(set_to_none=False)  # the probe's gradients, zeroed in place
        if not optimizer.state:
            zero_grads(model)  # and zeros for any parameter the probe did not reach
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


def weight_cast_cache(accelerator, bf16_autocast: bool):
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


def rows_with_gradient(inp: UpdateInputs, rows: list[int], algo, world: int) -> list[int]:
    """The rows whose loss can have a gradient. A row with advantage exactly 0 has policy loss -0 * ratio
    (clipped or not) = 0, so its forward/backward adds exactly nothing unless a KL term is in the loss: skip it.
    Aggregation stays exact because the denominators (_minibatch_count) still count every row. GRPO groups
    whose rewards are all equal (all wrong, all right) are such rows. Single process only: data-parallel
    ranks must run the same number of backward passes."""
    kl_in_loss = algo.kl_coef > 0 and algo.kl_in == "loss" and inp.ref_logp is not None
    if not SKIP_ZERO_ADV or kl_in_loss or world > 1:
        return rows
    return [i for i in rows if bool(inp.adv[i].ne(0).any())]


def zero_grads(model) -> None:
    """Zero gradients for every trainable parameter that has none (an optimizer step with no backward)."""
    for p in model.parameters():
        if p.requires_grad and p.grad is None:
            p.grad = torch.zeros_like(p)
