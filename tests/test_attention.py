"""phaserl_sdpa: sdpa's results (values and gradients) with a matmul path for small causal CPU attention."""

import pytest
import torch
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import sdpa_mask

import phaserl.attention as attention
from phaserl.attention import small_cpu_attention


def _module(H, kv, causal=True):
    return type("Attn", (), {"num_key_value_groups": H // kv, "training": True, "is_causal": causal})()


def _inputs(n, H, kv, q, L, seed=0):
    gen = torch.Generator().manual_seed(seed)
    shapes = ((n, H, q), (n, kv, L), (n, kv, L))
    return [torch.randn(*s, 16, generator=gen, requires_grad=True) for s in shapes]


def _bool_mask(n, q, L, pad):
    """sdpa's mask for left-padded rows (pad[j] masked keys) whose q queries are the last q of L positions."""
    padding = torch.ones(n, L, dtype=torch.bool)
    for j, p in enumerate(pad):
        padding[j, :p] = False
    return sdpa_mask(
        batch_size=n,
        q_length=q,
        kv_length=L,
        q_offset=L - q,
        attention_mask=padding,
        allow_is_causal_skip=False,
        device="cpu",
    )


CASES = [  # n, H, kv, q, L, padded rows
    (3, 9, 3, 1, 20, [2, 0, 5]),  # decoding step
    (2, 9, 3, 7, 7, None),  # full causal sequence, no mask (transformers passes None)
    (4, 9, 3, 6, 15, [0, 3, 0, 1]),  # completion tokens against a shared prompt's cache
    (2, 4, 4, 5, 5, [1, 0]),  # multi-head, padded prefill
]


@pytest.mark.parametrize("n,H,kv,q,L,pad", CASES)
def test_small_path_matches_sdpa_values_and_gradients(n, H, kv, q, L, pad, monkeypatch):
    calls = []
    monkeypatch.setattr(attention, "gqa_attention", lambda *a, **k: calls.append(1) or _gqa(*a, **k))
    mask = _bool_mask(n, q, L, pad) if pad is not None else None
    got_in, ref_in = _inputs(n, H, kv, q, L), _inputs(n, H, kv, q, L)
    got, _ = small_cpu_attention(_module(H, kv), *got_in, mask, scaling=0.25)
    ref, _ = sdpa_attention_forward(_module(H, kv), *ref_in, mask, scaling=0.25)
    assert calls, "the small path was not taken"
    assert got.shape == ref.shape == (n, q, H, 16)
    # queries that see some key (a padding query sees none: its output is junk in both, and never used)
    rows = torch.ones(n, q, dtype=torch.bool) if mask is None else mask[:, 0].any(-1)  # [n, q]
    assert torch.allclose(got[rows], ref[rows], atol=1e-5)
    weight = torch.randn(got.shape, generator=torch.Generator().manual_seed(1)) * rows[:, :, None, None]
    (got * weight).sum().backward()
    (ref * weight).sum().backward()
    for a, b in zip(got_in, ref_in):
        assert torch.allclose(a.grad, b.grad, atol=1e-5)


_gqa = attention.gqa_attention


def test_fully_masked_padding_rows_stay_finite():
    """A left-padded row's padding queries see no key at all: no NaN, which would poison the gradients."""
    n, H, kv, q, L = 2, 4, 2, 5, 5
    query, key, value = _inputs(n, H, kv, q, L)
    mask = _bool_mask(n, q, L, [3, 0])
    mask[0, :, :3] = False  # padding query positions attend nothing
    out, _ = small_cpu_attention(_module(H, kv), query, key, value, mask, scaling=0.25)
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(query.grad).all()


def test_bf16_autocast_inputs_give_float32_scores():
    """Under autocast the kernel still computes in float32 (as sdpa keeps float32 scores), returning q's dtype."""
    query, key, value = (t.detach().bfloat16() for t in _inputs(2, 9, 3, 6, 15))
    mask = _bool_mask(2, 6, 15, [0, 4])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got, _ = small_cpu_attention(_module(9, 3), query, key, value, mask, scaling=0.25)
    ref, _ = sdpa_attention_forward(
        _module(9, 3), query.float(), key.float(), value.float(), mask, scaling=0.25
    )
    assert got.dtype == torch.bfloat16
    assert torch.allclose(got.float(), ref, atol=1e-2)


@pytest.mark.parametrize("why", ["large", "not causal", "dropout"])
def test_falls_back_to_sdpa(why, monkeypatch):
    calls = []
    monkeypatch.setattr(attention, "gqa_attention", lambda *a, **k: calls.append(1) or _gqa(*a, **k))
    monkeypatch.setattr(attention, "SMALL_SCORES", 10 if why == "large" else attention.SMALL_SCORES)
    query, key, value = _inputs(2, 4, 2, 3, 3)
    small_cpu_attention(
        _module(4, 2, causal=why != "not causal"),
        query,
        key,
        value,
        None,
        scaling=0.25,
        dropout=0.1 if why == "dropout" else 0.0,
    )
    assert not calls


def test_training_model_uses_it_by_default_and_matches_sdpa():
    """The recipe default loads phaserl_sdpa; a tiny Llama's log-probs and gradients equal sdpa's."""
    from phaserl.config import ModelConfig
    from phaserl.models import load_model

    assert ModelConfig().attn_implementation == "phaserl_sdpa"
    lm = load_model("tiny:llama", attn_implementation="phaserl_sdpa")
    assert lm.model.config._attn_implementation == "phaserl_sdpa"
    ids = torch.randint(0, 100, (3, 12), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[0, :4] = 0  # left padding
    out = {}
    for impl in ("phaserl_sdpa", "sdpa"):
        lm.model.set_attn_implementation(impl)
        lm.model.zero_grad()
        logits = lm.model(input_ids=ids, attention_mask=mask).logits
        logits[mask.bool()].float().logsumexp(-1).sum().backward()
        out[impl] = (logits[mask.bool()].detach(), lm.model.lm_head.weight.grad.clone())
    assert torch.allclose(out["phaserl_sdpa"][0], out["sdpa"][0], atol=1e-4)
    assert torch.allclose(out["phaserl_sdpa"][1], out["sdpa"][1], atol=1e-4)
