"""Named reward components and their weighted total, scored for a whole batch of N responses.

A reward is a plain function `(text, example) -> float | None`; None means "does not apply" and counts
0 in the total while staying visible (as None) in its own component.
"""

from __future__ import annotations

from collections.abc import Callable

import pydantic

from phaserl.rewards.accuracy import accuracy, accuracy_many
from phaserl.rewards.format import boxed_format, think_answer_format
from phaserl.rewards.last_number import last_number_reward
from phaserl.types import RewardOutput

REWARDS: dict[str, Callable] = {
    "format": think_answer_format,  # LMM-R1 strict <think>...</think><answer>...</answer>
    "format_boxed": boxed_format,  # exactly one final \boxed{}
    "accuracy": accuracy,
    "last_number": last_number_reward,  # the last number equals the gold (GSM8K rule; plain-number tasks)
}
# Rewards with a batch form (texts, examples, verifier) -> list, used instead of N single calls.
BATCHED: dict[str, Callable] = {"accuracy": accuracy_many}
UNPARSEABLE_GOLD_POLICIES = ("skip", "zero")


def register_reward(name: str, fn: Callable, batched: Callable | None = None) -> None:
    """Add a reward under `name` (before configs that use it are validated)."""
    REWARDS[name] = fn
    if batched is not None:
        BATCHED[name] = batched


class RewardSpec(pydantic.BaseModel):
    """One weighted component of the reward."""

    model_config = pydantic.ConfigDict(extra="forbid")

    name: str  # a key of REWARDS: format | format_boxed | accuracy | last_number | a registered reward
    weight: float = 1.0  # its weight in the total

    @pydantic.field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        if name not in REWARDS:
            raise ValueError(f"unknown reward {name!r}; known: {sorted(REWARDS)}")
        return name


def _component(spec: RewardSpec, texts: list[str], examples: list, verifier) -> list[float | None]:
    if spec.name in BATCHED:
        return list(BATCHED[spec.name](texts, examples, verifier))
    fn = REWARDS[spec.name]
    return [fn(text, ex) for text, ex in zip(texts, examples)]


def compute_rewards(
    texts: list[str], examples: list, specs: list[RewardSpec], verifier=None, unparseable_gold: str = "skip"
) -> RewardOutput:
    """Score N responses (texts[i] answers examples[i]): components by name and total = sum(weight * value).

    unparseable_gold: what an undecidable check becomes when the example does have a gold answer:
    "skip" keeps None (the trainer skips and counts it), "zero" scores it 0.0.
    """
    if len(texts) != len(examples):
        raise ValueError(f"{len(texts)} texts but {len(examples)} examples")
    if unparseable_gold not in UNPARSEABLE_GOLD_POLICIES:
        raise ValueError(
            f"unparseable_gold must be one of {UNPARSEABLE_GOLD_POLICIES}, got {unparseable_gold!r}"
        )
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"each reward may appear once, got {names}")
    components: dict[str, list[float | None]] = {}
    total = [0.0] * len(texts)  # [N]
    for spec in specs:
        values = _component(spec, texts, examples, verifier)  # [N]
        if unparseable_gold == "zero":
            values = [0.0 if v is None and ex.answer is not None else v for v, ex in zip(values, examples)]
        components[spec.name] = values
        for i, v in enumerate(values):
            if v is not None:
                total[i] += spec.weight * v
    return RewardOutput(total=total, components=components)


def undecidable(rewards: RewardOutput, examples: list) -> list[bool]:
    """[N] True where a component is None although the example has a gold answer: the check could not decide
    (gold unparseable, verifier timeout or crash) and, under unparseable_gold "skip", counted 0 in the total.
    Such a sample must get no gradient (collect.step_advantages zeroes its advantage): its total would
    otherwise be the format reward alone, and training on it would reward format regardless of correctness."""
    n = len(rewards.total)
    if len(examples) != n:
        raise ValueError(f"{n} rewards but {len(examples)} examples")
    return [
        ex.answer is not None and any(v[i] is None for v in rewards.components.values())
        for i, ex in enumerate(examples)
    ]
