"""GRPO step time: phaserl against TRL's GRPOTrainer on identical work, side by side, in one invocation.

Work per step, the same for both: B=4 prompts x G=8 samples, at most 64 new tokens at temperature 1, the same
prompts in the same order (phaserl's seeded mixture order, handed to TRL unshuffled), rewards accuracy
+ 0.5 x boxed format (phaserl's reward functions on both sides), GRPO advantages (group std), token-mean PPO-clip loss with eps 0.2, beta (KL) 0, one AdamW step per batch at a
constant lr, gradient clipping at 1.0, no gradient checkpointing. Cases:
  text  SmolLM2-135M-Instruct (phaserl's built-in), arithmetic word prompts with the "boxed" system prompt
  vlm   a Qwen2.5-VL-architecture model: SmolLM2-135M's weights as its text side, a random 4-layer vision
        tower, one 224x224 image per prompt (64 image tokens); built once into the phaserl cache
Each framework runs in its own process (so peak memory is its own); the two take turns one step at a time,
and a process never runs while the other is timing a step. phaserl runs through its public API (recipe dict
-> recipe_from_dict -> run_curriculum) and its times come from OUTPUT/metrics.jsonl; TRL's from a callback.
TRL runs in fp32 (its CPU setting in the issue's baseline); phaserl keeps fp32 master weights and computes in
bf16 (a bf16 copy for sampling, autocast for the update).

    .venv/bin/python benchmarks/grpo_vs_trl.py [--steps 5] [--quick] [--cases text,vlm] [--frameworks trl,phaserl]

The last line printed is `speedup text=X.XX vlm=Y.YY` (phaserl's steps/s over TRL's, per-step medians).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

B, G, MAX_NEW, LR, SEED = 4, 8, 64, 1e-6, 0
REWARDS = [{"name": "accuracy", "weight": 1.0}, {"name": "format_boxed", "weight": 0.5}]
PEAK = {"bf16": 740e9, "fp32": 180e9}  # measured 2048^3 matmul peaks of this 2-core machine (issue 6)
CASES = {
    "text": {"view": "text", "generator": "arithmetic", "generator_args": {"n": 512, "digits": 1, "seed": 0}},
    "vlm": {
        "view": "image+caption",
        "generator": "arithmetic_vl",
        "generator_args": {"n": 512, "digits": 1, "seed": 0, "image_size": [224, 224]},
    },
}


# ---- the VLM case's model ----------------------------------------------------------------------------------


def bench_vlm_path() -> str:
    """Qwen2.5-VL architecture with SmolLM2-135M's text weights and a random 4-layer vision tower (built once)."""
    from phaserl.models import cache_dir

    target = cache_dir() / "models" / "bench--qwen2_5_vl-smollm2-135m"
    if not (target / "config.json").exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".tmp-"))
        _build_vlm(tmp)
        tmp.rename(target)
    return str(target)


def _build_vlm(out: Path) -> None:
    import torch
    from transformers import (
        AutoModelForCausalLM,
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
    )

    from phaserl.models import resolve_model_path
    from phaserl.testing.tiny import _mrope_section, qwen_vl_processor, qwen_vl_tokenizer

    smol = AutoModelForCausalLM.from_pretrained(resolve_model_path("builtin:smollm2-135m-instruct"))
    sc = smol.config
    tok, ids = qwen_vl_tokenizer()
    head_dim = sc.hidden_size // sc.num_attention_heads
    config = Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=len(tok),
            hidden_size=sc.hidden_size,
            intermediate_size=sc.intermediate_size,
            num_hidden_layers=sc.num_hidden_layers,
            num_attention_heads=sc.num_attention_heads,
            num_key_value_heads=sc.num_key_value_heads,
            rms_norm_eps=sc.rms_norm_eps,
            max_position_embeddings=8192,
            rope_parameters={
                "rope_type": "default",
                "rope_theta": sc.rope_parameters["rope_theta"],
                "mrope_section": _mrope_section(head_dim),
            },
            eos_token_id=ids["<|im_end|>"],
            pad_token_id=ids["<|im_end|>"],
            bos_token_id=tok.bos_token_id,
        ),
        vision_config=dict(
            depth=4,
            hidden_size=512,
            intermediate_size=1376,
            num_heads=8,
            out_hidden_size=sc.hidden_size,
            patch_size=14,
            spatial_merge_size=2,
            temporal_patch_size=2,
            window_size=112,
            fullatt_block_indexes=[3],
        ),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    model = Qwen2_5_VLForConditionalGeneration(config)
    text = model.model.language_model
    state = {k[len("model.") :]: v for k, v in smol.state_dict().items() if k.startswith("model.")}
    emb = state.pop("embed_tokens.weight")
    missing, unexpected = text.load_state_dict(state, strict=False)
    assert not unexpected and all(k.endswith(".bias") or k == "embed_tokens.weight" for k in missing), missing
    with torch.no_grad():
        text.embed_tokens.weight[: emb.shape[0]] = emb  # the 4 added vision tokens keep their random rows
        for name, p in text.named_parameters():
            if name.endswith(".bias"):
                p.zero_()  # Qwen2 has q/k/v biases, SmolLM2 none
        # image tokens at the scale of text embeddings (as a trained projector gives), not 4x louder
        scale = float(emb.norm(dim=-1).mean()) / _image_token_norm(model, qwen_vl_processor(tok))
        for p in model.model.visual.merger.mlp[2].parameters():
            p.mul_(scale)
    model.tie_weights()
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|im_end|>"]
    model.save_pretrained(out)
    qwen_vl_processor(tok).save_pretrained(out)


def _image_token_norm(model, processor) -> float:
    """Mean norm of the image tokens the tower gives for one benchmark image."""
    from phaserl.data.render import render

    ex = step_examples("vlm", 1)[0]
    enc = processor(
        text=["<|vision_start|><|image_pad|><|vision_end|>"],
        images=render(ex, "image").images,
        return_tensors="pt",
    )
    feats = model.model.get_image_features(enc["pixel_values"], enc["image_grid_thw"]).pooler_output[0]
    return float(feats.norm(dim=-1).mean())


def model_path(case: str) -> str:
    from phaserl.models import resolve_model_path

    return resolve_model_path("builtin:smollm2-135m-instruct") if case == "text" else bench_vlm_path()


# ---- phaserl -------------------------------------------------------------------------------------------------


def phaserl_recipe(case: str, steps: int, micro: int, model: str | None = None) -> dict:
    c = CASES[case]
    return {
        "name": f"bench-{case}",
        "seed": SEED,
        "model": {"name": model or model_path(case)},
        "template": "boxed",
        "rewards": REWARDS,
        "prompts_per_step": B,
        "rollout": {
            "group_size": G,
            "max_new_tokens": MAX_NEW,
            "temperature": 1.0,
            "top_p": 1.0,
            "bf16": True,
        },
        "algo": {
            "advantage": "grpo",
            "kl_coef": 0.0,
            "eps_low": 0.2,
            "eps_high": 0.2,
            "aggregation": "token-mean",
            "micro_batch_size": micro,
        },
        "optim": {"lr": LR, "max_grad_norm": 1.0, "schedule": "constant", "bf16_autocast": True},
        "checkpoint": {"every": 10**6},
        "logging": {"tensorboard": False, "samples_per_step": 0, "progress": False},
        "stages": [
            {
                "name": "bench",
                "view": c["view"],
                "steps": steps,
                "data": [{"generator": c["generator"], "generator_args": c["generator_args"]}],
            }
        ],
    }


def run_phaserl(conn, case: str, args, out: str) -> None:
    """Train through the public API; a MetricsLog subclass hands the turn back after each logged step."""
    import phaserl.curriculum as curriculum
    from phaserl.config import recipe_from_dict

    class TurnTakingLog(curriculum.MetricsLog):
        def log(self, row: dict, global_step: int) -> None:
            super().log(row, global_step)
            if "time/step" in row:  # after the step's clock stopped, before the next one starts
                conn.send(("step", row["step"]))
                conn.recv()

    curriculum.MetricsLog = TurnTakingLog
    if args.no_skip:
        import phaserl.update_speed

        phaserl.update_speed.SKIP_ZERO_ADV = False
    recipe = recipe_from_dict(phaserl_recipe(case, args.steps, args.micro_batch_size))
    curriculum.run_curriculum(recipe, Path(out), fresh=True)


# ---- TRL -----------------------------------------------------------------------------------------------------


def step_examples(case: str, steps: int):
    """The examples phaserl draws, step by step (its seeded mixture), so TRL sees the same prompts in order."""
    from phaserl.config import recipe_from_dict, resolve
    from phaserl.stage_setup import build_mixture

    recipe = recipe_from_dict(phaserl_recipe(case, steps, 8, model="(data only)"))
    mixture = build_mixture(resolve(recipe)[0], recipe, log=lambda *_: None)
    return [ex for _ in range(steps) for ex in mixture.next_batch(B)]


def run_trl(conn, case: str, args, out: str) -> None:
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from phaserl.data.render import render
    from phaserl.models import load_model
    from phaserl.rewards.combine import RewardSpec, compute_rewards

    view = CASES[case]["view"]
    examples = step_examples(case, args.steps)
    rows = []
    for i, ex in enumerate(examples):
        p = render(ex, view, "boxed")
        messages = [
            {
                "role": m["role"],
                "content": m["content"]
                if isinstance(m["content"], str)
                else next(x["text"] for x in m["content"] if x["type"] == "text"),
            }
            for m in p.messages
        ]
        rows.append({"prompt": messages, "example": i, **({"image": p.images[0]} if p.images else {})})
    lm = load_model(model_path(case), dtype="float32", attn_implementation="sdpa")
    times: dict[str, float] = {"generate": 0.0, "score": 0.0}
    lengths: list[int] = []

    def reward(prompts, completions, completion_ids, example, **_):
        t = time.perf_counter()
        texts = [c[0]["content"] if isinstance(c, list) else c for c in completions]
        specs = [RewardSpec(**r) for r in REWARDS]  # phaserl's weighted total: the same rewards, one function
        out = compute_rewards(texts, [examples[i] for i in example], specs).total
        lengths.extend(len(c) for c in completion_ids)
        groups = [out[i : i + G] for i in range(0, len(out), G)]
        times["informative"] = sum(G for g in groups if len(set(g)) > 1) / len(
            out
        )  # rows with advantage != 0
        times["score"] += time.perf_counter() - t
        return out

    class Turns(TrainerCallback):
        def on_step_begin(self, *a, **k):
            times.update(generate=0.0, score=0.0, t0=time.perf_counter())
            lengths.clear()

        def on_step_end(self, *a, **k):
            step = time.perf_counter() - times["t0"]
            conn.send(
                (
                    "step",
                    {
                        "time/step": step,
                        "time/generate": times["generate"],
                        "time/score": times["score"],
                        "gen_tokens": sum(lengths),
                        "adv/nonzero_frac": times["informative"],
                    },
                )
            )
            conn.recv()

    cfg = GRPOConfig(
        # one generation of B*G samples, then micro-batches of `micro` samples, one optimizer step (as phaserl)
        output_dir=out,
        per_device_train_batch_size=args.micro_batch_size,
        gradient_accumulation_steps=B * G // args.micro_batch_size,
        num_generations=G,
        max_completion_length=MAX_NEW,
        temperature=1.0,
        top_p=1.0,
        top_k=0,
        beta=0.0,
        epsilon=0.2,
        loss_type="dapo",
        scale_rewards="group",
        learning_rate=LR,
        lr_scheduler_type="constant",
        max_grad_norm=1.0,
        max_steps=args.steps,
        seed=SEED,
        shuffle_dataset=False,
        use_cpu=True,
        bf16=False,
        gradient_checkpointing=False,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        log_completions=False,
        dataloader_num_workers=0,
    )
    trainer = GRPOTrainer(
        model=lm.model,
        reward_funcs=[reward],
        args=cfg,
        train_dataset=Dataset.from_list(rows),
        processing_class=lm.processor,
        callbacks=[Turns()],
    )
    generate = trainer._generate_single_turn

    def timed_generate(*a, **k):  # TRL's generation (transformers generate), for the step breakdown
        t = time.perf_counter()
        try:
            return generate(*a, **k)
        finally:
            times["generate"] += time.perf_counter() - t

    trainer._generate_single_turn = timed_generate
    torch.manual_seed(SEED)
    trainer.train()


# ---- processes taking turns ----------------------------------------------------------------------------------


def worker(fn_name: str, conn, case: str, args, out: str) -> None:
    """Wait for the first turn before importing anything heavy; report peak RSS at the end."""
    conn.recv()
    try:
        if (
            fn_name == "phaserl"
        ):  # the CPU engine's allocator settings, before any tensor (as `phaserl train`)
            from phaserl.runtime import prepare_cpu_engine

            prepare_cpu_engine()
        import torch

        torch.set_num_threads(args.threads)
        {"phaserl": run_phaserl, "trl": run_trl}[fn_name](conn, case, args, out)
        conn.send(("done", {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
    except BaseException:
        conn.send(("error", traceback.format_exc()))


def run_case(case: str, args, root: Path) -> dict[str, dict]:
    ctx = mp.get_context("spawn")
    procs = {}
    for fw in args.frameworks:
        parent, child = ctx.Pipe()
        p = ctx.Process(target=worker, args=(fw, child, case, args, str(root / f"{case}-{fw}")), daemon=True)
        p.start()
        procs[fw] = (p, parent)
    steps: dict[str, list] = {fw: [] for fw in procs}
    result: dict[str, dict] = {}
    try:
        for k in range(args.steps + 1):  # the extra turn lets each process finish and report
            order = list(procs) if k % 2 == 0 else list(procs)[::-1]  # alternate who goes first
            for fw in order:
                kind, payload = _turn(case, fw, *procs[fw])
                if kind == "step":
                    steps[fw].append(payload)
                    print(
                        f"  {case:4s} {fw:7s} step {len(steps[fw])} done  (load {os.getloadavg()[0]:.1f})",
                        flush=True,
                    )
                else:
                    result[fw] = payload
                    procs[fw][0].join()
    finally:
        for p, _ in procs.values():
            if p.is_alive():
                p.kill()  # phaserl turns SIGTERM into "checkpoint and stop", which would wait for a turn
    for fw in procs:
        rows = steps[fw] if fw == "trl" else phaserl_rows(root / f"{case}-phaserl")
        result[fw]["steps"] = rows
    return result


def _turn(case: str, fw: str, proc, conn) -> tuple[str, object]:
    """Let one process run until it has finished a step (or the whole run); it alone uses the CPUs meanwhile."""
    conn.send("go")
    try:
        kind, payload = conn.recv()
    except EOFError:
        proc.join(5)
        raise RuntimeError(
            f"{case}/{fw} died (exit code {proc.exitcode}; -9: the out-of-memory killer?)"
        ) from None
    if kind == "error":
        raise RuntimeError(f"{case}/{fw} failed:\n{payload}")
    return kind, payload


def phaserl_rows(out: Path) -> list[dict]:
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if "time/step" in r]


# ---- report --------------------------------------------------------------------------------------------------


def model_sizes(case: str) -> dict[str, int]:
    """Parameters in matmuls per token: decoder body (no embeddings), lm_head, vision tower (per patch)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText

    config = AutoConfig.from_pretrained(model_path(case))
    with torch.device("meta"):
        cls = AutoModelForImageTextToText if case == "vlm" else AutoModelForCausalLM
        model = cls.from_config(config)
    sizes = {"body": 0, "head": 0, "vision": 0}
    for name, p in model.named_parameters():
        if "embed_tokens" in name or p.dim() < 2:
            continue
        sizes["vision" if ".visual." in f".{name}" else "head" if "lm_head" in name else "body"] += p.numel()
    sizes["head"] = (
        sizes["head"] or config.get_text_config().vocab_size * config.get_text_config().hidden_size
    )
    return sizes


def prompt_stats(case: str, steps: int) -> list[dict]:
    """Per step: prompt tokens of the B prompts and vision patches per prompt."""
    from phaserl.data.render import render
    from phaserl.models import load_model
    from phaserl.rollout.encode import encode_prompts

    lm = load_model(model_path(case))
    examples = step_examples(case, steps)
    out = []
    for s in range(steps):
        prompts = [render(ex, CASES[case]["view"], "boxed") for ex in examples[s * B : (s + 1) * B]]
        encs = [encode_prompts(lm.processor, [p], lm.is_vlm) for p in prompts]
        patches = [int(e["image_grid_thw"].prod(-1).sum()) if "image_grid_thw" in e else 0 for e in encs]
        out.append({"prompt_tokens": [int(e["attention_mask"].sum()) for e in encs], "patches": patches})
    return out


def update_flops(sizes: dict, prompts: dict, completion_tokens: float, shared_prefix: bool) -> float:
    """Forward + backward (3x forward) matmul FLOPs of one update; attention scores (~3% here) left out."""
    copies = 1 if shared_prefix else G  # the prompt (and its image) runs once per group or once per sample
    prompt = copies * sum(prompts["prompt_tokens"])
    fwd = 2 * sizes["body"] * (prompt + completion_tokens) + 2 * sizes["head"] * completion_tokens
    fwd += 2 * sizes["vision"] * copies * sum(prompts["patches"])
    return 3 * fwd


def summarise(case: str, result: dict, sizes: dict, prompts: list[dict], skip: bool) -> dict[str, dict]:
    out = {}
    for fw, res in result.items():
        rows = res["steps"]
        step = [r["time/step"] for r in rows]
        gen = [r["time/generate"] for r in rows]
        score = [r["time/score"] for r in rows]
        if fw == "phaserl":
            toks = [r["response_length/mean"] * B * G for r in rows]
            logp = [r["time/logp"] for r in rows]
            update = [r["time/update"] for r in rows]
        else:
            toks = [r["gen_tokens"] for r in rows]
            logp = [0.0] * len(rows)
            update = [s - g - c for s, g, c in zip(step, gen, score)]
        flops = [update_flops(sizes, p, t, fw == "phaserl") for p, t in zip(prompts, toks)]
        if fw == "phaserl" and skip:  # rows with advantage 0 were not computed (whole groups, in practice)
            flops = [f * r["adv/nonzero_frac"] for f, r in zip(flops, rows)]
        med = statistics.median
        out[fw] = {
            "steps": step,
            "step": med(step),
            "informative": med([r["adv/nonzero_frac"] for r in rows]),
            "generate": med(gen),
            "score": med(score),
            "logp": med(logp),
            "update": med(update),
            "gen_tok_s": med([t / g for t, g in zip(toks, gen)]),
            "update_flops": med([f / u for f, u in zip(flops, update)]),
            "peak_rss_mb": res["peak_rss_mb"],
            "mean_len": med([t / (B * G) for t in toks]),
        }
    return out


def print_case(case: str, s: dict) -> None:
    print(
        f"\n{case}: seconds per step (median over {len(next(iter(s.values()))['steps'])} steps, first included)"
    )
    print(
        f"  {'':8s} {'step':>7s} {'generate':>9s} {'score':>6s} {'logp':>5s} {'update':>7s} {'gen tok/s':>9s} "
        f"{'update GFLOP/s':>14s} {'of bf16 peak':>12s} {'peak RSS':>9s} {'mean len':>8s} {'adv!=0':>6s}  steps"
    )
    for fw, r in s.items():
        print(
            f"  {fw:8s} {r['step']:7.2f} {r['generate']:9.2f} {r['score']:6.2f} {r['logp']:5.2f} "
            f"{r['update']:7.2f} {r['gen_tok_s']:9.1f} {r['update_flops'] / 1e9:14.1f} "
            f"{r['update_flops'] / PEAK['bf16']:11.1%} {r['peak_rss_mb']:7.0f}MB {r['mean_len']:8.1f} "
            f"{r['informative']:6.0%}  " + " ".join(f"{x:.1f}" for x in r["steps"])
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=5, help="optimizer steps per framework and case")
    ap.add_argument("--quick", action="store_true", help="2 steps per case: a smoke run, not a measurement")
    ap.add_argument("--cases", default="text,vlm")
    ap.add_argument("--frameworks", default="trl,phaserl")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads in each process")
    ap.add_argument("--micro-batch-size", type=int, default=8, help="samples per forward/backward (both)")
    ap.add_argument("--keep", type=Path, default=None, help="keep run folders here (default: a temp dir)")
    ap.add_argument("--no-skip", action="store_true", help="phaserl computes rows with advantage 0 too")
    ap.add_argument(
        "--omp-wait-policy",
        default="inherit",
        choices=["passive", "active", "inherit"],
        help="OpenMP threads sleep (passive) or spin (active) when idle; inherit: the environment's "
        "setting (unset: the runtime's default, what users get). On a shared, oversubscribed "
        "machine spinning slows both frameworks several-fold: use passive there",
    )
    args = ap.parse_args()
    if args.quick:
        args.steps = 2
    args.frameworks = args.frameworks.split(",")
    if args.omp_wait_policy != "inherit":  # read by each worker's OpenMP runtime when it starts
        os.environ["OMP_WAIT_POLICY"] = args.omp_wait_policy.upper()
    cases = args.cases.split(",")
    print(
        f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; torch threads {args.threads}; "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}; python {sys.version.split()[0]}"
    )
    for case in cases:
        model_path(case)  # build/convert models before any timing
    speedups = {}
    with tempfile.TemporaryDirectory(prefix="grpo-bench-") as tmp:
        root = args.keep or Path(tmp)
        for case in cases:
            t0 = time.perf_counter()
            result = run_case(case, args, root)
            s = summarise(case, result, model_sizes(case), prompt_stats(case, args.steps), not args.no_skip)
            print_case(case, s)
            if "trl" in s and "phaserl" in s:
                speedups[case] = s["trl"]["step"] / s["phaserl"]["step"]
                print(
                    f"  speedup {case}: {speedups[case]:.2f}x steps/s; peak memory phaserl/TRL "
                    f"{s['phaserl']['peak_rss_mb'] / s['trl']['peak_rss_mb']:.2f}; case took "
                    f"{time.perf_counter() - t0:.0f}s"
                )
    print("speedup " + " ".join(f"{c}={speedups.get(c, float('nan')):.2f}" for c in cases))


if __name__ == "__main__":
    main()
