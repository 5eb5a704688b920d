"""GRPO steps on the device torch sees (a GPU where there is one), through phaserl's public API, with the paper
recipes' settings: bf16 weights with fp32 master copies, activation checkpointing, KL to a reference model.

Cases (random weights; what is measured is speed, not learning):
  text  a SmolLM2-135M-shaped Llama (576 hidden, 30 layers, 9/3 heads, 49k vocabulary), arithmetic prompts
  vlm   the tiny Qwen2.5-VL of the tests, one 56x56 image per prompt
Work per step: B=8 prompts x G=8 samples, up to 128 new tokens, HF engine (bf16 sampling copy).

    python benchmarks/gpu_grpo.py [--steps 20] [--cases text,vlm] [--out /tmp/gpu_grpo]

Prints one line per case: median and first step time, generation and update time, generated tokens/s.
The SmolLM2-shaped model is built from $PHASERL_CACHE/models/smollm2-shape (config and tokenizer; `python
benchmarks/gpu_grpo.py --prepare` writes it where the SmolLM2 tokenizer is at hand), with weights drawn here.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path


def shape_folder() -> Path:
    from phaserl.models import cache_dir

    return cache_dir() / "models" / "smollm2-shape"


def prepare() -> Path:
    """Config and tokenizer of a SmolLM2-135M-shaped Llama (no weights: a few MB to carry)."""
    from transformers import LlamaConfig

    from phaserl.testing.tiny import smollm2_tokenizer

    tok = smollm2_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        max_position_embeddings=2048,
        rope_theta=100000.0,
        rms_norm_eps=1e-5,
        tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tok.pad_token_id,
    )
    out = shape_folder()
    out.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def random_model(out: Path) -> str:
    """A model folder with random weights of the prepared shape."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    src = shape_folder()
    if not (src / "config.json").exists():
        sys.exit(
            f"{src} is missing: run `python benchmarks/gpu_grpo.py --prepare` where the SmolLM2 tokenizer is"
        )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(src))
    model.generation_config.eos_token_id = model.config.eos_token_id
    model.generation_config.pad_token_id = model.config.pad_token_id
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(src).save_pretrained(out)
    return str(out)


def recipe(model: str, data: dict, view: str, steps: int) -> dict:
    return {
        "name": "gpu_grpo",
        "seed": 0,
        "model": {"name": model, "dtype": "bfloat16", "gradient_checkpointing": True},
        "template": "think_answer",
        "prompts_per_step": 8,
        "rewards": [{"name": "format", "weight": 0.5}, {"name": "accuracy", "weight": 1.0}],
        "rollout": {"group_size": 8, "max_new_tokens": 128, "temperature": 1.0, "batch_size": 64},
        "algo": {"advantage": "grpo", "kl_coef": 0.01, "micro_batch_size": 16},
        "optim": {"lr": 1e-6},
        "checkpoint": {"every": 1000},
        "logging": {"tensorboard": False, "progress": False},
        "stages": [{"name": "bench", "view": view, "steps": steps, "data": [data]}],
    }


def run_case(name: str, steps: int, out: Path) -> dict:
    from phaserl.config import recipe_from_dict
    from phaserl.curriculum import run_curriculum

    if name == "text":
        model = random_model(out / "model")
        rec = recipe(model, {"generator": "arithmetic", "generator_args": {"n": 512}}, "text", steps)
    else:
        rec = recipe(
            "tiny:qwen2_5_vl",
            {"generator": "arithmetic_vl", "generator_args": {"n": 512, "image_size": [56, 56]}},
            "image",
            steps,
        )
    t0 = time.perf_counter()
    run_curriculum(recipe_from_dict(rec), out / "run", fresh=True)
    wall = time.perf_counter() - t0
    rows = [json.loads(x) for x in (out / "run/metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if r.get("step", 0) > 0 and not r.get("final")]
    med = lambda k: statistics.median(r[k] for r in rows)  # noqa: E731
    return {
        "case": name,
        "steps": len(rows),
        "wall_s": wall,
        "first_step_s": rows[0]["time/step"],
        "step_s": med("time/step"),
        "generate_s": med("time/generate"),
        "update_s": med("time/update"),
        "logp_s": med("time/logp"),
        "tokens_per_s": med("tokens_per_s"),
        "response_length": med("response_length/mean"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--cases", default="text,vlm")
    ap.add_argument("--out", type=Path, default=Path("/tmp/gpu_grpo"))
    ap.add_argument(
        "--prepare", action="store_true", help="write the SmolLM2-shaped config and tokenizer, then exit"
    )
    args = ap.parse_args()
    if args.prepare:
        print(f"prepared {prepare()}")
        return
    import torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"
    print(f"device: {device}; torch {torch.__version__}")
    for case in args.cases.split(","):
        r = run_case(case, args.steps, args.out / case)
        print(
            f"{r['case']}: {r['steps']} steps in {r['wall_s']:.0f}s; step {r['step_s']:.2f}s median "
            f"(first {r['first_step_s']:.2f}s): generate {r['generate_s']:.2f}s, log-probs {r['logp_s']:.2f}s, "
            f"update {r['update_s']:.2f}s; {r['tokens_per_s']:.0f} generated tok/s, "
            f"mean response {r['response_length']:.0f} tokens",
            flush=True,
        )
        print("json " + json.dumps(r), flush=True)


if __name__ == "__main__":
    main()
