"""`phaserl eval` and evaluate_examples: a scripted engine for exact numbers, and a CPU run of the tiny
random Qwen2.5-VL over the 8 MathVision testmini fixture items (structure and consistency, not accuracy)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from scripted_completions import ANSWERS, ScriptedEngine
from typer.testing import CliRunner

from phaserl.eval.registry import load_benchmark
from phaserl.eval.runner import eval_command, evaluate_examples
from phaserl.eval.scorers.mathvision import MathVisionScorer, extract

FIX = Path(__file__).parents[1] / "fixtures" / "eval"


def test_evaluate_examples_exact_numbers_with_a_scripted_engine():
    exs = load_benchmark("mathvision:testmini", FIX)
    engine = ScriptedEngine(ANSWERS)
    out = evaluate_examples(
        engine, exs, MathVisionScorer(), template="boxed", max_new_tokens=32, samples=2, temperature=1.0
    )
    # correct samples: digits 1 of 2, daisy 2, Misty 2, Ingrid 2, semicircle 2, reflected 2 -> 11 of 16
    assert out["accuracy"] == pytest.approx(11 / 16)
    assert out["format_rate"] == pytest.approx(14 / 16)  # "It must be picture D." has no \boxed{}
    assert out["n"] == 8 and out["scorer"] == "mathvision_official"
    prompts, params = engine.calls[0]
    assert params.n == 2 and params.max_new_tokens == 32 and len(prompts) == 8
    assert all(len(p.images) == 1 for p in prompts)  # image view on a VLM


def test_text_only_model_gets_the_text_view():
    exs = load_benchmark("mathvision:testmini", FIX)[:2]
    engine = ScriptedEngine(ANSWERS, is_vlm=False)
    evaluate_examples(engine, exs, MathVisionScorer())
    assert all(p.images == [] for p in engine.calls[0][0])


def test_eval_command_resumes_and_refuses_mixed_settings(tmp_path):
    engine = ScriptedEngine(ANSWERS)
    kwargs = dict(
        data_dir=FIX,
        samples=2,
        temperature=1.0,
        batch_size=3,
        rollout_engine=engine,
        progress=False,
        echo=lambda s: None,
    )
    res = eval_command("scripted", "mathvision:testmini", tmp_path, **kwargs)["mathvision:testmini"]
    assert (res["correct"], res["total"], res["generated_now"]) == (11, 16, 8)
    # items with at least one correct sample: all but Gerda (B) and hamburgers (3) -> 6 of 8
    assert res["pass@2"] == pytest.approx(6 / 8) and res["mean@2"] == pytest.approx(11 / 16)
    folder = tmp_path / "mathvision_testmini"
    lines = (folder / "records.jsonl").read_text().splitlines()
    assert len(lines) == 16 and len(engine.calls) == 3  # batches of 3 items
    # a crash mid-write: the last item's records lost, a half line left behind
    (folder / "records.jsonl").write_text("\n".join(lines[:-2]) + "\n" + lines[-1][:20])
    again = eval_command("scripted", "mathvision:testmini", tmp_path, **kwargs)["mathvision:testmini"]
    assert again["generated_now"] == 1 and (again["correct"], again["total"]) == (11, 16)
    assert len(engine.calls) == 4 and len(engine.calls[-1][0]) == 1
    done = eval_command("scripted", "mathvision:testmini", tmp_path, **kwargs)["mathvision:testmini"]
    assert done["generated_now"] == 0 and len(engine.calls) == 4
    with pytest.raises(ValueError, match="other settings .*template"):
        eval_command("scripted", "mathvision:testmini", tmp_path, **{**kwargs, "template": "plain"})


def test_eval_command_through_a_typer_cli(tmp_path):
    app = typer.Typer()

    @app.command()
    def eval(
        model: str = typer.Option(...),
        benchmarks: str = typer.Option(...),  # noqa: A001
        output: Path = typer.Option(...),
        limit: int = typer.Option(None),
        data_dir: Path = typer.Option(None),
    ):
        eval_command(
            model,
            benchmarks,
            output,
            limit,
            data_dir=data_dir,
            rollout_engine=ScriptedEngine(ANSWERS),
            progress=False,
            echo=typer.echo,
        )

    @app.command()
    def other() -> None:
        pass

    res = CliRunner().invoke(
        app,
        [
            "eval",
            "--model",
            "x",
            "--benchmarks",
            "mathvision:testmini",
            "--output",
            str(tmp_path),
            "--limit",
            "3",
            "--data-dir",
            str(FIX),
        ],
    )
    assert res.exit_code == 0, res.output
    assert (
        res.output.strip().splitlines()[-1] == "mathvision:testmini: 3/3 = 100.00%"
    )  # greedy: digits 6, daisy 61, D


def test_unknown_benchmark_fails_before_loading_a_model(tmp_path):
    with pytest.raises(KeyError, match="unknown benchmark"):
        eval_command("tiny:qwen2_5_vl", "mathvision:testmini,nope", tmp_path, data_dir=FIX)


def test_tiny_vlm_on_eight_mathvision_items(tmp_path):
    """The real path: load tiny:qwen2_5_vl, batched HF generation with images, score, report, resume."""
    out = tmp_path / "run"
    kwargs = dict(
        data_dir=FIX, samples=2, max_new_tokens=8, batch_size=4, progress=False, echo=lambda s: None
    )
    res = eval_command("tiny:qwen2_5_vl", "mathvision:testmini", out, **kwargs)["mathvision:testmini"]
    folder = out / "mathvision_testmini"
    records = [json.loads(line) for line in (folder / "records.jsonl").read_text().splitlines()]
    assert len(records) == 16 and {(r["id"], r["sample"]) for r in records} == {
        (i, s) for i in ("4", "5", "6", "39", "55", "250", "2513", "2955") for s in (0, 1)
    }
    assert all(
        r["view"] == "image" and len(r["images"]) == 1 and r["completion_tokens"] <= 8 for r in records
    )
    assert all(r["extraction"] == extract(r["response"]) for r in records)  # the official extraction
    assert res["correct"] == sum(r["correct"] for r in records) and res["total"] == 16
    assert res["samples_per_item"] == 2 and 0.0 <= res["pass@2"] <= 1.0 and res["mean@2"] == res["accuracy"]
    assert res["format_rate"] == sum(r["format_ok"] for r in records) / 16
    assert res["config"]["temperature"] == 0.6  # the sampled default for K > 1
    saved = json.loads((folder / "result.json").read_text())
    assert saved["scorer"] == "mathvision_official" and set(saved["breakdown"]) == {"subject", "level"}
    assert (folder / "categories.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = (out / "results.md").read_text()
    assert "mathvision_official" in table and "| 8 | 2 |" in table
    again = eval_command("tiny:qwen2_5_vl", "mathvision:testmini", out, **kwargs)["mathvision:testmini"]
    assert again["generated_now"] == 0 and again["correct"] == res["correct"]
