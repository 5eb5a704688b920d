"""Model options end to end: LLaVA architecture, frozen vision tower, LoRA (merged final/, exact resume)."""

import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file

from phaserl.config import recipe_from_dict
from phaserl.curriculum import run_curriculum
from phaserl.models import load_model, resolve_model_path, vision_parameters


def _recipe(**model):
    return {
        "name": "m",
        "seed": 3,
        "model": {"name": "tiny:llava", **model},
        "template": "plain",
        "rewards": [{"name": "accuracy"}, {"name": "phaserl.testing.rewards:short_response"}],
        "prompts_per_step": 2,
        "rollout": {"group_size": 2, "max_new_tokens": 5},
        "algo": {"micro_batch_size": 4},
        "optim": {"lr": 1e-2},
        "checkpoint": {"every": 1, "keep_last": 3},
        "logging": {"tensorboard": False, "progress": False},
        "stages": [
            {
                "name": "s",
                "view": "image",
                "steps": 2,
                "data": [
                    {"generator": "arithmetic_vl", "generator_args": {"n": 8, "image_size": [56, 56]}},
                    {"generator": "arithmetic", "generator_args": {"n": 8}},
                ],
            }
        ],
    }


def _named(folder):
    return dict(load_model(str(folder)).model.named_parameters())


def test_llava_frozen_vision_with_lora_merges_and_resumes_exactly(tmp_path):
    rec = _recipe(freeze_vision=True, lora={"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]})
    a = tmp_path / "a"
    run_curriculum(recipe_from_dict(rec), a)
    final = a / "stages/1-s/final"
    assert not (final / "adapter_config.json").exists()  # final/ is merged: a plain model folder
    assert (a / "stages/1-s/checkpoint-1/adapter_config.json").exists()  # checkpoints keep the adapter
    base, trained = _named(resolve_model_path("tiny:llava")), _named(final)
    tiny = load_model("tiny:llava").model
    frozen = {id(p) for p in vision_parameters(tiny)}
    vision = {n for n, p in tiny.named_parameters() if id(p) in frozen}
    assert all(torch.equal(base[n], trained[n]) for n in vision)
    assert any(not torch.equal(base[n], trained[n]) for n in base if "q_proj" in n or "v_proj" in n)
    assert all(torch.equal(base[n], trained[n]) for n in base if "k_proj" in n)  # LoRA touched only q, v
    assert len(vision) > 10
    # resume from the adapter checkpoint after step 1: same merged weights as the uninterrupted run
    b = tmp_path / "b"
    shutil.copytree(a, b)
    shutil.rmtree(b / "stages/1-s/final")
    shutil.rmtree(b / "stages/1-s/checkpoint-2")
    run_curriculum(recipe_from_dict(rec), b)
    wa = load_file(str(final / "model.safetensors"))
    wb = load_file(str(b / "stages/1-s/final/model.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_builtin_names_materialise_once(tmp_path, monkeypatch):
    p1 = Path(resolve_model_path("tiny:llama"))
    assert (p1 / "config.json").exists() and Path(resolve_model_path("tiny:llama")) == p1
    assert resolve_model_path("some/hub-id") == "some/hub-id"
