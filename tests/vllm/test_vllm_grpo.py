"""A few GRPO steps of the demo recipe with vLLM rollouts (rollout.engine: vllm): the trainer's own loop,
vLLM colocated, weights synced after every update."""

import math

import pytest
import yaml

pytestmark = pytest.mark.vllm


def test_grpo_steps_with_vllm_rollouts(tmp_path, smollm2_path):
    from phaserl.config import load_recipe
    from phaserl.curriculum import run_curriculum
    from phaserl.logs import read_metrics

    recipe = yaml.safe_load(open("recipes/demo_cpu.yaml"))
    recipe["model"]["name"] = smollm2_path
    recipe["rollout"].update(
        engine="vllm",
        group_size=4,
        max_new_tokens=8,
        vllm={"dtype": "float32", "kv_cache_gib": 1, "max_model_len": 1024},
    )
    recipe["prompts_per_step"] = 2
    recipe["eval"] = {"limit": 8, "sampled": False, "data": recipe["eval"]["data"]}
    recipe["checkpoint"] = {"every": 100}
    recipe["stages"][0]["steps"] = 3
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    out = tmp_path / "run"
    finals = run_curriculum(load_recipe(path), out, fresh=True)
    assert (finals[-1] / "config.json").exists()
    steps = [r for r in read_metrics(out) if "reward/mean" in r and r.get("step", 0) >= 1]
    assert [r["step"] for r in steps] == [1, 2, 3]
    for row in steps:
        assert 0.0 <= row["reward/mean"] <= 1.0 and math.isfinite(row.get("loss", 0.0))
    evals = [r for r in read_metrics(out) if any(k.startswith("eval/") for k in r)]
    assert len(evals) >= 2  # greedy eval through the vLLM engine before and after training
