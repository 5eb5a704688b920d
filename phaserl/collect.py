"""Steps 1-3 of a training step: generate G samples per prompt, score them, compute advantages.

Dynamic sampling (DAPO) drops groups whose rewards are all equal (they carry no gradient under group
baselines) and draws fresh prompts to refill, up to `max_resample_rounds` times.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from phaserl.algo import compute_advantages, zero_variance_groups
from phaserl.data.render import render
from phaserl.data.schema import Example
from phaserl.rewards.combine import compute_rewards
from phaserl.rollout.base import SamplingParams
from phaserl.types import Completions, Prompt, RewardOutput


@dataclass
class Rollouts:
    """B prompts x G samples, rows grouped by prompt."""

    examples: list[Example]  # [B]
    prompts: list[Prompt]  # [B]
    completions: Completions  # N rows
    rewards: RewardOutput  # N rows
    G: int
    times: dict[str, float] = field(default_factory=dict)
    dropped_groups: int = 0

    @property
    def row_prompts(self) -> list[Prompt]:
        return [p for p in self.prompts for _ in range(self.G)]

    @property
    def row_examples(self) -> list[Example]:
        return [e for e in self.examples for _ in range(self.G)]

    def reward_tensor(self) -> torch.Tensor:
        return torch.tensor(self.rewards.total, dtype=torch.float32)  # [N]


def _select(r: Rollouts, keep: list[bool]) -> Rollouts:
    rows = [b * r.G + g for b, k in enumerate(keep) if k for g in range(r.G)]
    c = r.completions
    return Rollouts(
        examples=[e for e, k in zip(r.examples, keep) if k], prompts=[p for p, k in zip(r.prompts, keep) if k],
        completions=Completions(prompt_ids=[c.prompt_ids[i] for i in rows],
                                completion_ids=[c.completion_ids[i] for i in rows],
                                texts=[c.texts[i] for i in rows], logp=[c.logp[i] for i in rows],
                                truncated=[c.truncated[i] for i in rows]),
        rewards=RewardOutput(total=[r.rewards.total[i] for i in rows],
                             components={k: [v[i] for i in rows] for k, v in r.rewards.components.items()}),
        G=r.G, times=r.times, dropped_groups=r.dropped_groups)


def _merge(a: Rollouts | None, b: Rollouts) -> Rollouts:
    if a is None:
        return b
    ca, cb = a.completions, b.completions
    return Rollouts(
        examples=a.examples + b.examples, prompts=a.prompts + b.prompts,
        completions=Completions(ca.prompt_ids + cb.prompt_ids, ca.completion_ids + cb.completion_ids,
                                ca.texts + cb.texts, ca.logp + cb.logp, ca.truncated + cb.truncated),
        rewards=RewardOutput(total=a.rewards.total + b.rewards.total,
                             components={k: a.rewards.components[k] + b.rewards.components[k]
                                         for k in a.rewards.components}),
        G=a.G, times=a.times, dropped_groups=a.dropped_groups + b.dropped_groups)


def generate_and_score(engine, examples: list[Example], stage, seed: int, image_root=None,
                       unparseable_gold: str = "skip") -> Rollouts:
    """Render, generate G samples each, score. Times go into Rollouts.times."""
    t0 = time.perf_counter()
    prompts = [render(ex, stage.view, stage.template, image_root) for ex in examples]
    r = stage.rollout
    params = SamplingParams(n=r.group_size, max_new_tokens=r.max_new_tokens, temperature=r.temperature,
                            top_p=r.top_p, seed=seed)
    completions = engine.generate(prompts, params)
    t1 = time.perf_counter()
    row_examples = [e for e in examples for _ in range(r.group_size)]
    rewards = compute_rewards(completions.texts, row_examples, stage.rewards, unparseable_gold=unparseable_gold)
    t2 = time.perf_counter()
    return Rollouts(examples=examples, prompts=prompts, completions=completions, rewards=rewards,
                    G=r.group_size, times={"generate": t1 - t0, "score": t2 - t1})


def collect(engine, draw, stage, seed: int, unparseable_gold: str = "skip") -> Rollouts:
    """Generate and score B groups; with dynamic sampling keep only informative groups and refill.

    draw(k) returns the next k examples from the stage's mixture (advancing its cursor)."""
    B = stage.prompts_per_step
    G = stage.rollout.group_size
    kept: Rollouts | None = None
    spare: Rollouts | None = None  # dropped groups, used to top up when refills run out
    times = {"generate": 0.0, "score": 0.0}
    dropped = 0
    for round_ in range(stage.algo.max_resample_rounds + 1 if stage.algo.dynamic_sampling else 1):
        need = B - (len(kept.examples) if kept else 0)
        r = generate_and_score(engine, draw(need), stage, seed + 1000 * round_, unparseable_gold=unparseable_gold)
        for k in times:
            times[k] += r.times[k]
        if stage.algo.dynamic_sampling:
            keep = zero_variance_groups(r.reward_tensor(), G).tolist()
            dropped += keep.count(False)
            spare = _merge(spare, _select(r, [not k for k in keep]))
            r = _select(r, keep)
        kept = _merge(kept, r)
        if len(kept.examples) >= B:
            break
    short = B - len(kept.examples)
    if short > 0:
        # Always hand the update exactly B groups, so every data-parallel rank runs the same number of
        # micro-batches (a rank with fewer would hang the others). The top-up groups have equal rewards,
        # hence zero advantage: they add no gradient.
        kept = _merge(kept, _select(spare, [i < short for i in range(len(spare.examples))]))
    kept.times, kept.dropped_groups = times, dropped
    return kept


def advantages(r: Rollouts, name: str) -> torch.Tensor:
    """[N] advantages from the rollouts' total rewards (an empty batch gives an empty tensor)."""
    if not r.examples:
        return torch.zeros(0)
    return compute_advantages(name, r.reward_tensor(), r.G)
