"""A lean decoding step for the CPU sampling copy of Llama-family models (Llama, Qwen2, Qwen2-VL, Qwen2.5-VL).

A decoding step of the transformers model spends as long around its matmuls as in them on the CPU: per layer about
60 small ops (casts, views, mask and cache bookkeeping), and an attention whose K and V are views into a reserved
buffer, which the bf16 batched matmul copies to contiguous memory before every product. This module runs the same arithmetic with none of that:
- q, k and v come out of one packed matmul (their weights concatenated, packed once per weight sync);
- K is kept transposed, [n, kv, d, L_max], and V as [n, kv, L_max, d], so the filled part of either is a plain
  strided matrix per (row, KV head) that the batched matmul reads in place;
- query heads share their KV head by a reshape (no repeat_kv copies); scores and softmax are in float32 (as the
  training model's attention, phaserl.attention), on an additive mask of the rows' padding;
- the rest (RMSNorm, RoPE, SiLU-gated MLP, the packed linears) is the transformers arithmetic, op for op;
- on a CPU with AVX-512, RoPE, the cache write and the attention (q.K, scaling, mask, softmax, p.V) are one
  compiled call per layer (decode_attention.cpp via cpu_kernels.py) with the same bits as the torch ops (`rope`,
  `decode_attention` below): at 32 rows that is 2 x 96 tiny bf16 products and ~20 small ops a layer, each
  costing more in call overhead than in arithmetic.
The prompt is still prefilled by the transformers model (images, M-RoPE positions); its KV cache is copied into
the buffers once. After the prompt, text positions advance by one in every M-RoPE section alike, so M-RoPE models
decode with plain 1-D RoPE at the row's next position. tests/rollout/test_speed_lean.py checks samples and log-probs against
the transformers path on tiny Llama, Qwen2.5-VL and LLaVA models.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from phaserl.rollout.cpu.packed import PackedLinear

# Decoder layers whose arithmetic this module reproduces (pre-norm RMSNorm, RoPE attention with optional q/k/v bias,
# SiLU-gated MLP); anything else decodes through transformers.
LAYERS = frozenset(
    {"LlamaDecoderLayer", "Qwen2DecoderLayer", "Qwen2VLDecoderLayer", "Qwen2_5_VLDecoderLayer"}
)


def text_model(model):
    """The module holding embed_tokens, layers and norm (LlamaModel, Qwen2_5_VLTextModel, ...), or None."""
    for module in model.modules():
        if all(hasattr(module, k) for k in ("embed_tokens", "layers", "norm")):
            return module
    return None


def unsupported_reason(model) -> str | None:
    """Why `model` (a packed bf16 sampling copy) cannot use the lean step, or None when it can."""
    text = text_model(model)
    if text is None or not len(text.layers):
        return "no embed_tokens/layers/norm module"
    config = model.config.get_text_config()
    names = {type(layer).__name__ for layer in text.layers}
    if not names <= LAYERS:
        return f"decoder layers {sorted(names - LAYERS)} are not {sorted(LAYERS)}"
    if getattr(config, "hidden_act", "silu") != "silu":
        return f"hidden_act {config.hidden_act!r}"
    rope = getattr(config, "rope_parameters", None) or {}
    if rope.get("rope_type", "default") != "default":
        return f"rope_type {rope.get('rope_type')!r}"
    if getattr(config, "use_sliding_window", False) or any(
        t != "full_attention" for t in getattr(config, "layer_types", None) or []
    ):
        return "sliding-window attention"
    rotary = getattr(text, "rotary_emb", None)
    if rotary is None or getattr(rotary, "attention_scaling", 1.0) != 1.0:
        return "no plain rotary embedding"
    linears = [model.get_output_embeddings()]
    for layer in text.layers:
        a, m = layer.self_attn, layer.mlp
        linears += [a.q_proj, a.k_proj, a.v_proj, a.o_proj, m.gate_proj, m.up_proj, m.down_proj]
    if not all(isinstance(x, PackedLinear) for x in linears):
        return "linears are not packed (bf16 CPU copy only)"
    return None


class LeanDecoder:
    """Decoding steps on a packed bf16 copy; `refresh` re-fuses q/k/v from new weights (call after each sync)."""

    def __init__(self, model, source: dict[str, torch.Tensor], attention_kernel=None):
        reason = unsupported_reason(model)
        if reason is not None:
            raise ValueError(f"lean decoding does not support this model: {reason}")
        text = text_model(model)
        self.layers = list(text.layers)
        self.embed, self.norm, self.head = text.embed_tokens, text.norm, model.get_output_embeddings()
        attn = self.layers[0].self_attn
        config = model.config.get_text_config()
        self.H, self.KV = config.num_attention_heads, config.num_key_value_heads
        self.D, self.scaling = attn.head_dim, attn.scaling
        names = {id(m): n for n, m in model.named_modules()}
        self._qkv_names = [
            [names[id(x)] for x in (la.self_attn.q_proj, la.self_attn.k_proj, la.self_attn.v_proj)]
            for la in self.layers
        ]
        self.inv_freq = text.rotary_emb.inv_freq.float()  # float32 in the copy too (HFEngine._copy)
        # rollout/cpu/kernels.py's compiled attention (or None: torch ops), for head sizes it handles
        self.kernel = attention_kernel if self.D % 16 == 0 and self.H // self.KV <= 8 else None
        self.qkv: list[tuple[torch.Tensor, torch.Tensor | None]] = []
        self.refresh(source)

    @torch.no_grad()
    def refresh(self, source: dict[str, torch.Tensor]) -> None:
        """Pack each layer's concatenated q/k/v weight (and bias) from `source` (name -> tensor)."""
        self.qkv = []
        for names in self._qkv_names:
            w = torch.cat([source[f"{n}.weight"].detach() for n in names]).to(torch.bfloat16).contiguous()
            biases = [source.get(f"{n}.bias") for n in names]
            b = torch.cat([x.detach() for x in biases]).to(torch.bfloat16) if biases[0] is not None else None
            self.qkv.append((torch.ops.mkldnn._reorder_linear_weight(w, PackedLinear.ROWS_HINT), b))

    def _rms(self, norm, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + norm.variance_epsilon)
        return norm.weight * xf.to(x.dtype)

    @torch.no_grad()
    def step(self, tokens: torch.Tensor, positions: torch.Tensor, state: LeanCache) -> torch.Tensor:
        """Logits [n, V] (bf16) of the next token after tokens [n] at positions [n]; appends their K/V to state."""
        n, H, KV, D = tokens.shape[0], self.H, self.KV, self.D
        L = state.length + 1  # keys after this token
        freqs = positions[:, None].float() * self.inv_freq  # [n, D/2]
        emb = torch.cat((freqs, freqs), dim=-1)
        x = self.embed(tokens)  # [n, C]
        cos2, sin2 = emb.cos().to(x.dtype), emb.sin().to(x.dtype)  # [n, D]
        cos, sin = cos2[:, None], sin2[:, None]  # [n, 1, D]
        state.bias[:, :, :, L - 1] = 0.0
        flat_bias = state.bias.view(n, -1)  # [n, L_max]
        for layer, (w_qkv, b_qkv), kt, v_buf in zip(self.layers, self.qkv, state.kt, state.v):
            h = self._rms(layer.input_layernorm, x)
            qkv = torch.ops.mkldnn._linear_pointwise(h, w_qkv, b_qkv, "none", [], "")  # [n, (H + 2 KV) D]
            if self.kernel is not None:  # RoPE, cache write and attention: the ops below in one call
                attn = self.kernel.decode_step_attention(
                    qkv, cos2, sin2, kt, v_buf, flat_bias, L, self.scaling
                )
            else:
                qk = rope(qkv[:, : (H + KV) * D].view(n, H + KV, D), cos, sin)  # q and k heads in one pass
                kt[:, :, :, L - 1] = qk[:, H:]
                v_buf[:, :, L - 1] = qkv[:, (H + KV) * D :].view(n, KV, D)
                attn = decode_attention(qk[:, :H], kt, v_buf, flat_bias, L, self.scaling)
            x = x + layer.self_attn.o_proj(attn)
            h = self._rms(layer.post_attention_layernorm, x)
            mlp = layer.mlp
            x = x + mlp.down_proj(F.silu(mlp.gate_proj(h)) * mlp.up_proj(h))
        state.length = L
        return self.head(self._rms(self.norm, x))


def rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x * cos + rotate_half(x) * sin (transformers' apply_rotary_pos_emb), in x's dtype."""
    half = x.shape[-1] // 2
    return x * cos + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin


def decode_attention(
    q: torch.Tensor, kt: torch.Tensor, v: torch.Tensor, bias: torch.Tensor, L: int, scaling: float
) -> torch.Tensor:
    """One decoding step's attention over the first L cache positions, in torch ops: [n, H * D] bf16.

    q [n, H, D] bf16, kt [n, KV, D, L_max], v [n, KV, L_max, D], bias [n, L_max] float32 (additive). Query head
    h reads KV head h // (H / KV). rollout/cpu/decode_attention.cpp computes the same bits in one call."""
    n, H, D = q.shape
    KV = kt.shape[1]
    g = H // KV
    scores = torch.bmm(q.reshape(n * KV, g, D), kt[:, :, :, :L].reshape(n * KV, D, L))  # [n kv, g, L]
    scores = scores.view(n, KV, g, L).float() * scaling + bias[:, None, None, :L]
    probs = torch.softmax(scores, dim=-1).to(q.dtype).view(n * KV, g, L)
    return torch.bmm(probs, v[:, :, :L].reshape(n * KV, L, D)).view(n, H * D)


class LeanCache:
    """KV buffers of a decoding batch: kt [n, kv, d, L_max] and v [n, kv, L_max, d] per layer, the first
    `length` positions filled; bias [n, 1, 1, L_max] float32 is 0 where a row may attend, the float32 minimum at
    its prompt's padding (positions not yet written are never read)."""

    def __init__(self, kt: list[torch.Tensor], v: list[torch.Tensor], bias: torch.Tensor, length: int):
        self.kt, self.v, self.bias, self.length = kt, v, bias, length

    @classmethod
    def from_prefill(cls, cache, rows: torch.Tensor, prompt_mask: torch.Tensor, extra: int) -> LeanCache:
        kt, v = [], []
        for layer in cache.layers:
            k, val = layer.keys, layer.values  # [B, kv, P, d]
            _, kv, P, d = k.shape
            k_buf = k.new_empty(len(rows), kv, d, P + extra)
            v_buf = val.new_empty(len(rows), kv, P + extra, d)
            k_buf[:, :, :, :P] = k.transpose(-1, -2)[rows]
            v_buf[:, :, :P] = val[rows]
            kt.append(k_buf)
            v.append(v_buf)
        P = prompt_mask.shape[1]
        bias = torch.zeros(len(rows), 1, 1, P + extra)
        bias[:, 0, 0, :P].masked_fill_(prompt_mask[rows] == 0, torch.finfo(torch.float32).min)
        return cls(kt, v, bias, P)

    def select(self, idx: torch.Tensor) -> None:
        """Keep rows idx (finished rows leave the batch)."""
        self.kt = [k[idx] for k in self.kt]
        self.v = [v[idx] for v in self.v]
        self.bias = self.bias[idx]
