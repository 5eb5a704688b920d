"""Does each re-implemented official scorer agree with the official verdicts, and how fast is it?

MathVision: scores the published outputs in ../shared/data/official_outputs/mathvision/ against test.jsonl
and prints, per file, our count vs the official count, per-item agreement of verdicts and of extractions,
and items per second; every disagreement is listed (study them before changing the scorer).
Self-consistency: each benchmark's gold answers, written as a boxed response, must score as correct
(failures are printed; the few expected ones are data quirks such as a stray `$` in an OlympiadBench gold).

    .venv/bin/python benchmarks/eval_official_agreement.py [--shared ../shared/data]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from phaserl.eval.registry import get_benchmark, get_scorer, load_benchmark
from phaserl.eval.scorers.base import score_many


def mathvision_agreement(shared: Path) -> None:
    examples = {
        e.id: e for e in load_benchmark("mathvision:test", shared / "benchmarks", missing_images="ignore")
    }
    scorer = get_scorer("mathvision_official")
    for path in sorted((shared / "official_outputs" / "mathvision").glob("*.jsonl")):
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        t0 = time.perf_counter()
        verdicts = score_many(scorer, [examples[str(r["id"])] for r in rows], [r["response"] for r in rows])
        seconds = time.perf_counter() - t0
        ours, official = sum(v.correct for v in verdicts), sum(bool(r["correct"]) for r in rows)
        agree = sum(v.correct == bool(r["correct"]) for v, r in zip(verdicts, rows))
        same = sum(v.extraction == r.get("model_answer") for v, r in zip(verdicts, rows))
        print(
            f"{path.stem}: ours {ours}/{len(rows)}, official {official}/{len(rows)}, verdicts agree "
            f"{agree}/{len(rows)} ({100 * agree / len(rows):.2f}%), extractions agree {same}/{len(rows)}, "
            f"{len(rows) / seconds:.0f} items/s"
        )
        for v, r in zip(verdicts, rows):
            if v.correct != bool(r["correct"]):
                print(
                    f"   id {r['id']}: gold {examples[str(r['id'])].answer!r}, ours {v.extraction!r} -> "
                    f"{v.correct}, official {r.get('model_answer')!r} -> {r['correct']}"
                )


def _boxed_gold(example) -> str:
    if example.answer_type == "choice" and example.choices and example.answer in example.choices:
        return f"The answer is ({chr(ord('A') + example.choices.index(example.answer))})."
    return f"The final answer is \\boxed{{{example.answer}}}."


def self_consistency(shared: Path) -> None:
    for name in (
        "mathvision:test",
        "mathvista:testmini",
        "mathverse:testmini_text_only",
        "olympiadbench",
        "math500",
        "gsm8k",
        "aime24",
        "aime25",
        "amc23",
        "minerva_math",
    ):
        examples = load_benchmark(name, shared / "benchmarks", missing_images="ignore")
        t0 = time.perf_counter()
        verdicts = score_many(
            get_scorer(get_benchmark(name).scorer), examples, [_boxed_gold(e) for e in examples]
        )
        bad = [(e.id, e.answer, v.extraction) for e, v in zip(examples, verdicts) if not v.correct]
        print(
            f"{name}: gold-as-response correct {len(examples) - len(bad)}/{len(examples)} "
            f"({time.perf_counter() - t0:.1f} s)"
        )
        for item in bad[:5]:
            print("   ", item)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data"
    )
    args = parser.parse_args()
    mathvision_agreement(args.shared)
    self_consistency(args.shared)


if __name__ == "__main__":
    main()
