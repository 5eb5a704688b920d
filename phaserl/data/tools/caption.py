"""Captions for the `image+caption` view (Infi-MMR phase 2): a dense description of each image by a VLM.

CLI wanted (lead wires it; print the returned dict as JSON):
    phaserl data caption --model VLM --input data.jsonl --output out.jsonl
        [--adapter generic] [--field question=problem ...] [--image-root DIR]
        [--prompt dense|brief|"any text, may use {question}"] [--batch-size 8] [--max-new-tokens 256]
        [--overwrite] [--dtype float32] [--skip-bad-rows] [--temperature 0] [--seed 0]
    -> phaserl.data.tools.caption.caption_command(model, input, output, prompt_template=..., batch_size=...,
           max_new_tokens=..., adapter=..., fields=dict(f.split("=", 1) for f in field), image_root=...,
           overwrite=..., dtype=..., skip_bad_rows=..., temperature=..., seed=...)

Greedy decoding by default (temperature 0), one caption per image (several images: "Image 1: ...
Image 2: ..."). The output is the input in canonical rows with `caption` filled, appended batch by batch:
a rerun with the same output resumes after the last finished id. Rows without images pass through; rows that already have a caption keep it
unless overwrite.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from phaserl.data.images import load_image
from phaserl.data.schema import DataError, Example
from phaserl.data.tools._io import (
    append_rows,
    batched,
    load_input,
    make_engine,
    output_row,
    progress,
    read_journal,
)
from phaserl.rollout.base import SamplingParams
from phaserl.types import Prompt

# Infi-MMR phase 2 puts the caption beside the image, so it should carry what a reader needs to solve
# the problem from the text alone: every label, number and relation, not an impression of the picture.
CAPTION_PROMPTS: dict[str, str] = {
    "dense": (
        "Describe this image in detail for someone who cannot see it. If it is a diagram, chart, plot, table "
        "or geometric figure, state its type and then list every label, number, axis title and scale, legend "
        "entry, shape, point and the relations shown (lengths, angles, parallel or perpendicular lines, "
        "points on lines or circles). Transcribe any text and formulas exactly. Do not solve any problem."
    ),
    "brief": "Describe this image in one or two sentences.",
}


def caption_prompt(images: list, template: str, example: Example) -> Prompt:
    """A user turn with the image(s) first (Qwen2.5-VL's order), then the instruction."""
    text = CAPTION_PROMPTS.get(template, template).replace("{question}", example.question)
    content = [{"type": "image"} for _ in images] + [{"type": "text", "text": text}]
    return Prompt(messages=[{"role": "user", "content": content}], images=images)


def join_captions(captions: list[str]) -> str:
    captions = [c.strip() for c in captions]
    if len(captions) == 1:
        return captions[0]
    return "\n".join(f"Image {i}: {c}" for i, c in enumerate(captions, start=1))


def _caption_batch(
    examples: list[Example], engine, template: str, params: SamplingParams, model: str
) -> dict[str, int]:
    """Fill example.caption in place, one prompt per image. Returns counts of empty and failed captions."""
    prompts, owners, counts = [], [], {"empty": 0, "failed": 0}
    for ex in examples:
        try:
            images = [load_image(ref, where=f"example {ex.id}: ") for ref in ex.images]
        except DataError as e:
            ex.meta["caption_error"] = str(e)
            counts["failed"] += 1
            continue
        for image in images:
            prompts.append(caption_prompt([image], template, ex))
            owners.append(ex)
    if not prompts:
        return counts
    texts = engine.generate(prompts, params).texts
    per_example: dict[str, list[str]] = {}
    for ex, text in zip(owners, texts):
        per_example.setdefault(ex.id, []).append(text)
    for ex in examples:
        if ex.id not in per_example:
            continue
        caption = join_captions(per_example[ex.id])
        if caption.strip():
            ex.caption = caption
            ex.meta["caption_model"] = model
        else:
            counts["empty"] += 1
    return counts


def caption_command(
    model: str,
    input: str,
    output: str,
    prompt_template: str = "dense",
    batch_size: int = 8,
    max_new_tokens: int = 256,
    *,
    adapter: str = "generic",
    fields: dict[str, str] | None = None,
    image_root: str | None = None,
    overwrite: bool = False,
    dtype: str = "float32",
    skip_bad_rows: bool = False,
    temperature: float = 0.0,
    seed: int = 0,
    engine=None,
    log: Callable[[str], None] = print,
) -> dict:
    """Caption every image of `input` with `model`; write canonical rows with `caption` to `output`."""
    examples = load_input(input, adapter, fields, image_root, skip_bad_rows=skip_bad_rows, log=log)
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    done = read_journal(output)
    todo = [ex for ex in examples if ex.id not in done]
    summary = {
        "output": str(output),
        "total": len(examples),
        "resumed": len(examples) - len(todo),
        "captioned": 0,
        "kept_existing": 0,
        "text_only": 0,
        "empty": 0,
        "failed": 0,
    }
    need = [ex for ex in todo if ex.images and (overwrite or not ex.caption)]
    need_ids = {ex.id for ex in need}
    summary["text_only"] = sum(1 for ex in todo if not ex.images)
    summary["kept_existing"] = len(todo) - len(need) - summary["text_only"]
    if need and engine is None:
        engine = make_engine(model, batch_size=batch_size, dtype=dtype)
    if need and not getattr(engine, "is_vlm", True):
        raise ValueError(f"captioning needs a vision-language model; {model!r} is text-only")
    bar = progress(len(examples), "caption", initial=summary["resumed"])
    for chunk in batched(todo, batch_size):
        chosen = [ex for ex in chunk if ex.id in need_ids]
        params = SamplingParams(n=1, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed)
        counts = _caption_batch(chosen, engine, prompt_template, params, model) if chosen else {}
        for key, value in counts.items():
            summary[key] += value
        summary["captioned"] += len(chosen) - sum(counts.values())
        append_rows(output, [output_row(ex, output) for ex in chunk])
        bar.update(len(chunk))
    bar.close()
    log(
        f"caption: {summary['captioned']} captioned, {summary['resumed']} already done, "
        f"{summary['empty']} empty, {summary['failed']} failed -> {output}"
    )
    return summary
