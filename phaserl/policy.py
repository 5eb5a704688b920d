"""Log-probs of sampled completions under a model: the training-side mirror of the rollout engine.

A micro-batch of rows (prompt i's inputs + its completion) becomes one padded sequence batch:
  [left-padded prompt | completion, right-padded]   # [m, P + T]
so every completion starts at column P and logits are needed only for the last T + 1 positions.
"""

from __future__ import annotations

import contextlib

import torch

from phaserl.rollout.encode import encode_prompts, repeat_interleave_inputs
from phaserl.types import Prompt

_PER_TOKEN_KEYS = ("input_ids", "attention_mask", "mm_token_type_ids", "token_type_ids")


def build_sequences(processor, prompts: list[Prompt], completion_ids: list[list[int]], is_vlm: bool,
                    pad_id: int) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
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
    m = len(completion_ids)
    T = max(1, max(len(c) for c in completion_ids))
    targets = torch.full((m, T), pad_id, dtype=torch.long)
    mask = torch.zeros((m, T), dtype=torch.float32)
    for j, c in enumerate(completion_ids):
        targets[j, :len(c)] = torch.tensor(c, dtype=torch.long)
        mask[j, :len(c)] = 1.0
    inputs = dict(enc)
    for key in _PER_TOKEN_KEYS:
        if key not in inputs:
            continue
        extra = {"input_ids": targets, "attention_mask": mask.long()}.get(key, torch.zeros_like(targets))
        inputs[key] = torch.cat([inputs[key], extra.to(inputs[key].dtype)], dim=1)
    if not is_vlm:  # causal LMs take position ids from us; Qwen2.5-VL derives its M-RoPE ids from the mask
        inputs["position_ids"] = (inputs["attention_mask"].cumsum(-1) - 1).clamp(min=0)
    return inputs, targets, mask


def selective_logp(logits: torch.Tensor, targets: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """log_softmax(logits / T)[targets] without materialising the full log-softmax: [m, T]."""
    logits = logits.float()
    if temperature != 1.0:
        logits = logits / temperature
    picked = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return picked - torch.logsumexp(logits, dim=-1)


def completion_logp(model, inputs: dict[str, torch.Tensor], targets: torch.Tensor, temperature: float,
                    autocast: bool, device) -> torch.Tensor:
    """Log-probs of the completion tokens under `model`: [m, T] (padding positions hold finite junk)."""
    T = targets.shape[1]
    inputs = {k: v.to(device) for k, v in inputs.items()}
    ctx = torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16) if autocast \
        else contextlib.nullcontext()
    with ctx:
        out = model(**inputs, logits_to_keep=T + 1, use_cache=False)
    logits = out.logits[:, :-1, :]  # position P-1+t predicts completion token t
    return selective_logp(logits, targets.to(device), temperature)
