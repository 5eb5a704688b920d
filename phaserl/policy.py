"""Log-probs of sampled completions under a model: the training-side mirror of the rollout engine.

Two ways to compute the same numbers:
- plain (`build_sequences` + `completion_logp`): every row is one padded sequence
  [left-padded prompt | completion, right-padded]   # [m, P + T]
  so every completion starts at column P and logits are needed only for the last T + 1 positions;
- shared prefix (`shared_prefix_logp`): the G rows of a group share their prompt, so the prompt (and its
  images, through the vision tower) is run once per distinct prompt, with gradients, and its KV cache is
  fanned out to the rows; the completions then run against that cache. Same function, about (G-1)/G of the
  prompt work saved; gradients of the prompt positions add up over the rows exactly as in the plain form.
`rows_logp` picks the shared form when the architecture allows it and activation checkpointing is off: a
checkpointed layer in training mode runs without a KV cache (transformers forces `use_cache=False`, and a
recomputed layer would append to a cache twice), so checkpointed models take the plain form. A sharded model
(FSDP2) with gradients on takes it too: FSDP2 frees each layer's gathered weights after its forward, and the
shared form runs the model twice (prompts, then completions) before one backward, whose pass through the first
forward then finds that storage freed. Without gradients (old-policy log-probs) the shared form stays.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace

import torch

from phaserl.distributed import is_sharded
from phaserl.names import unwrap
from phaserl.rollout.encode import (
    continuation_positions,
    encode_prompts,
    prefix_position_ids,
    repeat_interleave_inputs,
    select_cache,
    supports_shared_prefix,
    unique_prompts,
)
from phaserl.types import Prompt

_PER_TOKEN_KEYS = ("input_ids", "attention_mask", "mm_token_type_ids", "token_type_ids")


def pad_completions(completion_ids: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded targets [m, T] (T >= 1) and their mask [m, T]."""
    T = max(1, max((len(c) for c in completion_ids), default=1))
    targets = torch.full((len(completion_ids), T), pad_id, dtype=torch.long)
    mask = torch.zeros((len(completion_ids), T), dtype=torch.float32)
    for j, c in enumerate(completion_ids):
        targets[j, : len(c)] = torch.tensor(c, dtype=torch.long)
        mask[j, : len(c)] = 1.0
    return targets, mask


def pad_rows(rows: list[torch.Tensor], T: int) -> torch.Tensor:
    """Per-token float rows [N][T_i] (log-probs, values) as one [N, T] float32 tensor: cut at T, right-padded
    with 0 (callers mask the padding)."""
    out = torch.zeros(len(rows), T)
    for j, row in enumerate(rows):
        out[j, : len(row)] = row[:T].float()
    return out


def build_sequences(
    processor, prompts: list[Prompt], completion_ids: list[list[int]], is_vlm: bool, pad_id: int
) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """Model inputs for rows (prompts[j], completion_ids[j]); returns (inputs, targets [m, T], mask [m, T])."""
    # Encode each distinct prompt once (rows of one group share their Prompt object), then repeat per row.
    uniq, row_of = [], []
    for p in prompts:
        if not uniq or uniq[-1] is not p:
            uniq.append(p)
        row_of.append(len(uniq) - 1)
    enc = encode_prompts(processor, uniq, is_vlm)
    repeats = [row_of.count(i) for i in range(len(uniq))]
    if all(r == repeats[0] for r in repeats):
        enc = repeat_interleave_inputs(enc, repeats[0], [len(p.images) for p in uniq])
    else:
        enc = encode_prompts(processor, prompts, is_vlm)
    targets, mask = pad_completions(completion_ids, pad_id)
    inputs = dict(enc)
    for key in _PER_TOKEN_KEYS:
        if key not in inputs:
            continue
        extra = {"input_ids": targets, "attention_mask": mask.long()}.get(key, torch.zeros_like(targets))
        inputs[key] = torch.cat([inputs[key], extra.to(inputs[key].dtype)], dim=1)
    if not is_vlm:  # causal LMs take position ids from us; Qwen2.5-VL derives its M-RoPE ids from the mask
        inputs["position_ids"] = (inputs["attention_mask"].cumsum(-1) - 1).clamp(min=0)
    return inputs, targets, mask


CHUNK_ELEMENTS = 1 << 22  # logits per chunk of the fused log-prob (16 MB in float32): cache-sized temporaries
# exp() of anything below this is a float32 denormal (< 1.2e-38), which CPUs compute many times slower; such
# terms are 1e-38 of a sum that is >= 1, so computing them as exp(-87) changes nothing representable.
EXP_FLOOR = -87.0


def logsumexp_fast(x: torch.Tensor) -> torch.Tensor:
    """logsumexp over the last dim of float32 x, without denormal exp() calls: [...]."""
    m = x.amax(dim=-1, keepdim=True)
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    return (x - m).clamp_(min=EXP_FLOOR).exp_().sum(-1).log_() + m.squeeze(-1)


def selective_logp(logits: torch.Tensor, targets: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """log_softmax(logits / T)[targets] in float32: [m, T], from logits [m, T, V] of any float dtype.

    Computed in chunks of positions, in float32, without materialising the [m, T, V] float32 log-softmax or
    the gather's [m, T, V] zero-filled gradient: the backward writes d/dlogits = (onehot - softmax) * g / T
    straight into one tensor of the logits' dtype. At a 49k vocabulary the plain autograd form made five
    full-size float32 buffers per micro-batch, which cost more time than the model's matmuls around them."""
    if logits.requires_grad and torch.is_grad_enabled():
        return _FusedSelectiveLogp.apply(logits, targets, float(temperature))
    return _selective_forward(logits, targets, float(temperature))[0]


def _chunks(n: int, V: int):
    step = max(1, CHUNK_ELEMENTS // max(V, 1))
    return [(i, min(i + step, n)) for i in range(0, n, step)]


def _selective_forward(logits: torch.Tensor, targets: torch.Tensor, temperature: float):
    """(logp [m, T] float32, logsumexp [m, T] float32) of logits / T, chunk by chunk."""
    *lead, V = logits.shape
    flat, tgt = logits.reshape(-1, V), targets.reshape(-1)
    logp = torch.empty(flat.shape[0], dtype=torch.float32, device=logits.device)
    lse = torch.empty_like(logp)
    for a, b in _chunks(flat.shape[0], V):
        x = flat[a:b].float()
        if temperature != 1.0:
            x = x / temperature
        lse[a:b] = logsumexp_fast(x)
        logp[a:b] = x.gather(-1, tgt[a:b, None]).squeeze(-1) - lse[a:b]
    return logp.view(*lead), lse.view(*lead)


class _FusedSelectiveLogp(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, targets, temperature):
        logp, lse = _selective_forward(logits, targets, temperature)
        ctx.save_for_backward(logits, targets, lse)
        ctx.temperature = temperature
        return logp

    @staticmethod
    def backward(ctx, grad):
        logits, targets, lse = ctx.saved_tensors
        T = ctx.temperature
        V = logits.shape[-1]
        flat, tgt = logits.reshape(-1, V), targets.reshape(-1)
        g, lse = grad.reshape(-1).float(), lse.reshape(-1)
        out = torch.empty_like(flat)  # [n, V] in the logits' dtype
        for a, b in _chunks(flat.shape[0], V):
            x = flat[a:b].float()
            if T != 1.0:
                x = x / T
            d = (x - lse[a:b, None]).clamp_(min=EXP_FLOOR).exp_().mul_(-g[a:b, None])  # -softmax * g
            d.scatter_add_(1, tgt[a:b, None], g[a:b, None])  # + onehot * g
            if T != 1.0:
                d /= T
            out[a:b] = d
        return out.view_as(logits), None, None


def completion_logp(
    model, inputs: dict[str, torch.Tensor], targets: torch.Tensor, temperature: float, autocast: bool, device
) -> torch.Tensor:
    """Log-probs of the completion tokens under `model`: [m, T] (padding positions hold finite junk)."""
    T = targets.shape[1]
    inputs = {k: v.to(device) for k, v in inputs.items()}
    with autocast_context(autocast, device):
        out = model(**inputs, logits_to_keep=T + 1, use_cache=False)
    logits = out.logits[:, :-1, :]  # position P-1+t predicts completion token t
    return selective_logp(logits, targets.to(device), temperature)


def autocast_context(autocast: bool, device):
    if not autocast:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)


def shared_prefix_logp(
    model,
    processor,
    prompts: list[Prompt],
    completion_ids: list[list[int]],
    is_vlm: bool,
    pad_id: int,
    temperature: float,
    autocast: bool,
    device,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probs [m, T] and mask [m, T] of the completions, running each distinct prompt once (see module doc).

    The prompts run without their last token (left padding puts every prompt's last token in the last column);
    that token then leads each row's completion: [last, c_0 .. c_{T-2}] predicts [c_0 .. c_{T-1}], so every
    log-prob comes from one lm_head product. (Taking c_0's logits from the prompt pass instead made a second
    lm_head product per micro-batch, and in the backward a second full-vocabulary weight gradient, [V, d], to
    add to the first.)"""
    uniq, row_of = unique_prompts(prompts)
    enc = {k: v.to(device) for k, v in encode_prompts(processor, uniq, is_vlm).items()}
    pos = prefix_position_ids(model, enc, is_vlm)  # [B, P] or [3, B, P]
    targets, mask = pad_completions(completion_ids, pad_id)
    targets, rows = targets.to(device), torch.tensor(row_of, device=device)
    mask = mask.to(device)
    P, T = enc["input_ids"].shape[1], targets.shape[1]
    if P < 2:
        raise ValueError("shared_prefix_logp needs prompts of at least 2 tokens")
    head = {k: (v[:, :-1] if k in _PER_TOKEN_KEYS else v) for k, v in enc.items()}
    last = enc["input_ids"][:, -1:][rows]  # [m, 1]
    inputs = torch.cat([last, targets[:, :-1]], dim=1)  # [m, T]
    prompt_mask = enc["attention_mask"][rows]  # [m, P]
    attn = torch.cat([prompt_mask, mask[:, :-1].to(prompt_mask.dtype)], dim=1)  # [m, P + T - 1]
    if pos.dim() == 3:
        first = pos[:, :, -1:][:, rows]  # [3, m, 1]: the last prompt token keeps its own position
    else:
        first = pos[:, -1:][rows]  # [m, 1]
    positions = torch.cat([first, continuation_positions(pos, rows, 0, T - 1)], dim=-1)  # [m, T] or [3, m, T]
    with autocast_context(autocast, device):
        out = model(**head, position_ids=pos[..., :-1], use_cache=True, logits_to_keep=1)
        logits = model(
            input_ids=inputs,
            attention_mask=attn,
            position_ids=positions,
            past_key_values=select_cache(out.past_key_values, rows),
            use_cache=True,
            logits_to_keep=T,
        ).logits  # [m, T, V]
    return selective_logp(logits, targets, temperature), mask


def checkpointing_active(model) -> bool:
    """True when a forward of `model` now would run checkpointed layers (activation checkpointing on and the
    model in training mode), which is when transformers turns the KV cache off."""
    base = unwrap(model)
    return base.training and any(getattr(m, "gradient_checkpointing", False) is True for m in base.modules())


def rows_logp(
    model,
    processor,
    prompts: list[Prompt],
    completion_ids: list[list[int]],
    is_vlm: bool,
    pad_id: int,
    temperature: float,
    autocast: bool,
    device,
    shared_prefix: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probs [m, T] and mask [m, T] of rows (prompts[j], completion_ids[j]): the shared-prefix form when the
    model supports it (and `shared_prefix`), no checkpointed layer would run and no sharded backward will follow
    (module doc), else the plain padded form."""
    if (
        shared_prefix
        and supports_shared_prefix(model, is_vlm)
        and not checkpointing_active(model)
        and not (torch.is_grad_enabled() and is_sharded(model))
    ):
        return shared_prefix_logp(
            model, processor, prompts, completion_ids, is_vlm, pad_id, temperature, autocast, device
        )
    inputs, targets, mask = build_sequences(processor, prompts, completion_ids, is_vlm, pad_id)
    return completion_logp(model, inputs, targets, temperature, autocast, device), mask


def vision_context(model, dummy_inputs: dict | None, prompts: list):
    """A text-only micro-batch on a multi-process VLM still runs the vision tower (on a blank image, weight 0)
    inside its forward, so every rank joins the same all-gathers / all-reduces (EasyR1 issue 468). A no-op when
    dummy_inputs is None (one process, or a text model) or when a prompt carries an image."""
    if dummy_inputs is None or any(p.images for p in prompts):
        return contextlib.nullcontext()
    from phaserl.distributed import dummy_vision

    return dummy_vision(model, dummy_inputs)


@dataclass
class Policy:
    """The policy as every log-prob pass sees it (the update, the old-policy and reference passes, the memory
    probe): the model (prepared by the accelerator, or a plain module) and the six facts each pass needs with it.
    `dummy_vision`: blank-image inputs for text-only micro-batches of a multi-process VLM (`vision_context`)."""

    model: torch.nn.Module
    processor: object
    is_vlm: bool
    pad_id: int
    temperature: float
    autocast: bool
    device: torch.device | str
    dummy_vision: dict | None = None

    def logp(
        self, prompts: list[Prompt], completion_ids: list[list[int]]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probs [m, T] and mask [m, T] of rows (prompts[j], completion_ids[j]), with gradients when enabled."""
        with vision_context(self.model, self.dummy_vision, prompts):
            return rows_logp(
                self.model,
                self.processor,
                prompts,
                completion_ids,
                self.is_vlm,
                self.pad_id,
                self.temperature,
                self.autocast,
                self.device,
            )

    @torch.no_grad()
    def logp_rows(
        self, prompts: list[Prompt], completion_ids: list[list[int]], micro: int
    ) -> list[torch.Tensor]:
        """Per-row log-probs [N][T_i] on the CPU, without gradients, `micro` rows per forward (the old policy's
        or the reference's)."""
        out = []
        for i in range(0, len(completion_ids), micro):
            rows = completion_ids[i : i + micro]
            logp, _ = self.logp(prompts[i : i + micro], rows)
            logp = logp.float().cpu()
            out.extend(logp[j, : len(c)].clone() for j, c in enumerate(rows))
        return out

    def with_model(self, model: torch.nn.Module) -> Policy:
        """The same passes on another model (the frozen reference: plain and unsharded, so no dummy vision pass)."""
        return replace(self, model=model, dummy_vision=None)
