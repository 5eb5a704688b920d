"""Attention kernels phaserl registers with transformers, selected by name like "sdpa" or "eager".

- "phaserl_gqa" (`gqa_attention`): the sampling copy's kernel (rollout/hf.py). Two matmuls, query heads sharing
  their KV head by broadcasting; additive masks.
- "phaserl_sdpa" (`small_cpu_attention`): the training model's default (`model.attn_implementation`). It is
  transformers' sdpa, except for causal attention on the CPU whose score tensor is small (a GRPO completion of
  64 tokens against its prompt: [8 rows, 9 heads, 64, ~100]): there it is `gqa_attention`, because PyTorch's
  CPU flash kernel's backward has a large fixed cost on such a call, where the two matmuls' autograd is cheap
  (docs/performance.md). GPUs and long sequences get sdpa
  unchanged.
"""

from __future__ import annotations

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, eager_mask, sdpa_mask

# Score elements (rows x heads x queries x keys) up to which the matmul form runs: 4M float32 scores are 16 MB
# per layer, kept for the backward; beyond this, memory grows with the square of the length, and sdpa wins.
SMALL_SCORES = 1 << 22


def gqa_attention(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    """Eager attention whose query heads share their KV head by broadcasting: query [n, H, q, d], key/value
    [n, kv, L, d] -> ([n, q, H, d], None). transformers' eager path copies K and V H/kv times (repeat_kv) first,
    which at decoding is most of the attention's memory traffic; the CPU flash kernel is slower still for q=1."""
    n, H, q, d = query.shape
    kv, L = key.shape[1], key.shape[2]
    g = H // kv  # query head h reads KV head h // g, as repeat_kv lays them out
    scores = torch.matmul(query.reshape(n, kv, g * q, d), key.transpose(-1, -2)) * scaling  # [n, kv, g*q, L]
    if attention_mask is not None:  # additive [n, 1, q, L], the same for every head
        scores = (scores.view(n, kv, g, q, L) + attention_mask[:, :, None, :, :L]).view(n, kv, g * q, L)
    probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    out = torch.matmul(probs, value)  # [n, kv, g*q, d]
    return out.view(n, H, q, d).transpose(1, 2).contiguous(), None


def small_cpu_attention(
    module, query, key, value, attention_mask, dropout=0.0, scaling=None, is_causal=None, **kwargs
):
    """sdpa_attention_forward, or gqa_attention for small causal attention on the CPU (see module doc).

    attention_mask comes from sdpa's mask function: boolean [n, 1, q, L] (True: attend) or None, meaning plain
    causal attention (transformers passes None only when q == 1 or q == L)."""
    n, H, q, d = query.shape
    L = key.shape[2]
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    small = query.device.type == "cpu" and causal and not dropout and n * H * q * L <= SMALL_SCORES
    plain = not kwargs.get("softcap") and kwargs.get("position_bias") is None and kwargs.get("s_aux") is None
    if not (small and plain) or (attention_mask is None and q not in (1, L)):
        return sdpa_attention_forward(
            module,
            query,
            key,
            value,
            attention_mask,
            dropout=dropout,
            scaling=scaling,
            is_causal=is_causal,
            **kwargs,
        )
    if attention_mask is None and q > 1:
        attention_mask = torch.ones(q, L, dtype=torch.bool, device=query.device).tril(L - q)[None, None]
    if attention_mask is not None and attention_mask.dtype == torch.bool:
        # additive, with the dtype's minimum (not -inf) so fully masked padding rows give no NaN (as eager_mask)
        additive = torch.zeros(attention_mask.shape, dtype=torch.float32, device=query.device)
        attention_mask = additive.masked_fill_(~attention_mask, torch.finfo(torch.float32).min)
    # In float32 whatever the autocast: sdpa keeps its scores in float32 too (bf16 scores of magnitude ~20 are
    # off by ~0.1), and at this size the float32 matmuls cost little.
    with torch.autocast(query.device.type, enabled=False):
        out, _ = gqa_attention(
            module,
            query.float(),
            key.float(),
            value.float(),
            attention_mask,
            d**-0.5 if scaling is None else scaling,
        )
    return out.to(query.dtype), None


AttentionInterface.register("phaserl_gqa", gqa_attention)
AttentionMaskInterface.register("phaserl_gqa", eager_mask)
AttentionInterface.register("phaserl_sdpa", small_cpu_attention)
AttentionMaskInterface.register("phaserl_sdpa", sdpa_mask)
