"""phaserl's compiled CPU kernels, built on first use with torch's C++ extension loader and cached.

`decode_attention()` returns the lean decoder's fused attention (decode_attention.cpp), or None where it cannot
run: no AVX-512 (F and BW) on this CPU, no C++ compiler or ninja, or PHASERL_CPU_KERNELS=0. The first build takes
about 35 s and is cached under torch's extension directory (TORCH_EXTENSIONS_DIR, by default
~/.cache/torch_extensions), so later runs load it in about a second. A failed build is reported once and the
torch ops run instead: the kernels are a speed-up, never a requirement.

Why a kernel: at 32 rows the attention of a SmolLM2 decoding step is 96 products of 3 x 64 by 64 x L per layer
(one per row and KV head); torch.bmm spends ~1.5 us of overhead on each, and with the float32 softmax between
them the attention took 260-420 us a layer, against 110-220 us for this single call.
"""

from __future__ import annotations

import os
import sys
import sysconfig
import time
from pathlib import Path

import torch

_SOURCE = Path(__file__).with_name("decode_attention.cpp")
_NOT_LOADED = object()
_module = _NOT_LOADED
_why_not: str | None = None


def cpu_has_avx512() -> bool:
    """AVX-512 F and BW on this CPU (Linux: /proc/cpuinfo; elsewhere: torch's detected capability)."""
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
        return {"avx512f", "avx512bw"} <= set(flags.split(":", 1)[1].split())
    except (OSError, StopIteration):
        return getattr(torch.backends.cpu, "get_cpu_capability", lambda: "")() == "AVX512"


def decode_attention():
    """The compiled module (with .decode_attention(q, kt, v, bias, L, scaling)) or None; see the module doc."""
    global _module, _why_not
    if _module is _NOT_LOADED:
        _module, _why_not = _build()
        if _module is None and _why_not and os.environ.get("PHASERL_CPU_KERNELS", "1") != "0":
            print(f"[phaserl] CPU decode-attention kernel unavailable ({_why_not}); using torch ops", file=sys.stderr)
    return _module


def unavailable_reason() -> str | None:
    """Why decode_attention() is None (after a call), or None."""
    return _why_not


def _build():
    if os.environ.get("PHASERL_CPU_KERNELS", "1") == "0":
        return None, "PHASERL_CPU_KERNELS=0"
    if not sys.platform.startswith("linux") or not cpu_has_avx512():
        return None, "needs Linux and a CPU with AVX-512 F/BW"
    # pip's ninja lands in the environment's scripts directory, which is on PATH only when it is activated
    scripts = sysconfig.get_path("scripts")
    if scripts and scripts not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = scripts + os.pathsep + os.environ.get("PATH", "")
    try:
        from torch.utils.cpp_extension import load

        t0 = time.perf_counter()
        module = load(name="phaserl_decode_attention", sources=[str(_SOURCE)], verbose=False,
                      extra_cflags=["-O3", "-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mfma",
                                    "-ffp-contract=off"])
        took = time.perf_counter() - t0
        if took > 5:
            print(f"[phaserl] built the CPU decode-attention kernel in {took:.0f}s (cached for later runs)",
                  file=sys.stderr)
        return module, None
    except Exception as e:  # no compiler, no ninja, headers missing: the torch path runs instead
        return None, f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"[:300]
