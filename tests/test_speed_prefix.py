"""Speed levers change nothing that is learned: shared-prefix log-probs and gradients equal the plain ones."""

import pytest
import torch

from phaserl.data.generators import arithmetic, arithmetic_vl
from phaserl.data.render import render
from phaserl.models import load_model
from phaserl.policy import build_sequences, completion_logp, rows_logp, shared_prefix_logp
from phaserl.rollout.encode import continuation_positions, unique_prompts


@pytest.fixture(scope="module", params=["tiny:llama", "tiny:qwen2_5_vl", "tiny:llava"])
def lm(request):
    torch.manual_seed(0)
    return load_model(request.param)


def _rows(lm, G=3):
    """Three prompts of different lengths (two templates), G rows each, completions of 1..6 tokens."""
    if lm.is_vlm:
        exs, view = arithmetic_vl(n=3, seed=2, digits=2), "image"
    else:
        exs, view = arithmetic(n=3, seed=2, digits=3), "text"
    prompts = [render(e, view, "boxed" if i == 0 else "plain") for i, e in enumerate(exs)]
    rows = [p for p in prompts for _ in range(G)]
    gen = torch.Generator().manual_seed(1)
    lengths = [1] + [int(torch.randint(2, 7, (), generator=gen)) for _ in rows[1:]]
    comps = [torch.randint(0, 1000, (n,), generator=gen).tolist() for n in lengths]
    return rows, comps


def _plain(lm, rows, comps, temperature=1.0):
    inputs, targets, mask = build_sequences(lm.processor, rows, comps, lm.is_vlm, lm.tokenizer.pad_token_id)
    return completion_logp(lm.model, inputs, targets, temperature, False, "cpu"), mask


def _grads(model) -> dict[str, torch.Tensor]:
    out = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return out


def test_unique_prompts_by_identity():
    a, b = render(arithmetic(n=1)[0], "text"), render(arithmetic(n=1)[0], "text")  # equal, not identical
    uniq, row_of = unique_prompts([a, a, b, a, b])
    assert uniq == [a, b] and uniq[1] is b
    assert row_of == [0, 0, 1, 0, 1]


def test_continuation_positions_follow_the_prompt():
    pos = torch.tensor([[0, 0, 0, 1, 2], [0, 1, 2, 3, 4]])  # left-padded prompts of 3 and 5 tokens
    out = continuation_positions(pos, torch.tensor([1, 0, 0]), start=2, T=3)
    assert out.tolist() == [[7, 8, 9], [5, 6, 7], [5, 6, 7]]
    mrope = continuation_positions(torch.stack([pos, pos + 4, pos]), torch.tensor([0]), start=0, T=2)
    assert mrope.shape == (3, 1, 2) and mrope[:, 0].tolist() == [[7, 8]] * 3  # max over all sections + 1


def test_shared_prefix_logp_and_grads_equal_plain(lm):
    rows, comps = _rows(lm)
    ref, ref_mask = _plain(lm, rows, comps)
    (ref * ref_mask).sum().backward()
    ref_grads = _grads(lm.model)
    got, mask = shared_prefix_logp(
        lm.model, lm.processor, rows, comps, lm.is_vlm, lm.tokenizer.pad_token_id, 1.0, False, "cpu"
    )
    (got * mask).sum().backward()
    grads = _grads(lm.model)
    assert torch.equal(mask, ref_mask)
    assert torch.allclose(got * mask, ref * mask, atol=1e-5)
    assert grads.keys() == ref_grads.keys() and len(grads) > 10
    if lm.is_vlm:
        assert any("visual." in n or "vision_tower." in n for n in grads)  # the tower is trained too
    for name, g in grads.items():
        scale = float(ref_grads[name].abs().max())
        assert float((g - ref_grads[name]).abs().max()) <= 1e-4 * scale + 1e-8, (
            name
        )  # fp32 summation order only


def test_shared_prefix_rows_in_any_order(lm):
    """Mini-batches shuffle rows, so a micro-batch holds a group's rows scattered and incomplete."""
    rows, comps = _rows(lm)
    order = [4, 0, 8, 1, 5]
    rows, comps = [rows[i] for i in order], [comps[i] for i in order]
    ref, mask = _plain(lm, rows, comps, temperature=0.7)
    got, _ = rows_logp(
        lm.model, lm.processor, rows, comps, lm.is_vlm, lm.tokenizer.pad_token_id, 0.7, False, "cpu"
    )
    assert torch.allclose(got * mask, ref * mask, atol=1e-5)
    at_one, _ = _plain(lm, rows, comps)
    assert not torch.allclose(at_one * mask, ref * mask, atol=1e-3)  # the temperature is applied, not ignored


def test_shared_prefix_under_bf16_autocast_matches_fp32(lm):
    rows, comps = _rows(lm)
    ref, mask = _plain(lm, rows, comps)
    got, _ = shared_prefix_logp(
        lm.model, lm.processor, rows, comps, lm.is_vlm, lm.tokenizer.pad_token_id, 1.0, True, "cpu"
    )
    diff = ((got.float() - ref) * mask).abs()
    assert float(diff.max()) < 0.1 and float(diff.sum() / mask.sum()) < 0.03  # bf16 has ~3 significant digits
