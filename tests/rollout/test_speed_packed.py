"""The sampling copy's pre-packed oneDNN linears give exactly what nn.Linear gives, and follow weight syncs."""

import pytest
import torch

from phaserl.data.generators import arithmetic, arithmetic_vl
from phaserl.data.render import render
from phaserl.rollout.base import SamplingParams
from phaserl.rollout.cpu import CPUEngine
from phaserl.rollout.cpu.packed import PackedLinear, pack_linears, packing_available
from phaserl.testing.tiny import perturbed_weights

pytestmark = pytest.mark.skipif(
    not packing_available(torch.bfloat16, "cpu"), reason="oneDNN bf16 linear not available on this CPU"
)


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("shape", [(1, 48), (7, 48), (5, 1, 48), (3, 9, 48)])
def test_packed_linear_is_bit_identical(bias, shape):
    """Bit for bit without a bias. With one, oneDNN adds it to the float32 sum before rounding, nn.Linear after
    rounding the product to bf16 (about 1 in 70 cases over seeds differs): the two agree to one bf16 rounding of
    the terms."""
    gen = torch.Generator().manual_seed(0)
    linear = torch.nn.Linear(48, 80, bias=bias).to(torch.bfloat16)
    with torch.no_grad():  # every value from `gen`: the test must not depend on what ran before it
        linear.weight.copy_(torch.randn(80, 48, generator=gen))
        if bias:
            linear.bias.copy_(torch.randn(80, generator=gen))
    x = torch.randn(*shape, generator=gen).to(torch.bfloat16)
    packed = PackedLinear(linear)
    if not bias:
        assert torch.equal(packed(x), linear(x))
    with torch.no_grad():
        got, want = packed(x).float(), linear(x).float()
        product = x.float() @ linear.weight.float().T
    assert ((got - want).abs() <= 2**-8 * (product.abs() + want.abs())).all()
    assert packed(x).shape == (*shape[:-1], 80)


def test_pack_linears_replaces_plain_bf16_linears_only():
    model = torch.nn.Sequential(
        torch.nn.Linear(4, 4), torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU())
    )
    assert pack_linears(model) == []  # float32: left alone
    model = model.to(torch.bfloat16)
    assert pack_linears(model) == ["0", "1.0"]
    assert isinstance(model[0], PackedLinear) and isinstance(model[1][0], PackedLinear)
    assert [n for n, _ in model.named_parameters()] == ["0.bias", "1.0.bias"]  # weights live packed


def _prompts(lm):
    if lm.is_vlm:
        return [render(e, "image", "boxed") for e in arithmetic_vl(n=3, seed=2, digits=2)]
    return [render(e, "text", "boxed") for e in arithmetic(n=3, seed=2, digits=3)]


def _engine(
    lm, pack
):  # the transformers decoding step on both (tests/rollout/test_speed_lean.py: the lean step)
    return CPUEngine(
        lm.model,
        lm.processor,
        lm.tokenizer,
        is_vlm=lm.is_vlm,
        rollout_dtype=torch.bfloat16,
        pack_weights=pack,
        lean_decode=False,
    )


def _same(a, b):
    assert a.completion_ids == b.completion_ids and a.texts == b.texts
    for x, y in zip(a.logp, b.logp):
        assert torch.equal(x, y)


def test_packed_copy_samples_exactly_what_the_plain_copy_samples(lm):
    packed, plain = _engine(lm, True), _engine(lm, False)
    assert packed.packed and not plain.packed
    assert "lm_head" in packed.packed  # tied to the embedding in these models: packed from the shared tensor
    for params in (
        SamplingParams(n=1, max_new_tokens=10, temperature=0),
        SamplingParams(n=3, max_new_tokens=10, temperature=1.0, seed=5),
    ):
        _same(packed.generate(_prompts(lm), params), plain.generate(_prompts(lm), params))


def test_sync_weights_repacks(lm):
    """After an update of the trained model, the packed copy samples what a fresh copy of the new weights
    samples; without the repack it would still sample from the old weights."""
    packed = _engine(lm, True)
    params = SamplingParams(n=2, max_new_tokens=10, temperature=1.0, seed=1)
    before = packed.generate(_prompts(lm), params)
    with perturbed_weights(lm.model, 0.1):
        packed.sync_weights(lm.model)
        after = packed.generate(_prompts(lm), params)
        _same(after, _engine(lm, False).generate(_prompts(lm), params))
        assert after.completion_ids != before.completion_ids
