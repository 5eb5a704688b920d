"""The protocol every rollout engine follows (HF generate is the reference; vLLM must match it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from phaserl.types import Completions, Prompt


@dataclass
class SamplingParams:
    n: int = 1  # G samples per prompt
    max_new_tokens: int = 256
    temperature: float = 1.0  # 0 means greedy
    top_p: float = 1.0
    seed: int | None = None  # per-call seed; the engine derives per-sample streams from it


class RolloutEngine(Protocol):
    def generate(self, prompts: list[Prompt], params: SamplingParams) -> Completions:
        """Return N = len(prompts) * params.n completions, the samples of prompt i at rows [i*n, (i+1)*n)."""
        ...

    def sync_weights(self, model) -> None:
        """Make the engine sample from `model`'s current weights (a no-op when it shares them)."""
        ...
