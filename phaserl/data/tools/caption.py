"""Captions for the `image+caption` view (Infi-MMR phase 2): a dense description of each image by a VLM.

    phaserl data caption --model VLM --input data.jsonl --output out.jsonl [--backend hf|vllm|openai]
        [--base-url http://127.0.0.1:8000/v1 --api-key-env NAME --concurrency 8]   (openai)
        [--adapter generic] [--field question=problem ...] [--image-root DIR] [--image-path-map OLD=NEW]
        [--prompt dense|brief|"any text, may use {question}"] [--batch-size 8] [--max-new-tokens 256] ...

Back ends: `hf` (phaserl's HF rollout engine, on the GPU when there is one), `vllm` (phaserl.rollout.vllm, an
optional install) and `openai` (any OpenAI-compatible /v1/chat/completions server: vLLM, SGLang, llama.cpp, a
hosted API whose key is read from the environment variable --api-key-env names). Greedy by default
(temperature 0), one caption per image (several images: "Image 1: ... Image 2: ...").

The output is the input in canonical rows with `caption` filled. It is a journal: hf/vllm append a batch of
rows at a time; openai requests run concurrently (retried with backoff) and each finished image is appended
at once to OUTPUT.parts, each finished row to OUTPUT. A rerun with the same output skips finished rows and
finished images, so a killed run continues where it stopped and nothing is requested twice. Rows without
images pass through; rows that already have a caption keep it unless overwrite.
"""

from __future__ import annotations

import base64
import io
import json
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

BACKENDS = ("hf", "vllm", "openai")
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


def prompt_text(template: str, example: Example) -> str:
    return CAPTION_PROMPTS.get(template, template).replace("{question}", example.question)


def caption_prompt(images: list, template: str, example: Example) -> Prompt:
    """A user turn with the image(s) first (Qwen2.5-VL's order), then the instruction."""
    content = [{"type": "image"} for _ in images] + [{"type": "text", "text": prompt_text(template, example)}]
    return Prompt(messages=[{"role": "user", "content": content}], images=images)


def openai_messages(image, template: str, example: Example) -> list[dict]:
    """The same turn for an OpenAI-compatible server: the image as a PNG data URI, then the instruction."""
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    uri = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
    return [
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": uri}},
                {"type": "text", "text": prompt_text(template, example)},
            ],
        }
    ]


def join_captions(captions: list[str]) -> str:
    captions = [c.strip() for c in captions]
    if len(captions) == 1:
        return captions[0]
    return "\n".join(f"Image {i}: {c}" for i, c in enumerate(captions, start=1))


def _finish(ex: Example, captions: list[str], model: str, counts: dict[str, int]) -> None:
    """Set the joined caption (or count an empty one)."""
    caption = join_captions(captions)
    if caption.strip():
        ex.caption = caption
        ex.meta["caption_model"] = model
        counts["captioned"] += 1
    else:
        counts["empty"] += 1


def _caption_batch(
    examples: list[Example], engine, template: str, params: SamplingParams, model: str, counts: dict[str, int]
) -> None:
    """Fill example.caption in place with one engine call for the whole batch, one prompt per image."""
    prompts, owners = [], []
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
        return
    texts = engine.generate(prompts, params).texts
    counts["requests"] += len(prompts)
    per_example: dict[str, list[str]] = {}
    for ex, text in zip(owners, texts):
        per_example.setdefault(ex.id, []).append(text)
    for ex in examples:
        if ex.id in per_example:
            _finish(ex, per_example[ex.id], model, counts)


def _run_engine(
    todo: list[Example],
    need: set[str],
    engine,
    output: str,
    template: str,
    params: SamplingParams,
    model: str,
    batch_size: int,
    counts: dict[str, int],
    bar,
) -> None:
    """hf / vllm: batches of examples, each batch's rows appended after its one generate call."""
    for chunk in batched(todo, batch_size):
        chosen = [ex for ex in chunk if ex.id in need]
        if chosen:
            _caption_batch(chosen, engine, template, params, model, counts)
        append_rows(output, [output_row(ex, output) for ex in chunk])
        bar.update(len(chunk))


def parts_path(output: str | Path) -> Path:
    """The per-image journal of the openai back end, beside the output."""
    return Path(str(output) + ".parts")


def _read_parts(path: Path) -> dict[tuple[str, int], str]:
    parts: dict[tuple[str, int], str] = {}
    if path.exists():
        for row in read_journal_rows(path):
            parts[(str(row["id"]), int(row["image"]))] = str(row["caption"])
    return parts


def read_journal_rows(path: Path) -> list[dict]:
    """Rows of a parts journal; a torn last line (a kill mid-write) is dropped and cut off the file."""
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    rows, good = [], 0
    for i, line in enumerate(lines):
        if not line.strip():
            good += len(line) + 1
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if i < len(lines) - 1 and any(x.strip() for x in lines[i + 1 :]):
                raise ValueError(
                    f"{path}:{i + 1}: malformed JSON in a journal; delete it to start over"
                ) from None
            with open(path, "r+b") as f:
                f.truncate(good)
            break
        good += len(line) + 1
    return rows


def _run_openai(
    todo: list[Example],
    need: set[str],
    client,
    output: str,
    template: str,
    model: str,
    concurrency: int,
    counts: dict[str, int],
    bar,
    log: Callable[[str], None],
) -> None:
    """openai: one request per image, `concurrency` at a time; each image's caption is journaled as it
    arrives, each row written once all its images are in."""
    from phaserl.openai_api import map_concurrent

    parts_file = parts_path(output)
    parts = _read_parts(parts_file)
    counts["resumed_images"] = sum(1 for ex in todo for k in range(len(ex.images)) if (ex.id, k) in parts)
    passing = [ex for ex in todo if ex.id not in need]
    append_rows(output, [output_row(ex, output) for ex in passing])
    bar.update(len(passing))
    waiting = {ex.id: ex for ex in todo if ex.id in need}
    requests = [(ex, k) for ex in waiting.values() for k in range(len(ex.images)) if (ex.id, k) not in parts]

    def ask(item):
        ex, k = item
        image = load_image(
            ex.images[k], where=f"example {ex.id}: "
        )  # DataError: the row is bad, not the server
        return client.complete(openai_messages(image, template, ex))

    def complete_rows() -> None:
        for ex_id in [i for i, ex in waiting.items() if all((i, k) in parts for k in range(len(ex.images)))]:
            ex = waiting.pop(ex_id)
            _finish(ex, [parts[(ex_id, k)] for k in range(len(ex.images))], model, counts)
            append_rows(output, [output_row(ex, output)])
            bar.update(1)

    complete_rows()  # rows whose images were all captioned before a kill
    bad: set[str] = set()
    for (ex, k), text, error in map_concurrent(ask, requests, concurrency):
        if isinstance(error, DataError):
            if ex.id not in bad:
                bad.add(ex.id)
                ex.meta["caption_error"] = str(error)
                counts["failed"] += 1
                waiting.pop(ex.id, None)
                append_rows(output, [output_row(ex, output)])
                bar.update(1)
            continue
        counts["requests"] += 1
        if error is not None:
            counts["request_errors"] += 1
            log(f"caption: example {ex.id} image {k + 1}: {error}")
            continue
        if ex.id in bad:
            continue
        parts[(ex.id, k)] = text
        append_rows(parts_file, [{"id": ex.id, "image": k, "caption": text}])
        complete_rows()
    counts["failed"] += len(waiting)  # server errors: no row written, so a rerun asks again
    if not waiting and parts_file.exists():
        parts_file.unlink()


def make_caption_engine(
    backend: str, model: str, *, batch_size: int, dtype: str, seed: int, max_new_tokens: int
):
    """The rollout engine of the hf or vllm back end (the model on the GPU when there is one). vLLM has the
    GPU to itself here (no trainer beside it) and sees one image per prompt; its context is capped, as a
    caption prompt is one image and an instruction, not the model's whole window."""
    if backend == "hf":
        return make_engine(model, batch_size=batch_size, dtype=dtype)
    from phaserl.models import resolve_model_path
    from phaserl.rollout.vllm import VLLMEngine

    return VLLMEngine(
        resolve_model_path(model),
        dtype=dtype,
        seed=seed,
        gpu_memory_utilization=0.85,
        limit_images=1,
        max_model_len=min(4096, 2048 + max_new_tokens),
    )


def caption_command(
    model: str,
    input: str,
    output: str,
    prompt_template: str = "dense",
    batch_size: int = 8,
    max_new_tokens: int = 256,
    *,
    backend: str = "hf",
    adapter: str = "generic",
    fields: dict[str, str] | None = None,
    image_root: str | None = None,
    image_path_map: dict[str, str] | None = None,
    overwrite: bool = False,
    dtype: str = "float32",
    skip_bad_rows: bool = False,
    temperature: float = 0.0,
    seed: int = 0,
    base_url: str | None = None,
    api_key: str | None = None,
    concurrency: int = 8,
    timeout: float = 120.0,
    retries: int = 4,
    engine=None,
    client=None,
    log: Callable[[str], None] = print,
) -> dict:
    """Caption every image of `input` with `model`; write canonical rows with `caption` to `output`.

    engine / client: a ready rollout engine (hf, vllm) or ChatClient (openai), else built from the arguments."""
    if backend not in BACKENDS:
        raise ValueError(f"--backend must be one of {BACKENDS}, not {backend!r}")
    if backend == "openai" and client is None and not base_url:
        raise ValueError("--backend openai needs --base-url (the server's /v1 root)")
    examples = load_input(
        input,
        adapter,
        fields,
        image_root,
        image_path_map=image_path_map,
        skip_bad_rows=skip_bad_rows,
        log=log,
    )
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    done = read_journal(output)
    todo = [ex for ex in examples if ex.id not in done]
    need = {ex.id for ex in todo if ex.images and (overwrite or not ex.caption)}
    text_only = sum(1 for ex in todo if not ex.images)
    counts = {"captioned": 0, "empty": 0, "failed": 0, "requests": 0}
    bar = progress(len(examples), "caption", initial=len(examples) - len(todo))
    if backend == "openai":
        if client is None:
            from phaserl.openai_api import ChatClient

            client = ChatClient(
                base_url,
                model,
                api_key=api_key,
                timeout=timeout,
                retries=retries,
                max_tokens=max_new_tokens,
                temperature=temperature,
                seed=seed,
            )
        counts["request_errors"] = 0
        _run_openai(todo, need, client, output, prompt_template, model, concurrency, counts, bar, log)
    else:
        owned = need and engine is None
        if owned:
            engine = make_caption_engine(
                backend, model, batch_size=batch_size, dtype=dtype, seed=seed, max_new_tokens=max_new_tokens
            )
        if need and not getattr(engine, "is_vlm", True):
            raise ValueError(f"captioning needs a vision-language model; {model!r} is text-only")
        params = SamplingParams(n=1, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed)
        try:
            _run_engine(todo, need, engine, output, prompt_template, params, model, batch_size, counts, bar)
        finally:
            if owned and hasattr(engine, "close"):
                engine.close()
    bar.close()
    summary = {
        "output": str(output),
        "backend": backend,
        "total": len(examples),
        "resumed": len(examples) - len(todo),
        **counts,
        "kept_existing": len(todo) - len(need) - text_only,
        "text_only": text_only,
    }
    log(
        f"caption: {summary['captioned']} captioned, {summary['resumed']} already done, {summary['empty']} empty, "
        f"{summary['failed']} failed, {summary['requests']} requests -> {output}"
    )
    return summary
