"""The CPU engine's sampler: the next tokens from a decoding step's logits, and their log-probs, in few passes
over [n, V] and with one uniform per row (rollout/sampling.py is the plain torch sampler of the reference engine;
both take the same argmax when greedy)."""

from __future__ import annotations

import torch

from phaserl.policy import EXP_FLOOR
from phaserl.rollout.sampling import top_p_filter


def sample_next(
    logits: torch.Tensor, temperature: float, top_p: float, gen: torch.Generator | None, entropy: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Next tokens [n] from logits [n, V] (greedy when temperature <= 0), their log_softmax(logits / T) [n], and
    with `entropy` the entropy of softmax(logits / T) [n] (else None). Runs on the logits' device; `gen`, when
    given, must be a generator of that device.

    Few passes over [n, V]: e = exp(scores - max), floored at exp(EXP_FLOOR) so no exp() lands on a slow float32
    denormal, is both the normaliser's terms and the unnormalised distribution sample_categorical inverts (a
    floored token weighs 1.6e-38 against a total >= 1: never drawn); log-probs are gathered for the drawn tokens
    only (a full log_softmax, then a masked exp of it, would make two more passes over [n, V])."""
    scores = logits.float()
    if temperature > 0 and temperature != 1.0:
        scores = scores / temperature
    m = scores.amax(dim=-1, keepdim=True)  # [n, 1]
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    e = (scores - m).clamp_(min=EXP_FLOOR).exp_()  # [n, V]
    lse = e.sum(-1).log_() + m.squeeze(1)  # [n]: logsumexp, as policy.logsumexp_fast
    if temperature <= 0:
        tok = scores.argmax(-1)
    elif top_p < 1.0:
        tok = sample_categorical(top_p_filter(scores, top_p).softmax(-1), gen)
    else:
        tok = sample_categorical(e, gen)
    ent = None
    if entropy:  # H = lse - E_p[scores], with p = e / sum(e)
        ent = lse - (e * scores).sum(-1) / e.sum(-1)
    return tok, scores.gather(1, tok[:, None]).squeeze(1) - lse, ent


def sample_categorical(probs: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
    """One draw per row of probs [n, V] by inverting the CDF: [n].

    Same distribution as torch.multinomial, which on the CPU draws V exponentials per row (about a third of a
    135M model's decoding step at V = 49k); this draws one uniform per row. The CDF is inverted in two levels:
    a float64 cumsum over blocks of the vocabulary finds the block, then one inside that block finds the
    token, so no [n, V] float64 tensor is ever made (at V = 49k a full float64 cumsum and its buffers are a
    visible share of a decoding step; a float64 sum over the blocks would still convert all of probs, so
    each block of <= 512 is summed in float32, to ~1e-6 of its own mass). The cumulative sums are float64 so
    tail blocks keep their mass; u in (0, total] never lands on a zero-probability token."""
    n, V = probs.shape
    block = block_size(V)
    if block is None:  # a vocabulary with no usable divisor: one level
        cdf = probs.double().cumsum(-1)  # [n, V]
        u = (1.0 - torch.rand(n, 1, generator=gen, dtype=torch.float64, device=probs.device)) * cdf[:, -1:]
        return torch.searchsorted(cdf, u).squeeze(1).clamp(max=V - 1)
    blocks = probs.view(n, V // block, block).sum(-1).double()  # [n, nb]
    cdf = blocks.cumsum(-1)  # [n, nb]
    u = (1.0 - torch.rand(n, 1, generator=gen, dtype=torch.float64, device=probs.device)) * cdf[
        :, -1:
    ]  # [n, 1]
    # The first block whose cdf reaches u: cdf[b-1] < u, so b has mass (a 0-mass block repeats its cdf exactly).
    b = torch.searchsorted(cdf, u).squeeze(1).clamp(max=V // block - 1)  # [n]
    before = torch.where(
        b > 0, cdf.gather(1, (b - 1).clamp(min=0)[:, None]).squeeze(1), torch.zeros_like(u[:, 0])
    )
    inner = (
        probs.view(n, V // block, block)[torch.arange(n, device=probs.device), b].double().cumsum(-1)
    )  # [n, block]
    # u - before > 0 (so never a 0-mass head of the block); capped at the block's own sum (rounding)
    rest = (u.squeeze(1) - before).clamp(max=inner[:, -1])  # [n]
    k = torch.searchsorted(inner, rest[:, None]).squeeze(1).clamp(max=block - 1)
    return b * block + k


def block_size(V: int) -> int | None:
    """The largest power of two <= 512 dividing V (at least 16), else None."""
    block = 512
    while block >= 16:
        if V % block == 0:
            return block
        block //= 2
    return None
