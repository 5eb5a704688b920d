"""Completions for scripted engines in tests: only the texts matter, every row one token with log-prob 0."""

import torch

from phaserl.types import Completions


def completions_of(texts: list[str]) -> Completions:
    """Completions holding `texts`, one row each (a one-token prompt and completion, not truncated)."""
    n = len(texts)
    return Completions(
        prompt_ids=[[0]] * n,
        completion_ids=[[0]] * n,
        texts=list(texts),
        logp=[torch.zeros(1)] * n,
        truncated=[False] * n,
    )
