"""Everything a stage trains with, built once before its first step (`setup_stage`): the policy (fp32 master
weights) and its optimizer and schedule, prepared for the accelerator and resumed from the stage's latest
checkpoint; the data mixture and its cursor; the rollout engine; the frozen reference (when KL is on); the critic
(PPO with GAE); and the per-rank helpers of a data-parallel run (phaserl/ranks.py)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from phaserl.checkpoint import latest_checkpoint, load_trainer_state
from phaserl.collect import prompt_token_counter
from phaserl.config import Recipe, Stage
from phaserl.data.mixture import Mixture, derive_seed
from phaserl.data.render import render
from phaserl.data.sources import load_examples
from phaserl.distributed import is_sharded
from phaserl.models import LoadedModel, load_model
from phaserl.policy import Policy
from phaserl.ranks import any_rank, drawer
from phaserl.schedule import make_scheduler
from phaserl.stage_critic import StageCritic, setup_critic
from phaserl.update_speed import memory_probe


@dataclass
class StageRun:
    """Everything one stage trains with, built by `setup_stage`."""

    lm: LoadedModel
    policy: Policy  # the prepared (DDP / FSDP) model and what its log-prob passes need
    optimizer: object
    scheduler: object
    engine: object
    ref: Policy | None  # the frozen reference (KL), plain and unsharded on every rank
    mixture: Mixture
    stage: Stage  # per-rank view of the stage (prompts_per_step split over ranks)
    steps: int
    start: int
    stage_dir: Path
    draw: Callable[[int], list]  # this rank's next k examples (ranks.drawer)
    any_rank: Callable[[bool], bool]  # a flag raised on any rank (ranks.any_rank)
    prompt_tokens: Callable  # prompt length in tokens (the max_prompt_tokens cap)
    vision_calls: object | None  # distributed.CallCounter on the vision tower (multi-process VLM runs)
    critic: StageCritic | None = None  # PPO's value model (algo.advantage: gae)

    @property
    def model(self):
        return self.policy.model


def setup_stage(ctx, stage: Stage, init_weights: str) -> StageRun:
    """Load the policy (fp32 master weights), data, optimizer and scheduler; resume; prepare for the
    accelerator; build the rollout engine, the reference model on the policy's device and the critic."""
    recipe, acc = ctx.recipe, ctx.accelerator
    check_backend(acc, recipe)
    stage_dir = ctx.out_dir / "stages" / stage.dirname
    resume = latest_checkpoint(stage_dir)
    mcfg = recipe.model
    adapter = str(resume) if resume and (resume / "adapter_config.json").exists() else None
    lm = load_model(
        init_weights if adapter or not resume else str(resume),
        dtype=mcfg.dtype,
        trust_remote_code=mcfg.trust_remote_code,
        freeze_vision=mcfg.freeze_vision,
        lora=mcfg.lora,
        adapter=adapter,
        gradient_checkpointing=mcfg.gradient_checkpointing,
        attn_implementation=mcfg.attn_implementation,
        trainable_dtype="float32",
    )
    lm.tokenizer.padding_side = "left"
    mixture = build_mixture(stage, recipe, log=print if acc.is_main_process else (lambda *_: None))
    steps = stage_steps(stage, len(mixture))
    lm.model.train()
    params = [p for p in lm.model.parameters() if p.requires_grad]
    # fused: one vectorised kernel over all tensors; the same AdamW math. Single-process runs only: sharded
    # back ends bring their own parameter types.
    optimizer = torch.optim.AdamW(
        params,
        lr=stage.optim.lr,
        betas=stage.optim.betas,
        weight_decay=stage.optim.weight_decay,
        fused=acc.num_processes == 1 or None,
    )
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
    dummy, calls = None, None
    if lm.is_vlm and world > 1:
        from phaserl.distributed import CallCounter, dummy_vision_inputs, vision_tower

        dummy = dummy_vision_inputs(lm.processor)
        calls = CallCounter(vision_tower(model))
    policy = Policy(
        model=model,
        processor=lm.processor,
        is_vlm=lm.is_vlm,
        pad_id=lm.tokenizer.pad_token_id,
        temperature=stage.rollout.temperature,
        autocast=stage.optim.bf16_autocast,
        device=acc.device,
        dummy_vision=dummy,
    )
    ref = policy.with_model(reference(init_weights, mcfg, acc.device)) if stage.algo.kl_coef > 0 else None
    critic = setup_critic(
        acc, stage, recipe, init_weights, resume, derive_seed(recipe.seed, stage.index, 0), dummy, steps
    )
    return StageRun(
        lm=lm,
        policy=policy,
        optimizer=optimizer,
        scheduler=scheduler,
        engine=engine,
        ref=ref,
        critic=critic,
        mixture=mixture,
        stage=per_rank(stage, world),
        steps=steps,
        start=start,
        stage_dir=stage_dir,
        draw=drawer(acc, mixture),
        any_rank=any_rank(acc),
        prompt_tokens=prompt_token_counter(lm.processor, lm.is_vlm),
        vision_calls=calls,
    )


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

        return VLLMEngine.from_model(model, lm, **r.vllm)
    from phaserl.rollout.choice import local_engine  # hf or cpu (auto: cpu when the policy is on the CPU)

    return local_engine(
        r.engine,
        model,
        lm.processor,
        lm.tokenizer,
        is_vlm=lm.is_vlm,
        batch_size=r.batch_size,
        autocast_bf16=False,
        rollout_dtype=torch.bfloat16 if r.bf16 else None,
        lean_decode=r.lean_decode,
        cpu_kernels=r.cpu_kernels,
    )


def reference(init_weights: str, mcfg, device):
    """The frozen reference policy, in the recipe's dtype, on the policy's device. Unsharded on every rank: its
    forwards then issue no collective."""
    ref = load_model(
        init_weights,
        dtype=mcfg.dtype,
        trust_remote_code=mcfg.trust_remote_code,
        attn_implementation=mcfg.attn_implementation,
    ).model
    ref.eval().requires_grad_(False)
    return ref.to(device)


def check_backend(acc, recipe: Recipe) -> None:
    """The engines phaserl's update is built and tested for: one process, DDP, FSDP2."""
    kind = str(getattr(acc, "distributed_type", "NO"))
    if "DEEPSPEED" in kind:
        raise ValueError(
            "DeepSpeed is not supported by phaserl's trainer (its engine steps the optimizer on its "
            "own accumulation boundaries); use configs/accelerate/fsdp2.yaml for sharded training"
        )
    if "FSDP" in kind and recipe.model.lora:
        raise ValueError("LoRA under FSDP is not supported yet; use configs/accelerate/ddp.yaml for LoRA")


def per_rank(stage: Stage, world: int) -> Stage:
    """prompts_per_step is global: each of `world` data-parallel ranks takes an equal share."""
    if world == 1:
        return stage
    if stage.prompts_per_step % world:
        raise ValueError(
            f"stage {stage.name}: prompts_per_step={stage.prompts_per_step} does not split over "
            f"{world} processes"
        )
    local = stage.model_copy(update={"prompts_per_step": stage.prompts_per_step // world})
    if local.prompts_per_step * local.rollout.group_size % local.algo.mini_batches:
        raise ValueError(
            f"stage {stage.name}: per-process samples do not split into {local.algo.mini_batches} "
            "mini-batches"
        )
    return local


def probe_memory(acc, run: StageRun) -> None:
    """update_speed.memory_probe on the stage's first example, with micro-batches the size of a step's; prints
    what it ran. One process only (the probe's backward would need every rank)."""
    stage = run.stage
    if not stage.optim.memory_probe or acc.num_processes > 1 or run.start >= run.steps:
        return
    t0 = time.perf_counter()
    prompt = render(run.mixture.examples[0][0], stage.view, stage.template)
    rows, passes = memory_probe(
        acc,
        run.policy,
        run.optimizer,
        prompt,
        stage.algo,
        stage.optim,
        stage.rollout.max_new_tokens,
        stage.prompts_per_step * stage.rollout.group_size,
    )
    if acc.is_main_process:
        micro = "two micro-batches" if passes == 2 else "one micro-batch"
        print(
            f"[{stage.dirname}] memory probe: {micro} of {rows} rows x {stage.rollout.max_new_tokens} tokens "
            f"and the optimizer state in {time.perf_counter() - t0:.1f}s"
        )
