"""The reference engine's sampler (rollout/hf.py): the next tokens from a decoding step's logits with plain torch
ops, on any device, and their log-probs and entropies.

The CPU engine's sampler (rollout/cpu/sampling.py) draws from the same distribution with fewer passes over the
vocabulary; both take the argmax of the same float32 scores when greedy, so greedy tokens agree exactly.
"""

from __future__ import annotations

import torch


def sample_next(
    logits: torch.Tensor, temperature: float, top_p: float, gen: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Next tokens [n] from logits [n, V] (greedy when temperature <= 0), their log_softmax(logits / T) [n] and
    the entropy of softmax(logits / T) [n]: the quantities the trainer recomputes (no nucleus renormalisation in
    the log-probs). `gen`, when given, is a generator of the logits' device."""
    scores = logits.float()  # [n, V]
    if temperature > 0:
        scores = scores / temperature
    logp_all = torch.log_softmax(scores, dim=-1)  # [n, V]
    if temperature <= 0:
        tok = scores.argmax(-1)
    else:
        probs = (top_p_filter(scores, top_p) if top_p < 1.0 else scores).softmax(-1)
        tok = torch.multinomial(probs, 1, generator=gen).squeeze(1)
    entropy = torch.special.entr(logp_all.exp()).sum(-1)  # entr(0) = 0: masked tokens add nothing
    return tok, logp_all.gather(1, tok[:, None]).squeeze(1), entropy


def top_p_filter(scores: torch.Tensor, top_p: float) -> torch.Tensor:
    """scores [n, V] with every token outside the nucleus (the smallest set whose mass reaches top_p) at -inf."""
    sorted_scores, idx = scores.sort(dim=-1, descending=True)
    cum = sorted_scores.softmax(-1).cumsum(-1)
    drop = cum - sorted_scores.softmax(-1) > top_p  # keep the smallest set whose mass reaches top_p
    sorted_scores = sorted_scores.masked_fill(drop, float("-inf"))
    return torch.empty_like(scores).scatter_(1, idx, sorted_scores)
