"""`phaserl score`: score saved responses against a benchmark with its official-compatible scorer.

    phaserl score BENCHMARK PREDICTIONS.jsonl [--data-dir DIR] [--out RESULT.json] [--scorer NAME] [--hub]
                  [--llm-base-url URL --llm-model NAME [--llm-api-key-env VAR] [--llm-cache FILE]
                   [--llm-concurrency 8]]

With --llm-base-url the answers are extracted by that model (MathVista's and MathVerse's official way) and,
for MathVerse, an extraction that is not the gold verbatim is judged 0/1 by it. All of a file's extraction
prompts are sent at once (concurrently, retried), then the judge prompts; every reply is cached (default
$PHASERL_CACHE/llm_cache.jsonl), so a rerun sends nothing. The result file records the model, endpoint,
prompts, request and cache-hit counts under "llm".

Prediction rows: {"id": ..., "response": "..."} or {"id": ..., "extraction": "..."} (an already-extracted
answer: extraction is skipped). Several rows with one id are samples of that item (pass@k, mean@k).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from phaserl.data.schema import DataError, Example
from phaserl.eval.loaders._io import read_jsonl
from phaserl.eval.metrics import breakdown, item_scores, summarize
from phaserl.eval.registry import get_benchmark, get_scorer, load_benchmark
from phaserl.eval.scorers.base import Verdict, score_many


def read_predictions(path: Path, known: dict[str, Example]) -> list[dict[str, Any]]:
    """Validated prediction rows; an unknown id or a row without response/extraction names its line."""
    rows = []
    for line, row in read_jsonl(Path(path)):
        if "id" not in row:
            raise DataError("missing", path=str(path), line=line, field="id")
        row["id"] = str(row["id"])
        if row["id"] not in known:
            raise DataError(
                f"id {row['id']!r} is not in the benchmark", path=str(path), line=line, field="id"
            )
        has_extraction = row.get("extraction") is not None
        if not has_extraction and not isinstance(row.get("response"), str):
            raise DataError(
                "needs a string 'response' or an 'extraction'", path=str(path), line=line, field="response"
            )
        if has_extraction:
            row["extraction"] = str(row["extraction"])
        rows.append(row)
    if not rows:
        raise DataError("no predictions", path=str(path))
    return rows


def build_scoring(
    benchmark: str,
    scorer: str | None = None,
    llm_base_url: str | None = None,
    llm_model: str | None = None,
    llm_api_key: str | None = None,
    *,
    llm_cache: str | Path | None = None,
    llm_concurrency: int = 8,
):
    """(scorer, extractor or None): the benchmark's scorer unless overridden; LLM steps when configured."""
    name = scorer or get_benchmark(benchmark).scorer
    if not llm_base_url:
        return get_scorer(name), None
    from phaserl.eval.scorers.llm_judge import (
        LLMAsker,
        LLMCache,
        LLMClient,
        LLMExtractor,
        LLMJudge,
        default_cache_path,
    )

    if not llm_model:
        raise ValueError("--llm-base-url needs --llm-model")
    client = LLMClient(base_url=llm_base_url, model=llm_model, api_key=llm_api_key)
    asker = LLMAsker(client, LLMCache(llm_cache or default_cache_path()), concurrency=llm_concurrency)
    if name == "mathverse_exact":
        from phaserl.eval.scorers.mathverse import MathVerseScorer

        return MathVerseScorer(judge=LLMJudge(asker)), LLMExtractor(asker)
    return get_scorer(name), LLMExtractor(asker)


def prefetch_llm(
    scorer, extractor, items: list[Example], responses: list[str | None], given: list[str | None]
) -> None:
    """Send the LLM prompts a scoring will ask, concurrently, before score_many asks them one by one (from the
    cache): the extraction prompts, then the judge prompts of extractions that are not the gold verbatim."""
    if extractor is None or not hasattr(extractor, "prefetch"):
        return
    asked = [(r, e) for r, e, g in zip(responses, items, given) if g is None and r is not None]
    extractor.prefetch([r for r, _ in asked], [e for _, e in asked])
    judge = getattr(scorer, "llm_judge", None)
    if judge is None or not hasattr(judge, "prefetch"):
        return
    from phaserl.eval.scorers.mathverse import MathVerseScorer

    rule = MathVerseScorer()  # the exact-match rule the judge backs up
    answers = [g if g is not None else extractor.peek(r, e) for r, e, g in zip(responses, items, given)]
    judge.prefetch([(a, e) for a, e in zip(answers, items) if a is not None and not rule.judge(a, e)])


def llm_record(scorer, extractor) -> dict[str, Any] | None:
    """What the result file says of the LLM steps: model, endpoint, prompts, requests and cache hits."""
    asker = getattr(extractor, "asker", None)
    if asker is None:
        return None
    judge = getattr(scorer, "llm_judge", None)
    return {
        **asker.describe(),
        "extract_prompt": extractor.prompt,
        "judge_prompt": getattr(judge, "prompt", None),
    }


def result_dict(benchmark: str, scorer, examples: list[Example], verdicts: list[Verdict]) -> dict[str, Any]:
    """The result record: totals, pass@k when sampled, breakdowns, and how every answer was extracted."""
    ids = [e.id for e in examples]
    correct = [v.correct for v in verdicts]
    result: dict[str, Any] = {"benchmark": benchmark, "scorer": scorer.name, "scorer_version": scorer.version}
    result.update(summarize(ids, correct))
    per_item = item_scores(ids, correct)
    unique = list({e.id: e for e in examples}.values())
    result["breakdown"] = breakdown(
        unique, [per_item[e.id] for e in unique], get_benchmark(benchmark).breakdown
    )
    result["extraction"] = dict(Counter(v.method for v in verdicts))
    result["undecided"] = sum(not v.decided for v in verdicts)
    return result


def format_line(result: dict[str, Any]) -> str:
    return f"{result['benchmark']}: {result['correct']}/{result['total']} = {100 * result['accuracy']:.2f}%"


def score_command(
    benchmark: str,
    predictions: Path,
    data_dir: Path | None = None,
    out: Path | None = None,
    *,
    scorer: str | None = None,
    llm_base_url: str | None = None,
    llm_model: str | None = None,
    llm_api_key: str | None = None,
    llm_cache: str | Path | None = None,
    llm_concurrency: int = 8,
    hub: bool = False,
    echo=print,
) -> dict[str, Any]:
    """Score a predictions file; print a short report whose last line is `BENCHMARK: c/t = acc%`."""
    examples = {e.id: e for e in load_benchmark(benchmark, data_dir, missing_images="ignore", hub=hub)}
    rows = read_predictions(predictions, examples)
    the_scorer, extractor = build_scoring(
        benchmark,
        scorer,
        llm_base_url,
        llm_model,
        llm_api_key,
        llm_cache=llm_cache,
        llm_concurrency=llm_concurrency,
    )
    items = [examples[r["id"]] for r in rows]
    responses, given = [r.get("response") for r in rows], [r.get("extraction") for r in rows]
    prefetch_llm(the_scorer, extractor, items, responses, given)
    verdicts = score_many(the_scorer, items, responses, given, extractor)
    result = result_dict(benchmark, the_scorer, items, verdicts)
    llm = llm_record(the_scorer, extractor)
    if llm is not None:
        result["llm"] = llm
    result["predictions"] = str(predictions)
    result["missing_predictions"] = len(examples) - result["items"]
    result["verdicts"] = [
        {"id": e.id, "extraction": v.extraction, "correct": v.correct, "method": v.method}
        for e, v in zip(items, verdicts)
    ]
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(result, indent=1, ensure_ascii=False))
    echo(f"scorer: {the_scorer.name} ({the_scorer.version}); extraction: {result['extraction']}")
    if llm is not None:
        echo(
            f"llm {llm['model']} at {llm['base_url']}: {llm['requests']} requests, {llm['cache_hits']} cached"
        )
    if result["missing_predictions"]:
        echo(
            f"warning: {result['missing_predictions']} of {len(examples)} items have no prediction "
            "(accuracy is over the predictions given)"
        )
    if "samples_per_item" in result:
        echo(
            ", ".join(f"{k} = {100 * v:.2f}%" for k, v in result.items() if k.startswith(("pass@", "mean@")))
        )
    echo(format_line(result))
    return result
