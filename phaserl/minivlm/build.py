"""Build the CPU-sized mini VLM: a LLaVA whose language model is SmolLM2-135M-Instruct.

CLI wiring wanted (lead, phaserl/cli.py):

    phaserl demo build-mini-vlm --output DIR [--steps 500] [--image-size 192] [--patch-size 16]
                                [--vision-layers 2] [--vision-hidden 128] [--batch-size 16] [--lr 3e-3]
                                [--seed 0] [--lm builtin:smollm2-135m-instruct] [--max-minutes 12]
      -> phaserl.minivlm.build.build_mini_vlm(output=Path(DIR), steps=..., image_size=..., patch_size=...,
                                              vision_layers=..., vision_hidden=..., batch_size=..., lr=...,
                                              seed=..., lm=..., max_minutes=..., log=typer.echo)
      (option defaults = the function's defaults; --max-minutes 0 could mean "no cap" -> None)
      prints the alignment progress and a final line with perception accuracy; exit code 0.

On a slow or shared CPU the wall-clock cap (max_minutes) can end the alignment before its 500 steps; the last
line printed is the perception accuracy reached (docs/curriculum_mini.md reports a build).

The architecture is transformers' LlavaForConditionalGeneration: a small SigLIP vision tower (random init,
2 layers x 128), the usual two-layer GELU projector, and SmolLM2 as the language model (its weights,
untouched: the alignment trains only the vision side). Tokenizer = SmolLM2's plus `<image>`; processor = LlavaProcessor with a
SiglipImageProcessor at the model's image size; the chat template is SmolLM2's ChatML (same default system
prompt) with image parts rendered as `<image>`. The saved folder loads with AutoModelForImageTextToText and
AutoProcessor, so any engine that serves LLaVA can serve it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import torch

from phaserl.minivlm.glyphs import BLANK, CHARSET, PIXEL_MEAN, PIXEL_STD

IMAGE_TOKEN = "<image>"
SMOLLM2_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"

# SmolLM2's own template (default system prompt included, so the LM sees what it was tuned on), extended
# with multimodal content parts; an image part becomes one <image> that the processor expands per patch.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\n" + SMOLLM2_SYSTEM + "<|im_end|>\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}{{ '" + IMAGE_TOKEN + "' }}"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def make_tokenizer(lm_path: str):
    """SmolLM2's tokenizer plus the <image> placeholder token."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(lm_path)
    tok.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN]})
    tok.pad_token = "<|im_end|>"
    tok.chat_template = CHAT_TEMPLATE
    return tok


def char_token_ids(tokenizer) -> dict[str, int]:
    """The LM token of each drawable character (and of the blank cell: a space). Each must be one token."""
    ids = {}
    for ch in CHARSET + BLANK:
        enc = tokenizer.encode(ch, add_special_tokens=False)
        if len(enc) != 1:
            raise ValueError(
                f"character {ch!r} is {len(enc)} tokens in this tokenizer; the glyph alignment "
                "needs one token per character"
            )
        ids[ch] = enc[0]
    return ids


def make_processor(tokenizer, image_size: int, patch_size: int):
    from transformers import LlavaProcessor, SiglipImageProcessor

    image_processor = SiglipImageProcessor(
        size={"height": image_size, "width": image_size},
        image_mean=[PIXEL_MEAN] * 3,
        image_std=[PIXEL_STD] * 3,
    )
    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=patch_size,
        vision_feature_select_strategy="full",
        chat_template=CHAT_TEMPLATE,
        image_token=IMAGE_TOKEN,
        num_additional_image_tokens=0,
    )


def make_config(
    lm_config, tokenizer, *, image_size: int, patch_size: int, vision_layers: int, vision_hidden: int
):
    from transformers import LlavaConfig, SiglipVisionConfig

    if image_size % patch_size:
        raise ValueError(f"image_size {image_size} must be a multiple of patch_size {patch_size}")
    vision = SiglipVisionConfig(
        hidden_size=vision_hidden,
        intermediate_size=vision_hidden * 2,
        num_hidden_layers=vision_layers,
        num_attention_heads=max(1, vision_hidden // 64),
        image_size=image_size,
        patch_size=patch_size,
        num_channels=3,
        vision_use_head=False,
    )
    text = lm_config.to_dict()
    text["vocab_size"] = len(tokenizer)
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    text.update(eos_token_id=eos, pad_token_id=eos)
    config = LlavaConfig(
        vision_config=vision.to_dict(),
        text_config=text,
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        image_seq_length=(image_size // patch_size) ** 2,
        projector_hidden_act="gelu",
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
        tie_word_embeddings=lm_config.tie_word_embeddings,
    )
    config.vision_config.model_type = "siglip_vision_model"
    return config


def assemble(
    lm_path: str,
    *,
    image_size: int = 192,
    patch_size: int = 16,
    vision_layers: int = 2,
    vision_hidden: int = 128,
    seed: int = 0,
):
    """(model, processor): a LLaVA with a fresh vision side and SmolLM2's weights as its language model.

    The LLaVA skeleton is built on the meta device and its parts are then put in: a randomly initialised
    tower and projector, and SmolLM2's own decoder (so 135M parameters are never randomly initialised
    only to be overwritten, which took most of the assembly time)."""
    from transformers import AutoModel, AutoModelForCausalLM, LlavaForConditionalGeneration
    from transformers.models.llava.modeling_llava import LlavaMultiModalProjector

    tokenizer = make_tokenizer(lm_path)
    lm = AutoModelForCausalLM.from_pretrained(lm_path, dtype=torch.float32)
    config = make_config(
        lm.config,
        tokenizer,
        image_size=image_size,
        patch_size=patch_size,
        vision_layers=vision_layers,
        vision_hidden=vision_hidden,
    )
    with torch.device("meta"):
        model = LlavaForConditionalGeneration(config)
    torch.manual_seed(seed)
    model.model.vision_tower = AutoModel.from_config(config.vision_config)
    model.model.multi_modal_projector = LlavaMultiModalProjector(config)
    model.model.language_model = language_model_with_image_token(lm, len(tokenizer))
    model.lm_head = torch.nn.Linear(config.text_config.hidden_size, len(tokenizer), bias=False)
    model.lm_head.weight = model.model.language_model.embed_tokens.weight  # tied, as in SmolLM2
    if not config.tie_word_embeddings:
        raise ValueError("the mini VLM expects a language model with tied input and output embeddings")
    meta = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if meta:
        raise RuntimeError(f"parts of the mini VLM were left uninitialised: {meta[:5]}")
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    model.generation_config.eos_token_id = eos
    model.generation_config.pad_token_id = eos
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.eval()
    return model, make_processor(tokenizer, image_size, patch_size)


def language_model_with_image_token(lm, vocab_size: int):
    """SmolLM2's decoder with one more embedding row for <image>, set to zero: on input it is always
    replaced by image features, and as a (tied) output row its logit stays 0, never near the top."""
    decoder = lm.model
    old = decoder.embed_tokens.weight.detach()  # [V, D]
    new = torch.nn.Embedding(vocab_size, old.shape[1], padding_idx=decoder.embed_tokens.padding_idx)
    with torch.no_grad():
        new.weight.zero_()
        new.weight[: old.shape[0]] = old
    decoder.embed_tokens = new
    decoder.config.vocab_size = vocab_size
    return decoder


def build_mini_vlm(
    output: Path,
    *,
    steps: int = 500,
    image_size: int = 192,
    patch_size: int = 16,
    vision_layers: int = 2,
    vision_hidden: int = 128,
    batch_size: int = 16,
    lr: float = 3e-3,
    seed: int = 0,
    lm: str = "builtin:smollm2-135m-instruct",
    max_minutes: float | None = 12.0,
    eval_images: int = 32,
    log: Callable[[str], None] = print,
) -> dict:
    """Assemble, align the vision side, measure perception, save. Returns the metrics (also written to the
    folder's minivlm.json): perception accuracy on held-out glyph grids and on test-split problem images.

    max_minutes caps the alignment's wall time (the machine is shared; when the cap cuts the step budget
    short the log says so and `align_steps` records what ran); None runs every step."""
    from phaserl.minivlm.align import AlignConfig, train_alignment
    from phaserl.minivlm.perception import perception_report
    from phaserl.minivlm.tasks import train_grid_sampler
    from phaserl.models import resolve_model_path

    start = time.perf_counter()
    output = Path(output)
    model, processor = assemble(
        resolve_model_path(lm),
        image_size=image_size,
        patch_size=patch_size,
        vision_layers=vision_layers,
        vision_hidden=vision_hidden,
        seed=seed,
    )
    token_ids = char_token_ids(processor.tokenizer)
    cfg = AlignConfig(
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        cell_px=patch_size,
        cells=image_size // patch_size,
        max_seconds=None if max_minutes is None else 60 * max_minutes,
    )
    log(
        f"mini VLM: SigLIP tower {vision_layers} layers x {vision_hidden}, {cfg.cells}x{cfg.cells} patches of "
        f"{patch_size}px, LM {lm}; aligning for {steps} steps of {batch_size} images"
    )
    problem_grids = train_grid_sampler(cfg.cells, seed)
    metrics = train_alignment(model, token_ids, cfg, problem_grids=problem_grids, log=log)
    metrics.update(perception_report(model, token_ids, cfg, n_images=eval_images))
    model.save_pretrained(output)
    processor.save_pretrained(output)
    metrics["build_seconds"] = round(time.perf_counter() - start, 1)
    metrics["config"] = {
        "steps": steps,
        "image_size": image_size,
        "patch_size": patch_size,
        "vision_layers": vision_layers,
        "vision_hidden": vision_hidden,
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
        "lm": lm,
        "max_minutes": max_minutes,
    }
    (output / "minivlm.json").write_text(json.dumps(metrics, indent=2) + "\n")
    log(
        f"perception accuracy (nearest of all {model.config.text_config.vocab_size} tokens is the drawn "
        f"character, held-out grids): {metrics['perception_accuracy']:.1%} (chance {metrics['chance_accuracy']:.1%}); "
        f"on test problem images: {metrics['problem_char_accuracy']:.1%}; built in {metrics['build_seconds']:.0f}s "
        f"-> {output}"
    )
    return metrics
