"""`phaserl eval`: generate answers for benchmarks with a model, score them, and report; resumable.

CLI wiring wanted in phaserl/cli.py (the lead owns it):
    phaserl eval --model PATH --benchmarks mathvision:testmini,math500 --output DIR
        [--limit N] [--samples K] [--engine hf|vllm] [--data-dir DIR] [--image-dir DIR]
        [--missing-images error|skip|text] [--hub] [--view image|text|image+caption] [--template boxed]
        [--max-new-tokens 1024] [--temperature T] [--top-p 1.0] [--batch-size 8] [--seed 0]
        [--dtype float32] [--scorer NAME] [--llm-base-url URL --llm-model NAME [--llm-api-key-env VAR]]
    -> phaserl.eval.runner.eval_command(model, benchmarks, output, limit, samples, engine, data_dir,
           image_dir=..., missing_images=..., hub=..., view=..., template=..., max_new_tokens=...,
           temperature=..., top_p=..., batch_size=..., seed=..., dtype=..., scorer=..., llm_base_url=...,
           llm_model=..., llm_api_key=os.environ.get(VAR) if VAR else None)

Output per benchmark (OUTPUT/<benchmark with ':' as '_'>/): records.jsonl (one line per sample: prompt,
response, extraction, verdict; appended and flushed batch by batch, so a rerun skips finished items),
config.json (a rerun with other settings is refused rather than mixed in), result.json, categories.png.
OUTPUT/results.md tabulates every benchmark with the scorer that produced its number.

`evaluate_examples` is the same generate-and-score step without files. `generate_held_out` is the generation
step of every evaluation, the in-training one (phaserl/train_eval.py) included.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from phaserl.data.render import render
from phaserl.data.schema import Example
from phaserl.eval.registry import get_benchmark, load_benchmark
from phaserl.eval.report import markdown_table, plot_categories
from phaserl.eval.score import build_scoring, format_line, result_dict
from phaserl.eval.scorers.base import Verdict, score_many
from phaserl.rewards.extract import extract_answer
from phaserl.rewards.format import boxed_format, think_answer_format
from phaserl.rollout.base import SamplingParams
from phaserl.types import Completions

# The format each template asks for; templates without one count a response as well-formed when it
# commits to an answer at all.
FORMAT_CHECKS = {"boxed": boxed_format, "lmm_r1": think_answer_format, "think_answer": think_answer_format}
SAMPLED_TEMPERATURE = 0.6  # default when K > 1 (greedy samples would all be the same)


def format_ok(text: str, template: str) -> bool:
    check = FORMAT_CHECKS.get(template)
    return check(text) == 1.0 if check is not None else extract_answer(text) is not None


def choose_view(example: Example, view: str | None, is_vlm: bool) -> str:
    """The requested view for items with images on a VLM; text for everything else."""
    if not is_vlm or not example.has_image:
        return "text"
    return view or "image"


def generate_held_out(
    engine, examples: list[Example], params: SamplingParams, *, view: str | None, template: str, is_vlm: bool
) -> tuple[list[str], list, Completions]:
    """(view, prompt) of each example and params.n completions each (samples of one item contiguous).

    The one generation step of every evaluation: `phaserl eval` and `evaluate_examples` score its texts with a
    benchmark's scorer, the in-training evaluation (phaserl/train_eval.py) with the stage's rewards."""
    views = [choose_view(ex, view, is_vlm) for ex in examples]
    prompts = [render(ex, v, template) for ex, v in zip(examples, views)]
    return views, prompts, engine.generate(prompts, params)


def generate_and_score(
    engine,
    examples: list[Example],
    scorer,
    params: SamplingParams,
    *,
    view: str | None,
    template: str,
    is_vlm: bool,
    extractor=None,
) -> list[dict[str, Any]]:
    """Records for len(examples) * params.n samples (samples of one item contiguous)."""
    views, prompts, completions = generate_held_out(
        engine, examples, params, view=view, template=template, is_vlm=is_vlm
    )
    n = params.n
    items = [ex for ex in examples for _ in range(n)]
    from phaserl.eval.score import prefetch_llm

    prefetch_llm(
        scorer, extractor, items, completions.texts, [None] * len(items)
    )  # LLM requests concurrently
    verdicts: list[Verdict] = score_many(scorer, items, completions.texts, extractor=extractor)
    records = []
    for row, (ex, verdict) in enumerate(zip(items, verdicts)):
        i = row // n
        records.append(
            {
                "id": ex.id,
                "sample": row % n,
                "view": views[i],
                "prompt": prompts[i].messages,
                "images": [str(x) for x in ex.images if isinstance(x, (str, Path))]
                if views[i] != "text"
                else [],
                "response": completions.texts[row],
                "extraction": verdict.extraction,
                "correct": verdict.correct,
                "decided": verdict.decided,
                "method": verdict.method,
                "format_ok": format_ok(completions.texts[row], template),
                "truncated": completions.truncated[row],
                "completion_tokens": len(completions.completion_ids[row]),
            }
        )
    return records


def evaluate_examples(
    engine,
    examples: list[Example],
    scorer,
    *,
    view: str | None = "image",
    template: str = "boxed",
    max_new_tokens: int = 512,
    temperature: float = 0.0,
    top_p: float = 1.0,
    samples: int = 1,
    seed: int = 0,
    is_vlm: bool | None = None,
    extractor=None,
) -> dict[str, Any]:
    """Accuracy and format rate of `engine` on a fixed list of examples, by a benchmark's scorer.

    Returns {"accuracy", "format_rate", "truncated_rate", "n", "samples", "scorer"}; no files written.
    """
    if is_vlm is None:
        is_vlm = bool(getattr(engine, "is_vlm", False))
    params = SamplingParams(
        n=samples, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, seed=seed
    )
    records = (
        generate_and_score(
            engine, examples, scorer, params, view=view, template=template, is_vlm=is_vlm, extractor=extractor
        )
        if examples
        else []
    )
    total = len(records) or 1
    return {
        "accuracy": sum(r["correct"] for r in records) / total,
        "format_rate": sum(r["format_ok"] for r in records) / total,
        "truncated_rate": sum(r["truncated"] for r in records) / total,
        "n": len(examples),
        "samples": samples,
        "scorer": scorer.name,
    }


class RecordStore:
    """records.jsonl of one benchmark: read what is finished, append new batches durably."""

    def __init__(self, folder: Path, config: dict[str, Any]):
        self.folder = folder
        self.path = folder / "records.jsonl"
        folder.mkdir(parents=True, exist_ok=True)
        config_path = folder / "config.json"
        if config_path.exists():
            old = json.loads(config_path.read_text())
            if old != config:
                changed = sorted(k for k in set(old) | set(config) if old.get(k) != config.get(k))
                raise ValueError(
                    f"{folder} holds records made with other settings ({', '.join(changed)}); "
                    "use another --output folder or delete this one"
                )
        else:
            config_path.write_text(json.dumps(config, indent=1))

    def load(self) -> dict[tuple[str, int], dict]:
        done: dict[tuple[str, int], dict] = {}
        if self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:  # a line cut short by a crash: that sample is redone
                    continue
                done[(rec["id"], rec["sample"])] = rec
        return done

    def _ends_mid_line(self) -> bool:
        if not self.path.exists() or self.path.stat().st_size == 0:
            return False
        with self.path.open("rb") as fh:
            fh.seek(-1, 2)
            return fh.read(1) != b"\n"

    def append(self, records: list[dict]) -> None:
        cut = (
            self._ends_mid_line()
        )  # a crash mid-line: start on a fresh line, the torn one is skipped on load
        with self.path.open("a", encoding="utf-8") as fh:
            if cut:
                fh.write("\n")
            for rec in records:
                fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
            fh.flush()


def _load_engine(model: str, engine: str, batch_size: int, dtype: str, seed: int) -> tuple[Any, bool]:
    """(rollout engine, whether the model is a VLM). vLLM is imported only when chosen."""
    if engine == "vllm":
        from transformers import AutoConfig

        from phaserl.models import resolve_model_path
        from phaserl.rollout.vllm import VLLMEngine

        path = resolve_model_path(model)
        return VLLMEngine(path, seed=seed), hasattr(AutoConfig.from_pretrained(path), "vision_config")
    from phaserl.models import load_model
    from phaserl.rollout.choice import default_device, local_engine, resolve_engine
    from phaserl.runtime import prepare_cpu_engine

    device = default_device()  # the engine generates on its model's device
    if resolve_engine(engine, device) == "cpu":
        prepare_cpu_engine()  # before the model's tensors: allocator settings (phaserl/runtime.py)
    loaded = load_model(model, dtype=dtype)
    loaded.model.to(device)
    return (
        local_engine(
            engine,
            loaded.model,
            loaded.processor,
            loaded.tokenizer,
            is_vlm=loaded.is_vlm,
            batch_size=batch_size,
        ),
        loaded.is_vlm,
    )


def run_benchmark(
    engine,
    name: str,
    examples: list[Example],
    folder: Path,
    config: dict[str, Any],
    scoring,
    *,
    batch_size: int,
    progress: bool,
    is_vlm: bool,
) -> dict[str, Any]:
    """Generate the unfinished items in batches (appending records), then aggregate every item's records."""
    from tqdm import tqdm

    scorer, extractor = scoring
    store = RecordStore(folder, config)
    done = store.load()
    k = config["samples"]
    todo = [ex for ex in examples if any((ex.id, s) not in done for s in range(k))]
    params = dict(
        n=k, max_new_tokens=config["max_new_tokens"], temperature=config["temperature"], top_p=config["top_p"]
    )
    position = {ex.id: i for i, ex in enumerate(examples)}
    new_tokens = 0
    start = time.perf_counter()
    with tqdm(
        total=len(examples), initial=len(examples) - len(todo), desc=name, unit="item", disable=not progress
    ) as bar:
        for b in range(0, len(todo), batch_size):
            batch = todo[b : b + batch_size]
            seed = config["seed"] + position[batch[0].id]  # the same items get the same seed on a rerun
            records = generate_and_score(
                engine,
                batch,
                scorer,
                SamplingParams(**params, seed=seed),
                view=config["view"],
                template=config["template"],
                is_vlm=is_vlm,
                extractor=extractor,
            )
            store.append(records)
            done.update({(r["id"], r["sample"]): r for r in records})
            new_tokens += sum(r["completion_tokens"] for r in records)
            bar.update(len(batch))
    seconds = time.perf_counter() - start
    records = [done[(ex.id, s)] for ex in examples for s in range(k)]
    items = [ex for ex in examples for _ in range(k)]
    verdicts = [Verdict(r["correct"], r["extraction"], r["method"], r.get("decided", True)) for r in records]
    result = result_dict(name, scorer, items, verdicts)
    result.update(
        format_rate=sum(r["format_ok"] for r in records) / len(records),
        truncated_rate=sum(r["truncated"] for r in records) / len(records),
        generated_now=len(todo),
        seconds=round(seconds, 2),
        tokens_per_second=round(new_tokens / seconds, 1) if todo and seconds > 0 else None,
        config=config,
    )
    (folder / "result.json").write_text(json.dumps(result, indent=1, ensure_ascii=False))
    plot = plot_categories(result, folder / "categories.png")
    result["plot"] = str(plot) if plot else None
    return result


def eval_command(
    model: str,
    benchmarks: str,
    output: Path,
    limit: int | None = None,
    samples: int = 1,
    engine: str = "auto",
    data_dir: Path | None = None,
    *,
    image_dir: Path | None = None,
    missing_images: str = "error",
    hub: bool = False,
    view: str | None = None,
    template: str = "boxed",
    max_new_tokens: int = 1024,
    temperature: float | None = None,
    top_p: float = 1.0,
    batch_size: int = 8,
    seed: int = 0,
    dtype: str = "float32",
    scorer: str | None = None,
    llm_base_url: str | None = None,
    llm_model: str | None = None,
    llm_api_key: str | None = None,
    rollout_engine=None,
    progress: bool = True,
    echo=print,
) -> dict[str, Any]:
    """Evaluate `model` on comma-separated `benchmarks`; returns {benchmark: result}. Rerun to resume."""
    names = [b.strip() for b in benchmarks.split(",") if b.strip()]
    for name in names:
        get_benchmark(name)  # fail on a typo before loading a model
    if samples < 1:
        raise ValueError("--samples must be >= 1")
    if temperature is None:
        temperature = 0.0 if samples == 1 else SAMPLED_TEMPERATURE
    elif samples > 1 and temperature <= 0:
        echo("warning: --samples > 1 with temperature 0 gives identical samples")
    output = Path(output)
    datasets = {
        name: load_benchmark(
            name, data_dir, limit=limit, image_dir=image_dir, missing_images=missing_images, hub=hub
        )
        for name in names
    }
    if rollout_engine is None:
        rollout_engine, is_vlm = _load_engine(model, engine, batch_size, dtype, seed)
    else:
        is_vlm = bool(getattr(rollout_engine, "is_vlm", False))
    results = {}
    for name, examples in datasets.items():
        scoring = build_scoring(name, scorer, llm_base_url, llm_model, llm_api_key)
        config = {
            "model": model,
            "benchmark": name,
            "template": template,
            "view": view,
            "samples": samples,
            "max_new_tokens": max_new_tokens,
            "temperature": temperature,
            "top_p": top_p,
            "seed": seed,
            "scorer": scoring[0].name,
            "extraction": getattr(scoring[1], "method", "rules"),
        }
        results[name] = run_benchmark(
            rollout_engine,
            name,
            examples,
            output / name.replace(":", "_"),
            config,
            scoring,
            batch_size=batch_size,
            progress=progress,
            is_vlm=is_vlm,
        )
    (output / "results.md").write_text(markdown_table(results))
    (output / "summary.json").write_text(
        json.dumps(
            {n: {k: v for k, v in r.items() if k not in ("breakdown", "config")} for n, r in results.items()},
            indent=1,
        )
    )
    echo(markdown_table(results))
    for result in results.values():
        echo(format_line(result))
    return results
