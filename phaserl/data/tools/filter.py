"""Difficulty filtering: keep problems the current model solves sometimes, not never and not always.

CLI wanted (lead wires it; print the returned dict as JSON):
    phaserl data filter --model M --input data.jsonl --output kept.jsonl [--samples 8] [--keep 0.1-0.9]
        [--adapter generic] [--field question=problem ...] [--image-root DIR]
        [--view auto|text|image|image+caption]
        [--template plain] [--max-new-tokens 256] [--temperature 1.0] [--top-p 1.0] [--batch-size 8]
        [--seed 0] [--scores PATH] [--dtype float32] [--skip-bad-rows]
    -> phaserl.data.tools.filter.filter_command(model, input, output, samples=...,
           keep=parse_range(keep), ...)
       (`phaserl.data.tools._io.parse_range` turns "0.1-0.9" into (0.1, 0.9))

K samples per problem through the rollout engine, scored by the `accuracy` reward; pass rate = correct / K.
Kept: low <= pass rate <= high (MM-EUREKA keeps [0.1, 0.9]: with K=8, 1 to 7 right). Problems whose gold
answer the verifier cannot parse (gold checked against itself is undecidable) are dropped before sampling.
Every problem's verdict goes to a scores journal (default `<output stem>.scores.jsonl`), appended batch by
batch; a rerun resumes from it. The output (kept problems, canonical rows with meta.pass_rate) is written
at the end.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

from phaserl.data.render import render
from phaserl.data.schema import DataError, Example
from phaserl.data.tools._io import (
    append_rows,
    batched,
    load_input,
    make_engine,
    output_row,
    parse_range,
    progress,
    read_journal,
    write_rows,
)
from phaserl.rollout.base import SamplingParams


def gold_verdicts(examples: list[Example], verifier) -> list[bool | None]:
    """The verifier on (gold, gold): None marks a gold it cannot parse, which no response could match."""
    items = [
        {
            "gold": ex.answer,
            "pred": ex.answer,
            "answer_type": ex.answer_type,
            "choices": ex.choices,
            "tolerance": ex.tolerance,
            "rel_tolerance": ex.rel_tolerance,
        }
        for ex in examples
    ]
    return verifier.check_many(items) if items else []


def choose_view(example: Example, view: str, is_vlm: bool) -> str:
    if view != "auto":
        return view
    return "image" if example.images and is_vlm else "text"


def verdict(example_id: str, correct: int, samples: int, keep: tuple[float, float]) -> dict:
    rate = correct / samples
    reason = "too hard" if rate < keep[0] else "too easy" if rate > keep[1] else "in range"
    return {
        "id": example_id,
        "pass_rate": rate,
        "correct": correct,
        "samples": samples,
        "kept": reason == "in range",
        "reason": reason,
    }


def _score_batch(
    examples: list[Example],
    engine,
    verifier,
    *,
    samples: int,
    keep: tuple[float, float],
    view: str,
    template: str,
    params: SamplingParams,
) -> list[dict]:
    """Sample K answers per problem, score their accuracy, and return one verdict row per problem."""
    from phaserl.rewards.combine import RewardSpec, compute_rewards

    rows, ready, prompts = [], [], []
    for ex in examples:
        try:
            prompts.append(render(ex, choose_view(ex, view, getattr(engine, "is_vlm", False)), template))
            ready.append(ex)
        except DataError as e:
            rows.append({"id": ex.id, "pass_rate": None, "kept": False, "reason": f"render failed: {e}"})
    if not ready:
        return rows
    texts = engine.generate(prompts, params).texts  # [B * K], samples of problem i at rows i*K..(i+1)*K-1
    repeated = [ex for ex in ready for _ in range(samples)]
    acc = compute_rewards(texts, repeated, [RewardSpec(name="accuracy")], verifier=verifier).components[
        "accuracy"
    ]
    for i, ex in enumerate(ready):
        group = acc[i * samples : (i + 1) * samples]
        rows.append(verdict(ex.id, sum(1 for v in group if v == 1.0), samples, keep))
    return rows


def filter_command(
    model: str,
    input: str,
    output: str,
    samples: int = 8,
    keep=(0.1, 0.9),
    *,
    adapter: str = "generic",
    fields: dict[str, str] | None = None,
    image_root: str | None = None,
    view: str = "auto",
    template: str = "plain",
    max_new_tokens: int = 256,
    temperature: float = 1.0,
    top_p: float = 1.0,
    batch_size: int = 8,
    seed: int = 0,
    scores: str | None = None,
    dtype: str = "float32",
    skip_bad_rows: bool = False,
    engine=None,
    verifier=None,
    log: Callable[[str], None] = print,
) -> dict:
    """Write the pass rate of every problem to `scores` and the problems inside `keep` to `output`."""
    keep = parse_range(keep)
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    examples = load_input(input, adapter, fields, image_root, skip_bad_rows=skip_bad_rows, log=log)
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    scores_path = Path(scores) if scores else out.with_name(out.stem + ".scores.jsonl")
    done = read_journal(scores_path)
    todo = [ex for ex in examples if ex.id not in done]
    verifier = verifier or _default_verifier()
    todo = _drop_bad_golds(todo, verifier, scores_path)
    if todo and engine is None:
        engine = make_engine(model, batch_size=batch_size, dtype=dtype)
    bar = progress(len(examples), "filter", initial=len(examples) - len(todo))
    for start, chunk in zip(range(0, len(todo), batch_size), batched(todo, batch_size)):
        params = SamplingParams(
            n=samples, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, seed=seed + start
        )
        append_rows(
            scores_path,
            _score_batch(
                chunk,
                engine,
                verifier,
                samples=samples,
                keep=keep,
                view=view,
                template=template,
                params=params,
            ),
        )
        bar.update(len(chunk))
    bar.close()
    return _finish(examples, read_journal(scores_path), out, scores_path, log)


def _default_verifier():
    from phaserl.rewards.verify import get_verifier

    return get_verifier()


def _drop_bad_golds(todo: list[Example], verifier, scores_path: Path) -> list[Example]:
    """Journal the problems without a usable gold; return the rest."""
    golds = gold_verdicts([ex for ex in todo if ex.answer is not None], verifier)
    verdicts = iter(golds)
    rows, rest = [], []
    for ex in todo:
        ok = next(verdicts) if ex.answer is not None else None
        if ok is not True:
            reason = (
                "no gold answer"
                if ex.answer is None
                else "gold unparseable"
                if ok is None
                else "gold does not match itself"
            )
            rows.append({"id": ex.id, "pass_rate": None, "kept": False, "reason": reason})
        else:
            rest.append(ex)
    if rows:
        append_rows(scores_path, rows)
    return rest


def _finish(
    examples: list[Example],
    verdicts: dict[str, dict],
    out: Path,
    scores_path: Path,
    log: Callable[[str], None],
) -> dict:
    kept = []
    for ex in examples:
        v = verdicts.get(ex.id)
        if v and v["kept"]:
            ex.meta["pass_rate"] = v["pass_rate"]
            kept.append(output_row(ex, out))
    write_rows(out, kept)
    reasons = Counter(verdicts[ex.id]["reason"].split(":")[0] for ex in examples if ex.id in verdicts)
    summary = {
        "output": str(out),
        "scores": str(scores_path),
        "total": len(examples),
        "kept": len(kept),
        "reasons": dict(reasons),
    }
    log(f"filter: kept {len(kept)} of {len(examples)} ({dict(reasons)}) -> {out}")
    return summary
