"""The fast decoding loop samples what `generate` would, and records the log-probs the trainer recomputes."""

import pytest
import torch

from phaserl.data.generators import arithmetic, arithmetic_vl
from phaserl.data.render import render
from phaserl.policy import build_sequences, completion_logp
from phaserl.rollout.base import SamplingParams
from phaserl.rollout.cpu import CPUEngine
from phaserl.rollout.cpu.sampling import sample_categorical


def _prompts(lm):
    if lm.is_vlm:
        exs, view = arithmetic_vl(n=3, seed=2, digits=2), "image"
    else:
        exs, view = arithmetic(n=3, seed=2, digits=3), "text"
    return [render(e, view, "boxed" if i == 0 else "plain") for i, e in enumerate(exs)]  # unequal lengths


def _engine(lm, **kw):
    return CPUEngine(lm.model, lm.processor, lm.tokenizer, is_vlm=lm.is_vlm, **kw)


def _training_logp(lm, prompts, c, G):
    rows = [p for p in prompts for _ in range(G)]
    inputs, targets, mask = build_sequences(
        lm.processor, rows, c.completion_ids, lm.is_vlm, lm.tokenizer.pad_token_id
    )
    return completion_logp(lm.model, inputs, targets, 1.0, False, "cpu"), mask


def test_loop_is_the_default_for_supported_models(lm):
    assert _engine(lm).decoder == "loop"
    assert _engine(lm, decoder="generate").decoder == "generate"
    with pytest.raises(ValueError, match="decoder"):
        _engine(lm, decoder="fast")


def test_greedy_loop_equals_generate(lm):
    prompts = _prompts(lm)
    params = SamplingParams(n=1, max_new_tokens=10, temperature=0)
    loop = _engine(lm).generate(prompts, params)
    ref = _engine(lm, decoder="generate").generate(prompts, params)
    assert loop.completion_ids == ref.completion_ids
    assert loop.prompt_ids == ref.prompt_ids and loop.texts == ref.texts and loop.truncated == ref.truncated
    for a, b in zip(loop.logp, ref.logp):
        assert torch.allclose(a, b, atol=1e-5)


def test_rows_leave_the_batch_at_eos(lm):
    """Make a token that some rows emit early an EOS: those rows stop there, the others run on unchanged."""
    prompts = _prompts(lm)
    params = SamplingParams(n=1, max_new_tokens=10, temperature=0)
    free = _engine(lm).generate(prompts, params).completion_ids
    # a token that ends some row early and that another row never emits
    stop = next(t for c in free for t in c[:5] if any(t not in other for other in free))
    engines = [_engine(lm), _engine(lm, decoder="generate")]
    for e in engines:
        e.eos_ids = e.eos_ids | {stop}
    loop, ref = (e.generate(prompts, params) for e in engines)
    assert loop.completion_ids == ref.completion_ids
    ends = [c.index(stop) + 1 if stop in c else len(c) for c in free]
    assert [len(c) for c in loop.completion_ids] == ends
    assert min(ends) <= 5 and max(ends) == 10  # one row stopped early, another kept writing
    assert [c[-1] == stop for c in loop.completion_ids] == [not t for t in loop.truncated]


def test_sampled_logp_match_the_training_forward(lm):
    """On-policy PPO ratios are 1 only if the engine's log-probs are the trainer's (fp32 weights: to 1e-5)."""
    prompts = _prompts(lm)
    c = _engine(lm).generate(prompts, SamplingParams(n=2, max_new_tokens=8, temperature=1.0, seed=3))
    ref, mask = _training_logp(lm, prompts, c, G=2)
    for j, lp in enumerate(c.logp):
        assert torch.allclose(lp, ref[j, : len(lp)], atol=2e-5)
    assert int(mask.sum()) == sum(len(x) for x in c.completion_ids)


def test_copy_with_broadcast_gqa_attention_matches_exactly_in_fp32(lm):
    """A float32 copy isolates the copy's attention kernel (gqa_attention) and the growing cache from bf16."""
    prompts = _prompts(lm)
    engine = _engine(lm, rollout_dtype=torch.float32)
    assert engine.model is not lm.model and engine.model.config._attn_implementation == "phaserl_gqa"
    greedy = SamplingParams(n=1, max_new_tokens=10, temperature=0)
    assert (
        engine.generate(prompts, greedy).completion_ids
        == _engine(lm).generate(prompts, greedy).completion_ids
    )
    c = engine.generate(prompts, SamplingParams(n=2, max_new_tokens=8, temperature=1.0, seed=3))
    ref, _ = _training_logp(lm, prompts, c, G=2)
    for j, lp in enumerate(c.logp):
        assert torch.allclose(lp, ref[j, : len(lp)], atol=2e-5)


def test_gqa_attention_equals_eager_attention():
    from transformers.models.llama.modeling_llama import eager_attention_forward

    from phaserl.attention import gqa_attention

    gen = torch.Generator().manual_seed(0)
    for n, H, kv, q, L in [(3, 9, 3, 1, 20), (2, 9, 3, 7, 7), (1, 4, 4, 5, 5)]:  # decode, GQA prefill, MHA
        module = type("Attn", (), {"num_key_value_groups": H // kv, "training": False})()
        query, key, value = (torch.randn(*s, 16, generator=gen) for s in ((n, H, q), (n, kv, L), (n, kv, L)))
        mask = torch.zeros(n, 1, q, L)
        mask[0, :, :, :2] = torch.finfo(torch.float32).min  # left padding on row 0
        ref, _ = eager_attention_forward(module, query, key, value, mask, 0.25)
        got, _ = gqa_attention(module, query, key, value, mask, 0.25)
        assert got.shape == ref.shape == (n, q, H, 16)
        assert torch.allclose(got, ref, atol=1e-6)


def test_bf16_copy_is_close_to_fp32_training_forward(lm):
    prompts = _prompts(lm)
    engine = _engine(lm, rollout_dtype=torch.bfloat16)
    assert engine.model.dtype == torch.bfloat16
    c = engine.generate(prompts, SamplingParams(n=2, max_new_tokens=8, temperature=1.0, seed=3))
    ref, _ = _training_logp(lm, prompts, c, G=2)
    diff = torch.cat([(lp - ref[j, : len(lp)]).abs() for j, lp in enumerate(c.logp)])
    assert float(diff.max()) < 0.15 and float(diff.mean()) < 0.05


def test_seeded_sampling_repeats_and_differs_by_seed(lm):
    prompts = _prompts(lm)[:2]
    e = _engine(lm)
    a, b = (
        e.generate(prompts, SamplingParams(n=3, max_new_tokens=6, temperature=1.0, seed=7)) for _ in range(2)
    )
    other = e.generate(prompts, SamplingParams(n=3, max_new_tokens=6, temperature=1.0, seed=8))
    assert a.completion_ids == b.completion_ids and a.completion_ids != other.completion_ids
    assert len(set(map(tuple, a.completion_ids[:3]))) > 1  # the G samples of a prompt differ


def test_sample_categorical_follows_the_distribution():
    probs = torch.tensor([[0.0, 0.5, 0.0, 0.3, 0.2]]).repeat(20000, 1)
    probs[:, 2] = 0.0
    tok = sample_categorical(probs, torch.Generator().manual_seed(0))
    freq = torch.bincount(tok, minlength=5).float() / len(tok)
    assert freq[0] == 0 and freq[2] == 0  # zero-probability tokens are never drawn
    assert torch.allclose(freq, probs[0], atol=0.015)
    peaked = torch.zeros(4, 49152)
    peaked[torch.arange(4), torch.tensor([0, 7, 49151, 300])] = 1.0
    assert sample_categorical(peaked).tolist() == [0, 7, 49151, 300]


@pytest.mark.parametrize("V", [4096, 4099])  # two-level inversion (blocks of 512) and the one-level fallback
def test_sample_categorical_matches_multinomial_in_distribution(V):
    torch.manual_seed(0)
    probs = torch.softmax(torch.randn(1, V) * 2, -1)
    probs[0, : V // 2 : 3] = 0.0  # zero-probability tokens scattered through every block
    probs = probs / probs.sum()
    gen = torch.Generator().manual_seed(1)
    tok = torch.cat([sample_categorical(probs.repeat(2000, 1), gen) for _ in range(50)])  # 100k draws
    assert not bool(torch.isin(tok, torch.arange(0, V // 2, 3)).any())
    freq = torch.bincount(tok, minlength=V).double() / len(tok)
    tv = 0.5 * float((freq - probs[0].double()).abs().sum())
    ref = torch.multinomial(probs[0], len(tok), replacement=True, generator=torch.Generator().manual_seed(2))
    tv_ref = 0.5 * float(
        (torch.bincount(ref, minlength=V).double() / len(tok) - probs[0].double()).abs().sum()
    )
    assert tv < tv_ref * 1.15  # as close to the distribution as torch.multinomial's own draws


def test_sample_categorical_edges():
    last_block_only = torch.zeros(3, 1024)
    last_block_only[:, -1] = 1.0  # all mass in the very last token of the last block
    assert sample_categorical(last_block_only).tolist() == [1023] * 3
    tiny = torch.zeros(2, 1024)
    tiny[:, 600] = 1e-30  # mass far below float32 resolution elsewhere still gets found
    assert sample_categorical(tiny).tolist() == [600, 600]


def test_reserved_cache_layer_equals_concatenation():
    """The decoding loop's preallocated KV layer holds what DynamicLayer's concatenation holds, through row
    compaction and past its reserve (where it falls back to concatenating)."""
    from transformers.cache_utils import DynamicLayer

    from phaserl.rollout.hf import ReservedLayer

    g = torch.Generator().manual_seed(0)
    k0, v0 = torch.randn(4, 2, 5, 3, generator=g), torch.randn(4, 2, 5, 3, generator=g)
    ref, got = DynamicLayer(), ReservedLayer(k0, v0, extra=3)
    ref.update(k0, v0)
    for step in range(5):  # 3 within the reserve, then 2 past it
        k, v = (
            torch.randn(len(ref.keys), 2, 1, 3, generator=g),
            torch.randn(len(ref.keys), 2, 1, 3, generator=g),
        )
        a, b = ref.update(k, v), got.update(k, v)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
        if step == 1:
            idx = torch.tensor([0, 2, 3])
            ref.batch_select_indices(idx)
            got.batch_select_indices(idx)
    assert got.get_seq_length() == ref.get_seq_length() == 10 and got.keys.shape[0] == 3
