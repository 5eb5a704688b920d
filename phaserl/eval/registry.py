"""The benchmark registry: a name -> where its file lives, how to load it, how to score it, what to break
down by. Scorers are named by string and imported on first use, so the registry itself is cheap.

Data directory, in order: the `--data-dir` option, else $PHASERL_DATA, else ../shared/data/benchmarks
relative to the current directory. A missing file names the directory and where that choice came from.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from phaserl.data.schema import DataError, Example

SCORERS: dict[str, str] = {
    "mathvision_official": "phaserl.eval.scorers.mathvision:MathVisionScorer",
    "mathvista_rules": "phaserl.eval.scorers.mathvista:MathVistaScorer",
    "mathverse_exact": "phaserl.eval.scorers.mathverse:MathVerseScorer",
    "olympiadbench_judge": "phaserl.eval.scorers.olympiad:OlympiadScorer",
    "verifier": "phaserl.eval.scorers.verifier:VerifierScorer",
}
DEFAULT_DATA_DIR = Path("..") / "shared" / "data" / "benchmarks"


@dataclass(frozen=True)
class Benchmark:
    name: str
    path: str  # the data file, relative to the data directory
    loader: str  # "module:function" returning list[Example]
    scorer: str  # a key of SCORERS
    breakdown: tuple[str, ...] = ()  # Example.meta fields reported per value
    loader_kwargs: dict[str, Any] = field(default_factory=dict)
    hub: tuple[str, str | None, str] | None = None  # (dataset, config, split) on the Hugging Face hub
    multimodal: bool = False


_L = "phaserl.eval.loaders."
_MV = ("subject", "level")
_VISTA = (
    "question_type",
    "answer_type",
    "language",
    "source",
    "category",
    "task",
    "context",
    "grade",
    "skills",
)
_VERSE = ("problem_version", "subject", "subfield", "question_type")

BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in (
        Benchmark(
            "mathvision:testmini",
            "mathvision/testmini.jsonl",
            _L + "mathvision:load_mathvision",
            "mathvision_official",
            _MV,
            hub=("MathLLMs/MathVision", None, "testmini"),
            multimodal=True,
        ),
        Benchmark(
            "mathvision:test",
            "mathvision/test.jsonl",
            _L + "mathvision:load_mathvision",
            "mathvision_official",
            _MV,
            hub=("MathLLMs/MathVision", None, "test"),
            multimodal=True,
        ),
        Benchmark(
            "mathvista:testmini",
            "mathvista/testmini.json",
            _L + "mathvista:load_mathvista",
            "mathvista_rules",
            _VISTA,
            hub=("AI4Math/MathVista", None, "testmini"),
            multimodal=True,
        ),
        Benchmark(
            "mathverse:testmini_text_only",
            "mathverse/testmini_text_only.json",
            _L + "mathverse:load_mathverse",
            "mathverse_exact",
            _VERSE,
            hub=("AI4Math/MathVerse", "testmini_text_only", "testmini_text_only"),
        ),
        Benchmark(
            "mathverse:testmini",
            "mathverse/testmini.json",
            _L + "mathverse:load_mathverse",
            "mathverse_exact",
            _VERSE,
            hub=("AI4Math/MathVerse", "testmini", "testmini"),
            multimodal=True,
        ),
        Benchmark(
            "olympiadbench",
            "olympiadbench/OE_TO_maths_en_COMP.jsonl",
            _L + "olympiadbench:load_olympiadbench",
            "olympiadbench_judge",
            ("subfield", "answer_type"),
        ),
        Benchmark(
            "math500",
            "math500/test.jsonl",
            _L + "math500:load_math500",
            "verifier",
            ("subject", "level"),
            hub=("HuggingFaceH4/MATH-500", None, "test"),
        ),
        Benchmark(
            "gsm8k",
            "gsm8k/test.jsonl",
            _L + "gsm8k:load_gsm8k",
            "verifier",
            hub=("openai/gsm8k", "main", "test"),
        ),
        Benchmark(
            "aime24",
            "aime24/test.jsonl",
            _L + "competition:load_competition",
            "verifier",
            loader_kwargs={"source": "aime24"},
        ),
        Benchmark(
            "aime25",
            "aime25/test.jsonl",
            _L + "competition:load_competition",
            "verifier",
            loader_kwargs={"source": "aime25"},
        ),
        Benchmark(
            "amc23",
            "amc23/test.jsonl",
            _L + "competition:load_competition",
            "verifier",
            loader_kwargs={"source": "amc23"},
        ),
        Benchmark(
            "minerva_math", "minerva_math/test.jsonl", _L + "minerva:load_minerva", "verifier", ("type",)
        ),
    )
}


def _import(spec: str):
    module, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module), attr)


def get_benchmark(name: str) -> Benchmark:
    """A registered benchmark; `olympiadbench:<file stem>` names any other OlympiadBench split file."""
    if name in BENCHMARKS:
        return BENCHMARKS[name]
    if name.startswith("olympiadbench:"):
        base = BENCHMARKS["olympiadbench"]
        stem = name.split(":", 1)[1]
        return Benchmark(
            name, f"olympiadbench/{stem}.jsonl", base.loader, base.scorer, base.breakdown, multimodal=True
        )
    raise KeyError(
        f"unknown benchmark {name!r}; known: {', '.join(sorted(BENCHMARKS))} (and olympiadbench:<file stem>)"
    )


def get_scorer(name: str):
    if name not in SCORERS:
        raise KeyError(f"unknown scorer {name!r}; known: {', '.join(sorted(SCORERS))}")
    return _import(SCORERS[name])()


def resolve_data_dir(data_dir: Path | None) -> tuple[Path, str]:
    """(benchmark data directory, where that choice came from) following --data-dir, $PHASERL_DATA, default."""
    if data_dir is not None:
        return Path(data_dir), "--data-dir"
    env = os.environ.get("PHASERL_DATA")
    if env:
        return Path(env), "$PHASERL_DATA"
    return (
        Path.cwd() / DEFAULT_DATA_DIR,
        "the default ../shared/data/benchmarks relative to the current directory",
    )


def data_file(bench: Benchmark, data_dir: Path | None) -> Path:
    """The benchmark's file under the data directory (also tried: DIR/benchmarks/..., .json for .jsonl)."""
    root, origin = resolve_data_dir(data_dir)
    rel = Path(bench.path)
    for base in (root, root / "benchmarks"):
        for candidate in (base / rel, (base / rel).with_suffix(".json")):
            if candidate.is_file():
                return candidate
    raise DataError(
        f"benchmark {bench.name}: data file {rel} not found under {root.resolve()} (data directory from "
        f"{origin}). Pass --data-dir DIR (the folder that holds {rel}), set $PHASERL_DATA, or name the "
        "hub dataset with --hub if you can reach the Hugging Face hub."
    )


def load_benchmark(
    name: str,
    data_dir: Path | None = None,
    *,
    limit: int | None = None,
    image_dir: Path | None = None,
    missing_images: str = "error",
    hub: bool = False,
) -> list[Example]:
    """The examples of one benchmark, from the data directory (or the hub when `hub` is true)."""
    bench = get_benchmark(name)
    if hub:
        return _load_from_hub(bench, limit)
    loader = _import(bench.loader)
    kwargs = dict(bench.loader_kwargs, limit=limit)
    if bench.multimodal:
        kwargs.update(image_dir=image_dir, missing_images=missing_images)
    return loader(data_file(bench, data_dir), **kwargs)


def _load_from_hub(bench: Benchmark, limit: int | None) -> list[Example]:
    from phaserl.eval.loaders.hub import hub_rows, rows_to_examples

    if bench.hub is None:
        raise DataError(f"benchmark {bench.name} has no hub dataset registered; use its file with --data-dir")
    dataset, config, split = bench.hub
    module = importlib.import_module(bench.loader.partition(":")[0])
    convert = module.row_to_example
    if bench.loader_kwargs.get("source"):
        convert = partial(convert, source=bench.loader_kwargs["source"])
    rows = hub_rows(dataset, split, config)
    return rows_to_examples(rows[:limit] if limit is not None else rows, convert, f"hf:{dataset}/{split}")
