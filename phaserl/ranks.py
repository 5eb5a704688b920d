"""What the data-parallel ranks of one stage agree on each step: the shared data cursor, a flag raised on any
rank, the vision-tower balance, and (at the end of a DDP stage) identical replicas. Each is one small all-gather;
in one process each is a plain local answer."""

from __future__ import annotations

import torch

from phaserl.distributed import is_sharded


def drawer(acc, mixture):
    """draw(k): this rank's next k examples. Every rank advances the shared cursor by the sum of all ranks' k
    (they differ under dynamic sampling) and takes its own block, so cursors never diverge."""
    world, rank = acc.num_processes, acc.process_index
    if world == 1:
        return mixture.next_batch

    def draw(k: int):
        ks = acc.gather(torch.tensor([k], device=acc.device)).tolist()  # [world]
        batch = mixture.next_batch(sum(ks))
        offset = sum(ks[:rank])
        return batch[offset : offset + k]

    return draw


def any_rank(acc):
    """any_rank(flag): True on every rank when the flag is True on any rank (one all-gather)."""
    if acc.num_processes == 1:
        return lambda flag: bool(flag)
    return lambda flag: bool(acc.gather(torch.tensor([int(bool(flag))], device=acc.device)).max())


def vision_balance(acc, counter, prompts) -> dict:
    """Vision-tower forwards and image prompts this step, min and max over ranks. The forwards must be equal (or
    a sharded run hangs) whatever the images: a rank with none runs the dummy pass."""
    if counter is None:
        return {}
    images = sum(1 for p in prompts if p.images)
    both = acc.gather(torch.tensor([[counter.reset(), images]], device=acc.device))  # [world, 2]
    lo, hi = both.min(0).values.tolist(), both.max(0).values.tolist()
    return {
        "dist/vision_forwards_min": lo[0],
        "dist/vision_forwards_max": hi[0],
        "dist/image_prompts_min": lo[1],
        "dist/image_prompts_max": hi[1],
    }


@torch.no_grad()
def replicas_identical(acc, model) -> bool | None:
    """DDP replicas must hold identical weights (a mismatch is a bug worth stopping for): compares the sum and
    absolute sum of every parameter across ranks. None under sharding: FSDP shards are not replicas."""
    if is_sharded(model):
        return None
    params = list(acc.unwrap_model(model).parameters())
    total = torch.zeros(2, dtype=torch.float64, device=params[0].device)
    for p in params:
        total[0] += p.detach().double().sum()
        total[1] += p.detach().double().abs().sum()
    sums = acc.gather(total.to(acc.device)[None]).cpu()  # [world, 2]
    return bool((sums == sums[0]).all())
