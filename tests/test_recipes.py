"""The shipped paper recipes run as they are, scaled down: tiny model, local fixtures, two steps per stage."""

import json
from pathlib import Path

import pytest
import yaml

from phaserl.config import load_recipe, resolve
from phaserl.curriculum import run_curriculum

ROOT = Path(__file__).resolve().parents[1]
FIX = ROOT / "tests/fixtures/data"
SMALL = ["model.name=tiny:qwen2_5_vl", "model.dtype=float32", "model.gradient_checkpointing=false",
         "prompts_per_step=2", "rollout.group_size=2", "rollout.max_new_tokens=6", "algo.mini_batches=1",
         "algo.micro_batch_size=4", "stages.*.steps=2", "stages.*.epochs=null", "stages.*.rollout={}",
         "eval.data=[]", "eval.every=0", "logging.tensorboard=false", "logging.progress=false",
         "checkpoint.every=1"]
TEXT = f"[{{path: {FIX}/deepscaler.jsonl, adapter: deepscaler}}]"
CAPTIONED = "[{generator: arithmetic_vl, generator_args: {n: 8, image_size: [56, 56]}}]"


@pytest.mark.parametrize("recipe,data", [
    ("infi_mmr_qwen2_5_vl_3b.yaml", [TEXT, CAPTIONED, f"[{{path: {FIX}/virl39k.jsonl, adapter: virl39k}}]"]),
    ("lmm_r1_qwen2_5_vl_3b.yaml", [TEXT, f"[{{path: {FIX}/vermulti.jsonl, adapter: mathv360k}}]"]),
])
def test_paper_recipe_runs_scaled_down(tmp_path, recipe, data):
    full = load_recipe(ROOT / "recipes" / recipe)
    sets = SMALL + [f"stages.{k}.data={d}" for k, d in enumerate(data)]
    rec = load_recipe(ROOT / "recipes" / recipe, sets)
    # the paper settings survive the scaling-down everywhere we did not touch them
    assert rec.algo.advantage == full.algo.advantage and rec.algo.kl_coef == full.algo.kl_coef
    assert [s.view for s in resolve(rec)] == [s.view for s in resolve(full)]
    out = tmp_path / "run"
    finals = run_curriculum(rec, out)
    assert len(finals) == len(full.stages) and all((f / "COMPLETE").exists() for f in finals)
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [(r["stage_index"], r["step"]) for r in rows] == [(k, s) for k in range(len(finals)) for s in (1, 2)]


def test_paper_settings_are_the_published_ones():
    lmm = load_recipe(ROOT / "recipes/lmm_r1_qwen2_5_vl_3b.yaml")
    st = resolve(lmm)
    assert lmm.algo.advantage == "reinforce_pp_baseline" and lmm.rollout.group_size == 16
    assert lmm.optim.lr == 4e-7 and lmm.algo.kl_coef == 1e-3 and lmm.rollout.temperature == 1.0
    assert {(r.name, r.weight) for r in lmm.rewards} == {("format", 0.5), ("accuracy", 1.0)}
    assert [s.view for s in st] == ["text", "image"]
    infi = resolve(load_recipe(ROOT / "recipes/infi_mmr_qwen2_5_vl_3b.yaml"))
    assert [s.view for s in infi] == ["text", "image+caption", "image"]
    assert all(s.algo.advantage == "grpo" and s.algo.kl_coef > 0 for s in infi)
    assert yaml.safe_load((ROOT / "recipes/infi_mmr_qwen2_5_vl_3b.yaml").read_text())["stages"][1]["view"] \
        == "image+caption"
