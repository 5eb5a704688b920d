"""One stage of rule-based RL, read top to bottom.

    for each step:
      1. draw B prompts from the stage's mixture (a resumable cursor)
      2. generate G samples per prompt and score them with the rewards   (collect.py)
      3. advantages: old-policy / reference log-probs, critic values       (collect.step_advantages, algo/)
      4. policy update: PPO-clip / GSPO loss, optional KL; the critic's     (update.py, stage_critic.py)
      5. log, evaluate, checkpoint
Every step reseeds all RNGs from (seed, stage, step), so a resumed run repeats exactly what an
uninterrupted one would have done. What the stage trains with is built by stage_setup.setup_stage.
"""

from __future__ import annotations

import random
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from phaserl.checkpoint import gather_states, prune_checkpoints, save_checkpoint, save_folder, save_model
from phaserl.collect import Rollouts, collect, step_advantages
from phaserl.config import Recipe, Stage
from phaserl.data.mixture import derive_seed
from phaserl.distributed import is_sharded
from phaserl.logs import MetricsLog
from phaserl.ranks import replicas_identical, vision_balance
from phaserl.rewards.verify import get_verifier
from phaserl.stage_setup import StageRun, probe_memory, setup_stage
from phaserl.stats import step_metrics
from phaserl.update import UpdateInputs, update_policy


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


def run_stage(ctx: RunContext, stage: Stage, init_weights: str) -> Path:
    """Train one stage from `init_weights` (or its latest checkpoint); returns its final/ folder."""
    run = setup_stage(ctx, stage, init_weights)
    _before_first_step(ctx, run)
    bar = _progress(ctx, run)
    for step in range(run.start + 1, run.steps + 1):
        t0 = time.perf_counter()
        seed = derive_seed(ctx.recipe.seed, stage.index, step)
        seed_all(seed)
        # 1-2. draw prompts, generate G samples each, score them
        r = collect(
            run.engine,
            run.draw,
            run.stage,
            seed,
            ctx.recipe.unparseable_gold,
            any_rank=run.any_rank,
            prompt_tokens=run.prompt_tokens,
        )
        # 3. old-policy / reference log-probs and critic values, then advantages (KL in the reward, GAE)
        ins, values, returns, t_lp = _advantages(run, r)
        # 4. policy update (and the critic's); the rollout engine then samples from the new weights
        upd = _update(ctx, run, r, ins, values, returns, seed)
        # 5. log, evaluate, checkpoint
        _log_and_save(ctx, run, step, r, ins, upd, t_lp, time.perf_counter() - t0, bar)
    bar.close()
    return _finish(ctx, run)


def _before_first_step(ctx: RunContext, run: StageRun) -> None:
    """Logs after the resume point dropped, the global step restored, the stage's "before training" eval, the
    verifier's workers started, the memory probe."""
    stage, acc = run.stage, ctx.accelerator
    ctx.log.truncate_after(stage.index, run.start)
    ctx.global_step = _global_step(ctx, stage, run.start)
    if run.start == 0 and stage.eval.data and stage.eval.at_start and acc.is_main_process:
        row = {
            "stage": stage.name,
            "stage_index": stage.index,
            "step": 0,
            "global_step": ctx.global_step,
            **_evaluate(run.engine, stage, ctx.recipe),
        }
        ctx.log.log(row, ctx.global_step)
        print(f"[{stage.dirname}] before training: {_eval_brief(row)}")
    if run.start < run.steps and any(r.name == "accuracy" for r in stage.rewards):
        get_verifier().wait_ready()  # its workers start here, not inside the first step's scoring
    probe_memory(acc, run)


def _advantages(run: StageRun, r: Rollouts) -> tuple[UpdateInputs, list | None, torch.Tensor | None, float]:
    """The update's inputs with the old-policy and reference log-probs it needs and the advantages; the critic's
    values and returns (PPO with GAE); the time the log-prob and value passes took."""
    stage = run.stage
    ins = UpdateInputs(
        prompts=r.row_prompts,
        completion_ids=r.completions.completion_ids,
        adv=None,
        truncated=r.completions.truncated,
    )
    t0 = time.perf_counter()
    micro = stage.algo.micro_batch_size
    if stage.algo.ppo_epochs > 1 or stage.algo.mini_batches > 1:
        ins.old_logp = run.policy.logp_rows(ins.prompts, ins.completion_ids, micro)
    if run.ref is not None:
        ins.ref_logp = run.ref.logp_rows(ins.prompts, ins.completion_ids, micro)
    values = None
    if run.critic is not None:
        p = run.policy
        values = run.critic.values(
            p.processor, ins.prompts, ins.completion_ids, p.pad_id, p.autocast, p.device
        )
    t_lp = time.perf_counter() - t0
    ins.adv, returns = step_advantages(
        r, stage.algo, stage.critic, ins.old_logp or r.completions.logp, ins.ref_logp, values
    )
    return ins, values, returns, t_lp


def _update(
    ctx: RunContext, run: StageRun, r: Rollouts, ins: UpdateInputs, values, returns, seed: int
) -> dict:
    """The policy's update and the critic's; then every rank's engine takes the new weights."""
    acc, stage, p = ctx.accelerator, run.stage, run.policy
    constant = float(stage.rollout.max_new_tokens) if stage.algo.aggregation == "constant" else None
    upd = update_policy(acc, p, run.optimizer, run.scheduler, ins, stage.algo, stage.optim, constant, seed)
    if run.critic is not None:
        upd.update(
            run.critic.update(
                acc,
                p.processor,
                ins.prompts,
                ins.completion_ids,
                values,
                returns,
                p.pad_id,
                stage.algo,
                stage.optim,
                seed,
                r.skipped_rows(),
            )
        )
    run.engine.sync_weights(p.model if is_sharded(p.model) else acc.unwrap_model(p.model))
    acc.wait_for_everyone()  # no rank samples before every rank's weights (or rank 0's push) are in
    return upd


def _log_and_save(
    ctx: RunContext,
    run: StageRun,
    step: int,
    r: Rollouts,
    ins: UpdateInputs,
    upd: dict,
    t_lp: float,
    seconds: float,
    bar,
) -> None:
    """The step's metrics row (and eval, every eval.every steps), its samples, the progress bar; a checkpoint
    every checkpoint.every steps or on a stop signal, after which the stage stops (Interrupted)."""
    acc, stage, recipe = ctx.accelerator, run.stage, ctx.recipe
    ctx.global_step += 1
    row = step_metrics(stage, step, r, ins.adv, upd, t_lp, seconds, acc)
    row["global_step"] = ctx.global_step
    row.update(vision_balance(acc, run.vision_calls, r.prompts))
    if stage.eval.every and step % stage.eval.every == 0:
        row.update(_evaluate(run.engine, stage, recipe))
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
        raise Interrupted(
            f"stopped at stage {stage.dirname} step {step}; checkpoint saved in {run.stage_dir}"
        )


def _finish(ctx: RunContext, run: StageRun) -> Path:
    """Final evaluation, the final/ folder (a plain transformers folder) and, under DDP, the replica check."""
    acc, stage = ctx.accelerator, run.stage
    final = run.stage_dir / "final"
    same = _check_replicas(ctx, run) if acc.num_processes > 1 else True
    if acc.is_main_process and stage.eval.data:
        row = {
            "stage": stage.name,
            "stage_index": stage.index,
            "step": run.steps,
            "final": True,
            "global_step": ctx.global_step,
            **_evaluate(run.engine, stage, ctx.recipe),
        }
        ctx.log.log(row, ctx.global_step)
        print(f"[{stage.dirname}] after training: {_eval_brief(row)}")
    weights, _ = gather_states(run.model, None)  # collective under FSDP
    if run.critic is not None:  # collective under FSDP2: every rank, before rank 0 saves
        run.critic.gather()
    if acc.is_main_process:
        base = acc.unwrap_model(run.model)

        def write(tmp: Path) -> None:
            save_model(tmp, base, run.lm.processor, state_dict=weights)
            if run.critic is not None:  # the next stage's critic starts from it
                run.critic.save(tmp)

        save_folder(final, write)
    acc.wait_for_everyone()
    if not same:
        raise RuntimeError(
            f"data-parallel replicas diverged in stage {stage.name} (final/ holds rank 0's "
            "weights); see metrics.jsonl"
        )
    return final


def _check_replicas(ctx: RunContext, run: StageRun) -> bool:
    """ranks.replicas_identical, logged either way (FSDP: logged as not checked); False stops the run."""
    acc, stage = ctx.accelerator, run.stage
    same = replicas_identical(acc, run.model)
    if acc.is_main_process:
        row = {
            "stage": stage.name,
            "stage_index": stage.index,
            "step": -1,
            "final": True,
            "replicas": acc.num_processes,
        }
        row.update({"replicas_checked": False} if same is None else {"replicas_identical": same})
        ctx.log.log(row, ctx.global_step)
        if same is False:
            print(f"[{stage.dirname}] data-parallel replicas diverged")
    return same is not False


def _global_step(ctx: RunContext, stage: Stage, start: int) -> int:
    from phaserl.logs import read_metrics

    done = [
        r for r in read_metrics(ctx.out_dir) if r.get("stage_index", 0) < stage.index and "global_step" in r
    ]
    return (max(r["global_step"] for r in done) if done else 0) + start


def _save(ctx, folder: Path, run: StageRun, step: int) -> None:
    """A resumable checkpoint. Under FSDP every rank takes part in gathering the full weights and optimizer
    state; rank 0 writes them."""
    acc = ctx.accelerator
    weights, optim_state = gather_states(run.model, run.optimizer)
    if run.critic is not None:  # collective under FSDP2: every rank, before rank 0 saves
        run.critic.gather()
    if acc.is_main_process:
        state = {
            "stage_index": run.stage.index,
            "stage": run.stage.name,
            "step": step,
            "data": run.mixture.state_dict(),
            "seed": ctx.recipe.seed,
            "global_step": ctx.global_step,
            "world_size": acc.num_processes,
        }
        save_checkpoint(
            folder,
            model=acc.unwrap_model(run.model),
            processor=run.lm.processor,
            optimizer_state=optim_state,
            scheduler=run.scheduler,
            state=state,
            state_dict=weights,
            extra=run.critic.save if run.critic is not None else None,
        )
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


def _progress(ctx: RunContext, run: StageRun):
    from tqdm import tqdm

    return tqdm(
        total=run.steps,
        initial=run.start,
        desc=f"stage {run.stage.dirname}",
        dynamic_ncols=True,
        disable=not (ctx.recipe.logging.progress and ctx.accelerator.is_main_process),
    )
