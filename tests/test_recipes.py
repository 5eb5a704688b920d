"""The shipped paper recipes run as they are, in miniature: only the model (a tiny Qwen2.5-VL), the data (small
fixtures in the recipe's own formats) and the sizes (batch, lengths, steps) change. Everything else is the
recipe's: bf16 weights with fp32 master copies, gradient checkpointing, KL to a reference model, the algorithm,
mini-batches and micro-batches, and its evaluation source (served from the test fixtures through $PHASERL_DATA)."""

import json
from pathlib import Path

import pytest
import yaml

from phaserl.config import load_recipe, resolve
from phaserl.curriculum import run_curriculum

ROOT = Path(__file__).resolve().parents[1]
FIX = ROOT / "tests/fixtures/data"
# B x G = 16 samples: whole mini-batches for both recipes (4 and 16 of them)
SMALL = [
    "model.name=tiny:qwen2_5_vl",
    "prompts_per_step=2",
    "rollout.group_size=8",
    "rollout.max_new_tokens=6",
    "stages.*.steps=2",
    "stages.*.epochs=null",
    "stages.*.rollout={}",
    "eval.limit=4",
    "logging.tensorboard=false",
    "logging.progress=false",
    "checkpoint.every=1",
]
LAYOUTS = FIX / "layouts"  # rows in the published datasets' own layouts (tests/fixtures/data/layouts)
CAPTIONED = (
    "[{generator: arithmetic_vl, generator_args: {n: 8, image_size: [56, 56]}}]"  # `data caption` output
)


@pytest.mark.parametrize(
    "recipe,swap",
    [
        # only where each dataset lives changes: the recipe's adapter, image_path_map and weights stay
        (
            "infi_mmr_qwen2_5_vl_3b.yaml",
            [
                f"stages.0.data.0.hub={LAYOUTS}/deepscaler",
                f"stages.1.data={CAPTIONED}",
                f"stages.2.data.0.hub={LAYOUTS}/virl39k_hub",
            ],
        ),
        (
            "lmm_r1_qwen2_5_vl_3b.yaml",
            [
                f"stages.0.data.0.hub={LAYOUTS}/deepscaler",
                f"stages.1.data.0.path={LAYOUTS}/vermulti/mathv60k_message.jsonl",
            ],
        ),
    ],
)
def test_paper_recipe_runs_in_miniature(tmp_path, monkeypatch, recipe, swap):
    monkeypatch.setenv("PHASERL_DATA", str(ROOT / "tests/fixtures/eval"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "datasets"))
    full = load_recipe(ROOT / "recipes" / recipe)
    sets = SMALL + swap
    rec = load_recipe(ROOT / "recipes" / recipe, sets)
    # the paper settings survive the scaling-down everywhere we did not touch them
    assert rec.model.dtype == full.model.dtype == "bfloat16" and rec.model.gradient_checkpointing
    assert rec.algo == full.algo and rec.optim == full.optim and rec.algo.kl_coef > 0
    assert rec.eval.data == full.eval.data and rec.rewards == full.rewards
    assert [s.view for s in resolve(rec)] == [s.view for s in resolve(full)]
    out = tmp_path / "run"
    finals = run_curriculum(rec, out)
    assert len(finals) == len(full.stages) and all((f / "COMPLETE").exists() for f in finals)
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if r.get("step", 0) > 0 and not r.get("final")]
    assert [(r["stage_index"], r["step"]) for r in steps] == [
        (k, s) for k in range(len(finals)) for s in (1, 2)
    ]
    assert all(r["kl"] == r["kl"] for r in steps if "kl" in r)  # KL computed, finite
    if full.eval.data:  # evaluated before and after each stage, on the recipe's own source
        assert sum(1 for r in rows if any(k.startswith("eval/") for k in r)) == 2 * len(finals)
    from safetensors.torch import load_file

    weights = load_file(str(finals[-1] / "model.safetensors"))
    assert all(t.dtype.is_floating_point for t in weights.values())


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
    assert (
        yaml.safe_load((ROOT / "recipes/infi_mmr_qwen2_5_vl_3b.yaml").read_text())["stages"][1]["view"]
        == "image+caption"
    )
