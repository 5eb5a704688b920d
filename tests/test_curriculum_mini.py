"""The mini curriculum experiment: its plan (equal RL budgets, the right views per arm), its report (table and
curves from fake runs, numbers worked out by hand), resume bookkeeping, the data source; and, behind the slow
marker, the real `--quick` run end to end."""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

import pytest

from phaserl.config import recipe_from_dict, resolve
from phaserl.data.schema import VIEWS
from phaserl.data.sources import DatasetSpec, load_examples
from phaserl.minivlm.data import ANSWER_ONLY, GENERATOR, answer_only, mini_tasks
from phaserl.rewards.last_number import last_number_reward

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "curriculum_mini.py"


@pytest.fixture(scope="module")
def cm():
    spec = importlib.util.spec_from_file_location("curriculum_mini", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["curriculum_mini"] = module
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------- planning


def test_split_steps(cm):
    assert cm.split_steps(36, 3) == [12, 12, 12]
    assert cm.split_steps(7, 3) == [3, 2, 2]
    assert cm.split_steps(5, 1) == [5]
    with pytest.raises(ValueError):
        cm.split_steps(2, 3)


@pytest.mark.parametrize("preset", ["FULL", "QUICK"])
def test_arm_recipes_have_equal_budgets_and_the_papers_views(cm, preset):
    settings = getattr(cm, preset)
    budgets = {}
    for arm in ("infi_mmr", "lmm_r1", "direct"):
        raw = cm.arm_recipe(arm, settings, seed=2, model="some/model")
        stages = resolve(recipe_from_dict(raw))
        assert [s.view for s in stages] == list(cm.ARM_VIEWS[arm])
        assert [s.eval.at_start for s in stages] == [True] + [False] * (len(stages) - 1)
        assert all(s.eval.views == list(VIEWS) and s.template == "number" for s in stages)
        assert {r.name for r in stages[0].rewards} == {"last_number", ANSWER_ONLY}
        budgets[arm] = sum(s.steps * s.prompts_per_step * s.rollout.group_size for s in stages)
        assert raw["seed"] == 2 and raw["model"]["name"] == "some/model"
    assert len(set(budgets.values())) == 1
    assert budgets["direct"] == settings.total_steps * settings.prompts_per_step * settings.group_size
    with pytest.raises(ValueError):
        cm.arm_recipe("base", settings, 0, "m")


def test_infi_mmr_stages_draw_different_train_problems(cm):
    raw = cm.arm_recipe("infi_mmr", cm.QUICK, 0, "m")
    seeds = [st["data"][0]["generator_args"]["seed"] for st in raw["stages"]]
    assert len(set(seeds)) == 3
    assert all(st["data"][0]["generator_args"]["split"] == "train" for st in raw["stages"])
    assert raw["eval"]["data"][0]["generator_args"]["split"] == "test"


def test_plan_lines_name_every_arm(cm):
    lines = cm.plan_lines(cm.FULL, cm.ARMS, [0, 1, 2])
    text = "\n".join(lines)
    assert "text (8) -> image+caption (8) -> image (8)" in text
    assert "text (12) -> image (12)" in text and "image (24)" in text and "no RL" in text


# ---------------------------------------------------------------- report


def _fake_eval(acc: dict[str, float], fmt: float = 0.5) -> dict:
    return {v: {"accuracy": acc[v], "format": fmt, "n": 10} for v in VIEWS}


def _write_run(
    out: Path, name: str, arm: str, seed: int, evals: dict, rows: list[dict] | None = None
) -> None:
    d = out / "runs" / name
    d.mkdir(parents=True)
    (d / "final_eval.json").write_text(json.dumps({"arm": arm, "seed": seed, "eval": evals, "seconds": 60}))
    if rows is not None:
        (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_results_table_means_and_stds(cm, tmp_path):
    for seed, a in enumerate([0.2, 0.4, 0.6]):
        _write_run(
            tmp_path,
            f"direct-seed{seed}",
            "direct",
            seed,
            _fake_eval({"text": a, "image+caption": a, "image": a}),
        )
    _write_run(
        tmp_path, "base", "base", 0, _fake_eval({"text": 0.1, "image+caption": 0.05, "image": 0.0}, fmt=0.0)
    )
    table = cm.collect_results(tmp_path, cm.ARMS, [0, 1, 2])
    assert set(table) == {"direct", "base"}  # arms without runs are left out
    acc = table["direct"]["views"]["image"]["accuracy"]
    assert acc["mean"] == pytest.approx(0.4) and acc["std"] == pytest.approx(0.2)  # sample std of .2 .4 .6
    assert table["base"]["views"]["image"]["accuracy"]["std"] is None
    md = cm.markdown_table(table, cm.FULL)
    assert "| direct | image (24) | 3 | 40.0 ± 20.0 |" in md
    assert "| base | none | 1 (greedy: deterministic) | 10.0 | 5.0 | 0.0 | 0.0 | 0.0 | 0.0 |" in md


def test_curves_average_seeds_and_keep_the_last_row_of_a_step(cm, tmp_path):
    def rows(values):
        out = [{"stage_index": 0, "step": 1, "global_step": 1, "reward/mean": 0.3}]  # a train row: ignored
        for step, v in values:
            out.append({"global_step": step, **{f"eval/{view}/last_number": v for view in VIEWS}})
        return out

    evals = _fake_eval({"text": 0, "image+caption": 0, "image": 0})
    _write_run(tmp_path, "lmm_r1-seed0", "lmm_r1", 0, evals, rows([(0, 0.1), (3, 0.9), (3, 0.3), (6, 0.5)]))
    _write_run(tmp_path, "lmm_r1-seed1", "lmm_r1", 1, evals, rows([(0, 0.1), (3, 0.5), (6, 0.7)]))
    curves = cm.collect_curves(tmp_path, ("lmm_r1", "base"), [0, 1])
    c = curves["lmm_r1"]["image"]
    assert c["steps"] == [0, 3, 6]
    assert c["mean"] == pytest.approx([0.1, 0.4, 0.6])  # step 3: (0.3 + 0.5) / 2, the 0.9 row was superseded
    assert c["min"] == pytest.approx([0.1, 0.3, 0.5]) and c["max"] == pytest.approx([0.1, 0.5, 0.7])
    assert "base" not in curves
    png = cm.plot_curves(curves, cm.QUICK, tmp_path / "curves.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------- orchestration (fake training)


def test_run_experiment_skips_finished_arms_and_refuses_other_settings(cm, tmp_path):
    calls = []

    def train(recipe, run_dir):
        calls.append(("train", recipe["name"]))
        final = run_dir / "stages" / f"{len(recipe['stages'])}-x" / "final"
        final.mkdir(parents=True)
        (run_dir / "stages" / f"{len(recipe['stages'])}-x" / "checkpoint-3").mkdir()
        rows = [
            {"global_step": 0, **{f"eval/{v}/last_number": 0.1 for v in VIEWS}},
            {"global_step": 6, **{f"eval/{v}/last_number": 0.2 + recipe["seed"] / 10 for v in VIEWS}},
        ]
        (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        return final

    def evaluate(model, recipe, settings):
        calls.append(("eval", model))
        return _fake_eval({v: 0.25 for v in VIEWS})

    out = tmp_path / "exp"
    job = functools.partial(cm.run_job, train=train, evaluate=evaluate)
    result = cm.run_experiment(cm.QUICK, out, "m", [0, 1], job=job, log=lambda *_: None)
    assert sorted(c[1] for c in calls if c[0] == "train") == sorted(
        f"mini-{a}-seed{s}" for a in ("infi_mmr", "lmm_r1", "direct") for s in (0, 1)
    )
    assert ("eval", "m") in calls and sum(c[0] == "eval" for c in calls) == 7  # base once, 3 arms x 2 seeds
    assert set(result["arms"]) == set(cm.ARMS)
    assert result["curves"]["direct"]["image"]["mean"] == pytest.approx([0.1, 0.25])
    assert (out / "curves.png").exists() and "| infi_mmr |" in (out / "results.md").read_text()
    assert not list(out.glob("runs/*/stages/*/checkpoint-*"))  # pruned once evaluated
    assert list(out.glob("runs/direct-seed0/stages/*/final"))
    calls.clear()
    cm.run_experiment(cm.QUICK, out, "m", [0, 1], job=job, log=lambda *_: None)
    assert calls == []
    with pytest.raises(SystemExit, match="other settings"):
        cm.run_experiment(cm.FULL, out, "m", [0], job=job, log=lambda *_: None)


def test_parse_args(cm):
    args = cm.parse_args(["--quick", "--arms", "direct,base"])
    assert args.quick and args.arms == ("direct", "base") and args.seeds is None
    with pytest.raises(SystemExit):
        cm.parse_args(["--arms", "direct,nope"])


# ---------------------------------------------------------------- data source


def test_mini_tasks_through_a_dataset_spec():
    spec = DatasetSpec(
        generator=GENERATOR, generator_args={"n": 6, "split": "test", "seed": 0, "kinds": ["arith"]}
    )
    examples = load_examples(spec, log=lambda *_: None)
    assert len(examples) == 6 and all(e.meta["kind"] == "arith" and e.images for e in examples)
    train = mini_tasks(n=12, split="train", seed=0)
    assert not {e.meta["key"] for e in train} & {
        e.meta["key"] for e in mini_tasks(n=12, split="test", seed=0)
    }
    with pytest.raises(ValueError, match="unknown kinds"):
        mini_tasks(n=2, kinds=["poetry"])


@pytest.mark.parametrize(
    "text,score",
    [
        ("42", 1.0),
        (" 42.\n", 1.0),
        ("$42$", 1.0),
        ("-3", 1.0),
        ("The answer is 42.", 0.0),
        ("4 2", 0.0),
        ("", 0.0),
        ("42 apples", 0.0),
    ],
)
def test_answer_only(text, score):
    assert answer_only(text) == score


@pytest.mark.parametrize(
    "text,score",
    [
        ("55", 1.0),
        ("The answer is 55.", 1.0),
        ("6 * 8 + 7 = 55", 1.0),
        ("\\boxed{55}", 1.0),
        ("The image is 6 * 8 + 7.", 0.0),  # restating the problem is not solving it (the verifier says 55)
        ("Compute 6 * 8 + 7.", 0.0),
        ("1,055", 0.0),
        ("5 5", 0.0),
        ("", 0.0),
    ],
)
def test_last_number_reward(text, score):
    example = mini_tasks(n=1, split="test", seed=0)[0]
    example.answer = "55"
    assert last_number_reward(text, example) == score


def test_last_number_without_gold():
    example = mini_tasks(n=1, split="test", seed=0)[0]
    example.answer = None
    assert last_number_reward("55", example) is None


# ---------------------------------------------------------------- the real thing


@pytest.mark.learning
@pytest.mark.timeout(2700)  # a default mini-VLM build (capped at 12 minutes) plus the three arms
def test_quick_run_end_to_end(cm, tmp_path):
    """`--quick` with the real mini VLM (PHASERL_MINI_VLM, else the cached default build): every arm trains
    and is evaluated, the report is written, and a rerun finds everything done."""
    model = os.environ.get("PHASERL_MINI_VLM") or str(cm.default_mini_vlm())
    out = tmp_path / "quick"
    result = cm.main(["--quick", "--output", str(out), "--mini-vlm", model])
    assert set(result["arms"]) == set(cm.ARMS)
    for row in result["arms"].values():
        for view in VIEWS:
            assert 0.0 <= row["views"][view]["accuracy"]["mean"] <= 1.0
            assert row["n"][view] == cm.QUICK.n_final
    assert set(result["curves"]) == {"infi_mmr", "lmm_r1", "direct"}
    assert result["curves"]["infi_mmr"]["image"]["steps"] == [0, 2, 4, 6]
    assert (out / "curves.png").stat().st_size > 0
    start = time.perf_counter()
    cm.main(["--quick", "--output", str(out), "--mini-vlm", model])
    assert time.perf_counter() - start < 60  # nothing retrained or re-evaluated
