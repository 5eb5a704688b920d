"""Steps 1-3 of a training step: generate G samples per prompt, score them, compute advantages.

Filters that drop whole groups and draw fresh prompts to refill, up to `max_resample_rounds` times:
- dynamic sampling (DAPO): groups whose rewards are all equal (no gradient under group baselines);
- the accuracy band (MM-EUREKA): groups whose pass rate lies outside [low, high].
Prompts longer than `max_prompt_tokens` are dropped before generation (and counted), never truncated.
Rewards are shaped (DAPO's soft overlong penalty) right after scoring, so the filters see the final reward.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from phaserl.algo import (
    accuracy_band,
    compute_advantages,
    gae_advantages,
    group_pass_rate,
    kl_estimator,
    overlong_penalty,
    reinforce_pp_baseline_tokens,
    standardize,
    zero_variance_groups,
)
from phaserl.data.render import render
from phaserl.data.schema import Example
from phaserl.policy import pad_rows
from phaserl.rewards.combine import compute_rewards, undecidable
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
    dropped_groups: int = 0  # dynamic sampling: groups with all-equal rewards dropped this step
    dropped_band: int = 0  # accuracy band: groups outside [low, high] dropped (not counted above)
    dropped_long_prompts: int = 0  # prompts over max_prompt_tokens, dropped before generation
    skipped: list[bool] | None = None  # [N] rows trained with advantage 0 (see `skipped_rows`); None: none
    filler_groups: int = 0  # dropped groups put back (advantage 0) because refills ran out

    @property
    def row_prompts(self) -> list[Prompt]:
        return [p for p in self.prompts for _ in range(self.G)]

    @property
    def row_examples(self) -> list[Example]:
        return [e for e in self.examples for _ in range(self.G)]

    def reward_tensor(self) -> torch.Tensor:
        return torch.tensor(self.rewards.total, dtype=torch.float32)  # [N]

    def skipped_rows(self) -> list[bool]:
        """[N] rows that get no policy gradient: undecidable rewards under unparseable_gold "skip" (their
        total is the format reward alone) and filler groups that a filter had dropped."""
        return list(self.skipped) if self.skipped is not None else [False] * len(self.rewards.total)


def _select(r: Rollouts, keep: list[bool]) -> Rollouts:
    rows = [b * r.G + g for b, k in enumerate(keep) if k for g in range(r.G)]
    c = r.completions
    skipped = r.skipped_rows()
    return Rollouts(
        examples=[e for e, k in zip(r.examples, keep) if k],
        prompts=[p for p, k in zip(r.prompts, keep) if k],
        completions=Completions(
            prompt_ids=[c.prompt_ids[i] for i in rows],
            completion_ids=[c.completion_ids[i] for i in rows],
            texts=[c.texts[i] for i in rows],
            logp=[c.logp[i] for i in rows],
            truncated=[c.truncated[i] for i in rows],
            entropy=None if c.entropy is None else [c.entropy[i] for i in rows],
        ),
        rewards=RewardOutput(
            total=[r.rewards.total[i] for i in rows],
            components={k: [v[i] for i in rows] for k, v in r.rewards.components.items()},
        ),
        G=r.G,
        times=r.times,
        dropped_groups=r.dropped_groups,
        dropped_band=r.dropped_band,
        dropped_long_prompts=r.dropped_long_prompts,
        skipped=[skipped[i] for i in rows],
        filler_groups=r.filler_groups,
    )


def _merge(a: Rollouts | None, b: Rollouts | None) -> Rollouts | None:
    if a is None or b is None:
        return b if a is None else a
    ca, cb = a.completions, b.completions
    return Rollouts(
        examples=a.examples + b.examples,
        prompts=a.prompts + b.prompts,
        completions=Completions(
            ca.prompt_ids + cb.prompt_ids,
            ca.completion_ids + cb.completion_ids,
            ca.texts + cb.texts,
            ca.logp + cb.logp,
            ca.truncated + cb.truncated,
            entropy=None if ca.entropy is None or cb.entropy is None else ca.entropy + cb.entropy,
        ),
        rewards=RewardOutput(
            total=a.rewards.total + b.rewards.total,
            components={k: a.rewards.components[k] + b.rewards.components[k] for k in a.rewards.components},
        ),
        G=a.G,
        times=a.times,
        dropped_groups=a.dropped_groups + b.dropped_groups,
        dropped_band=a.dropped_band + b.dropped_band,
        dropped_long_prompts=a.dropped_long_prompts + b.dropped_long_prompts,
        skipped=a.skipped_rows() + b.skipped_rows(),
        filler_groups=a.filler_groups + b.filler_groups,
    )


def _shape_rewards(rewards: RewardOutput, completions: Completions, stage) -> RewardOutput:
    """Add DAPO's soft overlong penalty as the component "overlong" (logged like the others)."""
    shaping = stage.algo.overlong_shaping
    if shaping is None:
        return rewards
    lengths = torch.tensor([len(c) for c in completions.completion_ids], dtype=torch.float32)  # [N]
    penalty = overlong_penalty(lengths, stage.rollout.max_new_tokens, shaping.buffer, shaping.factor).tolist()
    return RewardOutput(
        total=[t + p for t, p in zip(rewards.total, penalty)],
        components={**rewards.components, "overlong": penalty},
    )


def generate_and_score(
    engine,
    examples: list[Example],
    stage,
    seed: int,
    image_root=None,
    unparseable_gold: str = "skip",
    prompts: list[Prompt] | None = None,
) -> Rollouts:
    """Render (unless `prompts` are given), generate G samples each, score, shape. Times go into
    Rollouts.times; rows with an undecidable reward are marked in Rollouts.skipped."""
    t0 = time.perf_counter()
    if prompts is None:
        prompts = [render(ex, stage.view, stage.template, image_root) for ex in examples]
    r = stage.rollout
    params = SamplingParams(
        n=r.group_size, max_new_tokens=r.max_new_tokens, temperature=r.temperature, top_p=r.top_p, seed=seed
    )
    completions = engine.generate(prompts, params)
    t1 = time.perf_counter()
    row_examples = [e for e in examples for _ in range(r.group_size)]
    rewards = compute_rewards(
        completions.texts, row_examples, stage.rewards, unparseable_gold=unparseable_gold
    )
    skipped = undecidable(rewards, row_examples)
    rewards = _shape_rewards(rewards, completions, stage)
    t2 = time.perf_counter()
    return Rollouts(
        examples=examples,
        prompts=prompts,
        completions=completions,
        rewards=rewards,
        G=r.group_size,
        times={"generate": t1 - t0, "score": t2 - t1},
        skipped=skipped,
    )


def prompt_token_counter(processor, is_vlm: bool) -> Callable[[list[Prompt]], list[int]]:
    """A `prompt_tokens` function for `collect`: each prompt's token count as the policy sees it (chat
    template, generation prompt and image tokens included), from the same encoder the engines use."""
    from phaserl.rollout.encode import encode_prompts

    def count(prompts: list[Prompt]) -> list[int]:
        return [int(encode_prompts(processor, [p], is_vlm)["attention_mask"].sum()) for p in prompts]

    return count


def _pass_rate(r: Rollouts) -> torch.Tensor:
    """[B] share of each group's samples that are right: the "accuracy" component when there is one (None
    counts as wrong), otherwise a total reward >= 1."""
    acc = r.rewards.components.get("accuracy")
    values = torch.tensor([float(v or 0.0) for v in acc] if acc is not None else r.rewards.total)  # [N]
    return group_pass_rate(values, r.G, threshold=1.0)


def _group_filter(r: Rollouts, algo) -> tuple[list[bool], int, int]:
    """(keep [B], dropped by dynamic sampling, dropped by the band only)."""
    B = len(r.examples)
    keep_var = zero_variance_groups(r.reward_tensor(), r.G).tolist() if algo.dynamic_sampling else [True] * B
    if algo.accuracy_band is not None:
        keep_band = accuracy_band(_pass_rate(r), *algo.accuracy_band).tolist()
    else:
        keep_band = [True] * B
    keep = [a and b for a, b in zip(keep_var, keep_band)]
    return keep, keep_var.count(False), sum(1 for a, b in zip(keep_var, keep_band) if a and not b)


def collect(
    engine,
    draw,
    stage,
    seed: int,
    unparseable_gold: str = "skip",
    any_rank: Callable[[bool], bool] = lambda flag: flag,
    prompt_tokens: Callable[[list[Prompt]], list[int]] | None = None,
    image_root=None,
) -> Rollouts:
    """Generate and score B groups; drop over-long prompts and (with dynamic sampling / an accuracy band)
    uninformative groups, and refill from the mixture.

    draw(k) returns the next k examples from the stage's mixture (advancing its cursor); it is called once per
    round on every rank, with k = 0 on a rank that needs nothing more (the trainer's draw may run collectives).
    any_rank(flag) is True when flag is True on any data-parallel rank: the refill loop runs while any rank
    still needs groups, so every rank runs the same number of rounds. prompt_tokens(prompts) -> token counts
    is required when algo.max_prompt_tokens is set (`prompt_token_counter` makes one).
    """
    algo = stage.algo
    B, G = stage.prompts_per_step, stage.rollout.group_size
    if algo.max_prompt_tokens is not None and prompt_tokens is None:
        raise ValueError(
            f"stage '{stage.name}': algo.max_prompt_tokens is set but collect() got no prompt_tokens "
            "counter (use phaserl.collect.prompt_token_counter(processor, is_vlm))"
        )
    filtering = algo.dynamic_sampling or algo.accuracy_band is not None
    refills = filtering or algo.max_prompt_tokens is not None
    rounds = algo.max_resample_rounds + 1 if refills else 1
    kept: Rollouts | None = None
    spare: Rollouts | None = None  # dropped groups, used to top up when refills run out
    times = {"generate": 0.0, "score": 0.0}
    dropped_var = dropped_band = dropped_long = 0
    round_ = 0
    need = B
    while round_ < rounds and any_rank(need > 0):
        examples = draw(need)
        prompts = [render(ex, stage.view, stage.template, image_root) for ex in examples]
        if algo.max_prompt_tokens is not None and prompts:
            fits = [n <= algo.max_prompt_tokens for n in prompt_tokens(prompts)]
            dropped_long += fits.count(False)
            examples = [e for e, f in zip(examples, fits) if f]
            prompts = [p for p, f in zip(prompts, fits) if f]
        if examples:  # an empty list never reaches the engine
            r = generate_and_score(
                engine,
                examples,
                stage,
                seed + 1000 * round_,
                image_root=image_root,
                unparseable_gold=unparseable_gold,
                prompts=prompts,
            )
            for k in times:
                times[k] += r.times[k]
            if filtering:
                keep, n_var, n_band = _group_filter(r, algo)
                dropped_var += n_var
                dropped_band += n_band
                spare = _merge(spare, _select(r, [not k for k in keep]))
                r = _select(r, keep)
            kept = _merge(kept, r)
        need = B - (len(kept.examples) if kept else 0)
        round_ += 1
    if kept is None:
        kept = _empty(G)
    short = B - len(kept.examples)
    filler = 0
    if short > 0 and spare is not None:
        # Hand the update B groups whenever possible, so data-parallel ranks run the same number of
        # micro-batches. Filler groups are marked skipped: advantage 0, no gradient (under dynamic sampling
        # their rewards are all equal anyway; a group outside the band must not train either).
        top = _select(spare, [i < short for i in range(len(spare.examples))])
        filler = len(top.examples)
        top.skipped = [True] * len(top.rewards.total)
        kept = _merge(kept, top)
    kept.times = times
    kept.dropped_groups, kept.dropped_band, kept.dropped_long_prompts = (
        dropped_var,
        dropped_band,
        dropped_long,
    )
    kept.filler_groups = filler
    return kept


def _empty(G: int) -> Rollouts:
    return Rollouts(
        examples=[],
        prompts=[],
        completions=Completions([], [], [], [], []),
        rewards=RewardOutput(total=[], components={}),
        G=G,
        skipped=[],
    )


def _fill_skipped(rewards: torch.Tensor, skipped: torch.Tensor, G: int) -> torch.Tensor:
    """Rewards [N] with each skipped row set to the mean of its group's other rows (0 when none is left), so
    a skipped sample moves neither its group's baseline nor (much) its spread before its advantage is zeroed."""
    r = rewards.view(-1, G).clone()  # [B, G]
    s = skipped.view(-1, G)
    valid = (~s).float()
    mean = (r * valid).sum(1, keepdim=True) / valid.sum(1, keepdim=True).clamp(min=1.0)  # [B, 1]
    return torch.where(s, mean.expand_as(r), r).view(-1)


def step_advantages(
    r: Rollouts,
    algo,
    critic=None,
    old_logp: list[torch.Tensor] | None = None,
    ref_logp: list[torch.Tensor] | None = None,
    values: list[torch.Tensor] | torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Advantages of a step -> (adv, returns).

    adv is [N] for the group estimators (grpo, dr_grpo, rloo) and [N, T] for reinforce_pp_baseline and gae
    (T = the longest completion of the batch, right-padded with 0); returns is the critic's [N, T] target
    for gae, else None. With algo.kl_in "reward" and kl_coef > 0, old_logp and ref_logp ([N][T_i], the
    sampling and reference log-probs) give the per-token KL: summed into the sequence reward for the group
    estimators (as before), per token for reinforce_pp_baseline and gae (OpenRLHF). values ([N][T_i] or
    [N, T]) are the critic's rollout-time values, required for gae. Skipped rows (`Rollouts.skipped_rows`)
    get advantage 0 and are left out of every batch statistic.
    """
    N = len(r.rewards.total)
    if N == 0:
        return torch.zeros(0), None
    lengths = [len(c) for c in r.completions.completion_ids]
    T = max(1, max(lengths))
    skipped = torch.tensor(r.skipped_rows())  # [N] bool
    mask = (torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]).float()  # [N, T]
    live = mask * (~skipped).float()[:, None]  # [N, T]
    rewards = _fill_skipped(r.reward_tensor(), skipped, r.G) if skipped.any() else r.reward_tensor()
    kl = None
    if algo.kl_in == "reward" and algo.kl_coef > 0:
        if old_logp is None or ref_logp is None:
            raise ValueError("KL in the reward needs old_logp and ref_logp")
        kl = kl_estimator(algo.kl_estimator)(pad_rows(old_logp, T), pad_rows(ref_logp, T)) * mask  # [N, T]
    returns = None
    if algo.advantage == "gae":
        if values is None or critic is None:
            raise ValueError("advantage gae needs the critic's values and the critic config")
        v = values if torch.is_tensor(values) else pad_rows(values, T)
        v = v[:, :T].float()
        if algo.normalize_reward:
            rewards = standardize(rewards)
        adv, returns = gae_advantages(rewards, v, live, critic.gamma, critic.lam, kl, algo.kl_coef)
    elif algo.advantage == "reinforce_pp_baseline":
        adv = reinforce_pp_baseline_tokens(rewards, r.G, live, kl, algo.kl_coef, algo.normalize_reward)
    else:
        if kl is not None:
            rewards = rewards - algo.kl_coef * kl.sum(-1)
        if algo.normalize_reward:
            rewards = standardize(rewards)
        adv = compute_advantages(algo.advantage, rewards, r.G)  # [N]
        adv = torch.where(skipped, torch.zeros_like(adv), adv)
    return adv, returns


def advantages(r: Rollouts, name: str) -> torch.Tensor:
    """[N] advantages from the rollouts' total rewards (an empty batch gives an empty tensor); skipped rows
    get 0 and stay out of their group's baseline. The group estimators' shortcut of `step_advantages`."""
    if not r.examples:
        return torch.zeros(0)
    skipped = torch.tensor(r.skipped_rows())
    rewards = _fill_skipped(r.reward_tensor(), skipped, r.G) if skipped.any() else r.reward_tensor()
    adv = compute_advantages(name, rewards, r.G)
    return torch.where(skipped, torch.zeros_like(adv), adv)
