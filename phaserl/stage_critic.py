"""The critic of one stage (PPO with GAE, `algo.advantage: gae`), as the trainer uses it: set up (fresh, handed
over from the previous stage, or resumed), rollout-time values, the value update, and saving inside the policy's
checkpoint and final folders (a `critic/` subfolder, so a checkpoint stays one atomic folder).

The model side lives in phaserl/critic.py. Runs in one process and under DDP; FSDP is refused with a clear
error (the critic would be a second sharded model in one accelerator, which accelerate's FSDP2 path does not
support).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from phaserl import critic as C

SUBFOLDER = "critic"


@dataclass
class StageCritic:
    model: object  # the prepared critic (DDP-wrapped when data-parallel)
    base: C.Critic  # the critic module itself
    optimizer: object
    cfg: object  # CriticConfig
    dummy_vision: dict | None = None

    def _context(self, prompts):
        from phaserl.update import vision_context

        return vision_context(self.base, self.dummy_vision, prompts)

    def values(self, processor, prompts, completion_ids, pad_id: int, autocast: bool, device) -> list[torch.Tensor]:
        """Rollout-time values [N][T_i] (GAE's V and the value clip's reference)."""
        return C.values_no_grad(self.model, processor, prompts, completion_ids, pad_id, self.cfg.micro_batch_size,
                                autocast, device, context=self._context)

    def update(self, acc, processor, prompts, completion_ids, old_values, returns, pad_id: int, algo, optim, seed,
               skipped) -> dict:
        """The value update over the step's samples (the policy's epochs and mini-batches); critic/* stats."""
        stats = C.critic_update(
            self.model, self.optimizer, processor, prompts, completion_ids, old_values, returns, self.cfg, pad_id,
            autocast=optim.bf16_autocast, device=acc.device, mini_batches=algo.mini_batches, epochs=algo.ppo_epochs,
            seed=seed, skipped=skipped, backward=acc.backward, no_sync=lambda: acc.no_sync(self.model),
            clip_grad_norm=lambda m: acc.clip_grad_norm_(self.model.parameters(), m), context=self._context)
        return {f"critic/{k}": v for k, v in stats.items()}

    def save(self, folder: Path) -> None:
        C.save_critic(self.base, Path(folder) / SUBFOLDER, self.optimizer)


def setup_critic(acc, stage, recipe, init_weights: str, resume: Path | None, seed: int,
                 dummy_vision: dict | None, steps: int | None = None) -> StageCritic | None:
    """The stage's critic, or None when its estimator needs none. Resumed from `resume/critic` when the
    checkpoint has one; else `critic.init_from`, the previous stage's final/critic, or fresh on the policy's
    starting weights with a new value head (seeded: a resumed and an uninterrupted run build the same one)."""
    if stage.algo.advantage != "gae":
        return None
    if "FSDP" in str(getattr(acc, "distributed_type", "")):
        raise ValueError("PPO with a critic (advantage: gae) under FSDP is not supported yet; use "
                         "configs/accelerate/ddp.yaml")
    mcfg = recipe.model
    kwargs = dict(attn_implementation=mcfg.attn_implementation, freeze_vision=mcfg.freeze_vision)
    saved = Path(resume) / SUBFOLDER if resume is not None else None
    if saved is not None and C.is_critic_folder(saved):
        base = C.load_critic(saved, **kwargs)
    else:
        base = C.critic_for_stage(stage.critic, init_weights, previous=Path(init_weights) / SUBFOLDER,
                                  gradient_checkpointing=mcfg.gradient_checkpointing, seed=seed, **kwargs)
    base.train()
    optimizer = C.critic_optimizer(base, stage.critic)
    model, optimizer = acc.prepare(base, optimizer)
    if model is not base:  # the DDP wrapper answers for the attributes critic.py reads
        model.is_vlm = base.is_vlm
    if saved is not None and C.is_critic_folder(saved):
        C.load_critic_optimizer(optimizer, saved)
    return StageCritic(model=model, base=base, optimizer=optimizer, cfg=stage.critic, dummy_vision=dummy_vision)
