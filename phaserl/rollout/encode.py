"""Turn rendered prompts into model inputs, for generation and for the training forward alike."""

from __future__ import annotations

import torch

from phaserl.types import Prompt


def prompt_texts(processor, prompts: list[Prompt]) -> list[str]:
    """Apply the model's chat template (with the generation prompt) to each prompt's messages."""
    return [
        processor.apply_chat_template(p.messages, add_generation_prompt=True, tokenize=False) for p in prompts
    ]


def encode_prompts(processor, prompts: list[Prompt], is_vlm: bool) -> dict[str, torch.Tensor]:
    """Left-padded input_ids/attention_mask [B, P] (+ pixel_values, image_grid_thw, ... for VLMs).

    Text-only and image prompts mix freely: only the images that exist are passed, so a batch with no image
    at all carries no vision keys (LMM-R1's `KeyError: image_grid_thw` cannot happen)."""
    texts = prompt_texts(processor, prompts)
    images = [img for p in prompts for img in p.images]
    if is_vlm:
        kwargs = dict(text=texts, return_tensors="pt", padding=True, padding_side="left")
        if images:
            kwargs["images"] = images
        enc = processor(**kwargs)
    else:
        if images:
            raise ValueError("this model is text-only but a prompt carries images; use view 'text' for it")
        enc = processor(
            texts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False
        )
    return dict(enc)


def repeat_interleave_inputs(
    enc: dict[str, torch.Tensor], G: int, counts: list[int]
) -> dict[str, torch.Tensor]:
    """Repeat each prompt's inputs G times (rows i*G..i*G+G-1), vision tensors included.

    counts[i] is the number of images of prompt i; pixel_values rows are grouped per image by image_grid_thw."""
    out = {}
    for key, value in enc.items():
        if key in ("input_ids", "attention_mask", "mm_token_type_ids", "token_type_ids"):
            out[key] = value.repeat_interleave(G, dim=0)
    if "image_grid_thw" in enc:
        thw = enc["image_grid_thw"]  # [I, 3]
        patches = thw.prod(-1).tolist()  # rows of pixel_values per image
        chunks = list(enc["pixel_values"].split(patches, dim=0))
        grids = list(thw.split(1, dim=0))
        img = 0
        px, th = [], []
        for c in counts:
            for _ in range(G):
                px.extend(chunks[img : img + c])
                th.extend(grids[img : img + c])
            img += c
        out["pixel_values"] = torch.cat(px, 0)
        out["image_grid_thw"] = torch.cat(th, 0)
    elif "pixel_values" in enc:  # fixed-size image models (LLaVA): one row block per image
        pv = enc["pixel_values"]
        rows = []
        img = 0
        for c in counts:
            for _ in range(G):
                rows.append(pv[img : img + c])
            img += c
        out["pixel_values"] = torch.cat(rows, 0)
    for key, value in enc.items():
        if key not in out and key not in ("pixel_values", "image_grid_thw"):
            out[key] = value  # pass through anything unknown unchanged
    return out


# ---- shared prompt prefix: encode and run each distinct prompt once, then fan its KV cache out to its rows ------


def unique_prompts(prompts: list[Prompt]) -> tuple[list[Prompt], list[int]]:
    """Distinct prompts (by identity: the G rows of a group share one Prompt object) and each row's index."""
    first: dict[int, int] = {}
    uniq: list[Prompt] = []
    row_of: list[int] = []
    for p in prompts:
        if id(p) not in first:
            first[id(p)] = len(uniq)
            uniq.append(p)
        row_of.append(first[id(p)])
    return uniq, row_of


def rope_index_fn(model):
    """The model's M-RoPE position function (Qwen2-VL family), or None for plain 1-D positions."""
    for module in model.modules():
        fn = getattr(module, "get_rope_index", None)
        if callable(fn):
            return fn
    return None


# VLMs whose language model takes plain 1-D positions over the whole sequence, image tokens included, and a
# causal mask throughout (no bidirectional image blocks, no per-image position resets), so a prompt's KV cache
# continues exactly like a text prompt's. Each is checked against the plain path in tests/test_speed_*.py.
ONE_D_VLMS = frozenset({"llava"})


def supports_shared_prefix(model, is_vlm: bool) -> bool:
    """Prefix sharing needs positions we can compute ourselves: causal LMs, VLMs with M-RoPE (Qwen2-VL family),
    and the VLMs of ONE_D_VLMS."""
    if not is_vlm or rope_index_fn(model) is not None:
        return True
    return getattr(getattr(model, "config", None), "model_type", None) in ONE_D_VLMS


def prefix_position_ids(model, enc: dict[str, torch.Tensor], is_vlm: bool) -> torch.Tensor:
    """Position ids of left-padded prompts: [B, P] (1-D RoPE) or [3, B, P] (M-RoPE, images laid out in 2-D)."""
    mask = enc["attention_mask"]
    fn = rope_index_fn(model) if is_vlm else None
    if fn is not None and "image_grid_thw" in enc:
        pos, _ = fn(
            enc["input_ids"],
            mm_token_type_ids=enc["mm_token_type_ids"],
            image_grid_thw=enc["image_grid_thw"],
            attention_mask=mask,
        )
        return pos
    pos = (mask.long().cumsum(-1) - 1).clamp(min=0)
    return pos.unsqueeze(0).expand(3, -1, -1) if fn is not None else pos


def continuation_positions(prefix_pos: torch.Tensor, rows: torch.Tensor, start: int, T: int) -> torch.Tensor:
    """Positions of T tokens that follow each row's prompt (offset `start` tokens past its end).

    Text after the prompt continues from the prompt's largest position + 1 in every RoPE section, which is
    what both 1-D RoPE and Qwen's M-RoPE do. prefix_pos [B, P] or [3, B, P]; rows [m] -> [m, T] or [3, m, T]."""
    if prefix_pos.dim() == 3:
        nxt = prefix_pos.amax(dim=(0, 2)) + 1  # [B]
    else:
        nxt = prefix_pos.amax(dim=1) + 1
    pos = nxt[rows][:, None] + start + torch.arange(T, device=prefix_pos.device)[None, :]  # [m, T]
    return pos.unsqueeze(0).expand(3, -1, -1) if prefix_pos.dim() == 3 else pos


def select_cache(cache, rows: torch.Tensor):
    """A new DynamicCache whose row j is row rows[j] of `cache` (differentiable: gradients sum per prompt)."""
    from transformers import DynamicCache

    return DynamicCache(
        [(layer.keys.index_select(0, rows), layer.values.index_select(0, rows)) for layer in cache.layers]
    )
