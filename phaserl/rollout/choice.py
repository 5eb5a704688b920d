"""Which rollout engine samples: `rollout.engine` (recipes) or `--engine` (eval), one of ENGINES.

- hf: the reference engine (rollout/hf.py), on any device;
- cpu: the CPU fast engine (rollout/cpu/), same samples, for a policy on the CPU;
- vllm: vLLM (rollout/vllm.py, an optional extra; built by its callers, whose arguments differ);
- auto (default): cpu when the policy is on the CPU, else hf.
"""

from __future__ import annotations

import torch

ENGINES = ("auto", "hf", "cpu", "vllm")


def resolve_engine(engine: str, device) -> str:
    """hf, cpu or vllm for `engine` and a policy on `device` (auto: cpu on the CPU, else hf)."""
    if engine not in ENGINES:
        raise ValueError(f"unknown rollout engine {engine!r}; choose one of {', '.join(ENGINES)}")
    if engine == "auto":
        return "cpu" if torch.device(device).type == "cpu" else "hf"
    return engine


def default_device() -> torch.device:
    """Where a policy loaded by phaserl goes: the GPU when torch sees one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def local_engine(
    engine: str, model, processor, tokenizer, *, lean_decode: bool = True, cpu_kernels: bool = True, **kwargs
):
    """An HFEngine or CPUEngine sampling from `model` (`engine` resolved on the model's device; vllm is not
    built here). kwargs: HFEngine's (is_vlm, batch_size, autocast_bf16, rollout_dtype, decoder); lean_decode
    and cpu_kernels are switches of the CPU engine."""
    kind = resolve_engine(engine, next(model.parameters()).device)
    if kind == "cpu":
        from phaserl.rollout.cpu import CPUEngine

        return CPUEngine(
            model, processor, tokenizer, lean_decode=lean_decode, cpu_kernels=cpu_kernels, **kwargs
        )
    if kind == "hf":
        from phaserl.rollout.hf import HFEngine

        return HFEngine(model, processor, tokenizer, **kwargs)
    raise ValueError(f"local_engine builds hf and cpu engines, not {kind!r}")
