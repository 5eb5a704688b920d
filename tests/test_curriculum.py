"""Three stages on a tiny VLM with mixed data: each stage's view, the weight hand-off, the output layout."""

import json
from pathlib import Path

from safetensors.torch import load_file

from phaserl.config import load_recipe
from phaserl.curriculum import run_curriculum
from phaserl.models import resolve_model_path

ROOT = Path(__file__).resolve().parents[1]


def _samples(out, stage):
    return [json.loads(x) for x in (out / "samples" / f"{stage}.jsonl").read_text().splitlines()]


def test_three_stage_views_handoff_and_layout(tmp_path):
    # stage 2 trains with a vanishing lr, so its final weights must equal stage 1's (to 1e-20; zero-initialised
    # biases move by lr itself): that proves stage 2 started from stage 1's final weights, not the base model.
    rec = load_recipe(
        ROOT / "recipes/smoke_tiny.yaml",
        [
            "stages.*.steps=1",
            "rollout.max_new_tokens=4",
            "logging.progress=false",
            "logging.samples_per_step=8",
            "stages.1.optim={lr: 1.0e-30}",
            "optim.lr=1.0e-2",
            "algo.kl_coef=0.0",
        ],
    )
    out = tmp_path / "run"
    finals = run_curriculum(rec, out)
    names = ["1-text", "2-image-caption", "3-image"]
    assert [f.parent.name for f in finals] == names
    for n in names:
        assert (out / "stages" / n / "final" / "COMPLETE").exists()
        assert (out / "stages" / n / "checkpoint-1" / "COMPLETE").exists()
        assert (out / "stages" / n / "final" / "config.json").exists()
    # views: stage 1 text only; stage 2 images with captions (text items in its mixture stay text);
    # stage 3 images without captions
    s1, s2, s3 = (_samples(out, n) for n in names)
    assert all("<image>" not in r["prompt"] and "Caption" not in r["prompt"] for r in s1)
    img2 = [r for r in s2 if "<image>" in r["prompt"]]
    assert img2 and all("Caption: An image showing the expression" in r["prompt"] for r in img2)
    assert s3 and all("<image>" in r["prompt"] and "Caption" not in r["prompt"] for r in s3)
    # hand-off
    base = load_file(str(Path(resolve_model_path("tiny:qwen2_5_vl")) / "model.safetensors"))
    w1, w2, w3 = (load_file(str(f / "model.safetensors")) for f in finals)

    def gap(a, b):
        return max(float((a[k] - b[k]).abs().max()) for k in a)

    assert gap(w1, base) > 1e-6
    assert gap(w2, w1) < 1e-20
    assert gap(w3, w2) > 1e-6
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [(r["stage"], r["step"], r["global_step"]) for r in rows] == [
        ("text", 1, 1),
        ("image-caption", 1, 2),
        ("image", 1, 3),
    ]
    assert (out / "recipe.resolved.yaml").exists()
