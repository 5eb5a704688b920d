"""The fused AdamW the trainer uses in single-process runs takes the same steps as the reference AdamW."""

import torch


def test_fused_adamw_matches_the_reference_implementation():
    torch.manual_seed(0)
    shapes = [(64, 32), (32,), (5, 7, 3)]
    start = [torch.randn(s) for s in shapes]
    grads = [[torch.randn(s) for s in shapes] for _ in range(4)]
    results = []
    for fused in (None, True):
        params = [torch.nn.Parameter(p.clone()) for p in start]
        opt = torch.optim.AdamW(params, lr=1e-2, betas=(0.9, 0.99), weight_decay=0.1, fused=fused)
        for g in grads:
            for p, gi in zip(params, g):
                p.grad = gi.clone()
            opt.step()
        results.append([p.detach() for p in params])
    for ref, got, p0 in zip(*results, start):
        assert not torch.allclose(ref, p0, atol=1e-3)  # the steps moved the weights
        assert torch.allclose(ref, got, rtol=1e-5, atol=1e-6)
