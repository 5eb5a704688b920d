"""The lean decoding step (phaserl/rollout/cpu/lean.py) samples what the transformers decoding step samples."""

import copy

import pytest
import torch

from phaserl.rollout.base import SamplingParams
from phaserl.rollout.cpu import CPUEngine
from phaserl.rollout.cpu import kernels as cpu_kernels
from phaserl.rollout.cpu.lean import LeanDecoder, unsupported_reason
from phaserl.rollout.cpu.packed import packing_available
from phaserl.testing.tiny import load_varied_tiny, perturbed_weights

pytestmark = pytest.mark.skipif(
    not packing_available(torch.bfloat16, "cpu"), reason="oneDNN bf16 linear not available on this CPU"
)


def _engine(lm, lean, kernel=True):
    return CPUEngine(
        lm.model,
        lm.processor,
        lm.tokenizer,
        is_vlm=lm.is_vlm,
        rollout_dtype=torch.bfloat16,
        lean_decode=lean,
        cpu_kernels=kernel,
    )


def _close(a, b):
    assert a.completion_ids == b.completion_ids and a.truncated == b.truncated
    for x, y in zip(a.logp, b.logp):
        assert torch.allclose(x, y, atol=1e-4, rtol=0)


@pytest.mark.parametrize("kernel", [True, False], ids=["compiled-attention", "torch-attention"])
def test_lean_step_samples_what_the_transformers_step_samples(lm, kernel, mixed_prompts):
    lean, ref = _engine(lm, True, kernel), _engine(lm, False)
    assert lean.lean is not None and ref.lean is None
    # the compiled attention (rollout/cpu/decode_attention.cpp) is in use wherever it could be built
    assert (lean.lean.kernel is not None) == (kernel and cpu_kernels.decode_attention() is not None)
    for params in (
        SamplingParams(n=1, max_new_tokens=12, temperature=0),
        SamplingParams(n=4, max_new_tokens=12, temperature=1.0, seed=5),
        SamplingParams(n=3, max_new_tokens=12, temperature=0.7, top_p=0.9, seed=2),
    ):
        a, b = lean.generate(mixed_prompts(lm), params), ref.generate(mixed_prompts(lm), params)
        _close(a, b)
        assert len({tuple(c) for c in a.completion_ids}) > 1  # rows differ: the test can tell them apart


def test_rows_that_finish_leave_the_batch(mixed_prompts):
    """With an EOS that some rows sample early, the compacted lean batch still matches the reference row by row."""
    lm = load_varied_tiny("tiny:llama", seed=3)
    lean, ref = _engine(lm, True), _engine(lm, False)
    params = SamplingParams(n=6, max_new_tokens=16, temperature=1.5, seed=0)
    first = ref.generate(mixed_prompts(lm), params)
    eos = next(c[3] for c in first.completion_ids if len(c) > 3)  # a token some rows sample after 3 steps
    for e in (lean, ref):
        e.eos_ids = {eos}
    a, b = lean.generate(mixed_prompts(lm), params), ref.generate(mixed_prompts(lm), params)
    lengths = [len(c) for c in a.completion_ids]
    assert min(lengths) < 16 and max(lengths) == 16  # some rows stopped early, some ran to the end
    _close(a, b)


def test_sync_weights_refreshes_the_fused_qkv(lm, mixed_prompts):
    """After an update, the lean copy samples what a fresh lean engine on the new weights samples (the same
    path on both sides: the compiled attention can differ from the torch ops by one bf16 unit on some inputs,
    which the comparisons of the two paths above do not hit)."""
    engine = _engine(lm, True)
    params = SamplingParams(n=2, max_new_tokens=10, temperature=1.0, seed=1)
    before = engine.generate(mixed_prompts(lm), params)
    with perturbed_weights(lm.model, 0.3, _q_and_k):
        engine.sync_weights(lm.model)
        after = engine.generate(mixed_prompts(lm), params)
        _close(after, _engine(lm, True).generate(mixed_prompts(lm), params))
        assert after.completion_ids != before.completion_ids


def _q_and_k(name, p):  # only what the fused q/k/v matrix carries
    return "k_proj" in name or "q_proj" in name


def test_copy_keeps_float32_rope_frequencies(lm):
    engine = _engine(lm, True)
    src = {n: b for n, b in lm.model.named_buffers() if n.endswith("inv_freq")}
    got = {n: b for n, b in engine.model.named_buffers() if n.endswith("inv_freq")}
    assert src and src.keys() == got.keys()
    for n in src:
        assert got[n].dtype == torch.float32 and torch.equal(got[n], src[n])


def test_unsupported_models_keep_the_transformers_step():
    lm = load_varied_tiny("tiny:llama")
    assert _engine(lm, True).lean is not None
    plain = CPUEngine(lm.model, lm.processor, lm.tokenizer, rollout_dtype=torch.bfloat16, pack_weights=False)
    assert plain.lean is None and "not packed" in unsupported_reason(plain.model)
    gelu = copy.deepcopy(lm.model)
    gelu.config.hidden_act = "gelu"
    engine = CPUEngine(gelu, lm.processor, lm.tokenizer, rollout_dtype=torch.bfloat16)
    assert engine.lean is None and "hidden_act" in unsupported_reason(engine.model)
    with pytest.raises(ValueError, match="hidden_act"):
        LeanDecoder(engine.model, dict(gelu.named_parameters()))
