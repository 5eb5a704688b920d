"""One stage of rule-based RL, read top to bottom.

    for each step:
      1. draw B prompts from the stage's mixture (a resumable cursor)
      2. generate G samples per prompt and score them with the rewards   (collect.py)
      3. advantages from the group rewards                                 (algo/advantages.py)
      4. policy update: PPO-clip / GSPO loss, optional KL                  (update.py)
      5. log, evaluate, checkpoint
Every step reseeds all RNGs from (seed, stage, step), so a resumed run repeats exactly what an
uninterrupted one would have done.
"""

from __future__ import annotations

import math
import random
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from phaserl.checkpoint import (
    gather_states,
    latest_checkpoint,
    load_trainer_state,
    prune_checkpoints,
    save_checkpoint,
    save_folder,
    save_model,
)
from phaserl.collect import collect, prompt_token_counter, step_advantages
from phaserl.config import Recipe, Stage
from phaserl.data.mixture import Mixture, derive_seed
from phaserl.data.render import render
from phaserl.data.sources import load_examples
from phaserl.distributed import is_sharded
from phaserl.logs import MetricsLog
from phaserl.models import LoadedModel, load_model
from phaserl.rewards.verify import get_verifier
from phaserl.schedule import make_scheduler
from phaserl.stage_critic import StageCritic, setup_critic
from phaserl.stats import step_metrics
from phaserl.update import UpdateInputs, memory_probe, update_policy


class Interrupted(Exception):
    """SIGTERM / Ctrl-C: a checkpoint was saved; rerun the same command to resume."""


@dataclass
class StopFlag:
    """Set by SIGTERM/SIGINT; the loop saves a checkpoint at the next step boundary and stops."""

    signum: int | None = None
    previous: dict = field(default_factory=dict)

    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self.previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass

    def _handle(self, signum, frame) -> None:
        if self.signum is not None:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.signum = signum
        print(f"\nsignal {signum}: finishing this step, saving a checkpoint, then stopping", flush=True)

    def restore(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


@dataclass
class RunContext:
    recipe: Recipe
    out_dir: Path
    accelerator: object
    log: MetricsLog
    stop: StopFlag
    global_step: int = 0


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_mixture(stage: Stage, recipe: Recipe, log=print) -> Mixture:
    datasets = []
    for spec in stage.data:
        examples = load_examples(spec, skip_bad_rows=recipe.skip_bad_rows, log=log)
        datasets.append((spec.name, examples, spec.weight))
    return Mixture(datasets, seed=recipe.seed, stage=stage.index)


def stage_steps(stage: Stage, n_examples: int) -> int:
    if stage.steps is not None:
        return stage.steps
    return max(1, math.ceil(stage.epochs * n_examples / stage.prompts_per_step))


def make_engine(stage: Stage, lm: LoadedModel, model):
    r = stage.rollout
    if r.engine == "vllm":
        from phaserl.rollout.vllm import VLLMEngine  # optional extra, imported only when chosen

        engine = VLLMEngine.from_model(model, lm, **r.vllm)
        return engine
    from phaserl.rollout.choice import local_engine  # hf or cpu (auto: cpu when the policy is on the CPU)

    return local_engine(r.engine, model, lm.processor, lm.tokenizer, is_vlm=lm.is_vlm, batch_size=r.batch_size,
                        autocast_bf16=False, rollout_dtype=torch.bfloat16 if r.bf16 else None,
                        lean_decode=r.lean_decode, cpu_kernels=r.cpu_kernels)


@torch.no_grad()
def logp_no_grad(model, lm: LoadedModel, prompts, completion_ids, temperature, autocast, device, micro: int,
                 dummy_vision: dict | None = None):
    """Per-row log-probs [N][T_i], without gradients (old policy or reference). With `dummy_vision` (a sharded
    VLM policy), a text-only micro-batch runs the vision tower on a blank image like the update does, so every
    rank joins the same all-gathers."""
    from phaserl.policy import rows_logp
    from phaserl.update import vision_context

    out = []
    for i in range(0, len(completion_ids), micro):
        rows = completion_ids[i:i + micro]
        with vision_context(model, dummy_vision, prompts[i:i + micro]):
            logp, _ = rows_logp(model, lm.processor, prompts[i:i + micro], rows, lm.is_vlm,
                                lm.tokenizer.pad_token_id, temperature, autocast, device)
        logp = logp.float().cpu()
        out.extend(logp[j, :len(c)].clone() for j, c in enumerate(rows))
    return out


@dataclass
class StageRun:
    """Everything one stage trains with, built by `setup_stage`."""

    lm: LoadedModel
    model: object  # the prepared (DDP / FSDP) policy
    optimizer: object
    scheduler: object
    engine: object
    ref: object | None
    mixture: Mixture
    stage: Stage  # per-rank view of the stage (prompts_per_step split over ranks)
    steps: int
    start: int
    stage_dir: Path
    dummy_vision: dict | None
    vision_calls: object | None  # distributed.CallCounter on the vision tower (multi-process VLM runs)
    critic: StageCritic | None = None  # PPO's value model (algo.advantage: gae)


def setup_stage(ctx: RunContext, stage: Stage, init_weights: str) -> StageRun:
    """Load the policy (fp32 master weights), data, optimizer and scheduler; resume; prepare for the
    accelerator; build the rollout engine and the reference model on the policy's device."""
    recipe, acc = ctx.recipe, ctx.accelerator
    _check_backend(acc, recipe)
    stage_dir = ctx.out_dir / "stages" / stage.dirname
    resume = latest_checkpoint(stage_dir)
    mcfg = recipe.model
    adapter = str(resume) if resume and (resume / "adapter_config.json").exists() else None
    lm = load_model(init_weights if adapter or not resume else str(resume), dtype=mcfg.dtype,
                    trust_remote_code=mcfg.trust_remote_code, freeze_vision=mcfg.freeze_vision, lora=mcfg.lora,
                    adapter=adapter, gradient_checkpointing=mcfg.gradient_checkpointing,
                    attn_implementation=mcfg.attn_implementation, trainable_dtype="float32")
    lm.tokenizer.padding_side = "left"
    mixture = build_mixture(stage, recipe, log=print if acc.is_main_process else (lambda *_: None))
    steps = stage_steps(stage, len(mixture))
    lm.model.train()
    params = [p for p in lm.model.parameters() if p.requires_grad]
    # fused: one vectorised kernel over all tensors; the same AdamW math. Single-process runs only: sharded
    # back ends bring their own parameter types.
    optimizer = torch.optim.AdamW(params, lr=stage.optim.lr, betas=stage.optim.betas,
                                  weight_decay=stage.optim.weight_decay, fused=acc.num_processes == 1 or None)
    scheduler = make_scheduler(optimizer, stage.optim, steps)
    model, optimizer = acc.prepare(lm.model, optimizer)
    start = 0
    if resume:  # after prepare: the optimizer state lands on the parameters' device (and shards, under FSDP)
        state = load_trainer_state(resume, model, optimizer, scheduler)
        mixture.load_state_dict(state["data"])
        start = state["step"]
        if acc.is_main_process:
            print(f"[{stage.dirname}] resuming from {resume} (step {start}/{steps})")
    world = acc.num_processes
    engine = make_engine(stage, lm, model if is_sharded(model) else acc.unwrap_model(model))
    ref = _reference(init_weights, mcfg, acc.device) if stage.algo.kl_coef > 0 else None
    dummy, calls = None, None
    if lm.is_vlm and world > 1:
        from phaserl.distributed import CallCounter, dummy_vision_inputs, vision_tower

        dummy = dummy_vision_inputs(lm.processor)
        calls = CallCounter(vision_tower(model))
    critic = setup_critic(acc, stage, recipe, init_weights, resume, derive_seed(recipe.seed, stage.index, 0), dummy,
                          steps)
    return StageRun(lm=lm, model=model, optimizer=optimizer, scheduler=scheduler, engine=engine, ref=ref, critic=critic,
                    mixture=mixture, stage=_per_rank(stage, world), steps=steps, start=start, stage_dir=stage_dir,
                    dummy_vision=dummy, vision_calls=calls)


def run_stage(ctx: RunContext, stage: Stage, init_weights: str) -> Path:
    """Train one stage from `init_weights` (or its latest checkpoint); returns its final/ folder."""
    recipe, acc = ctx.recipe, ctx.accelerator
    run = setup_stage(ctx, stage, init_weights)
    lm, model, engine, stage = run.lm, run.model, run.engine, run.stage
    ctx.log.truncate_after(stage.index, run.start)
    ctx.global_step = _global_step(ctx, stage, run.start)
    if run.start == 0 and stage.eval.data and stage.eval.at_start and acc.is_main_process:
        row = {"stage": stage.name, "stage_index": stage.index, "step": 0, "global_step": ctx.global_step,
               **_evaluate(engine, stage, recipe)}
        ctx.log.log(row, ctx.global_step)
        print(f"[{stage.dirname}] before training: {_eval_brief(row)}")
    if run.start < run.steps and any(r.name == "accuracy" for r in stage.rewards):
        get_verifier().wait_ready()  # its workers start here, not inside the first step's scoring
    if stage.optim.memory_probe and acc.num_processes == 1 and run.start < run.steps:
        _probe(acc, model, run.optimizer, lm, stage, run.mixture)
    bar = _progress(ctx, stage, run.start, run.steps)
    for step in range(run.start + 1, run.steps + 1):
        t0 = time.perf_counter()
        seed = derive_seed(recipe.seed, stage.index, step)
        seed_all(seed)
        # 1-2. draw prompts, generate G samples each, score them
        r = collect(engine, _drawer(acc, run.mixture), stage, seed, recipe.unparseable_gold,
                    any_rank=_any_rank(acc), prompt_tokens=prompt_token_counter(lm.processor, lm.is_vlm))
        # 3. old-policy / reference log-probs and values, then advantages (KL in the reward, GAE: collect.py)
        ins, values, t_lp = _logps(run, r, acc.device)
        ins.adv, returns = step_advantages(r, stage.algo, stage.critic, ins.old_logp or r.completions.logp,
                                           ins.ref_logp, values)
        # 4. policy update (and the critic's), then the rollout engine samples from the new weights
        constant = float(stage.rollout.max_new_tokens) if stage.algo.aggregation == "constant" else None
        upd = update_policy(acc, model, run.optimizer, run.scheduler, lm.processor, lm.is_vlm,
                            lm.tokenizer.pad_token_id, ins, stage.algo, stage.optim, stage.rollout.temperature,
                            constant, seed)
        if run.critic is not None:
            upd.update(run.critic.update(acc, lm.processor, ins.prompts, ins.completion_ids, values, returns,
                                         lm.tokenizer.pad_token_id, stage.algo, stage.optim, seed, r.skipped_rows()))
        engine.sync_weights(model if is_sharded(model) else acc.unwrap_model(model))
        acc.wait_for_everyone()  # no rank samples before every rank's weights (or rank 0's push) are in
        # 5. log, evaluate, checkpoint
        ctx.global_step += 1
        row = step_metrics(stage, step, r, ins.adv, upd, t_lp, time.perf_counter() - t0, run.scheduler, acc)
        row["global_step"] = ctx.global_step
        row.update(_vision_balance(acc, run.vision_calls, r))
        if stage.eval.every and step % stage.eval.every == 0:
            row.update(_evaluate(engine, stage, recipe))
        if acc.is_main_process:
            ctx.log.log(row, ctx.global_step)
            if any(k.startswith("eval/") for k in row):
                bar.write(f"[{stage.dirname}] step {step}: {_eval_brief(row)}")
            ctx.log.samples(stage.dirname, step, _samples(r, recipe.logging.samples_per_step))
        bar.update(1)
        bar.set_postfix(reward=f"{row['reward/mean']:.3f}", acc=f"{row.get('reward/accuracy', float('nan')):.2f}")
        stopping = ctx.stop.signum is not None
        if step % recipe.checkpoint.every == 0 or stopping:
            _save(ctx, run.stage_dir / f"checkpoint-{step}", run, step)
        if stopping and step < run.steps:
            bar.close()
            raise Interrupted(f"stopped at stage {stage.dirname} step {step}; checkpoint saved in {run.stage_dir}")
    bar.close()
    return _finish(ctx, run)


def _logps(run: StageRun, r, device) -> tuple[UpdateInputs, list | None, float]:
    """The update's inputs with the old-policy and reference log-probs it needs, the critic's values (PPO with
    GAE) and the time they took."""
    stage, lm = run.stage, run.lm
    ins = UpdateInputs(prompts=r.row_prompts, completion_ids=r.completions.completion_ids, adv=None,
                       truncated=r.completions.truncated, dummy_vision=run.dummy_vision)
    t0 = time.perf_counter()
    args = (lm, ins.prompts, ins.completion_ids, stage.rollout.temperature, stage.optim.bf16_autocast, device,
            stage.algo.micro_batch_size)
    if stage.algo.ppo_epochs > 1 or stage.algo.mini_batches > 1:
        ins.old_logp = logp_no_grad(run.model, *args, dummy_vision=run.dummy_vision)
    if run.ref is not None:
        ins.ref_logp = logp_no_grad(run.ref, *args)  # the reference is a plain module: no collectives
    values = None
    if run.critic is not None:
        values = run.critic.values(lm.processor, ins.prompts, ins.completion_ids, lm.tokenizer.pad_token_id,
                                   stage.optim.bf16_autocast, device)
    return ins, values, time.perf_counter() - t0


def _drawer(acc, mixture: Mixture):
    """draw(k): this rank's next k examples. Every rank advances the shared cursor by the sum of all ranks' k
    (they differ under dynamic sampling) and takes its own block, so cursors never diverge."""
    world, rank = acc.num_processes, acc.process_index
    if world == 1:
        return mixture.next_batch

    def draw(k: int):
        ks = acc.gather(torch.tensor([k], device=acc.device)).tolist()  # [world]
        batch = mixture.next_batch(sum(ks))
        offset = sum(ks[:rank])
        return batch[offset:offset + k]

    return draw


def _any_rank(acc):
    """any_rank(flag): True on every rank when the flag is True on any rank (one all-gather)."""
    if acc.num_processes == 1:
        return lambda flag: bool(flag)
    return lambda flag: bool(acc.gather(torch.tensor([int(bool(flag))], device=acc.device)).max())


def _vision_balance(acc, counter, r) -> dict:
    """Vision-tower forwards and image prompts this step, min and max over ranks. The forwards must be equal (or
    a sharded run hangs) whatever the images: a rank with none runs the dummy pass."""
    if counter is None:
        return {}
    images = sum(1 for p in r.prompts if p.images)
    both = acc.gather(torch.tensor([[counter.reset(), images]], device=acc.device))  # [world, 2]
    lo, hi = both.min(0).values.tolist(), both.max(0).values.tolist()
    return {"dist/vision_forwards_min": lo[0], "dist/vision_forwards_max": hi[0],
            "dist/image_prompts_min": lo[1], "dist/image_prompts_max": hi[1]}


def _finish(ctx: RunContext, run: StageRun) -> Path:
    """Final evaluation, the final/ folder (a plain transformers folder) and, under DDP, the replica check."""
    acc, stage = ctx.accelerator, run.stage
    final = run.stage_dir / "final"
    same = _check_replicas(acc, run.model, ctx, stage) if acc.num_processes > 1 else True
    if acc.is_main_process and stage.eval.data:
        row = {"stage": stage.name, "stage_index": stage.index, "step": run.steps, "final": True,
               "global_step": ctx.global_step, **_evaluate(run.engine, stage, ctx.recipe)}
        ctx.log.log(row, ctx.global_step)
        print(f"[{stage.dirname}] after training: {_eval_brief(row)}")
    weights, _ = gather_states(run.model, None)  # collective under FSDP
    if acc.is_main_process:
        base = acc.unwrap_model(run.model)
        def write(tmp: Path) -> None:
            save_model(tmp, base, run.lm.processor, state_dict=weights)
            if run.critic is not None:  # the next stage's critic starts from it
                run.critic.save(tmp)

        save_folder(final, write)
    acc.wait_for_everyone()
    if not same:
        raise RuntimeError(f"data-parallel replicas diverged in stage {stage.name} (final/ holds rank 0's "
                           "weights); see metrics.jsonl")
    return final


def _check_backend(acc, recipe: Recipe) -> None:
    """The engines phaserl's update is built and tested for: one process, DDP, FSDP2."""
    kind = str(getattr(acc, "distributed_type", "NO"))
    if "DEEPSPEED" in kind:
        raise ValueError("DeepSpeed is not supported by phaserl's trainer (its engine steps the optimizer on its "
                         "own accumulation boundaries); use configs/accelerate/fsdp2.yaml for sharded training")
    if "FSDP" in kind and recipe.model.lora:
        raise ValueError("LoRA under FSDP is not supported yet; use configs/accelerate/ddp.yaml for LoRA")


def _per_rank(stage: Stage, world: int) -> Stage:
    """prompts_per_step is global: each of `world` data-parallel ranks takes an equal share."""
    if world == 1:
        return stage
    if stage.prompts_per_step % world:
        raise ValueError(f"stage {stage.name}: prompts_per_step={stage.prompts_per_step} does not split over "
                         f"{world} processes")
    local = stage.model_copy(update={"prompts_per_step": stage.prompts_per_step // world})
    if local.prompts_per_step * local.rollout.group_size % local.algo.mini_batches:
        raise ValueError(f"stage {stage.name}: per-process samples do not split into {local.algo.mini_batches} "
                         "mini-batches")
    return local


@torch.no_grad()
def _check_replicas(acc, model, ctx: RunContext, stage: Stage) -> bool:
    """DDP replicas must hold identical weights (a mismatch is a bug worth stopping for); logged either way.
    Sharded parameters are not replicas: FSDP has nothing to compare (logged as not checked)."""
    if is_sharded(model):
        if acc.is_main_process:
            ctx.log.log({"stage": stage.name, "stage_index": stage.index, "step": -1, "final": True,
                         "replicas": acc.num_processes, "replicas_checked": False}, ctx.global_step)
        return True
    params = list(acc.unwrap_model(model).parameters())
    total = torch.zeros(2, dtype=torch.float64, device=params[0].device)
    for p in params:
        total[0] += p.detach().double().sum()
        total[1] += p.detach().double().abs().sum()
    sums = acc.gather(total.to(acc.device)[None]).cpu()  # [world, 2]
    same = bool((sums == sums[0]).all())
    if acc.is_main_process:
        ctx.log.log({"stage": stage.name, "stage_index": stage.index, "step": -1, "final": True,
                     "replicas": acc.num_processes, "replicas_identical": same}, ctx.global_step)
        if not same:
            print(f"[{stage.dirname}] data-parallel replicas diverged: {sums.tolist()}")
    return same


def _probe(acc, model, optimizer, lm: LoadedModel, stage: Stage, mixture: Mixture) -> None:
    """update.memory_probe on the stage's first example, with micro-batches the size of a step's; prints what it ran."""
    t0 = time.perf_counter()
    prompt = render(mixture.examples[0][0], stage.view, stage.template)
    rows, passes = memory_probe(acc, model, optimizer, lm.processor, lm.is_vlm, lm.tokenizer.pad_token_id, prompt,
                                stage.algo, stage.optim, stage.rollout.max_new_tokens, stage.rollout.temperature,
                                stage.prompts_per_step * stage.rollout.group_size)
    if acc.is_main_process:
        micro = "two micro-batches" if passes == 2 else "one micro-batch"
        print(f"[{stage.dirname}] memory probe: {micro} of {rows} rows x {stage.rollout.max_new_tokens} tokens "
              f"and the optimizer state in {time.perf_counter() - t0:.1f}s")


def _global_step(ctx: RunContext, stage: Stage, start: int) -> int:
    from phaserl.logs import read_metrics

    done = [r for r in read_metrics(ctx.out_dir) if r.get("stage_index", 0) < stage.index and "global_step" in r]
    return (max(r["global_step"] for r in done) if done else 0) + start


def _reference(init_weights: str, mcfg, device):
    """The frozen reference policy, in the recipe's dtype, on the policy's device. Unsharded on every rank: its
    forwards then issue no collective."""
    ref = load_model(init_weights, dtype=mcfg.dtype, trust_remote_code=mcfg.trust_remote_code,
                     attn_implementation=mcfg.attn_implementation).model
    ref.eval().requires_grad_(False)
    return ref.to(device)


def _save(ctx, folder: Path, run: StageRun, step: int) -> None:
    """A resumable checkpoint. Under FSDP every rank takes part in gathering the full weights and optimizer
    state; rank 0 writes them."""
    acc = ctx.accelerator
    weights, optim_state = gather_states(run.model, run.optimizer)
    if acc.is_main_process:
        state = {"stage_index": run.stage.index, "stage": run.stage.name, "step": step,
                 "data": run.mixture.state_dict(), "seed": ctx.recipe.seed, "global_step": ctx.global_step,
                 "world_size": acc.num_processes}
        save_checkpoint(folder, model=acc.unwrap_model(run.model), processor=run.lm.processor,
                        optimizer_state=optim_state, scheduler=run.scheduler, state=state, state_dict=weights,
                        extra=run.critic.save if run.critic is not None else None)
        prune_checkpoints(run.stage_dir, ctx.recipe.checkpoint.keep_last)
    acc.wait_for_everyone()


def _samples(r, k: int) -> list[dict]:
    from phaserl.samples import sample_rows  # the report's rollout-browser rows

    return sample_rows(r, k)


def _evaluate(engine, stage: Stage, recipe: Recipe) -> dict:
    from phaserl.train_eval import evaluate_greedy

    return evaluate_greedy(engine, stage, recipe)


def _eval_brief(row: dict) -> str:
    parts = [f"{k[5:]}={v:.3f}" for k, v in row.items() if k.startswith("eval/") and isinstance(v, float)]
    return " ".join(parts) or "no eval data"


def _progress(ctx, stage, start, steps):
    from tqdm import tqdm

    return tqdm(total=steps, initial=start, desc=f"stage {stage.dirname}", dynamic_ncols=True,
                disable=not (ctx.recipe.logging.progress and ctx.accelerator.is_main_process))

