"""Parameter names, in one place: the forms a weight's name takes in phaserl, and the maps between them.

Every engine, checkpoint and weight sync speaks the HF checkpoint form (what `save_pretrained` writes and
vLLM's `load_weights` reads); the trainer's module speaks whatever its wrappers make of it. Examples are a
tiny Qwen2.5-VL's (transformers 5):

| form                      | example                                                                   | map       |
|---------------------------|---------------------------------------------------------------------------|-----------|
| HF checkpoint             | model.language_model.layers.0.self_attn.q_proj.weight                     | (target)  |
| DDP / DeepSpeed engine    | module.model.language_model.layers.0.self_attn.q_proj.weight              | clean_name|
| torch.compile             | _orig_mod.model.visual.blocks.0.attn.qkv.weight                           | clean_name|
| FSDP1, activation ckpt    | model.language_model.layers.0._fsdp_wrapped_module.mlp.up_proj.weight    | clean_name|
|                           | model.language_model.layers.0._checkpoint_wrapped_module.mlp.up_proj.weight |         |
| FSDP2                     | the HF name itself (the tensor is a DTensor shard)                        | -         |
| PEFT (LoRA) base weight   | base_model.model.model.language_model.layers.0.self_attn.q_proj.base_layer.weight | peft_name |
| PEFT adapter              | base_model.model.model.language_model.layers.0.self_attn.q_proj.lora_A.default.weight | None |
| PEFT modules_to_save      | base_model.model.lm_head.modules_to_save.default.weight (trained copy)    | peft_name |
|                           | base_model.model.lm_head.original_module.weight (frozen original)         | None      |
| tied alias                | lm_head.weight, the same tensor as model.language_model.embed_tokens.weight | tied_aliases |

`hf_name` composes the two maps (wrappers first, then PEFT); `named_weights` applies it to a module's
parameters. The module-side counterpart of `clean_name` is `unwrap`: the user's module under the wrappers.
"""

from __future__ import annotations

import re

import torch

from phaserl.models import is_peft

WRAPPER_PARTS = frozenset({"_orig_mod", "_fsdp_wrapped_module", "_checkpoint_wrapped_module"})


def clean_name(name: str) -> str:
    """Drop the name parts that DDP (a leading `module`), torch.compile, FSDP1 and activation checkpointing insert.

    Whole dotted parts only: `original_module` or `_fsdp_wrapped_module` must not lose a `module.` substring."""
    parts = name.split(".")
    while parts and parts[0] == "module":
        parts = parts[1:]
    return ".".join(p for p in parts if p not in WRAPPER_PARTS)


def peft_name(name: str) -> str | None:
    """Map a (merged) PEFT name to the base model's name; None for weights the base does not have (adapters,
    the frozen original of a `modules_to_save` module: its trained copy is the one to ship)."""
    if "lora_" in name or ".original_module." in name:
        return None
    name = name.replace("base_model.model.", "", 1).replace(".base_layer.", ".")
    return re.sub(r"\.modules_to_save\.[^.]+\.", ".", name)


def hf_name(name: str, peft: bool = False) -> str | None:
    """A parameter's HF checkpoint name from its name on the trainer's module (None: not a base weight)."""
    name = clean_name(name)
    return peft_name(name) if peft else name


def unwrap(model):
    """The user's module under DDP / DeepSpeed engine / torch.compile wrappers."""
    while True:
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if inner is None or not isinstance(inner, torch.nn.Module):
            return model
        model = inner


def named_weights(model) -> list[tuple[str, torch.Tensor]]:
    """(HF name, parameter) of the trainer's model, without gathering shards (a DTensor's .shape is the full
    shape), named and filtered exactly as `distributed.iter_full_params` yields them."""
    base = unwrap(model)
    peft = is_peft(base)
    out = []
    for name, p in base.named_parameters():
        name = hf_name(name, peft)
        if name is not None:
            out.append((name, p))
    return out


def tied_aliases(model) -> list[str]:
    """Parameter names that repeat an earlier name's tensor (tied weights), in the HF form."""
    seen, aliases = set(), []
    for name, p in unwrap(model).named_parameters(remove_duplicate=False):
        if id(p) in seen:
            aliases.append(clean_name(name))
        seen.add(id(p))
    return aliases
