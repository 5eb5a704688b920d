"""The fused, chunked selective log-prob equals log_softmax(logits / T)[targets] and its autograd gradient."""

import pytest
import torch

import phaserl.policy as policy
from phaserl.policy import selective_logp


def _plain(logits, targets, T):
    return torch.log_softmax(logits.float() / T, -1).gather(-1, targets[..., None]).squeeze(-1)


@pytest.mark.parametrize(
    "dtype,T,chunk",
    [
        (torch.float32, 1.0, 7000),
        (torch.float32, 0.7, 1000),
        (torch.bfloat16, 1.0, 7000),
        (torch.float32, 1.3, 1 << 22),
    ],
)
def test_values_and_gradients_match_autograd(monkeypatch, dtype, T, chunk):
    monkeypatch.setattr(policy, "CHUNK_ELEMENTS", chunk)  # several chunks, ragged last one; or a single one
    torch.manual_seed(0)
    base = torch.randn(3, 50, 1000) * 4
    weights = torch.randn(3, 50)
    targets = torch.randint(0, 1000, (3, 50))
    a = base.to(dtype).requires_grad_()
    (_plain(a, targets, T) * weights).sum().backward()
    b = base.to(dtype).requires_grad_()
    out = selective_logp(b, targets, T)
    (out * weights).sum().backward()
    assert out.dtype == torch.float32 and out.shape == (3, 50)
    assert torch.allclose(out, _plain(base.to(dtype), targets, T), atol=1e-5)
    assert b.grad.dtype == dtype
    tol = 1e-6 if dtype == torch.float32 else 1e-2
    assert torch.allclose(b.grad.float(), a.grad.float(), atol=tol)


def test_no_grad_path_and_non_contiguous_input():
    logits = torch.randn(4, 9, 300)[:, 1:]  # a slice, as out.logits[:, :-1] is
    targets = torch.randint(0, 300, (4, 8))
    with torch.no_grad():
        assert torch.allclose(selective_logp(logits, targets), _plain(logits, targets, 1.0), atol=1e-6)


def test_logsumexp_fast_matches_torch():
    from phaserl.policy import logsumexp_fast

    x = torch.randn(5, 3000) * 60  # spreads of hundreds of nats: exp() of most terms would be denormal
    x[1, 100:] = float("-inf")  # masked tokens
    x[2] = -1e4
    assert torch.allclose(logsumexp_fast(x), torch.logsumexp(x, -1), atol=1e-5, rtol=1e-6)
