"""CPUEngine: the reference engine's decoding loop with the CPU's fast parts plugged in (see __init__.py)."""

from __future__ import annotations

import torch

from phaserl.models import is_peft
from phaserl.rollout.base import SamplingParams
from phaserl.rollout.cpu.lean import LeanCache, LeanDecoder, unsupported_reason
from phaserl.rollout.cpu.packed import pack_linears, packing_available, repack
from phaserl.rollout.cpu.sampling import sample_next
from phaserl.rollout.encode import continuation_positions
from phaserl.rollout.hf import HFEngine, _full_sources, _sources
from phaserl.runtime import prepare_cpu_engine


class CPUEngine(HFEngine):
    """HFEngine on a model on the CPU, with packed weights, the lean step, the compiled attention and the
    one-uniform sampler. Its samples are what HFEngine's loop samples from the same distribution; its greedy
    tokens are HFEngine's."""

    def __init__(
        self,
        model,
        processor,
        tokenizer,
        *,
        pack_weights: bool = True,
        lean_decode: bool = True,
        cpu_kernels: bool = True,
        **kwargs,
    ):
        """kwargs: HFEngine's (is_vlm, batch_size, autocast_bf16, rollout_dtype, decoder, copy_attn_implementation).
        The copy's default attention, "phaserl_gqa", is also the fast one on the CPU: for one query token against a
        short cache, two small matmuls beat the CPU flash-attention kernel, and broadcasting KV heads beats eager's
        copies (docs/performance.md).
        pack_weights: a bf16 copy keeps its linear weights pre-packed for oneDNN (packed.py).
        lean_decode: the loop's decoding steps on a packed copy of a Llama-family model run lean.py's step
        instead of the transformers forward (the prompt is still prefilled by transformers).
        cpu_kernels: that step's attention runs as one compiled call per layer where the CPU allows (kernels.py)."""
        device = next(model.parameters()).device
        if device.type != "cpu":
            raise ValueError(
                f"the cpu rollout engine samples on the CPU, but the policy is on {device}; "
                "set rollout.engine to auto or hf"
            )
        prepare_cpu_engine()  # allocator settings (phaserl/runtime.py); a no-op after the first call
        self.pack_weights = pack_weights
        self.lean_decode = lean_decode
        self.cpu_kernels = cpu_kernels
        self.lean: LeanDecoder | None = None
        self.packed: list[str] = []  # names of the copy's PackedLinear modules
        super().__init__(model, processor, tokenizer, **kwargs)

    def _copy(self, model):
        clone = super()._copy(model)
        if self.pack_weights and packing_available(self.rollout_dtype, "cpu") and not is_peft(clone):
            self.packed = pack_linears(clone)
            if self.lean_decode and unsupported_reason(clone) is None:
                kernel = None
                if self.cpu_kernels:
                    from phaserl.rollout.cpu.kernels import decode_attention

                    kernel = decode_attention()
                src = _full_sources(model) if self.sharded else _sources(model)
                self.lean = LeanDecoder(clone, src, attention_kernel=kernel)
        return clone

    @torch.no_grad()
    def sync_weights(self, model) -> None:
        """Sample from `model`'s current weights: the copy's parameters, packed weights and lean buffers.
        Collective when the model is sharded: call on every rank."""
        if self.rollout_dtype is None or not (self.packed or self.lean):
            return super().sync_weights(model)
        src = _full_sources(model) if self.sharded else _sources(model)
        for name, p in self.model.named_parameters():
            p.copy_(src[name])
        if self.packed:
            repack(self.model, src)
        if self.lean is not None:
            self.lean.refresh(src)

    def _steps(self, cache, prompt_mask, pos, rows, extra: int):
        if self.lean is None:
            return super()._steps(cache, prompt_mask, pos, rows, extra)
        return _LeanSteps(self.lean, cache, prompt_mask, pos, rows, extra)

    def _sample(self, logits, params: SamplingParams, gen):
        return sample_next(logits, params.temperature, params.top_p, gen, entropy=True)


class _LeanSteps:
    """Decoding steps on lean.py's LeanDecoder (the prompts' KV copied into its buffers once)."""

    def __init__(self, lean: LeanDecoder, cache, prompt_mask, pos, rows, extra: int):
        self.lean = lean
        self.state = LeanCache.from_prefill(cache, rows, prompt_mask, extra)
        nxt = continuation_positions(
            pos, rows, 0, 1
        )  # [n, 1] or [3, n, 1]: the first generated token's position
        self.nxt = (nxt[0] if nxt.dim() == 3 else nxt)[
            :, 0
        ]  # [n]: M-RoPE sections advance alike after the prompt

    def select(self, idx: torch.Tensor) -> None:
        self.nxt = self.nxt[idx]
        self.state.select(idx)

    def step(self, tok: torch.Tensor, t: int) -> torch.Tensor:
        return self.lean.step(tok, self.nxt + t, self.state)
