"""The reference rollout engine: transformers `generate`, batched, with the sampling log-probs recorded.

Temperature and top-p are applied by our own logits processor, which also records log_softmax(logits / T) of
each sampled token: exactly the quantity the trainer recomputes (logits / T, no nucleus renormalisation), so the
rollout and training log-probs agree up to numerics.
"""

from __future__ import annotations

import contextlib
import copy

import torch
from transformers import GenerationConfig, LogitsProcessor, LogitsProcessorList

from phaserl.rollout.base import SamplingParams
from phaserl.rollout.encode import encode_prompts
from phaserl.types import Completions, Prompt


class _RecordingWarper(LogitsProcessor):
    """Scale by 1/T, record log-probs, apply top-p. The token sampled at step t is read at step t+1."""

    def __init__(self, temperature: float, top_p: float, start: int):
        self.temperature = temperature if temperature > 0 else 1.0
        self.top_p = top_p
        self.start = start  # prompt length: input_ids[:, start:] are generated tokens
        self.prev: torch.Tensor | None = None  # [N, V] log-probs of the previous step
        self.logp: list[torch.Tensor] = []  # per step [N]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.prev is not None:
            self.logp.append(self.prev.gather(1, input_ids[:, -1:]).squeeze(1))
        scores = scores.float() / self.temperature
        self.prev = torch.log_softmax(scores, dim=-1)
        if self.top_p < 1.0:
            scores = _top_p_filter(scores, self.top_p)
        return scores

    def finish(self, last_tokens: torch.Tensor) -> torch.Tensor:
        """All recorded log-probs [N, T] once the last sampled tokens are known."""
        if self.prev is not None:
            self.logp.append(self.prev.gather(1, last_tokens[:, None]).squeeze(1))
            self.prev = None
        return torch.stack(self.logp, dim=1) if self.logp else torch.zeros(len(last_tokens), 0)


def _top_p_filter(scores: torch.Tensor, top_p: float) -> torch.Tensor:
    sorted_scores, idx = scores.sort(dim=-1, descending=True)
    cum = sorted_scores.softmax(-1).cumsum(-1)
    drop = cum - sorted_scores.softmax(-1) > top_p  # keep the smallest set whose mass reaches top_p
    sorted_scores = sorted_scores.masked_fill(drop, float("-inf"))
    return torch.empty_like(scores).scatter_(1, idx, sorted_scores)


class HFEngine:
    """Rollouts with `model.generate` on the trainer's own model (weights are shared: sync is a no-op)."""

    def __init__(self, model, processor, tokenizer, *, is_vlm: bool = False, batch_size: int = 64,
                 autocast_bf16: bool = False, rollout_dtype: torch.dtype | None = None):
        """rollout_dtype: sample from a copy of the weights in this dtype (bf16 on CPU: no per-step casts of
        fp32 weights, as autocast would do on every decoding step); sync_weights refreshes the copy."""
        self.rollout_dtype = rollout_dtype
        self.model = self._copy(model) if rollout_dtype is not None else model
        self.processor = processor
        self.tokenizer = tokenizer
        self.is_vlm = is_vlm
        self.batch_size = batch_size  # prompts per generate call
        self.autocast_bf16 = autocast_bf16
        eos = getattr(model.generation_config, "eos_token_id", None) or tokenizer.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos])
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else next(iter(self.eos_ids))

    def _copy(self, model):
        clone = copy.deepcopy(model).to(self.rollout_dtype)
        clone.eval().requires_grad_(False)
        return clone

    @torch.no_grad()
    def sync_weights(self, model) -> None:
        if self.rollout_dtype is None:
            self.model = model
            return
        src = dict(model.named_parameters())
        for name, p in self.model.named_parameters():
            p.copy_(src[name])

    @torch.no_grad()
    def generate(self, prompts: list[Prompt], params: SamplingParams) -> Completions:
        parts = []
        for i in range(0, len(prompts), self.batch_size):
            seed = None if params.seed is None else params.seed + i
            parts.append(self._generate_batch(prompts[i:i + self.batch_size], params, seed))
        return _concat(parts)

    def _generate_batch(self, prompts: list[Prompt], params: SamplingParams, seed: int | None) -> Completions:
        enc = encode_prompts(self.processor, prompts, self.is_vlm)
        P = enc["input_ids"].shape[1]
        greedy = params.temperature <= 0
        warper = _RecordingWarper(params.temperature, 1.0 if greedy else params.top_p, P)
        config = GenerationConfig(
            do_sample=not greedy, temperature=1.0, top_p=1.0, top_k=0, max_new_tokens=params.max_new_tokens,
            num_return_sequences=params.n, eos_token_id=sorted(self.eos_ids), pad_token_id=self.pad_id,
            use_cache=True)
        rng = torch.random.fork_rng() if seed is not None else contextlib.nullcontext()
        autocast = torch.autocast("cpu", dtype=torch.bfloat16) if self.autocast_bf16 else contextlib.nullcontext()
        was_training = self.model.training
        self.model.eval()
        try:
            with rng, autocast:
                if seed is not None:
                    torch.manual_seed(seed)
                seqs = self.model.generate(**enc, generation_config=config,
                                           logits_processor=LogitsProcessorList([warper]))
        finally:
            self.model.train(was_training)
        gen = seqs[:, P:]  # [N, T]
        logp = warper.finish(gen[:, -1]) if gen.shape[1] else torch.zeros(len(gen), 0)
        prompt_ids = enc["input_ids"].repeat_interleave(params.n, 0)
        prompt_mask = enc["attention_mask"].repeat_interleave(params.n, 0).bool()
        return self._unpad(prompt_ids, prompt_mask, gen, logp, params.max_new_tokens)

    def _unpad(self, prompt_ids, prompt_mask, gen, logp, max_new_tokens) -> Completions:
        out = Completions(prompt_ids=[], completion_ids=[], texts=[], logp=[], truncated=[])
        for row in range(gen.shape[0]):
            tokens = gen[row].tolist()
            end = next((t + 1 for t, tok in enumerate(tokens) if tok in self.eos_ids), None)
            truncated = end is None
            end = len(tokens) if end is None else end
            out.prompt_ids.append(prompt_ids[row][prompt_mask[row]].tolist())
            out.completion_ids.append(tokens[:end])
            out.logp.append(logp[row, :end].float().clone())
            out.truncated.append(truncated and end >= max_new_tokens)
            out.texts.append(self.tokenizer.decode(tokens[:end], skip_special_tokens=True))
        return out


def _concat(parts: list[Completions]) -> Completions:
    if len(parts) == 1:
        return parts[0]
    return Completions(
        prompt_ids=[x for p in parts for x in p.prompt_ids],
        completion_ids=[x for p in parts for x in p.completion_ids],
        texts=[x for p in parts for x in p.texts],
        logp=[x for p in parts for x in p.logp],
        truncated=[x for p in parts for x in p.truncated],
    )
