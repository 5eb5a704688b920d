"""The GPU path on CUDA with tiny models (`make test-gpu`, or scripts/gpu_check.sh on a GPU machine): the HF
engine, the trainer in one process with the paper recipes' settings, evaluation and the data tools all run on the
GPU. Skipped where torch sees no CUDA device."""

import json
from pathlib import Path

import pytest
import torch

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]
ROOT = Path(__file__).resolve().parents[2]


def _prompts():
    from PIL import Image

    from phaserl.types import Prompt

    img = Prompt(
        messages=[{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "How many?"}]}],
        images=[Image.new("RGB", (56, 56), (200, 30, 30))],
    )
    return [img, Prompt(messages=[{"role": "user", "content": "What is 2+2?"}])]


@pytest.mark.parametrize("name", ["tiny:llama", "tiny:qwen2_5_vl"])
def test_hf_engine_generates_on_the_gpu_like_on_the_cpu(name):
    from phaserl.models import load_model
    from phaserl.rollout.base import SamplingParams
    from phaserl.rollout.hf import HFEngine

    lm = load_model(name)
    prompts = _prompts() if lm.is_vlm else _prompts()[1:]
    greedy = SamplingParams(n=2, max_new_tokens=8, temperature=0.0, seed=0)
    cpu = HFEngine(lm.model, lm.processor, lm.tokenizer, is_vlm=lm.is_vlm).generate(prompts, greedy)
    lm.model.to("cuda")
    engine = HFEngine(lm.model, lm.processor, lm.tokenizer, is_vlm=lm.is_vlm)
    assert engine.device.type == "cuda"
    gpu = engine.generate(prompts, greedy)
    agree = sum(a == b for x, y in zip(cpu.completion_ids, gpu.completion_ids) for a, b in zip(x, y))
    assert agree >= 0.9 * sum(len(x) for x in cpu.completion_ids)  # fp32 both sides; kernels differ
    sampled = engine.generate(prompts, SamplingParams(n=4, max_new_tokens=8, temperature=1.0, seed=1))
    again = engine.generate(prompts, SamplingParams(n=4, max_new_tokens=8, temperature=1.0, seed=1))
    assert sampled.completion_ids == again.completion_ids  # seeded on the device
    assert all(torch.isfinite(lp).all() and (lp <= 0).all() for lp in sampled.logp)
    assert sampled.entropy is not None and all(e > 0 for e in sampled.entropy)
    bf16 = HFEngine(lm.model, lm.processor, lm.tokenizer, is_vlm=lm.is_vlm, rollout_dtype=torch.bfloat16)
    assert next(bf16.model.parameters()).device.type == "cuda"
    assert len(bf16.generate(prompts, greedy).completion_ids) == 2 * len(prompts)


def test_trainer_one_process_with_the_paper_settings_on_the_gpu(tmp_path):
    """bf16 weights (fp32 master copies), activation checkpointing, KL to a reference, mixed text/image data."""
    from phaserl.config import load_recipe
    from phaserl.curriculum import run_curriculum

    rec = load_recipe(
        ROOT / "recipes/smoke_tiny.yaml",
        [
            "stages.*.steps=2",
            "model.dtype=bfloat16",
            "model.gradient_checkpointing=true",
            "algo.kl_coef=0.01",
            "algo.mini_batches=2",
            "algo.micro_batch_size=2",
            "logging.progress=false",
        ],
    )
    finals = run_curriculum(rec, tmp_path / "run")
    assert all((f / "COMPLETE").exists() for f in finals)
    rows = [json.loads(x) for x in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if r.get("step", 0) > 0 and not r.get("final")]
    assert len(steps) == 6 and all(r["kl"] == r["kl"] for r in steps)
    from transformers import AutoModelForImageTextToText

    start = AutoModelForImageTextToText.from_pretrained(finals[0])
    end = AutoModelForImageTextToText.from_pretrained(finals[-1])
    moved = [
        n for (n, a), (_, b) in zip(start.named_parameters(), end.named_parameters()) if not torch.equal(a, b)
    ]
    assert moved


def test_fp32_master_weights_take_small_updates_on_the_gpu():
    from phaserl.models import load_model

    lm = load_model("tiny:llama", dtype="bfloat16", trainable_dtype="float32")
    model = lm.model.to("cuda").train()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.AdamW(model.parameters(), lr=1e-6)
    ids = torch.tensor([[1, 5, 9, 14, 3, 7]], device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        model(input_ids=ids, labels=ids).loss.backward()
    opt.step()
    changed = [n for n, p in model.named_parameters() if p.grad is not None and not torch.equal(p, before[n])]
    assert len(changed) == sum(1 for p in model.parameters() if p.grad is not None)


def test_eval_runs_on_the_gpu(tmp_path):
    from phaserl.eval.runner import _load_engine

    engine, is_vlm = _load_engine("tiny:qwen2_5_vl", "hf", batch_size=4, dtype="float32", seed=0)
    assert engine.device.type == "cuda" and is_vlm


def test_data_tools_load_their_model_on_the_gpu():
    from phaserl.data.tools._io import make_engine

    engine = make_engine("tiny:llama")
    assert engine.device.type == "cuda"
