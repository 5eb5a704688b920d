"""Turn rendered prompts into model inputs, for generation and for the training forward alike."""

from __future__ import annotations

import torch

from phaserl.types import Prompt


def prompt_texts(processor, prompts: list[Prompt]) -> list[str]:
    """Apply the model's chat template (with the generation prompt) to each prompt's messages."""
    return [processor.apply_chat_template(p.messages, add_generation_prompt=True, tokenize=False) for p in prompts]


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
        enc = processor(texts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False)
    return dict(enc)


def repeat_interleave_inputs(enc: dict[str, torch.Tensor], G: int, counts: list[int]) -> dict[str, torch.Tensor]:
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
                px.extend(chunks[img:img + c])
                th.extend(grids[img:img + c])
            img += c
        out["pixel_values"] = torch.cat(px, 0)
        out["image_grid_thw"] = torch.cat(th, 0)
    elif "pixel_values" in enc:  # fixed-size image models (LLaVA): one row block per image
        pv = enc["pixel_values"]
        rows = []
        img = 0
        for c in counts:
            for _ in range(G):
                rows.append(pv[img:img + c])
            img += c
        out["pixel_values"] = torch.cat(rows, 0)
    for key, value in enc.items():
        if key not in out and key not in ("pixel_values", "image_grid_thw"):
            out[key] = value  # pass through anything unknown unchanged
    return out
