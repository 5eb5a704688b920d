"""phaserl's compiled CPU kernels, built on first use with torch's C++ extension loader and cached.

`decode_attention()` returns the lean decoder's fused attention (decode_attention.cpp), or None where it cannot
run: no AVX-512 (F, BW, VL, DQ) on this CPU, no C++ compiler or ninja, or PHASERL_CPU_KERNELS=0. The first build
compiles the C++ source and is cached (`build_directory()`: per torch version, under TORCH_EXTENSIONS_DIR or
~/.cache/torch_extensions), so later runs only load it; `make` builds it during setup. A failed build is reported once and the
torch ops run instead: the kernels are a speed-up, never a requirement.

Why a kernel: at 32 rows the attention of a SmolLM2 decoding step is 96 products of 3 x 64 by 64 x L per layer
(one per row and KV head); torch.bmm's fixed per-call overhead outweighs the arithmetic of products this small,
and the float32 softmax and small ops between them add more calls. One call per layer does all of it
(docs/performance.md has the measurements).
"""

from __future__ import annotations

import logging
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
    """AVX-512 F, BW, VL and DQ on this CPU (Linux: /proc/cpuinfo; elsewhere: torch's detected capability)."""
    try:
        flags = next(
            line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")
        )
        return {"avx512f", "avx512bw", "avx512vl", "avx512dq"} <= set(flags.split(":", 1)[1].split())
    except (OSError, StopIteration):
        return getattr(torch.backends.cpu, "get_cpu_capability", lambda: "")() == "AVX512"


def decode_attention():
    """The compiled module (.decode_attention and .decode_step_attention, see decode_attention.cpp) or None."""
    global _module, _why_not
    if _module is _NOT_LOADED:
        _module, _why_not = _build()
        if _module is None and _why_not and os.environ.get("PHASERL_CPU_KERNELS", "1") != "0":
            print(
                f"[phaserl] CPU decode-attention kernel unavailable ({_why_not}); using torch ops",
                file=sys.stderr,
            )
    return _module


def unavailable_reason() -> str | None:
    """Why decode_attention() is None (after a call), or None."""
    return _why_not


def build_directory() -> Path:
    """Where the kernel is built and cached: one folder per torch version and Python (a module built against one
    torch does not load in another), under TORCH_EXTENSIONS_DIR or ~/.cache/torch_extensions."""
    root = os.environ.get("TORCH_EXTENSIONS_DIR") or Path.home() / ".cache" / "torch_extensions"
    tag = f"phaserl-torch{torch.__version__}-py{sys.version_info.major}{sys.version_info.minor}"
    path = Path(root) / tag / "decode_attention"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _build():
    if os.environ.get("PHASERL_CPU_KERNELS", "1") == "0":
        return None, "PHASERL_CPU_KERNELS=0"
    if not sys.platform.startswith("linux") or not cpu_has_avx512():
        return None, "needs Linux and a CPU with AVX-512 F/BW/VL/DQ"
    # pip's ninja lands in the environment's scripts directory, which is on PATH only when it is activated
    scripts = sysconfig.get_path("scripts")
    if scripts and scripts not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = scripts + os.pathsep + os.environ.get("PATH", "")
    try:
        quiet = logging.getLogger(
            "torch.utils.cpp_extension"
        )  # its import warns that no CUDA runtime is found
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            from torch.utils.cpp_extension import load
        finally:
            quiet.setLevel(level)

        t0 = time.perf_counter()
        module = load(
            name="phaserl_decode_attention",
            sources=[str(_SOURCE)],
            verbose=False,
            build_directory=str(build_directory()),
            extra_cflags=[
                "-O3",
                "-mavx512f",
                "-mavx512bw",
                "-mavx512vl",
                "-mavx512dq",
                "-mfma",
                "-ffp-contract=off",
            ],
        )
        took = time.perf_counter() - t0
        if took > 5:
            print(
                f"[phaserl] built the CPU decode-attention kernel in {took:.0f}s (cached for later runs)",
                file=sys.stderr,
            )
        return module, None
    except Exception as e:  # no compiler, no ninja, headers missing: the torch path runs instead
        return None, f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"[:300]


if (
    __name__ == "__main__"
):  # `python -m phaserl.rollout.cpu.kernels`: build now (make's setup does), never fail
    status = (
        "ready" if decode_attention() is not None else f"unavailable ({unavailable_reason()}); torch ops run"
    )
    print(f"phaserl CPU decode-attention kernel: {status}")
