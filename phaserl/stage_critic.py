"""The critic of one stage (PPO with GAE, `algo.advantage: gae`), as the trainer uses it: set up (fresh,
handed over from the previous stage, or resumed), rollout-time values, the value update with its lr schedule,
and saving inside the policy's checkpoint and final folders (a `critic/` subfolder, so a checkpoint stays one
atomic folder).

The model side lives in phaserl/critic.py. Two ways to run, chosen by the accelerator:
  - one process, or DDP: the critic goes through `acc.prepare` like the policy;
  - FSDP2: accelerate's FSDP2 path prepares one model (the policy), so the critic is sharded here with torch's
    `fully_shard` (each decoder layer and vision block a unit, then the root), its optimizer built on the
    shards, gradients synced on a mini-batch's last micro-batch only (`set_requires_gradient_sync`), clipped
    with `clip_grad_norm_` on the DTensor gradients. Saving gathers the full weights and optimizer state on
    every rank (`gather`, a collective), then rank 0 writes them (`save`); a resume loads the full weights on
    every rank before sharding and lets torch's state-dict API shard the optimizer state.
With LoRA (`model.lora`) the critic's backbone trains adapters and the value head trains fully.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import torch

from phaserl import critic as C
from phaserl.models import is_peft
from phaserl.schedule import make_scheduler

SUBFOLDER = "critic"
SCHEDULER_FILE = "critic_scheduler.pt"


@dataclass
class Gathered:
    """What a save writes, taken on every rank: full weights and optimizer state (rank 0's copies, on the CPU;
    None when the critic's own are complete) and the scheduler state."""

    weights: dict | None
    optimizer: dict | None
    scheduler: dict


@dataclass
class StageCritic:
    model: (
        object  # the prepared critic: DDP-wrapped when data-parallel, the sharded module itself under FSDP2
    )
    base: C.Critic  # the critic module itself
    optimizer: object
    cfg: object  # CriticConfig
    scheduler: object = None  # LambdaLR over the stage's steps (phaserl/schedule.py)
    dummy_vision: dict | None = None
    sharded: bool = False  # FSDP2: parameters are DTensor shards
    world: int = 1
    local_share: float = 1.0  # this rank's share of the critic's parameter elements (1/world when sharded)
    _gathered: Gathered | None = None

    def _context(self, prompts):
        from phaserl.update import vision_context

        return vision_context(self.base, self.dummy_vision, prompts)

    def values(
        self, processor, prompts, completion_ids, pad_id: int, autocast: bool, device
    ) -> list[torch.Tensor]:
        """Rollout-time values [N][T_i] (GAE's V and the value clip's reference)."""
        return C.values_no_grad(
            self.model,
            processor,
            prompts,
            completion_ids,
            pad_id,
            self.cfg.micro_batch_size,
            autocast,
            device,
            context=self._context,
        )

    def update(
        self,
        acc,
        processor,
        prompts,
        completion_ids,
        old_values,
        returns,
        pad_id: int,
        algo,
        optim,
        seed,
        skipped,
    ) -> dict:
        """The value update over the step's samples (the policy's epochs and mini-batches), then one scheduler
        step; critic/* stats, with the lr this update used and this rank's share of the parameters."""
        lr = float(self.optimizer.param_groups[0]["lr"])
        if self.sharded:
            hooks = dict(
                backward=lambda loss: loss.backward(),
                no_sync=lambda: _no_grad_sync(self.model),
                clip_grad_norm=lambda m: _clip_sharded(self.model, m),
            )
        else:
            hooks = dict(
                backward=acc.backward,
                no_sync=lambda: acc.no_sync(self.model),
                clip_grad_norm=lambda m: acc.clip_grad_norm_(self.model.parameters(), m),
            )
        stats = C.critic_update(
            self.model,
            self.optimizer,
            processor,
            prompts,
            completion_ids,
            old_values,
            returns,
            self.cfg,
            pad_id,
            autocast=optim.bf16_autocast,
            device=acc.device,
            mini_batches=algo.mini_batches,
            epochs=algo.ppo_epochs,
            seed=seed,
            skipped=skipped,
            context=self._context,
            same_passes=self.world > 1,
            **hooks,
        )
        if self.scheduler is not None:
            self.scheduler.step()
        return {
            **{f"critic/{k}": v for k, v in stats.items()},
            "critic/lr": lr,
            "critic/local_param_share": self.local_share,
        }

    def gather(self) -> Gathered:
        """Everything `save` writes. A collective under FSDP2: call it on EVERY rank, before rank 0 saves. Kept
        for the next `save` too, so a caller may pass it on or not."""
        weights = optimizer = None
        if self.sharded:
            from torch.distributed.checkpoint.state_dict import (
                StateDictOptions,
                get_model_state_dict,
                get_optimizer_state_dict,
            )

            opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
            weights = get_model_state_dict(self.base, options=opts)
            optimizer = get_optimizer_state_dict(self.base, self.optimizer, options=opts)
        scheduler = self.scheduler.state_dict() if self.scheduler is not None else {}
        self._gathered = Gathered(weights, optimizer, scheduler)
        return self._gathered

    def save(self, folder: Path, gathered: Gathered | None = None) -> None:
        """Write the critic, its optimizer and scheduler state into folder/critic (rank 0). Under FSDP2 every
        rank must have called `gather` first (or pass its result): the module's own state holds only shards."""
        gathered = gathered or self._gathered
        self._gathered = None  # never write a stale gather twice
        if gathered is None:
            if self.sharded:
                raise RuntimeError(
                    "a sharded critic is saved from StageCritic.gather(), called on every rank "
                    "before rank 0 saves"
                )
            gathered = self.gather()
        out = Path(folder) / SUBFOLDER
        C.save_critic(
            self.base, out, self.optimizer, state=gathered.weights, optimizer_state=gathered.optimizer
        )
        torch.save(gathered.scheduler, out / SCHEDULER_FILE)


@contextlib.contextmanager
def _no_grad_sync(model):
    """FSDP2's no_sync: gradients accumulate unsharded on each rank until the mini-batch's last micro-batch."""
    model.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        model.set_requires_gradient_sync(True)


def _clip_sharded(model, max_norm: float) -> torch.Tensor:
    """clip_grad_norm_ over DTensor gradients: the norm is the full model's (reduced over ranks)."""
    params = [p for p in model.parameters() if p.requires_grad and p.grad is not None]
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
    return norm.full_tensor() if hasattr(norm, "full_tensor") else norm


def _no_split_classes(backbone) -> set[str]:
    """Class names of the backbone's blocks (transformers' `_no_split_modules`: decoder layers, vision
    blocks)."""
    inner = backbone.get_base_model() if is_peft(backbone) else backbone
    names = set(getattr(inner, "_no_split_modules", None) or [])
    if not names:
        raise ValueError(f"{type(inner).__name__} names no `_no_split_modules` to shard the critic by")
    return names


def shard_critic(base: C.Critic, device_type: str, world: int) -> C.Critic:
    """FSDP2 on the critic, in place: every decoder layer / vision block its own unit (innermost first), then
    the root (embeddings, final norm, value head). Parameters stay float32 (bf16 compute comes from
    autocast, as under DDP)."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(device_type, (world,))
    names = _no_split_classes(base.backbone)
    for module in reversed(list(base.backbone.modules())):
        if type(module).__name__ in names:
            fully_shard(module, mesh=mesh)
    fully_shard(base, mesh=mesh)
    return base


def local_param_share(module) -> float:
    """Elements of the parameters held on this rank over the full parameters' (1.0 unsharded)."""
    full = local = 0
    for p in module.parameters():
        full += p.numel()
        local += p.to_local().numel() if hasattr(p, "to_local") else p.numel()
    return local / max(full, 1)


def critic_schedule(cfg, optim) -> SimpleNamespace:
    """The critic's schedule settings: its own when set, else the stage's (the policy's)."""
    return SimpleNamespace(
        schedule=cfg.schedule or optim.schedule,
        warmup_ratio=optim.warmup_ratio if cfg.warmup_ratio is None else cfg.warmup_ratio,
    )


def _is_fsdp(acc) -> bool:
    return "FSDP" in str(getattr(acc, "distributed_type", "")) and acc.num_processes > 1


def setup_critic(
    acc,
    stage,
    recipe,
    init_weights: str,
    resume: Path | None,
    seed: int,
    dummy_vision: dict | None,
    steps: int | None = None,
) -> StageCritic | None:
    """The stage's critic, or None when its estimator needs none. Resumed from `resume/critic` when the
    checkpoint has one; else `critic.init_from`, the previous stage's final/critic, or fresh on the policy's
    starting weights with a new value head (seeded: a resumed and an uninterrupted run build the same one).
    LoRA adapters on its backbone when the recipe trains the policy with LoRA. Its lr follows the stage's
    schedule over `steps` (None: constant)."""
    if stage.algo.advantage != "gae":
        return None
    mcfg = recipe.model
    kwargs = dict(
        attn_implementation=mcfg.attn_implementation,
        freeze_vision=mcfg.freeze_vision,
        gradient_checkpointing=mcfg.gradient_checkpointing,
    )
    saved = Path(resume) / SUBFOLDER if resume is not None else None
    resuming = saved is not None and C.is_critic_folder(saved)
    if resuming:
        base = C.load_critic(saved, **kwargs)
    else:
        base = C.critic_for_stage(
            stage.critic,
            init_weights,
            previous=Path(init_weights) / SUBFOLDER,
            seed=seed,
            lora=mcfg.lora,
            **kwargs,
        )
    base.train()
    sharded = _is_fsdp(acc)
    if sharded:  # before the optimizer: it must hold the shards
        shard_critic(base, acc.device.type, acc.num_processes)
    optimizer = C.critic_optimizer(base, stage.critic)
    sched = (
        critic_schedule(stage.critic, stage.optim)
        if steps
        else SimpleNamespace(schedule="constant", warmup_ratio=0.0)
    )
    scheduler = make_scheduler(optimizer, sched, steps or 1)
    model = base
    if not sharded:
        model, optimizer = acc.prepare(base, optimizer)
        if model is not base:  # the DDP wrapper answers for the attributes critic.py reads
            model.is_vlm = base.is_vlm
    if resuming:
        _load_optimizer(base, optimizer, saved, sharded)
        if (saved / SCHEDULER_FILE).is_file():
            scheduler.load_state_dict(torch.load(saved / SCHEDULER_FILE, weights_only=True))
    return StageCritic(
        model=model,
        base=base,
        optimizer=optimizer,
        scheduler=scheduler,
        cfg=stage.critic,
        dummy_vision=dummy_vision,
        sharded=sharded,
        world=acc.num_processes,
        local_share=local_param_share(base),
    )


def _load_optimizer(base, optimizer, saved: Path, sharded: bool) -> None:
    """The saved optimizer state (full, keyed by parameter name when written from FSDP2) onto this rank's
    parameters: torch's state-dict API reshards it under FSDP2; elsewhere a plain load_state_dict."""
    if not sharded:
        C.load_critic_optimizer(optimizer, saved)
        return
    path = saved / C.OPTIMIZER_FILE
    if not path.is_file():
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    set_optimizer_state_dict(
        base,
        optimizer,
        torch.load(path, map_location="cpu", weights_only=True),
        options=StateDictOptions(full_state_dict=True),
    )
