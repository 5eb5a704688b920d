"""The reference rollout engine: transformers models on any device, batched, with the sampling log-probs recorded.

Every other engine is tested against this one (the CPU engine, rollout/cpu/; vLLM, rollout/vllm.py), so it stays
plain: the transformers forward, plain torch sampling (rollout/sampling.py), nothing tuned for one device. It is what
a GPU samples with when vLLM is not chosen.

Two decoders sample from the same distribution:
- "loop" (default where the architecture allows: causal LMs and M-RoPE VLMs): our own KV-cache loop. Each
  distinct prompt (and its images, through the vision tower) is prefilled once and its cache fanned out to its
  G rows, where `generate` would prefill and encode it G times; rows that have emitted EOS leave the batch, so
  the tail of a step runs only the rows still writing.
- "generate": transformers `generate` with our logits processor (the fallback for other architectures).
Both apply temperature and top-p themselves and record log_softmax(logits / T) of each sampled token: exactly
the quantity the trainer recomputes (logits / T, no nucleus renormalisation), so the rollout and training
log-probs agree up to numerics.

The engine runs on the device the model is on (inputs, buffers, random numbers). Under FSDP the trainer's
parameters are shards: the engine then samples from a plain, unsharded copy of the model, refreshed from the
gathered weights at every sync, so generation (whose length differs from rank to rank) issues no collective.
"""

from __future__ import annotations

import contextlib
import copy

import torch
from transformers import GenerationConfig, LogitsProcessor, LogitsProcessorList
from transformers.cache_utils import DynamicLayer

import phaserl.attention  # noqa: F401  (registers phaserl's attention kernels a copy may be set to)
from phaserl.distributed import is_sharded, iter_full_params
from phaserl.models import is_peft
from phaserl.names import clean_name, unwrap
from phaserl.rollout.base import SamplingParams
from phaserl.rollout.encode import (
    continuation_positions,
    encode_prompts,
    prefix_position_ids,
    select_cache,
    supports_shared_prefix,
)
from phaserl.rollout.sampling import sample_next, top_p_filter
from phaserl.types import Completions, Prompt


class ReservedLayer(DynamicLayer):
    """A KV-cache layer with room reserved for `extra` more positions: each decoding step writes its key and
    value into the buffer and exposes a view of the filled part, where DynamicLayer concatenates (copying the
    whole cache, every layer, every step). Past the reserve it falls back to concatenation."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, extra: int):
        super().__init__()
        n, h, L, d = keys.shape
        self.lazy_initialization(keys, values)
        self._k = keys.new_empty(n, h, L + extra, d)
        self._v = values.new_empty(n, h, L + extra, d)
        self._k[:, :, :L] = keys
        self._v[:, :, :L] = values
        self.keys, self.values = self._k[:, :, :L], self._v[:, :, :L]

    def update(self, key_states, value_states, *args, **kwargs):
        L, q = self.keys.shape[-2], key_states.shape[-2]
        if L + q > self._k.shape[-2]:
            return super().update(key_states, value_states)
        self._k[:, :, L : L + q] = key_states
        self._v[:, :, L : L + q] = value_states
        self.keys, self.values = self._k[:, :, : L + q], self._v[:, :, : L + q]
        return self.keys, self.values

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        L = self.keys.shape[-2]
        self._k, self._v = self._k[indices], self._v[indices]
        self.keys, self.values = self._k[:, :, :L], self._v[:, :, :L]


def reserve_cache(cache, extra: int):
    """The cache with `extra` positions reserved in every layer (see ReservedLayer); the same object."""
    cache.layers = [ReservedLayer(layer.keys, layer.values, extra) for layer in cache.layers]
    return cache


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
            scores = top_p_filter(scores, self.top_p)
        return scores

    def finish(self, last_tokens: torch.Tensor) -> torch.Tensor:
        """All recorded log-probs [N, T] once the last sampled tokens are known."""
        if self.prev is not None:
            self.logp.append(self.prev.gather(1, last_tokens[:, None]).squeeze(1))
            self.prev = None
        return torch.stack(self.logp, dim=1) if self.logp else torch.zeros(len(last_tokens), 0)


class HFEngine:
    """Rollouts on the trainer's own model (weights shared: sync is a no-op) or on a copy of it in
    `rollout_dtype` (sync refreshes the copy)."""

    def __init__(
        self,
        model,
        processor,
        tokenizer,
        *,
        is_vlm: bool = False,
        batch_size: int = 64,
        autocast_bf16: bool = False,
        rollout_dtype: torch.dtype | None = None,
        decoder: str = "auto",
        copy_attn_implementation: str | None = "phaserl_gqa",
    ):
        """rollout_dtype: sample from a copy of the weights in this dtype (bf16: no per-step casts of fp32
        weights, as autocast would do on every decoding step); sync_weights refreshes the copy.
        decoder: "loop", "generate" or "auto" (the loop when the architecture supports it).
        copy_attn_implementation: attention kernel of that copy (None: the model's own). "phaserl_gqa"
        (phaserl/attention.py's gqa_attention): two plain torch matmuls on any device, query heads sharing their
        KV head by broadcasting; the CPU engine's copy and its lean step compute the same, so the two engines'
        greedy tokens agree exactly."""
        self.copy_attn_implementation = copy_attn_implementation
        if decoder not in ("auto", "loop", "generate"):
            raise ValueError(f"decoder must be auto, loop or generate, not {decoder!r}")
        self.sharded = is_sharded(model)
        if self.sharded and rollout_dtype is None:  # sample from a plain copy in the trainer's own dtype
            rollout_dtype = next(model.parameters()).dtype
        self.rollout_dtype = rollout_dtype
        self.model = self._copy(model) if rollout_dtype is not None else model
        self.device = next(self.model.parameters()).device
        self.processor = processor
        self.tokenizer = tokenizer
        self.is_vlm = is_vlm
        self.batch_size = batch_size  # prompts per generate call
        self.autocast_bf16 = autocast_bf16
        eos = getattr(model.generation_config, "eos_token_id", None) or tokenizer.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos])
        self.pad_id = (
            tokenizer.pad_token_id if tokenizer.pad_token_id is not None else next(iter(self.eos_ids))
        )
        loop_ok = supports_shared_prefix(self.model, is_vlm)
        if decoder == "loop" and not loop_ok:
            raise ValueError("decoder='loop' does not support this architecture; use 'generate'")
        self.decoder = "loop" if decoder == "loop" or (decoder == "auto" and loop_ok) else "generate"

    def _copy(self, model):
        clone = (
            _plain_copy(model, self.rollout_dtype)
            if self.sharded
            else copy.deepcopy(model).to(self.rollout_dtype)
        )
        clone.eval().requires_grad_(False)
        # RoPE frequencies stay float32, as in the trained model: .to(bf16) rounds them by up to 2^-9, which at
        # position 100 turns a rotation by up to 0.14 rad in SmolLM2 (a positional code the trained model does not
        # use; on the speed benchmark's samples its effect on the log-probs was below the bf16 weights' own).
        for name, buf in unwrap(model).named_buffers():
            if name.endswith("inv_freq"):
                owner, _, leaf = name.rpartition(".")
                setattr(clone.get_submodule(owner), leaf, buf.detach().clone())
        if self.copy_attn_implementation and hasattr(clone, "set_attn_implementation"):
            clone.set_attn_implementation(self.copy_attn_implementation)
        return clone

    @torch.no_grad()
    def sync_weights(self, model) -> None:
        """Sample from `model`'s current weights. Collective when the model is sharded: call on every rank."""
        if self.rollout_dtype is None:
            self.model = model
            return
        if self.sharded:
            _load_full_params(self.model, model)  # one gathered tensor at a time
            return
        src = _sources(model)
        for name, p in self.model.named_parameters():
            p.copy_(src[name])

    @torch.no_grad()
    def generate(self, prompts: list[Prompt], params: SamplingParams) -> Completions:
        parts = []
        for i in range(0, len(prompts), self.batch_size):
            seed = None if params.seed is None else params.seed + i
            batch = prompts[i : i + self.batch_size]
            run = self._decode_batch if self.decoder == "loop" else self._generate_batch
            parts.append(run(batch, params, seed))
        return _concat(parts)

    def _autocast(self):
        if not self.autocast_bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def _encode(self, prompts: list[Prompt]) -> dict[str, torch.Tensor]:
        return {k: v.to(self.device) for k, v in encode_prompts(self.processor, prompts, self.is_vlm).items()}

    def _decode_batch(self, prompts: list[Prompt], params: SamplingParams, seed: int | None) -> Completions:
        """Our KV-cache loop: prefill each prompt once, fan out to G rows, drop rows as they finish."""
        enc = self._encode(prompts)
        G, T = params.n, params.max_new_tokens
        dev = self.device
        rows = torch.arange(len(prompts), device=dev).repeat_interleave(G)  # [N] prompt of each row
        gen = torch.Generator(device=dev).manual_seed(seed) if seed is not None else None
        tokens = torch.full((len(rows), T), self.pad_id, dtype=torch.long, device=dev)  # [N, T]
        logp = torch.zeros(len(rows), T, device=dev)  # [N, T]
        entropy = torch.zeros(len(rows), T, device=dev)  # [N, T]
        was_training = self.model.training
        self.model.eval()
        try:
            with self._autocast():
                self._decode_loop(enc, rows, params, gen, tokens, logp, entropy)
        finally:
            self.model.train(was_training)
        prompt_ids = enc["input_ids"][rows]
        prompt_mask = enc["attention_mask"][rows].bool()
        return self._unpad(prompt_ids, prompt_mask, tokens, logp, T, entropy)

    def _decode_loop(self, enc, rows, params, gen, tokens, logp, entropy) -> None:
        """Fill tokens/logp/entropy [N, T] in place; finished rows keep pad tokens after their EOS."""
        pos = prefix_position_ids(self.model, enc, self.is_vlm)  # [B, P] or [3, B, P]
        out = self.model(**enc, position_ids=pos, use_cache=True, logits_to_keep=1)
        stepper = self._steps(out.past_key_values, enc["attention_mask"], pos, rows, params.max_new_tokens)
        logits = out.logits[:, -1][rows]  # [n, V], n rows still writing
        alive = torch.arange(len(rows), device=rows.device)  # [n] row ids still writing
        eos = torch.tensor(sorted(self.eos_ids), device=rows.device)
        for t in range(params.max_new_tokens):
            tok, lp, ent = self._sample(logits, params, gen)  # [n] each
            tokens[alive, t] = tok
            logp[alive, t] = lp
            entropy[alive, t] = ent
            keep = ~torch.isin(tok, eos)
            if t + 1 == params.max_new_tokens or not keep.any():
                return
            if not keep.all():  # compact: finished rows leave the batch and its cache
                idx = keep.nonzero().squeeze(1)
                alive, tok = alive[idx], tok[idx]
                stepper.select(idx)
            logits = stepper.step(tok, t)

    def _steps(self, cache, prompt_mask, pos, rows, extra: int):
        """The decoding steps after the prefill: .step(tok, t) -> logits [n, V], .select(idx) drops rows."""
        return _ModelSteps(self.model, cache, prompt_mask, pos, rows, extra)

    def _sample(self, logits, params: SamplingParams, gen):
        """(tokens, log-probs, entropies) [n] each from logits [n, V]."""
        return sample_next(logits, params.temperature, params.top_p, gen)

    def _generate_batch(self, prompts: list[Prompt], params: SamplingParams, seed: int | None) -> Completions:
        enc = self._encode(prompts)
        P = enc["input_ids"].shape[1]
        greedy = params.temperature <= 0
        warper = _RecordingWarper(params.temperature, 1.0 if greedy else params.top_p, P)
        config = GenerationConfig(
            do_sample=not greedy,
            temperature=1.0,
            top_p=1.0,
            top_k=0,
            max_new_tokens=params.max_new_tokens,
            num_return_sequences=params.n,
            eos_token_id=sorted(self.eos_ids),
            pad_token_id=self.pad_id,
            use_cache=True,
        )
        devices = [self.device] if self.device.type != "cpu" else []
        rng = (
            torch.random.fork_rng(devices=devices, device_type=self.device.type)
            if seed is not None
            else contextlib.nullcontext()
        )
        was_training = self.model.training
        self.model.eval()
        try:
            with rng, self._autocast():
                if seed is not None:
                    torch.manual_seed(seed)
                seqs = self.model.generate(
                    **enc, generation_config=config, logits_processor=LogitsProcessorList([warper])
                )
        finally:
            self.model.train(was_training)
        gen = seqs[:, P:]  # [N, T]
        logp = warper.finish(gen[:, -1]) if gen.shape[1] else torch.zeros(len(gen), 0)
        prompt_ids = enc["input_ids"].repeat_interleave(params.n, 0)
        prompt_mask = enc["attention_mask"].repeat_interleave(params.n, 0).bool()
        return self._unpad(prompt_ids, prompt_mask, gen, logp, params.max_new_tokens)

    def _unpad(self, prompt_ids, prompt_mask, gen, logp, max_new_tokens, entropy=None) -> Completions:
        out = Completions(
            prompt_ids=[],
            completion_ids=[],
            texts=[],
            logp=[],
            truncated=[],
            entropy=[] if entropy is not None else None,
        )
        gen, logp = gen.cpu(), logp.cpu()  # one transfer, not one per row
        prompt_ids, prompt_mask = prompt_ids.cpu(), prompt_mask.cpu()
        entropy = entropy.cpu() if entropy is not None else None
        for row in range(gen.shape[0]):
            tokens = gen[row].tolist()
            end = next((t + 1 for t, tok in enumerate(tokens) if tok in self.eos_ids), None)
            truncated = end is None
            end = len(tokens) if end is None else end
            out.prompt_ids.append(prompt_ids[row][prompt_mask[row]].tolist())
            out.completion_ids.append(tokens[:end])
            out.logp.append(logp[row, :end].float().clone())
            if entropy is not None:
                out.entropy.append(float(entropy[row, :end].mean()) if end else 0.0)
            out.truncated.append(truncated and end >= max_new_tokens)
            out.texts.append(self.tokenizer.decode(tokens[:end], skip_special_tokens=True))
        return out


class _ModelSteps:
    """Decoding steps through the model's forward, on a reserved KV cache fanned out from the prompts' prefill."""

    def __init__(self, model, cache, prompt_mask, pos, rows, extra: int):
        self.model, self.pos, self.rows = model, pos, rows
        self.cache = reserve_cache(select_cache(cache, rows), extra)
        self.attn = prompt_mask[rows]  # [n, P + t]

    def select(self, idx: torch.Tensor) -> None:
        self.rows, self.attn = self.rows[idx], self.attn[idx]
        self.cache.batch_select_indices(idx)

    def step(self, tok: torch.Tensor, t: int) -> torch.Tensor:
        """Logits [n, V] after token t of each row."""
        self.attn = torch.cat([self.attn, self.attn.new_ones(len(tok), 1)], dim=1)
        out = self.model(
            input_ids=tok[:, None],
            attention_mask=self.attn,
            past_key_values=self.cache,
            use_cache=True,
            position_ids=continuation_positions(self.pos, self.rows, t, 1),
            logits_to_keep=1,
        )
        self.cache = out.past_key_values
        return out.logits[:, -1]


def _sources(model) -> dict[str, torch.Tensor]:
    """Parameters of `model` by name, a tied lm_head under its own name too."""
    return dict(model.named_parameters(remove_duplicate=False))


def _concat(parts: list[Completions]) -> Completions:
    if len(parts) == 1:
        return parts[0]
    return Completions(
        prompt_ids=[x for p in parts for x in p.prompt_ids],
        completion_ids=[x for p in parts for x in p.completion_ids],
        texts=[x for p in parts for x in p.texts],
        logp=[x for p in parts for x in p.logp],
        truncated=[x for p in parts for x in p.truncated],
        entropy=None if any(p.entropy is None for p in parts) else [x for p in parts for x in p.entropy],
    )


def _plain_copy(model, dtype: torch.dtype):
    """An unsharded module of `model`'s class on its device, in `dtype`, holding the gathered full weights
    (a collective: every rank builds its copy at the same time). Built without random initialisation."""
    try:
        from transformers.initialization import no_init_weights
    except ImportError:  # transformers < 5.2x
        from transformers.modeling_utils import no_init_weights

    base = unwrap(model)
    if is_peft(base):
        raise NotImplementedError("a LoRA policy under FSDP is not supported by the rollout engines; use DDP")
    device = next(base.parameters()).device
    with no_init_weights(), torch.device(device):
        clone = type(base)._from_config(base.config, dtype=dtype)
    if hasattr(clone, "tie_weights"):  # a tied lm_head is the embedding, as in the trained model
        clone.tie_weights()
    _load_full_params(clone, model)
    return clone


@torch.no_grad()
def _full_sources(model) -> dict[str, torch.Tensor]:
    """_sources of a sharded model: every parameter gathered to its full tensor (a collective, in the same order
    on every rank), tied names included."""
    full: dict[int, torch.Tensor] = {}
    out = {}
    for name, p in unwrap(model).named_parameters(remove_duplicate=False):
        if id(p) not in full:
            full[id(p)] = p.detach().full_tensor() if hasattr(p, "full_tensor") else p.detach()
        out[clean_name(name)] = full[id(p)]
    return out


@torch.no_grad()
def _load_full_params(clone, model) -> None:
    """Copy the full (gathered) parameters and buffers of a sharded `model` into the plain `clone`."""
    own = dict(clone.named_parameters(remove_duplicate=False))
    own.update(dict(clone.named_buffers()))
    seen = set()
    for name, tensor in iter_full_params(model, include_buffers=True):
        if name in own:
            own[name].copy_(tensor)
            seen.add(name)
    missing = [n for n, _ in clone.named_parameters() if n not in seen]
    if missing:
        raise RuntimeError(f"the rollout copy got no weights for {missing[:5]} (of {len(missing)})")
