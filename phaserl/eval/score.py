"""`phaserl score`: score saved responses against a benchmark with its official-compatible scorer.

CLI wiring wanted in phaserl/cli.py (the lead owns it):
    phaserl score BENCHMARK PREDICTIONS.jsonl [--data-dir DIR] [--out RESULT.json] [--scorer NAME]
                  [--llm-base-url URL --llm-model NAME [--llm-api-key-env VAR]]
    -> phaserl.eval.score.score_command(benchmark, predictions, data_dir, out, scorer=scorer,
           llm_base_url=llm_base_url, llm_model=llm_model,
           llm_api_key=os.environ.get(llm_api_key_env) if llm_api_key_env else None)
    Exit code 0; errors (DataError, KeyError for an unknown benchmark/scorer) should print their message.

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
            raise DataError(f"id {row['id']!r} is not in the benchmark", path=str(path), line=line, field="id")
        has_extraction = row.get("extraction") is not None
        if not has_extraction and not isinstance(row.get("response"), str):
            raise DataError("needs a string 'response' or an 'extraction'", path=str(path), line=line,
                            field="response")
        if has_extraction:
            row["extraction"] = str(row["extraction"])
        rows.append(row)
    if not rows:
        raise DataError("no predictions", path=str(path))
    return rows


def build_scoring(benchmark: str, scorer: str | None = None, llm_base_url: str | None = None,
                  llm_model: str | None = None, llm_api_key: str | None = None):
    """(scorer, extractor or None): the benchmark's scorer unless overridden; LLM steps when configured."""
    name = scorer or get_benchmark(benchmark).scorer
    if not llm_base_url:
        return get_scorer(name), None
    from phaserl.eval.scorers.llm_judge import LLMClient, LLMExtractor, LLMJudge

    if not llm_model:
        raise ValueError("--llm-base-url needs --llm-model")
    client = LLMClient(base_url=llm_base_url, model=llm_model, api_key=llm_api_key)
    if name == "mathverse_exact":
        from phaserl.eval.scorers.mathverse import MathVerseScorer

        return MathVerseScorer(judge=LLMJudge(client)), LLMExtractor(client)
    return get_scorer(name), LLMExtractor(client)


def result_dict(benchmark: str, scorer, examples: list[Example], verdicts: list[Verdict]) -> dict[str, Any]:
    """The result record: totals, pass@k when sampled, breakdowns, and how every answer was extracted."""
    ids = [e.id for e in examples]
    correct = [v.correct for v in verdicts]
    result: dict[str, Any] = {"benchmark": benchmark, "scorer": scorer.name, "scorer_version": scorer.version}
    result.update(summarize(ids, correct))
    per_item = item_scores(ids, correct)
    unique = list({e.id: e for e in examples}.values())
    result["breakdown"] = breakdown(unique, [per_item[e.id] for e in unique], get_benchmark(benchmark).breakdown)
    result["extraction"] = dict(Counter(v.method for v in verdicts))
    result["undecided"] = sum(not v.decided for v in verdicts)
    return result


def format_line(result: dict[str, Any]) -> str:
    return (f"{result['benchmark']}: {result['correct']}/{result['total']} = "
            f"{100 * result['accuracy']:.2f}%")


def score_command(benchmark: str, predictions: Path, data_dir: Path | None = None, out: Path | None = None,
                  *, scorer: str | None = None, llm_base_url: str | None = None, llm_model: str | None = None,
                  llm_api_key: str | None = None, echo=print) -> dict[str, Any]:
    """Score a predictions file; print a short report whose last line is `BENCHMARK: c/t = acc%`."""
    examples = {e.id: e for e in load_benchmark(benchmark, data_dir, missing_images="ignore")}
    rows = read_predictions(predictions, examples)
    the_scorer, extractor = build_scoring(benchmark, scorer, llm_base_url, llm_model, llm_api_key)
    items = [examples[r["id"]] for r in rows]
    verdicts = score_many(the_scorer, items, [r.get("response") for r in rows],
                          [r.get("extraction") for r in rows], extractor)
    result = result_dict(benchmark, the_scorer, items, verdicts)
    result["predictions"] = str(predictions)
    result["missing_predictions"] = len(examples) - result["items"]
    result["verdicts"] = [{"id": e.id, "extraction": v.extraction, "correct": v.correct, "method": v.method}
                          for e, v in zip(items, verdicts)]
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(result, indent=1, ensure_ascii=False))
    echo(f"scorer: {the_scorer.name} ({the_scorer.version}); extraction: {result['extraction']}")
    if result["missing_predictions"]:
        echo(f"warning: {result['missing_predictions']} of {len(examples)} items have no prediction "
             "(accuracy is over the predictions given)")
    if "samples_per_item" in result:
        echo(", ".join(f"{k} = {100 * v:.2f}%" for k, v in result.items() if k.startswith(("pass@", "mean@"))))
    echo(format_line(result))
    return result
