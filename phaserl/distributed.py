"""Helpers for sharded, multi-process training: keep every rank in step, gather weights, size the job.

Two ideas live here, each small:
  1. the dummy vision pass: a VLM micro-batch with no image must still run the vision tower (on a blank
     image, with weight 0), at the point of the forward where images would run, or a sharded run hangs
     (EasyR1 issue 468: FSDP/ZeRO-3 all-gather the tower's parameters inside its forward, and a rank that
     skips it never joins the collective);
  2. full parameters out of DDP / FSDP2 / FSDP1 / PEFT wrappers, for syncing a rollout engine (their names
     through phaserl/names.py).
The memory formula behind `phaserl train --dry-run` is phaserl/memory.py.

Nothing here imports vllm at module level. DeepSpeed is not supported (the trainer refuses it): FSDP2 is the
sharded engine.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from phaserl.models import is_peft
from phaserl.names import hf_name, unwrap

# --------------------------------------------------------------------------------------------- dummy vision


def dummy_vision_inputs(processor, size: int = 56) -> dict[str, torch.Tensor]:
    """Processor outputs for one blank size x size image (Qwen2.5-VL: 4x4 patches, the smallest it allows).

    Built once per run and reused: the values do not matter, only that the tower runs."""
    from PIL import Image

    image_processor = getattr(processor, "image_processor", processor)
    out = image_processor(images=[Image.new("RGB", (size, size))], return_tensors="pt")
    return {k: v for k, v in dict(out).items() if isinstance(v, torch.Tensor)}


def _sum_floats(obj) -> torch.Tensor | None:
    """Sum of every floating tensor inside a tensor / tuple / list / dict / ModelOutput."""
    if isinstance(obj, torch.Tensor):
        return obj.float().sum() if obj.is_floating_point() else None
    if isinstance(obj, dict) or hasattr(obj, "to_tuple"):
        obj = list(obj.values()) if isinstance(obj, dict) else list(obj.to_tuple())
    if isinstance(obj, (list, tuple)):
        parts = [s for s in (_sum_floats(x) for x in obj) if s is not None]
        return torch.stack(parts).sum() if parts else None
    return None


def _text_model(base):
    """The VLM's language model: the module whose forward follows the vision tower's in a normal step."""
    inner = getattr(base, "model", None)
    lang = getattr(inner, "language_model", None) or getattr(base, "language_model", None)
    if lang is None and hasattr(base, "get_decoder"):
        lang = base.get_decoder()
    if lang is None:
        raise ValueError(f"{type(base).__name__}: cannot find the language model for the dummy vision pass")
    return lang


@contextlib.contextmanager
def dummy_vision(model, vision_inputs: dict[str, torch.Tensor]):
    """Within this block, the first forward of the VLM on a text-only micro-batch first runs the vision tower on a
    blank image and adds 0 x (sum of its output) to the input embeddings.

    Only the first: a micro-batch with images runs the tower once whether its log-probs take one forward (the
    plain path) or two (the shared-prefix path: prompts with their images, then completions on the cache), so a
    text-only rank must run it exactly once too, or the sharded collectives go out of step.

    Why inside the forward, at that point: FSDP and ZeRO-3 all-gather each unit's parameters as its forward
    starts, and the gathers are collectives that every rank must issue in the same order. A rank with images
    runs embed -> vision tower -> text layers; this hook (a pre-hook on the text model) makes a text-only rank do
    the same, instead of hanging its peers (EasyR1 issue 468). The value is unchanged (+0), the tower's gradients
    are exactly 0 on this rank, and the backward walks the same units in the same reverse order. Under DDP it
    also keeps every vision parameter in the graph (no unused-parameter error)."""
    base = unwrap(model)
    base = getattr(base, "backbone", base)  # a critic (phaserl/critic.py): the VLM under its value head
    lang = _text_model(base)

    fired = False

    def hook(module, args, kwargs):
        nonlocal fired
        embeds = kwargs.get("inputs_embeds")
        if embeds is None or fired:
            return None
        fired = True
        inputs = {k: v.to(embeds.device) for k, v in vision_inputs.items()}
        total = _sum_floats(base.get_image_features(**inputs))
        if total is None:
            raise ValueError(f"{type(base).__name__}.get_image_features returned no floating tensor")
        kwargs["inputs_embeds"] = embeds + (0.0 * total).to(embeds.dtype)
        return args, kwargs

    handle = lang.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()


_TOWER_NAMES = ("visual", "vision_tower", "vision_model")


def vision_tower(model) -> torch.nn.Module:
    """The VLM's vision tower module (Qwen2.5-VL `visual`, LLaVA `vision_tower`, Idefics3 `vision_model`)."""
    for name, module in unwrap(model).named_modules():
        if name.rsplit(".", 1)[-1] in _TOWER_NAMES:
            return module
    raise ValueError(f"{type(unwrap(model)).__name__}: no vision tower found (looked for {_TOWER_NAMES})")


class CallCounter:
    """Counts forwards of a module in training mode (the update and its log-prob passes; generation runs in eval
    mode). The trainer compares the counts of all ranks each step: under FSDP they must be equal."""

    def __init__(self, module: torch.nn.Module):
        self.calls = 0
        self.handle = module.register_forward_hook(self._hook)

    def _hook(self, module, args, output) -> None:
        if module.training:
            self.calls += 1

    def reset(self) -> int:
        """The count since the last reset."""
        calls, self.calls = self.calls, 0
        return calls


def vision_dummy_loss(model, vision_inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """0 x (vision tower output on a blank image), to add to a text-only micro-batch's loss.

    Enough under DDP (the tower's parameters get zero gradients, so every rank's all-reduce has the same
    buckets). NOT enough under FSDP / ZeRO-3: run after the forward, its all-gathers come after the text
    layers' on this rank but before them on a rank with images, and the collectives mismatch; use
    `dummy_vision` there (it runs the tower at the point of the forward where images run)."""
    base = unwrap(model)
    device = next(base.parameters()).device
    total = _sum_floats(base.get_image_features(**{k: v.to(device) for k, v in vision_inputs.items()}))
    if total is None:
        raise ValueError(f"{type(base).__name__}.get_image_features returned no floating tensor")
    return 0.0 * total


def needs_dummy_vision(is_vlm: bool, has_images: bool, vision_trainable: bool, world_size: int) -> bool:
    """Run the dummy pass when a text-only micro-batch meets a VLM whose tower takes part in collectives.

    A frozen tower under DDP is skipped by gradient sync anyway; under FSDP/ZeRO-3 its forward still
    all-gathers, so a frozen tower still needs it when sharded (callers pass vision_trainable=True then)."""
    return is_vlm and not has_images and vision_trainable and world_size > 1


# -------------------------------------------------------------------------------------------- full weights


def _full_tensor(param: torch.Tensor) -> torch.Tensor:
    """A DTensor shard (FSDP2) gathered to the full tensor (a collective: every rank must call it)."""
    if hasattr(param, "full_tensor"):
        return param.full_tensor()
    return param


def is_sharded(model) -> bool:
    """True when the model's parameters are shards (FSDP2 DTensors or FSDP1 flat parameters)."""
    base = unwrap(model)
    if any(hasattr(p, "full_tensor") for p in base.parameters()):
        return True
    try:
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP1
    except ImportError:  # pragma: no cover
        return False
    return any(isinstance(m, FSDP1) for m in base.modules())


@contextlib.contextmanager
def _gathered(model):
    """Make full parameters visible for FSDP1 (summon_full_params); yields whether tensors must be copied
    before the context ends (they are views of memory that is freed at exit)."""
    try:
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP1
    except ImportError:  # pragma: no cover
        FSDP1 = None
    if FSDP1 is not None and any(isinstance(m, FSDP1) for m in model.modules()):
        with FSDP1.summon_full_params(model, writeback=False, recurse=True):
            yield True
        return
    yield False


def _named_tensors(model, include_buffers: bool) -> Iterator[tuple[str, torch.Tensor, bool]]:
    """(name, tensor, is_view_of_gathered_memory)."""
    for n, p in model.named_parameters():
        yield n, p, True
    if include_buffers:
        for n, b in model.named_buffers():
            yield n, b, True


def iter_full_params(model, *, include_buffers: bool = False) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, full tensor) for every weight of the trainer's model, in HF checkpoint names.

    Works for a plain module, DDP, FSDP2 (DTensor), FSDP1 and PEFT (adapters merged for the duration, then
    unmerged). Collective under sharding: call it on every rank, in the same order, and consume
    the iterator fully. Tensors that would not outlive the iteration (merged or gathered ones) are copies."""
    base = unwrap(model)
    peft = is_peft(base)
    with _gathered(base) as gathered_views:
        if peft:
            base.merge_adapter()
        try:
            for name, tensor, view in _named_tensors(base, include_buffers):
                name = hf_name(name, peft)
                if name is None:
                    continue
                full = _full_tensor(tensor.detach())
                yield name, full.clone() if view and (peft or gathered_views) else full
        finally:
            if peft:
                base.unmerge_adapter()
