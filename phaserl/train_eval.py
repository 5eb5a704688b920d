"""Evaluation during training: greedy accuracy and reward components on a fixed held-out subset.

Generation is `phaserl.eval.runner.generate_held_out`, the step `phaserl eval` uses; what differs is the
scoring: here the stage's own rewards (plus accuracy), averaged per view under `eval/<view>/...`."""

from __future__ import annotations

from phaserl.data.sources import load_examples
from phaserl.eval.runner import generate_held_out
from phaserl.rewards.combine import RewardSpec, compute_rewards
from phaserl.rollout.base import SamplingParams

_CACHE: dict = {}


def eval_examples(stage) -> list:
    """The stage's held-out examples (eval.data, first eval.limit), loaded once per process."""
    key = tuple(s.model_dump_json() for s in stage.eval.data)
    if key not in _CACHE:
        examples = [ex for spec in stage.eval.data for ex in load_examples(spec, log=lambda *_: None)]
        _CACHE[key] = examples[: stage.eval.limit]
    return _CACHE[key]


def evaluate_greedy(engine, stage, recipe) -> dict:
    """{'eval/<view>/<reward>': mean} for each view, greedy decoding, the stage's rewards plus accuracy."""
    examples = eval_examples(stage)
    if not examples:
        return {}
    specs = list(stage.rewards)
    if not any(s.name == "accuracy" for s in specs):
        specs.append(RewardSpec(name="accuracy"))
    out = {}
    params = SamplingParams(
        n=1, max_new_tokens=stage.eval.max_new_tokens or stage.rollout.max_new_tokens, temperature=0.0, seed=0
    )
    modes = [("", params)]
    if stage.eval.sampled:
        modes.append(
            (
                "sampled/",
                SamplingParams(
                    n=1,
                    max_new_tokens=params.max_new_tokens,
                    temperature=stage.rollout.temperature,
                    top_p=stage.rollout.top_p,
                    seed=1234,
                ),
            )
        )
    for view in stage.eval.views or [stage.view]:
        usable = [ex for ex in examples if view == "text" or ex.has_image]
        if view == "image+caption":
            usable = [ex for ex in usable if ex.caption]
        if not usable:
            continue
        for prefix, p in modes:
            _, _, completions = generate_held_out(
                engine, usable, p, view=view, template=stage.template, is_vlm=True
            )  # every usable example in `view`
            rewards = compute_rewards(
                completions.texts, usable, specs, unparseable_gold=recipe.unparseable_gold
            )
            for name, values in rewards.components.items():
                vals = [v for v in values if v is not None]
                out[f"eval/{view}/{prefix}{name}"] = sum(vals) / len(vals) if vals else None
        out[f"eval/{view}/n"] = len(usable)
    return out
