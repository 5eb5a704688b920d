"""The compiled decoding attention (rollout/cpu/decode_attention.cpp) computes lean.py's torch attention bit for bit."""

import pytest
import torch

from phaserl.rollout.cpu import kernels as cpu_kernels
from phaserl.rollout.cpu.lean import decode_attention, rope

kernel = cpu_kernels.decode_attention()
needs_kernel = pytest.mark.skipif(
    kernel is None, reason=f"no CPU kernel here: {cpu_kernels.unavailable_reason()}"
)


def _inputs(n, KV, g, D, L_max, seed):
    gen = torch.Generator().manual_seed(seed)
    H = KV * g
    # q as the lean step has it: the first H heads of a [n, H + KV, D] tensor (strided rows)
    q = torch.randn(n, H + KV, D, generator=gen).mul(3).to(torch.bfloat16)[:, :H]
    kt = torch.randn(n, KV, D, L_max, generator=gen).mul(3).to(torch.bfloat16)
    v = torch.randn(n, KV, L_max, D, generator=gen).to(torch.bfloat16)
    bias = torch.zeros(n, L_max)
    bias[0, :3] = torch.finfo(torch.float32).min  # left padding of row 0's prompt
    return q, kt, v, bias


@needs_kernel
@pytest.mark.parametrize(
    "KV,g,D",
    [(3, 3, 64), (2, 2, 16), (1, 4, 32), (4, 1, 128), (2, 3, 48), (2, 8, 128), (2, 7, 64), (1, 5, 16)],
)
def test_kernel_matches_torch_bit_for_bit(KV, g, D):
    q, kt, v, bias = _inputs(5, KV, g, D, 140, seed=KV * 100 + g * 10 + D)
    for L in (1, 2, 4, 15, 16, 17, 33, 64, 99, 140):
        ref = decode_attention(q, kt, v, bias, L, D**-0.5)
        got = kernel.decode_attention(q, kt, v, bias, L, D**-0.5)
        assert got.dtype == torch.bfloat16 and got.shape == ref.shape
        assert torch.equal(got, ref), f"L={L}: {(got != ref).sum()} of {ref.numel()} differ"


@needs_kernel
# D = 16 and 48: a RoPE vector of 16 straddles the rotation's half (the kernel's scalar branch)
@pytest.mark.parametrize("KV,g,D", [(3, 3, 64), (2, 2, 16), (1, 4, 32), (2, 3, 48), (1, 8, 128)])
def test_step_kernel_matches_torch_rope_cache_write_and_attention(KV, g, D):
    n, L_max, H = 4, 30, KV * g
    gen = torch.Generator().manual_seed(D + g)
    qkv = torch.randn(n, (H + 2 * KV) * D, generator=gen).mul(4).to(torch.bfloat16)
    angles = torch.rand(n, D // 2, generator=gen) * 50
    emb = torch.cat((angles, angles), dim=-1)
    cos, sin = emb.cos().to(torch.bfloat16), emb.sin().to(torch.bfloat16)
    _, kt, v, bias = _inputs(n, KV, g, D, L_max, seed=3)
    for L in (1, 9, 30):
        kt_ref, v_ref = kt.clone(), v.clone()
        qk = rope(qkv[:, : (H + KV) * D].view(n, H + KV, D), cos[:, None], sin[:, None])
        kt_ref[:, :, :, L - 1] = qk[:, H:]
        v_ref[:, :, L - 1] = qkv[:, (H + KV) * D :].view(n, KV, D)
        ref = decode_attention(qk[:, :H], kt_ref, v_ref, bias, L, D**-0.5)
        got = kernel.decode_step_attention(qkv, cos, sin, kt, v, bias, L, D**-0.5)
        assert torch.equal(kt, kt_ref) and torch.equal(v, v_ref)  # k and v written at L - 1, nothing else
        assert torch.equal(got, ref)


@needs_kernel
def test_kernel_reads_only_the_first_L_positions():
    q, kt, v, bias = _inputs(3, 2, 2, 64, 40, seed=1)
    ref = kernel.decode_attention(q, kt, v, bias, 20, 0.125)
    kt[..., 20:] = float("nan")
    v[:, :, 20:] = float("nan")
    bias[:, 20:] = float("nan")
    assert torch.equal(kernel.decode_attention(q, kt, v, bias, 20, 0.125), ref)


@needs_kernel
def test_kernel_rejects_what_it_does_not_compute():
    q, kt, v, bias = _inputs(2, 2, 2, 64, 16, seed=2)
    with pytest.raises(RuntimeError, match="dtypes"):
        kernel.decode_attention(q.float(), kt, v, bias, 8, 0.125)
    with pytest.raises(RuntimeError, match="length"):
        kernel.decode_attention(q, kt, v, bias, 17, 0.125)
    with pytest.raises(RuntimeError, match="shapes"):  # 9 query heads per KV head
        kernel.decode_attention(torch.zeros(2, 18, 64, dtype=torch.bfloat16), kt, v, bias, 8, 0.125)


def test_switched_off_by_environment(monkeypatch):
    monkeypatch.setenv("PHASERL_CPU_KERNELS", "0")
    assert cpu_kernels._build() == (None, "PHASERL_CPU_KERNELS=0")


def test_built_per_torch_version(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    path = cpu_kernels.build_directory()
    assert path.is_dir() and path.is_relative_to(tmp_path) and torch.__version__ in str(path)
