"""Helpers for sharded, multi-process training: keep every rank in step, gather weights, size the job.

Three ideas live here, each small:
  1. the dummy vision pass: a VLM micro-batch with no image must still run the vision tower (on a blank
     image, with weight 0), at the point of the forward where images would run, or a sharded run hangs
     (EasyR1 issue 468: FSDP/ZeRO-3 all-gather the tower's parameters inside its forward, and a rank that
     skips it never joins the collective);
  2. full parameters out of DDP / FSDP2 / FSDP1 / PEFT wrappers, for syncing a rollout engine;
  3. the memory formula behind `phaserl train --dry-run` (and the tables in docs/scale_out.md).

Nothing here imports vllm at module level. DeepSpeed is not supported (the trainer refuses it): FSDP2 is the
sharded engine.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass

import torch

GiB = 1024**3

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

_WRAPPER_PARTS = {"_orig_mod", "_fsdp_wrapped_module", "_checkpoint_wrapped_module"}


def clean_name(name: str) -> str:
    """Drop the name parts that DDP (a leading `module`), torch.compile, FSDP1 and activation checkpointing insert.

    Whole dotted parts only: `original_module` or `_fsdp_wrapped_module` must not lose a `module.` substring."""
    parts = name.split(".")
    while parts and parts[0] == "module":
        parts = parts[1:]
    return ".".join(p for p in parts if p not in _WRAPPER_PARTS)


def unwrap(model):
    """The user's module under DDP / DeepSpeed engine / torch.compile wrappers."""
    while True:
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if inner is None or not isinstance(inner, torch.nn.Module):
            return model
        model = inner


def _is_peft(model) -> bool:
    return hasattr(model, "merge_adapter") and hasattr(model, "get_base_model")


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


def _peft_name(name: str) -> str | None:
    """Map a merged PEFT name to the base model's name; None for weights the base does not have (adapters,
    the frozen original of a `modules_to_save` module: its trained copy is the one to ship)."""
    if "lora_" in name or ".original_module." in name:
        return None
    name = name.replace("base_model.model.", "", 1).replace(".base_layer.", ".")
    return re.sub(r"\.modules_to_save\.[^.]+\.", ".", name)


def iter_full_params(model, *, include_buffers: bool = False) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, full tensor) for every weight of the trainer's model, in HF checkpoint names.

    Works for a plain module, DDP, FSDP2 (DTensor), FSDP1 and PEFT (adapters merged for the duration, then
    unmerged). Collective under sharding: call it on every rank, in the same order, and consume
    the iterator fully. Tensors that would not outlive the iteration (merged or gathered ones) are copies."""
    base = unwrap(model)
    peft = _is_peft(base)
    with _gathered(base) as gathered_views:
        if peft:
            base.merge_adapter()
        try:
            for name, tensor, view in _named_tensors(base, include_buffers):
                name = clean_name(name)
                if peft:
                    name = _peft_name(name)
                    if name is None:
                        continue
                full = _full_tensor(tensor.detach())
                yield name, full.clone() if view and (peft or gathered_views) else full
        finally:
            if peft:
                base.unmerge_adapter()


# ------------------------------------------------------------------------------------------------ memory


@dataclass(frozen=True)
class ModelShape:
    """What the memory formula needs from a model config (numbers from the published configs)."""

    name: str
    params: float  # total parameters (vision tower included)
    hidden: int
    layers: int
    kv_heads: int
    head_dim: int
    vocab: int


MODEL_SHAPES = {
    "smollm2-135m": ModelShape("SmolLM2-135M-Instruct", 0.135e9, 576, 30, 3, 64, 49152),
    "qwen2.5-vl-3b": ModelShape("Qwen2.5-VL-3B-Instruct", 3.75e9, 2048, 36, 2, 128, 151936),
    "qwen2.5-vl-7b": ModelShape("Qwen2.5-VL-7B-Instruct", 8.29e9, 3584, 28, 4, 128, 152064),
    "qwen2.5-vl-32b": ModelShape("Qwen2.5-VL-32B-Instruct", 33.5e9, 5120, 64, 8, 128, 152064),
    "qwen2.5-vl-72b": ModelShape("Qwen2.5-VL-72B-Instruct", 73.4e9, 8192, 80, 8, 128, 152064),
}
STRATEGIES = ("ddp", "fsdp2")


def shape_from_config(config, params: float, name: str = "model") -> ModelShape:
    """A ModelShape from a transformers config (text_config for VLMs) plus a parameter count."""
    text = getattr(config, "text_config", None) or config
    heads = text.num_attention_heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
    return ModelShape(name, float(params), text.hidden_size, text.num_hidden_layers,
                      getattr(text, "num_key_value_heads", None) or heads, head_dim, text.vocab_size)


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes per GPU, by part. train_peak and rollout_peak are the two phases; peak is the larger."""

    weights: float
    grads: float
    optimizer: float
    reference: float
    activations: float
    engine_weights: float
    kv_cache: float

    @property
    def train_peak(self) -> float:
        return self.weights + self.grads + self.optimizer + self.reference + self.activations

    @property
    def rollout_peak(self) -> float:
        return self.weights + self.grads + self.optimizer + self.reference + self.engine_weights + self.kv_cache

    @property
    def peak(self) -> float:
        return max(self.train_peak, self.rollout_peak)


def estimate_memory(shape: ModelShape, *, world_size: int, strategy: str = "fsdp2", trainable: float = 1.0,
                    micro_batch: int = 1, seq_len: int = 2048, kl: bool = True, rollout: str = "vllm",
                    rollout_seqs: int = 64, engine_sleeps: bool = True, engine_tp: int = 1) -> MemoryEstimate:
    """Per-GPU memory of GRPO on one model: the ZeRO paper's 16 bytes/param, split by sharding, plus the rest.

    P params, Pt = trainable * P, W = world_size. fp32 master weights 4P, fp32 grads 4Pt, AdamW m and v 8Pt
    (ZeRO, Rajbhandari et al. 2020, sec. 3: 2+2+12 = 16 bytes per parameter in mixed precision).
      ddp:   nothing sharded       fsdp2: all three / W
    Reference model (kl=True): bf16 2P on every GPU (phaserl keeps the frozen reference unsharded).
    Activations with gradient checkpointing: 2 bytes x hidden per token per layer kept, one layer recomputed
    (~34 x hidden bytes per token, Korthikanti et al. 2022 eq. 2 without the attention matrix, flash/SDPA), and the
    fp32 logits with their gradient (8 x vocab bytes per token), which dominate for 150k-token vocabularies.
    vLLM colocated: bf16 weights 2P and a KV cache of rollout_seqs x seq_len tokens x (2 x layers x kv_heads x
    head_dim x 2 bytes), both / engine_tp (vLLM tensor parallelism); with sleep mode both leave the GPU during
    the update. rollout="hf": the engine's bf16 copy 2P stays through the update, its KV cache does not.
    rollout="server": no engine memory on the training GPUs.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose from {STRATEGIES}")
    P, Pt, W = shape.params, shape.params * trainable, max(1, world_size)
    shard_states = shard_weights = W if strategy == "fsdp2" else 1
    tokens = micro_batch * seq_len
    activations = tokens * (2 * shape.hidden * shape.layers + 34 * shape.hidden + 8 * shape.vocab)
    tp = max(1, engine_tp)
    local = rollout in ("vllm", "hf")
    engine = 2 * P / tp if local else 0.0
    kv = rollout_seqs * seq_len * 2 * shape.layers * shape.kv_heads * shape.head_dim * 2 / tp if local else 0.0
    est = MemoryEstimate(weights=4 * P / shard_weights, grads=4 * Pt / shard_states,
                         optimizer=8 * Pt / shard_states, reference=2 * P if kl else 0.0,
                         activations=activations, engine_weights=engine, kv_cache=kv)
    if rollout == "vllm" and not engine_sleeps:  # the engine keeps its memory through the update
        est = MemoryEstimate(est.weights, est.grads, est.optimizer, est.reference,
                             est.activations + engine + kv, engine, kv)
    elif rollout == "hf":  # the sampling copy stays resident; its KV cache is freed after generation
        est = MemoryEstimate(est.weights, est.grads, est.optimizer, est.reference,
                             est.activations + engine, engine, kv)
    return est


def format_memory_table(rows: list[tuple[str, int, str, MemoryEstimate]], gpu_gib: float = 80.0) -> str:
    """A markdown table (model, GPUs, strategy, parts in GiB, peak, fits) for --dry-run and the docs."""
    head = ("| model | GPUs | strategy | weights | grads | optim | ref | activ. | engine w+KV | peak GiB | "
            f"fits {gpu_gib:g} GiB |")
    lines = [head, "|" + "---|" * 11]
    for name, gpus, strategy, e in rows:
        cells = [e.weights, e.grads, e.optimizer, e.reference, e.activations, e.engine_weights + e.kv_cache]
        fits = "yes" if e.peak / GiB <= gpu_gib * 0.95 else "no"
        lines.append(f"| {name} | {gpus} | {strategy} | " + " | ".join(f"{c / GiB:.1f}" for c in cells)
                     + f" | {e.peak / GiB:.1f} | {fits} |")
    return "\n".join(lines)


def memory_report(shapes: list[ModelShape], world_sizes: list[int], strategies: list[str],
                  gpu_gib: float = 80.0, **kwargs) -> str:
    """The table for every (model, world size, strategy) combination; kwargs go to estimate_memory."""
    rows = [(s.name, w, st if w > 1 else "1 GPU", estimate_memory(s, world_size=w, strategy=st, **kwargs))
            for s in shapes for w in world_sizes for st in (strategies if w > 1 else strategies[:1])]
    return format_memory_table(rows, gpu_gib)


def count_params_from_config(config) -> int:
    """Exact parameter count of a transformers config, built on the meta device (no memory, no weights)."""
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

    cls = AutoModelForImageTextToText if hasattr(config, "vision_config") else AutoModelForCausalLM
    with torch.device("meta"):
        model = cls.from_config(config)
    seen, total = set(), 0
    for p in model.parameters():  # tied embeddings count once
        if id(p) not in seen:
            seen.add(id(p))
            total += math.prod(p.shape)
    return total


def shape_for_model(name: str) -> ModelShape | None:
    """The memory shape of a recipe's model: a known preset by name, else its config counted on the meta device
    (a local folder, a built-in, or a hub id already in the local cache). None when neither works."""
    key = name.lower().rsplit("/", 1)[-1].replace("-instruct", "")
    for preset, shape in MODEL_SHAPES.items():
        if key == preset or key.startswith(preset + "-") or key == shape.name.lower().replace("-instruct", ""):
            return shape
    try:
        from transformers import AutoConfig

        from phaserl.models import resolve_model_path

        config = AutoConfig.from_pretrained(resolve_model_path(name), local_files_only=True)  # no hub retries
        return shape_from_config(config, count_params_from_config(config), name)
    except Exception:  # noqa: BLE001 (no config reachable: the plan says so instead of failing)
        return None


def memory_plan(model: str, *, micro_batch: int, seq_len: int, rollout_seqs: int, kl: bool, engine: str,
                trainable: float = 1.0, world_sizes=(1, 8, 16), gpu_gib: float = 80.0) -> str:
    """The `--dry-run` memory block: per-GPU GiB for each strategy and world size, from `estimate_memory`."""
    shape = shape_for_model(model)
    if shape is None:
        return f"  memory: unknown model shape for {model!r} (no local config; see docs/scale_out.md)"
    table = memory_report([shape], list(world_sizes), list(STRATEGIES), gpu_gib=gpu_gib, trainable=trainable,
                          micro_batch=micro_batch, seq_len=seq_len, kl=kl, rollout=engine,
                          rollout_seqs=rollout_seqs)
    head = (f"  memory per GPU ({shape.params / 1e9:.3g}B params, micro-batch {micro_batch} x {seq_len} tokens, "
            f"rollout KV for {rollout_seqs} seqs, engine={engine}, kl={kl}):")
    return head + "\n" + "\n".join("    " + line for line in table.splitlines())
