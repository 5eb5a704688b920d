"""The memory formula behind `phaserl train --dry-run` and the tables in docs/scale_out.md: bytes per GPU of
GRPO on one model, by part, for DDP and FSDP2, with the rollout engine's weights and KV cache."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

GiB = 1024**3


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
    return ModelShape(
        name,
        float(params),
        text.hidden_size,
        text.num_hidden_layers,
        getattr(text, "num_key_value_heads", None) or heads,
        head_dim,
        text.vocab_size,
    )


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
        return (
            self.weights + self.grads + self.optimizer + self.reference + self.engine_weights + self.kv_cache
        )

    @property
    def peak(self) -> float:
        return max(self.train_peak, self.rollout_peak)


def estimate_memory(
    shape: ModelShape,
    *,
    world_size: int,
    strategy: str = "fsdp2",
    trainable: float = 1.0,
    micro_batch: int = 1,
    seq_len: int = 2048,
    kl: bool = True,
    rollout: str = "vllm",
    rollout_seqs: int = 64,
    engine_sleeps: bool = True,
    engine_tp: int = 1,
) -> MemoryEstimate:
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
    kv = (
        rollout_seqs * seq_len * 2 * shape.layers * shape.kv_heads * shape.head_dim * 2 / tp if local else 0.0
    )
    est = MemoryEstimate(
        weights=4 * P / shard_weights,
        grads=4 * Pt / shard_states,
        optimizer=8 * Pt / shard_states,
        reference=2 * P if kl else 0.0,
        activations=activations,
        engine_weights=engine,
        kv_cache=kv,
    )
    if rollout == "vllm" and not engine_sleeps:  # the engine keeps its memory through the update
        est = MemoryEstimate(
            est.weights, est.grads, est.optimizer, est.reference, est.activations + engine + kv, engine, kv
        )
    elif rollout == "hf":  # the sampling copy stays resident; its KV cache is freed after generation
        est = MemoryEstimate(
            est.weights, est.grads, est.optimizer, est.reference, est.activations + engine, engine, kv
        )
    return est


def format_memory_table(rows: list[tuple[str, int, str, MemoryEstimate]], gpu_gib: float = 80.0) -> str:
    """A markdown table (model, GPUs, strategy, parts in GiB, peak, fits) for --dry-run and the docs."""
    head = (
        "| model | GPUs | strategy | weights | grads | optim | ref | activ. | engine w+KV | peak GiB | "
        f"fits {gpu_gib:g} GiB |"
    )
    lines = [head, "|" + "---|" * 11]
    for name, gpus, strategy, e in rows:
        cells = [e.weights, e.grads, e.optimizer, e.reference, e.activations, e.engine_weights + e.kv_cache]
        fits = "yes" if e.peak / GiB <= gpu_gib * 0.95 else "no"
        lines.append(
            f"| {name} | {gpus} | {strategy} | "
            + " | ".join(f"{c / GiB:.1f}" for c in cells)
            + f" | {e.peak / GiB:.1f} | {fits} |"
        )
    return "\n".join(lines)


def memory_report(
    shapes: list[ModelShape], world_sizes: list[int], strategies: list[str], gpu_gib: float = 80.0, **kwargs
) -> str:
    """The table for every (model, world size, strategy) combination; kwargs go to estimate_memory."""
    rows = [
        (s.name, w, st if w > 1 else "1 GPU", estimate_memory(s, world_size=w, strategy=st, **kwargs))
        for s in shapes
        for w in world_sizes
        for st in (strategies if w > 1 else strategies[:1])
    ]
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
        if (
            key == preset
            or key.startswith(preset + "-")
            or key == shape.name.lower().replace("-instruct", "")
        ):
            return shape
    try:
        from transformers import AutoConfig

        from phaserl.models import resolve_model_path

        config = AutoConfig.from_pretrained(resolve_model_path(name), local_files_only=True)  # no hub retries
        return shape_from_config(config, count_params_from_config(config), name)
    except Exception:  # noqa: BLE001 (no config reachable: the plan says so instead of failing)
        return None


def memory_plan(
    model: str,
    *,
    micro_batch: int,
    seq_len: int,
    rollout_seqs: int,
    kl: bool,
    engine: str,
    trainable: float = 1.0,
    world_sizes=(1, 8, 16),
    gpu_gib: float = 80.0,
) -> str:
    """The `--dry-run` memory block: per-GPU GiB for each strategy and world size, from `estimate_memory`."""
    shape = shape_for_model(model)
    if shape is None:
        return f"  memory: unknown model shape for {model!r} (no local config; see docs/scale_out.md)"
    table = memory_report(
        [shape],
        list(world_sizes),
        list(STRATEGIES),
        gpu_gib=gpu_gib,
        trainable=trainable,
        micro_batch=micro_batch,
        seq_len=seq_len,
        kl=kl,
        rollout=engine,
        rollout_seqs=rollout_seqs,
    )
    head = (
        f"  memory per GPU ({shape.params / 1e9:.3g}B params, micro-batch {micro_batch} x {seq_len} tokens, "
        f"rollout KV for {rollout_seqs} seqs, engine={engine}, kl={kl}):"
    )
    return head + "\n" + "\n".join("    " + line for line in table.splitlines())
