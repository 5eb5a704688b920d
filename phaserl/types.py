"""Records that flow between the rollout engine, the rewards and the update.

Glossary: B prompts per step, G samples per prompt (group size), N = B * G, T completion length.
Samples of one prompt are contiguous: sample i belongs to prompt i // G.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class Prompt:
    """A rendered prompt: chat messages plus the images they reference (in order of appearance)."""

    messages: list[dict]
    images: list = field(default_factory=list)  # PIL images, already loaded


@dataclass
class Completions:
    """What an engine returns for B prompts x G samples (N rows, grouped by prompt)."""

    prompt_ids: list[list[int]]  # [N][P_i] prompt token ids (repeated G times)
    completion_ids: list[list[int]]  # [N][T_i] sampled tokens, EOS included when it was produced
    texts: list[str]  # [N] decoded completions, special tokens removed
    logp: list[torch.Tensor]  # [N][T_i] sampling log-probs of each sampled token (float32)
    truncated: list[bool]  # [N] True when max_new_tokens was reached without EOS
    entropy: list[float] | None = None  # [N] mean entropy of the sampling distribution over each row's tokens

    def __len__(self) -> int:
        return len(self.texts)


@dataclass
class RewardOutput:
    """total[N] is the weighted sum used for advantages; components keep each named reward (None = n/a)."""

    total: list[float]
    components: dict[str, list[float | None]]
