"""Tiny-model end to end: every algorithm for a few steps on mixed text/image data, on the CPU."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from phaserl.config import recipe_from_dict
from phaserl.curriculum import run_curriculum
from phaserl.models import resolve_model_path

VL_DATA = [
    {
        "generator": "arithmetic_vl",
        "generator_args": {"n": 16, "seed": 1, "image_size": [56, 56]},
        "weight": 1,
    },
    {"generator": "arithmetic", "generator_args": {"n": 16, "seed": 2}, "weight": 1},
]


def tiny_recipe(**algo):
    return {
        "name": "e2e",
        "seed": 1,
        "model": {"name": "tiny:qwen2_5_vl"},
        "template": "think_answer",
        "rewards": [
            {"name": "format", "weight": 0.5},
            {"name": "accuracy"},
            {"name": "phaserl.testing.rewards:short_response", "weight": 1.0},
        ],
        "prompts_per_step": 4,
        "rollout": {"group_size": 2, "max_new_tokens": 6},
        "algo": {"micro_batch_size": 3, **algo},
        "optim": {"lr": 1e-3},
        "checkpoint": {"every": 1, "keep_last": 1},
        "logging": {"tensorboard": False, "progress": False, "samples_per_step": 2},
        "stages": [{"name": "mixed", "view": "image", "steps": 2, "data": VL_DATA}],
    }


def _weights(folder):
    return load_file(str(folder / "model.safetensors"))


@pytest.mark.parametrize(
    "algo",
    [
        {"advantage": "grpo", "kl_coef": 0.05},
        {"advantage": "dr_grpo", "aggregation": "constant"},
        {"advantage": "rloo", "ratio": "sequence", "mini_batches": 2},
        {
            "advantage": "reinforce_pp_baseline",
            "kl_coef": 0.01,
            "kl_in": "reward",
            "kl_estimator": "k1",
            "ppo_epochs": 2,
            "eps_high": 0.28,
            "dynamic_sampling": True,
        },
    ],
    ids=["grpo", "dr_grpo", "rloo_gspo", "reinforce_pp"],
)
def test_algorithms_train_on_mixed_text_and_image_batches(tmp_path, algo):
    out = tmp_path / "run"
    finals = run_curriculum(recipe_from_dict(tiny_recipe(**algo)), out)
    final = finals[0]
    before = _weights(Path(resolve_model_path("tiny:qwen2_5_vl")))
    after = _weights(final)
    changed = [k for k in after if not torch.equal(after[k], before[k])]
    assert changed, "no weight changed"
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    for key in (
        "reward/mean",
        "reward/format",
        "reward/accuracy",
        "adv/std",
        "clip_frac",
        "loss",
        "response_length/mean",
        "tokens_per_s",
        "time/step",
    ):
        assert key in rows[0], key
    assert rows[0]["stage"] == "mixed"
    assert (out / "stages/1-mixed/checkpoint-2/COMPLETE").exists()
    assert not (out / "stages/1-mixed/checkpoint-1").exists()  # keep_last=1
    assert (out / "samples/1-mixed.jsonl").exists()
    # final/ is a plain transformers folder, and it holds the trained weights
    from transformers import AutoModelForImageTextToText, AutoProcessor

    trained = dict(AutoModelForImageTextToText.from_pretrained(final).named_parameters())
    base = dict(
        AutoModelForImageTextToText.from_pretrained(resolve_model_path("tiny:qwen2_5_vl")).named_parameters()
    )
    AutoProcessor.from_pretrained(final)
    assert any(not torch.equal(trained[k], base[k]) for k in base)


def test_text_only_causal_lm_and_resume_is_a_no_op_when_done(tmp_path):
    rec = tiny_recipe(advantage="grpo")
    rec["model"]["name"] = "tiny:llama"
    rec["stages"][0]["view"] = "text"
    rec["stages"][0]["data"] = [{"generator": "arithmetic", "generator_args": {"n": 16}}]
    out = tmp_path / "run"
    run_curriculum(recipe_from_dict(rec), out)
    mtime = (out / "stages/1-mixed/final/model.safetensors").stat().st_mtime
    run_curriculum(recipe_from_dict(rec), out)  # everything is done: nothing retrained
    assert (out / "stages/1-mixed/final/model.safetensors").stat().st_mtime == mtime
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2


def test_verifier_workers_start_before_the_first_step(tmp_path, monkeypatch):
    """With an accuracy reward, the verifier's workers are started and waited for before step 1, so their start-up
    (about a second each) is not inside the first step's scoring."""
    import phaserl.collect
    import phaserl.trainer

    events = []

    class Spy:
        def wait_ready(self):
            events.append("ready")

    real_collect = phaserl.collect.collect
    monkeypatch.setattr(phaserl.trainer, "get_verifier", lambda: Spy())
    monkeypatch.setattr(
        phaserl.trainer, "collect", lambda *a, **k: events.append("collect") or real_collect(*a, **k)
    )
    recipe = tiny_recipe()
    recipe["stages"][0]["steps"] = 1
    run_curriculum(recipe_from_dict(recipe), tmp_path / "run")
    assert events[:2] == ["ready", "collect"]
    recipe["rewards"] = [{"name": "format"}]
    events.clear()
    run_curriculum(recipe_from_dict(recipe), tmp_path / "run2")
    assert "ready" not in events


def test_logged_lr_is_the_rate_each_update_used(tmp_path):
    """Warmup over 2 of 4 steps, then linear decay: step k logs lr x lr_factor(k - 1), the rate its optimizer
    step ran at (not the scheduler's next value)."""
    from phaserl.schedule import lr_factor

    rec = tiny_recipe(advantage="grpo")
    rec["optim"] = {"lr": 1e-3, "schedule": "linear", "warmup_ratio": 0.5}
    rec["stages"][0]["steps"] = 4
    rec["stages"][0]["view"] = "text"
    rec["checkpoint"] = {"every": 10, "keep_last": 1}
    out = tmp_path / "run"
    run_curriculum(recipe_from_dict(rec), out)
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    want = [1e-3 * lr_factor(k, 4, 0.5, "linear") for k in range(4)]  # 0.5, 1, 1, 0.5 of lr
    assert [r["lr"] for r in rows] == pytest.approx(want)
    assert want == pytest.approx([5e-4, 1e-3, 1e-3, 5e-4])
