"""Run a recipe's stages in order; each starts from the previous stage's final weights.

Resume is the same command on the same output folder: finished stages (a complete final/) are skipped, the
running stage continues from its latest complete checkpoint, with its data cursor and per-step RNG seeds.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml

from phaserl.checkpoint import is_complete, latest_checkpoint
from phaserl.config import Recipe, Stage, resolve
from phaserl.logs import MetricsLog


def stage_init(recipe: Recipe, stages: list[Stage], k: int, out_dir: Path) -> str:
    """Weights a stage starts from: its init_from, else the previous stage's final/, else the recipe model."""
    if stages[k].init_from:
        return stages[k].init_from
    if k == 0:
        return recipe.model.name
    return str(out_dir / "stages" / stages[k - 1].dirname / "final")


def _write_recipe(recipe: Recipe, out_dir: Path) -> None:
    text = yaml.safe_dump(json.loads(recipe.model_dump_json()), sort_keys=False)
    path = out_dir / "recipe.resolved.yaml"
    if path.exists() and path.read_text() != text:
        print(
            f"note: the recipe differs from the one this run started with ({path}); continuing with the new one"
        )
        path.with_suffix(".previous.yaml").write_text(path.read_text())
    path.write_text(text)


def run_curriculum(recipe: Recipe, out_dir: Path, *, fresh: bool = False) -> list[Path]:
    """Train every stage; returns the final/ folders. Raises trainer.Interrupted after a signal."""
    from transformers.utils import logging as hf_logging

    from phaserl.rollout.choice import resolve_engine
    from phaserl.runtime import prepare_cpu_engine
    from phaserl.trainer import RunContext, StopFlag, run_stage

    hf_logging.disable_progress_bar()  # per-file load/save bars drown the training progress
    out_dir = Path(out_dir)
    stages = resolve(recipe)
    policy_device = "cuda" if _has_accelerator() else "cpu"  # where make_accelerator puts the policy
    if any(resolve_engine(s.rollout.engine, policy_device) == "cpu" for s in stages):
        prepare_cpu_engine()  # before the first tensor: reuse freed logits buffers instead of page-faulting them
    accelerator = make_accelerator()
    if fresh and accelerator.is_main_process and out_dir.exists():
        shutil.rmtree(out_dir)
    accelerator.wait_for_everyone()
    out_dir.mkdir(parents=True, exist_ok=True)
    if accelerator.is_main_process:
        _write_recipe(recipe, out_dir)
    log = MetricsLog(
        out_dir,
        tensorboard=recipe.logging.tensorboard,
        wandb=recipe.logging.wandb,
        run_name=recipe.name,
        enabled=accelerator.is_main_process,
        config=json.loads(recipe.model_dump_json()),
    )
    stop = StopFlag()
    stop.install()
    ctx = RunContext(recipe=recipe, out_dir=out_dir, accelerator=accelerator, log=log, stop=stop)
    finals = []
    try:
        for k, stage in enumerate(stages):
            final = out_dir / "stages" / stage.dirname / "final"
            if is_complete(final):
                if accelerator.is_main_process:
                    print(f"[{stage.dirname}] already finished: {final}")
            else:
                if accelerator.is_main_process:
                    print(
                        f"[{stage.dirname}] view={stage.view} init={stage_init(recipe, stages, k, out_dir)}"
                    )
                try:
                    run_stage(ctx, stage, stage_init(recipe, stages, k, out_dir))
                finally:
                    accelerator.free_memory()  # drop its references to this stage's model and optimizer
            finals.append(final)
    finally:
        stop.restore()
        log.close()
    return finals


def _has_accelerator() -> bool:
    import torch

    return torch.cuda.is_available()


def make_accelerator():
    """The run's Accelerator: on the GPU when there is one. `accelerate launch` with an FSDP config on a machine
    without GPUs gets FSDP2 on the CPU processes (gloo) too, where accelerate itself would fall back to plain
    data parallelism: the sharded path then runs, and is tested, wherever phaserl runs."""
    import os

    from accelerate import Accelerator

    accelerator = Accelerator(cpu=not _has_accelerator())
    fsdp_asked = os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"
    if fsdp_asked and accelerator.num_processes > 1 and str(accelerator.distributed_type) != "FSDP":
        from accelerate import FullyShardedDataParallelPlugin
        from accelerate.utils import DistributedType

        plugin = FullyShardedDataParallelPlugin()  # reads the FSDP_* settings `accelerate launch` exported
        if plugin.fsdp_version != 2:
            raise ValueError("FSDP on CPU processes needs fsdp_version: 2 (configs/accelerate/fsdp2.yaml)")
        from accelerate.state import PartialState

        PartialState().distributed_type = DistributedType.FSDP  # AcceleratorState re-reads it from here
        state = accelerator.state
        state.distributed_type = DistributedType.FSDP
        state.fsdp_plugin = plugin
        if accelerator.mixed_precision != "no":
            plugin.set_mixed_precision(accelerator.mixed_precision)
    return accelerator


def plan(recipe: Recipe, out_dir: Path | None = None) -> str:
    """The resolved plan, printed by `phaserl train --dry-run` (loads data, never a model)."""
    from phaserl.data.schema import DataError, DataMissing
    from phaserl.stage_setup import build_mixture, stage_steps

    stages = resolve(recipe)
    lines = [f"recipe {recipe.name!r}: {len(stages)} stage(s), model {recipe.model.name}, seed {recipe.seed}"]
    total_tokens = 0
    for k, st in enumerate(stages):
        try:
            mix = build_mixture(st, recipe, log=lambda *_: None)
            n_examples, data_line = (
                len(mix),
                "  data: "
                + ", ".join(
                    f"{n} ({len(e)} ex, w={w:g})" for n, e, w in zip(mix.names, mix.examples, mix.weights)
                ),
            )
        except DataMissing as e:  # a file made by a later pipeline step: still show the plan
            n_examples, data_line = (
                0,
                "  data: " + ", ".join(d.name or "?" for d in st.data) + f"  [missing: {e}]",
            )
        except DataError:  # a bad row (file, line, field) or a missing package: the dry run fails on it
            raise
        except Exception as e:  # e.g. a hub dataset on a machine without the hub: still show the plan
            n_examples = 0
            data_line = "  data: " + ", ".join(d.name or "?" for d in st.data) + f"  [not loadable here: {e}]"
        if st.steps is None and n_examples == 0:
            lines.append(
                f"\nstage {k + 1} '{st.name}': {st.epochs} epoch(s) over data that cannot be read here"
            )
            lines.append(data_line)
            continue
        steps = stage_steps(st, n_examples)
        B, G = st.prompts_per_step, st.rollout.group_size
        tokens = steps * B * G * st.rollout.max_new_tokens
        total_tokens += tokens
        status = ""
        if out_dir is not None:
            sdir = Path(out_dir) / "stages" / st.dirname
            ck = latest_checkpoint(sdir)
            status = " [done]" if is_complete(sdir / "final") else (f" [resume from {ck.name}]" if ck else "")
        lines += [
            f"\nstage {k + 1} '{st.name}'{status}: view={st.view} template="
            f"{st.template if isinstance(st.template, str) else 'custom'} init={stage_init(recipe, stages, k, Path(out_dir or 'OUT'))}",
            data_line,
            f"  steps={steps} B={B} G={G} N={B * G} samples/step; epochs over data = {steps * B / max(1, n_examples):.2f}",
            f"  rollout: engine={st.rollout.engine} max_new_tokens={st.rollout.max_new_tokens} "
            f"T={st.rollout.temperature} top_p={st.rollout.top_p}",
            f"  algo: {st.algo.advantage} ratio={st.algo.ratio} clip=({st.algo.eps_low},{st.algo.eps_high}) "
            f"agg={st.algo.aggregation} kl={st.algo.kl_coef} ({st.algo.kl_estimator}, in {st.algo.kl_in}) "
            f"dynamic_sampling={st.algo.dynamic_sampling}",
            f"  update: {st.algo.ppo_epochs} epoch(s) x {st.algo.mini_batches} mini-batch(es) of "
            f"{B * G // st.algo.mini_batches} samples, micro-batch {st.algo.micro_batch_size} -> "
            f"{st.algo.ppo_epochs * st.algo.mini_batches} optimizer steps per step",
            f"  optim: lr={st.optim.lr:g} schedule={st.optim.schedule} warmup={st.optim.warmup_ratio}",
            "  rewards: " + " + ".join(f"{r.weight:g} x {r.name}" for r in st.rewards),
            f"  at most {tokens:,} generated tokens (steps x N x max_new_tokens)",
        ]
    lines.append(
        f"\ntotal: at most {total_tokens:,} generated tokens; checkpoint every {recipe.checkpoint.every} steps"
    )
    mem = _memory_line(recipe)
    if mem:
        lines.append(mem)
    _check_eval_sources(stages)
    return "\n".join(lines)


def _check_eval_sources(stages: list[Stage]) -> None:
    """Load every stage's evaluation data once, so a source that cannot be read fails the dry run, not step 1."""
    from phaserl.data.schema import DataError
    from phaserl.data.sources import load_examples

    errors, seen = [], set()
    for st in stages:
        for spec in st.eval.data:
            key = spec.model_dump_json()
            if key in seen:
                continue
            seen.add(key)
            try:
                load_examples(spec, log=lambda *_: None)
            except Exception as e:  # noqa: BLE001 (every failure is reported, with its source)
                errors.append(f"stage {st.index + 1} ('{st.name}') eval data {spec.name}: {e}")
    if errors:
        raise DataError("evaluation data that cannot be read:\n  " + "\n  ".join(errors))


def _memory_line(recipe: Recipe) -> str | None:
    """Per-GPU memory estimates from phaserl.memory's formula (never stops a dry run)."""
    from phaserl.memory import memory_plan

    st = resolve(recipe)[0]
    try:
        return memory_plan(
            recipe.model.name,
            micro_batch=st.algo.micro_batch_size,
            seq_len=1024 + st.rollout.max_new_tokens,  # prompt length: our assumption
            rollout_seqs=st.prompts_per_step * st.rollout.group_size,
            kl=st.algo.kl_coef > 0,
            engine="hf" if st.rollout.engine in ("auto", "cpu") else st.rollout.engine,
        )
    except Exception as e:
        return f"memory estimate unavailable: {e}"
